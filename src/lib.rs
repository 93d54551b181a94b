//! lightdb_bgw: background workers hosted by the server, driven from SQL.
//!
//! This file only wires the modules together; each concern lives in its own
//! file, in the order a request travels: SQL (`api`) → validation (`spec`) →
//! registry (`registry`) → postmaster registration (`launch`) → the worker
//! process (`worker`, `kinds`).
#![deny(unsafe_op_in_unsafe_fn)]

use pgrx::prelude::*;

pub mod api;
pub mod authz;
#[cfg(feature = "bench")]
pub mod bench_floor;
pub mod capacity;
pub mod capture;
pub mod catalog;
pub mod codec;
pub mod config;
pub mod connection;
pub mod control;
pub mod databases;
pub mod dispatcher;
pub mod error;
pub mod gucs;
pub mod heap_row;
pub mod jsonb_text;
pub mod jsonb_write;
pub mod kinds;
pub mod launch;
pub mod preload;
pub mod process;
pub mod registry;
pub mod reported;
pub mod row_jsonb;
pub mod rows;
pub mod runtime;
pub mod spare;
pub mod spec;
pub mod sqlstate;
pub mod statements;
pub mod worker;
pub mod workerdef;

::pgrx::pg_module_magic!(name, version);

/// Called by the server when the library is loaded: at postmaster start when
/// it is in `shared_preload_libraries`, or in a backend on first use.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    let preloaded = preload::detect();
    gucs::init(preloaded);
    if !preloaded {
        // Without preload there is no shared memory and no worker: every SQL
        // function reports SQLSTATE 55000 through `preload::require()`.
        return;
    }
    let entries = gucs::validated_static_workers();
    let (database, role) = (gucs::database(), gucs::role());
    let statics: Vec<workerdef::WorkerDef> = spec::expand_static(&entries)
        .into_iter()
        .map(|(kind, n)| workerdef::WorkerDef::static_worker(kind, n, &database, role.as_deref()))
        .collect();
    registry::init(
        gucs::max_workers(),
        gucs::max_text_memory(),
        statics.clone(),
    );
    launch::register_static_workers(&statics);
    dispatcher::register();
    databases::init();
}

extension_sql_file!("../sql/finalize.sql", finalize);

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![
            "shared_preload_libraries = 'lightdb_bgw'",
            "max_worker_processes = 32",
            "lightdb_bgw.static_workers = 'counter:2'",
            "lightdb_bgw.database = 'postgres'",
            "lightdb_bgw.naptime = '200ms'",
        ]
    }
}
