//! The registry: one slot per worker the extension knows, static and
//! dynamic, live or recently stopped, in shared memory. This file holds
//! the operations (claim, record, list, terminate); finding a worker is
//! `lookup.rs`, taking a slot `reserve.rs`, reading it all for a listing
//! `listing.rs`, room and the launch queue `queue.rs`, results of `sql`
//! runs `results.rs`, the memory itself `shmem.rs`, one slot's layout
//! `slot.rs` (what is kept beside it `beside.rs`, what it becomes after a
//! crash-reinitialisation `recover.rs`), what the dispatcher learns of
//! the postmaster's reaping `sweep.rs`, the choice of history
//! entry to reuse `reuse.rs`, texts kept out of line `texts.rs`, and the
//! spare processes waiting for a launch `spares.rs` (counted and let go
//! in `spare_census.rs`; a worker giving its process back `given_back.rs`);
//! what a process holds that its exit gives back `held.rs`. Waiters sleep on the
//! registry's condition variables, which every change of state
//! broadcasts (`events.rs`).

mod beside;
mod closing;
mod events;
mod given_back;
mod held;
mod ids;
mod listing;
mod locked;
mod lookup;
mod queue;
mod record;
mod recover;
mod reserve;
mod results;
mod reuse;
mod shmem;
mod slot;
mod spare_census;
mod spares;
mod sweep;
mod texts;

use pgrx::pg_sys;

pub use events::broadcast as wake_all;
#[cfg(feature = "bench")]
pub use events::{bench_stamp, set_bench_stamp};
use events::{broadcast, broadcast_slot};
pub use events::{
    broadcast_slot as wake_slot_waiters, broadcast_unsettled, clear_dispatcher_pid, dispatcher_pid,
    poke_dispatcher, set_dispatcher_pid, ChangeWait,
};
pub use given_back::{begin_give_back, give_back, signal_running, stop_asked, wake_giving_back};
pub use listing::{listing, Listed, Listing};
use locked::drop_text;
use locked::Locked;
use lookup::index_of;
use lookup::remember_slot;
pub use lookup::{find, find_at, progress, start_facts, Progress, StartFacts};
pub use queue::{
    any_queued, any_waiting_for_slots, close_database, closed_here, database_closed, give_up,
    reopen_databases, requeue, return_to_queue, take_next_queued, Admission, NoRoom, PmFree,
    Refusal, Requeued,
};
use record::record_of;
pub use record::{Lifecycle, WorkerRecord};
pub use reserve::{attach_handle, rename, reserve, Grant, Reservation};
pub use results::{
    expire as expire_results, forget, publish as publish_result, read as read_result,
    result_memory, stash as stash_result, Forgotten, NoSpace, Outcome, RoleShare, RunResult,
    Stashed,
};
#[cfg(feature = "bench")]
pub use sweep::freed_at;
pub use sweep::sweep_reaped;

/// Sets up the registry in the postmaster (from `_PG_init`): its shared
/// memory, and what gives back what an exiting process still held.
pub fn init(capacity: u32, text_limit: usize, statics: Vec<crate::workerdef::WorkerDef>) {
    held::set_give_back(give_back_held);
    shmem::init(capacity, text_limit, statics);
}

/// Gives back what a process held when a FATAL ended it (see `held.rs`).
fn give_back_held(held: held::Held) {
    for (at, id) in held.reserved {
        reserve::release_at(at, id);
    }
    spares::take_back_room_wanted(held.room_wanted);
    events::take_back_unsettled(held.unsettled);
    if !held.stash.is_none() {
        results::free_stash(held.stash);
    }
}
pub use closing::{NotClosed, ENTRIES as CLOSED_IN_ALL, PER_ROLE as CLOSED_PER_ROLE};
use shmem::store_text;
use slot::{put_str, Slot};
pub use slot::{PgHandle, ResultState, SlotRef, SlotState, ERROR_LEN, NAME_LEN, OBJECT_NAME_LEN};
pub use spare_census::{
    available_spares, idle_spares, idle_spares_connected, retire_connected_to, retire_lingering,
    retire_own, retire_spare, spare_census, unconnected_spares,
};
pub use spares::{
    abandon_spare, begin_spare, rejoin_spare, room_wanted, spare_assignment, spare_leaving,
    spare_registered, spare_running, take_spare, Assignment, Connection, RoomWanted, MAX_SPARES,
};
use texts::TextRef;
pub use texts::{load_config, remove_config, save_config};

use crate::codec::{self, ErrorText};
use crate::config::KindConfig;

/// The process the postmaster tells when a worker the extension registers
/// starts or is reaped (`bgw_notify_pid`): the dispatcher, which wakes every
/// waiter; the calling process itself while no dispatcher runs.
pub fn notify_pid() -> i32 {
    match dispatcher_pid() {
        0 => {
            // SAFETY: MyProcPid is set for every server process.
            unsafe { pg_sys::MyProcPid }
        }
        pid => pid,
    }
}

/// The record of slot `index`, its texts copied (under the lock held).
fn record_at(locked: &Locked, index: usize) -> WorkerRecord {
    let slot = &locked.slots()[index];
    record_of(
        index,
        slot,
        &locked.text(slot.config),
        &locked.text(slot.error),
    )
}

/// Every worker the registry holds, by id, copied at once (see
/// `listing.rs` for the `workers` view's listing, in batches).
pub fn list() -> Vec<WorkerRecord> {
    let Some(locked) = Locked::acquire(false) else {
        return Vec::new();
    };
    let mut all: Vec<WorkerRecord> = (0..locked.slots().len())
        .filter(|&i| locked.slots()[i].state != slot::SlotState::Free as u8)
        .map(|i| record_at(&locked, i))
        .collect();
    drop(locked);
    all.sort_unstable_by_key(|r| r.id);
    all
}

/// Run by a worker as it starts: checks that the slot still belongs to
/// `(id, generation)` and marks it started. False when the slot was given
/// to another worker (a stale registration) or the worker was terminated
/// while it waited for its (re)start: it must then leave with code 0.
/// A worker that finds its own handle (see `Slot::find_handle`) passes it
/// here, so that from the moment it counts as started it can be terminated.
/// `started` is when its process started (the server's
/// `MyStartTimestamp`, what `pg_stat_activity.backend_start` shows), 0 if
/// unknown: `started_at` is that moment. A worker that needs no
/// connection is `ready` as it claims its slot (see `mark_connected`).
pub fn claim(
    at: SlotRef,
    id: i64,
    pid: i32,
    own_handle: Option<PgHandle>,
    started: i64,
    ready: bool,
    recyclable: bool,
) -> bool {
    let Some(mut locked) = Locked::acquire(true) else {
        return false;
    };
    let Some(mut entry) = locked.slot_mut(at.index as usize) else {
        return false;
    };
    if entry.id != id
        || entry.generation != at.generation
        || entry.state == SlotState::Free as u8
        || entry.terminate_requested
        // Another process runs it already (a hand-over gone wrong).
        || (entry.state == SlotState::Started as u8 && entry.pid > 0 && entry.pid != pid)
    {
        return false;
    }
    if entry.started_at != 0 {
        entry.restarts += 1;
    }
    entry.state = SlotState::Started as u8;
    entry.pid = pid;
    entry.connected = ready;
    entry.recyclable = recyclable;
    entry.lent = false;
    entry.done = false;
    if let Some(handle) = own_handle {
        entry.handle = handle;
        entry.has_handle = true;
    }
    // SAFETY: reading the clock has no preconditions.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    entry.started_at = if started > 0 && started <= now {
        started
    } else {
        now
    };
    entry.stopped_at = 0;
    drop(entry);
    drop(locked);
    broadcast_slot(at.index as usize);
    true
}

/// Run by a worker as it exits with `code`. A worker that will be
/// restarted (code other than 0 and a restart policy) goes back to
/// `not_yet_started`; any other becomes `stopped`.
pub fn record_exit(at: SlotRef, code: i32, error: Option<&str>) {
    let Some(mut locked) = Locked::acquire(true) else {
        return;
    };
    let Some(mut entry) = locked.slot_mut(at.index as usize) else {
        return;
    };
    if entry.generation != at.generation || entry.state == SlotState::Free as u8 {
        return;
    }
    if entry.state != SlotState::Started as u8 || entry.pid == 0 {
        // Not ours any more (a terminated worker that came back only to
        // leave): keep what terminate recorded.
        return;
    }
    let restarts = code != 0 && entry.restart_secs >= 0 && !entry.terminate_requested;
    entry.state = if restarts {
        SlotState::NotYetStarted as u8
    } else {
        SlotState::Stopped as u8
    };
    entry.pid = 0;
    entry.last_exit = code;
    // SAFETY: reading the clock has no preconditions.
    entry.stopped_at = unsafe { pg_sys::GetCurrentTimestamp() };
    if let Some(error) = error {
        put_str(&mut entry.last_error, error);
    }
    drop(entry);
    drop(locked);
    broadcast_slot(at.index as usize);
}

/// Changes the slot `at` names under the registry lock; does nothing if
/// the slot now belongs to another worker (another generation) or is free.
pub(super) fn update_own(at: SlotRef, change: impl FnOnce(&mut Slot)) {
    let Some(mut locked) = Locked::acquire(true) else {
        return;
    };
    if let Some(mut entry) = locked.slot_mut(at.index as usize) {
        if entry.generation == at.generation && entry.state != SlotState::Free as u8 {
            change(&mut entry);
        }
    };
}

/// Puts back the config of a worker brought back after a
/// crash-reinitialisation (its out-of-line texts went with the old shared
/// memory); returns the config, read from the copy kept on disk.
/// `jsonb_of` makes the config's jsonb bytes for listings.
pub fn restore_config(
    at: SlotRef,
    id: i64,
    jsonb_of: impl Fn(&KindConfig) -> Vec<u8>,
) -> Option<KindConfig> {
    let bytes = load_config(id)?;
    let config = codec::decode(&bytes).ok()?;
    let text = store_text(&bytes)?;
    let jsonb = store_text(&jsonb_of(&config)).unwrap_or(TextRef::NONE);
    let mut stored = false;
    update_own(at, |entry| {
        if entry.config.is_none() {
            entry.config = text;
            entry.config_jsonb = jsonb;
            stored = true;
        }
    });
    if !stored {
        drop_text(text);
        drop_text(jsonb);
    }
    Some(config)
}

/// Whether the worker in slot `at` was launched by a superuser.
fn by_superuser(at: SlotRef) -> bool {
    Locked::acquire(false)
        .and_then(|locked| {
            let slot = locked.slots().get(at.index as usize)?;
            (slot.generation == at.generation).then_some(slot.by_superuser)
        })
        .unwrap_or(false)
}

/// Records the last error of worker `at` in full (or clears it with
/// `None`): out of line, and its start inline. If the text area is full
/// (or the launcher's share of it is), only the inline start is kept.
pub fn record_error(at: SlotRef, error: Option<&ErrorText>) {
    // In full out of line, within the share of the text area its launcher
    // may take (a message can be megabytes long); else only cut, inline.
    let text = error
        .map(ErrorText::encode)
        .filter(|bytes| reserve::within_share(bytes.len() as u64, by_superuser(at)))
        .and_then(|bytes| store_text(&bytes))
        .unwrap_or(TextRef::NONE);
    let short = error.map(ErrorText::short).unwrap_or_default();
    let mut old = None;
    update_own(at, |entry| {
        old = Some(entry.error);
        entry.error = text;
        put_str(&mut entry.last_error, &short);
    });
    match old {
        // Unlinked under the exclusive lock: no reader can reach it now.
        Some(old) => drop_text(old),
        None => drop_text(text),
    }
}

/// Records a note of a running worker in `last_error` (a supervisor's
/// backoff), in full as an error is, without a SQLSTATE; or clears it
/// with `None`.
pub fn record_note(at: SlotRef, note: Option<&str>) {
    let note = note.map(|message| ErrorText {
        message: message.to_string(),
        ..Default::default()
    });
    record_error(at, note.as_ref());
}

/// Records that the running worker is connected as its role (or needs no
/// connection): `launch(..., wait => true)` returns from then on. `woken`:
/// from now on `terminate` wakes it rather than sending SIGTERM (a worker
/// that gives its process back; not while it connects, when only SIGTERM
/// reaches it).
pub fn mark_connected(at: SlotRef, woken: bool) {
    update_own(at, |entry| {
        entry.connected = true;
        // Terminated while it connected: SIGTERM is on its way.
        entry.recyclable |= woken && !entry.terminate_requested;
    });
    broadcast_slot(at.index as usize);
}

/// Marks the worker so that it stops for good when it exits now: used when
/// what it was authorised as (its role, its database) is gone.
pub fn stop_for_good(at: SlotRef) -> Option<PgHandle> {
    let mut handle = None;
    update_own(at, |entry| {
        entry.terminate_requested = true;
        handle = entry.has_handle.then_some(entry.handle);
    });
    handle
}

/// Marks the worker `id` for termination. A worker that is not running now
/// (queued, or waiting for its start) is stopped at once; a running one stops when its exit is recorded.
/// Returns the record as it was, or `None` for an unknown id.
pub fn request_terminate(id: i64) -> Option<WorkerRecord> {
    let mut locked = Locked::acquire(true)?;
    let index = index_of(&locked, id)?;
    let before = record_at(&locked, index);
    let mut entry = locked.slot_mut(index)?;
    entry.terminate_requested = true;
    let was_queued = entry.state == SlotState::Queued as u8;
    if entry.state == SlotState::NotYetStarted as u8 || was_queued {
        entry.state = SlotState::Stopped as u8;
        // SAFETY: reading the clock has no preconditions.
        entry.stopped_at = unsafe { pg_sys::GetCurrentTimestamp() };
    }
    drop(entry);
    drop(locked);
    if was_queued {
        // The queue positions of the others change too.
        broadcast();
    } else {
        broadcast_slot(index);
    }
    Some(before)
}

/// Records one run of a `sql` worker.
pub fn record_run(at: SlotRef, rows: i64, micros: i64) {
    update_own(at, |entry| {
        entry.runs += 1;
        entry.last_rows = rows;
        entry.last_run_us = micros;
    });
}
