//! Counting and letting go of the spare processes of `spares.rs`: how
//! many are idle, how many count towards `lightdb_bgw.spare_workers` (those
//! not connected to a database), the dispatcher's census, and which idle
//! ones are let go: beyond the setting or connected, once they have
//! lingered idle for a while; connected to a database that is going away;
//! or any one, to free its postmaster slot.

use std::sync::atomic::Ordering;

use super::slot::PgHandle;
use super::spares::{entries, Spare, ASSIGNED, CLAIMING, HANDLE, IDLE, REJOINING, RETIRING, TAKEN};

/// How many spares wait idle now, connected or not.
pub fn idle_spares() -> u32 {
    entries()
        .iter()
        .filter(|e| e.state.load(Ordering::Acquire) == IDLE)
        .count() as u32
}

/// How many spares wait idle now connected to a database (given back by
/// their workers).
pub fn idle_spares_connected() -> u32 {
    entries()
        .iter()
        .filter(|e| e.state.load(Ordering::Acquire) == IDLE && e.connection().is_some())
        .count() as u32
}

/// Whether a spare in `state` is being started: registered by the
/// dispatcher (its handle published) and not running yet, nothing else
/// under way. It holds a postmaster slot, and is idle in a moment. (One
/// taken but not registered yet holds none: `pm_free` counts that slot.)
fn starting(state: u32) -> bool {
    state == TAKEN | HANDLE
}

/// How many spares a launch may count on as free postmaster slots: the
/// idle ones and those being started, either taken by a launch or let go
/// for one (see [`retire_spare`]).
pub fn available_spares() -> u32 {
    entries()
        .iter()
        .map(|e| e.state.load(Ordering::Acquire))
        .filter(|&state| state == IDLE || starting(state))
        .count() as u32
}

/// Marks the spare of entry `index`, idle, to be let go by its own
/// process, which then leaves; false if it was claimed meanwhile.
pub fn retire_own(index: usize) -> bool {
    entries().get(index).is_some_and(|e| e.mark_retiring(IDLE))
}

/// Marks one spare to be let go, an idle one or else one registered and
/// not running yet (the postmaster then never starts it); returns its
/// handle, for the caller to terminate it.
pub fn retire_spare() -> Option<PgHandle> {
    let retire = |from: u32| entries().iter().find(|e| e.mark_retiring(from));
    retire(IDLE)
        .or_else(|| retire(TAKEN | HANDLE))
        .map(Spare::handle)
}

/// Whether entry `e` counts towards the setting: a spare not connected,
/// registered or idle, not taken, not being let go.
fn counts(e: &Spare, state: u32) -> bool {
    state & TAKEN != 0
        && state & (RETIRING | CLAIMING | ASSIGNED | REJOINING) == 0
        && e.connection().is_none()
}

/// The dispatcher: forgets entries whose process never ran (the
/// postmaster let it go, `pm_stopped`) or was never registered, and counts
/// the spares not connected, registered or idle, not being let go.
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
        if counts(e, state) {
            live += 1;
        }
    }
    live
}

/// How many spares not connected wait idle or are being started.
pub fn unconnected_spares() -> u32 {
    entries()
        .iter()
        .filter(|e| counts(e, e.state.load(Ordering::Acquire)))
        .count() as u32
}

/// The dispatcher: marks to be let go the idle spares beyond the `want`
/// not connected ones, and the connected ones, that have waited idle for
/// `linger` microseconds by `now`, the longest idle first; returns their
/// handles (for the caller to terminate) and when the next is due.
pub fn retire_lingering(now: i64, want: u32, linger: i64) -> (Vec<PgHandle>, Option<i64>) {
    let mut idle: Vec<&Spare> = entries()
        .iter()
        .filter(|e| e.state.load(Ordering::Acquire) == IDLE)
        .collect();
    idle.sort_by_key(|e| e.idle_since.load(Ordering::Acquire));
    let mut beyond = unconnected_spares().saturating_sub(want);
    let mut retired = Vec::new();
    let mut next: Option<i64> = None;
    for e in idle {
        let unconnected = e.connection().is_none();
        if unconnected && beyond == 0 {
            continue;
        }
        let due = e.idle_since.load(Ordering::Acquire).saturating_add(linger);
        if due > now {
            next = Some(next.map_or(due, |n| n.min(due)));
            if unconnected {
                beyond -= 1;
            }
            continue;
        }
        if e.mark_retiring(IDLE) {
            retired.push(e.handle());
            if unconnected {
                beyond -= 1;
            }
        }
    }
    (retired, next)
}

/// Marks to be let go every idle spare connected to `database_oid` (a
/// database being dropped, renamed or moved); returns their handles.
pub fn retire_connected_to(database_oid: u32) -> Vec<PgHandle> {
    entries()
        .iter()
        .filter(|e| {
            e.connection()
                .is_some_and(|c| c.database_oid == database_oid)
        })
        .filter(|e| e.mark_retiring(IDLE))
        .map(Spare::handle)
        .collect()
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::registry::slot::SlotRef;
    use crate::registry::spares::*;

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
        assert!(take_spare(at, 42, None).is_none());

        // Running: idle, and handed over once.
        assert!(spare_running(index, NOBODY, 0));
        assert_eq!(idle_spares(), 1);
        assert_eq!(take_spare(at, 42, None), Some(handle));
        assert!(take_spare(at, 43, None).is_none(), "one launch per spare");
        assert_eq!(spare_census(stopped), 0, "a taken spare is not counted");
        let got = spare_assignment(index).expect("assigned");
        assert_eq!((got.at, got.id, got.handle), (at, 42, handle));
        assert!(spare_assignment(index).is_none(), "the entry is free again");

        // Let go: a retired spare is not idle and leaves its entry empty.
        let index = begin_spare().expect("an empty entry");
        spare_registered(index, handle);
        assert!(spare_running(index, NOBODY, 0));
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

        // Given back by its worker: idle again, connected as it was. A
        // worker that connects so takes it before one not connected; a
        // worker that does not connect, or connects otherwise, never does.
        let db = Connection {
            database_oid: 5,
            role_oid: 10,
            bypass_allowconn: false,
            superuser: false,
        };
        let other_role = Connection { role_oid: 11, ..db };
        let connected = PgHandle {
            slot: 6,
            generation: 1,
        };
        let plain = begin_spare().expect("an empty entry");
        spare_registered(plain, handle);
        assert!(spare_running(plain, NOBODY, 0));
        let back = rejoin_spare(connected, NOBODY, Some(db), 0).expect("an empty entry");
        assert_eq!((idle_spares(), unconnected_spares()), (2, 1));
        assert_eq!(take_spare(at, 50, Some(db)), Some(connected));
        assert!(spare_assignment(back).is_some());
        let back = rejoin_spare(connected, NOBODY, Some(db), 0).expect("an empty entry");
        assert_eq!(take_spare(at, 51, Some(other_role)), Some(handle));
        assert!(spare_assignment(plain).is_some());
        assert!(take_spare(at, 52, None).is_none());
        let was_superuser = Connection {
            superuser: true,
            ..db
        };
        assert!(take_spare(at, 54, Some(was_superuser)).is_none());
        assert!(take_spare(at, 53, Some(other_role)).is_none());
        assert_eq!(retire_connected_to(6), vec![]);
        assert_eq!(retire_connected_to(5), vec![connected]);
        spare_leaving(back);

        // Beyond the setting (here 1), or connected: let go once lingered
        // idle (here 100), the longest idle first.
        let a = rejoin_spare(handle, NOBODY, None, 0).expect("an empty entry");
        let _b = rejoin_spare(handle, NOBODY, None, 10).expect("an empty entry");
        let c = rejoin_spare(connected, NOBODY, Some(db), 20).expect("an empty entry");
        assert_eq!(retire_lingering(50, 1, 100), (vec![], Some(100)));
        assert_eq!(retire_lingering(105, 1, 100), (vec![handle], Some(120)));
        assert_eq!(retire_lingering(200, 1, 100), (vec![connected], None));
        assert_eq!((idle_spares(), unconnected_spares()), (1, 1));
        for index in [a, c] {
            spare_leaving(index);
        }
        attach(std::ptr::null_mut());
    }
}
