//! A worker process's entry (and a spare's, which waits until a launch
//! hands it a slot; see `spare.rs`): signals, finding its registry slot
//! (and its postmaster handle), getting its config back after a crash,
//! running its kind, recording the error it leaves with (caught by
//! `reported.rs`) and its exit.
//! A spare's worker whose kind allows it (`kinds::gives_back`) gives the
//! process back when it stops: the process waits as a spare again, keeping
//! its connection, for the next launch. This is the one place that knows
//! the kinds; the kinds use `runtime.rs`, which knows none.

use std::cell::Cell;
use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::codec::ErrorText;
use crate::connection;
use crate::kinds;
use crate::launch;
use crate::process;
use crate::registry::{self, SlotRef};
use crate::reported;
use crate::runtime::{self, Identity};
use crate::spare;

thread_local! {
    /// The entry of the spare table this process holds while it is a spare.
    static SPARE_ENTRY: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Entry point of every built-in worker (`bgw_function_name`). The main
/// argument is the registry slot; `bgw_extra` carries id and generation.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn lightdb_bgw_main(arg: pg_sys::Datum) {
    process::install_worker_signal_handlers();
    process::end_after_proc_exit();

    // SAFETY: the postmaster sets MyBgworkerEntry before calling us.
    let extra: Vec<u8> = unsafe {
        let entry = pg_sys::MyBgworkerEntry;
        (*entry).bgw_extra.iter().map(|&c| c as u8).collect()
    };
    let Some((id, generation)) = launch::decode_extra(&extra) else {
        log!("lightdb_bgw: worker started without a lightdb_bgw handle; leaving");
        return;
    };
    let at = SlotRef {
        index: arg.value() as u32,
        generation,
    };
    // SAFETY: set by the server when this process started.
    let started = unsafe { pg_sys::MyStartTimestamp };
    let _ = become_worker(at, id, None, started);
}

/// What became of the process once its worker stopped without ending it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Afterwards {
    /// The worker stopped as said and gives the process back: it may be a
    /// spare again (see `give_back`).
    Stopped(kinds::Ended),
    /// The process leaves (with code 0).
    Leave,
}

/// Runs worker `id` of registry slot `at` in this process: from a fresh
/// process (`lightdb_bgw_main`), or from a spare handed that slot, which
/// knows its postmaster `handle` and starts now (`started`: 0). A worker
/// of a spare whose kind allows it gives the process back when it stops
/// (see `kinds::gives_back`); every other ends the process.
pub fn become_worker(
    at: SlotRef,
    id: i64,
    handle: Option<registry::PgHandle>,
    started: i64,
) -> Afterwards {
    let identity = Identity { at, id };
    runtime::set_identity(identity, false);
    install_exit_callbacks();

    // SAFETY: MyProcPid is set for every server process.
    let pid = unsafe { pg_sys::MyProcPid };
    // A static worker has no handle from a registration call, and one
    // brought back after a crash-reinitialisation has a void one: they find
    // their postmaster slot themselves, so that terminate() goes through
    // the postmaster as for every other worker.
    let Some(facts) = registry::start_facts(identity.at, id) else {
        log!("lightdb_bgw: worker {id} was replaced; leaving");
        return Afterwards::Leave;
    };
    let own_handle = handle.or_else(|| {
        facts
            .find_handle
            .then(|| launch::find_own_handle(pid))
            .flatten()
    });
    // Brought back after a crash-reinitialisation, which lost the
    // out-of-line config: read the copy kept on disk at launch, before the
    // worker counts as started, so nobody sees it running without one.
    if facts.config_missing
        && registry::restore_config(identity.at, id, crate::control::config_jsonb).is_none()
    {
        runtime::record_note(Some(
            "its config was lost in a crash-reinitialisation; the worker stops for good",
        ));
        registry::request_terminate(id);
        process::exit(0);
    }
    // Ready as it starts if it needs no connection, or runs in a process
    // given back connected exactly as it connects.
    let ready = !facts.kind.needs_connection(facts.has_database)
        || (handle.is_some()
            && connection::connected_exactly_as(
                facts.database_oid,
                facts.role_oid,
                facts.bypass_allowconn,
            ));
    // Woken to stop from the claim if it needs no connection, else once
    // connected (see `connection::connect`).
    let woken = handle.is_some() && ready && kinds::woken_to_stop(facts.kind);
    // A cancel meant for the worker this process ran before is not this
    // one's.
    // SAFETY: a flag of this process's own, read by its interrupt checks.
    unsafe { pg_sys::QueryCancelPending = 0 };
    let claimed = registry::claim(identity.at, id, pid, own_handle, started, ready, woken);
    // Read in full only once claimed: whoever waits for it is awake.
    let Some(record) = claimed
        .then(|| registry::find_at(identity.at, id))
        .flatten()
    else {
        // Terminated while it waited for its (re)start, or its slot went to
        // a newer worker: leave with code 0, which unregisters it.
        log!("lightdb_bgw: worker {id} was terminated or replaced; leaving");
        return Afterwards::Leave;
    };
    let recyclable = handle.is_some() && kinds::gives_back(&record.def.config);
    runtime::set_identity(identity, recyclable);
    if handle.is_some() {
        // A spare's process title named the spare: it names the worker now,
        // as a process started for it would.
        set_title(&record.def.name);
        // The dispatcher starts the spare that replaces this one once this
        // worker runs (connected, if it connects): not earlier, when the
        // new process would compete with this one for the processor. None
        // is needed while enough others wait (given back by their workers).
        if registry::unconnected_spares() < crate::gucs::spare_workers() {
            if ready {
                registry::poke_dispatcher();
            } else {
                connection::replace_when_connected();
            }
        }
    }
    runtime::hold_cancels();
    let ended = kinds::run(&record);
    if recyclable && own_handle.is_some() {
        Afterwards::Stopped(ended)
    } else {
        // Ended by itself: the process leaves with code 0.
        Afterwards::Leave
    }
}

/// A spare's worker (`at`, `id`) stopped and gives the process back: the
/// process is a spare again, in a new table entry (none free, `None`: it
/// leaves), connected as the worker was, if it was; then the worker is
/// recorded stopped. In that order: whoever waits for the worker to stop
/// (a database being dropped among them) then finds the process among the
/// spares.
fn give_back(
    at: SlotRef,
    id: i64,
    handle: registry::PgHandle,
    ended: kinds::Ended,
) -> Option<usize> {
    if !registry::begin_give_back(at, id) {
        // Terminated as it ended: SIGTERM is on its way; leave first.
        process::exit(match ended {
            kinds::Ended::Exit(code) => code,
            kinds::Ended::Terminated => 1,
        });
    }
    // A SIGTERM that came for this worker (pg_terminate_backend, say) ends
    // the process here, as this worker's; a cancel is this worker's only.
    // SAFETY: flags of this process's own, set by its signal handlers.
    unsafe {
        pg_sys::QueryCancelPending = 0;
        if pg_sys::ProcDiePending != 0 {
            pg_sys::check_for_interrupts!();
        }
    }
    set_title(spare::NAME);
    // SAFETY: MyProcPid is set for every server process; reading the clock
    // has no preconditions.
    let (pid, now) = unsafe { (pg_sys::MyProcPid, pg_sys::GetCurrentTimestamp()) };
    let lendable = connection::lendable_as(now);
    if lendable.flatten().is_some() {
        runtime::set_application_name("");
        runtime::clear_activity();
    }
    // Connected too long ago, or otherwise than by OID, or connected while
    // `spare_workers` connected processes wait idle already: it leaves
    // instead. Without that bound a role's given-back processes, each
    // connected to another database, would hold slots beyond its quota
    // (those not connected serve anybody; the dispatcher lets go of the
    // ones beyond the setting once they linger).
    let room = lendable.is_some_and(|connection| {
        connection.is_none() || registry::idle_spares_connected() < crate::gucs::spare_workers()
    });
    let entry = lendable
        .filter(|_| room)
        .and_then(|connection| registry::rejoin_spare(handle, pid, connection, now));
    // Idle now, connected to a database a command is dropping, renaming,
    // moving or copying: it leaves. Looked at after it is idle, so that a
    // command either finds it idle and lets it go or is seen closed here.
    let closed = lendable
        .flatten()
        .is_some_and(|connection| registry::database_closed(connection.database_oid));
    let entry = entry.filter(|&index| !(closed && registry::retire_own(index)));
    SPARE_ENTRY.with(|e| e.set(entry));
    match ended {
        kinds::Ended::Exit(code) => registry::give_back(at, id, handle, code, None),
        kinds::Ended::Terminated => {
            let error = terminated_error();
            registry::record_error(at, Some(&error));
            registry::give_back(at, id, handle, 1, Some(&error.short()));
        }
    }
    reported::forget();
    runtime::clear_identity();
    entry
}

/// The error a worker stopped by `terminate` records: the one the server's
/// SIGTERM handler raises in a background worker, so a worker that gave
/// its process back reads as one whose process ended.
fn terminated_error() -> ErrorText {
    // SAFETY: the postmaster sets MyBgworkerEntry before calling us; its
    // type is a NUL-terminated string.
    let worker_type = unsafe {
        CStr::from_ptr((*pg_sys::MyBgworkerEntry).bgw_type.as_ptr())
            .to_string_lossy()
            .into_owned()
    };
    ErrorText {
        sqlstate: "57P01".into(),
        message: format!(
            "terminating background worker \"{worker_type}\" due to administrator command"
        ),
        ..Default::default()
    }
}

/// Shows `title` as the process title (`ps`), as the server sets it.
fn set_title(title: &str) {
    if let Ok(title) = std::ffi::CString::new(title) {
        // SAFETY: the server copies the title into its own buffer.
        unsafe { pg_sys::init_ps_display(title.as_ptr()) };
    }
}

/// The exit callbacks and the log hook, installed once a process: they
/// act for whichever worker the process runs when it ends.
fn install_exit_callbacks() {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::Relaxed) {
        return;
    }
    // SAFETY: an on_shmem_exit callback runs after every before_shmem_exit
    // callback (the server's transaction and statistics shutdown among
    // them), so no transaction or lock of ours is held, and, registered
    // after the server's own process set-up, before the PGPROC is released,
    // so the registry lock can still be taken. The exit is recorded as late
    // as that allows: waiters see it just before the process ends.
    // The full error is recorded earlier, in a before_shmem_exit callback:
    // registered before the connection, it runs after the server's own
    // transaction shutdown, while the out-of-line text area (DSM) is still
    // mapped.
    unsafe {
        pg_sys::before_shmem_exit(Some(on_leaving), pg_sys::Datum::from(0usize));
        pg_sys::on_shmem_exit(Some(on_exit), pg_sys::Datum::from(0usize));
    }
    reported::install();
}

/// Entry point of a spare: waits, idle, until a launch hands it a slot,
/// then runs that worker. SIGTERM (a spare let go, or a shutdown) ends it
/// through the server's own handler while it waits.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn lightdb_bgw_spare_main(arg: pg_sys::Datum) {
    process::install_worker_signal_handlers();
    process::end_after_proc_exit();
    let mut index = arg.value();
    // SAFETY: MyProcPid is set for every server process.
    let pid = unsafe { pg_sys::MyProcPid };
    // SAFETY: reading the clock has no preconditions.
    if !registry::spare_running(index, pid, unsafe { pg_sys::GetCurrentTimestamp() }) {
        log!("lightdb_bgw: spare {index} is not expected; leaving");
        return;
    }
    // SAFETY: registered once, while shared memory is attached; it runs
    // at every exit of this process, also FATAL ones.
    unsafe { pg_sys::on_shmem_exit(Some(on_spare_exit), pg_sys::Datum::from(0usize)) };
    loop {
        SPARE_ENTRY.with(|e| e.set(Some(index)));
        let assignment = loop {
            if let Some(assignment) = registry::spare_assignment(index) {
                break assignment;
            }
            runtime::nap(None);
        };
        SPARE_ENTRY.with(|e| e.set(None));
        let afterwards = become_worker(assignment.at, assignment.id, Some(assignment.handle), 0);
        let Afterwards::Stopped(ended) = afterwards else {
            return;
        };
        match give_back(assignment.at, assignment.id, assignment.handle, ended) {
            Some(entry) => index = entry,
            None => return,
        }
    }
}

/// A spare leaving without a worker to run empties its entry.
#[pg_guard]
unsafe extern "C-unwind" fn on_spare_exit(_code: i32, _arg: pg_sys::Datum) {
    if let Some(index) = SPARE_ENTRY.with(Cell::get) {
        registry::spare_leaving(index);
    }
}

/// Before the process lets go of shared memory: records the error it is
/// leaving with, in full. When what the worker was authorised as is gone
/// (its role or database), it also stops for good, in the registry and in
/// the postmaster, instead of a restart loop.
#[pg_guard]
unsafe extern "C-unwind" fn on_leaving(_code: i32, _arg: pg_sys::Datum) {
    let Some(me) = runtime::try_identity() else {
        return;
    };
    let Some(mut error) = reported::last() else {
        return;
    };
    if connection::gone_for_good(&error.sqlstate) {
        if let Some(handle) = registry::stop_for_good(me.at) {
            launch::terminate_handle(handle);
        }
        error.message.push_str(" (the worker stops for good)");
        reported::replace(error.clone());
    }
    registry::record_error(me.at, Some(&error));
}

/// As late as the registry lock can still be taken: records the exit.
#[pg_guard]
unsafe extern "C-unwind" fn on_exit(code: i32, _arg: pg_sys::Datum) {
    let Some(me) = runtime::try_identity() else {
        return;
    };
    let error = reported::last().map(|e| e.short());
    registry::record_exit(me.at, code, error.as_deref());
}
