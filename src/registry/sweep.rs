//! What the dispatcher learns after each of the postmaster's
//! notifications: which stopped workers the postmaster has forgotten too
//! (their slots free again, marked so that nobody asks it again), and
//! which workers not running their own code yet it has since started or
//! let go of; and, for the benchmark, when it learned a slot was freed.

use super::beside::MARK_SWEEP;
use super::locked::Locked;
#[cfg(feature = "bench")]
use super::lookup::index_of;
use super::slot::{PgHandle, SlotState};

/// Marks the stopped workers the postmaster has forgotten too, so that
/// nobody asks it about them again (run by the dispatcher after each of
/// the postmaster's notifications, which came at `now`: that is when
/// their postmaster slots were freed, at the latest). Returns their slots,
/// and those of workers registered but not running their own code yet
/// that the postmaster has since started or let go of: the changes whose
/// waiters only the dispatcher can wake. `pm_pid` is what the postmaster
/// says of a handle: its pid, 0 before it forks, `None` once it let go.
pub fn sweep_reaped(now: i64, pm_pid: impl Fn(PgHandle) -> Option<i32>) -> Vec<usize> {
    let mut found = Vec::new();
    let Some(mut locked) = Locked::acquire(true) else {
        return found;
    };
    for index in locked.marked(MARK_SWEEP, None) {
        let Some(mut slot) = locked.slot_mut(index) else {
            continue;
        };
        if slot.state == SlotState::Stopped as u8
            && slot.has_handle
            && !slot.reaped
            && pm_pid(slot.handle).is_none()
        {
            slot.reaped = true;
            slot.freed_at = now;
            found.push(index);
        }
    }
    // Forked (started, as the postmaster's handle says), or gone before it
    // ran its code (the fork failed, it died in the server's set-up).
    for index in locked.marked(0, Some(SlotState::NotYetStarted)) {
        let slot = &locked.slots()[index];
        if slot.has_handle && pm_pid(slot.handle) != Some(0) {
            found.push(index);
        }
    }
    found
}

/// When the dispatcher learned that the postmaster had freed worker
/// `id`'s slot (for the benchmark's queue figure).
#[cfg(feature = "bench")]
pub fn freed_at(id: i64) -> Option<i64> {
    let locked = Locked::acquire(false)?;
    let index = index_of(&locked, id)?;
    let at = locked.slots()[index].freed_at;
    (at != 0).then_some(at)
}
