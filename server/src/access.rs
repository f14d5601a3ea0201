//! Who may act as the instructor: the token (random, kept in the data directory, printed at
//! start as `http://HOST:PORT/#token=TOKEN`) and the [`Instructor`] extractor that every
//! instructor-only route takes (`Authorization: Bearer TOKEN`, else 403).

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;

use crate::error::ApiError;

/// The instructor's token, as the states of routes that need it hold it.
#[derive(Clone)]
pub struct InstructorToken(pub Arc<str>);

impl InstructorToken {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for InstructorToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InstructorToken([redacted])")
    }
}

/// The file in the data directory that keeps the token across restarts.
pub const TOKEN_FILE: &str = "instructor-token";

/// A new random token: 32 base64url characters (24 random bytes from the operating system).
/// Without the system's random source there is no token (and no start): a guessable one
/// would hand the lecture to anyone.
pub fn new_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)
        .map_err(|e| std::io::Error::other(format!("the system random source failed: {e}")))?;
    Ok(base64url(&bytes))
}

/// The instructor's token kept in `dir` (readable by its owner only), so the instructor's link
/// stays the same across restarts; a new one when there is none or `rotate` is asked.
pub fn stored_token(dir: &std::path::Path, rotate: bool) -> std::io::Result<String> {
    let path = dir.join(TOKEN_FILE);
    if !rotate && let Ok(text) = std::fs::read_to_string(&path) {
        let t = text.trim();
        if t.len() >= 22 && t.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') {
            // A file others could read (copied in, or an old umask) is made private again.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                if std::fs::metadata(&path)?.permissions().mode() & 0o077 != 0 {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                }
            }
            return Ok(t.to_owned());
        }
    }
    let token = new_token()?;
    let tmp = dir.join(format!("{TOKEN_FILE}.new"));
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    std::io::Write::write_all(&mut file, format!("{token}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(token)
}

fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Proof that a request carries the instructor's token.
#[derive(Debug, Clone, Copy)]
pub struct Instructor;

impl<S: Send + Sync> FromRequestParts<S> for Instructor
where
    InstructorToken: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if is_instructor(&parts.headers, &InstructorToken::from_ref(state)) {
            Ok(Instructor)
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

/// Whether a request carries the instructor's token (`Authorization: Bearer TOKEN`), for
/// routes that answer everyone but show the instructor more.
pub fn is_instructor(headers: &axum::http::HeaderMap, token: &InstructorToken) -> bool {
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let token = token.as_str();
    // Compare every byte, whatever the first difference (no timing hint).
    given.len() == token.len() && given.bytes().zip(token.bytes()).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_base64url() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert!(a.len() >= 22 && a != b);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'), "{a}");
        assert_eq!(base64url(b"\xff\xfe\xfd"), "__79");
        assert_eq!(base64url(b"Man"), "TWFu");
    }

    #[test]
    fn the_token_is_kept_owner_only_across_restarts_until_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let first = stored_token(dir.path(), false).unwrap();
        assert_eq!(stored_token(dir.path(), false).unwrap(), first, "the same link after a restart");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(TOKEN_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let file = dir.path().join(TOKEN_FILE);
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert_eq!(stored_token(dir.path(), false).unwrap(), first);
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "made private again");
        }
        let rotated = stored_token(dir.path(), true).unwrap();
        assert_ne!(rotated, first);
        assert_eq!(stored_token(dir.path(), false).unwrap(), rotated);
        // A damaged file is replaced, not trusted.
        std::fs::write(dir.path().join(TOKEN_FILE), "x").unwrap();
        assert_ne!(stored_token(dir.path(), false).unwrap(), "x");
    }
}
