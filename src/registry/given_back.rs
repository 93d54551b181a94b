//! A worker that gives its process back (a spare's; see `worker.rs`):
//! from the moment it decides to, `terminate` wakes the process instead of
//! asking the postmaster for SIGTERM; then it is recorded stopped, and,
//! its process being one the postmaster will not reap, reaped at once,
//! letting go of the process's postmaster handle. And the question such a
//! worker asks while it waits: was it asked to stop? And a signal for the
//! worker running in a process, sent only while the process still runs
//! that worker (`cancel`).

use pgrx::pg_sys;

use super::events::broadcast_slot;
use super::locked::Locked;
use super::lookup::index_of;
use super::slot::{put_str, PgHandle, SlotRef, SlotState};
use super::update_own;

/// Run by a process hosting worker `id` of slot `at` that gives the
/// process back instead of leaving it (see `worker.rs`): the worker is
/// stopped with exit `code` and `error`, and since its process is not one
/// the postmaster will reap, it counts as reaped at once and lets go of
/// the process's postmaster `handle`, which is no longer the worker's.
/// Also for a worker that never claimed the slot (terminated first).
pub fn give_back(at: SlotRef, id: i64, handle: PgHandle, code: i32, error: Option<&str>) {
    // SAFETY: reading the clock has no preconditions.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    update_own(at, |entry| {
        if entry.id != id {
            return;
        }
        if entry.state == SlotState::Started as u8 {
            entry.last_exit = code;
            entry.stopped_at = now;
            if let Some(error) = error {
                put_str(&mut entry.last_error, error);
            }
        }
        entry.state = SlotState::Stopped as u8;
        entry.pid = 0;
        entry.recyclable = false;
        if entry.stopped_at == 0 {
            entry.stopped_at = now;
        }
        if !entry.has_handle || entry.handle == handle {
            entry.has_handle = false;
            entry.reaped = true;
            entry.freed_at = now;
        }
    });
    broadcast_slot(at.index as usize);
}

/// Run by a process hosting worker `id` of slot `at` as the worker
/// stops, before it gives the process back: from now on `terminate` wakes
/// the process rather than asking the postmaster for SIGTERM, which would
/// reach the process as a spare or as its next worker. `false` (the
/// process must leave) if the worker was terminated already that way.
pub fn begin_give_back(at: SlotRef, id: i64) -> bool {
    let mut may = false;
    update_own(at, |entry| {
        if entry.id == id && (entry.recyclable || !entry.terminate_requested) {
            entry.recyclable = true;
            may = true;
        }
    });
    may
}

/// Whether worker `id` of slot `at` was asked to stop (`terminate`).
pub fn stop_asked(at: SlotRef, id: i64) -> bool {
    let Some(locked) = Locked::acquire(false) else {
        return true;
    };
    let Some(slot) = locked.slots().get(at.index as usize) else {
        return true;
    };
    slot.generation != at.generation || slot.id != id || slot.terminate_requested
}

/// Sends `signal` to the process of worker `id` if it runs our code and is
/// started, not giving its process back: under the registry lock, which a
/// worker needs to give its process back, so the signal reaches the
/// process while it still runs that worker (and is cleared before the
/// process runs the next). True if sent.
pub fn signal_running(id: i64, signal: i32) -> bool {
    signal_started(id, signal, false)
}

/// Wakes (SIGUSR1: the server's handler sets the latch) the process of
/// worker `id`, started and one that gives its process back when it
/// stops, so that it sees it was asked to stop; under the registry lock
/// as in [`signal_running`], so the signal reaches that process while it
/// still runs that worker, never a pid reused since. True if sent.
pub fn wake_giving_back(id: i64) -> bool {
    signal_started(id, libc::SIGUSR1, true)
}

fn signal_started(id: i64, signal: i32, recyclable: bool) -> bool {
    let Some(locked) = Locked::acquire(false) else {
        return false;
    };
    let Some(slot) = index_of(&locked, id).map(|i| &locked.slots()[i]) else {
        return false;
    };
    if slot.state != SlotState::Started as u8 || slot.pid <= 0 || slot.recyclable != recyclable {
        return false;
    }
    // SAFETY: kill has no memory effects; the pid is the worker's own,
    // read under the lock its process needs to stop being that worker.
    unsafe { libc::kill(slot.pid, signal) == 0 }
}
