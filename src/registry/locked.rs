//! Holding the registry lock: the slots; beside them, in arrays of their
//! own, each slot's mark (one byte, so that the scans that look for a few
//! slots read a byte each), id (finding a worker by id reads 8 bytes a
//! slot) and reuse key (choosing the history entry to reuse, too); a slot
//! changed through a guard that keeps those true; the out-of-line texts.
//! Only the registry module uses it.

use std::sync::atomic::Ordering;

use pgrx::pg_sys;

use super::beside::{id_of, mark_of, reuse_key, MarkCounts, MARK_STATE};
use super::closing::Closing;
use super::reuse::Candidates;
use super::shmem::{ids_offset, marks_offset, reuse_offset, slots_offset, Header, HEADER, LOCK};
use super::slot::{ResultState, Slot, SlotState};
use super::texts::{self, TextRef};

/// Holds the registry lock; releases it when dropped, also while
/// unwinding from an error.
pub(super) struct Locked {
    lock: *mut pg_sys::LWLock,
    header: *mut Header,
}

impl Locked {
    pub(super) fn acquire(exclusive: bool) -> Option<Locked> {
        let header = HEADER.load(Ordering::Acquire);
        let lock = LOCK.load(Ordering::Acquire);
        if header.is_null() || lock.is_null() {
            return None;
        }
        let mode = if exclusive {
            pg_sys::LWLockMode::LW_EXCLUSIVE
        } else {
            pg_sys::LWLockMode::LW_SHARED
        };
        // SAFETY: `lock` points at our named tranche's LWLock, created by
        // the postmaster before any backend or worker could run.
        unsafe { pg_sys::LWLockAcquire(lock, mode) };
        Some(Locked { lock, header })
    }

    pub(super) fn slots(&self) -> &[Slot] {
        // SAFETY: the header is followed by `capacity` slots (see
        // `shmem_size`), and we hold the lock that guards them.
        unsafe {
            let capacity = (*self.header).capacity as usize;
            let base = (self.header as *mut u8).add(slots_offset()) as *const Slot;
            std::slice::from_raw_parts(base, capacity)
        }
    }

    /// One mark per slot (see [`mark_of`]), kept up to date by
    /// [`SlotMut`].
    pub(super) fn marks(&self) -> &[u8] {
        // SAFETY: the slots are followed by `capacity` marks (see
        // `shmem_size`), guarded by the same lock.
        unsafe {
            let capacity = (*self.header).capacity as usize;
            let base = (self.header as *mut u8).add(marks_offset(capacity as u32));
            std::slice::from_raw_parts(base, capacity)
        }
    }

    /// The id of the worker in each slot, 0 for a free one (see
    /// [`id_of`]), kept up to date by [`SlotMut`].
    pub(super) fn ids(&self) -> &[i64] {
        // SAFETY: the marks are followed by `capacity` ids, 8-aligned (see
        // `shmem_size`), guarded by the same lock.
        unsafe {
            let capacity = (*self.header).capacity as usize;
            let base = (self.header as *mut u8).add(ids_offset(capacity as u32)) as *const i64;
            std::slice::from_raw_parts(base, capacity)
        }
    }

    /// Each slot's [`reuse_key`], kept up to date by [`SlotMut`].
    pub(super) fn reuse_keys(&self) -> &[i64] {
        // SAFETY: the ids are followed by `capacity` reuse keys (see
        // `shmem_size`), guarded by the same lock.
        unsafe {
            let capacity = (*self.header).capacity as usize;
            let base = (self.header as *mut u8).add(reuse_offset(capacity as u32)) as *const i64;
            std::slice::from_raw_parts(base, capacity)
        }
    }

    /// The indices of the slots whose mark has any bit of `bits` (or,
    /// with `state`, whose state is that).
    pub(super) fn marked(&self, bits: u8, state: Option<SlotState>) -> Vec<usize> {
        self.marks()
            .iter()
            .enumerate()
            .filter(|(_, &m)| match state {
                Some(state) => m & MARK_STATE == state as u8,
                None => m & bits != 0,
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Slot `index`, to change (the lock must be held exclusively); its
    /// mark follows when the returned guard is dropped.
    pub(super) fn slot_mut(&mut self, index: usize) -> Option<SlotMut<'_>> {
        (index < self.slots().len()).then_some(SlotMut {
            locked: self,
            index,
        })
    }

    /// The list of the smallest reuse keys (see `reuse.rs`).
    pub(super) fn candidates(&self) -> Candidates {
        // SAFETY: guarded by the lock we hold.
        unsafe { (*self.header).candidates }
    }

    /// Replaces that list (the lock held exclusively).
    pub(super) fn set_candidates(&mut self, list: Candidates) {
        // SAFETY: guarded by the lock we hold exclusively.
        unsafe { (*self.header).candidates = list };
    }

    /// The databases closed to new workers (see `closing.rs`).
    pub(super) fn closing(&self) -> Closing {
        // SAFETY: guarded by the lock we hold.
        unsafe { (*self.header).closing }
    }

    /// Replaces that table (the lock held exclusively).
    pub(super) fn set_closing(&mut self, table: Closing) {
        // SAFETY: guarded by the lock we hold exclusively.
        unsafe { (*self.header).closing = table };
    }

    /// How many slots are free, queued and being registered.
    pub(super) fn counts(&self) -> MarkCounts {
        // SAFETY: the header's counts are guarded by the lock we hold.
        unsafe { (*self.header).counts }
    }

    /// Keeps what is kept beside slot `index` true to `slot`.
    fn set_beside(&mut self, index: usize, slot: &Slot) {
        let base = self.header as *mut u8;
        let mark = mark_of(slot);
        // SAFETY: as in `marks`, `ids` and `reuse_keys`; the caller holds
        // the lock exclusively.
        unsafe {
            let capacity = (*self.header).capacity;
            let old = std::mem::replace(&mut *base.add(marks_offset(capacity) + index), mark);
            if old != mark {
                (*self.header).counts.count(old, -1);
                (*self.header).counts.count(mark, 1);
            }
            *(base.add(ids_offset(capacity)) as *mut i64).add(index) = id_of(slot);
            let key = reuse_key(slot);
            let old = std::mem::replace(
                &mut *(base.add(reuse_offset(capacity)) as *mut i64).add(index),
                key,
            );
            if old != key {
                (*self.header).candidates.changed(index, key);
            }
        }
    }
}

/// A slot being changed under the exclusive lock; dropping it updates the
/// slot's mark.
pub(super) struct SlotMut<'a> {
    locked: &'a mut Locked,
    index: usize,
}

impl std::ops::Deref for SlotMut<'_> {
    type Target = Slot;

    fn deref(&self) -> &Slot {
        &self.locked.slots()[self.index]
    }
}

impl std::ops::DerefMut for SlotMut<'_> {
    fn deref_mut(&mut self) -> &mut Slot {
        // SAFETY: as in `Locked::slots`; the lock is held exclusively and
        // this guard is the only way to this slot for its life.
        unsafe {
            let base = (self.locked.header as *mut u8).add(slots_offset()) as *mut Slot;
            &mut *base.add(self.index)
        }
    }
}

impl Drop for SlotMut<'_> {
    fn drop(&mut self) {
        let slot = self.locked.slots()[self.index];
        self.locked.set_beside(self.index, &slot);
    }
}

impl Locked {
    /// The id the next new worker gets; counts up, also across restarts
    /// (see `ids.rs`).
    pub(super) fn take_next_id(&mut self) -> i64 {
        // SAFETY: we hold the registry lock exclusively; next_id is guarded
        // by it.
        unsafe {
            let id = (*self.header).next_id;
            super::ids::cover(id, &mut (*self.header).ids_end);
            (*self.header).next_id += 1;
            id
        }
    }

    fn texts(&self) -> (*mut u8, i32) {
        // SAFETY: the header was initialised by the postmaster and these
        // fields never change afterwards.
        unsafe {
            (
                (self.header as *mut u8).add((*self.header).texts_offset),
                (*self.header).texts_tranche,
            )
        }
    }

    /// A copy of an out-of-line text of a slot (texts are freed only under
    /// the exclusive lock, so holding any mode keeps them valid).
    pub(super) fn text(&self, r: TextRef) -> Vec<u8> {
        let (place, tranche) = self.texts();
        // SAFETY: `r` is linked from a slot and we hold the registry lock.
        unsafe { texts::read(place, tranche, r) }
    }

    /// An out-of-line text of a slot where it lies, for as long as the
    /// lock is held.
    pub(super) fn text_in_place(&self, r: TextRef) -> &[u8] {
        let (place, tranche) = self.texts();
        // SAFETY: as in `text`; the borrow ends before the lock is released.
        unsafe {
            texts::with(place, tranche, r, |t| {
                std::slice::from_raw_parts(t.as_ptr(), t.len())
            })
        }
    }

    /// Runs `read` on an out-of-line text of a slot where it lies.
    pub(super) fn with_text<R>(&self, r: TextRef, read: impl FnOnce(&[u8]) -> R) -> R {
        let (place, tranche) = self.texts();
        // SAFETY: as in `text`.
        unsafe { texts::with(place, tranche, r, read) }
    }

    /// Frees a result unlinked from its slot (exclusive lock held) and
    /// takes it off the results' total.
    pub(super) fn free_result(&self, r: TextRef) {
        if r.is_none() {
            return;
        }
        self.free_text(r);
        // SAFETY: the header lives as long as the lock is held.
        unsafe {
            (*self.header)
                .result_bytes
                .fetch_sub(r.len, Ordering::AcqRel)
        };
    }

    /// Frees every out-of-line text of a slot's copy `slot` (config, its
    /// jsonb, the full error, the result): the slot is being emptied or
    /// given to a new worker (exclusive lock held).
    pub(super) fn free_texts_of(&self, slot: &Slot) {
        self.free_text(slot.config);
        self.free_text(slot.config_jsonb);
        self.free_text(slot.error);
        self.free_result(slot.result);
    }

    /// Empties slot `index`: its texts freed and unlinked, the slot free
    /// for a new worker (exclusive lock held).
    pub(super) fn empty_slot(&mut self, index: usize) {
        let Some(slot) = self.slots().get(index).copied() else {
            return;
        };
        self.free_texts_of(&slot);
        if let Some(mut entry) = self.slot_mut(index) {
            entry.config = TextRef::NONE;
            entry.config_jsonb = TextRef::NONE;
            entry.error = TextRef::NONE;
            entry.result = TextRef::NONE;
            entry.result_state = ResultState::None as u8;
            entry.state = SlotState::Free as u8;
            entry.id = 0;
        }
    }

    /// Frees a text unlinked from its slot (exclusive lock held).
    pub(super) fn free_text(&self, r: TextRef) {
        if r.is_none() {
            return;
        }
        let (place, tranche) = self.texts();
        // SAFETY: the caller unlinked `r` under the exclusive lock; the
        // header lives as long as the lock is held.
        unsafe {
            texts::free(place, tranche, r);
            (*self.header).text_bytes.fetch_sub(r.len, Ordering::AcqRel);
        }
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        // SAFETY: we acquired this lock in `acquire` and have not released it.
        unsafe { pg_sys::LWLockRelease(self.lock) };
    }
}

/// Frees a text that was never linked to a slot.
pub(super) fn drop_text(r: TextRef) {
    if r.is_none() {
        return;
    }
    if let Some(locked) = Locked::acquire(false) {
        locked.free_text(r);
    }
}
