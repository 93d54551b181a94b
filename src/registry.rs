//! The shared-memory registry: one slot per worker the extension knows,
//! static and dynamic, live or recently stopped.
//!
//! Layout: a [`Header`] followed by `capacity` [`Slot`]s, sized by
//! `lightdb_bgw.max_workers` and created by the postmaster at start (and
//! again after a crash-reinitialisation). One named LWLock guards every
//! field of every slot and `Header::next_id`; a condition variable in the
//! header is broadcast after every change of state, so sessions waiting on a
//! worker wake on events. This module is the only one that touches that
//! memory.

use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use std::sync::Mutex;

use once_cell::sync::OnceCell;
use pgrx::pg_sys;

use crate::spec::{Kind, StartTime, WorkerDef};

const SHMEM_NAME: &CStr = c"lightdb_bgw registry";
const TRANCHE_NAME: &CStr = c"lightdb_bgw";
/// Index of `AddinShmemInitLock` in `MainLWLockArray` (lwlocknames.txt).
const ADDIN_SHMEM_INIT_LOCK: usize = 21;

/// Bytes kept for a worker's name (the server's `BGW_MAXLEN`).
pub const NAME_LEN: usize = pg_sys::BGW_MAXLEN as usize;
/// Bytes kept for a database or role name (the server's `NAMEDATALEN`).
pub const OBJECT_NAME_LEN: usize = pg_sys::NAMEDATALEN as usize;
/// Bytes kept for the last error of a worker; longer messages are cut.
pub const ERROR_LEN: usize = 256;
/// Bytes kept for a worker's configuration, a JSON object (room for a
/// 64 KiB `sql` text and its JSON escapes).
pub const CONFIG_LEN: usize = 96 * 1024;

/// PostgreSQL's `struct BackgroundWorkerHandle` (bgworker.c, the same in
/// PostgreSQL 13 to 18): which postmaster slot, and its generation.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgHandle {
    pub slot: i32,
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
}

/// Registry header. `capacity` is written once by the postmaster at
/// creation; `next_id` by launchers under the registry lock; `cv` is the
/// server's own condition variable, safe to use without the lock.
#[repr(C)]
struct Header {
    capacity: u32,
    next_id: i64,
    cv: pg_sys::ConditionVariable,
}

/// One worker. Every field is written under the registry lock in
/// exclusive mode and read under it in shared mode; the writers are named
/// on each field.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Slot {
    /// Worker id, 0 when free. Launcher / postmaster at creation.
    id: i64,
    /// Bumped each time the slot is given to a new worker. Launcher.
    generation: u64,
    /// A `SlotState`. Launcher, the worker itself, terminate.
    state: u8,
    /// A `Kind`. Launcher.
    kind: u8,
    /// A `StartTime`. Launcher.
    start_time: u8,
    /// Registered from `lightdb_bgw.static_workers`. Postmaster.
    is_static: bool,
    /// Seconds, or -1 for never. Launcher.
    restart_secs: i32,
    /// Connect with `BGWORKER_BYPASS_ALLOWCONN`. Launcher.
    bypass_allowconn: bool,
    /// `terminate` was asked: the worker stops for good. Terminate.
    terminate_requested: bool,
    /// The postmaster's handle is known. Launcher, or the worker itself
    /// when `find_handle`.
    has_handle: bool,
    /// The worker finds its handle itself when it starts: static workers,
    /// and workers brought back after a crash-reinitialisation (whose old
    /// handles are void). Postmaster.
    find_handle: bool,
    handle: PgHandle,
    /// The worker's role, InvalidOid for the bootstrap superuser. Launcher.
    role_oid: u32,
    /// The worker's database, InvalidOid for none. Launcher. Dynamic
    /// workers connect to these two OIDs, never to names looked up again.
    database_oid: u32,
    /// Connected as its role (or needing no connection) in its current
    /// run; reset when the run starts. The worker.
    connected: bool,
    /// Runs of a `sql` worker, rows and duration of the last. The worker.
    runs: i64,
    last_rows: i64,
    last_run_us: i64,
    /// Process id while started, else 0. The worker.
    pid: i32,
    /// How many times the worker came back after an exit. The worker.
    restarts: i32,
    /// Exit code of the last exit, -1 before the first. The worker.
    last_exit: i32,
    /// `TimestampTz`s, 0 when not yet. Launcher / the worker.
    launched_at: i64,
    started_at: i64,
    stopped_at: i64,
    /// NUL-terminated strings. Launcher, except `last_error` (the worker).
    name: [u8; NAME_LEN],
    database: [u8; OBJECT_NAME_LEN],
    role: [u8; OBJECT_NAME_LEN],
    launched_by: [u8; OBJECT_NAME_LEN],
    last_error: [u8; ERROR_LEN],
    config: [u8; CONFIG_LEN],
}

/// A slot taken for a worker that is not registered with the postmaster
/// yet. Dropping it gives the slot back, also while unwinding from an
/// error raised inside the server's registration: only [`Reservation::keep`]
/// (once the postmaster has the worker) makes the slot stay taken.
#[derive(Debug)]
pub struct Reservation {
    pub slot: u32,
    pub id: i64,
    pub generation: u64,
    kept: bool,
}

impl Reservation {
    /// The worker is registered: the slot stays its own. Returns the id.
    pub fn keep(mut self) -> i64 {
        self.kept = true;
        self.id
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.kept {
            release(self);
        }
    }
}

/// An owned copy of one slot, for readers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRecord {
    pub slot: u32,
    pub id: i64,
    pub generation: u64,
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
    pub last_error: Option<String>,
    pub bypass_allowconn: bool,
    pub terminate_requested: bool,
    pub handle: Option<PgHandle>,
    pub find_handle: bool,
    pub role_oid: u32,
    pub database_oid: u32,
    pub connected: bool,
    pub runs: i64,
    pub last_rows: i64,
    pub last_run_us: i64,
}

static HEADER: AtomicPtr<Header> = AtomicPtr::new(std::ptr::null_mut());
static LOCK: AtomicPtr<pg_sys::LWLock> = AtomicPtr::new(std::ptr::null_mut());
static CAPACITY: AtomicU32 = AtomicU32::new(0);
static STATIC_DEFS: OnceCell<Vec<WorkerDef>> = OnceCell::new();

/// The registry as the postmaster last saw it before shared memory was
/// released (at a crash-reinitialisation), kept in the postmaster's own
/// memory so the new registry starts from it.
struct Saved {
    next_id: i64,
    slots: Vec<Slot>,
}

static SAVED: Mutex<Option<Saved>> = Mutex::new(None);

/// What the registry says of workers that were running or waiting when the
/// server crashed.
const CRASH_NOTE: &str = "interrupted by a crash-reinitialisation of the server";

static mut PREV_SHMEM_STARTUP_HOOK: pg_sys::shmem_startup_hook_type = None;
#[cfg(any(feature = "pg15", feature = "pg16", feature = "pg17", feature = "pg18"))]
static mut PREV_SHMEM_REQUEST_HOOK: pg_sys::shmem_request_hook_type = None;

/// Bytes of shared memory the registry takes for `capacity` slots.
pub fn shmem_size(capacity: u32) -> usize {
    slots_offset() + capacity as usize * std::mem::size_of::<Slot>()
}

fn slots_offset() -> usize {
    let align = std::mem::align_of::<Slot>();
    std::mem::size_of::<Header>().div_ceil(align) * align
}

/// Called from `_PG_init` at preload: remembers the capacity and the static
/// workers (they take slots `0..n`, ids `1..=n`) and installs the hooks that
/// request and create the shared memory.
pub fn init(capacity: u32, statics: Vec<WorkerDef>) {
    CAPACITY.store(capacity, Ordering::Relaxed);
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
            pg_sys::ConditionVariableInit(&mut (*header).cv);
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
                }
                _ => {
                    for (index, def) in statics.iter().enumerate() {
                        let slot = &mut slots[index];
                        fill_slot(slot, index as i64 + 1, 1, def, None, now);
                        slot.is_static = true;
                        slot.find_handle = true;
                    }
                    (*header).next_id = statics.len() as i64 + 1;
                }
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
    if let Ok(mut slot) = SAVED.lock() {
        *slot = Some(saved);
    }
}

/// Brings a slot saved before a crash-reinitialisation into the new
/// registry. The postmaster's handles are void (its slots were rebuilt), so
/// they are dropped; a worker that was running or waiting comes back if it
/// has a restart policy and was not terminated (the postmaster restarts it
/// at once), and is stopped otherwise. Anything unreadable is freed.
fn recover_slot(slot: &mut Slot, now: i64) {
    let state = slot.state;
    if state > SlotState::Stopped as u8 || slot.id <= 0 {
        slot.state = SlotState::Free as u8;
        slot.id = 0;
        return;
    }
    if state == SlotState::Free as u8 {
        return;
    }
    slot.has_handle = false;
    if state == SlotState::Stopped as u8 {
        return;
    }
    let was_running = state == SlotState::Started as u8;
    slot.pid = 0;
    slot.connected = false;
    let comes_back =
        slot.restart_secs >= 0 && !slot.terminate_requested && slot.kind != Kind::Raw as u8;
    if comes_back {
        slot.state = SlotState::NotYetStarted as u8;
        slot.find_handle = true;
    } else {
        slot.state = SlotState::Stopped as u8;
        slot.stopped_at = now;
    }
    if was_running || !comes_back {
        put_str(&mut slot.last_error, CRASH_NOTE);
    }
}

fn fill_slot(
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
    slot.terminate_requested = false;
    slot.has_handle = false;
    slot.find_handle = false;
    slot.handle = PgHandle {
        slot: -1,
        generation: 0,
    };
    slot.role_oid = 0;
    slot.database_oid = 0;
    slot.connected = false;
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
    put_str(&mut slot.config, &def.config);
}

/// Copies `value` into a fixed buffer, cut at a character boundary so the
/// terminating NUL always fits.
fn put_str(buf: &mut [u8], value: &str) {
    let mut end = value.len().min(buf.len() - 1);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    buf[..end].copy_from_slice(&value.as_bytes()[..end]);
    buf[end..].fill(0);
}

fn get_str(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Holds the registry lock; releases it when dropped, also while
/// unwinding from an error.
struct Locked {
    lock: *mut pg_sys::LWLock,
    header: *mut Header,
}

impl Locked {
    fn acquire(exclusive: bool) -> Option<Locked> {
        let header = HEADER.load(Ordering::Acquire);
        let lock = LOCK.load(Ordering::Acquire);
        if header.is_null() || lock.is_null() {
            return None;
        }
        let mode = if exclusive {
            pg_sys::LWLockMode::LW_EXCLUSIVE
        } else {
            pg_sys::LWLockMode::LW_SHARED
        };
        // SAFETY: `lock` points at our named tranche's LWLock, created by
        // the postmaster before any backend or worker could run.
        unsafe { pg_sys::LWLockAcquire(lock, mode) };
        Some(Locked { lock, header })
    }

    fn slots(&mut self) -> &mut [Slot] {
        // SAFETY: the header is followed by `capacity` slots (see
        // `shmem_size`), and we hold the lock that guards them.
        unsafe {
            let capacity = (*self.header).capacity as usize;
            let base = (self.header as *mut u8).add(slots_offset()) as *mut Slot;
            std::slice::from_raw_parts_mut(base, capacity)
        }
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        // SAFETY: we acquired this lock in `acquire` and have not released it.
        unsafe { pg_sys::LWLockRelease(self.lock) };
    }
}

/// Wakes every session waiting on the registry's condition variable.
fn broadcast() {
    let header = HEADER.load(Ordering::Acquire);
    if !header.is_null() {
        // SAFETY: the condition variable was initialised with the registry
        // and lives as long as shared memory.
        unsafe { pg_sys::ConditionVariableBroadcast(&mut (*header).cv) };
    }
}

fn record_of(index: usize, slot: &Slot) -> WorkerRecord {
    let state = match slot.state {
        1 => SlotState::NotYetStarted,
        2 => SlotState::Started,
        3 => SlotState::Stopped,
        _ => SlotState::Free,
    };
    WorkerRecord {
        slot: index as u32,
        id: slot.id,
        generation: slot.generation,
        state,
        is_static: slot.is_static,
        def: WorkerDef {
            kind: Kind::from_u8(slot.kind).unwrap_or(Kind::Raw),
            name: get_str(&slot.name),
            database: non_empty(get_str(&slot.database)),
            role: non_empty(get_str(&slot.role)),
            start_time: StartTime::from_u8(slot.start_time).unwrap_or(StartTime::RecoveryFinished),
            restart_after: (slot.restart_secs >= 0).then_some(slot.restart_secs as u32),
            config: get_str(&slot.config),
        },
        pid: slot.pid,
        restarts: slot.restarts,
        last_exit: (slot.last_exit >= 0).then_some(slot.last_exit),
        launched_by: non_empty(get_str(&slot.launched_by)),
        launched_at: slot.launched_at,
        started_at: (slot.started_at != 0).then_some(slot.started_at),
        stopped_at: (slot.stopped_at != 0).then_some(slot.stopped_at),
        last_error: non_empty(get_str(&slot.last_error)),
        bypass_allowconn: slot.bypass_allowconn,
        terminate_requested: slot.terminate_requested,
        handle: slot.has_handle.then_some(slot.handle),
        find_handle: slot.find_handle,
        role_oid: slot.role_oid,
        database_oid: slot.database_oid,
        connected: slot.connected,
        runs: slot.runs,
        last_rows: slot.last_rows,
        last_run_us: slot.last_run_us,
    }
}

/// Every worker the registry holds, by id.
pub fn list() -> Vec<WorkerRecord> {
    let Some(mut locked) = Locked::acquire(false) else {
        return Vec::new();
    };
    let mut out: Vec<WorkerRecord> = locked
        .slots()
        .iter()
        .enumerate()
        .filter(|(_, s)| s.state != SlotState::Free as u8)
        .map(|(i, s)| record_of(i, s))
        .collect();
    drop(locked);
    out.sort_by_key(|r| r.id);
    out
}

/// Run by a worker as it starts: checks that the slot still belongs to
/// `(id, generation)` and marks it started. `None` when the slot was given
/// to another worker (a stale registration) or the worker was terminated
/// while it waited for its (re)start: it must then leave with code 0.
/// A worker that finds its own handle (see `Slot::find_handle`) passes it
/// here, so that from the moment it counts as started it can be terminated.
pub fn claim(
    slot: u32,
    id: i64,
    generation: u64,
    pid: i32,
    own_handle: Option<PgHandle>,
) -> Option<WorkerRecord> {
    let mut locked = Locked::acquire(true)?;
    let slots = locked.slots();
    let entry = slots.get_mut(slot as usize)?;
    if entry.id != id
        || entry.generation != generation
        || entry.state == SlotState::Free as u8
        || entry.terminate_requested
    {
        return None;
    }
    if entry.started_at != 0 {
        entry.restarts += 1;
    }
    entry.state = SlotState::Started as u8;
    entry.pid = pid;
    entry.connected = false;
    if let Some(handle) = own_handle {
        entry.handle = handle;
        entry.has_handle = true;
    }
    // SAFETY: reading the clock has no preconditions.
    entry.started_at = unsafe { pg_sys::GetCurrentTimestamp() };
    entry.stopped_at = 0;
    let record = record_of(slot as usize, entry);
    drop(locked);
    broadcast();
    Some(record)
}

/// Run by a worker as it exits with `code`. A worker that will be
/// restarted (code other than 0 and a restart policy) goes back to
/// `not_yet_started`; any other becomes `stopped`.
pub fn record_exit(slot: u32, id: i64, generation: u64, code: i32, error: Option<&str>) {
    let Some(mut locked) = Locked::acquire(true) else {
        return;
    };
    let slots = locked.slots();
    let Some(entry) = slots.get_mut(slot as usize) else {
        return;
    };
    if entry.id != id || entry.generation != generation {
        return;
    }
    if entry.state != SlotState::Started as u8 || entry.pid == 0 {
        // Not ours any more (a terminated worker that came back only to
        // leave): keep what terminate recorded.
        return;
    }
    let restarts = code != 0 && entry.restart_secs >= 0 && !entry.terminate_requested;
    entry.state = if restarts {
        SlotState::NotYetStarted as u8
    } else {
        SlotState::Stopped as u8
    };
    entry.pid = 0;
    entry.last_exit = code;
    // SAFETY: reading the clock has no preconditions.
    entry.stopped_at = unsafe { pg_sys::GetCurrentTimestamp() };
    if let Some(error) = error {
        put_str(&mut entry.last_error, error);
    }
    drop(locked);
    broadcast();
}

/// Changes the slot of worker `(id, generation)` under the registry lock;
/// does nothing if the slot now belongs to another worker.
fn update_own(slot: u32, id: i64, generation: u64, change: impl FnOnce(&mut Slot)) {
    let Some(mut locked) = Locked::acquire(true) else {
        return;
    };
    if let Some(entry) = locked.slots().get_mut(slot as usize) {
        if entry.id == id && entry.generation == generation {
            change(entry);
        }
    }
}

/// Records the last error a running worker met and survived.
pub fn record_error(slot: u32, id: i64, generation: u64, error: Option<&str>) {
    update_own(slot, id, generation, |entry| {
        put_str(&mut entry.last_error, error.unwrap_or(""))
    });
}

/// Records that the running worker is connected as its role (or needs no
/// connection): `launch(..., wait => true)` returns from then on.
pub fn mark_connected(slot: u32, id: i64, generation: u64) {
    update_own(slot, id, generation, |entry| entry.connected = true);
    broadcast();
}

/// Marks the worker so that it stops for good when it exits now: used when
/// what it was authorised as (its role, its database) is gone.
pub fn stop_for_good(slot: u32, id: i64, generation: u64) -> Option<PgHandle> {
    let mut handle = None;
    update_own(slot, id, generation, |entry| {
        entry.terminate_requested = true;
        handle = entry.has_handle.then_some(entry.handle);
    });
    handle
}

/// Takes a slot for a new worker: a free one, else the one whose worker
/// stopped longest ago (history makes room). Static slots are never taken.
/// `is_evictable` tells whether a stopped worker is also gone from the
/// postmaster. The id is new and never reused.
pub fn reserve(
    def: &WorkerDef,
    launched_by: &str,
    role_oid: u32,
    database_oid: u32,
    bypass_allowconn: bool,
    is_evictable: impl Fn(&WorkerRecord) -> bool,
) -> Result<Reservation, u32> {
    let capacity = CAPACITY.load(Ordering::Relaxed);
    let Some(mut locked) = Locked::acquire(true) else {
        return Err(capacity);
    };
    let header = locked.header;
    let slots = locked.slots();
    let index = slots
        .iter()
        .position(|s| s.state == SlotState::Free as u8)
        .or_else(|| {
            slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.state == SlotState::Stopped as u8 && !s.is_static)
                .filter(|(i, s)| is_evictable(&record_of(*i, s)))
                .min_by_key(|(_, s)| (s.stopped_at, s.id))
                .map(|(i, _)| i)
        })
        .ok_or(capacity)?;
    // SAFETY: we hold the registry lock exclusively; next_id is guarded by it.
    let id = unsafe {
        let id = (*header).next_id;
        (*header).next_id += 1;
        id
    };
    let entry = &mut slots[index];
    let generation = entry.generation.wrapping_add(1).max(1);
    // SAFETY: reading the clock has no preconditions.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    fill_slot(entry, id, generation, def, Some(launched_by), now);
    entry.role_oid = role_oid;
    entry.database_oid = database_oid;
    entry.bypass_allowconn = bypass_allowconn;
    Ok(Reservation {
        slot: index as u32,
        id,
        generation,
        kept: false,
    })
}

/// Names a reserved worker after its id is known.
pub fn rename(r: &Reservation, name: &str) {
    update_own(r.slot, r.id, r.generation, |entry| {
        put_str(&mut entry.name, name)
    });
}

/// Gives back a reservation whose registration failed: nothing is left.
fn release(r: &Reservation) {
    update_own(r.slot, r.id, r.generation, |entry| {
        entry.state = SlotState::Free as u8;
        entry.id = 0;
    });
}

/// Records the postmaster's handle of a registered worker, so any session
/// can ask the postmaster about it or terminate it.
pub fn attach_handle(r: &Reservation, handle: PgHandle) {
    update_own(r.slot, r.id, r.generation, |entry| {
        entry.handle = handle;
        entry.has_handle = true;
    });
}

/// The worker with `id`, if the registry still holds it.
pub fn find(id: i64) -> Option<WorkerRecord> {
    let mut locked = Locked::acquire(false)?;
    locked
        .slots()
        .iter()
        .enumerate()
        .find(|(_, s)| s.id == id && s.state != SlotState::Free as u8)
        .map(|(i, s)| record_of(i, s))
}

/// Marks the worker `id` for termination. A worker that is not running now
/// is stopped at once; a running one stops when its exit is recorded.
/// Returns the record as it was, or `None` for an unknown id.
pub fn request_terminate(id: i64) -> Option<WorkerRecord> {
    let mut locked = Locked::acquire(true)?;
    let slots = locked.slots();
    let (index, entry) = slots
        .iter_mut()
        .enumerate()
        .find(|(_, s)| s.id == id && s.state != SlotState::Free as u8)?;
    let before = record_of(index, entry);
    entry.terminate_requested = true;
    if entry.state == SlotState::NotYetStarted as u8 {
        entry.state = SlotState::Stopped as u8;
        // SAFETY: reading the clock has no preconditions.
        entry.stopped_at = unsafe { pg_sys::GetCurrentTimestamp() };
    }
    drop(locked);
    broadcast();
    Some(before)
}

/// Records one run of a `sql` worker.
pub fn record_run(slot: u32, id: i64, generation: u64, rows: i64, micros: i64) {
    update_own(slot, id, generation, |entry| {
        entry.runs += 1;
        entry.last_rows = rows;
        entry.last_run_us = micros;
    });
}

/// A wait on the registry's condition variable. Create it *before*
/// checking the condition, so no change between the check and the sleep is
/// missed; dropping it ends the wait.
pub struct ChangeWait {
    cv: *mut pg_sys::ConditionVariable,
}

impl ChangeWait {
    pub fn prepare() -> Option<ChangeWait> {
        let header = HEADER.load(Ordering::Acquire);
        if header.is_null() {
            return None;
        }
        // SAFETY: the condition variable lives in shared memory for the
        // life of the server.
        let cv = unsafe { &raw mut (*header).cv };
        // SAFETY: as above; one prepared sleep per process at a time, which
        // the server enforces by cancelling any other.
        unsafe { pg_sys::ConditionVariablePrepareToSleep(cv) };
        Some(ChangeWait { cv })
    }

    /// Sleeps until the registry changes or `timeout` passes. Serves
    /// interrupts (query cancel raises an ERROR here).
    pub fn sleep(&self, timeout: std::time::Duration) {
        let millis = timeout.as_millis().clamp(1, i32::MAX as u128) as std::ffi::c_long;
        // SAFETY: `cv` is the prepared condition variable; the server's
        // sleep handles interrupts and postmaster death.
        unsafe {
            pg_sys::ConditionVariableTimedSleep(self.cv, millis, pg_sys::PG_WAIT_EXTENSION);
        }
    }
}

impl Drop for ChangeWait {
    fn drop(&mut self) {
        // SAFETY: cancelling a prepared sleep has no other precondition.
        unsafe { pg_sys::ConditionVariableCancelSleep() };
    }
}

#[cfg(test)]
mod unit {
    use super::*;

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
