//! What a worker process asks of the server for itself, written once for
//! every PostgreSQL version: installing the server's own signal handlers
//! and leaving the process. PostgreSQL 18 renamed `pqsignal` to
//! `pqsignal_be` in the backend (a macro in `port.h`), and pgrx's pg18
//! bindings lost `proc_exit`'s `noreturn`; both differences stay here.
//! Also the last step of leaving: once PostgreSQL's own exit callbacks
//! have run, the process ends without the C library's teardown of what
//! the postmaster loaded (see `end_after_proc_exit`).

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Registers `callback` to run before the process lets go of shared
/// memory, once a process however often asked (`installed` marks it).
pub fn before_shmem_exit_once(installed: &AtomicBool, callback: pg_sys::pg_on_exit_callback) {
    if !installed.swap(true, Ordering::Relaxed) {
        // SAFETY: registering an exit callback has no precondition; it runs
        // before shared memory is let go.
        unsafe { pg_sys::before_shmem_exit(callback, pg_sys::Datum::from(0usize)) };
    }
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

/// Makes this process end as soon as PostgreSQL's own `proc_exit` has
/// cleaned up (every `before_shmem_exit`, `on_shmem_exit` and
/// `on_proc_exit` callback, temporary files and shared memory included),
/// skipping the C library's exit handlers: those tear down libraries the
/// postmaster loaded before it forked (OpenSSL's tables, shared libraries'
/// destructors), which frees memory page by page in a process about to
/// vanish, each page first copied from the postmaster's (about 0.5 ms of
/// a short worker's life on the benchmark machine). Output streams are
/// flushed first, and the process ends with the code `exit` was given.
/// An `exit()` that does not come through `proc_exit` takes the normal
/// way, so the server's own last-resort cleanup still runs. Called once,
/// at the start of a lightdb_bgw process. With glibc only (its `on_exit`
/// passes the exit code on); elsewhere processes end the normal way.
pub fn end_after_proc_exit() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `end_now` is a plain C function of glibc's `on_exit` type;
    // exit handlers run the last registered first, so it runs before the
    // handlers the libraries registered in the postmaster.
    unsafe {
        glibc::on_exit(end_now, std::ptr::null_mut());
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    extern "C" {
        /// Registers an exit handler that receives `exit`'s status.
        pub fn on_exit(
            handler: extern "C" fn(std::ffi::c_int, *mut std::ffi::c_void),
            arg: *mut std::ffi::c_void,
        ) -> std::ffi::c_int;
    }
}

/// The first C exit handler: ends the process at once with `status` if
/// `exit` came from `proc_exit`, whose callbacks have then all run.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
extern "C" fn end_now(status: c_int, _arg: *mut std::ffi::c_void) {
    // SAFETY: a flag of this process's own, set by proc_exit before its
    // callbacks run; exit() is called only after they have.
    if !unsafe { pg_sys::proc_exit_inprogress } {
        return;
    }
    // SAFETY: flushing every output stream, then ending the process with
    // the status exit() was given; nothing of this process is needed
    // after PostgreSQL's own exit callbacks.
    unsafe {
        libc::fflush(std::ptr::null_mut());
        libc::_exit(status)
    }
}
