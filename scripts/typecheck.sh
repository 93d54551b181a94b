#!/usr/bin/env bash
# Type-checks lightdb_bgw for a PostgreSQL version whose server and headers
# are not installed here (13, 14 and 17 in CI), with `cargo clippy -D
# warnings`, against the bindings pgrx-pg-sys ships pre-generated for
# pg13–pg18 (the ones docs.rs builds use):
#
#   PG_MAJOR=13 bash scripts/typecheck.sh
#
# DOCS_RS=1 makes pgrx-pg-sys's build script skip bindgen (which needs the
# headers), and `--cfg docsrs`, given to that one crate only, makes it
# include the shipped bindings. This script is also its own RUSTC_WRAPPER
# for that: cargo runs it as `typecheck.sh <rustc> <args>` with
# LIGHTDB_BGW_TYPECHECK_WRAPPER=1. The builds go to target/typecheck so the
# normal build stays untouched. Nothing is run: a server is needed for that
# (scripts/test.sh).

if [ "${LIGHTDB_BGW_TYPECHECK_WRAPPER:-}" = 1 ]; then
    # Wrapper mode: "$@" is the compiler (perhaps clippy-driver and rustc)
    # and its arguments; add --cfg docsrs when compiling pgrx_pg_sys.
    prev=""
    for arg in "$@"; do
        if [ "$prev" = "--crate-name" ] && [ "$arg" = pgrx_pg_sys ]; then
            exec "$@" --cfg docsrs
        fi
        prev="$arg"
    done
    exec "$@"
fi

set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

PG_MAJOR="${PG_MAJOR:-}"
case "$PG_MAJOR" in
    13 | 14 | 15 | 16 | 17 | 18) ;;
    *)
        echo "usage: PG_MAJOR=13|14|15|16|17|18 bash scripts/typecheck.sh" >&2
        exit 2
        ;;
esac

printf '\033[1m==> type-check for PostgreSQL %s (shipped bindings): cargo clippy -D warnings\033[0m\n' "$PG_MAJOR"
export DOCS_RS=1
export LIGHTDB_BGW_TYPECHECK_WRAPPER=1
export RUSTC_WRAPPER="$PWD/scripts/typecheck.sh"
export CARGO_TARGET_DIR="${LIGHTDB_BGW_TYPECHECK_TARGET:-$PWD/target/typecheck}"
cargo clippy --all-targets --no-default-features --features "pg${PG_MAJOR} pg_test" -- -D warnings
