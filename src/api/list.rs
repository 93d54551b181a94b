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
use crate::config::KindConfig;
use crate::control::{self, Status};
use crate::error::OrReport;
use crate::jsonb_text::JsonbBytes;
use crate::preload;
use crate::registry::{self, ResultState, WorkerRecord};
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
        let (store, desc) = srf::materialize(fcinfo, srf::Shape::Row(COLUMNS)).or_report();
        let alive = control::postmaster_alive();
        let mut viewer = authz::Viewer::new();
        let empty_config = JsonbBytes::from_json("{}").0;
        let mut row = Row::default();
        let mut listing = registry::listing();
        let mut batch = Vec::new();
        while listing.next_batch(&mut batch) {
            for record in &batch {
                fill(&mut row, record, alive, &mut viewer, &empty_config);
                let (mut values, mut nulls) = row.datums();
                pg_sys::tuplestore_putvalues(store, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            }
        }
        pg_sys::Datum::from(0usize)
    }
}

/// One column's value while a row is being made: by-reference values are
/// offsets into the row's buffer until the row is complete (the buffer
/// may grow meanwhile).
#[derive(Debug, Clone, Copy)]
enum Value {
    Null,
    Direct(pg_sys::Datum),
    Buffered(usize),
}

/// One row of the view being made, reused from row to row.
#[derive(Debug)]
struct Row {
    values: [Value; COLUMNS],
    /// By-reference values, each 8-byte aligned (u64 words).
    buffer: Vec<u64>,
}

impl Default for Row {
    fn default() -> Row {
        Row {
            values: [Value::Null; COLUMNS],
            buffer: Vec::with_capacity(256),
        }
    }
}

impl Row {
    /// Appends `len` bytes written by `write`, 8-byte aligned; returns
    /// their offset.
    fn append(&mut self, len: usize, write: impl FnOnce(&mut [u8])) -> Value {
        let at = self.buffer.len();
        self.buffer.resize(at + len.div_ceil(8), 0);
        // SAFETY: the words just added, seen as bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(self.buffer.as_mut_ptr().add(at) as *mut u8, len)
        };
        write(bytes);
        Value::Buffered(at)
    }

    /// A `text` value.
    fn text(&mut self, value: &str) -> Value {
        let len = 4 + value.len();
        self.append(len, |bytes| {
            bytes[4..].copy_from_slice(value.as_bytes());
            // SAFETY: the header of a varlena of `len` bytes, 4-aligned.
            unsafe { pgrx::varlena::set_varsize_4b(bytes.as_mut_ptr().cast(), len as i32) };
        })
    }

    /// A whole varlena (header included), such as a jsonb's bytes.
    fn varlena(&mut self, value: &[u8]) -> Value {
        self.append(value.len(), |bytes| bytes.copy_from_slice(value))
    }

    /// An `interval` of whole seconds.
    fn seconds(&mut self, secs: u32) -> Value {
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

    /// The datums and nulls of the complete row, pointing into the buffer.
    fn datums(&mut self) -> ([pg_sys::Datum; COLUMNS], [bool; COLUMNS]) {
        let base = self.buffer.as_ptr();
        let mut datums = [pg_sys::Datum::from(0usize); COLUMNS];
        let mut nulls = [false; COLUMNS];
        for (i, value) in self.values.iter().enumerate() {
            match *value {
                Value::Null => nulls[i] = true,
                Value::Direct(datum) => datums[i] = datum,
                // SAFETY: an offset inside the buffer, which is not touched
                // again until the tuplestore has copied the row.
                Value::Buffered(at) => datums[i] = pg_sys::Datum::from(unsafe { base.add(at) }),
            }
        }
        (datums, nulls)
    }
}

/// Makes `row` the view's row of `r`.
fn fill(
    row: &mut Row,
    r: &WorkerRecord,
    postmaster_alive: bool,
    viewer: &mut authz::Viewer,
    empty_config: &[u8],
) {
    row.buffer.clear();
    let status: Status = control::status_given(r, postmaster_alive).0;
    // Other roles' workers show who, where and when, never what: anything
    // that can carry data (config, errors, run figures) is NULL for them.
    let may_see = viewer.may_see(r.role_oid);
    let worker_type = match &r.def.config {
        KindConfig::Raw { worker_type, .. } => worker_type.as_str(),
        _ => WORKER_TYPE,
    };
    let is_sql = r.def.kind == Kind::Sql && may_see;
    let has_runs = is_sql && r.runs > 0;
    let has_result = is_sql && r.result_state == ResultState::Rows;
    let by_value = |d: Option<pg_sys::Datum>| d.map_or(Value::Null, Value::Direct);
    let int8 = |v: i64| Value::Direct(pg_sys::Datum::from(v));
    let when = |flag: bool, v: Value| if flag { v } else { Value::Null };
    let values = [
        int8(r.id),
        row.text(&r.def.name),
        row.text(worker_type),
        row.text(r.def.kind.name()),
        r.def
            .database
            .as_deref()
            .map_or(Value::Null, |d| row.text(d)),
        r.def.role.as_deref().map_or(Value::Null, |d| row.text(d)),
        by_value(status.pid().map(pg_sys::Datum::from)),
        row.text(status.name()),
        row.text(r.def.start_time.name()),
        r.def.restart_after.map_or(Value::Null, |s| row.seconds(s)),
        r.launched_by
            .as_deref()
            .map_or(Value::Null, |d| row.text(d)),
        int8(r.launched_at),
        by_value(r.started_at.map(pg_sys::Datum::from)),
        by_value(r.stopped_at.map(pg_sys::Datum::from)),
        Value::Direct(pg_sys::Datum::from(r.restarts)),
        by_value(r.last_exit.map(pg_sys::Datum::from)),
        match r.last_error.as_deref() {
            Some(e) if may_see => row.text(e),
            _ => Value::Null,
        },
        Value::Direct(pg_sys::Datum::from(r.is_static)),
        when(is_sql, int8(r.runs)),
        when(has_runs, int8(r.last_rows)),
        // float8 is passed by value on the 64-bit servers pgrx supports.
        when(
            has_runs,
            Value::Direct(pg_sys::Datum::from(
                (r.last_run_us as f64 / 1000.0).to_bits(),
            )),
        ),
        match (may_see && !r.config_missing, r.config_jsonb.is_empty()) {
            // A static worker's config is always `{}`.
            (true, true) => row.varlena(empty_config),
            (true, false) => row.varlena(&r.config_jsonb),
            (false, _) => Value::Null,
        },
        by_value(
            r.queue_position
                .map(|p| pg_sys::Datum::from(p.min(i32::MAX as u32) as i32)),
        ),
        when(has_result, int8(r.result_rows)),
        when(has_result, int8(r.result_bytes.min(i64::MAX as u64) as i64)),
    ];
    row.values = values;
}
