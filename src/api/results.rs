//! Background SQL with results, as SQL functions: `run`, `result` (and its
//! typed form, in SQL over this one), `forget`, `cancel` and
//! `result_memory`.

use pgrx::prelude::*;

use super::required;
use crate::control;
use crate::error::OrReport;
use crate::jsonb_text::JsonbBytes;
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

/// Waits until the worker's run has ended, then returns the rows of its
/// last statement that returned rows, one jsonb object a row; a failed
/// run's error is raised again.
#[pg_extern(volatile, parallel_restricted)]
fn result(
    id: Option<i64>,
    timeout: default!(Option<Interval>, "NULL"),
) -> SetOfIterator<'static, JsonbBytes> {
    let id = required(id, "id").or_report();
    let timeout = super::timeout(timeout).or_report();
    let framed = control::result(id, timeout).or_report();
    let rows: Vec<JsonbBytes> = rows::unframe(&framed)
        .map(|row| JsonbBytes(row.to_vec()))
        .collect();
    SetOfIterator::new(rows)
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
AS $$ SELECT jsonb_populate_record(rowtype, r) FROM lightdb_bgw.result(id, timeout) AS r $$;
COMMENT ON FUNCTION lightdb_bgw.result(bigint, anyelement, interval) IS
  'The rows of a run''s result typed as rowtype, as jsonb_populate_record makes them';
"#,
    name = "typed_result",
    requires = [result]
);
