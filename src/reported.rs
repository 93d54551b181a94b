//! The last ERROR or FATAL this process reported, caught on its way to
//! the server log (`emit_log_hook`, chained after whatever hook was there
//! before): what a worker leaves with is recorded in full in
//! `workers.last_error` as it exits (see `worker.rs`).

use std::ffi::CStr;
use std::sync::Mutex;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::codec::ErrorText;

static LAST: Mutex<Option<ErrorText>> = Mutex::new(None);

/// The `emit_log_hook` installed before ours, called after ours.
static mut PREV_EMIT_LOG_HOOK: pg_sys::emit_log_hook_type = None;

/// Installs the hook (a worker process, once, as it starts).
pub fn install() {
    // SAFETY: the process's only thread, at its start; whatever hook was
    // installed before is kept and called after ours.
    unsafe {
        PREV_EMIT_LOG_HOOK = pg_sys::emit_log_hook;
        pg_sys::emit_log_hook = Some(remember_error);
    }
}

/// The last error reported, if any.
pub fn last() -> Option<ErrorText> {
    LAST.lock().ok().and_then(|e| e.clone())
}

/// Replaces the last error reported (a note added to it).
pub fn replace(error: ErrorText) {
    if let Ok(mut last) = LAST.lock() {
        *last = Some(error);
    }
}

/// Forgets the last error (a process given back: its next worker starts
/// with none).
pub fn forget() {
    if let Ok(mut last) = LAST.lock() {
        *last = None;
    }
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
        let text = |p: *const std::ffi::c_char| {
            (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
        };
        let error = ErrorText {
            sqlstate: CStr::from_ptr(pg_sys::unpack_sql_state((*edata).sqlerrcode))
                .to_string_lossy()
                .into_owned(),
            message: text((*edata).message).unwrap_or_else(|| "(no message)".into()),
            detail: text((*edata).detail),
            hint: text((*edata).hint),
            context: text((*edata).context),
        };
        if let Ok(mut slot) = LAST.lock() {
            *slot = Some(error);
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
