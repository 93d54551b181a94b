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

#[cfg(test)]
mod unit {
    use super::*;
    use crate::config::KindConfig;
    use crate::registry::slot::{bytes_of, fill_slot};
    use crate::spec::StartTime;
    use crate::workerdef::WorkerDef;

    /// A slot holding a `sleep` worker as a launch leaves it, with
    /// `restart_after` (seconds) and texts out of line.
    fn slot(restart_after: Option<u32>) -> Slot {
        // SAFETY: a slot is plain numbers and bytes; all zeros is a free
        // slot.
        let mut slot: Slot = unsafe { std::mem::zeroed() };
        let def = WorkerDef {
            kind: Kind::Sleep,
            name: "w".into(),
            database: None,
            role: None,
            start_time: StartTime::RecoveryFinished,
            restart_after,
            config: KindConfig::defaults(Kind::Sleep),
        };
        fill_slot(&mut slot, 7, 1, &def, Some("alice"), 100);
        slot.config = TextRef { ptr: 64, len: 10 };
        slot.config_jsonb = TextRef { ptr: 128, len: 10 };
        slot
    }

    #[test]
    fn a_worker_taken_from_the_queue_and_not_started_is_queued_again() {
        let mut taken = slot(None);
        taken.queue_seq = 3;
        taken.has_handle = true;
        recover_slot(&mut taken, 200);
        assert_eq!(taken.state, SlotState::Queued as u8);
        assert_eq!(taken.queue_seq, 3, "in its place");
        assert!(taken.config.is_none() && !taken.has_handle);
        assert_eq!(taken.stopped_at, 0);

        // A restartable one the postmaster had registered keeps its
        // registration: the postmaster starts it again itself.
        let mut registered = slot(Some(60));
        registered.queue_seq = 3;
        registered.has_handle = true;
        recover_slot(&mut registered, 200);
        assert_eq!(registered.state, SlotState::NotYetStarted as u8);
        assert!(registered.find_handle);

        // Terminated while it was being registered: stopped, not queued.
        let mut terminated = slot(None);
        terminated.queue_seq = 3;
        terminated.terminate_requested = true;
        recover_slot(&mut terminated, 200);
        assert_eq!(terminated.state, SlotState::Stopped as u8);
        assert_eq!(terminated.stopped_at, 200);
    }

    #[test]
    fn running_workers_come_back_or_stop_with_the_reason() {
        let mut once = slot(None);
        once.state = SlotState::Started as u8;
        once.started_at = 150;
        once.pid = 42;
        recover_slot(&mut once, 200);
        assert_eq!(once.state, SlotState::Stopped as u8);
        assert_eq!((once.pid, once.stopped_at), (0, 200));
        assert_eq!(bytes_of(&once.last_error), CRASH_NOTE.as_bytes());

        let mut restartable = slot(Some(1));
        restartable.state = SlotState::Started as u8;
        restartable.started_at = 150;
        restartable.queue_seq = 9;
        recover_slot(&mut restartable, 200);
        assert_eq!(restartable.state, SlotState::NotYetStarted as u8);
        assert!(restartable.find_handle, "it finds its new handle itself");
        assert_eq!(bytes_of(&restartable.last_error), CRASH_NOTE.as_bytes());

        let mut stopped = slot(None);
        stopped.state = SlotState::Stopped as u8;
        stopped.stopped_at = 120;
        recover_slot(&mut stopped, 200);
        assert_eq!(stopped.state, SlotState::Stopped as u8);
        assert_eq!(stopped.stopped_at, 120, "history is kept as it was");
        assert!(stopped.config_jsonb.is_none(), "its texts are gone");
    }
}
