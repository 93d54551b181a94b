# Shared by scripts/run.sh and scripts/test.sh (sourced, not run): installs
# what lightdb_bgw needs on a fresh Debian machine, as root, and defines
# small helpers. Every step is skipped when already done.

PG_MAJOR=15
PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config}"
export PG_CONFIG
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

ensure_toolchain() {
    if [ "$(id -u)" != 0 ]; then
        echo "run this as root: it installs packages and runs the server as user postgres" >&2
        exit 1
    fi
    local pkgs=(postgresql-${PG_MAJOR} postgresql-server-dev-${PG_MAJOR} libclang-dev clang libssl-dev pkg-config sudo)
    local missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "apt-get install ${missing[*]}"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    fi
    if ! command -v cargo >/dev/null; then
        echo "cargo is missing: install Rust (rustup) first" >&2
        exit 1
    fi
    if ! cargo pgrx --version 2>/dev/null | grep -q '^cargo-pgrx 0\.18\.1$'; then
        log "cargo install cargo-pgrx 0.18.1 (a few minutes)"
        cargo install cargo-pgrx --version 0.18.1 --locked
    fi
    if ! grep -qs "^pg${PG_MAJOR} *= *\"${PG_CONFIG}\"" "$HOME/.pgrx/config.toml"; then
        log "cargo pgrx init --pg${PG_MAJOR} ${PG_CONFIG}"
        cargo pgrx init --pg${PG_MAJOR} "$PG_CONFIG"
    fi
}

# Runs a command as user postgres (the server refuses root).
as_postgres() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}
