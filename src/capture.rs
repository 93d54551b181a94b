//! Running a SQL text statement by statement through SPI, inside the
//! current transaction, each statement under an optional time limit, and
//! keeping the rows of the last statement that returned rows: each row a
//! jsonb object (column names as keys) made by the server's own
//! `to_jsonb`, framed as `rows.rs` lays them out, within a size limit.
//! A runtime helper of the `sql` kind; it knows no kind.

use std::ffi::{c_int, CString};
use std::time::Duration;

use pgrx::pg_sys;

use crate::error::BgwError;
use crate::rows;

extern "C-unwind" {
    // utils/timeout.h, which the bindings leave out.
    fn enable_timeout_after(id: c_int, delay_ms: c_int);
    fn disable_timeout(id: c_int, keep_indicator: bool);
}

/// `STATEMENT_TIMEOUT` of `TimeoutId` (timeout.h; the same from
/// PostgreSQL 13 to 18). Background workers have its handler from
/// `InitPostgres`, which reports 57014 when it fires.
const STATEMENT_TIMEOUT: c_int = 3;

/// What a run of a text produced.
#[derive(Debug, Default)]
pub struct Ran {
    /// Rows the last statement processed.
    pub processed: i64,
    /// Whether any statement returned rows.
    pub returned: bool,
    /// The rows of the last statement that returned rows, framed.
    pub framed: Vec<u8>,
    /// How many rows `framed` holds.
    pub rows: i64,
}

/// Limits of one run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Each statement's time limit.
    pub timeout: Option<Duration>,
    /// The most bytes the kept rows may take (`lightdb_bgw.max_result_size`).
    pub max_result: usize,
}

/// The statements of `sql`, as the server's parser splits them.
fn statements(sql: &str) -> Vec<String> {
    let text = CString::new(sql).unwrap_or_default();
    // SAFETY: the raw parser reads a NUL-terminated string and returns a
    // List of RawStmt in the current memory context (or raises a syntax
    // error); locations are byte offsets into the text.
    unsafe {
        #[cfg(not(feature = "pg13"))]
        let list = pg_sys::raw_parser(text.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        #[cfg(feature = "pg13")]
        let list = pg_sys::raw_parser(text.as_ptr());
        if list.is_null() {
            return Vec::new();
        }
        (0..(*list).length as usize)
            .map(|i| {
                let raw = (*(*list).elements.add(i)).ptr_value as *const pg_sys::RawStmt;
                let start = ((*raw).stmt_location.max(0) as usize).min(sql.len());
                let end = match (*raw).stmt_len {
                    0 => sql.len(),
                    len => (start + len as usize).min(sql.len()),
                };
                sql.get(start..end).unwrap_or("").to_string()
            })
            .collect()
    }
}

/// Turns the rows of a statement into jsonb, with the server's `to_jsonb`
/// told that its argument is a record.
struct ToJsonb {
    flinfo: pg_sys::FmgrInfo,
}

impl ToJsonb {
    fn new() -> ToJsonb {
        // SAFETY: looks up a built-in function and builds the expression
        // node `to_jsonb` reads its argument's type from, in the current
        // memory context (the run's); FmgrInfo is plain data.
        unsafe {
            let mut flinfo: pg_sys::FmgrInfo = std::mem::zeroed();
            pg_sys::fmgr_info(pg_sys::Oid::from(pg_sys::F_TO_JSONB), &mut flinfo);
            let arg = pg_sys::makeNullConst(pg_sys::RECORDOID, -1, pg_sys::InvalidOid);
            let args = pg_sys::lappend(std::ptr::null_mut(), arg.cast());
            let expr = pg_sys::makeFuncExpr(
                pg_sys::Oid::from(pg_sys::F_TO_JSONB),
                pg_sys::JSONBOID,
                args,
                pg_sys::InvalidOid,
                pg_sys::InvalidOid,
                pg_sys::CoercionForm::COERCE_EXPLICIT_CALL,
            );
            flinfo.fn_expr = expr.cast();
            ToJsonb { flinfo }
        }
    }

    /// Frames every row of SPI's last result into `out`, raising 54000
    /// when they pass `max` bytes.
    fn frame_all(&mut self, out: &mut Vec<u8>, max: usize) -> i64 {
        // SAFETY: SPI's tuple table of the statement just run, valid until
        // it is freed; each row is made into a composite datum and then
        // jsonb in a scratch context that is reset after every row.
        unsafe {
            let table = pg_sys::SPI_tuptable;
            if table.is_null() {
                return 0;
            }
            let count = pg_sys::SPI_processed as usize;
            let desc = pg_sys::BlessTupleDesc((*table).tupdesc);
            let scratch = pg_sys::AllocSetContextCreateExtended(
                pg_sys::CurrentMemoryContext,
                c"lightdb_bgw result row".as_ptr(),
                pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
            );
            for i in 0..count {
                let tuple = *(*table).vals.add(i);
                let old = pg_sys::MemoryContextSwitchTo(scratch);
                let record = pg_sys::heap_copy_tuple_as_datum(tuple, desc);
                let jsonb = pg_sys::FunctionCall1Coll(&mut self.flinfo, pg_sys::InvalidOid, record);
                let ptr = jsonb.cast_mut_ptr::<pg_sys::varlena>();
                let bytes =
                    std::slice::from_raw_parts(ptr as *const u8, pgrx::varlena::varsize_any(ptr));
                if out.len() + rows::framed_len(bytes) > max {
                    pg_sys::MemoryContextSwitchTo(old);
                    too_large(max);
                }
                rows::frame(out, bytes);
                pg_sys::MemoryContextSwitchTo(old);
                pg_sys::MemoryContextReset(scratch);
                if i % 1024 == 1023 {
                    pg_sys::check_for_interrupts!();
                }
            }
            pg_sys::MemoryContextDelete(scratch);
            count as i64
        }
    }
}

fn too_large(max: usize) -> ! {
    BgwError::SizeLimit {
        message: format!("the result of this run is larger than {max} bytes"),
        setting: "lightdb_bgw.max_result_size",
    }
    .report()
}

/// Runs `sql` in the current transaction, statement by statement; raises
/// the first error (the caller's transaction is then aborted).
pub fn run_text(sql: &str, read_only: bool, limits: Limits) -> Ran {
    let mut ran = Ran::default();
    let statements = statements(sql);
    let timeout_ms = limits
        .timeout
        .map(|t| crate::runtime::wait_millis(t).clamp(1, i32::MAX as std::ffi::c_long) as c_int);
    // SAFETY: inside a transaction with a snapshot; SPI's state is cleaned
    // up by the transaction's abort if anything below raises.
    unsafe {
        pg_sys::SPI_connect();
        let mut to_jsonb = ToJsonb::new();
        for statement in &statements {
            let text = CString::new(statement.as_str()).unwrap_or_default();
            if let Some(ms) = timeout_ms {
                enable_timeout_after(STATEMENT_TIMEOUT, ms);
            }
            let rc = pg_sys::SPI_execute(text.as_ptr(), read_only, 0);
            if timeout_ms.is_some() {
                disable_timeout(STATEMENT_TIMEOUT, false);
            }
            if rc < 0 {
                BgwError::WrongState {
                    message: format!("the statement cannot run in a background worker (SPI code {rc})"),
                    hint: Some("Transaction control (COMMIT, ROLLBACK) is not allowed in a sql worker's text.".into()),
                }
                .report();
            }
            ran.processed = pg_sys::SPI_processed as i64;
            if !pg_sys::SPI_tuptable.is_null() {
                ran.returned = true;
                ran.framed.clear();
                ran.rows = to_jsonb.frame_all(&mut ran.framed, limits.max_result);
                pg_sys::SPI_freetuptable(pg_sys::SPI_tuptable);
            }
        }
        pg_sys::SPI_finish();
    }
    ran
}

/// Turns a statement time limit off after a run that raised while it was
/// on (a run that ends normally turns it off itself).
pub fn timeout_off() {
    // SAFETY: disabling a timeout that is not active is a no-op.
    unsafe { disable_timeout(STATEMENT_TIMEOUT, false) };
}
