//! Finding workers: by id (the slot this process found it in before,
//! else the ids kept beside the slots), by slot (a worker looking at
//! itself), and the few fields that a starting worker and a wait read,
//! without copying a slot's texts.

use super::locked::Locked;
use super::record::{lifecycle_of, Lifecycle, WorkerRecord};
use super::record_at;
use super::slot::{ResultState, SlotRef, SlotState};
use crate::spec::Kind;

/// The worker with `id`, if the registry still holds it.
pub fn find(id: i64) -> Option<WorkerRecord> {
    let locked = Locked::acquire(false)?;
    let index = index_of(&locked, id)?;
    Some(record_at(&locked, index))
}

/// What a worker needs to know of itself before it claims its slot: read
/// from the slot alone (no text), so that the claim, which wakes whoever
/// waits for the worker, comes as early as it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartFacts {
    pub kind: Kind,
    pub has_database: bool,
    /// It finds its postmaster handle itself (see `Slot::find_handle`).
    pub find_handle: bool,
    /// Its config was lost in a crash-reinitialisation: read it back from
    /// disk before it counts as started.
    pub config_missing: bool,
    /// What it connects as (a dynamic worker's OIDs).
    pub database_oid: u32,
    pub role_oid: u32,
    pub bypass_allowconn: bool,
}

/// The [`StartFacts`] of worker `id` in slot `at`.
pub fn start_facts(at: SlotRef, id: i64) -> Option<StartFacts> {
    let locked = Locked::acquire(false)?;
    let slot = locked.slots().get(at.index as usize)?;
    let mine = slot.id == id && slot.generation == at.generation;
    (mine && slot.state != SlotState::Free as u8).then(|| StartFacts {
        kind: slot.kind(),
        has_database: slot.database[0] != 0,
        find_handle: slot.find_handle,
        config_missing: slot.config.is_none() && !slot.is_static,
        database_oid: slot.database_oid,
        role_oid: slot.role_oid,
        bypass_allowconn: slot.bypass_allowconn,
    })
}

/// The worker `id` where the caller knows its slot (a worker looking at
/// itself): one slot read, whatever the registry's size.
pub fn find_at(at: SlotRef, id: i64) -> Option<WorkerRecord> {
    let locked = Locked::acquire(false)?;
    let slot = locked.slots().get(at.index as usize)?;
    (slot.id == id && slot.generation == at.generation && slot.state != SlotState::Free as u8)
        .then(|| record_at(&locked, at.index as usize))
}

std::thread_local! {
    /// Where this process last found some workers, by id: repeated
    /// lookups of the same workers (a launch and its waits, status) try
    /// that slot first.
    static FOUND: std::cell::Cell<[(i64, u32); 16]> = const { std::cell::Cell::new([(0, 0); 16]) };
}

/// Remembers that worker `id` is in slot `index` (see `FOUND`).
pub(super) fn remember_slot(id: i64, index: usize) {
    let mut found = FOUND.get();
    found[id as usize % found.len()] = (id, index as u32);
    FOUND.set(found);
}

/// The slot of worker `id`, under the lock held: the slot this process
/// found it in before, else found in the ids kept beside the slots (8
/// bytes a slot, not a slot each).
pub(super) fn index_of(locked: &Locked, id: i64) -> Option<usize> {
    if id == 0 {
        return None;
    }
    let slots = locked.slots();
    let holds = |i: usize| {
        slots
            .get(i)
            .is_some_and(|s| s.id == id && s.state != SlotState::Free as u8)
    };
    let found = FOUND.get();
    let (known, hint) = found[id as usize % found.len()];
    if known == id && holds(hint as usize) {
        return Some(hint as usize);
    }
    let index = locked.ids().iter().position(|&known| known == id)?;
    if !holds(index) {
        return None;
    }
    remember_slot(id, index);
    Some(index)
}

/// What a wait looks at of a worker: what its status is made of, and how
/// far it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub lifecycle: Lifecycle,
    /// Connected as its role (or needing no connection) in this run.
    pub connected: bool,
    /// Has exited at least once.
    pub exited: bool,
    pub result_state: ResultState,
    /// Its slot, whose events a waiter sleeps on.
    pub index: usize,
}

/// The [`Progress`] of worker `id`: one slot read, no copy of its texts.
pub fn progress(id: i64) -> Option<Progress> {
    let locked = Locked::acquire(false)?;
    let index = index_of(&locked, id)?;
    let slot = &locked.slots()[index];
    Some(Progress {
        index,
        lifecycle: lifecycle_of(slot),
        connected: slot.connected,
        exited: slot.last_exit >= 0,
        result_state: ResultState::from_u8(slot.result_state),
    })
}
