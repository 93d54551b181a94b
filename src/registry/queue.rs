//! Room for a worker and the launch queue: whether a launch may register
//! now (its role's quota, the postmaster slots left once the superuser
//! reserve is kept, its database not closed by a database command, see
//! `closing.rs`), decided under the registry lock so that concurrent
//! launches count each other; and which queued worker the dispatcher
//! registers next, first in, first out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::pg_sys;

use super::beside::MARK_STATE;
use super::closing::NotClosed;
use super::locked::Locked;
use super::record::WorkerRecord;
use super::slot::{Slot, SlotRef, SlotState};
use super::{broadcast, record_at, update_own};

/// Counts the free postmaster slots; read under the registry lock, so
/// that launches in flight are counted once.
pub type PmFree = fn() -> Option<u32>;

/// What a launch may take, as the launcher found it (`capacity.rs`).
#[derive(Debug, Clone, Copy)]
pub struct Admission {
    /// The role's quota (`lightdb_bgw.max_workers_per_role`), `None` for
    /// no limit.
    pub quota: Option<u32>,
    /// Launched by a superuser: may take the reserved postmaster slots.
    pub by_superuser: bool,
    /// Counts the free postmaster slots; `None`: not checked.
    pub pm_free: Option<PmFree>,
    /// Postmaster slots kept for superusers' launches.
    pub reserved: u32,
    /// `queue => true`: the queue's bound (`lightdb_bgw.max_queued`).
    pub queue: Option<u32>,
    /// How many of the role's workers may be queued
    /// (`lightdb_bgw.max_queued_per_role`), `None` for no bound but the
    /// queue's.
    pub queue_per_role: Option<u32>,
}

impl Admission {
    /// No check at all: a superuser's `launch_raw`, and the extension's
    /// own registrations.
    pub fn unchecked() -> Admission {
        Admission {
            quota: None,
            by_superuser: true,
            pm_free: None,
            reserved: 0,
            queue: None,
            queue_per_role: None,
        }
    }
}

/// Why a worker cannot be registered now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoom {
    /// Its role has this many registered workers, its quota.
    Quota(u32),
    /// The free postmaster slots left are this superuser reserve.
    Reserved(u32),
    /// No postmaster slot is free.
    Postmaster,
}

/// Whether one more worker of `role_oid` fits now. Registered workers
/// (not yet started or started, their work not done) count toward their
/// role's quota; those
/// being registered right now count as used postmaster slots.
pub(super) fn room(
    locked: &Locked,
    role_oid: u32,
    quota: Option<u32>,
    by_superuser: bool,
    pm_free: Option<u32>,
    reserved: u32,
) -> Result<(), NoRoom> {
    let marks = locked.marks();
    if let Some(quota) = quota {
        let slots = locked.slots();
        let of_role = marks
            .iter()
            .zip(slots)
            .filter(|&(&m, slot)| counts_toward_quota(m, slot) && slot.role_oid == role_oid)
            .count() as u32;
        if of_role >= quota {
            return Err(NoRoom::Quota(quota));
        }
    }
    if let Some(free) = pm_free {
        let in_flight = locked.counts().in_flight;
        let free = free.saturating_sub(in_flight);
        if free == 0 {
            return Err(NoRoom::Postmaster);
        }
        if !by_superuser && free <= reserved {
            return Err(NoRoom::Reserved(reserved));
        }
    }
    Ok(())
}

/// How many workers are queued, and the place after the last one.
pub(super) fn queue_census(locked: &Locked) -> (u32, u64) {
    if locked.counts().queued == 0 {
        return (0, 1);
    }
    let slots = locked.slots();
    locked
        .marked(0, Some(SlotState::Queued))
        .into_iter()
        .fold((0, 1), |(n, next), i| {
            (n + 1, next.max(slots[i].queue_seq + 1))
        })
}

/// What a launch does with a slot it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placement {
    Register,
    /// Queued at this place.
    Queue(u64),
}

/// Why a launch was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The out-of-line text area's cap is reached.
    TextsFull,
    /// Every registry slot is taken (the capacity).
    RegistryFull(u32),
    /// The queue holds its bound.
    QueueFull(u32),
    /// The role has this many workers queued, its bound.
    RoleQueueFull(u32),
    /// No room now, and the launch does not queue.
    NoRoom(NoRoom),
    /// The worker's database is being dropped, renamed or moved (see
    /// `closing.rs`).
    DatabaseClosing,
}

/// Decides, under the lock, whether a launch registers now or queues: a
/// queueing launch goes behind the workers already queued (first in,
/// first out) even when there would be room for it. A role whose quota is
/// 0 is refused, queue or not: nothing would ever start its worker.
pub(super) fn place(
    locked: &Locked,
    (role_oid, database_oid): (u32, u32),
    adm: &Admission,
) -> Result<Placement, Refusal> {
    if locked.closing().holds(database_oid) {
        return Err(Refusal::DatabaseClosing);
    }
    let pm_free = adm.pm_free.and_then(|count| count());
    let fits = room(
        locked,
        role_oid,
        adm.quota,
        adm.by_superuser,
        pm_free,
        adm.reserved,
    );
    let (queued, next) = queue_census(locked);
    let of_role = || {
        let slots = locked.slots();
        locked
            .marked(0, Some(SlotState::Queued))
            .into_iter()
            .filter(|&i| slots[i].role_oid == role_oid)
            .count() as u32
    };
    match (fits, adm.queue) {
        // No stop of the role's workers could ever make room: not queued.
        (Err(NoRoom::Quota(0)), _) => Err(Refusal::NoRoom(NoRoom::Quota(0))),
        (Ok(()), None) => Ok(Placement::Register),
        (Ok(()), Some(_)) if queued == 0 => Ok(Placement::Register),
        (Err(why), None) => Err(Refusal::NoRoom(why)),
        (_, Some(max)) if queued >= max => Err(Refusal::QueueFull(max)),
        (_, Some(_)) if adm.queue_per_role.is_some_and(|bound| of_role() >= bound) => Err(
            Refusal::RoleQueueFull(adm.queue_per_role.unwrap_or_default()),
        ),
        (_, Some(_)) => Ok(Placement::Queue(next)),
    }
}

/// What [`requeue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeued {
    /// Queued, at the end of the queue.
    Queued,
    /// The queue holds its bound already.
    Full,
    /// Stopped meanwhile (terminated, or its database closed): it stays
    /// in the registry as stopped.
    Gone,
}

/// Puts a worker whose registration found no postmaster slot into the
/// queue (at its end).
pub fn requeue(at: SlotRef, max: u32) -> Requeued {
    let Some(mut locked) = Locked::acquire(true) else {
        return Requeued::Full;
    };
    let (queued, next) = queue_census(&locked);
    if queued >= max {
        return Requeued::Full;
    }
    let mut done = Requeued::Gone;
    if let Some(mut entry) = locked.slot_mut(at.index as usize) {
        if entry.generation == at.generation && entry.state == SlotState::NotYetStarted as u8 {
            entry.state = SlotState::Queued as u8;
            entry.queue_seq = next;
            entry.config_file = true;
            done = Requeued::Queued;
        }
    }
    drop(locked);
    broadcast();
    done
}

/// Run by the dispatcher: takes the first queued worker that fits now
/// (its role's quota as recorded at launch, the postmaster slots and the
/// reserve) and marks it as being registered. Workers of a role at its
/// quota wait without holding up the others. Wakes nobody: the caller
/// does once it has asked the postmaster for the process (`wake_all`),
/// so that the woken sessions do not delay that.
pub fn take_next_queued(pm_free: PmFree, reserved: u32) -> Option<WorkerRecord> {
    let mut locked = Locked::acquire(true)?;
    let pm_free = pm_free();
    let slots = locked.slots();
    let mut queued = locked.marked(0, Some(SlotState::Queued));
    queued.sort_by_key(|&i| (slots[i].queue_seq, slots[i].id));
    let mut chosen = None;
    for index in queued {
        let s = &slots[index];
        let quota = (s.quota >= 0).then_some(s.quota as u32);
        match room(
            &locked,
            s.role_oid,
            quota,
            s.by_superuser,
            pm_free,
            reserved,
        ) {
            Ok(()) => {
                chosen = Some(index);
                break;
            }
            // Nothing fits in the postmaster: nobody after it either.
            Err(NoRoom::Postmaster) => break,
            Err(_) => continue,
        }
    }
    let index = chosen?;
    let mut entry = locked.slot_mut(index)?;
    entry.state = SlotState::NotYetStarted as u8;
    entry.has_handle = false;
    drop(entry);
    let record = record_at(&locked, index);
    drop(locked);
    Some(record)
}

/// Puts a worker the dispatcher could not register (no postmaster slot
/// after all) back in its place in the queue.
pub fn return_to_queue(at: SlotRef) {
    update_own(at, |entry| {
        if entry.state == SlotState::NotYetStarted as u8 && !entry.has_handle {
            entry.state = SlotState::Queued as u8;
        }
    });
    broadcast();
}

/// Stops for good a worker the dispatcher took from the queue but the
/// server refused to register (its error is recorded by the caller).
pub fn give_up(at: SlotRef) {
    update_own(at, |entry| {
        entry.state = SlotState::Stopped as u8;
        entry.terminate_requested = true;
        // SAFETY: reading the clock has no preconditions.
        entry.stopped_at = unsafe { pgrx::pg_sys::GetCurrentTimestamp() };
    });
    broadcast();
}

/// Whether any worker is queued.
pub fn any_queued() -> bool {
    Locked::acquire(false).is_some_and(|l| queue_census(&l).0 > 0)
}

/// Whether a worker with `mark` in `slot` counts toward its role's quota:
/// registered (not yet started or started), dynamic, its work not done.
fn counts_toward_quota(mark: u8, slot: &Slot) -> bool {
    let state = mark & MARK_STATE;
    (state == SlotState::NotYetStarted as u8 || state == SlotState::Started as u8)
        && !slot.is_static
        && !slot.done
}

/// Whether any queued worker waits for a postmaster slot: one that its
/// role's quota would let start now. A worker queued only for its role's
/// quota waits for none (the spares keep their slots then).
pub fn any_waiting_for_slots() -> bool {
    let Some(locked) = Locked::acquire(false) else {
        return false;
    };
    if queue_census(&locked).0 == 0 {
        return false;
    }
    let slots = locked.slots();
    let queued = locked.marked(0, Some(SlotState::Queued));
    if queued.iter().any(|&i| slots[i].quota < 0) {
        return true;
    }
    let mut live: HashMap<u32, i32> = HashMap::new();
    for (&mark, slot) in locked.marks().iter().zip(slots) {
        if counts_toward_quota(mark, slot) {
            *live.entry(slot.role_oid).or_default() += 1;
        }
    }
    queued
        .iter()
        .any(|&i| live.get(&slots[i].role_oid).copied().unwrap_or(0) < slots[i].quota)
}

/// Whether this backend closed a database in its current transaction.
static CLOSED_HERE: AtomicBool = AtomicBool::new(false);

/// Closes database `oid` to new workers until this backend's transaction
/// ends (see `closing.rs`). Called before the workers in it are listed
/// and stopped, so that every launch either is among them or is refused.
/// Refused when the user's role holds its share of the table already,
/// or the table is full.
pub fn close_database(oid: u32) -> Result<(), NotClosed> {
    let Some(mut locked) = Locked::acquire(true) else {
        return Ok(());
    };
    let mut table = locked.closing();
    // SAFETY: plain reads of this backend's state, in its transaction.
    let (me, role) = unsafe {
        let user = pg_sys::GetUserId();
        let role = if pg_sys::superuser_arg(user) {
            0
        } else {
            user.to_u32()
        };
        (pg_sys::MyProcPid, role)
    };
    table.close(oid, me, role)?;
    locked.set_closing(table);
    CLOSED_HERE.store(true, Ordering::Release);
    Ok(())
}

/// Whether this backend holds a database closed (its transaction may not
/// be prepared: the entry goes with the backend's transaction).
pub fn closed_here() -> bool {
    CLOSED_HERE.load(Ordering::Acquire)
}

/// Whether database `oid` is closed to new workers now.
pub fn database_closed(oid: u32) -> bool {
    Locked::acquire(false).is_some_and(|locked| locked.closing().holds(oid))
}

/// Opens the databases this backend closed again, as its transaction
/// ends. Cheap when it closed none.
pub fn reopen_databases() {
    if !CLOSED_HERE.swap(false, Ordering::AcqRel) {
        return;
    }
    if let Some(mut locked) = Locked::acquire(true) {
        let mut table = locked.closing();
        // SAFETY: MyProcPid is set for every server process.
        table.reopen(unsafe { pg_sys::MyProcPid });
        locked.set_closing(table);
    }
}
