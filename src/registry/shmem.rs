//! The registry's shared memory: a [`Header`], `capacity` fixed-size
//! [`Slot`]s (sized by `lightdb_bgw.max_workers`) and the in-place start of
//! the out-of-line text area, created by the postmaster at start and again
//! after a crash-reinitialisation (from a copy of the slots the postmaster
//! keeps in its own memory). One named LWLock guards every slot and
//! `Header::next_id`; a condition variable in the header is broadcast after
//! every change of state. Only the registry module reaches this memory.

use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use once_cell::sync::OnceCell;
use pgrx::pg_sys;

use super::beside::{id_of, mark_of, reuse_key, MarkCounts};
use super::closing::Closing;
use super::events::{self, Events};
use super::ids;
use super::recover::recover_slot;
use super::reuse::Candidates;
use super::slot::{fill_slot, Slot, SlotState};
use super::spares::{self, Spares};
use super::texts::{self, TextRef};
use crate::workerdef::WorkerDef;

const SHMEM_NAME: &CStr = c"lightdb_bgw registry";
const TRANCHE_NAME: &CStr = c"lightdb_bgw";
/// Index of `AddinShmemInitLock` in `MainLWLockArray` (lwlocknames.txt).
const ADDIN_SHMEM_INIT_LOCK: usize = 21;

/// Registry header. `capacity`, `texts_offset` and `texts_tranche` are
/// written once by the postmaster at creation; `next_id` by launchers under
/// the registry lock; `cv` is the server's own condition variable, safe to
/// use without the lock.
#[repr(C)]
pub(super) struct Header {
    pub(super) capacity: u32,
    pub(super) next_id: i64,
    /// The end of the block of ids kept on disk (see `ids.rs`).
    pub(super) ids_end: i64,
    /// The condition variable and the dispatcher's pid.
    events: Events,
    /// Where the out-of-line text area starts, from the header.
    pub(super) texts_offset: usize,
    /// The tranche of the text area's own lock.
    pub(super) texts_tranche: i32,
    /// Bytes of results stored in the text area (see `results.rs`).
    pub(super) result_bytes: AtomicU64,
    /// Bytes of all texts stored in the text area (results included).
    pub(super) text_bytes: AtomicU64,
    /// The slots free, queued and being registered, by their marks.
    pub(super) counts: MarkCounts,
    /// The history entries to reuse first (see `reuse.rs`).
    pub(super) candidates: Candidates,
    /// Spare processes waiting for a launch (see `spares.rs`).
    pub(super) spares: Spares,
    /// Databases closed to new workers (see `closing.rs`).
    pub(super) closing: Closing,
}

pub(super) static HEADER: AtomicPtr<Header> = AtomicPtr::new(std::ptr::null_mut());
pub(super) static LOCK: AtomicPtr<pg_sys::LWLock> = AtomicPtr::new(std::ptr::null_mut());
static CAPACITY: AtomicU32 = AtomicU32::new(0);
static TEXT_LIMIT: AtomicUsize = AtomicUsize::new(0);
static STATIC_DEFS: OnceCell<Vec<WorkerDef>> = OnceCell::new();

/// The registry as the postmaster last saw it before shared memory was
/// released (at a crash-reinitialisation), kept in the postmaster's own
/// memory so the new registry starts from it.
struct Saved {
    next_id: i64,
    slots: Vec<Slot>,
}

static SAVED: Mutex<Option<Saved>> = Mutex::new(None);

static mut PREV_SHMEM_STARTUP_HOOK: pg_sys::shmem_startup_hook_type = None;
#[cfg(any(feature = "pg15", feature = "pg16", feature = "pg17", feature = "pg18"))]
static mut PREV_SHMEM_REQUEST_HOOK: pg_sys::shmem_request_hook_type = None;

/// Bytes of shared memory the registry takes for `capacity` slots: the
/// header, the slots, their marks, ids and reuse keys, and the in-place
/// start of the text area.
pub fn shmem_size(capacity: u32) -> usize {
    texts_offset(capacity) + texts::IN_PLACE_BYTES
}

fn texts_offset(capacity: u32) -> usize {
    (reuse_offset(capacity) + capacity as usize * 8).div_ceil(64) * 64
}

/// Where the slots' reuse keys start: after the ids.
pub(super) fn reuse_offset(capacity: u32) -> usize {
    ids_offset(capacity) + capacity as usize * 8
}

/// Where the slots' ids start: after the marks, 8-aligned.
pub(super) fn ids_offset(capacity: u32) -> usize {
    (marks_offset(capacity) + capacity as usize).div_ceil(8) * 8
}

/// Where the slots' marks start: right after the slots.
pub(super) fn marks_offset(capacity: u32) -> usize {
    slots_offset() + capacity as usize * std::mem::size_of::<Slot>()
}

pub(super) fn slots_offset() -> usize {
    let align = std::mem::align_of::<Slot>();
    std::mem::size_of::<Header>().div_ceil(align) * align
}

/// Registry capacity, as set at preload.
pub(super) fn capacity() -> u32 {
    CAPACITY.load(Ordering::Relaxed)
}

/// Called from `_PG_init` at preload: remembers the capacity and the static
/// workers (they take slots `0..n`, ids `1..=n`) and installs the hooks that
/// request and create the shared memory.
pub fn init(capacity: u32, text_limit: usize, statics: Vec<WorkerDef>) {
    CAPACITY.store(capacity, Ordering::Relaxed);
    TEXT_LIMIT.store(text_limit, Ordering::Relaxed);
    let _ = STATIC_DEFS.set(statics);
    // SAFETY: _PG_init runs once in the postmaster's only thread; we chain
    // whatever hook was installed before us.
    unsafe {
        PREV_SHMEM_STARTUP_HOOK = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(shmem_startup);
        #[cfg(any(feature = "pg15", feature = "pg16", feature = "pg17", feature = "pg18"))]
        {
            PREV_SHMEM_REQUEST_HOOK = pg_sys::shmem_request_hook;
            pg_sys::shmem_request_hook = Some(shmem_request);
        }
        #[cfg(any(feature = "pg13", feature = "pg14"))]
        request_shmem();
    }
}

/// Asks the postmaster for the registry's memory and its lock.
///
/// # Safety
/// Only while shared memory is being requested: in `shmem_request_hook`
/// (PG15+) or in `_PG_init` at preload (PG13/14).
unsafe fn request_shmem() {
    // SAFETY: the caller guarantees we are in the request phase.
    unsafe {
        pg_sys::RequestAddinShmemSpace(shmem_size(CAPACITY.load(Ordering::Relaxed)));
        pg_sys::RequestNamedLWLockTranche(TRANCHE_NAME.as_ptr(), 1);
    }
}

#[cfg(any(feature = "pg15", feature = "pg16", feature = "pg17", feature = "pg18"))]
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn shmem_request() {
    // SAFETY: chaining the previous hook, then requesting inside the hook.
    unsafe {
        if let Some(prev) = PREV_SHMEM_REQUEST_HOOK {
            prev();
        }
        request_shmem();
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn shmem_startup() {
    // SAFETY: called by the postmaster (and again after a crash) while no
    // other process uses the registry; AddinShmemInitLock serialises the
    // creation as PostgreSQL requires.
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP_HOOK {
            prev();
        }
        let capacity = CAPACITY.load(Ordering::Relaxed);
        let size = shmem_size(capacity);
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(ADDIN_SHMEM_INIT_LOCK)).lock;
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let base = pg_sys::ShmemInitStruct(SHMEM_NAME.as_ptr(), size, &mut found) as *mut u8;
        let header = base as *mut Header;
        if !found {
            std::ptr::write_bytes(base, 0, size);
            (*header).capacity = capacity;
            (*header).events.init();
            (*header).texts_offset = texts_offset(capacity);
            (*header).texts_tranche = texts::create(
                base.add(texts_offset(capacity)),
                TEXT_LIMIT.load(Ordering::Relaxed),
            );
            let slots = std::slice::from_raw_parts_mut(
                base.add(slots_offset()) as *mut Slot,
                capacity as usize,
            );
            let now = pg_sys::GetCurrentTimestamp();
            let statics = STATIC_DEFS.get().map(Vec::as_slice).unwrap_or(&[]);
            let saved = SAVED.lock().ok().and_then(|mut s| s.take());
            match saved {
                Some(saved) if saved.slots.len() == slots.len() => {
                    for (slot, old) in slots.iter_mut().zip(&saved.slots) {
                        *slot = *old;
                        recover_slot(slot, now);
                    }
                    (*header).next_id = saved.next_id.max(statics.len() as i64 + 1);
                    (*header).ids_end = (*header).next_id;
                }
                _ => {
                    // A clean start: no worker of an earlier run comes back.
                    texts::clear_configs();
                    for (index, def) in statics.iter().enumerate() {
                        let slot = &mut slots[index];
                        fill_slot(slot, index as i64 + 1, 1, def, None, now);
                        slot.is_static = true;
                        slot.find_handle = true;
                    }
                    (*header).next_id = ids::first_at_start(statics.len() as i64);
                    (*header).ids_end = (*header).next_id;
                }
            }
            let marks =
                std::slice::from_raw_parts_mut(base.add(marks_offset(capacity)), capacity as usize);
            let mut counts = MarkCounts::default();
            for (mark, slot) in marks.iter_mut().zip(slots.iter()) {
                *mark = mark_of(slot);
                counts.count(*mark, 1);
            }
            (*header).counts = counts;
            (*header).candidates = Candidates::default();
            let ids = std::slice::from_raw_parts_mut(
                base.add(ids_offset(capacity)) as *mut i64,
                capacity as usize,
            );
            for (id, slot) in ids.iter_mut().zip(slots.iter()) {
                *id = id_of(slot);
            }
            let keys = std::slice::from_raw_parts_mut(
                base.add(reuse_offset(capacity)) as *mut i64,
                capacity as usize,
            );
            for (key, slot) in keys.iter_mut().zip(slots.iter()) {
                *key = reuse_key(slot);
            }
        }
        if !pg_sys::IsUnderPostmaster {
            // Registered anew at each creation: the server forgets its exit
            // callbacks when it releases shared memory.
            pg_sys::on_shmem_exit(Some(save_registry), pg_sys::Datum::from(0usize));
        }
        let tranche = pg_sys::GetNamedLWLockTranche(TRANCHE_NAME.as_ptr());
        LOCK.store(&mut (*tranche).lock, Ordering::Release);
        HEADER.store(header, Ordering::Release);
        events::attach(&raw mut (*header).events);
        spares::attach(&raw mut (*header).spares);
        pg_sys::LWLockRelease(init_lock);
    }
}

/// Runs in the postmaster as it releases shared memory (after a crash,
/// before it creates the memory anew, and at shutdown): copies the registry
/// into the postmaster's own memory. Every other process is gone by then.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn save_registry(_code: i32, _arg: pg_sys::Datum) {
    let header = HEADER.load(Ordering::Acquire);
    if header.is_null() {
        return;
    }
    // SAFETY: the segment is still attached (our callback runs before the
    // server's detach callback, registered earlier) and no other process
    // is alive to change it.
    let saved = unsafe {
        let capacity = (*header).capacity as usize;
        if capacity != CAPACITY.load(Ordering::Relaxed) as usize {
            return;
        }
        let base = (header as *mut u8).add(slots_offset()) as *const Slot;
        Saved {
            next_id: (*header).next_id,
            slots: std::slice::from_raw_parts(base, capacity).to_vec(),
        }
    };
    HEADER.store(std::ptr::null_mut(), Ordering::Release);
    events::attach(std::ptr::null_mut());
    spares::attach(std::ptr::null_mut());
    // SAFETY: a plain flag of the server, set when the postmaster itself
    // exits (a shutdown), not when it only reinitialises after a crash.
    if unsafe { pg_sys::proc_exit_inprogress } {
        let queued: Vec<String> = saved
            .slots
            .iter()
            .filter(|s| s.state == SlotState::Queued as u8)
            .map(|s| s.id.to_string())
            .collect();
        if !queued.is_empty() {
            pgrx::log!(
                "lightdb_bgw: server shutdown: {} queued workers dropped (ids {})",
                queued.len(),
                queued.join(", ")
            );
        }
    }
    if let Ok(mut slot) = SAVED.lock() {
        *slot = Some(saved);
    }
}

/// The header's total of result bytes (see `results.rs`), while shared
/// memory is attached.
pub(super) fn result_total() -> Option<&'static AtomicU64> {
    let header = HEADER.load(Ordering::Acquire);
    // SAFETY: the header lives as long as shared memory is attached; the
    // counter is an atomic, shared by design.
    (!header.is_null()).then(|| unsafe { &(*header).result_bytes })
}

/// Copies `text` into the text area without taking the registry lock;
/// `None` when the area's cap (`lightdb_bgw.max_text_memory`) is reached.
pub(super) fn store_text(text: &[u8]) -> Option<TextRef> {
    in_area(|place, tranche| texts::store(place, tranche, text))
}

/// [`store_text`] for a result, which may be large: kept in pieces.
pub(super) fn store_large_text(text: &[u8]) -> Option<TextRef> {
    in_area(|place, tranche| texts::store_chained(place, tranche, text))
}

fn in_area(store: impl FnOnce(*mut u8, i32) -> Option<TextRef>) -> Option<TextRef> {
    let header = HEADER.load(Ordering::Acquire);
    if header.is_null() {
        return None;
    }
    // SAFETY: the header was initialised by the postmaster and these fields
    // never change afterwards; the byte count is an atomic.
    unsafe {
        let place = (header as *mut u8).add((*header).texts_offset);
        let stored = store(place, (*header).texts_tranche)?;
        (*header).text_bytes.fetch_add(stored.len, Ordering::AcqRel);
        Some(stored)
    }
}

/// Bytes of texts stored now, and the cap (`lightdb_bgw.max_text_memory`).
pub(super) fn text_use() -> (u64, u64) {
    let header = HEADER.load(Ordering::Acquire);
    // SAFETY: the header lives as long as shared memory is attached; the
    // counter is an atomic.
    let used = (!header.is_null()).then(|| unsafe { (*header).text_bytes.load(Ordering::Acquire) });
    (used.unwrap_or(0), TEXT_LIMIT.load(Ordering::Relaxed) as u64)
}
