//! Results of `sql` runs, kept for any session to read: the rows of a
//! run's last row-returning statement (jsonb values, framed by
//! [`crate::rows`]) out of line in the text area, or the
//! run's failure (its full error, a copy of its own, counted as a
//! result). A worker
//! stashes its rows before its run commits and publishes them after,
//! replacing the previous result; readers copy them under the shared lock.
//! Results are freed by `forget`, by retention and when the slot is
//! reused; their total is accounted in the registry's header and capped by
//! `lightdb_bgw.max_result_memory`.

use std::sync::atomic::Ordering;

use pgrx::pg_sys;

use super::beside::MARK_RESULT;
use super::held;
use super::locked::drop_text;
use super::locked::Locked;
use super::reserve::within_share;
use super::shmem::{self, store_large_text};
use super::slot::{get_str, ResultState, SlotRef, SlotState};
use super::texts::TextRef;
use super::{broadcast_slot, index_of, record_at, WorkerRecord};
use crate::codec::ErrorText;
use crate::rows::Block;

/// Rows stashed by a running worker, not yet published. Dropping it
/// gives the memory back (the run failed after all).
#[derive(Debug)]
pub struct Stashed {
    text: TextRef,
    rows: i64,
}

impl Drop for Stashed {
    fn drop(&mut self) {
        if !self.text.is_none() {
            held::settled(self.text);
            free_stash(self.text);
        }
    }
}

/// Frees stashed rows and takes them off the results' total (dropped,
/// or left by a process a FATAL ended, see `held.rs`).
pub(super) fn free_stash(text: TextRef) {
    drop_text(text);
    unaccount(text.len);
}

/// Why rows could not be stashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSpace {
    /// Results would pass `lightdb_bgw.max_result_memory` (the cap).
    Results(u64),
    /// The text area is full (`lightdb_bgw.max_text_memory`).
    Texts,
    /// The role's kept results would pass its bound
    /// (`lightdb_bgw.max_result_memory_per_role`).
    RoleResults(u64),
}

/// A role's bound on the results it keeps: the role, the bound, and the
/// slot whose result the new one is to replace (not counted).
#[derive(Debug, Clone, Copy)]
pub struct RoleShare {
    pub role_oid: u32,
    pub cap: u64,
    pub at: SlotRef,
}

/// Bytes of results kept by workers of `role_oid`, but slot `except`'s.
fn kept_by(locked: &Locked, role_oid: u32, except: usize) -> u64 {
    let slots = locked.slots();
    locked
        .marked(MARK_RESULT, None)
        .into_iter()
        .filter(|&i| i != except && slots[i].role_oid == role_oid)
        .map(|i| slots[i].result.len)
        .sum()
}

/// Copies a run's framed rows into shared memory, counted against `cap`
/// and, with `share`, against its role's bound (checked as the rows are
/// stored: runs of the role storing at the same moment may pass it by
/// their own rows). A worker not launched by a superuser may not take
/// the text area's last eighth, kept for superusers' launches (see
/// `reserve.rs`).
pub fn stash(
    framed: &[u8],
    rows: i64,
    cap: u64,
    by_superuser: bool,
    share: Option<RoleShare>,
) -> Result<Stashed, NoSpace> {
    let len = framed.len() as u64;
    if !within_share(len, by_superuser) {
        return Err(NoSpace::Texts);
    }
    if let Some(share) = share {
        let kept = Locked::acquire(false).map_or(0, |locked| {
            kept_by(&locked, share.role_oid, share.at.index as usize)
        });
        if kept + len > share.cap {
            return Err(NoSpace::RoleResults(share.cap));
        }
    }
    if !account(len, cap) {
        return Err(NoSpace::Results(cap));
    }
    match store_large_text(framed) {
        Some(text) => {
            held::stashed(text);
            Ok(Stashed { text, rows })
        }
        None => {
            unaccount(len);
            Err(NoSpace::Texts)
        }
    }
}

/// How a run ended, as its result keeps it.
#[derive(Debug)]
pub enum Outcome {
    /// Its rows, stashed.
    Rows(Stashed),
    /// Its error, stashed (encoded): kept with the result, so that the
    /// worker's later errors (its next run's, its exit's) do not replace
    /// it. `None` if it could not be kept: the worker's recorded error is
    /// read instead.
    Failed(Option<Stashed>),
}

/// Publishes the result of the run that just ended. The previous result
/// is freed; waiters wake. `last`: the worker runs no more (a once-run
/// that will not be restarted), so it no longer counts toward its role's
/// quota while its process ends.
pub fn publish(at: SlotRef, outcome: Outcome, last: bool) {
    let Some(mut locked) = Locked::acquire(true) else {
        return;
    };
    let Some(entry) = locked.slots().get(at.index as usize).copied() else {
        return;
    };
    if entry.generation != at.generation || entry.state == SlotState::Free as u8 {
        return; // `rows`, dropped, gives its memory back
    }
    let first = entry.result_state == ResultState::None as u8;
    locked.free_result(entry.result);
    let Some(mut entry) = locked.slot_mut(at.index as usize) else {
        return;
    };
    // SAFETY: reading the clock has no preconditions.
    entry.result_at = unsafe { pg_sys::GetCurrentTimestamp() };
    let (state, kept) = match outcome {
        Outcome::Rows(stashed) => (ResultState::Rows, Some(stashed)),
        Outcome::Failed(error) => (ResultState::Failed, error),
    };
    entry.result_state = state as u8;
    entry.done = last;
    match kept {
        Some(mut stashed) => {
            entry.result = std::mem::replace(&mut stashed.text, TextRef::NONE);
            held::settled(entry.result);
            entry.result_rows = stashed.rows;
        }
        None => {
            entry.result = TextRef::NONE;
            entry.result_rows = 0;
        }
    }
    drop(entry);
    drop(locked);
    broadcast_slot(at.index as usize);
    // The dispatcher frees results by age, waking when the next is due. A
    // result that replaces one expires after it, and the dispatcher looks
    // again when the earlier one is due; only a slot's first result may be
    // due before anything the dispatcher waits for.
    if first {
        super::poke_dispatcher();
    }
}

/// A result as a reader gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunResult {
    /// The framed rows, copied once into an aligned block.
    Rows(Block),
    /// The run failed with this error.
    Failed(Option<ErrorText>),
}

/// The result of worker `id`'s latest completed run, if it has one and it
/// is not older than `retention` microseconds.
pub fn read(id: i64, retention: Option<i64>) -> Option<RunResult> {
    let locked = Locked::acquire(false)?;
    let index = index_of(&locked, id)?;
    let slot = locked.slots()[index];
    if let Some(retention) = retention {
        // SAFETY: reading the clock has no preconditions.
        let now = unsafe { pg_sys::GetCurrentTimestamp() };
        if slot.result_at.saturating_add(retention) <= now {
            return None;
        }
    }
    match ResultState::from_u8(slot.result_state) {
        ResultState::None => None,
        ResultState::Rows => Some(RunResult::Rows(
            locked.with_text(slot.result, Block::from_bytes),
        )),
        ResultState::Failed => {
            let kept = if slot.result.is_none() {
                slot.error
            } else {
                slot.result
            };
            // Neither copy kept in full (the text memory was full): the
            // start kept inline, `SQLSTATE: message`.
            let error = ErrorText::decode(&locked.text(kept))
                .ok()
                .or_else(|| inline_error(&get_str(&slot.last_error)));
            Some(RunResult::Failed(error))
        }
    }
}

/// An error from the start of it kept inline (`SQLSTATE: message`).
fn inline_error(short: &str) -> Option<ErrorText> {
    let (code, message) = short.split_once(": ")?;
    let is_code = code.len() == 5 && code.bytes().all(|b| b.is_ascii_alphanumeric());
    is_code.then(|| ErrorText {
        sqlstate: code.to_string(),
        message: message.to_string(),
        ..Default::default()
    })
}

/// What `forget` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forgotten {
    /// No such worker.
    Unknown,
    /// The worker is still registered (queued, waiting or running).
    Live(Box<WorkerRecord>),
    /// Dropped, result and history entry.
    Dropped,
}

/// Drops worker `id`'s result and history entry once it has stopped;
/// `is_stopped` tells whether the postmaster is done with it too. Static
/// workers' entries stay (they name the server's own workers).
pub fn forget(id: i64, is_stopped: impl Fn(&WorkerRecord) -> bool) -> Forgotten {
    let Some(mut locked) = Locked::acquire(true) else {
        return Forgotten::Unknown;
    };
    let Some(index) = index_of(&locked, id) else {
        return Forgotten::Unknown;
    };
    let record = record_at(&locked, index);
    if record.is_static || !is_stopped(&record) {
        return Forgotten::Live(Box::new(record));
    }
    locked.empty_slot(index);
    drop(locked);
    if record.config_file {
        super::remove_config(id);
    }
    broadcast_slot(index);
    Forgotten::Dropped
}

/// Frees the results published more than `retention` microseconds before
/// `now`; returns when the next one expires, if any is kept.
pub fn expire(now: i64, retention: i64) -> Option<i64> {
    let mut locked = Locked::acquire(true)?;
    let mut next: Option<i64> = None;
    for index in locked.marked(MARK_RESULT, None) {
        let slot = locked.slots()[index];
        if slot.state == SlotState::Free as u8 || slot.result_state == ResultState::None as u8 {
            continue;
        }
        let expires = slot.result_at.saturating_add(retention);
        if expires > now {
            next = Some(next.map_or(expires, |n| n.min(expires)));
            continue;
        }
        locked.free_result(slot.result);
        if let Some(mut entry) = locked.slot_mut(index) {
            entry.result = TextRef::NONE;
            entry.result_rows = 0;
            entry.result_state = ResultState::None as u8;
        }
    }
    next
}

/// Bytes of results stored now.
pub fn result_memory() -> u64 {
    shmem::result_total().map_or(0, |t| t.load(Ordering::Acquire))
}

/// Adds `len` bytes to the results' total unless that would pass `cap`.
fn account(len: u64, cap: u64) -> bool {
    shmem::result_total().is_some_and(|total| {
        total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                now.checked_add(len).filter(|&after| after <= cap)
            })
            .is_ok()
    })
}

/// Takes `len` bytes off the results' total (stashed rows dropped before
/// they were linked to a slot).
fn unaccount(len: u64) {
    if let Some(total) = shmem::result_total() {
        total.fetch_sub(len, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn an_inline_error_is_read_back() {
        let e = inline_error("P0042: big\u{e9}\u{e9}").unwrap();
        assert_eq!(
            (e.sqlstate.as_str(), e.message.as_str()),
            ("P0042", "big\u{e9}\u{e9}")
        );
        assert_eq!(inline_error("a note: not an error"), None);
        assert_eq!(inline_error(""), None);
    }
}
