//! A worker process's entry: signals, finding its registry slot (and its
//! postmaster handle), getting its config back after a crash, running its
//! kind, remembering its last error and recording its exit. This is the one
//! place that knows the kinds; the kinds use `runtime.rs`, which knows none.

use std::ffi::CStr;
use std::sync::Mutex;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::connection;
use crate::error::split_recorded;
use crate::kinds;
use crate::launch;
use crate::process;
use crate::registry;
use crate::runtime::{self, Identity};

/// The last ERROR or FATAL this process reported, for `workers.last_error`.
static LAST_REPORTED_ERROR: Mutex<Option<String>> = Mutex::new(None);

/// The `emit_log_hook` installed before ours, called after ours.
static mut PREV_EMIT_LOG_HOOK: pg_sys::emit_log_hook_type = None;

/// Entry point of every built-in worker (`bgw_function_name`). The main
/// argument is the registry slot; `bgw_extra` carries id and generation.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn lightdb_bgw_main(arg: pg_sys::Datum) {
    process::install_worker_signal_handlers();

    // SAFETY: the postmaster sets MyBgworkerEntry before calling us.
    let extra: Vec<u8> = unsafe {
        let entry = pg_sys::MyBgworkerEntry;
        (*entry).bgw_extra.iter().map(|&c| c as u8).collect()
    };
    let Some((id, generation)) = launch::decode_extra(&extra) else {
        log!("lightdb_bgw: worker started without a lightdb_bgw handle; leaving");
        return;
    };
    let identity = Identity {
        slot: arg.value() as u32,
        id,
        generation,
    };
    runtime::set_identity(identity);

    // SAFETY: an on_shmem_exit callback runs after every before_shmem_exit
    // callback (the server's transaction and statistics shutdown among
    // them), so no transaction or lock of ours is held, and, registered
    // after the server's own process set-up, before the PGPROC is released,
    // so the registry lock can still be taken. The exit is recorded as late
    // as that allows: waiters see it just before the process ends.
    unsafe {
        pg_sys::on_shmem_exit(Some(on_exit), pg_sys::Datum::from(0usize));
        PREV_EMIT_LOG_HOOK = pg_sys::emit_log_hook;
        pg_sys::emit_log_hook = Some(remember_error);
    }

    // SAFETY: MyProcPid is set for every server process.
    let pid = unsafe { pg_sys::MyProcPid };
    // A static worker has no handle from a registration call, and one
    // brought back after a crash-reinitialisation has a void one: they find
    // their postmaster slot themselves, so that terminate() goes through
    // the postmaster as for every other worker.
    let own_handle = registry::find(id)
        .filter(|r| r.find_handle && r.slot == identity.slot)
        .and_then(|_| launch::find_own_handle(pid));
    let Some(record) = registry::claim(identity.slot, id, generation, pid, own_handle) else {
        // Terminated while it waited for its (re)start, or its slot went to
        // a newer worker: leave with code 0, which unregisters it.
        log!("lightdb_bgw: worker {id} was terminated or replaced; leaving");
        return;
    };
    let mut record = record;
    if record.def.config.is_empty() {
        // Brought back after a crash-reinitialisation, which lost the
        // out-of-line config: read the copy kept on disk at launch.
        match registry::restore_config(identity.slot, id, generation) {
            Some(config) => record.def.config = config,
            None => {
                runtime::record_error(Some(
                    "its config was lost in a crash-reinitialisation; the worker stops for good",
                ));
                process::exit(0);
            }
        }
    }
    kinds::run(&record);
}

#[pg_guard]
unsafe extern "C-unwind" fn on_exit(code: i32, _arg: pg_sys::Datum) {
    let Some(me) = runtime::try_identity() else {
        return;
    };
    let mut error = LAST_REPORTED_ERROR.lock().ok().and_then(|e| e.clone());
    let final_error = error
        .as_deref()
        .and_then(split_recorded)
        .is_some_and(|(code, _)| connection::gone_for_good(code));
    if final_error {
        // What the worker was authorised as is gone: stop for good, in our
        // registry and in the postmaster, instead of a restart loop.
        if let Some(handle) = registry::stop_for_good(me.slot, me.id, me.generation) {
            launch::terminate_handle(handle);
        }
        error = error.map(|e| format!("{e} (the worker stops for good)"));
    }
    registry::record_exit(me.slot, me.id, me.generation, code, error.as_deref());
}

#[pg_guard]
unsafe extern "C-unwind" fn remember_error(edata: *mut pg_sys::ErrorData) {
    chain_log_hook(edata);
    // SAFETY: the server passes the error being reported, valid during the
    // call.
    unsafe {
        if edata.is_null() || (*edata).elevel < pgrx::PgLogLevel::ERROR as i32 {
            return;
        }
        let message = if (*edata).message.is_null() {
            String::from("(no message)")
        } else {
            CStr::from_ptr((*edata).message)
                .to_string_lossy()
                .into_owned()
        };
        let sqlstate = CStr::from_ptr(pg_sys::unpack_sql_state((*edata).sqlerrcode))
            .to_string_lossy()
            .into_owned();
        if let Ok(mut slot) = LAST_REPORTED_ERROR.lock() {
            *slot = Some(format!("{sqlstate}: {message}"));
        }
    }
}

/// Passes the report on to the hook that was installed before ours.
fn chain_log_hook(edata: *mut pg_sys::ErrorData) {
    // SAFETY: the previous hook was read once at start and is a valid
    // function pointer or None; it gets the report we were given.
    unsafe {
        if let Some(prev) = PREV_EMIT_LOG_HOOK {
            prev(edata);
        }
    }
}
