//! Databases come and go: `DROP DATABASE`, `ALTER DATABASE ... RENAME` and
//! `ALTER DATABASE ... SET TABLESPACE` first stop for good the extension's
//! workers connected to that database (static or dynamic, restartable or
//! not; a NOTICE names each), and wait for them to leave, so the command
//! proceeds as if they were not there instead of failing with 55006 after
//! five seconds. Spare processes that kept a connection to it (see
//! `spare.rs`) are let go too, and so are those connected to the template
//! a `CREATE DATABASE` copies. Only for a command that will run: one the
//! server would refuse (not the owner, in a transaction block, other
//! sessions in the way, ...) stops nothing (see `rights.rs`). From the
//! hook to the end of the command's transaction the database is closed to
//! new workers (a launch into it meanwhile is refused with 55000), so
//! none arrives after the workers were stopped. A `ProcessUtility_hook`,
//! chained to the one before it, and a transaction callback.

use std::time::Duration;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::catalog;
use crate::control::{self, Status, Target};
use crate::registry;
use crate::spare;

mod command;
mod rights;

use command::DbCommand;

/// The longest a command waits for the workers it stopped to leave.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(10);

static mut PREV_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;

/// Installs the hook, from `_PG_init` at preload.
pub fn init() {
    // SAFETY: _PG_init runs once in the postmaster's only thread; we chain
    // whatever hook was installed before us.
    unsafe {
        PREV_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
        // Inherited by every backend the postmaster forks.
        pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut());
    }
}

/// Stops for good every extension worker connected to database `db`
/// (`oid`) and waits (a bounded while) for them to leave.
fn stop_workers_in(db: &str, oid: pg_sys::Oid) {
    // Each with whether it waits in the launch queue (named so).
    let connected: Vec<_> = registry::list()
        .into_iter()
        .filter(|r| r.def.database.is_some())
        .filter(|r| {
            r.database_oid == oid.to_u32() || (r.is_static && r.def.database.as_deref() == Some(db))
        })
        .filter_map(|r| match control::status_of(&r).0 {
            Status::Stopped => None,
            status => Some((r.id, status == Status::Queued)),
        })
        .collect();
    for &(id, queued) in &connected {
        if let Some(rec) = registry::request_terminate(id) {
            control::stop_record(&rec);
            notice!(
                "stopped worker {} (\"{}\") {} database \"{db}\"",
                rec.id,
                rec.def.name,
                if queued { "queued for" } else { "connected to" }
            );
        }
    }
    for &(id, _) in &connected {
        let _ = control::wait_unchecked(id, Target::Shutdown, Some(LEAVE_TIMEOUT));
    }
    // Spare processes keep the connection of the worker that gave them
    // back (their workers, stopped above, are among them by now).
    spare::let_go_connected_to(oid.to_u32(), LEAVE_TIMEOUT);
}

/// Runs before the statement: our part, in Rust, behind a guard that turns
/// a Rust panic into an ordinary PostgreSQL error. Only a command that
/// will run (see `rights.rs`) stops anything.
#[pg_guard]
unsafe extern "C-unwind" fn before_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    context: pg_sys::ProcessUtilityContext::Type,
) {
    // SAFETY: the statement the server is about to run.
    let Some(command) = (unsafe { command::of(pstmt) }) else {
        return;
    };
    let db = command.database();
    let Some(oid) = catalog::database_oid(db) else {
        return;
    };
    let top_level = context == pg_sys::ProcessUtilityContext::PROCESS_UTILITY_TOPLEVEL;
    if !rights::will_run(&command, oid, top_level) {
        return;
    }
    // No worker is registered into the database from now until this
    // transaction ends: a launch either is among those stopped below or
    // is refused.
    if let Err(why) = registry::close_database(oid.to_u32()) {
        let held = match why {
            registry::NotClosed::RoleShare => format!(
                "the sessions of this role hold {} closed",
                registry::CLOSED_PER_ROLE
            ),
            registry::NotClosed::Full => {
                format!("all sessions hold {} closed", registry::CLOSED_IN_ALL)
            }
        };
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
            format!(
                "too many databases are being dropped, renamed, moved or copied at once ({held} \
                 to new workers until their transactions end)"
            ),
            "Commit the transactions that renamed them first, or try again."
        );
    }
    match command {
        // The template's own workers are left alone (the command fails for
        // them as for any session); only the spares the extension keeps
        // connected there, which nobody sees, are let go.
        DbCommand::Copy { .. } => spare::let_go_connected_to(oid.to_u32(), LEAVE_TIMEOUT),
        _ => stop_workers_in(db, oid),
    }
}

/// Opens the databases this backend closed to new workers again, as its
/// transaction ends (committed or aborted); refuses to prepare a
/// transaction that closed one.
#[pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    match event {
        // The database would stay closed while the prepared transaction
        // (holding the command) outlives this one.
        XACT_EVENT_PRE_PREPARE if registry::closed_here() => {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                "cannot prepare a transaction that dropped, renamed or moved a database",
                "lightdb_bgw keeps that database closed to new workers until the transaction ends."
            );
        }
        XACT_EVENT_COMMIT
        | XACT_EVENT_ABORT
        | XACT_EVENT_PARALLEL_COMMIT
        | XACT_EVENT_PARALLEL_ABORT => registry::reopen_databases(),
        _ => {}
    }
}

/// The server's own routine, declared here without pgrx's error guard: the
/// hook must let an error of the statement (any DDL) travel as PostgreSQL
/// reports it, untouched. The hook's own frame holds nothing to drop, so
/// the error's jump passes it safely.
mod server {
    use pgrx::pg_sys;

    extern "C-unwind" {
        #[cfg(not(feature = "pg13"))]
        #[allow(clippy::too_many_arguments)]
        pub fn standard_ProcessUtility(
            pstmt: *mut pg_sys::PlannedStmt,
            query: *const std::ffi::c_char,
            read_only_tree: bool,
            context: pg_sys::ProcessUtilityContext::Type,
            params: pg_sys::ParamListInfo,
            env: *mut pg_sys::QueryEnvironment,
            dest: *mut pg_sys::DestReceiver,
            qc: *mut pg_sys::QueryCompletion,
        );
        #[cfg(feature = "pg13")]
        pub fn standard_ProcessUtility(
            pstmt: *mut pg_sys::PlannedStmt,
            query: *const std::ffi::c_char,
            context: pg_sys::ProcessUtilityContext::Type,
            params: pg_sys::ParamListInfo,
            env: *mut pg_sys::QueryEnvironment,
            dest: *mut pg_sys::DestReceiver,
            qc: *mut pg_sys::QueryCompletion,
        );
    }
}

#[cfg(not(feature = "pg13"))]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // SAFETY: called by the server with its statement; the previous hook
    // or the standard routine then runs it with the same arguments.
    unsafe {
        before_utility(pstmt, context);
        match PREV_PROCESS_UTILITY {
            Some(prev) => prev(pstmt, query, read_only_tree, context, params, env, dest, qc),
            None => server::standard_ProcessUtility(
                pstmt,
                query,
                read_only_tree,
                context,
                params,
                env,
                dest,
                qc,
            ),
        }
    }
}

#[cfg(feature = "pg13")]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query: *const std::ffi::c_char,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // SAFETY: as in the version for PostgreSQL 14 and later.
    unsafe {
        before_utility(pstmt, context);
        match PREV_PROCESS_UTILITY {
            Some(prev) => prev(pstmt, query, context, params, env, dest, qc),
            None => server::standard_ProcessUtility(pstmt, query, context, params, env, dest, qc),
        }
    }
}
