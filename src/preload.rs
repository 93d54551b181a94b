//! Whether the library was loaded through `shared_preload_libraries`.
//!
//! Everything that needs shared memory or the postmaster checks this first,
//! so a library loaded late (by `CREATE EXTENSION` alone) reports a clean
//! SQLSTATE 55000 instead of touching memory that does not exist.

use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::pg_sys;

use crate::error::BgwError;

static PRELOADED: AtomicBool = AtomicBool::new(false);

/// Records and returns whether `_PG_init` runs during preload. Child
/// processes forked from the postmaster inherit the answer.
pub fn detect() -> bool {
    // SAFETY: a plain global of the server, read in the process's only thread
    // while `_PG_init` runs.
    let preloading = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    if preloading {
        PRELOADED.store(true, Ordering::Relaxed);
    }
    PRELOADED.load(Ordering::Relaxed)
}

/// True when the library was preloaded.
pub fn is_preloaded() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

/// Fails with SQLSTATE 55000 unless the library was preloaded.
pub fn require() -> Result<(), BgwError> {
    if is_preloaded() {
        Ok(())
    } else {
        Err(BgwError::NotPreloaded)
    }
}
