//! Taking a slot for a new worker and giving it back: the reservation a
//! launch holds between taking a slot and the postmaster's registration
//! (dropping it gives the slot, its texts and any config kept on disk
//! back), and what the launcher records on the slot meanwhile.

use pgrx::pg_sys;

use super::beside::{HOLDS_RESULT, MARK_RESULT, MARK_STATE, MARK_SWEEP};
use super::locked::drop_text;
use super::locked::Locked;
use super::queue::{place, Admission, Placement, Refusal};
use super::shmem::{self, store_text};
use super::slot::{fill_slot, put_str, PgHandle, ResultState, Slot, SlotRef, SlotState};
use super::texts::{remove_config, TextRef};
use super::{broadcast_slot, remember_slot, update_own};
use crate::codec;
use crate::workerdef::WorkerDef;

/// A slot taken for a worker that is not registered with the postmaster
/// yet. Dropping it gives the slot back, also while unwinding from an
/// error raised inside the server's registration: only [`Reservation::keep`]
/// (once the postmaster has the worker) makes the slot stay taken.
#[derive(Debug)]
pub struct Reservation {
    pub at: SlotRef,
    pub id: i64,
    /// Put in the launch queue rather than registered now: the dispatcher
    /// registers it when there is room.
    pub queued: bool,
    kept: bool,
}

/// Whom a worker runs as, resolved and checked at launch.
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    pub role_oid: u32,
    /// InvalidOid (0) for no database connection.
    pub database_oid: u32,
    pub bypass_allowconn: bool,
}

impl Reservation {
    /// The worker is registered: the slot stays its own. Returns the id.
    pub fn keep(mut self) -> i64 {
        self.kept = true;
        super::held::unreserved(self.at, self.id);
        self.id
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.kept {
            release_at(self.at, self.id);
            super::held::unreserved(self.at, self.id);
        }
    }
}

/// Takes a slot for a new worker: a free one, else the one whose worker
/// stopped longest ago (history makes room; its texts are freed). Static
/// slots are never taken. `adm` says whether the worker may register now
/// or goes into the launch queue (see `queue.rs`). `pm_stopped` tells
/// whether a stopped worker is also gone from the postmaster. The id is
/// new and never reused. The config is copied out of line first, outside
/// the registry lock.
pub fn reserve(
    def: &WorkerDef,
    config_jsonb: &[u8],
    launched_by: &str,
    grant: Grant,
    adm: &Admission,
    pm_stopped: impl Fn(PgHandle) -> bool,
) -> Result<Reservation, Refusal> {
    let capacity = shmem::capacity();
    let whose = (grant.role_oid, adm.by_superuser);
    let config = store_making_room(&codec::encode(&def.config), whose, &pm_stopped)
        .ok_or(Refusal::TextsFull)?;
    let Some(jsonb) = store_making_room(config_jsonb, whose, &pm_stopped) else {
        drop_text(config);
        return Err(Refusal::TextsFull);
    };
    let Some(mut locked) = Locked::acquire(true) else {
        drop_text(config);
        drop_text(jsonb);
        return Err(Refusal::RegistryFull(capacity));
    };
    let placement = match place(&locked, (grant.role_oid, grant.database_oid), adm) {
        Ok(placement) => placement,
        Err(refusal) => {
            drop(locked);
            drop_text(config);
            drop_text(jsonb);
            return Err(refusal);
        }
    };
    // A free slot, else the history entry that stopped longest ago among
    // those the postmaster has forgotten too (those that keep a result
    // last, the role's own before other roles'): known from the marks,
    // reuse keys and ids kept beside the slots; the postmaster is asked
    // only if none is known yet.
    let free = (locked.counts().free > 0)
        .then(|| {
            locked
                .marks()
                .iter()
                .position(|&m| m & MARK_STATE == SlotState::Free as u8)
        })
        .flatten();
    let index = free
        .or_else(|| take_reusable(&mut locked, grant.role_oid))
        .or_else(|| oldest_unswept(&locked, grant.role_oid, &pm_stopped));
    let Some(index) = index else {
        drop(locked);
        drop_text(config);
        drop_text(jsonb);
        return Err(Refusal::RegistryFull(capacity));
    };
    let id = locked.take_next_id();
    let old = locked.slots()[index];
    if old.state != SlotState::Free as u8 {
        locked.free_texts_of(&old);
    }
    let Some(mut entry) = locked.slot_mut(index) else {
        return Err(Refusal::RegistryFull(capacity));
    };
    let generation = entry.generation.wrapping_add(1).max(1);
    // SAFETY: reading the clock has no preconditions.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    fill_slot(&mut entry, id, generation, def, Some(launched_by), now);
    entry.config = config;
    entry.config_jsonb = jsonb;
    entry.role_oid = grant.role_oid;
    entry.database_oid = grant.database_oid;
    entry.bypass_allowconn = grant.bypass_allowconn;
    entry.by_superuser = adm.by_superuser;
    entry.quota = adm.quota.map_or(-1, |q| q.min(i32::MAX as u32) as i32);
    if let Placement::Queue(seq) = placement {
        entry.state = SlotState::Queued as u8;
        entry.queue_seq = seq;
    }
    // A worker that must come back with its config after a
    // crash-reinitialisation gets a copy on disk (see `start.rs`).
    entry.config_file = def.restart_after.is_some() || matches!(placement, Placement::Queue(_));
    drop(entry);
    drop(locked);
    if old.state != SlotState::Free as u8 && old.config_file {
        remove_config(old.id);
    }
    remember_slot(id, index);
    let at = SlotRef {
        index: index as u32,
        generation,
    };
    super::held::reserved(at, id);
    Ok(Reservation {
        at,
        id,
        queued: matches!(placement, Placement::Queue(_)),
        kept: false,
    })
}

/// The slot a new worker of `role_oid` takes from the history (see
/// `reuse.rs`), or `None` when no history entry may be reused now: the
/// oldest that keeps no result, else the oldest of the role's own among
/// the oldest that keep one, else the oldest of all. The caller fills the
/// slot at once, under the same exclusive lock.
fn take_reusable(locked: &mut Locked, role_oid: u32) -> Option<usize> {
    let mut list = locked.candidates();
    let slots = locked.slots();
    let taken = list.take(locked.reuse_keys(), |index, key| {
        key < HOLDS_RESULT || slots[index].role_oid == role_oid
    });
    locked.set_candidates(list);
    taken
}

/// Failing [`take_reusable`]: the stopped dynamic worker that stopped longest
/// ago among those whose reaping nobody has seen yet, asking the
/// postmaster (`pm_stopped`) whether it forgot it.
fn oldest_unswept(
    locked: &Locked,
    role_oid: u32,
    pm_stopped: &impl Fn(PgHandle) -> bool,
) -> Option<usize> {
    let slots = locked.slots();
    // In the order `take_reusable` keeps: no result, the role's own, any.
    let rank = |slot: &Slot| match (slot.result_state != ResultState::None as u8, slot.role_oid) {
        (false, _) => 0,
        (true, role) if role == role_oid => 1,
        (true, _) => 2,
    };
    locked
        .marked(MARK_SWEEP, None)
        .into_iter()
        .filter(|&i| !slots[i].is_static && pm_stopped(slots[i].handle))
        .min_by_key(|&i| (rank(&slots[i]), slots[i].stopped_at, slots[i].id))
}

/// Stores `text` out of line for a launch of role `whose.0` (`whose.1`:
/// by a superuser). When `lightdb_bgw.max_text_memory` is reached, history
/// makes room as it does for slots, one entry at a time, the worker that
/// stopped longest ago first, among the entries of the launching role and
/// those that keep no result: one role's launches never drop another
/// role's unread results. A launch not by a superuser may not take the
/// last eighth of the area ([`SUPERUSER_SHARE`]), so that one role filling
/// it leaves superusers room to launch.
fn store_making_room(
    text: &[u8],
    whose: (u32, bool),
    pm_stopped: &impl Fn(PgHandle) -> bool,
) -> Option<TextRef> {
    let (role_oid, by_superuser) = whose;
    loop {
        if within_share(text.len() as u64, by_superuser) {
            if let Some(stored) = store_text(text) {
                return Some(stored);
            }
        }
        let mut locked = Locked::acquire(true)?;
        let index = oldest_history_of(&locked, role_oid, pm_stopped)?;
        let old = locked.slots()[index];
        locked.empty_slot(index);
        drop(locked);
        if old.config_file {
            remove_config(old.id);
        }
        broadcast_slot(index);
    }
}

/// The text area's share kept for superusers' launches: one part in this
/// many.
const SUPERUSER_SHARE: u64 = 8;

/// Whether `len` bytes more fit in the text area's share of a launch by a
/// superuser (all of it) or by anyone else (all but [`SUPERUSER_SHARE`]),
/// counted in bytes stored.
pub(super) fn within_share(len: u64, by_superuser: bool) -> bool {
    let (used, limit) = shmem::text_use();
    by_superuser || used + len <= limit - limit / SUPERUSER_SHARE
}

/// The stopped dynamic worker that stopped longest ago among those of role
/// `role_oid` and those that keep no result, whose process the postmaster
/// has forgotten.
fn oldest_history_of(
    locked: &Locked,
    role_oid: u32,
    pm_stopped: &impl Fn(PgHandle) -> bool,
) -> Option<usize> {
    let slots = locked.slots();
    locked
        .marks()
        .iter()
        .enumerate()
        .filter(|&(_, &mark)| mark & MARK_STATE == SlotState::Stopped as u8)
        .filter(|&(i, &mark)| {
            let slot = &slots[i];
            !slot.is_static
                && (slot.role_oid == role_oid || mark & MARK_RESULT == 0)
                && (mark & MARK_SWEEP == 0 || pm_stopped(slot.handle))
        })
        .map(|(i, _)| i)
        .min_by_key(|&i| (slots[i].stopped_at, slots[i].id))
}

/// Names a reserved worker after its id is known.
pub fn rename(r: &Reservation, name: &str) {
    update_own(r.at, |entry| put_str(&mut entry.name, name));
}

/// Gives back the slot reserved at `at` for worker `id`, if it still is (a
/// reservation whose registration failed): nothing is left, neither the
/// slot nor its texts nor a config kept on disk.
pub(super) fn release_at(at: SlotRef, id: i64) {
    if let Some(mut locked) = Locked::acquire(true) {
        let entry = locked.slots()[at.index as usize];
        if entry.id == id && entry.generation == at.generation {
            locked.empty_slot(at.index as usize);
        }
    }
    remove_config(id);
}

/// Records the postmaster's handle of a registered worker, so any session
/// can ask the postmaster about it or terminate it. Returns whether the
/// worker was terminated meanwhile (read under the same lock).
pub fn attach_handle(at: SlotRef, handle: PgHandle, lent: bool) -> bool {
    let mut terminate_requested = false;
    update_own(at, |entry| {
        terminate_requested = entry.terminate_requested;
        // A spare's worker that already ended and gave the process back:
        // the handle is the process's again, not the worker's.
        if entry.reaped {
            return;
        }
        entry.handle = handle;
        entry.has_handle = true;
        entry.lent = lent;
    });
    terminate_requested
}
