//! Settings of capacity (the launch queue's bound, the per-role quota,
//! the superuser reserve, the spare processes) and of results (their size
//! limits, in all and per role, and how long they are kept). All can
//! change at reload or per role; none needs the library preloaded to
//! exist.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

pub static MAX_QUEUED: GucSetting<i32> = GucSetting::<i32>::new(1000);
/// -1: no limit.
pub static MAX_WORKERS_PER_ROLE: GucSetting<i32> = GucSetting::<i32>::new(-1);
/// -1: no limit but `MAX_QUEUED`.
pub static MAX_QUEUED_PER_ROLE: GucSetting<i32> = GucSetting::<i32>::new(-1);
pub static SUPERUSER_RESERVED_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(1);
pub static SPARE_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(0);

/// kB.
pub static MAX_RESULT_SIZE_KB: GucSetting<i32> = GucSetting::<i32>::new(32 * 1024);
/// kB.
pub static MAX_RESULT_MEMORY_KB: GucSetting<i32> = GucSetting::<i32>::new(96 * 1024);
/// kB; -1: no bound but `MAX_RESULT_MEMORY_KB`.
pub static MAX_RESULT_MEMORY_PER_ROLE_KB: GucSetting<i32> = GucSetting::<i32>::new(-1);
/// Seconds; 0: kept until forgotten or the slot is reused.
pub static RESULT_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(86_400);

/// The names of the per-role limits, as `ALTER ROLE ... SET` stores them.
pub const MAX_WORKERS_PER_ROLE_NAME: &str = "lightdb_bgw.max_workers_per_role";
pub const MAX_QUEUED_PER_ROLE_NAME: &str = "lightdb_bgw.max_queued_per_role";

/// Defines the settings of this file.
pub(super) fn define() {
    define_capacity();
    define_results();
}

/// The launch queue's bound, the per-role quota and the superuser reserve.
fn define_capacity() {
    GucRegistry::define_int_guc(
        c"lightdb_bgw.max_queued",
        c"How many launches may wait in the launch queue.",
        c"A queueing launch beyond it is refused with SQLSTATE 53400.",
        &MAX_QUEUED,
        0,
        1_000_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"lightdb_bgw.max_workers_per_role",
        c"How many dynamic workers of one role may be registered at once; -1: no limit.",
        c"Read for the worker's role (ALTER ROLE ... SET) at launch; over it a launch gets SQLSTATE 53000 or waits in the queue.",
        &MAX_WORKERS_PER_ROLE,
        -1,
        1_000_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"lightdb_bgw.max_queued_per_role",
        c"How many workers of one role may wait in the launch queue; -1: no limit but lightdb_bgw.max_queued.",
        c"Read for the worker's role (ALTER ROLE ... SET) at launch; a queueing launch beyond it gets SQLSTATE 53400.",
        &MAX_QUEUED_PER_ROLE,
        -1,
        1_000_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"lightdb_bgw.superuser_reserved_workers",
        c"Background worker slots (max_worker_processes) only superusers' launches may take.",
        c"As superuser_reserved_connections does for connections.",
        &SUPERUSER_RESERVED_WORKERS,
        0,
        262_143,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"lightdb_bgw.spare_workers",
        c"How many worker processes the dispatcher keeps started and idle, for launches to take without waiting for a new process.",
        c"Each holds one max_worker_processes slot while idle; none is kept while launches are queued.",
        &SPARE_WORKERS,
        0,
        crate::registry::MAX_SPARES as i32,
        GucContext::Sighup,
        GucFlags::default(),
    );
}

/// The limits of `sql` runs' results.
fn define_results() {
    GucRegistry::define_int_guc(
        c"lightdb_bgw.max_result_size",
        c"Largest result one run of a sql worker may keep.",
        c"A run whose result is larger fails with SQLSTATE 54000.",
        &MAX_RESULT_SIZE_KB,
        0,
        1024 * 1024,
        GucContext::Suset,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_int_guc(
        c"lightdb_bgw.max_result_memory",
        c"Shared memory all kept results may take together.",
        c"A run whose result would pass it fails with SQLSTATE 54000; bounded by lightdb_bgw.max_text_memory.",
        &MAX_RESULT_MEMORY_KB,
        0,
        i32::MAX / 2,
        GucContext::Sighup,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_int_guc(
        c"lightdb_bgw.max_result_memory_per_role",
        c"Shared memory the kept results of one role's workers may take together; -1: no bound but lightdb_bgw.max_result_memory.",
        c"Read for the worker's role (ALTER ROLE ... SET) as each run stores its result; a run whose result would pass it fails with SQLSTATE 54000.",
        &MAX_RESULT_MEMORY_PER_ROLE_KB,
        -1,
        i32::MAX / 2,
        GucContext::Suset,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_int_guc(
        c"lightdb_bgw.result_retention",
        c"How long a run's result is kept after the run; 0: until forget() or the slot is reused.",
        c"Older results are freed and read as none.",
        &RESULT_RETENTION_S,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
}

pub fn max_result_size() -> usize {
    MAX_RESULT_SIZE_KB.get().max(0) as usize * 1024
}

pub fn max_result_memory() -> u64 {
    MAX_RESULT_MEMORY_KB.get().max(0) as u64 * 1024
}

/// The bound on one role's kept results in this session's settings (a
/// worker's: its role's), `None` for none.
pub fn max_result_memory_per_role() -> Option<u64> {
    let kb = MAX_RESULT_MEMORY_PER_ROLE_KB.get();
    (kb >= 0).then(|| kb as u64 * 1024)
}

/// `None`: kept until forgotten or the slot is reused.
pub fn result_retention() -> Option<std::time::Duration> {
    let secs = RESULT_RETENTION_S.get();
    (secs > 0).then(|| std::time::Duration::from_secs(secs as u64))
}

pub fn max_queued() -> u32 {
    MAX_QUEUED.get().max(0) as u32
}

/// The quota in this session's settings, `None` for no limit.
pub fn max_workers_per_role() -> Option<u32> {
    let limit = MAX_WORKERS_PER_ROLE.get();
    (limit >= 0).then_some(limit as u32)
}

/// The per-role bound of the queue in this session's settings, `None`
/// for none.
pub fn max_queued_per_role() -> Option<u32> {
    let limit = MAX_QUEUED_PER_ROLE.get();
    (limit >= 0).then_some(limit as u32)
}

pub fn spare_workers() -> u32 {
    SPARE_WORKERS.get().max(0) as u32
}

pub fn superuser_reserved_workers() -> u32 {
    SUPERUSER_RESERVED_WORKERS.get().max(0) as u32
}
