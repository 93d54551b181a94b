//! Building PostgreSQL's `BackgroundWorker` struct and registering it with
//! the postmaster. Static and dynamic launches share [`build`].

use pgrx::pg_sys;

use crate::error::BgwError;
use crate::registry::{self, PgHandle, SlotRef};
use crate::spec::{self, StartTime};
use crate::workerdef::WorkerDef;

/// The library and entry point of every built-in kind.
pub const LIBRARY: &str = "lightdb_bgw";
pub const ENTRY_POINT: &str = "lightdb_bgw_main";

/// Marks `bgw_extra` as ours: a worker started with anything else leaves.
const EXTRA_MAGIC: &[u8; 8] = b"LDBBGW01";

/// What goes into `bgw_extra`: the worker's id and its slot's generation,
/// so a reused slot is never mistaken for an old one.
pub fn encode_extra(id: i64, generation: u64) -> [u8; pg_sys::BGW_EXTRALEN as usize] {
    let mut extra = [0u8; pg_sys::BGW_EXTRALEN as usize];
    extra[..8].copy_from_slice(EXTRA_MAGIC);
    extra[8..16].copy_from_slice(&id.to_le_bytes());
    extra[16..24].copy_from_slice(&generation.to_le_bytes());
    extra
}

/// The inverse of [`encode_extra`]; `None` if the bytes are not ours.
pub fn decode_extra(extra: &[u8]) -> Option<(i64, u64)> {
    if extra.len() < 24 || &extra[..8] != EXTRA_MAGIC {
        return None;
    }
    let id = i64::from_le_bytes(extra[8..16].try_into().ok()?);
    let generation = u64::from_le_bytes(extra[16..24].try_into().ok()?);
    Some((id, generation))
}

fn start_time(st: StartTime) -> pg_sys::BgWorkerStartTime::Type {
    match st {
        StartTime::PostmasterStart => pg_sys::BgWorkerStartTime::BgWorkerStart_PostmasterStart,
        StartTime::ConsistentState => pg_sys::BgWorkerStartTime::BgWorkerStart_ConsistentState,
        StartTime::RecoveryFinished => pg_sys::BgWorkerStartTime::BgWorkerStart_RecoveryFinished,
    }
}

/// Copies a string into a fixed C buffer, refusing what does not fit.
fn put_c(buf: &mut [std::ffi::c_char], what: &str, value: &str) -> Result<(), String> {
    spec::check_c_string(what, value, buf.len())?;
    for (dst, src) in buf.iter_mut().zip(value.as_bytes()) {
        *dst = *src as std::ffi::c_char;
    }
    buf[value.len()..].fill(0);
    Ok(())
}

/// The registration of a built-in worker living in registry `slot`.
pub fn build(
    def: &WorkerDef,
    at: SlotRef,
    id: i64,
    notify_pid: i32,
) -> Result<pg_sys::BackgroundWorker, String> {
    let flags = builtin_flags(def);
    build_raw(&RawWorker {
        library: LIBRARY.to_string(),
        function: ENTRY_POINT.to_string(),
        name: def.name.clone(),
        worker_type: spec::WORKER_TYPE.to_string(),
        main_arg: at.index as i64,
        extra: encode_extra(id, at.generation).to_vec(),
        flags,
        start_time: def.start_time,
        restart_after: def.restart_after,
        notify_pid,
    })
}

/// Registers the static workers with the postmaster, from `_PG_init`. They
/// hold registry slots `0..n` with ids `1..=n` and generation 1.
pub fn register_static_workers(defs: &[WorkerDef]) {
    for (index, def) in defs.iter().enumerate() {
        let at = SlotRef {
            index: index as u32,
            generation: 1,
        };
        let mut worker = match build(def, at, index as i64 + 1, 0) {
            Ok(worker) => worker,
            Err(reason) => BgwError::invalid(format!(
                "cannot register static worker \"{}\": {reason}",
                def.name
            ))
            .report(),
        };
        // SAFETY: called from _PG_init during preload, the only time static
        // registration is allowed; the struct is fully initialised.
        unsafe { pg_sys::RegisterBackgroundWorker(&mut worker) };
    }
}

/// What the postmaster says of a registered worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmStatus {
    NotYetStarted,
    Started(i32),
    Stopped,
}

/// Asks the postmaster's shared state about `handle`. A handle whose slot
/// was reused (another generation) reads as stopped.
pub fn handle_status(handle: PgHandle) -> PmStatus {
    let mut copy = handle;
    let mut pid: pg_sys::pid_t = 0;
    // SAFETY: PgHandle has the layout of PostgreSQL's BackgroundWorkerHandle;
    // the server only reads it, under its own lock.
    let status = unsafe {
        pg_sys::GetBackgroundWorkerPid(
            (&raw mut copy).cast::<pg_sys::BackgroundWorkerHandle>(),
            &mut pid,
        )
    };
    match status {
        pg_sys::BgwHandleStatus::BGWH_STARTED => PmStatus::Started(pid),
        pg_sys::BgwHandleStatus::BGWH_NOT_YET_STARTED => PmStatus::NotYetStarted,
        _ => PmStatus::Stopped,
    }
}

/// Whether the postmaster has forgotten the worker of `handle`.
pub fn pm_stopped(handle: PgHandle) -> bool {
    handle_status(handle) == PmStatus::Stopped
}

/// The pid the postmaster gives the worker of `handle`: 0 before it forks
/// it, `None` once it has forgotten it.
pub fn pm_pid(handle: PgHandle) -> Option<i32> {
    match handle_status(handle) {
        PmStatus::Started(pid) => Some(pid),
        PmStatus::NotYetStarted => Some(0),
        PmStatus::Stopped => None,
    }
}

/// The postmaster's handle of a worker, found by the worker itself: the
/// workers registered when the postmaster's slots were (re)built (static
/// workers, and after a crash-reinitialisation every worker kept) hold
/// slots of generation 0, which bgworker.c never bumps, and the one whose
/// pid is `pid` is ours. The postmaster publishes the pid just after it
/// forks the worker, so this looks again for a short while.
pub fn find_own_handle(pid: i32) -> Option<PgHandle> {
    // SAFETY: a plain integer global of the server, fixed at start.
    let slots = unsafe { pg_sys::max_worker_processes };
    for _ in 0..2000 {
        let found = (0..slots)
            .map(|slot| PgHandle {
                slot,
                generation: 0,
            })
            .find(|h| handle_status(*h) == PmStatus::Started(pid));
        if found.is_some() {
            return found;
        }
        // SAFETY: a plain sleep of one millisecond.
        unsafe { pg_sys::pg_usleep(1000) };
    }
    None
}

/// Asks the postmaster to stop the worker for good: SIGTERM if it runs,
/// and no restart; a worker not yet started never starts.
pub fn terminate_handle(handle: PgHandle) {
    let mut copy = handle;
    // SAFETY: as in `handle_status`; a stale handle is ignored by the server.
    unsafe {
        pg_sys::TerminateBackgroundWorker((&raw mut copy).cast::<pg_sys::BackgroundWorkerHandle>())
    };
}

/// Records the postmaster's `handle` of the worker in slot `at` (`lent`:
/// a spare's process) and, if the worker was terminated while it was
/// being registered (by a database command, say), stops it through the
/// handle.
pub fn attach(at: SlotRef, handle: PgHandle, lent: bool) {
    if registry::attach_handle(at, handle, lent) {
        terminate_handle(handle);
    }
}

/// Registers `worker` with the postmaster from a backend or a worker.
/// Fails with 53000 when every `max_worker_processes` slot is taken.
pub fn register_dynamic(mut worker: pg_sys::BackgroundWorker) -> Result<PgHandle, BgwError> {
    let mut handle: *mut pg_sys::BackgroundWorkerHandle = std::ptr::null_mut();
    // SAFETY: the struct is fully initialised; the server copies it and
    // pallocs the handle in the current memory context.
    let ok = unsafe { pg_sys::RegisterDynamicBackgroundWorker(&mut worker, &mut handle) };
    if !ok || handle.is_null() {
        return Err(BgwError::NoPostmasterSlot);
    }
    // SAFETY: a non-null handle from the server has PgHandle's layout; we
    // copy it out and free the palloc'd original.
    unsafe {
        let copy = *(handle as *const PgHandle);
        pg_sys::pfree(handle.cast());
        Ok(copy)
    }
}

/// The flags a built-in worker of `def` is registered with.
pub fn builtin_flags(def: &WorkerDef) -> i32 {
    let mut flags = pg_sys::BGWORKER_SHMEM_ACCESS as i32;
    if def.database.is_some() || def.kind.info().needs_database {
        flags |= pg_sys::BGWORKER_BACKEND_DATABASE_CONNECTION as i32;
    }
    flags
}

/// Everything `launch_raw` sets, for any library's entry point.
#[derive(Debug, Clone)]
pub struct RawWorker {
    pub library: String,
    pub function: String,
    pub name: String,
    pub worker_type: String,
    pub main_arg: i64,
    pub extra: Vec<u8>,
    pub flags: i32,
    pub start_time: StartTime,
    pub restart_after: Option<u32>,
    pub notify_pid: i32,
}

/// Checks what the server's `RegisterDynamicBackgroundWorker` would refuse
/// with an ERROR, so that a bad request fails before anything is taken.
pub fn check_registrable(flags: i32, start_time: StartTime) -> Result<(), String> {
    let database = flags & pg_sys::BGWORKER_BACKEND_DATABASE_CONNECTION as i32 != 0;
    if flags & pg_sys::BGWORKER_SHMEM_ACCESS as i32 == 0 {
        return Err("a background worker needs flag shmem_access".into());
    }
    if database && start_time == StartTime::PostmasterStart {
        return Err("a worker that connects to a database cannot start at postmaster_start".into());
    }
    Ok(())
}

/// The flag names `launch_raw` takes.
pub fn parse_flags(names: &[String]) -> Result<i32, String> {
    let mut flags = 0;
    for name in names {
        flags |= match name.as_str() {
            "shmem_access" => pg_sys::BGWORKER_SHMEM_ACCESS as i32,
            "database_connection" => pg_sys::BGWORKER_BACKEND_DATABASE_CONNECTION as i32,
            other => {
                return Err(format!(
                    "unknown flag \"{other}\" (valid flags: shmem_access, database_connection)"
                ))
            }
        };
    }
    Ok(flags)
}

/// The `BackgroundWorker` struct, every field checked: for `launch_raw`,
/// and through [`build`] for the built-in kinds.
pub fn build_raw(raw: &RawWorker) -> Result<pg_sys::BackgroundWorker, String> {
    // SAFETY: all-zero bytes are a valid empty BackgroundWorker.
    let mut w: pg_sys::BackgroundWorker = unsafe { std::mem::zeroed() };
    put_c(&mut w.bgw_name, "name", &raw.name)?;
    put_c(&mut w.bgw_type, "type", &raw.worker_type)?;
    put_c(&mut w.bgw_library_name, "library", &raw.library)?;
    put_c(&mut w.bgw_function_name, "function", &raw.function)?;
    if raw.extra.len() > w.bgw_extra.len() {
        return Err(format!(
            "extra is {} bytes long; the server allows at most {}",
            raw.extra.len(),
            w.bgw_extra.len()
        ));
    }
    for (dst, src) in w.bgw_extra.iter_mut().zip(&raw.extra) {
        *dst = *src as std::ffi::c_char;
    }
    w.bgw_flags = raw.flags;
    w.bgw_start_time = start_time(raw.start_time);
    w.bgw_restart_time = raw
        .restart_after
        .map_or(pg_sys::BGW_NEVER_RESTART, |s| s as i32);
    w.bgw_main_arg = pg_sys::Datum::from(raw.main_arg);
    w.bgw_notify_pid = raw.notify_pid;
    Ok(w)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn extra_round_trips() {
        let extra = encode_extra(42, 7);
        assert_eq!(decode_extra(&extra), Some((42, 7)));
        assert_eq!(decode_extra(&[0u8; 128]), None);
        assert_eq!(decode_extra(b"short"), None);
    }

    #[test]
    fn flags() {
        assert_eq!(
            parse_flags(&["shmem_access".into()]),
            Ok(pg_sys::BGWORKER_SHMEM_ACCESS as i32)
        );
        assert!(check_registrable(
            parse_flags(&["database_connection".into()]).unwrap(),
            StartTime::RecoveryFinished
        )
        .is_err());
        let both = parse_flags(&["shmem_access".into(), "database_connection".into()]).unwrap();
        assert!(check_registrable(both, StartTime::ConsistentState).is_ok());
        assert!(check_registrable(both, StartTime::PostmasterStart)
            .unwrap_err()
            .contains("postmaster_start"));
        assert!(parse_flags(&["bogus".into()])
            .unwrap_err()
            .contains("valid flags"));
    }
}
