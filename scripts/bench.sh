#!/usr/bin/env bash
# Benchmarks (separate from the tests): installs the release build, starts
# a throwaway cluster, and prints every figure beside a reference measured
# in the same run, as a ratio. Results also go to results/ (JSON, CSV and
# an SVG plot of latency against concurrency). PG_MAJOR=16 or 18 benchmarks
# on that server (see scripts/setup.sh); 15 by default.
# BENCH_ONLY=results,queue runs only the sections named (see
# examples/bench/main.rs). The results section compares with
# pg_background when the server has it installed (it is not built here),
# and otherwise with the extension's own launch -> exit lifecycle.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
ensure_toolchain

log "building and installing lightdb_bgw (release)"
cargo pgrx install --release --pg-config "$PG_CONFIG" --no-default-features --features "pg${PG_MAJOR} bench"

log "running the benchmarks"
# The client side is the same for a figure and its reference, so it is
# built in the quicker debug profile; the server runs the release build,
# with the `bench` feature: the floor worker the figures are compared to.
cargo run --quiet --no-default-features --features "pg${PG_MAJOR}" --example bench
