//! Databases being dropped, renamed or moved to another tablespace: while
//! the command that stops their workers runs (see `databases/`), no new
//! worker is registered into them, since one launched in that window
//! would connect and make the command fail with 55006 after all. A short
//! table in the registry header, under the registry lock: the database's
//! OID and the pid of the backend running the command, cleared at the end
//! of that backend's transaction (commit or abort, also at its exit); an
//! entry whose backend is gone counts for nothing. The operations that
//! take the lock are `close_database` and `reopen_databases` (`mod.rs`).

/// How many databases may be closing at once; beyond that a command
/// closes nothing (its workers are still stopped first).
const ENTRIES: usize = 8;

/// The table, in the registry's header (zeroed at its creation: empty).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Closing {
    /// (database OID, pid of the backend closing it); (0, 0) is free.
    entries: [(u32, i32); ENTRIES],
}

/// Whether process `pid` still runs.
fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only asks whether the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

impl Closing {
    /// Closes database `oid` for backend `me`; false when the table is
    /// full (of live backends' entries).
    pub(super) fn close(&mut self, oid: u32, me: i32) -> bool {
        let free = self
            .entries
            .iter()
            .position(|&(db, pid)| db == 0 || !alive(pid));
        if let Some(at) = free {
            self.entries[at] = (oid, me);
        }
        free.is_some()
    }

    /// Opens the databases backend `me` closed.
    pub(super) fn reopen(&mut self, me: i32) {
        for entry in self.entries.iter_mut().filter(|e| e.1 == me) {
            *entry = (0, 0);
        }
    }

    /// Whether database `oid` is being closed by another backend.
    pub(super) fn holds(&self, oid: u32, me: i32) -> bool {
        oid != 0
            && self
                .entries
                .iter()
                .any(|&(db, pid)| db == oid && pid != me && alive(pid))
    }
}
