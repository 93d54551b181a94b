//! What every kind uses while it runs, knowing no kind: who this worker
//! is, naps on the latch that serve interrupts, one transaction per unit
//! of work, activity reports, notifications and recorded errors.

use std::sync::Mutex;
use std::time::Duration;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::codec::ErrorText;
use crate::connection::c_text;
use crate::registry::{self, SlotRef, WorkerRecord};
use crate::sqlstate::{sqlstate_text, CodeWatch};

/// Who this process is: registry slot, id and generation.
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    pub at: SlotRef,
    pub id: i64,
}

/// The worker this process runs now, and whether it gives the process
/// back when it stops (a spare's; see `worker.rs`). A process given back
/// runs no worker until it is handed the next.
static IDENTITY: Mutex<Option<(Identity, bool)>> = Mutex::new(None);

/// Records who this process is, before any kind runs; `recyclable`: the
/// worker gives the process back when it stops.
pub fn set_identity(identity: Identity, recyclable: bool) {
    if let Ok(mut me) = IDENTITY.lock() {
        *me = Some((identity, recyclable));
    }
}

/// The process runs no worker any more (it was given back).
pub fn clear_identity() {
    if let Ok(mut me) = IDENTITY.lock() {
        *me = None;
    }
}

/// Who this process is, if it got that far.
pub fn try_identity() -> Option<Identity> {
    IDENTITY.lock().ok().and_then(|me| me.map(|(i, _)| i))
}

/// This worker's identity; set before any kind runs.
pub fn identity() -> Identity {
    try_identity().expect("identity is set before the kind runs")
}

/// Whether this worker gives its process back when it stops, rather than
/// ending it: then `terminate` wakes it (see [`stop_asked`]) instead of
/// sending SIGTERM.
pub fn recyclable() -> bool {
    IDENTITY
        .lock()
        .ok()
        .is_some_and(|me| me.is_some_and(|(_, r)| r))
}

/// Whether this worker, giving its process back, was asked to stop.
pub fn stop_asked() -> bool {
    recyclable() && {
        let me = identity();
        registry::stop_asked(me.at, me.id)
    }
}

/// Records an error the worker survived, in full, or clears it with `None`.
pub fn record_error(error: Option<&ErrorText>) {
    registry::record_error(identity().at, error);
}

/// Records a note in `last_error` (not an error of PostgreSQL's), or
/// clears it with `None`.
pub fn record_note(note: Option<&str>) {
    registry::record_note(identity().at, note);
}

/// Queues a notification on `channel`, sent when the transaction commits,
/// through the server's `Async_Notify()`.
pub fn notify(channel: &str, payload: &str) {
    extern "C-unwind" {
        fn Async_Notify(channel: *const std::ffi::c_char, payload: *const std::ffi::c_char);
    }
    let channel = c_text("notify channel", channel).unwrap_or_else(|e| e.report());
    let payload = c_text("notify payload", payload).unwrap_or_else(|e| e.report());
    // SAFETY: called inside a transaction; the strings outlive the call and
    // the server copies them; an ERROR is turned into a Rust panic by the
    // guard instead of jumping over Rust frames.
    unsafe {
        pg_sys::ffi::pg_guard_ffi_boundary(|| Async_Notify(channel.as_ptr(), payload.as_ptr()));
    }
}

/// Shows `name` as `application_name` in `pg_stat_activity`.
pub fn set_application_name(name: &str) {
    set_session(c"application_name", name);
}

/// Sets the session's `search_path` (a worker whose own SQL must not
/// find objects other roles may create).
pub fn set_search_path(path: &str) {
    set_session(c"search_path", path);
}

/// Sets setting `name` to `value` for the session.
fn set_session(name: &std::ffi::CStr, value: &str) {
    let value = c_text(&name.to_string_lossy(), value).unwrap_or_else(|e| e.report());
    // SAFETY: SetConfigOption copies both strings.
    unsafe {
        pg_sys::SetConfigOption(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
        );
    }
}

/// Reports what the worker is doing in `pg_stat_activity`: `Some(text)`
/// shows it running that text, `None` shows it idle.
pub fn report_activity(running: Option<&str>) {
    match running {
        Some(text) => {
            let text = c_text("activity", text).unwrap_or_else(|e| e.report());
            // SAFETY: the text is copied into shared memory by the server.
            unsafe {
                pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, text.as_ptr())
            }
        }
        // SAFETY: NULL keeps the last text, as an idle backend does.
        None => unsafe {
            pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, std::ptr::null())
        },
    }
}

/// Reports the process idle with no text at all: a process given back
/// shows nothing of the worker it ran.
pub fn clear_activity() {
    // SAFETY: the empty text is copied into shared memory by the server.
    unsafe { pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, c"".as_ptr()) }
}

/// Sleeps on the latch for at most `timeout` (`None`: until woken), then
/// serves interrupts: SIGTERM ends the process here (exit code 1, as
/// PostgreSQL's own workers), postmaster death ends it at once, and a
/// pending SIGHUP re-reads the configuration files.
pub fn nap(timeout: Option<Duration>) {
    let mut events = pg_sys::WL_LATCH_SET | pg_sys::WL_EXIT_ON_PM_DEATH;
    let millis = match timeout {
        Some(t) => {
            events |= pg_sys::WL_TIMEOUT;
            wait_millis(t)
        }
        None => -1,
    };
    // SAFETY: MyLatch is this process's latch; WaitLatch with
    // WL_EXIT_ON_PM_DEATH exits on postmaster death as required.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            events as i32,
            millis,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    serve_interrupts();
}

/// Milliseconds for `WaitLatch`, rounded up: a wait of 0.4 ms sleeps 1 ms
/// instead of returning at once (which made the last millisecond of every
/// wait a busy loop).
pub fn wait_millis(timeout: Duration) -> std::ffi::c_long {
    timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as std::ffi::c_long
}

/// Holds cancels off (as the server does while it reads a client's next
/// message): a cancel has something to cancel only while a run's
/// statements execute, where [`in_transaction`] lets it through; one that
/// arrives anywhere else waits there and is dropped (see
/// [`serve_interrupts`]). Called as a worker's kind starts.
pub fn hold_cancels() {
    // SAFETY: a plain counter of the server's interrupt machinery, read by
    // ProcessInterrupts in this process only.
    unsafe { pg_sys::QueryCancelHoldoffCount = 1 };
}

/// Serves pending interrupts without sleeping; see [`nap`].
pub fn serve_interrupts() {
    // SAFETY: plain flags of the server's interrupt machinery. A cancel
    // (SIGINT, `cancel()`) that arrives while no statement runs has
    // nothing to cancel: it is dropped rather than raised here, outside
    // any transaction, where it would end the worker; and one that
    // arrives while the interrupts are served is held off (as the server's
    // QueryCancelHoldoffCount does), then dropped at the next turn or
    // before the next run (see `in_transaction`).
    unsafe {
        let outside = !pg_sys::IsTransactionState();
        if outside {
            pg_sys::QueryCancelPending = 0;
            pg_sys::QueryCancelHoldoffCount += 1;
        }
        pg_sys::check_for_interrupts!();
        if outside {
            pg_sys::QueryCancelHoldoffCount -= 1;
        }
    }
    // SAFETY: ConfigReloadPending is a sig_atomic_t set by the SIGHUP
    // handler; we clear it before reloading, as the server does.
    unsafe {
        if pg_sys::ConfigReloadPending != 0 {
            pg_sys::ConfigReloadPending = 0;
            pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
        }
    }
}

/// Ends a running worker for good with `error` (what it was authorised
/// as is gone): recorded with "(the worker stops for good)", marked so in
/// the registry, and exit code 0, which unregisters it from the postmaster
/// whatever its restart rule.
pub fn stop_for_good(mut error: WorkError) -> ! {
    error.message.push_str(" (the worker stops for good)");
    record_error(Some(&error));
    registry::stop_for_good(identity().at);
    crate::process::exit(0)
}

/// The error a `PgTryBuilder` caught (the server's, ours or a panic's
/// report), in full but for its context.
pub fn caught_error(caught: &pg_sys::panic::CaughtError) -> WorkError {
    let report = match caught {
        pg_sys::panic::CaughtError::PostgresError(report)
        | pg_sys::panic::CaughtError::ErrorReport(report)
        | pg_sys::panic::CaughtError::RustPanic {
            ereport: report, ..
        } => report,
    };
    ErrorText {
        sqlstate: sqlstate_text(report.sql_error_code()),
        message: report.message().to_string(),
        detail: report.detail().map(str::to_string),
        hint: report.hint().map(str::to_string),
        context: None,
    }
}

/// An error a unit of work met, in full.
pub type WorkError = ErrorText;

/// Resets the session as `DISCARD ALL` does (settings, role, prepared
/// statements, cursors, temporary tables, session locks, listening
/// channels, cached plans and sequences), for a process given back to
/// run the next worker of the same role (see `worker.rs`).
pub fn discard_session() -> Result<(), WorkError> {
    extern "C-unwind" {
        fn DiscardCommand(stmt: *mut pg_sys::DiscardStmt, is_top_level: bool);
    }
    in_transaction(|| {
        let mut stmt = pg_sys::DiscardStmt {
            type_: pg_sys::NodeTag::T_DiscardStmt,
            target: pg_sys::DiscardMode::DISCARD_ALL,
        };
        // SAFETY: inside a transaction that is not a transaction block,
        // as DISCARD ALL requires; an ERROR is turned into a Rust panic by
        // the guard and aborts the transaction.
        unsafe {
            pg_sys::ffi::pg_guard_ffi_boundary(|| DiscardCommand(&mut stmt, true));
        }
    })
}

/// Runs `work` in its own transaction with a snapshot and commits it. On
/// any error the transaction is aborted and the error returned, so the
/// worker carries on with the next unit of work.
pub fn in_transaction<R>(
    work: impl FnOnce() -> R + std::panic::UnwindSafe,
) -> Result<R, WorkError> {
    // SAFETY: a background worker connected to a database, outside any
    // transaction (the previous one was committed or aborted below). A
    // cancel still pending arrived while no statement ran: dropped.
    unsafe {
        pg_sys::QueryCancelPending = 0;
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let watch = CodeWatch::start();
    // Whether the error caught was the server's (not a Rust panic or ours);
    // a flag only read after the catch.
    let server_error = std::panic::AssertUnwindSafe(std::cell::Cell::new(false));
    let outcome = PgTryBuilder::new(move || {
        // SAFETY: as in `hold_cancels`: cancels count from here on, while
        // the work runs and commits.
        unsafe { pg_sys::QueryCancelHoldoffCount = 0 };
        let value = work();
        // SAFETY: the snapshot pushed above is still the active one.
        unsafe {
            pg_sys::PopActiveSnapshot();
            pg_sys::CommitTransactionCommand();
        }
        Ok(value)
    })
    .catch_others(|caught| {
        server_error.set(matches!(
            caught,
            pg_sys::panic::CaughtError::PostgresError(_)
        ));
        Err(caught_error(&caught))
    })
    .execute();
    // Held off again whatever happened in the work (an error skips the
    // server's own balanced holds and releases of it).
    hold_cancels();
    // The error's own code, also one pgrx's enum does not name.
    let own = watch.finish(
        outcome
            .as_ref()
            .err()
            .filter(|_| server_error.get())
            .map(|e| e.sqlstate.as_str()),
    );
    let outcome = outcome.map_err(|error| ErrorText {
        sqlstate: own.unwrap_or(error.sqlstate),
        ..error
    });
    if outcome.is_err() {
        // SAFETY: the error state was flushed by the catch above; aborting
        // releases the transaction's locks, snapshots and SPI state.
        unsafe { pg_sys::AbortCurrentTransaction() };
    }
    // SAFETY: reports this process's table statistics, outside a transaction.
    // (It returns nothing before PostgreSQL 15 and a delay after; unused.)
    unsafe { pg_sys::pgstat_report_stat(true) };
    outcome
}

/// The identity of the running worker, as the registry recorded it.
pub fn describe(record: &WorkerRecord) -> String {
    format!("{} (id {})", record.def.name, record.id)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn waits_round_up_to_whole_milliseconds() {
        assert_eq!(wait_millis(Duration::from_micros(1)), 1);
        assert_eq!(wait_millis(Duration::from_micros(999)), 1);
        assert_eq!(wait_millis(Duration::from_micros(1000)), 1);
        assert_eq!(wait_millis(Duration::from_micros(1001)), 2);
        assert_eq!(wait_millis(Duration::ZERO), 0);
        assert_eq!(
            wait_millis(Duration::from_secs(1 << 40)),
            i32::MAX as std::ffi::c_long
        );
    }
}
