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
//! for nothing. The sessions of one role hold at most [`PER_ROLE`]
//! entries, so that one role cannot fill the table for everybody. The
//! operations that take the lock are `close_database` and
//! `reopen_databases` (`queue.rs`, where admission is decided).

/// How many databases may be closing at once.
pub const ENTRIES: usize = 256;

/// How many databases the sessions of one role (not a superuser) may
/// hold closed at once (transaction blocks renaming several); beyond
/// that, and with the table full, the command is refused (see
/// `databases/mod.rs`).
pub const PER_ROLE: usize = 8;

/// Why a database could not be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotClosed {
    /// The role's sessions hold [`PER_ROLE`] closed already.
    RoleShare,
    /// The table is full: [`ENTRIES`] closed by all sessions.
    Full,
}

/// The table, in the registry's header (zeroed at its creation: empty).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(super) struct Closing {
    /// (database OID, pid of the backend closing it, its user's OID, 0
    /// for a superuser); all 0 is free.
    entries: [(u32, i32, u32); ENTRIES],
}

impl Default for Closing {
    fn default() -> Closing {
        Closing {
            entries: [(0, 0, 0); ENTRIES],
        }
    }
}

/// Whether process `pid` still runs.
fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only asks whether the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

impl Closing {
    /// Closes database `oid` for backend `me`, whose user is `role` (0: a
    /// superuser, not bound by [`PER_ROLE`]); refused when the role holds
    /// its share already or the table is full (of live backends' entries).
    pub(super) fn close(&mut self, oid: u32, me: i32, role: u32) -> Result<(), NotClosed> {
        if self
            .entries
            .iter()
            .any(|&(db, pid, _)| db == oid && pid == me)
        {
            return Ok(());
        }
        let of_role = self
            .entries
            .iter()
            .filter(|&&(db, pid, r)| db != 0 && r == role && alive(pid))
            .count();
        if role != 0 && of_role >= PER_ROLE {
            return Err(NotClosed::RoleShare);
        }
        let free = self
            .entries
            .iter()
            .position(|&(db, pid, _)| db == 0 || !alive(pid))
            .ok_or(NotClosed::Full)?;
        self.entries[free] = (oid, me, role);
        Ok(())
    }

    /// Opens the databases backend `me` closed.
    pub(super) fn reopen(&mut self, me: i32) {
        for entry in self.entries.iter_mut().filter(|e| e.1 == me) {
            *entry = (0, 0, 0);
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
                .any(|&(db, pid, _)| db == oid && alive(pid))
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn one_role_takes_one_entry_a_database_and_at_most_its_share() {
        let me = std::process::id() as i32;
        let mut table = Closing::default();
        for _ in 0..10 {
            assert!(
                table.close(7, me, 42).is_ok(),
                "the same database again: no new entry"
            );
        }
        for oid in 8..8 + PER_ROLE as u32 - 1 {
            assert!(table.close(oid, me, 42).is_ok());
        }
        assert_eq!(table.close(100, me, 42), Err(NotClosed::RoleShare));
        assert!(
            table.close(100, me, 0).is_ok(),
            "a superuser is not bound by it"
        );
        assert!(table.holds(7) && table.holds(8) && table.holds(100));
        assert!(!table.holds(0), "no database is never closed");
        table.reopen(me);
        assert!(!table.holds(7) && !table.holds(100));
        // An entry of a process that is gone counts for nothing and is
        // taken again.
        let gone = i32::MAX;
        let mut full = Closing {
            entries: [(5, gone, 42); ENTRIES],
        };
        assert!(!full.holds(5));
        assert!(full.close(6, me, 42).is_ok());
        assert!(full.holds(6));
        let mut taken = Closing {
            entries: [(5, me, 0); ENTRIES],
        };
        assert_eq!(taken.close(6, me + 1, 0), Err(NotClosed::Full));
    }
}
