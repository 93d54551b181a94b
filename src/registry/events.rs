//! Events on the registry: condition variables broadcast at every change
//! of state so that waiters in any session wake without polling, and the
//! pid of the dispatcher, the process the postmaster notifies when a
//! worker starts or is reaped (it wakes the waiters in turn).
//!
//! A change of one slot wakes the waiters of that slot (one of
//! [`SLOT_CVS`] variables, by slot index) and those of the general
//! variable; sessions waiting on other workers sleep on. The dispatcher
//! wakes a slot's waiters when the postmaster has reaped its worker or let
//! it go before it ran. The general variable is for waits on many workers
//! (a supervisor's children) and on a raw worker, whose every change only
//! the postmaster sees: the dispatcher broadcasts it after each of the
//! postmaster's notifications, and only while such a wait is under way
//! (`unsettled_waiters`).

use std::cell::UnsafeCell;
#[cfg(feature = "bench")]
use std::sync::atomic::AtomicI64;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, Ordering};

use pgrx::pg_sys;

/// How many condition variables the slots share, by index.
pub const SLOT_CVS: usize = 64;

/// Lives in the registry's header, in shared memory.
#[repr(C)]
pub(super) struct Events {
    /// The server's own condition variables: safe to use without a lock.
    cv: UnsafeCell<pg_sys::ConditionVariable>,
    slot_cvs: [UnsafeCell<pg_sys::ConditionVariable>; SLOT_CVS],
    /// Waits on the general variable for a change only the postmaster
    /// sees, under way now.
    unsettled_waiters: AtomicU32,
    /// The dispatcher's pid, 0 while it does not run. The dispatcher.
    dispatcher_pid: AtomicI32,
    /// A time stamp the benchmark's floor worker leaves.
    #[cfg(feature = "bench")]
    bench_stamp: AtomicI64,
}

// SAFETY: the condition variable is the server's own shared-memory
// primitive, made to be used by every process at once.
unsafe impl Sync for Events {}

impl Events {
    /// Initialises the condition variable (the postmaster, at creation of
    /// shared memory, on zeroed memory).
    pub(super) fn init(&self) {
        // SAFETY: called once on fresh shared memory, before any process
        // could use it.
        unsafe {
            pg_sys::ConditionVariableInit(self.cv.get());
            for cv in &self.slot_cvs {
                pg_sys::ConditionVariableInit(cv.get());
            }
        }
    }
}

/// Where this process finds the events: set with the registry's memory.
static EVENTS: AtomicPtr<Events> = AtomicPtr::new(std::ptr::null_mut());

/// Tells this process where the events live (the registry's memory, as
/// it is created or found), or forgets them (`null`, as it is released).
pub(super) fn attach(events: *mut Events) {
    EVENTS.store(events, Ordering::Release);
}

fn events() -> Option<&'static Events> {
    let events = EVENTS.load(Ordering::Acquire);
    // SAFETY: set to the events inside the registry's shared memory, which
    // lives as long as this process uses it; shared by design.
    (!events.is_null()).then(|| unsafe { &*events })
}

/// The dispatcher's pid, or 0 while it does not run.
pub fn dispatcher_pid() -> i32 {
    events().map_or(0, |e| e.dispatcher_pid.load(Ordering::Acquire))
}

/// Wakes the dispatcher (its latch, through SIGUSR1 as the postmaster
/// does): something was queued.
pub fn poke_dispatcher() {
    let pid = dispatcher_pid();
    if pid != 0 {
        // SAFETY: sending a signal has no memory effects; a pid that has
        // just gone is harmless (ESRCH).
        unsafe { libc::kill(pid, libc::SIGUSR1) };
    }
}

/// Run by the dispatcher as it starts.
pub fn set_dispatcher_pid(pid: i32) {
    if let Some(e) = events() {
        e.dispatcher_pid.store(pid, Ordering::Release);
    }
}

/// Clears the dispatcher's pid if it is still `pid` (the dispatcher, as it
/// exits).
pub fn clear_dispatcher_pid(pid: i32) {
    if let Some(e) = events() {
        let _ = e
            .dispatcher_pid
            .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// The benchmark floor's time stamp.
#[cfg(feature = "bench")]
pub fn bench_stamp() -> i64 {
    events().map_or(0, |e| e.bench_stamp.load(Ordering::Acquire))
}

/// Leaves the benchmark floor's time stamp.
#[cfg(feature = "bench")]
pub fn set_bench_stamp(stamp: i64) {
    if let Some(e) = events() {
        e.bench_stamp.store(stamp, Ordering::Release);
    }
}

/// Wakes every session waiting on the registry.
pub fn broadcast() {
    if let Some(e) = events() {
        // SAFETY: the condition variables were initialised with the
        // registry and live as long as shared memory.
        unsafe {
            pg_sys::ConditionVariableBroadcast(e.cv.get());
            for cv in &e.slot_cvs {
                pg_sys::ConditionVariableBroadcast(cv.get());
            }
        }
    }
}

/// Wakes the sessions waiting on slot `index` and the general waiters.
pub fn broadcast_slot(index: usize) {
    if let Some(e) = events() {
        // SAFETY: as in `broadcast`.
        unsafe {
            pg_sys::ConditionVariableBroadcast(e.slot_cvs[index % SLOT_CVS].get());
            pg_sys::ConditionVariableBroadcast(e.cv.get());
        }
    }
}

/// The dispatcher, after the postmaster's notifications: wakes the
/// general waiters, if a wait for a change only the postmaster sees is
/// under way (a supervisor's wait counts as one).
pub fn broadcast_unsettled() {
    if let Some(e) = events() {
        if e.unsettled_waiters.load(Ordering::Acquire) > 0 {
            // SAFETY: as in `broadcast`.
            unsafe { pg_sys::ConditionVariableBroadcast(e.cv.get()) };
        }
    }
}

/// Takes back `n` waits this process counted and never dropped (it exits;
/// see `held.rs`).
pub(super) fn take_back_unsettled(n: u32) {
    if let Some(e) = events().filter(|_| n > 0) {
        e.unsettled_waiters.fetch_sub(n, Ordering::AcqRel);
    }
}

/// A wait on the registry's condition variables. Create it *before*
/// checking the condition, so no change between the check and the sleep is
/// missed; dropping it ends the wait.
pub struct ChangeWait {
    cv: *mut pg_sys::ConditionVariable,
    /// Counted in `unsettled_waiters` while it lives.
    counted: Option<&'static AtomicU32>,
}

impl ChangeWait {
    /// A wait for a change of any slot, or one the postmaster sees.
    pub fn prepare() -> Option<ChangeWait> {
        let e = events()?;
        e.unsettled_waiters.fetch_add(1, Ordering::AcqRel);
        super::held::unsettled(true);
        Some(Self::on(e.cv.get(), Some(&e.unsettled_waiters)))
    }

    /// A wait for a change of slot `index` recorded in the registry.
    pub fn for_slot(index: usize) -> Option<ChangeWait> {
        let e = events()?;
        Some(Self::on(e.slot_cvs[index % SLOT_CVS].get(), None))
    }

    fn on(cv: *mut pg_sys::ConditionVariable, counted: Option<&'static AtomicU32>) -> ChangeWait {
        // SAFETY: the condition variable lives in shared memory for the
        // life of the server; one prepared sleep per process at a time,
        // which the server enforces by cancelling any other.
        unsafe { pg_sys::ConditionVariablePrepareToSleep(cv) };
        ChangeWait { cv, counted }
    }

    /// Sleeps until the registry changes or `timeout` passes. Serves
    /// interrupts (query cancel raises an ERROR here).
    pub fn sleep(&self, timeout: std::time::Duration) {
        let millis = timeout.as_millis().clamp(1, i32::MAX as u128) as std::ffi::c_long;
        // SAFETY: `cv` is the prepared condition variable; the server's
        // sleep handles interrupts and postmaster death.
        unsafe {
            pg_sys::ConditionVariableTimedSleep(self.cv, millis, pg_sys::PG_WAIT_EXTENSION);
        }
    }
}

impl Drop for ChangeWait {
    fn drop(&mut self) {
        if let Some(count) = self.counted {
            count.fetch_sub(1, Ordering::AcqRel);
            super::held::unsettled(false);
        }
        // SAFETY: cancelling a prepared sleep has no other precondition.
        unsafe { pg_sys::ConditionVariableCancelSleep() };
    }
}
