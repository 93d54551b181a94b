//! What a registry slot becomes after a crash-reinitialisation: the
//! slots are saved across it (the postmaster rebuilds shared memory), and
//! each is brought back here, its out-of-line texts and the postmaster's
//! handles gone with the old memory.

use super::slot::{put_str, ResultState, Slot, SlotState};
use super::texts::TextRef;
use crate::spec::Kind;

/// What the registry says of workers that were running or waiting when the
/// server crashed.
pub(super) const CRASH_NOTE: &str = "interrupted by a crash-reinitialisation of the server";

/// Brings a slot saved before a crash-reinitialisation into the new
/// registry. The postmaster's handles are void (its slots were rebuilt), so
/// they are dropped; a worker that was running or waiting comes back if it
/// has a restart policy and was not terminated (the postmaster restarts it
/// at once), and is stopped otherwise; one taken from the launch queue
/// and not started yet is queued again. Anything unreadable is freed.
pub(super) fn recover_slot(slot: &mut Slot, now: i64) {
    let state = slot.state;
    if state > SlotState::Queued as u8 || slot.id <= 0 {
        slot.state = SlotState::Free as u8;
        slot.id = 0;
        return;
    }
    if state == SlotState::Free as u8 {
        return;
    }
    let had_handle = std::mem::replace(&mut slot.has_handle, false);
    slot.reaped = false;
    // Out-of-line texts and results went with the old shared memory.
    slot.config = TextRef::NONE;
    slot.config_jsonb = TextRef::NONE;
    slot.error = TextRef::NONE;
    slot.result = TextRef::NONE;
    slot.result_state = ResultState::None as u8;
    slot.result_rows = 0;
    if state == SlotState::Stopped as u8 {
        return;
    }
    if state == SlotState::Queued as u8 {
        // Still queued, in its place: the dispatcher registers it when
        // there is room; its config comes back from disk.
        slot.terminate_requested = false;
        return;
    }
    // Taken from the queue and not started yet when the crash came (being
    // registered, or registered and dropped by the postmaster, which keeps
    // only restartable workers): queued again, in its place; its config
    // comes back from disk as a queued worker's does.
    let restartable = slot.restart_secs >= 0 && slot.kind != Kind::Raw as u8;
    if state == SlotState::NotYetStarted as u8
        && slot.queue_seq != 0
        && slot.started_at == 0
        && !slot.terminate_requested
        && !(restartable && had_handle)
    {
        slot.state = SlotState::Queued as u8;
        return;
    }
    let was_running = state == SlotState::Started as u8;
    slot.pid = 0;
    slot.connected = false;
    slot.recyclable = false;
    slot.lent = false;
    let comes_back =
        slot.restart_secs >= 0 && !slot.terminate_requested && slot.kind != Kind::Raw as u8;
    if comes_back {
        slot.state = SlotState::NotYetStarted as u8;
        slot.find_handle = true;
    } else {
        slot.state = SlotState::Stopped as u8;
        slot.stopped_at = now;
    }
    if was_running || !comes_back {
        put_str(&mut slot.last_error, CRASH_NOTE);
    }
}
