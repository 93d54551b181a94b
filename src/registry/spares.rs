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
//! - a spare to be let go is marked `RETIRING` and terminated;
//! - a process whose worker ended and gave its process back (see
//!   `worker.rs`) takes an empty entry again (`REJOINING`), says which
//!   database and role it is connected as, if any, and is idle again.
//!
//! The table has room for twice the most spares the setting may ask for:
//! processes given back beyond the setting stay idle until the dispatcher
//! lets them go (see `spare.rs`).

use std::sync::atomic::{AtomicI32, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use super::slot::{PgHandle, SlotRef};

/// The most spares the setting may ask for.
pub const MAX_SPARES: usize = 16;

/// Entries in the table.
const ENTRIES: usize = 2 * MAX_SPARES;

pub(super) const TAKEN: u32 = 1;
pub(super) const HANDLE: u32 = 2;
pub(super) const RUNNING: u32 = 4;
pub(super) const CLAIMING: u32 = 8;
pub(super) const ASSIGNED: u32 = 16;
pub(super) const RETIRING: u32 = 32;
pub(super) const REJOINING: u32 = 64;
pub(super) const IDLE: u32 = TAKEN | HANDLE | RUNNING;

/// One spare process, or an empty entry (all zero).
#[repr(C)]
#[derive(Default)]
pub(super) struct Spare {
    pub(super) state: AtomicU32,
    pid: AtomicI32,
    pm_slot: AtomicI32,
    pm_generation: AtomicU64,
    at_index: AtomicU32,
    at_generation: AtomicU64,
    id: AtomicI64,
    /// What the process is connected as (0: not connected), written by the
    /// process before it says it is idle.
    database_oid: AtomicU32,
    role_oid: AtomicU32,
    /// Bit 0: `bypass_allowconn`; bit 1: `superuser`.
    flags: AtomicU32,
    /// Since when it waits idle (`TimestampTz`).
    pub(super) idle_since: AtomicI64,
}

/// What a spare process is connected as: its database, its role, and
/// whether it connected bypassing `datallowconn`. A connected spare takes
/// only workers that connect exactly so.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Connection {
    pub database_oid: u32,
    pub role_oid: u32,
    pub bypass_allowconn: bool,
    /// Whether the role was a superuser (the server keeps what it was at
    /// connection for `SET SESSION AUTHORIZATION`, up to PostgreSQL 16).
    pub superuser: bool,
}

/// The table, in the registry's header (zeroed at its creation: empty).
#[repr(C)]
#[derive(Default)]
pub(super) struct Spares {
    entries: [Spare; ENTRIES],
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

pub(super) fn entries() -> &'static [Spare] {
    table().map_or(&[], |t| &t.entries)
}

/// A launch waiting for a slot a spare gives up; dropping it ends the wait.
pub struct RoomWanted(());

impl RoomWanted {
    pub fn announce() -> RoomWanted {
        if let Some(t) = table() {
            t.room_wanted.fetch_add(1, Ordering::AcqRel);
            super::held::room_wanted(true);
        }
        RoomWanted(())
    }
}

impl Drop for RoomWanted {
    fn drop(&mut self) {
        if let Some(t) = table() {
            t.room_wanted.fetch_sub(1, Ordering::AcqRel);
            super::held::room_wanted(false);
        }
    }
}

/// Takes back `n` wishes for room this process announced and never
/// dropped (it exits; see `held.rs`).
pub(super) fn take_back_room_wanted(n: u32) {
    if let Some(t) = table().filter(|_| n > 0) {
        t.room_wanted.fetch_sub(n, Ordering::AcqRel);
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
    /// Marks this spare, in state `from` exactly, to be let go; false if
    /// its state changed meanwhile (claimed, say).
    pub(super) fn mark_retiring(&self, from: u32) -> bool {
        self.state
            .compare_exchange(from, from | RETIRING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// What the process is connected as, `None` if it is not.
    pub(super) fn connection(&self) -> Option<Connection> {
        let database_oid = self.database_oid.load(Ordering::Acquire);
        let flags = self.flags.load(Ordering::Acquire);
        (database_oid != 0).then(|| Connection {
            database_oid,
            role_oid: self.role_oid.load(Ordering::Acquire),
            bypass_allowconn: flags & 1 != 0,
            superuser: flags & 2 != 0,
        })
    }

    fn set_connection(&self, connection: Option<Connection>) {
        let c = connection.unwrap_or_default();
        self.database_oid.store(c.database_oid, Ordering::Release);
        self.role_oid.store(c.role_oid, Ordering::Release);
        let flags = c.bypass_allowconn as u32 | (c.superuser as u32) << 1;
        self.flags.store(flags, Ordering::Release);
    }

    pub(super) fn handle(&self) -> PgHandle {
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
        e.set_connection(None);
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
pub fn spare_running(index: usize, pid: i32, now: i64) -> bool {
    let Some(e) = entry(index) else {
        return false;
    };
    e.pid.store(pid, Ordering::Release);
    e.idle_since.store(now, Ordering::Release);
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

/// A process whose worker ended and gave it back: takes an empty entry
/// again, idle, connected as `connection` (if at all), with its own
/// postmaster `handle`. `None` when the table is full (the process leaves).
pub fn rejoin_spare(
    handle: PgHandle,
    pid: i32,
    connection: Option<Connection>,
    now: i64,
) -> Option<usize> {
    let index = entries().iter().position(|e| {
        e.state
            .compare_exchange(0, REJOINING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    })?;
    let e = &entries()[index];
    e.pm_slot.store(handle.slot, Ordering::Release);
    e.pm_generation.store(handle.generation, Ordering::Release);
    e.pid.store(pid, Ordering::Release);
    e.set_connection(connection);
    e.idle_since.store(now, Ordering::Release);
    e.state.store(IDLE, Ordering::Release);
    Some(index)
}

/// Takes an idle spare whose connection `fits`, marked `CLAIMING`.
fn claim_idle(fits: impl Fn(Option<Connection>) -> bool) -> Option<&'static Spare> {
    entries().iter().find(|e| {
        if e.state.load(Ordering::Acquire) != IDLE || !fits(e.connection()) {
            return false;
        }
        if e.state
            .compare_exchange(IDLE, IDLE | CLAIMING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        // Taken and given back between the look and the claim: look again,
        // now that the entry cannot change.
        if fits(e.connection()) {
            return true;
        }
        // Given back untouched, unless the spare left meanwhile (and
        // emptied the entry).
        let _ =
            e.state
                .compare_exchange(IDLE | CLAIMING, IDLE, Ordering::AcqRel, Ordering::Acquire);
        false
    })
}

/// A launch: hands the worker `id` in slot `at` to an idle spare and wakes
/// it. A worker that connects as `connection` takes a spare already
/// connected exactly so, or else one not connected; one that does not
/// connect (`None`) takes only one not connected. Returns the spare's
/// postmaster handle (now the worker's), or `None` when none fits.
pub fn take_spare(at: SlotRef, id: i64, connection: Option<Connection>) -> Option<PgHandle> {
    let e = connection
        .and_then(|wanted| claim_idle(|c| c == Some(wanted)))
        .or_else(|| claim_idle(|c| c.is_none()))?;
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
