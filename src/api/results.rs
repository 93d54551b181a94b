//! Background SQL with results, as SQL functions: `run`, `result` (and its
//! typed form, in SQL over this one), `forget`, `cancel` and
//! `result_memory`.

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::{required, srf};
use crate::control;
use crate::error::OrReport;
use crate::rows;

/// Runs one SQL text (one or more statements) once in a new `sql` worker
/// and returns its id at once; read what it returned with `result(id)`.
#[pg_extern(volatile, parallel_unsafe)]
fn run(
    sql: Option<&str>,
    database: default!(Option<&str>, "current_database()"),
    role: default!(Option<&str>, "current_user"),
    timeout: default!(Option<Interval>, "NULL"),
    queue: default!(Option<bool>, "false"),
) -> i64 {
    let sql = required(sql, "sql").or_report().to_string();
    let role = required(role, "role").or_report().to_string();
    let queue = required(queue, "queue").or_report();
    control::run(
        sql,
        database.map(str::to_string),
        Some(role),
        timeout.map(|t| t.to_string()),
        queue,
    )
    .or_report()
}

extension_sql!(
    r#"
CREATE FUNCTION lightdb_bgw."result"(
	"id" bigint,
	"timeout" interval DEFAULT NULL
) RETURNS SETOF jsonb
VOLATILE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'result_wrapper';
"#,
    name = "result"
);

/// Tells the server `result_wrapper` uses the version-1 calling convention.
#[no_mangle]
pub extern "C" fn pg_finfo_result_wrapper() -> &'static pg_sys::Pg_finfo_record {
    srf::V1
}

/// `result(id, timeout)`: waits until the worker's run has ended, then
/// returns the rows of its last statement that returned rows, one jsonb
/// object a row; a failed run's error is raised again. In materialize
/// mode: the rows go from one aligned copy of the result straight into
/// the tuplestore, each jsonb read where it lies.
///
/// # Safety
/// Called by the server's function manager with a valid `fcinfo`.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn result_wrapper(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: the caller's contract: two arguments, bigint and interval.
    let (id, timeout) = unsafe {
        (
            pgrx::pg_getarg::<i64>(fcinfo, 0),
            pgrx::pg_getarg::<Interval>(fcinfo, 1),
        )
    };
    let id = required(id, "id").or_report();
    let timeout = super::timeout(timeout).or_report();
    let block = control::result(id, timeout).or_report();
    // SAFETY: the call's own fcinfo; each row is a whole jsonb varlena,
    // 8-aligned in `block`, which lives until the tuplestore has copied it.
    unsafe {
        let shape = srf::Shape::Scalar(pg_sys::JSONBOID);
        // The whole result is in this process's memory already (`block`):
        // its rows stay in memory, not spilled to a temporary file at
        // work_mem. A row takes about twice its framed size there.
        let in_memory = block.bytes().len().saturating_mul(2);
        let (store, desc) =
            srf::materialize(fcinfo, shape, srf::Store::Query { in_memory }).or_report();
        let mut null = false;
        for row in rows::unframe(block.bytes()) {
            let mut datum = pg_sys::Datum::from(row.as_ptr());
            pg_sys::tuplestore_putvalues(store, desc, &raw mut datum, &raw mut null);
        }
    }
    pg_sys::Datum::from(0usize)
}

/// Drops a stopped worker's result and history entry; false if there was
/// nothing to drop.
#[pg_extern(volatile, parallel_unsafe)]
fn forget(id: Option<i64>) -> bool {
    let id = required(id, "id").or_report();
    control::forget(id).or_report()
}

/// Cancels the statement the worker is running, as `pg_cancel_backend`;
/// true if the worker was running and was signalled.
#[pg_extern(volatile, parallel_unsafe)]
fn cancel(id: Option<i64>) -> bool {
    let id = required(id, "id").or_report();
    control::cancel(id).or_report()
}

/// Bytes of shared memory the kept results take now.
#[pg_extern(volatile, parallel_safe)]
fn result_memory() -> i64 {
    control::result_memory().or_report()
}

extension_sql!(
    r#"
CREATE FUNCTION lightdb_bgw.result(id bigint, rowtype anyelement, timeout interval DEFAULT NULL)
RETURNS SETOF anyelement
LANGUAGE sql VOLATILE PARALLEL RESTRICTED
AS $$ SELECT pg_catalog.jsonb_populate_record(rowtype, r) FROM lightdb_bgw.result(id, timeout) AS r $$;
COMMENT ON FUNCTION lightdb_bgw.result(bigint, anyelement, interval) IS
  'The rows of a run''s result typed as rowtype, as jsonb_populate_record makes them';
"#,
    name = "typed_result",
    requires = ["result"]
);
