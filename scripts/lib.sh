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
