//! What a launch may take: the postmaster's free background-worker slots
//! (read from the server's own array of them), the quota of the worker's
//! role (`lightdb_bgw.max_workers_per_role`, as `ALTER ROLE ... SET` left
//! it for that role), the superuser reserve and the queue's bound, put
//! together as the registry's [`Admission`].

use std::sync::atomic::{AtomicPtr, Ordering};

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::FromDatum;

use crate::gucs;
use crate::registry::Admission;

/// `pg_db_role_setting` and its unique index on (setdatabase, setrole):
/// fixed OIDs of the catalog, the same in PostgreSQL 13 to 18.
const DB_ROLE_SETTING: u32 = 2964;
const DB_ROLE_SETTING_INDEX: u32 = 2965;
const ANUM_SETDATABASE: i16 = 1;
const ANUM_SETROLE: i16 = 2;
const ANUM_SETCONFIG: i32 = 3;

/// bgworker.c's `BackgroundWorkerSlot` (the same in PostgreSQL 13 to 18).
#[repr(C)]
struct PmSlot {
    in_use: bool,
    terminate: bool,
    pid: pg_sys::pid_t,
    generation: u64,
    worker: pg_sys::BackgroundWorker,
}

/// bgworker.c's `BackgroundWorkerArray`, the postmaster's slots.
#[repr(C)]
struct PmArray {
    total_slots: i32,
    parallel_register_count: u32,
    parallel_terminate_count: u32,
    slots: [PmSlot; 0],
}

/// This process's pointer to the server's array, found once.
static PM_ARRAY: AtomicPtr<PmArray> = AtomicPtr::new(std::ptr::null_mut());

/// Finds the server's array of background-worker slots by its name in the
/// shared-memory index. The size asked for must be the one the server
/// registered; if it is not (a layout this code does not know), the
/// server refuses with an error, caught here: then `None`.
fn pm_array() -> Option<*const PmArray> {
    let cached = PM_ARRAY.load(Ordering::Acquire);
    if !cached.is_null() {
        return Some(cached);
    }
    // SAFETY: a plain integer global of the server, fixed at start.
    let slots = unsafe { pg_sys::max_worker_processes }.max(0) as usize;
    let size = std::mem::offset_of!(PmArray, slots) + slots * std::mem::size_of::<PmSlot>();
    let found = PgTryBuilder::new(|| {
        let mut found = false;
        // SAFETY: the struct exists since the postmaster made shared
        // memory; asking with the same name and size only returns it.
        let ptr = unsafe {
            pg_sys::ShmemInitStruct(c"Background Worker Data".as_ptr(), size, &mut found)
        };
        found.then_some(ptr as *mut PmArray)
    })
    .catch_others(|_| None)
    .execute()?;
    // SAFETY: the array lives as long as shared memory; total_slots is
    // written once at its creation.
    if unsafe { (*found).total_slots } as usize != slots {
        return None;
    }
    PM_ARRAY.store(found, Ordering::Release);
    Some(found)
}

/// How many of the postmaster's `max_worker_processes` slots are free now;
/// `None` when the server's array cannot be read.
pub fn pm_free() -> Option<u32> {
    let array = pm_array()?;
    // SAFETY: the array has `total_slots` slots; `in_use` is a flag the
    // server sets and clears with barriers, read once each here (a count
    // that is a moment old is all a capacity check needs).
    let used = unsafe {
        let first = (&raw const (*array).slots).cast::<PmSlot>();
        (0..(*array).total_slots as usize)
            .filter(|&i| std::ptr::read_volatile(&raw const (*first.add(i)).in_use))
            .count()
    };
    // SAFETY: as above.
    let total = unsafe { (*array).total_slots } as usize;
    Some(total.saturating_sub(used) as u32)
}

/// [`pm_free`], counting the spare processes idle or being started as
/// free too: a launch takes one, or one gives its slot up for it (see
/// `spare.rs`). A spare the dispatcher is starting in place of one just
/// taken holds a postmaster slot for a moment without being idle: left
/// out, it made a non-superuser's launch find the slots "reserved for
/// superusers" while there was room.
pub fn pm_free_or_spare() -> Option<u32> {
    pm_free().map(|free| free + crate::registry::available_spares())
}

/// The `name=value` entries `ALTER ROLE role [IN DATABASE database] SET`
/// stored for `role_oid` and each of `databases` (0: every database), in
/// that order: one opening of the catalog, one index probe each.
fn role_settings(databases: &[u32], role_oid: u32) -> Vec<Vec<String>> {
    // SAFETY: catalog scans in a backend inside a transaction, the
    // relation opened and closed here; each array is copied out before
    // its scan ends.
    unsafe {
        let rel = pg_sys::table_open(
            pg_sys::Oid::from(DB_ROLE_SETTING),
            pg_sys::AccessShareLock as pg_sys::LOCKMODE,
        );
        let found = databases
            .iter()
            .map(|&database_oid| {
                let mut keys: [pg_sys::ScanKeyData; 2] = std::mem::zeroed();
                for (key, (attno, value)) in keys
                    .iter_mut()
                    .zip([(ANUM_SETDATABASE, database_oid), (ANUM_SETROLE, role_oid)])
                {
                    pg_sys::ScanKeyInit(
                        key,
                        attno,
                        pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
                        pg_sys::Oid::from(pg_sys::F_OIDEQ),
                        pg_sys::Datum::from(value),
                    );
                }
                let scan = pg_sys::systable_beginscan(
                    rel,
                    pg_sys::Oid::from(DB_ROLE_SETTING_INDEX),
                    true,
                    std::ptr::null_mut(),
                    2,
                    keys.as_mut_ptr(),
                );
                let tuple = pg_sys::systable_getnext(scan);
                let mut out = Vec::new();
                if !tuple.is_null() {
                    let mut is_null = false;
                    let datum =
                        pg_sys::heap_getattr(tuple, ANUM_SETCONFIG, (*rel).rd_att, &mut is_null);
                    if let Some(entries) = Vec::<Option<String>>::from_datum(datum, is_null) {
                        out = entries.into_iter().flatten().collect();
                    }
                }
                pg_sys::systable_endscan(scan);
                out
            })
            .collect();
        pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        found
    }
}

/// The value of `name` among `name=value` entries.
fn setting_in<'a>(entries: &'a [String], name: &str) -> Option<&'a str> {
    entries.iter().find_map(|e| {
        let (key, value) = e.split_once('=')?;
        key.eq_ignore_ascii_case(name).then_some(value)
    })
}

/// The quota of `role_oid`'s workers (`max_workers_per_role`), `None` for
/// no limit; see [`role_limit`].
pub fn role_quota(role_oid: u32, database_oid: u32) -> Option<u32> {
    role_limit(
        gucs::MAX_WORKERS_PER_ROLE_NAME,
        gucs::max_workers_per_role(),
        role_oid,
        database_oid,
    )
}

/// The setting `name` for `role_oid`'s workers in `database_oid`, in the
/// order the server applies settings to a session: the role's own setting
/// for the database, else for every database, else the database's
/// setting, else this session's value (`session`); `None` for no limit.
/// A value is read as the server reads an integer setting (`1.0`, `0x10`
/// and the like).
fn role_limit(name: &str, session: Option<u32>, role_oid: u32, database_oid: u32) -> Option<u32> {
    let mut sources = if database_oid != 0 {
        role_settings(&[database_oid, 0], role_oid)
    } else {
        role_settings(&[0], role_oid)
    };
    if database_oid != 0 {
        sources.extend(role_settings(&[database_oid], 0));
    }
    let own = sources
        .iter()
        .find_map(|entries| setting_in(entries, name).and_then(read_int));
    let limit: i64 = own.unwrap_or_else(|| session.map_or(-1, i64::from));
    (limit >= 0).then(|| limit.min(u32::MAX as i64) as u32)
}

/// An integer setting's value as the server reads it; `None` if it does
/// not (the server would refuse it too).
fn read_int(value: &str) -> Option<i64> {
    let value = std::ffi::CString::new(value).ok()?;
    let mut out = 0i32;
    // SAFETY: the value is NUL-terminated and outlives the call; no unit
    // flags, no hint wanted.
    let ok = unsafe { pg_sys::parse_int(value.as_ptr(), &mut out, 0, std::ptr::null_mut()) };
    ok.then_some(i64::from(out))
}

/// The admission of a launch from SQL by the current user of a worker of
/// `role_oid` in `database_oid`; `queue`: it may wait in the queue.
pub fn admission(role_oid: u32, database_oid: u32, queue: bool) -> Admission {
    Admission {
        quota: role_quota(role_oid, database_oid),
        // SAFETY: a plain read of the session's user state.
        by_superuser: unsafe { pg_sys::superuser() },
        pm_free: Some(pm_free_or_spare),
        reserved: gucs::superuser_reserved_workers(),
        queue: queue.then(gucs::max_queued),
        queue_per_role: queue
            .then(|| {
                role_limit(
                    gucs::MAX_QUEUED_PER_ROLE_NAME,
                    gucs::max_queued_per_role(),
                    role_oid,
                    database_oid,
                )
            })
            .flatten(),
    }
}

/// The admission of a supervisor's child, authorised with the supervisor:
/// the role's quota as it was when the supervisor was launched (its
/// children count as its role's launches do: a supervisor is no way
/// around the quota), no queue (the supervisor tries again itself), and
/// the postmaster slots kept for superusers stay theirs unless a
/// superuser launched the supervisor.
pub fn child_admission(supervisor_by_superuser: bool, quota: Option<u32>) -> Admission {
    Admission {
        quota,
        by_superuser: supervisor_by_superuser,
        pm_free: Some(pm_free_or_spare),
        reserved: gucs::superuser_reserved_workers(),
        queue: None,
        queue_per_role: None,
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn settings_are_found_by_name() {
        let entries = vec![
            "work_mem=64MB".to_string(),
            "lightdb_bgw.max_workers_per_role=3".to_string(),
        ];
        assert_eq!(
            setting_in(&entries, "lightdb_bgw.max_workers_per_role"),
            Some("3")
        );
        assert_eq!(setting_in(&entries, "lightdb_bgw.max_queued"), None);
    }
}
