//! The `workers` view's function, `worker_list()`: one row per worker in
//! the registry, what other roles may not see set to NULL. It returns its
//! rows in materialize mode, straight into a tuplestore: no call through
//! the function manager per row, no intermediate Rust tuple and no palloc
//! per value (texts, jsonb and intervals are laid out in one reusable
//! buffer, which the tuplestore copies), since a listing is the one path
//! that touches every slot. (pgrx makes
//! value-per-call functions only, so this one is declared by hand, with
//! the same SQL pgrx would write.)

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::srf;
use crate::authz;
use crate::control::{self, Status};
use crate::error::OrReport;
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
        let mut row = Row::default();
        while listing.next_batch(|worker| {
            fill(&mut row, worker, alive, &viewer, &empty_config);
            pg_sys::tuplestore_putvalues(
                store,
                desc,
                row.datums.as_mut_ptr(),
                row.nulls.as_mut_ptr(),
            );
        }) {}
        pg_sys::Datum::from(0usize)
    }
}

/// One row of the view being made, reused from row to row: its datums
/// and nulls, and a buffer for its by-reference values, reserved for the
/// whole row before it is made so that it never moves while the datums
/// point into it.
#[derive(Debug)]
struct Row {
    datums: [pg_sys::Datum; COLUMNS],
    nulls: [bool; COLUMNS],
    /// By-reference values, each 8-byte aligned (u64 words).
    buffer: Vec<u64>,
}

impl Default for Row {
    fn default() -> Row {
        Row {
            datums: [pg_sys::Datum::from(0usize); COLUMNS],
            nulls: [true; COLUMNS],
            buffer: Vec::with_capacity(256),
        }
    }
}

/// The buffer space a by-reference value of `len` bytes may take: a
/// varlena header and the alignment.
const fn room(len: usize) -> usize {
    len + 4 + 7
}

impl Row {
    /// Starts a new row whose by-reference values need at most `bytes`.
    fn begin(&mut self, bytes: usize) {
        self.buffer.clear();
        self.buffer.reserve(bytes.div_ceil(8));
        self.nulls = [true; COLUMNS];
    }

    /// Appends `len` bytes written by `write`, 8-byte aligned, within the
    /// room reserved by `begin`; returns where they lie.
    fn append(&mut self, len: usize, write: impl FnOnce(&mut [u8])) -> pg_sys::Datum {
        let at = self.buffer.len();
        let words = len.div_ceil(8);
        // Never reallocates: the datums already made point into the buffer.
        assert!(
            at + words <= self.buffer.capacity(),
            "a workers row outgrew its buffer"
        );
        self.buffer.resize(at + words, 0);
        // SAFETY: the words just added, seen as bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(self.buffer.as_mut_ptr().add(at) as *mut u8, len)
        };
        write(bytes);
        pg_sys::Datum::from(bytes.as_ptr())
    }

    /// A `text` value.
    fn text(&mut self, value: &[u8]) -> pg_sys::Datum {
        let len = 4 + value.len();
        self.append(len, |bytes| {
            bytes[4..].copy_from_slice(value);
            // SAFETY: the header of a varlena of `len` bytes, 4-aligned.
            unsafe { pgrx::varlena::set_varsize_4b(bytes.as_mut_ptr().cast(), len as i32) };
        })
    }

    /// A whole varlena (header included), such as a jsonb's bytes.
    fn varlena(&mut self, value: &[u8]) -> pg_sys::Datum {
        self.append(value.len(), |bytes| bytes.copy_from_slice(value))
    }

    /// An `interval` of whole seconds.
    fn seconds(&mut self, secs: u32) -> pg_sys::Datum {
        let interval = pg_sys::Interval {
            time: secs as i64 * 1_000_000,
            day: 0,
            month: 0,
        };
        let size = std::mem::size_of::<pg_sys::Interval>();
        self.append(size, |bytes| {
            // SAFETY: the struct as its bytes.
            let raw =
                unsafe { std::slice::from_raw_parts((&raw const interval).cast::<u8>(), size) };
            bytes.copy_from_slice(raw);
        })
    }

    /// Sets column `column` (0-based) to `value`, or leaves it NULL.
    fn set(&mut self, column: usize, value: Option<pg_sys::Datum>) {
        if let Some(datum) = value {
            self.datums[column] = datum;
            self.nulls[column] = false;
        }
    }
}

/// Makes `row` the view's row of `r`.
fn fill(
    row: &mut Row,
    r: &Listed<'_>,
    postmaster_alive: bool,
    viewer: &authz::Viewer,
    empty_config: &[u8],
) {
    let status: Status = control::status_given(&r.lifecycle, postmaster_alive).0;
    // Other roles' workers show who, where and when, never what: anything
    // that can carry data (config, errors, run figures) is NULL for them.
    let may_see = viewer.decided(r.role_oid);
    let worker_type = r.raw_type.as_deref().unwrap_or(WORKER_TYPE).as_bytes();
    let is_sql = r.kind == Kind::Sql && may_see;
    let has_runs = is_sql && r.runs > 0;
    let has_result = is_sql && r.result_state == ResultState::Rows;
    let last_error = r
        .last_error
        .as_deref()
        .filter(|_| may_see)
        .map(str::as_bytes);
    // A static worker's config is always `{}`.
    let config = match (may_see && !r.config_missing, r.config_jsonb.is_empty()) {
        (true, true) => Some(empty_config),
        (true, false) => Some(r.config_jsonb),
        (false, _) => None,
    };
    let texts = [
        Some(r.name),
        Some(worker_type),
        Some(r.kind.name().as_bytes()),
        r.database,
        r.role,
        Some(status.name().as_bytes()),
        Some(r.start_time.name().as_bytes()),
        r.launched_by,
        last_error,
    ];
    let bytes = texts.iter().flatten().map(|t| room(t.len())).sum::<usize>()
        + config.map_or(0, |c| room(c.len()))
        + room(std::mem::size_of::<pg_sys::Interval>());
    row.begin(bytes);
    let restart_after = r.restart_after.map(|s| row.seconds(s));

    let int8 = |v: i64| Some(pg_sys::Datum::from(v));
    let when = |flag: bool, v: Option<pg_sys::Datum>| v.filter(|_| flag);
    let [name, worker_type, kind, database, role, status_name, start_time, launched_by, last_error] =
        texts;
    let mut text = |t: Option<&[u8]>| t.map(|t| row.text(t));
    let values = [
        int8(r.id),
        text(name),
        text(worker_type),
        text(kind),
        text(database),
        text(role),
        status.pid().map(pg_sys::Datum::from),
        text(status_name),
        text(start_time),
        restart_after,
        text(launched_by),
        int8(r.launched_at),
        r.started_at.map(pg_sys::Datum::from),
        r.stopped_at.map(pg_sys::Datum::from),
        Some(pg_sys::Datum::from(r.restarts)),
        r.last_exit.map(pg_sys::Datum::from),
        text(last_error),
        Some(pg_sys::Datum::from(r.is_static)),
        when(is_sql, int8(r.runs)),
        when(has_runs, int8(r.last_rows)),
        // float8 is passed by value on the 64-bit servers pgrx supports.
        when(
            has_runs,
            Some(pg_sys::Datum::from(
                (r.last_run_us as f64 / 1000.0).to_bits(),
            )),
        ),
        config.map(|c| row.varlena(c)),
        r.queue_position
            .map(|p| pg_sys::Datum::from(p.min(i32::MAX as u32) as i32)),
        when(has_result, int8(r.result_rows)),
        when(has_result, int8(r.result_bytes.min(i64::MAX as u64) as i64)),
    ];
    for (column, value) in values.into_iter().enumerate() {
        row.set(column, value);
    }
}
