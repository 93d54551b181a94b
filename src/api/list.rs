//! The `workers` view's function, `worker_list()`: one row per worker in
//! the registry, what other roles may not see set to NULL. It returns its
//! rows in materialize mode, straight into a tuplestore: no call through
//! the function manager per row, no intermediate Rust tuple, no palloc
//! per value, and each row formed in one pass from the slot's bytes (see
//! `heap_row.rs`), since a listing is the one path that touches every
//! slot. (pgrx makes
//! value-per-call functions only, so this one is declared by hand, with
//! the same SQL pgrx would write.)

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::srf;
use crate::authz;
use crate::control::{self, Status};
use crate::error::OrReport;
use crate::heap_row::{HeapRow, Value};
use crate::jsonb_text::JsonbBytes;
use crate::preload;
use crate::registry::{self, Listed, ResultState};
use crate::spec::{Kind, WORKER_TYPE};

/// The view's columns, in order (see the SQL below).
const COLUMNS: usize = 25;

extension_sql!(
    r#"
CREATE FUNCTION lightdb_bgw."worker_list"() RETURNS TABLE (
	"id" bigint,
	"name" TEXT,
	"type" TEXT,
	"kind" TEXT,
	"database" TEXT,
	"role" TEXT,
	"pid" INT,
	"status" TEXT,
	"start_time" TEXT,
	"restart_after" interval,
	"launched_by" TEXT,
	"launched_at" timestamp with time zone,
	"started_at" timestamp with time zone,
	"stopped_at" timestamp with time zone,
	"restarts" INT,
	"last_exit" INT,
	"last_error" TEXT,
	"is_static" bool,
	"runs" bigint,
	"last_run_rows" bigint,
	"last_run_ms" double precision,
	"config" jsonb,
	"queue_position" INT,
	"result_rows" bigint,
	"result_bytes" bigint
)
STRICT VOLATILE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'worker_list_wrapper';
"#,
    name = "worker_list"
);

/// Tells the server `worker_list_wrapper` uses the version-1 calling
/// convention (what `PG_FUNCTION_INFO_V1` declares in C).
#[no_mangle]
pub extern "C" fn pg_finfo_worker_list_wrapper() -> &'static pg_sys::Pg_finfo_record {
    srf::V1
}

/// Backs the `workers` view.
///
/// # Safety
/// Called by the server's function manager with a valid `fcinfo`.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn worker_list_wrapper(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    preload::require().or_report();
    // SAFETY: the caller's contract; the tuplestore and its descriptor
    // live in the query's memory, as a materialize-mode function's must.
    unsafe {
        let (store, desc) =
            srf::materialize(fcinfo, srf::Shape::Row(COLUMNS), srf::Store::Kept).or_report();
        let alive = control::postmaster_alive();
        let mut listing = registry::listing();
        // Who may see what is decided first: the rows are made under the
        // registry lock, where the catalogs are not read.
        let mut viewer = authz::Viewer::new();
        for role in listing.roles() {
            viewer.may_see(role);
        }
        let empty_config = JsonbBytes::from_json("{}").0;
        let mut row = HeapRow::new(desc);
        while listing.next_batch(|worker| {
            let mut interval = None;
            let values = values(worker, alive, &viewer, &empty_config, &mut interval);
            row.put(store, &values);
        }) {}
        pg_sys::Datum::from(0usize)
    }
}

/// An `interval` of whole seconds.
fn seconds(secs: u32) -> pg_sys::Interval {
    pg_sys::Interval {
        time: secs as i64 * 1_000_000,
        day: 0,
        month: 0,
    }
}

/// The bytes of an interval, as a by-reference value.
fn interval_bytes(interval: &pg_sys::Interval) -> &[u8] {
    // SAFETY: the struct as its bytes, borrowed as long as it.
    unsafe {
        std::slice::from_raw_parts(
            (interval as *const pg_sys::Interval).cast::<u8>(),
            std::mem::size_of::<pg_sys::Interval>(),
        )
    }
}

/// The view's row of `r`; `interval` holds its `restart_after`.
fn values<'a>(
    r: &'a Listed<'_>,
    postmaster_alive: bool,
    viewer: &authz::Viewer,
    empty_config: &'a [u8],
    interval: &'a mut Option<pg_sys::Interval>,
) -> [Value<'a>; COLUMNS] {
    let status: Status = control::status_given(&r.lifecycle, postmaster_alive).0;
    // Other roles' workers show who, where and when, never what: anything
    // that can carry data (config, errors, run figures) is NULL for them.
    let may_see = viewer.decided(r.role_oid);
    let worker_type = r.raw_type.as_deref().unwrap_or(WORKER_TYPE).as_bytes();
    let is_sql = r.kind == Kind::Sql && may_see;
    let has_runs = is_sql && r.runs > 0;
    // A failed run's result is its error: 0 rows, the bytes of its copy.
    let has_result = is_sql && r.result_state != ResultState::None;
    // A static worker's config is always `{}`.
    let config = match (may_see && !r.config_missing, r.config_jsonb.is_empty()) {
        (true, true) => Value::Varlena(empty_config),
        (true, false) => Value::Varlena(r.config_jsonb),
        (false, _) => Value::Null,
    };
    *interval = r.restart_after.map(seconds);
    let text = |t: Option<&'a [u8]>| t.map_or(Value::Null, Value::Text);
    let datum = |v: Option<pg_sys::Datum>| v.map_or(Value::Null, Value::ByValue);
    let int8 = |flag: bool, v: i64| match flag {
        true => Value::ByValue(pg_sys::Datum::from(v)),
        false => Value::Null,
    };
    [
        int8(true, r.id),
        Value::Text(r.name),
        Value::Text(worker_type),
        Value::Text(r.kind.name().as_bytes()),
        text(r.database),
        text(r.role),
        datum(status.pid().map(pg_sys::Datum::from)),
        Value::Text(status.name().as_bytes()),
        Value::Text(r.start_time.name().as_bytes()),
        interval
            .as_ref()
            .map_or(Value::Null, |i| Value::Fixed(interval_bytes(i))),
        text(r.launched_by),
        int8(true, r.launched_at),
        datum(r.started_at.map(pg_sys::Datum::from)),
        datum(r.stopped_at.map(pg_sys::Datum::from)),
        Value::ByValue(pg_sys::Datum::from(r.restarts)),
        datum(r.last_exit.map(pg_sys::Datum::from)),
        text(
            r.last_error
                .as_deref()
                .filter(|_| may_see)
                .map(str::as_bytes),
        ),
        Value::ByValue(pg_sys::Datum::from(r.is_static)),
        int8(is_sql, r.runs),
        int8(has_runs, r.last_rows),
        // float8 is passed by value on the 64-bit servers pgrx supports.
        int8(has_runs, (r.last_run_us as f64 / 1000.0).to_bits() as i64),
        config,
        datum(
            r.queue_position
                .map(|p| pg_sys::Datum::from(p.min(i32::MAX as u32) as i32)),
        ),
        int8(has_result, r.result_rows),
        int8(has_result, r.result_bytes.min(i64::MAX as u64) as i64),
    ]
}
