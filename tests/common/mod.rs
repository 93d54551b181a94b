//! A harness for cluster tests: throwaway PostgreSQL clusters, each in its
//! own directory on its own loopback port, run as user `postgres` (the
//! server refuses root). A cluster is stopped (immediately) and its
//! directory removed when the `Cluster` is dropped, also when a test fails;
//! set `LIGHTDB_BGW_KEEP_CLUSTERS=1` to keep the directory for a post-mortem.
// Each test binary uses its own part of the harness.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub use postgres::fallible_iterator::FallibleIterator;
pub use postgres::{Client, NoTls};

mod cluster;
mod procs;
mod sql;

pub use cluster::*;
pub use procs::*;
pub use sql::*;

/// What `pg_config <arg>` prints: `$PG_CONFIG` (scripts/test.sh exports
/// the one of the version under test), else `pg_config` found on PATH.
pub fn pg_config(arg: &str) -> PathBuf {
    let pg_config = std::env::var("PG_CONFIG")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "pg_config".to_string());
    let out = Command::new(&pg_config)
        .arg(arg)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {pg_config} (set PG_CONFIG): {e}"));
    assert!(out.status.success(), "{pg_config} {arg}: {}", text(&out));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The server's binaries: `$PG_CONFIG --bindir`.
pub fn bindir() -> PathBuf {
    pg_config("--bindir")
}

/// The PGXS directory (`.../lib/pgxs`), home of pg_regress.
pub fn pgxs_dir() -> PathBuf {
    let makefile = pg_config("--pgxs");
    makefile
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("pgxs directory")
        .to_path_buf()
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a server binary as user `postgres` when we are root.
pub fn as_postgres(program: &Path) -> Command {
    if running_as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Polls `check` until it returns `Some` or `deadline` passes (then panics
/// naming `what`). Never a bare sleep: the pause between polls is short.
pub fn eventually<T>(what: &str, deadline: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let began = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            began.elapsed() < deadline,
            "{what}: not reached within {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}
