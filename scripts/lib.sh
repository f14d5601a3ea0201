# Shared helpers for wirescope's scripts. Sourced, never run; installs nothing.
ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
WIRESCOPE_TOOLS=${WIRESCOPE_TOOLS:-$HOME/.cache/wirescope-tools}
export WIRESCOPE_TOOLS
# Rustup's cargo (with fmt and clippy) before any system cargo; Node from npm, where setup put
# one (the system's was older than 20.10), before the system's.
PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
[ -x "$WIRESCOPE_TOOLS/node-bin/node" ] && PATH="$WIRESCOPE_TOOLS/node-bin:$PATH"
export PATH

die() { echo "error: $*" >&2; exit 1; }

# timed LABEL cmd... — runs cmd, prints its wall time to stderr, keeps its exit code.
timed() {
  local label=$1 s e rc=0; shift; s=$(date +%s%N)
  "$@" || rc=$?; e=$(date +%s%N)
  printf '[timing] %-34s %7.1f s (rc=%d)\n' "$label" "$(( (e - s) / 1000000 ))e-3" "$rc" >&2
  return "$rc"
}

# lock_version CRATE — the version of CRATE recorded in Cargo.lock.
lock_version() {
  awk -v n="$1" '$0 == "name = \"" n "\"" { getline; gsub(/version = |"/, ""); print; exit }' \
    "$ROOT/Cargo.lock"
}

# wasm_env — call inside a subshell: puts the wasm toolchain (trunk, wasm-bindgen, wasm-opt and,
# on the Debian route, Debian's rustc with build-std) in the environment, with its own target dir.
wasm_env() {
  local env_file="$WIRESCOPE_TOOLS/wasm-env.sh"
  [ -f "$env_file" ] || die "$env_file missing: run scripts/setup first"
  # shellcheck disable=SC1090
  . "$env_file"
  if [ "$WASM_ROUTE" = debian ]; then
    export CARGO_TARGET_DIR="$ROOT/target/wasm-debian"
  else
    export CARGO_TARGET_DIR="$ROOT/target/wasm"
  fi
}

# wait_http URL SECONDS — poll until URL answers 2xx.
wait_http() {
  local i
  for i in $(seq 1 $(( $2 * 5 ))); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.2
  done
  return 1
}
