//! What a worker process asks of the server for itself, written once for
//! every PostgreSQL version: installing the server's own signal handlers
//! and leaving the process. PostgreSQL 18 renamed `pqsignal` to
//! `pqsignal_be` in the backend (a macro in `port.h`), and pgrx's pg18
//! bindings lost `proc_exit`'s `noreturn`; both differences stay here.

use std::ffi::c_int;

use pgrx::pg_sys;

/// A C signal handler, as the server's own are.
pub type Handler = unsafe extern "C-unwind" fn(c_int);

/// The server's own signal handlers, by their C symbols (pgrx wraps them in
/// Rust functions, which cannot serve as handlers).
mod server {
    extern "C-unwind" {
        pub fn die(signal: std::ffi::c_int);
        pub fn SignalHandlerForConfigReload(signal: std::ffi::c_int);
        pub fn procsignal_sigusr1_handler(signal: std::ffi::c_int);
    }
}

/// Installs `handler` for `signal` through the server's `pqsignal`.
fn set_handler(signal: u32, handler: Handler) {
    // SAFETY: installing one of the server's own handlers in this process;
    // the server's wrapper sets the flags PostgreSQL expects.
    unsafe {
        #[cfg(not(feature = "pg18"))]
        pg_sys::pqsignal(signal as c_int, Some(handler));
        #[cfg(feature = "pg18")]
        pg_sys::pqsignal_be(signal as c_int, Some(handler));
    }
}

/// SIGTERM ends the worker through the server's own `die` handler, which
/// also cancels a running statement; SIGHUP asks for a reload; SIGUSR1 lets
/// the worker hear about its own dynamic children even without a database.
/// Then signals are unblocked, as bgworker.c documents.
pub fn install_worker_signal_handlers() {
    set_handler(pg_sys::SIGTERM, server::die);
    set_handler(pg_sys::SIGHUP, server::SignalHandlerForConfigReload);
    set_handler(pg_sys::SIGUSR1, server::procsignal_sigusr1_handler);
    // SAFETY: the handlers are in place; a background worker starts with
    // every signal blocked and must unblock them itself.
    unsafe { pg_sys::BackgroundWorkerUnblockSignals() };
}

/// Ends the process with `code` through `proc_exit`, which runs every exit
/// callback (the registry records the exit there). Code 0 unregisters a
/// worker; code 1 lets its restart rule apply.
#[allow(unreachable_code)]
pub fn exit(code: i32) -> ! {
    // SAFETY: proc_exit runs the exit callbacks and ends the process; it
    // does not return on any version, whatever the bindings say.
    unsafe { pg_sys::proc_exit(code) };
    unreachable!("proc_exit does not return")
}
