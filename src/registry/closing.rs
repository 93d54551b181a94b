//! Databases being dropped, renamed, moved to another tablespace or
//! copied: while the command that stops their workers runs (see
//! `databases/`), no new worker is registered into them, since one
//! launched in that window would connect and make the command fail with
//! 55006 after all (or, for a rename in a transaction block, wait for it
//! and then run under the new name). A table in the registry header,
//! under the registry lock: the database's OID and the pid of the backend
//! running the command, cleared at the end of that backend's transaction
//! (commit or abort, also at its exit; a transaction that closed a
//! database may not be prepared); an entry whose backend is gone counts
//! for nothing. One backend holds at most [`PER_BACKEND`] entries, so
//! that one role cannot fill the table for everybody. The operations that
//! take the lock are `close_database` and `reopen_databases` (`mod.rs`).

/// How many databases may be closing at once.
const ENTRIES: usize = 64;

/// How many databases one backend may hold closed (a transaction block
/// renaming several); beyond that, and with the table full, a command
/// closes nothing (its workers are still stopped first).
pub const PER_BACKEND: usize = 4;

/// The table, in the registry's header (zeroed at its creation: empty).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(super) struct Closing {
    /// (database OID, pid of the backend closing it); (0, 0) is free.
    entries: [(u32, i32); ENTRIES],
}

impl Default for Closing {
    fn default() -> Closing {
        Closing {
            entries: [(0, 0); ENTRIES],
        }
    }
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
        let mine = self.entries.iter().filter(|e| e.1 == me);
        if mine.clone().any(|&(db, _)| db == oid) {
            return true;
        }
        if mine.count() >= PER_BACKEND {
            return false;
        }
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

    /// Whether database `oid` is closed, by any backend: also by this
    /// one, whose rename in an open transaction would hold up the worker
    /// at its connection until the transaction ends.
    pub(super) fn holds(&self, oid: u32) -> bool {
        oid != 0
            && self
                .entries
                .iter()
                .any(|&(db, pid)| db == oid && alive(pid))
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn one_backend_takes_one_entry_a_database_and_at_most_its_share() {
        let me = std::process::id() as i32;
        let mut table = Closing::default();
        for _ in 0..10 {
            assert!(table.close(7, me), "the same database again: no new entry");
        }
        for oid in 8..8 + PER_BACKEND as u32 - 1 {
            assert!(table.close(oid, me));
        }
        assert!(!table.close(100, me), "beyond its share");
        assert!(table.holds(7) && table.holds(8) && !table.holds(100));
        assert!(!table.holds(0), "no database is never closed");
        table.reopen(me);
        assert!(!table.holds(7));
        // An entry of a process that is gone counts for nothing and is
        // taken again.
        let gone = i32::MAX;
        let mut full = Closing {
            entries: [(5, gone); ENTRIES],
        };
        assert!(!full.holds(5));
        assert!(full.close(6, me));
        assert!(full.holds(6));
    }
}
