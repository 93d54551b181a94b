//! What a worker process asks of the server for itself, written once for
//! every PostgreSQL version: installing the server's own signal handlers
//! and leaving the process. PostgreSQL 18 renamed `pqsignal` to
//! `pqsignal_be` in the backend (a macro in `port.h`), and pgrx's pg18
//! bindings lost `proc_exit`'s `noreturn`; both differences stay here.
//! Also the last step of leaving: once PostgreSQL's own exit callbacks
//! have run, the process ends without the C library's teardown of what
//! the postmaster loaded (see `end_after_proc_exit`).

use std::ffi::c_int;
use std::sync::atomic::{AtomicI32, Ordering};

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

/// The code `proc_exit` is ending this process with, once its callbacks
/// run; `NOT_LEAVING` before.
static LEAVING_WITH: AtomicI32 = AtomicI32::new(NOT_LEAVING);
const NOT_LEAVING: i32 = i32::MIN;

/// Makes this process end as soon as PostgreSQL's own `proc_exit` has
/// cleaned up (every `before_shmem_exit`, `on_shmem_exit` and
/// `on_proc_exit` callback, temporary files and shared memory included),
/// skipping the C library's exit handlers: those tear down libraries the
/// postmaster loaded before it forked (OpenSSL's tables, shared libraries'
/// destructors), which frees memory page by page in a process about to
/// vanish, each page first copied from the postmaster's (about 0.5 ms of
/// a short worker's life on the benchmark machine). Output streams are
/// flushed first. An `exit()` that does not come through `proc_exit`
/// takes the normal way, so the server's own last-resort cleanup still
/// runs. Called once, at the start of a lightdb_bgw process.
pub fn end_after_proc_exit() {
    // SAFETY: registering a callback that only stores its argument; the
    // server runs it from proc_exit, after shared memory is let go.
    unsafe { pg_sys::on_proc_exit(Some(record_exit_code), pg_sys::Datum::from(0usize)) };
    // SAFETY: `end_now` is a plain C function with no arguments; atexit
    // runs the last registered first, so it runs before the handlers the
    // libraries registered in the postmaster.
    unsafe { libc::atexit(end_now) };
}

/// Remembers the code `proc_exit` was called with.
unsafe extern "C-unwind" fn record_exit_code(code: c_int, _arg: pg_sys::Datum) {
    LEAVING_WITH.store(code, Ordering::Relaxed);
}

/// The first C exit handler: ends the process at once if `proc_exit`
/// has already cleaned up.
extern "C" fn end_now() {
    let code = LEAVING_WITH.load(Ordering::Relaxed);
    if code == NOT_LEAVING {
        return;
    }
    // SAFETY: flushing every output stream, then ending the process with
    // the code proc_exit was given; nothing of this process is needed
    // after PostgreSQL's own exit callbacks.
    unsafe {
        libc::fflush(std::ptr::null_mut());
        libc::_exit(code)
    }
}
