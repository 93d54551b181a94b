//! The owned copy of one slot that readers get ([`WorkerRecord`]), made
//! under the registry lock from the slot and its out-of-line texts.

use std::borrow::Cow;

use super::slot::{bytes_of, get_str, non_empty, PgHandle, ResultState, Slot, SlotRef, SlotState};
use crate::codec::{self, ErrorText};
use crate::config::KindConfig;
use crate::spec::Kind;
use crate::workerdef::WorkerDef;

/// An owned copy of one slot, for readers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRecord {
    pub at: SlotRef,
    pub id: i64,
    pub state: SlotState,
    pub is_static: bool,
    pub def: WorkerDef,
    pub pid: i32,
    pub restarts: i32,
    pub last_exit: Option<i32>,
    pub launched_by: Option<String>,
    pub launched_at: i64,
    pub started_at: Option<i64>,
    pub stopped_at: Option<i64>,
    /// `SQLSTATE: message` of the last error (in full while its
    /// out-of-line copy exists, else the inline start of it).
    pub last_error: Option<String>,
    /// The last error in full, when kept.
    pub error: Option<ErrorText>,
    pub bypass_allowconn: bool,
    pub by_superuser: bool,
    /// The role's quota (`lightdb_bgw.max_workers_per_role`) as it was at
    /// launch, `None` for none.
    pub quota: Option<u32>,
    pub terminate_requested: bool,
    pub handle: Option<PgHandle>,
    pub queue_seq: u64,
    pub find_handle: bool,
    /// A copy of the config was written to disk for it.
    pub config_file: bool,
    /// Stopped, and forgotten by the postmaster too.
    pub reaped: bool,
    pub role_oid: u32,
    pub database_oid: u32,
    pub connected: bool,
    /// Gives its process back when it stops (see `Slot::recyclable`).
    pub recyclable: bool,
    /// Handed to a spare that has not claimed it yet (see `Slot::lent`).
    pub lent: bool,
    /// Its work is done and its process ending (see `Slot::done`).
    pub done: bool,
    pub runs: i64,
    pub last_rows: i64,
    pub last_run_us: i64,
    pub result_state: ResultState,
    pub result_rows: i64,
    pub result_bytes: u64,
    pub result_at: i64,
    /// The config was lost (a crash-reinitialisation) and not read back
    /// yet: `def.config` holds only the kind's defaults then.
    pub config_missing: bool,
}

/// What a worker's status is made of: what it recorded in its slot and
/// how to ask the postmaster about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    pub state: SlotState,
    pub reaped: bool,
    pub handle: Option<PgHandle>,
    /// A raw worker runs no code of ours: only the postmaster knows.
    pub raw: bool,
    pub is_static: bool,
    pub pid: i32,
    pub restartable: bool,
    pub terminate_requested: bool,
    /// Handed to a spare that has not claimed it yet (see `Slot::lent`).
    pub lent: bool,
}

impl WorkerRecord {
    /// What this worker's status is made of.
    pub fn lifecycle(&self) -> Lifecycle {
        Lifecycle {
            state: self.state,
            reaped: self.reaped,
            handle: self.handle,
            raw: self.def.kind == Kind::Raw,
            is_static: self.is_static,
            pid: self.pid,
            restartable: self.def.restart_after.is_some(),
            terminate_requested: self.terminate_requested,
            lent: self.lent,
        }
    }
}

/// What the status of the worker in `slot` is made of.
pub(super) fn lifecycle_of(slot: &Slot) -> Lifecycle {
    Lifecycle {
        state: SlotState::from_u8(slot.state),
        reaped: slot.reaped,
        handle: slot.has_handle.then_some(slot.handle),
        raw: slot.kind == Kind::Raw as u8,
        is_static: slot.is_static,
        pid: slot.pid,
        restartable: slot.restart_secs >= 0,
        terminate_requested: slot.terminate_requested,
        lent: slot.lent,
    }
}

/// `SQLSTATE: message` of the last error of the worker in `slot`: from
/// its `full` error while kept out of line, else the inline start of it.
pub(super) fn last_error_of<'a>(slot: &'a Slot, full: Option<&ErrorText>) -> Option<Cow<'a, str>> {
    full.map(|e| Cow::Owned(e.short())).or_else(|| {
        let inline = bytes_of(&slot.last_error);
        (!inline.is_empty()).then(|| String::from_utf8_lossy(inline))
    })
}

/// The record of `slot` (at `index`), with its config and error texts.
pub(super) fn record_of(index: usize, slot: &Slot, config: &[u8], error: &[u8]) -> WorkerRecord {
    let error = (!error.is_empty())
        .then(|| ErrorText::decode(error).ok())
        .flatten();
    let kind = slot.kind();
    // A static worker's config is always the defaults, kept in no text; a
    // config lost in a crash-reinitialisation reads as missing.
    let decoded = match slot.config.is_none() {
        true if slot.is_static => Some(KindConfig::defaults(kind)),
        true => None,
        false => codec::decode(config).ok(),
    };
    let state = SlotState::from_u8(slot.state);
    WorkerRecord {
        at: SlotRef {
            index: index as u32,
            generation: slot.generation,
        },
        id: slot.id,
        state,
        is_static: slot.is_static,
        def: WorkerDef {
            kind,
            name: get_str(&slot.name),
            database: non_empty(get_str(&slot.database)),
            role: non_empty(get_str(&slot.role)),
            start_time: slot.start_time(),
            restart_after: slot.restart_after(),
            config: decoded
                .clone()
                .unwrap_or_else(|| KindConfig::defaults(kind)),
        },
        pid: slot.pid,
        restarts: slot.restarts,
        last_exit: slot.last_exit(),
        launched_by: non_empty(get_str(&slot.launched_by)),
        launched_at: slot.launched_at,
        started_at: slot.started_at(),
        stopped_at: slot.stopped_at(),
        last_error: last_error_of(slot, error.as_ref()).map(Cow::into_owned),
        error,
        bypass_allowconn: slot.bypass_allowconn,
        by_superuser: slot.by_superuser,
        quota: (slot.quota >= 0).then_some(slot.quota as u32),
        queue_seq: slot.queue_seq,
        terminate_requested: slot.terminate_requested,
        handle: slot.has_handle.then_some(slot.handle),
        find_handle: slot.find_handle,
        config_file: slot.config_file,
        reaped: slot.reaped,
        role_oid: slot.role_oid,
        database_oid: slot.database_oid,
        connected: slot.connected,
        recyclable: slot.recyclable,
        lent: slot.lent,
        done: slot.done,
        runs: slot.runs,
        last_rows: slot.last_rows,
        last_run_us: slot.last_run_us,
        result_state: ResultState::from_u8(slot.result_state),
        result_rows: slot.result_rows,
        result_bytes: slot.result.len,
        result_at: slot.result_at,
        config_missing: decoded.is_none(),
    }
}
