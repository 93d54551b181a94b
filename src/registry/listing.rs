//! Reading the whole registry for a listing: the order (by id, with the
//! queue's positions) is taken first, in one pass under the shared lock
//! that reads the slots' mark bytes and only the slots in use; the workers
//! are then shown to the caller in batches, each under the shared lock
//! again and borrowed where they lie (no copy of a slot, no allocation
//! per worker), so that a listing of 10,000 workers neither copies the
//! registry nor holds the lock for long.

use std::borrow::Cow;

use super::beside::MARK_STATE;
use super::locked::Locked;
use super::record::{last_error_of, lifecycle_of, Lifecycle};
use super::slot::{bytes_of, ResultState, Slot, SlotState};
use crate::codec::{self, ErrorText};
use crate::config::KindConfig;
use crate::spec::{Kind, StartTime};

/// Workers shown per batch.
const BATCH: usize = 256;

/// How many workers ahead of the one being shown its slot is fetched.
const PREFETCH_AHEAD: usize = 4;

/// One worker to list: its id, its slot, its role, its place in the
/// launch queue.
#[derive(Debug, Clone, Copy)]
struct Entry {
    id: i64,
    index: u32,
    role_oid: u32,
    queue_position: Option<u32>,
}

/// A listing in progress; see [`listing`].
#[derive(Debug)]
pub struct Listing {
    order: Vec<Entry>,
    next: usize,
}

/// One worker as a listing shows it, borrowed from its slot and its texts
/// while the registry lock is held.
#[derive(Debug)]
pub struct Listed<'a> {
    pub id: i64,
    pub kind: Kind,
    /// The names, as the text they were given as.
    pub name: &'a [u8],
    pub database: Option<&'a [u8]>,
    pub role: Option<&'a [u8]>,
    pub role_oid: u32,
    pub start_time: StartTime,
    pub restart_after: Option<u32>,
    pub launched_by: Option<&'a [u8]>,
    pub launched_at: i64,
    pub started_at: Option<i64>,
    pub stopped_at: Option<i64>,
    pub restarts: i32,
    pub last_exit: Option<i32>,
    pub is_static: bool,
    pub lifecycle: Lifecycle,
    /// `SQLSTATE: message` of the last error: in full while its
    /// out-of-line copy exists, else the inline start of it.
    pub last_error: Option<Cow<'a, str>>,
    /// A raw worker's `bgw_type` (others have the extension's).
    pub raw_type: Option<String>,
    /// The config as jsonb bytes, made at launch (empty for a static
    /// worker, whose config is always `{}`).
    pub config_jsonb: &'a [u8],
    /// The config was lost in a crash-reinitialisation and not read back.
    pub config_missing: bool,
    pub runs: i64,
    pub last_rows: i64,
    pub last_run_us: i64,
    pub result_state: ResultState,
    pub result_rows: i64,
    pub result_bytes: u64,
    /// 1 for the next queued worker to start, while queued.
    pub queue_position: Option<u32>,
}

/// Starts a listing of every worker the registry holds, by id.
pub fn listing() -> Listing {
    let mut order = Vec::new();
    let Some(locked) = Locked::acquire(false) else {
        return Listing { order, next: 0 };
    };
    let slots = locked.slots();
    let mut queued = Vec::new();
    for (index, &mark) in locked.marks().iter().enumerate() {
        let state = mark & MARK_STATE;
        if state == SlotState::Free as u8 {
            continue;
        }
        let slot = &slots[index];
        if state == SlotState::Queued as u8 {
            // In the dispatcher's order: place, then id.
            queued.push((slot.queue_seq, slot.id, order.len()));
        }
        order.push(Entry {
            id: slot.id,
            index: index as u32,
            role_oid: slot.role_oid,
            queue_position: None,
        });
    }
    drop(locked);
    queued.sort_unstable();
    for (position, (_, _, at)) in queued.into_iter().enumerate() {
        order[at].queue_position = Some(position as u32 + 1);
    }
    order.sort_unstable_by_key(|e| e.id);
    Listing { order, next: 0 }
}

impl Listing {
    /// How many workers the listing holds.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the listing holds no worker.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The roles of the listed workers, each once: what the caller may see
    /// is decided for them before the registry is read (catalog lookups
    /// are not made under the registry lock).
    pub fn roles(&self) -> Vec<u32> {
        let mut roles: Vec<u32> = self.order.iter().map(|e| e.role_oid).collect();
        roles.sort_unstable();
        roles.dedup();
        roles
    }

    /// Shows the next batch of workers to `visit`, under the shared
    /// registry lock (so `visit` must not look anything up in the
    /// catalogs); false when the listing is done. A worker whose slot went
    /// to a newer one meanwhile is left out (the newer one was not there
    /// when the listing began).
    pub fn next_batch(&mut self, mut visit: impl FnMut(&Listed<'_>)) -> bool {
        if self.next >= self.order.len() {
            return false;
        }
        let end = (self.next + BATCH).min(self.order.len());
        let batch = &self.order[self.next..end];
        self.next = end;
        let Some(locked) = Locked::acquire(false) else {
            return false;
        };
        let slots = locked.slots();
        for (k, entry) in batch.iter().enumerate() {
            if let Some(ahead) = batch.get(k + PREFETCH_AHEAD) {
                prefetch(slots, ahead.index as usize);
            }
            let slot = &slots[entry.index as usize];
            if slot.id != entry.id || slot.state == SlotState::Free as u8 {
                continue;
            }
            let kind = slot.kind();
            let mut config_missing = slot.config.is_none() && !slot.is_static;
            // The typed config is read only where the listing needs it (a
            // raw worker's type); the view shows the jsonb made at launch.
            let raw_type = (kind == Kind::Raw).then(|| {
                let decoded = match slot.config.is_none() {
                    true => None,
                    false => {
                        let decoded = codec::decode(locked.text_in_place(slot.config)).ok();
                        config_missing |= decoded.is_none();
                        decoded
                    }
                };
                match decoded.unwrap_or_else(|| KindConfig::defaults(Kind::Raw)) {
                    KindConfig::Raw { worker_type, .. } => worker_type,
                    _ => String::new(),
                }
            });
            let error = locked.text_in_place(slot.error);
            let full = (!error.is_empty())
                .then(|| ErrorText::decode(error).ok())
                .flatten();
            let last_error = last_error_of(slot, full.as_ref());
            let listed = Listed {
                id: slot.id,
                kind,
                name: bytes_of(&slot.name),
                database: non_empty(bytes_of(&slot.database)),
                role: non_empty(bytes_of(&slot.role)),
                role_oid: slot.role_oid,
                start_time: slot.start_time(),
                restart_after: slot.restart_after(),
                launched_by: non_empty(bytes_of(&slot.launched_by)),
                launched_at: slot.launched_at,
                started_at: slot.started_at(),
                stopped_at: slot.stopped_at(),
                restarts: slot.restarts,
                last_exit: slot.last_exit(),
                is_static: slot.is_static,
                lifecycle: lifecycle_of(slot),
                last_error,
                raw_type,
                config_jsonb: locked.text_in_place(slot.config_jsonb),
                config_missing,
                runs: slot.runs,
                last_rows: slot.last_rows,
                last_run_us: slot.last_run_us,
                result_state: ResultState::from_u8(slot.result_state),
                result_rows: slot.result_rows,
                result_bytes: slot.result.len,
                queue_position: entry.queue_position,
            };
            visit(&listed);
        }
        true
    }
}

fn non_empty(s: &[u8]) -> Option<&[u8]> {
    (!s.is_empty()).then_some(s)
}

/// Starts loading the slot at `index` into the CPU's cache: a listing
/// reads most of a slot's cache lines, which would otherwise arrive one
/// miss after another (the slots of 10,000 workers are far more than the
/// caches hold).
fn prefetch(slots: &[Slot], index: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(slot) = slots.get(index) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let base = (slot as *const Slot).cast::<i8>();
        for offset in (0..std::mem::size_of::<Slot>()).step_by(64) {
            // SAFETY: an address inside the slot; a prefetch is only a
            // hint to the CPU and never faults.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(base.add(offset)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (slots, index);
}
