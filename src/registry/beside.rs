//! What is kept beside the slots, in arrays of their own (see
//! `locked.rs`), so that the scans that look for a few slots read a few
//! bytes a slot instead of a whole slot: each slot's mark (its state and
//! a few flags), its id, its reuse key; and the counts of marks the
//! header keeps. Each is derived from the slot alone.

use super::slot::{ResultState, Slot, SlotState};

/// A slot's mark: one byte per slot, kept beside the slots (see
/// `locked.rs`), so that scans for the few slots that matter (queued,
/// being registered, to sweep, holding a result) read a byte each instead
/// of a whole slot. The low bits are the state.
pub(super) const MARK_STATE: u8 = 0b111;
/// Stopped, with a postmaster handle not yet seen reaped.
pub(super) const MARK_SWEEP: u8 = 1 << 3;
/// Holds a result (or a failed run's mark).
pub(super) const MARK_RESULT: u8 = 1 << 4;
/// Taken and being registered with the postmaster (counts as a used
/// postmaster slot).
pub(super) const MARK_IN_FLIGHT: u8 = 1 << 5;

/// How many slots' marks say free, queued and being registered, kept in
/// the registry's header beside the marks so that a launch need not count
/// them.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct MarkCounts {
    pub(super) free: u32,
    pub(super) queued: u32,
    pub(super) in_flight: u32,
}

impl MarkCounts {
    /// Counts a slot with `mark` in (or, with `-1`, out).
    pub(super) fn count(&mut self, mark: u8, sign: i32) {
        let state = mark & MARK_STATE;
        let bump = |n: &mut u32| *n = n.wrapping_add_signed(sign);
        if state == SlotState::Free as u8 {
            bump(&mut self.free);
        }
        if state == SlotState::Queued as u8 {
            bump(&mut self.queued);
        }
        if mark & MARK_IN_FLIGHT != 0 {
            bump(&mut self.in_flight);
        }
    }
}

/// The mark of `slot`.
pub(super) fn mark_of(slot: &Slot) -> u8 {
    let mut mark = slot.state & MARK_STATE;
    if slot.state == SlotState::Stopped as u8 && slot.has_handle && !slot.reaped {
        mark |= MARK_SWEEP;
    }
    if slot.result_state != ResultState::None as u8 {
        mark |= MARK_RESULT;
    }
    if slot.state == SlotState::NotYetStarted as u8
        && !slot.has_handle
        && !slot.find_handle
        && !slot.is_static
    {
        mark |= MARK_IN_FLIGHT;
    }
    mark
}

/// The id of the worker in `slot` as the ids beside the slots keep it
/// (see `locked.rs`): 0 for a free slot.
pub(super) fn id_of(slot: &Slot) -> i64 {
    if slot.state == SlotState::Free as u8 {
        0
    } else {
        slot.id
    }
}

/// Added to the reuse key of an entry that keeps a run's result: such
/// entries are reused only after every entry that keeps none (stop times
/// are far below it).
pub(super) const HOLDS_RESULT: i64 = 1 << 62;

/// The order in which history entries are given to new workers, as kept
/// beside the slots (see `locked.rs`): for a stopped dynamic worker the
/// postmaster is known to have forgotten, when it stopped (the earliest
/// goes first), after [`HOLDS_RESULT`] if it keeps a result; `i64::MAX`
/// for every other slot.
pub(super) fn reuse_key(slot: &Slot) -> i64 {
    let reusable = slot.state == SlotState::Stopped as u8
        && !slot.is_static
        && (slot.reaped || !slot.has_handle);
    if !reusable {
        i64::MAX
    } else if slot.result_state != ResultState::None as u8 {
        HOLDS_RESULT + slot.stopped_at.max(0)
    } else {
        slot.stopped_at
    }
}
