//! The table of spare processes (`lightdb_bgw.spare_workers`): background
//! workers the dispatcher registers ahead of need, which wait idle until a
//! launch hands one a registry slot, so that the launch does not wait for
//! the postmaster to fork and set up a process. This file owns the table,
//! kept in the registry's header, and its hand-over protocol, written with
//! atomics only (no lock): each entry's `state` is a set of bits, and each
//! transition is one compare-and-swap by the one party allowed to make it.
//!
//! - the dispatcher takes an empty entry (`TAKEN`), registers the process
//!   and publishes its postmaster handle (`HANDLE`);
//! - the process, once running, publishes its pid (`RUNNING`): with all
//!   three bits the spare is idle;
//! - a launch takes an idle spare (`CLAIMING`), writes the slot it hands
//!   over, publishes it (`ASSIGNED`) and wakes the process;
//! - the process reads its slot and empties the entry: from then on it is
//!   that worker, and the entry is free for the next spare;
//! - a spare to be let go is marked `RETIRING` and terminated.

use std::sync::atomic::{AtomicI32, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use super::slot::{PgHandle, SlotRef};

/// The most spares the setting may ask for.
pub const MAX_SPARES: usize = 16;

const TAKEN: u32 = 1;
const HANDLE: u32 = 2;
const RUNNING: u32 = 4;
const CLAIMING: u32 = 8;
const ASSIGNED: u32 = 16;
const RETIRING: u32 = 32;
const IDLE: u32 = TAKEN | HANDLE | RUNNING;

/// One spare process, or an empty entry (all zero).
#[repr(C)]
#[derive(Default)]
pub(super) struct Spare {
    state: AtomicU32,
    pid: AtomicI32,
    pm_slot: AtomicI32,
    pm_generation: AtomicU64,
    at_index: AtomicU32,
    at_generation: AtomicU64,
    id: AtomicI64,
}

/// The table, in the registry's header (zeroed at its creation: empty).
#[repr(C)]
#[derive(Default)]
pub(super) struct Spares {
    entries: [Spare; MAX_SPARES],
    /// Launches waiting for the slot of a spare they let go: the dispatcher
    /// starts no spare meanwhile, which would take that slot again.
    room_wanted: AtomicU32,
}

/// Where this process finds the table: set with the registry's memory.
static TABLE: AtomicPtr<Spares> = AtomicPtr::new(std::ptr::null_mut());

/// Tells this process where the table lives (in the registry's header, as
/// it is created or found), or forgets it (`null`, as it is released).
pub(super) fn attach(table: *mut Spares) {
    TABLE.store(table, Ordering::Release);
}

fn table() -> Option<&'static Spares> {
    let table = TABLE.load(Ordering::Acquire);
    // SAFETY: set to the table inside the registry's shared memory, which
    // lives as long as this process uses it; atomics, shared by design.
    (!table.is_null()).then(|| unsafe { &*table })
}

fn entries() -> &'static [Spare] {
    table().map_or(&[], |t| &t.entries)
}

/// A launch waiting for a slot a spare gives up; dropping it ends the wait.
pub struct RoomWanted(());

impl RoomWanted {
    pub fn announce() -> RoomWanted {
        if let Some(t) = table() {
            t.room_wanted.fetch_add(1, Ordering::AcqRel);
        }
        RoomWanted(())
    }
}

impl Drop for RoomWanted {
    fn drop(&mut self) {
        if let Some(t) = table() {
            t.room_wanted.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Whether a launch waits for the slot of a spare it let go.
pub fn room_wanted() -> bool {
    table().is_some_and(|t| t.room_wanted.load(Ordering::Acquire) > 0)
}

fn entry(index: usize) -> Option<&'static Spare> {
    entries().get(index)
}

impl Spare {
    fn handle(&self) -> PgHandle {
        PgHandle {
            slot: self.pm_slot.load(Ordering::Acquire),
            generation: self.pm_generation.load(Ordering::Acquire),
        }
    }
}

/// The dispatcher: an empty entry for a new spare, now taken.
pub fn begin_spare() -> Option<usize> {
    entries().iter().position(|e| {
        e.state
            .compare_exchange(0, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    })
}

/// The dispatcher: the spare of entry `index` is registered as `handle`.
pub fn spare_registered(index: usize, handle: PgHandle) {
    if let Some(e) = entry(index) {
        e.pm_slot.store(handle.slot, Ordering::Release);
        e.pm_generation.store(handle.generation, Ordering::Release);
        e.state.fetch_or(HANDLE, Ordering::AcqRel);
    }
}

/// The dispatcher: the registration of entry `index` failed.
pub fn abandon_spare(index: usize) {
    if let Some(e) = entry(index) {
        e.state.store(0, Ordering::Release);
    }
}

/// The spare process of entry `index`, once running: says it waits.
/// `false` if the entry is not one being set up (the process is stale).
pub fn spare_running(index: usize, pid: i32) -> bool {
    let Some(e) = entry(index) else {
        return false;
    };
    e.pid.store(pid, Ordering::Release);
    let before = e.state.fetch_or(RUNNING, Ordering::AcqRel);
    before & TAKEN != 0 && before & RUNNING == 0
}

/// What a launch handed to a spare: the registry slot and worker id, and
/// the spare's own postmaster handle.
#[derive(Debug, Clone, Copy)]
pub struct Assignment {
    pub at: SlotRef,
    pub id: i64,
    pub handle: PgHandle,
}

/// The spare process of entry `index`: its assignment, if it has one; the
/// entry is then emptied (the process is now that worker).
pub fn spare_assignment(index: usize) -> Option<Assignment> {
    let e = entry(index)?;
    if e.state.load(Ordering::Acquire) & ASSIGNED == 0 {
        return None;
    }
    let assignment = Assignment {
        at: SlotRef {
            index: e.at_index.load(Ordering::Acquire),
            generation: e.at_generation.load(Ordering::Acquire),
        },
        id: e.id.load(Ordering::Acquire),
        handle: e.handle(),
    };
    e.state.store(0, Ordering::Release);
    Some(assignment)
}

/// The spare process of entry `index`, leaving without an assignment: the
/// entry is emptied, after any hand-over under way has completed (a few
/// instructions of the launching session; if that session is kept from
/// running longer than the wait, its hand-over fails instead).
pub fn spare_leaving(index: usize) {
    let Some(e) = entry(index) else {
        return;
    };
    for _ in 0..10_000_000 {
        let state = e.state.load(Ordering::Acquire);
        if state & CLAIMING == 0 || state & ASSIGNED != 0 {
            break;
        }
        std::hint::spin_loop();
    }
    e.state.store(0, Ordering::Release);
}

/// A launch: hands the worker `id` in slot `at` to an idle spare and wakes
/// it. Returns the spare's postmaster handle (now the worker's), or `None`
/// when no spare is idle.
pub fn take_spare(at: SlotRef, id: i64) -> Option<PgHandle> {
    let e = entries().iter().find(|e| {
        e.state
            .compare_exchange(IDLE, IDLE | CLAIMING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    })?;
    e.at_index.store(at.index, Ordering::Release);
    e.at_generation.store(at.generation, Ordering::Release);
    e.id.store(id, Ordering::Release);
    // A spare leaving meanwhile waits a moment for this; if it could not
    // wait that long, it has emptied the entry and the launch goes on
    // without it.
    e.state
        .compare_exchange(
            IDLE | CLAIMING,
            IDLE | CLAIMING | ASSIGNED,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .ok()?;
    let handle = e.handle();
    let pid = e.pid.load(Ordering::Acquire);
    if pid > 0 {
        // SAFETY: SIGUSR1 sets the spare's latch (the server's own
        // handler); a pid that has just gone is harmless (ESRCH).
        unsafe { libc::kill(pid, libc::SIGUSR1) };
    }
    Some(handle)
}

/// How many spares wait idle now.
pub fn idle_spares() -> u32 {
    entries()
        .iter()
        .filter(|e| e.state.load(Ordering::Acquire) == IDLE)
        .count() as u32
}

/// Marks one idle spare to be let go; returns its handle, for the caller
/// to terminate it.
pub fn retire_spare() -> Option<PgHandle> {
    entries()
        .iter()
        .find(|e| {
            e.state
                .compare_exchange(IDLE, IDLE | RETIRING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        })
        .map(Spare::handle)
}

/// The dispatcher: forgets entries whose process never ran (the
/// postmaster let it go, `pm_stopped`) or was never registered, and counts
/// the spares registered or idle, not being let go.
pub fn spare_census(pm_stopped: impl Fn(PgHandle) -> bool) -> u32 {
    let mut live = 0;
    for e in entries() {
        let state = e.state.load(Ordering::Acquire);
        // Only the dispatcher registers spares, not while it counts: an
        // entry taken without a handle is left from a dispatcher that died
        // registering it; one with a handle whose process the postmaster
        // let go of never ran.
        if state == TAKEN || (state == TAKEN | HANDLE && pm_stopped(e.handle())) {
            let _ = e
                .state
                .compare_exchange(state, 0, Ordering::AcqRel, Ordering::Acquire);
            continue;
        }
        if state & TAKEN != 0 && state & (RETIRING | CLAIMING | ASSIGNED) == 0 {
            live += 1;
        }
    }
    live
}

#[cfg(test)]
mod unit {
    use super::*;

    /// A pid no process has (ESRCH), for the wake-up signal.
    const NOBODY: i32 = i32::MAX;

    #[test]
    fn a_spare_goes_through_its_states() {
        let table: &'static mut Spares = Box::leak(Box::default());
        attach(table);
        let at = SlotRef {
            index: 7,
            generation: 3,
        };
        let handle = PgHandle {
            slot: 5,
            generation: 9,
        };
        let stopped = |_: PgHandle| false;

        // Registered but not running yet: counted, not idle, not taken.
        let index = begin_spare().expect("an empty entry");
        spare_registered(index, handle);
        assert_eq!(spare_census(stopped), 1);
        assert_eq!(idle_spares(), 0);
        assert!(take_spare(at, 42).is_none());

        // Running: idle, and handed over once.
        assert!(spare_running(index, NOBODY));
        assert_eq!(idle_spares(), 1);
        assert_eq!(take_spare(at, 42), Some(handle));
        assert!(take_spare(at, 43).is_none(), "one launch per spare");
        assert_eq!(spare_census(stopped), 0, "a taken spare is not counted");
        let got = spare_assignment(index).expect("assigned");
        assert_eq!((got.at, got.id, got.handle), (at, 42, handle));
        assert!(spare_assignment(index).is_none(), "the entry is free again");

        // Let go: a retired spare is not idle and leaves its entry empty.
        let index = begin_spare().expect("an empty entry");
        spare_registered(index, handle);
        assert!(spare_running(index, NOBODY));
        assert_eq!(retire_spare(), Some(handle));
        assert_eq!(idle_spares(), 0);
        assert_eq!(spare_census(stopped), 0);
        spare_leaving(index);
        assert_eq!(entries()[index].state.load(Ordering::Acquire), 0);

        // Never ran: the census forgets it; so is an entry never
        // registered (a dispatcher that died registering it).
        let never_ran = begin_spare().expect("an empty entry");
        spare_registered(never_ran, handle);
        let never_registered = begin_spare().expect("another entry");
        assert_eq!(spare_census(|_| true), 0);
        for index in [never_ran, never_registered] {
            assert_eq!(entries()[index].state.load(Ordering::Acquire), 0);
        }

        // A room wanted is seen until its guard is dropped.
        let wanted = RoomWanted::announce();
        assert!(room_wanted());
        drop(wanted);
        assert!(!room_wanted());
        attach(std::ptr::null_mut());
    }
}
