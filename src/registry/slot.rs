//! One registry slot: its fixed-size layout in shared memory (numbers,
//! states, times, OIDs, short names; texts live out of line, see
//! `texts.rs`), what a slot becomes when it is filled (after a
//! crash-reinitialisation: `recover.rs`), and the typed values its
//! numbers stand for.
//! Readers get a copy of it, `record.rs`; what is kept beside it,
//! `beside.rs`.

use pgrx::pg_sys;

use super::texts::TextRef;
use crate::spec::{Kind, StartTime};
use crate::workerdef::WorkerDef;

/// Bytes kept for a worker's name (the server's `BGW_MAXLEN`).
pub const NAME_LEN: usize = pg_sys::BGW_MAXLEN as usize;
/// Bytes kept for a database or role name (the server's `NAMEDATALEN`).
pub const OBJECT_NAME_LEN: usize = pg_sys::NAMEDATALEN as usize;
/// Bytes kept for the last error of a worker; longer messages are cut.
pub const ERROR_LEN: usize = 256;

/// PostgreSQL's `struct BackgroundWorkerHandle` (bgworker.c, the same in
/// PostgreSQL 13 to 18): which postmaster slot, and its generation.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgHandle {
    pub slot: i32,
    pub generation: u64,
}

/// Names one registry slot as one worker holds it: the index, and the
/// generation the slot had when the worker got it (bumped at every reuse),
/// so a reused slot is never mistaken for the old one. The only way code
/// names a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRef {
    pub index: u32,
    pub generation: u64,
}

/// Where a slot's worker is in its life, as PostgreSQL's handle states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SlotState {
    /// The slot holds nothing.
    Free = 0,
    /// Registered with the postmaster, not running now (not yet started, or
    /// waiting for its restart).
    NotYetStarted = 1,
    /// Running with `pid`.
    Started = 2,
    /// Gone for good: exited with code 0, terminated, or no restart policy.
    Stopped = 3,
    /// Waiting in the launch queue for capacity (a postmaster slot, the
    /// role's quota): not registered with the postmaster yet. The
    /// dispatcher registers queued workers first in, first out.
    Queued = 4,
}

impl SlotState {
    pub(super) fn from_u8(value: u8) -> SlotState {
        match value {
            1 => SlotState::NotYetStarted,
            2 => SlotState::Started,
            3 => SlotState::Stopped,
            4 => SlotState::Queued,
            _ => SlotState::Free,
        }
    }
}

/// One worker. Every field is written under the registry lock in
/// exclusive mode and read under it in shared mode; the writers are named
/// on each field.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Slot {
    /// Worker id, 0 when free. Launcher / postmaster at creation.
    pub(super) id: i64,
    /// Bumped each time the slot is given to a new worker. Launcher.
    pub(super) generation: u64,
    /// A `SlotState`. Launcher, the worker itself, terminate.
    pub(super) state: u8,
    /// A `Kind`. Launcher.
    pub(super) kind: u8,
    /// A `StartTime`. Launcher.
    pub(super) start_time: u8,
    /// Registered from `lightdb_bgw.static_workers`. Postmaster.
    pub(super) is_static: bool,
    /// Seconds, or -1 for never. Launcher.
    pub(super) restart_secs: i32,
    /// Connect with `BGWORKER_BYPASS_ALLOWCONN`. Launcher.
    pub(super) bypass_allowconn: bool,
    /// `terminate` was asked: the worker stops for good. Terminate.
    pub(super) terminate_requested: bool,
    /// The postmaster's handle is known. Launcher, or the worker itself
    /// when `find_handle`.
    pub(super) has_handle: bool,
    /// Launched by a superuser: may take the postmaster slots kept by
    /// `lightdb_bgw.superuser_reserved_workers`. Launcher.
    pub(super) by_superuser: bool,
    /// Stopped and forgotten by the postmaster too (its handle reads as
    /// stopped): no need to ask the postmaster again. Whoever sees it
    /// first (the dispatcher's sweep, a launcher taking the slot).
    pub(super) reaped: bool,
    /// When `reaped` was learned (`TimestampTz`), 0 before. The dispatcher.
    pub(super) freed_at: i64,
    /// The worker finds its handle itself when it starts: static workers,
    /// and workers brought back after a crash-reinitialisation (whose old
    /// handles are void). Postmaster.
    pub(super) find_handle: bool,
    /// A copy of the config was written to disk for this worker (see
    /// `texts::save_config`), to remove when the slot is reused.
    /// Launcher, requeue.
    pub(super) config_file: bool,
    pub(super) handle: PgHandle,
    /// The role's quota (`lightdb_bgw.max_workers_per_role`) as it was at
    /// launch, -1 for none: how many of the role's workers may be
    /// registered at once when this one is started. Launcher.
    pub(super) quota: i32,
    /// Place in the launch queue while `Queued` (smaller goes first), kept
    /// while the worker is being registered. Launcher, dispatcher.
    pub(super) queue_seq: u64,
    /// The worker's role, InvalidOid for the bootstrap superuser. Launcher.
    pub(super) role_oid: u32,
    /// The worker's database, InvalidOid for none. Launcher. Dynamic
    /// workers connect to these two OIDs, never to names looked up again.
    pub(super) database_oid: u32,
    /// Connected as its role (or needing no connection) in its current
    /// run; reset when the run starts. The worker.
    pub(super) connected: bool,
    /// Runs in a process that it gives back when it stops (a spare's, see
    /// `worker.rs`): `terminate` wakes it instead of asking the postmaster
    /// for SIGTERM. The worker, at its claim.
    pub(super) recyclable: bool,
    /// Handed to an idle spare (see `spare.rs`) that has not claimed it
    /// yet: the handle is the spare's, whose process was started long
    /// before, so the worker counts as started only once it claims its
    /// slot. The launcher.
    pub(super) lent: bool,
    /// Its work is done (a once-run `sql` worker published its last
    /// result) and its process is on its way out: no longer counted toward
    /// its role's quota. The worker.
    pub(super) done: bool,
    /// Runs of a `sql` worker, rows and duration of the last. The worker.
    pub(super) runs: i64,
    pub(super) last_rows: i64,
    pub(super) last_run_us: i64,
    /// Process id while started, else 0. The worker.
    pub(super) pid: i32,
    /// How many times the worker came back after an exit. The worker.
    pub(super) restarts: i32,
    /// Exit code of the last exit, -1 before the first. The worker.
    pub(super) last_exit: i32,
    /// `TimestampTz`s, 0 when not yet. Launcher / the worker.
    pub(super) launched_at: i64,
    pub(super) started_at: i64,
    pub(super) stopped_at: i64,
    /// NUL-terminated strings. Launcher, except `last_error` (the worker).
    pub(super) name: [u8; NAME_LEN],
    pub(super) database: [u8; OBJECT_NAME_LEN],
    pub(super) role: [u8; OBJECT_NAME_LEN],
    pub(super) launched_by: [u8; OBJECT_NAME_LEN],
    pub(super) last_error: [u8; ERROR_LEN],
    /// The config, out of line. Launcher; freed when the slot is reused.
    pub(super) config: TextRef,
    /// The config as `workers` shows it, jsonb bytes made once at launch,
    /// out of line. Launcher, like `config`.
    pub(super) config_jsonb: TextRef,
    /// The last error in full (SQLSTATE, message, detail, hint, context),
    /// out of line; `last_error` keeps its first bytes inline, which also
    /// survive a crash-reinitialisation. The worker.
    pub(super) error: TextRef,
    /// The result of the latest completed run of a `sql` worker (see
    /// `results.rs`): its rows as jsonb, out of line, when
    /// `result_state` is `Rows`; the run's error is `error` when it is
    /// `Failed`. The worker; freed by forget, retention and reuse.
    pub(super) result: TextRef,
    pub(super) result_rows: i64,
    /// When the result was published (`TimestampTz`), for retention.
    pub(super) result_at: i64,
    /// A `ResultState`.
    pub(super) result_state: u8,
}

/// The typed values a slot's numbers stand for (`-1` and `0` mean none),
/// for every reader of a slot.
impl Slot {
    pub(super) fn kind(&self) -> Kind {
        Kind::from_u8(self.kind).unwrap_or(Kind::Raw)
    }

    pub(super) fn start_time(&self) -> StartTime {
        StartTime::from_u8(self.start_time).unwrap_or(StartTime::RecoveryFinished)
    }

    pub(super) fn restart_after(&self) -> Option<u32> {
        (self.restart_secs >= 0).then_some(self.restart_secs as u32)
    }

    pub(super) fn last_exit(&self) -> Option<i32> {
        (self.last_exit >= 0).then_some(self.last_exit)
    }

    pub(super) fn started_at(&self) -> Option<i64> {
        (self.started_at != 0).then_some(self.started_at)
    }

    pub(super) fn stopped_at(&self) -> Option<i64> {
        (self.stopped_at != 0).then_some(self.stopped_at)
    }
}

/// What the latest completed run of a `sql` worker left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ResultState {
    /// No run has completed (or its result was forgotten or expired).
    None = 0,
    /// The run succeeded: `result` holds the rows of its last
    /// row-returning statement (perhaps none).
    Rows = 1,
    /// The run failed: `error` holds why.
    Failed = 2,
}

impl ResultState {
    pub(super) fn from_u8(value: u8) -> ResultState {
        match value {
            1 => ResultState::Rows,
            2 => ResultState::Failed,
            _ => ResultState::None,
        }
    }
}

pub(super) fn fill_slot(
    slot: &mut Slot,
    id: i64,
    generation: u64,
    def: &WorkerDef,
    launched_by: Option<&str>,
    now: i64,
) {
    slot.id = id;
    slot.generation = generation;
    slot.state = SlotState::NotYetStarted as u8;
    slot.kind = def.kind as u8;
    slot.start_time = def.start_time as u8;
    slot.is_static = false;
    slot.restart_secs = def.restart_after.map_or(-1, |s| s as i32);
    slot.bypass_allowconn = false;
    slot.by_superuser = false;
    slot.quota = -1;
    slot.queue_seq = 0;
    slot.terminate_requested = false;
    slot.has_handle = false;
    slot.reaped = false;
    slot.freed_at = 0;
    slot.find_handle = false;
    slot.config_file = false;
    slot.handle = PgHandle {
        slot: -1,
        generation: 0,
    };
    slot.role_oid = 0;
    slot.database_oid = 0;
    slot.connected = false;
    slot.recyclable = false;
    slot.lent = false;
    slot.done = false;
    slot.runs = 0;
    slot.last_rows = 0;
    slot.last_run_us = 0;
    slot.pid = 0;
    slot.restarts = 0;
    slot.last_exit = -1;
    slot.launched_at = now;
    slot.started_at = 0;
    slot.stopped_at = 0;
    put_str(&mut slot.name, &def.name);
    put_str(&mut slot.database, def.database.as_deref().unwrap_or(""));
    put_str(&mut slot.role, def.role.as_deref().unwrap_or(""));
    put_str(&mut slot.launched_by, launched_by.unwrap_or(""));
    put_str(&mut slot.last_error, "");
    slot.error = TextRef::NONE;
    slot.config = TextRef::NONE;
    slot.config_jsonb = TextRef::NONE;
    slot.result = TextRef::NONE;
    slot.result_rows = 0;
    slot.result_at = 0;
    slot.result_state = ResultState::None as u8;
}

/// Copies `value` into a fixed buffer, cut at a character boundary so the
/// terminating NUL always fits.
pub(super) fn put_str(buf: &mut [u8], value: &str) {
    let mut end = value.len().min(buf.len() - 1);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    buf[..end].copy_from_slice(&value.as_bytes()[..end]);
    buf[end..].fill(0);
}

pub(super) fn get_str(buf: &[u8]) -> String {
    str_of(buf).into_owned()
}

/// A NUL-terminated inline string where it lies (copied only when it is
/// not valid UTF-8).
pub(super) fn str_of(buf: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes_of(buf))
}

/// The bytes of a NUL-terminated inline string, as they were written
/// (from text of the server's encoding).
pub(super) fn bytes_of(buf: &[u8]) -> &[u8] {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    &buf[..end]
}

pub(super) fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn a_slot_stays_compact() {
        // Numbers, states, times, OIDs and short names only: the issue's
        // budget is 2 KiB a slot; texts and results live out of line.
        let size = std::mem::size_of::<Slot>();
        println!("a registry slot takes {size} bytes");
        assert!(size <= 800, "{size} bytes");
    }

    #[test]
    fn strings_are_cut_on_char_boundaries() {
        let mut buf = [0xffu8; 5];
        put_str(&mut buf, "abé"); // 'é' is 2 bytes: "ab" + 2 = 4 bytes, fits
        assert_eq!(get_str(&buf), "abé");
        put_str(&mut buf, "abcé"); // 5 bytes do not fit with the NUL
        assert_eq!(get_str(&buf), "abc");
        assert_eq!(buf[4], 0);
    }
}
