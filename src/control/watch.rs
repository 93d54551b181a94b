//! Watching and stopping workers: status (what the worker recorded in its
//! slot combined with what the postmaster knows through the handle),
//! waits from any session on the registry's condition variable, and
//! terminate through the postmaster's handle; and what a launch that
//! waits waits for.

use std::time::{Duration, Instant};

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::authz::check_may_control;
use crate::codec;
use crate::error::BgwError;
use crate::launch::{self, PmStatus};
use crate::preload;
use crate::process;
use crate::registry::{self, ChangeWait, Lifecycle, ResultState, SlotState, WorkerRecord};
use crate::spec::StartTime;
use crate::sqlstate::split_recorded;

/// A worker's status, as the SQL functions report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting in the launch queue.
    Queued,
    NotYetStarted,
    Started(i32),
    Stopped,
    PostmasterDied,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::NotYetStarted => "not_yet_started",
            Status::Started(_) => "started",
            Status::Stopped => "stopped",
            Status::PostmasterDied => "postmaster_died",
        }
    }

    pub fn pid(self) -> Option<i32> {
        match self {
            Status::Started(pid) => Some(pid),
            _ => None,
        }
    }
}

/// What a wait waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// No longer `not_yet_started` (PostgreSQL's WaitForBackgroundWorkerStartup).
    Startup,
    /// Connected as its role, or gone: what `launch(..., wait => true)` waits for.
    Ready,
    Shutdown,
    /// A completed run's result (a `sql` worker), or gone.
    Result,
}

pub fn postmaster_alive() -> bool {
    // SAFETY: getppid has no preconditions; PostmasterPid is set at start.
    unsafe { libc::getppid() == pg_sys::PostmasterPid }
}

/// The status of `rec`, and whether it may change without an event on the
/// registry (so a waiter should look again soon).
pub fn status_of(rec: &WorkerRecord) -> (Status, bool) {
    status_given(&rec.lifecycle(), postmaster_alive())
}

/// [`status_of`], the postmaster's liveness already known (a listing asks
/// once for all its rows).
pub fn status_given(rec: &Lifecycle, postmaster_alive: bool) -> (Status, bool) {
    if !postmaster_alive {
        return (Status::PostmasterDied, false);
    }
    if rec.reaped {
        return (Status::Stopped, false);
    }
    let pm = rec.handle.map(launch::handle_status);
    if rec.raw {
        // Not our code: only the postmaster knows.
        return match pm {
            Some(PmStatus::Started(pid)) => (Status::Started(pid), true),
            Some(PmStatus::NotYetStarted) => (Status::NotYetStarted, true),
            _ => (Status::Stopped, false),
        };
    }
    match (rec.state, pm) {
        // Recorded its exit but the postmaster has not reaped it yet (the
        // dispatcher announces the reaping). A static worker's reaping is
        // announced to nobody: it counts as stopped once it recorded it.
        (SlotState::Stopped, Some(PmStatus::Started(pid))) if !rec.is_static => {
            (Status::Started(pid), true)
        }
        // Terminated before it started, and the postmaster has not let go
        // of it yet: it may still start the process (which then leaves at
        // once), and its slot is not free. The dispatcher announces when
        // the postmaster lets it go.
        (SlotState::Stopped, Some(PmStatus::NotYetStarted)) if !rec.is_static => {
            (Status::NotYetStarted, true)
        }
        (SlotState::Stopped, _) | (SlotState::Free, _) => (Status::Stopped, false),
        (SlotState::Queued, _) => (Status::Queued, false),
        // Gone without recording it (killed with SIGKILL).
        (SlotState::Started, Some(PmStatus::Stopped)) => (Status::Stopped, false),
        (SlotState::Started, _) => (Status::Started(rec.pid), false),
        // Never started, and never will: forgotten by the postmaster.
        (SlotState::NotYetStarted, Some(PmStatus::Stopped))
            if !rec.restartable || rec.terminate_requested =>
        {
            (Status::Stopped, false)
        }
        // Forked by the postmaster, not running its own code yet: started,
        // as PostgreSQL's handle says (BGWH_STARTED once the pid is known),
        // though not yet a backend that pg_stat_activity shows. Its claim of
        // the slot, or the dispatcher if it dies first, wakes the waiters.
        // Handed to an idle spare, whose process ran long before: started
        // once the spare claims the slot.
        (SlotState::NotYetStarted, Some(PmStatus::Started(_))) if rec.lent => {
            (Status::NotYetStarted, false)
        }
        (SlotState::NotYetStarted, Some(PmStatus::Started(pid))) => (Status::Started(pid), false),
        (SlotState::NotYetStarted, _) => (Status::NotYetStarted, false),
    }
}

pub(super) fn lookup(id: i64) -> Result<WorkerRecord, BgwError> {
    preload::require()?;
    registry::find(id).ok_or_else(|| BgwError::UndefinedObject(format!("no worker with id {id}")))
}

/// `status(id)`.
pub fn status(id: i64) -> Result<Status, BgwError> {
    Ok(status_of(&lookup(id)?).0)
}

/// `wait_for_startup` / `wait_for_shutdown`: sleeps on the registry's
/// condition variable (woken when any worker starts or exits), until the
/// target is reached or `timeout` passes (then `None`).
pub fn wait_checked(
    id: i64,
    target: Target,
    timeout: Option<Duration>,
) -> Result<Option<Status>, BgwError> {
    let rec = lookup(id)?;
    check_may_control(&rec, "wait on")?;
    wait_unchecked(id, target, timeout)
}

/// [`wait_checked`] without the caller's rights checked: for the
/// extension's own waits (a database being dropped waits for the workers
/// connected to it, whoever they belong to).
pub fn wait_unchecked(
    id: i64,
    target: Target,
    timeout: Option<Duration>,
) -> Result<Option<Status>, BgwError> {
    let began = Instant::now();
    // Prepared before the look, so no change between the look and the
    // sleep is missed: on the worker's own slot, or for a raw worker on
    // the general events (see `registry::ChangeWait`).
    let mut waiter: Option<(bool, ChangeWait)> = None;
    loop {
        let Some(now) = registry::progress(id) else {
            // Its slot went to a newer worker: it had stopped.
            return Ok(Some(Status::Stopped));
        };
        let (status, unsettled) = status_given(&now.lifecycle, postmaster_alive());
        // The dispatcher wakes a worker's own waiters when the postmaster
        // reaps it or lets it go before it ran; a raw worker's every change
        // is the postmaster's alone.
        let general = unsettled && now.lifecycle.raw;
        if waiter.as_ref().is_none_or(|(g, _)| *g != general) {
            drop(waiter.take());
            let prepared = if general {
                ChangeWait::prepare()
            } else {
                ChangeWait::for_slot(now.index)
            };
            let Some(prepared) = prepared else {
                return Err(BgwError::NotPreloaded);
            };
            waiter = Some((general, prepared));
            // Look again, now that no change can be missed.
            continue;
        }
        let gone = matches!(status, Status::Stopped | Status::PostmasterDied);
        let reached = match target {
            Target::Startup => !matches!(status, Status::NotYetStarted | Status::Queued),
            // Connected, gone, or failed and waiting for a restart.
            Target::Ready => {
                now.connected || gone || (status == Status::NotYetStarted && now.exited)
            }
            Target::Shutdown => gone,
            Target::Result => gone || now.result_state != ResultState::None,
        };
        if reached {
            return Ok(Some(status));
        }
        let left = match timeout {
            Some(t) => match t.checked_sub(began.elapsed()) {
                Some(left) if !left.is_zero() => left,
                _ => return Ok(None),
            },
            None => Duration::from_secs(3600),
        };
        // Every change is an event: a worker broadcasts when it starts,
        // connects and records its exit, terminate when it marks a worker,
        // and the dispatcher when the postmaster reaps one or lets it go
        // before it ran (and, for a raw worker's waiters, at every
        // notification of the postmaster).
        // Nobody polls; the timeout is only a backstop. While no dispatcher
        // runs (a moment after a crash), the postmaster's reaping is
        // announced to nobody: then a worker in between is looked at again
        // every 10 ms.
        let backstop = if unsettled && registry::dispatcher_pid() == 0 {
            Duration::from_millis(10)
        } else {
            Duration::from_secs(1)
        };
        if let Some((_, w)) = &waiter {
            w.sleep(left.min(backstop));
        }
    }
}

/// `terminate(id)`: stops the worker for good; true if it was still
/// registered (not stopped).
pub fn terminate(id: i64) -> Result<bool, BgwError> {
    let rec = lookup(id)?;
    check_may_control(&rec, "terminate")?;
    let was_registered = status_of(&rec).0 != Status::Stopped;
    let Some(rec) = registry::request_terminate(id) else {
        return Ok(false);
    };
    stop_record(&rec);
    Ok(was_registered)
}

/// Stops the process of `rec` (already marked for termination) through
/// its postmaster handle: SIGTERM if it runs, and never again. A worker
/// without a handle has not started yet; when it does, it sees the mark
/// and leaves with code 0, which unregisters it. A running worker that
/// gives its process back when it stops (a spare's, see `worker.rs`) is
/// woken instead, sees the mark and gives the process back; one already
/// reaped has no process to stop.
pub fn stop_record(rec: &WorkerRecord) {
    if rec.reaped {
        return;
    }
    if rec.recyclable && rec.state == SlotState::Started && rec.pid > 0 {
        registry::wake_giving_back(rec.id);
        return;
    }
    if let Some(handle) = rec.handle {
        launch::terminate_handle(handle);
    }
}

/// What `launch(..., wait => true)` waits for (see [`ready_or_stopped`]).
/// A wait that ends in an error (a cancel, statement_timeout) returns no id
/// either: the worker it waited for is stopped, so nothing is left that
/// the caller cannot name.
/// A FATAL (the session terminated) ends the wait without an error to
/// catch: the worker is stopped as the process exits.
pub(super) fn wait_for_launch(id: i64, start_time: StartTime) -> Result<(), BgwError> {
    unreturned(Some(id));
    let waited = PgTryBuilder::new(|| ready_or_stopped(id, start_time))
        .catch_others(|caught| {
            unreturned(None);
            stop_unclaimed(id);
            caught.rethrow()
        })
        .execute();
    unreturned(None);
    waited
}

thread_local! {
    /// The worker a launch of this process waits for, its id not returned.
    static UNRETURNED: std::cell::Cell<Option<i64>> = const { std::cell::Cell::new(None) };
}

/// Notes (or forgets) the worker whose launch waits; the first time, sets
/// up its stop when the process exits meanwhile.
fn unreturned(id: Option<i64>) {
    static INSTALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if id.is_some() {
        process::before_shmem_exit_once(&INSTALLED, Some(stop_unreturned));
    }
    UNRETURNED.with(|u| u.set(id));
}

#[pg_guard]
unsafe extern "C-unwind" fn stop_unreturned(_code: i32, _arg: pg_sys::Datum) {
    if let Some(id) = UNRETURNED.with(|u| u.take()) {
        stop_unclaimed(id);
    }
}

/// Stops worker `id`, registered by a launch that returns no id after all.
fn stop_unclaimed(id: i64) {
    if let Some(rec) = registry::request_terminate(id) {
        stop_record(&rec);
    }
}

/// Whether worker `id`, launched on a hot standby, starts only once
/// recovery has finished, which may never come: a wait for it would be
/// without bound, so the launch returns at once and a NOTICE says so
/// (`launch` and `launch_raw` alike).
pub(super) fn starts_after_promotion(id: i64, start_time: StartTime) -> bool {
    // SAFETY: a plain read of the server's recovery state.
    let waits =
        start_time == StartTime::RecoveryFinished && unsafe { pg_sys::RecoveryInProgress() };
    if waits {
        notice!(
            "worker {id} starts once recovery has finished (after promotion); not waiting for it"
        );
    }
    waits
}

/// `launch(..., wait => true)`: returns once worker `id` is connected as
/// its role (or, needing no connection, runs). A worker that stops, or
/// fails and waits for a restart, before that is terminated and its own
/// error raised again with its SQLSTATE (the caller gets no id). On a hot
/// standby a worker that starts only once recovery finishes is not waited
/// for (that may never come): a NOTICE says so.
fn ready_or_stopped(id: i64, start_time: StartTime) -> Result<(), BgwError> {
    if starts_after_promotion(id, start_time) {
        return Ok(());
    }
    wait_checked(id, Target::Ready, None)?;
    let Some(rec) = registry::find(id) else {
        return Ok(());
    };
    if rec.connected {
        return Ok(());
    }
    stop_unclaimed(id);
    let stopped = format!("worker {id} stopped before it was ready");
    // A note (no SQLSTATE) is no error to raise.
    let recorded = rec
        .error
        .clone()
        .filter(|e| !e.sqlstate.is_empty())
        .or_else(|| {
            let (sqlstate, message) = rec.last_error.as_deref().and_then(split_recorded)?;
            Some(codec::ErrorText {
                sqlstate: sqlstate.to_string(),
                message: message.to_string(),
                ..Default::default()
            })
        });
    Err(match recorded {
        Some(error) => BgwError::Worker {
            sqlstate: error.sqlstate,
            message: error.message,
            detail: Some(match error.detail {
                Some(detail) => format!("{detail} ({stopped})"),
                None => stopped,
            }),
            hint: error.hint,
            context: None,
        },
        None => BgwError::WrongState {
            message: format!("worker {id} stopped before it was ready"),
            hint: Some("The server log may say why.".into()),
        },
    })
}
