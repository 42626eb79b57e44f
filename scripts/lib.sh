# Shared by scripts/run and scripts/test. Installs only what is missing; safe to run twice.

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "Нужны права root, чтобы выполнить: $*" >&2; return 1
  fi
}

# PostgreSQL server binaries (initdb, pg_ctl) for the embedded default.
ensure_postgres() {
  if [ -n "${DATABASE_URL:-}" ] || [ -n "${OPORA_PG_BIN:-}" ]; then return 0; fi
  if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then return 0; fi
  echo "PostgreSQL server is not installed; installing it from Debian (apt-get install postgresql)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -q
  as_root apt-get install -y -q --no-install-recommends postgresql
}

ensure_cargo() {
  if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH="$HOME/.cargo/bin:$PATH"
    else echo "Rust (cargo) is needed: https://rustup.rs" >&2; return 1
    fi
  fi
}

# schemathesis (PyPI) for the API fuzzing step of scripts/test, in a virtual environment of
# the project's own (.venv), pinned; installed once.
SCHEMATHESIS_VERSION=4.32.5
ensure_schemathesis() {
  local venv="${OPORA_VENV:-.venv}"
  if [ -x "$venv/bin/schemathesis" ] && "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    export PATH="$PWD/$venv/bin:$PATH"; return 0
  fi
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    echo "python3-venv is not installed; installing it from Debian..." >&2
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -q
    as_root apt-get install -y -q --no-install-recommends python3-venv
  fi
  echo "Installing schemathesis $SCHEMATHESIS_VERSION from PyPI into $venv..." >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
  export PATH="$PWD/$venv/bin:$PATH"
}

# cargo-fuzz (crates.io) for scripts/fuzz, pinned; installed once into ~/.cargo/bin.
CARGO_FUZZ_VERSION=0.13.2
ensure_cargo_fuzz() {
  if cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then return 0; fi
  echo "Installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io..." >&2
  cargo install --locked --version "$CARGO_FUZZ_VERSION" cargo-fuzz
}

# Debian's Chromium (and its driver) for the browser tests, and the tests' npm packages
# (playwright-core, otpauth: pinned in browser/package-lock.json) into browser/node_modules.
ensure_chromium() {
  # Only what is missing: a Node.js from elsewhere (NodeSource's brings its own npm)
  # conflicts with Debian's npm package.
  local missing=""
  [ -x "${OPORA_CHROMIUM:-/usr/bin/chromium}" ] || missing="$missing chromium fonts-dejavu-core"
  command -v node >/dev/null 2>&1 || missing="$missing nodejs"
  command -v npm >/dev/null 2>&1 || missing="$missing npm"
  if [ -n "$missing" ]; then
    echo "Installing for the browser tests from Debian:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -q
    # shellcheck disable=SC2086 # a list of package names
    as_root apt-get install -y -q --no-install-recommends $missing
  fi
  if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
    echo "The browser tests need Node.js 20 or later; this machine has $(node --version)." >&2
    return 1
  fi
  if ! (cd browser && npm ls --depth=0 >/dev/null 2>&1); then
    echo "Installing the browser tests' packages from npm into browser/node_modules..." >&2
    (cd browser && npm ci --no-audit --no-fund --loglevel=error)
  fi
}
