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
