//! What this process holds in the registry's shared memory while it
//! launches, waits or runs, which Rust's drops give back: slots reserved
//! for workers not registered yet (`reserve.rs`), a launch's wish for a
//! spare's slot (`spares.rs`), waits counted for the dispatcher
//! (`events.rs`), a run's rows stashed and not yet published
//! (`results.rs`). A FATAL (a terminated session, a shutdown, a supervisor
//! stopped while it relaunches a child, a run terminated during its
//! commit) ends the process without those drops; a callback on the process's exit hands what is still held to
//! the registry's give-back (set once at start, see `registry::init`), so
//! no slot, quota place or count is lost with it. This file only keeps
//! the account; it knows none of its neighbours.

use std::cell::{Cell, RefCell};
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::slot::SlotRef;
use super::texts::TextRef;

/// What a process still held when it exited.
#[derive(Debug, Default)]
pub struct Held {
    pub reserved: Vec<(SlotRef, i64)>,
    pub room_wanted: u32,
    pub unsettled: u32,
    /// Rows stashed and never published or dropped.
    pub stash: TextRef,
}

thread_local! {
    static RESERVED: RefCell<Vec<(SlotRef, i64)>> = const { RefCell::new(Vec::new()) };
    static ROOM_WANTED: Cell<u32> = const { Cell::new(0) };
    static UNSETTLED: Cell<u32> = const { Cell::new(0) };
    static STASH: Cell<TextRef> = const { Cell::new(TextRef::NONE) };
}

/// Gives back what a process held; set in the postmaster, inherited by
/// every process it starts.
static GIVE_BACK: OnceLock<fn(Held)> = OnceLock::new();

/// Sets what gives back what an exiting process held (from `_PG_init`).
pub fn set_give_back(give_back: fn(Held)) {
    let _ = GIVE_BACK.set(give_back);
}

/// Installs the exit callback, once a process (not in the unit tests,
/// which run no server).
fn install() {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if !cfg!(test) {
        crate::process::before_shmem_exit_once(&INSTALLED, Some(on_exit));
    }
}

pub(super) fn reserved(at: SlotRef, id: i64) {
    install();
    RESERVED.with(|r| r.borrow_mut().push((at, id)));
}

pub(super) fn unreserved(at: SlotRef, id: i64) {
    RESERVED.with(|r| r.borrow_mut().retain(|&held| held != (at, id)));
}

pub(super) fn stashed(text: TextRef) {
    install();
    STASH.with(|s| s.set(text));
}

/// The stash `text` was published or dropped, if it is this process's.
pub(super) fn settled(text: TextRef) {
    STASH.with(|s| {
        if s.get() == text {
            s.set(TextRef::NONE);
        }
    });
}

fn count(counter: &'static std::thread::LocalKey<Cell<u32>>, added: bool) {
    install();
    counter.with(|c| {
        c.set(if added {
            c.get() + 1
        } else {
            c.get().saturating_sub(1)
        })
    });
}

pub(super) fn room_wanted(added: bool) {
    count(&ROOM_WANTED, added);
}

pub(super) fn unsettled(added: bool) {
    count(&UNSETTLED, added);
}

#[pg_guard]
unsafe extern "C-unwind" fn on_exit(_code: i32, _arg: pg_sys::Datum) {
    let held = Held {
        reserved: RESERVED.with(|r| std::mem::take(&mut *r.borrow_mut())),
        room_wanted: ROOM_WANTED.with(|c| c.replace(0)),
        unsettled: UNSETTLED.with(|c| c.replace(0)),
        stash: STASH.with(|s| s.replace(TextRef::NONE)),
    };
    if held.reserved.is_empty()
        && held.room_wanted == 0
        && held.unsettled == 0
        && held.stash.is_none()
    {
        return;
    }
    // A FATAL is never raised with one of the registry's locks held
    // (interrupts are held off meanwhile), but an error while exiting may
    // have left one.
    // SAFETY: the process is exiting; the server releases them all too.
    unsafe { pg_sys::LWLockReleaseAll() };
    if let Some(give_back) = GIVE_BACK.get() {
        give_back(held);
    }
}
