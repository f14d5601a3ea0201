//! A program the tests start that stops with them: run by a wrapper shell that waits for its
//! standard input (a pipe from the test process) to close — when the value is dropped or the
//! test process ends, however it ends — then stops the program and removes its files.

use std::process::{Child, ChildStdin, Command, Stdio};

const WRAPPER: &str = r#"
files=$1
shift
"$@" >/dev/null 2>&1 </dev/null &
pid=$!
cat >/dev/null
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf "$files"
"#;

/// A running program; dropping it stops it and removes `files`.
pub struct Owned(Option<(Child, ChildStdin)>);

impl Owned {
    /// Runs `program` with `args`; `files` (a file or directory) goes when it stops.
    pub fn run(files: &std::path::Path, program: &str, args: &[&str]) -> Owned {
        let mut child = Command::new("sh")
            .args(["-c", WRAPPER, "sh"])
            .arg(files)
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} does not start: {e}"));
        let stdin = child.stdin.take().unwrap();
        Owned(Some((child, stdin)))
    }

    /// The first of `paths` that is a file: where a Debian package put a program.
    pub fn find(paths: &[&'static str], package: &str) -> &'static str {
        paths.iter().copied().find(|p| std::path::Path::new(p).is_file()).unwrap_or_else(|| {
            panic!("{package} is not installed: run scripts/setup (it installs the {package} package)")
        })
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.0.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }
}
