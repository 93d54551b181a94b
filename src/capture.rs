//! Running a SQL text statement by statement through SPI, inside the
//! current transaction, each statement under the shorter of the `timeout`
//! key and the session's `statement_timeout` (if either is set), and
//! keeping the rows of the last statement that returned rows: each row a
//! jsonb object (column names as keys, as `to_jsonb` of the row makes
//! it; see `row_jsonb.rs`) made as the executor sends it (a
//! `DestReceiver` of ours, not SPI's table of every row first), framed as
//! `rows.rs` lays them out, within a size limit.
//! A runtime helper of the `sql` kind; it knows no kind.

use std::ffi::{c_int, CString};
use std::time::Duration;

use pgrx::pg_sys;

use crate::error::BgwError;
use crate::row_jsonb::RowJsonb;
use crate::statements::statements;

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

/// About what making a row takes in the scratch memory beyond its jsonb's
/// size, and how much the rows may take there before it is reset.
const SCRATCH_PER_ROW: usize = 2048;
const SCRATCH_MAX: usize = 64 << 10;

/// A scratch memory context for the rows being made, in the current one.
fn scratch_context() -> pg_sys::MemoryContext {
    // SAFETY: a child of the current context, deleted with it (the run's)
    // if not before.
    unsafe {
        pg_sys::AllocSetContextCreateExtended(
            pg_sys::CurrentMemoryContext,
            c"lightdb_bgw result row".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        )
    }
}

fn too_large(max: usize) -> ! {
    BgwError::SizeLimit {
        message: format!("the result of this run is larger than {max} bytes"),
        setting: "lightdb_bgw.max_result_size",
    }
    .report()
}

/// The rows of the last statement that returned rows, kept as they come.
struct Kept {
    /// How the current statement's rows become jsonb.
    plan: Option<RowJsonb>,
    /// Memory for the rows being made, reset every so often.
    scratch: pg_sys::MemoryContext,
    /// About how much of it the rows since its last reset took.
    scratch_used: usize,
    framed: Vec<u8>,
    rows: i64,
    returned: bool,
    max: usize,
    /// The statement running is the text's last: none can replace its rows.
    last: bool,
    /// The statement running returned more than `max` bytes of rows: they
    /// are dropped, and the run fails unless a later statement's replace
    /// them.
    over: bool,
}

impl Kept {
    /// A statement that returns rows of `typeinfo` starts: its rows
    /// replace those kept before.
    ///
    /// # Safety
    /// `typeinfo` is the statement's valid row type.
    unsafe fn start(&mut self, typeinfo: pg_sys::TupleDesc) {
        // SAFETY: the caller's contract; the copy and the plan live in the
        // statement's memory context, as long as its rows come.
        self.plan = Some(unsafe { RowJsonb::new(pg_sys::CreateTupleDescCopy(typeinfo)) });
        self.framed.clear();
        self.rows = 0;
        self.returned = true;
        self.over = false;
    }

    /// The statement has sent its rows: its plan goes with its memory.
    fn end(&mut self) {
        self.plan = None;
    }

    /// One row of the statement, as its values, framed as one jsonb
    /// object. Past the limit, the statement's rows are dropped: the text's
    /// last statement raises 54000 at once; an earlier one goes on, and the
    /// run fails at its end unless a later statement returns rows (only the
    /// last row-returning statement's rows are kept).
    ///
    /// # Safety
    /// The values are valid datums of the row type given to `start`.
    unsafe fn add(&mut self, values: &[pg_sys::Datum], nulls: &[bool]) {
        let Some(plan) = self.plan.as_mut().filter(|_| !self.over) else {
            return;
        };
        let before = self.framed.len();
        // SAFETY: the caller's contract; what the row needs on the way
        // lives in the scratch context until it is reset below.
        unsafe {
            let old = pg_sys::MemoryContextSwitchTo(self.scratch);
            let within = plan.frame(values, nulls, &mut self.framed, self.max);
            pg_sys::MemoryContextSwitchTo(old);
            if !within || self.framed.len() > self.max {
                if self.last {
                    self.framed.truncate(before);
                    too_large(self.max);
                }
                self.over = true;
                self.framed = Vec::new();
                self.rows = 0;
                return;
            }
            // What the rows left in the scratch memory goes every so many
            // rows or bytes, not after each.
            self.scratch_used += self.framed.len() - before + SCRATCH_PER_ROW;
            if self.scratch_used > SCRATCH_MAX {
                pg_sys::MemoryContextReset(self.scratch);
                self.scratch_used = 0;
            }
        }
        self.rows += 1;
        if self.rows % 1024 == 0 {
            pg_sys::check_for_interrupts!();
        }
    }
}

/// A `DestReceiver` that keeps each row as the executor sends it, without
/// SPI's table of all of them first (PostgreSQL 14 and later).
#[cfg(not(feature = "pg13"))]
mod receiver {
    use pgrx::pg_sys;
    use pgrx::prelude::*;

    use super::Kept;

    #[repr(C)]
    pub(super) struct Receiver {
        base: pg_sys::DestReceiver,
        kept: *mut Kept,
    }

    impl Receiver {
        pub(super) fn new(kept: &mut Kept) -> Receiver {
            Receiver {
                base: pg_sys::DestReceiver {
                    receiveSlot: Some(receive_slot),
                    rStartup: Some(startup),
                    rShutdown: Some(shutdown),
                    rDestroy: Some(nothing),
                    // As PL/pgSQL's own receivers: not DestSPI (SPI would look for
                    // its table of rows) nor DestNone (SPI would take the rows for
                    // discarded).
                    mydest: pg_sys::CommandDest::DestTuplestore,
                },
                kept,
            }
        }

        pub(super) fn dest(&mut self) -> *mut pg_sys::DestReceiver {
            &mut self.base
        }
    }

    /// # Safety
    /// `me` is a [`Receiver`] whose `kept` outlives the statement.
    unsafe fn kept<'a>(me: *mut pg_sys::DestReceiver) -> &'a mut Kept {
        // SAFETY: the caller's contract; `base` is the first field.
        unsafe { &mut *(*me.cast::<Receiver>()).kept }
    }

    #[pg_guard]
    unsafe extern "C-unwind" fn startup(
        me: *mut pg_sys::DestReceiver,
        _operation: std::ffi::c_int,
        typeinfo: pg_sys::TupleDesc,
    ) {
        // SAFETY: the executor passes our receiver and its row type.
        unsafe { kept(me).start(typeinfo) };
    }

    #[pg_guard]
    unsafe extern "C-unwind" fn receive_slot(
        slot: *mut pg_sys::TupleTableSlot,
        me: *mut pg_sys::DestReceiver,
    ) -> bool {
        // SAFETY: the executor passes a valid slot of the row type given
        // to `startup`; once all its attributes are read, `tts_values` and
        // `tts_isnull` hold one each.
        unsafe {
            let natts = (*(*slot).tts_tupleDescriptor).natts;
            if i32::from((*slot).tts_nvalid) < natts {
                pg_sys::slot_getsomeattrs_int(slot, natts);
            }
            let (values, nulls): (&[pg_sys::Datum], &[bool]) = match natts as usize {
                0 => (&[], &[]),
                n => (
                    std::slice::from_raw_parts((*slot).tts_values, n),
                    std::slice::from_raw_parts((*slot).tts_isnull, n),
                ),
            };
            kept(me).add(values, nulls);
        }
        true
    }

    #[pg_guard]
    unsafe extern "C-unwind" fn shutdown(me: *mut pg_sys::DestReceiver) {
        // SAFETY: the executor passes our receiver.
        unsafe { kept(me).end() };
    }

    #[pg_guard]
    unsafe extern "C-unwind" fn nothing(_me: *mut pg_sys::DestReceiver) {}
}

/// Runs one statement; its rows, if it returns any, go to `kept`.
/// Returns SPI's code.
///
/// # Safety
/// Inside a transaction with a snapshot, SPI connected.
unsafe fn execute(text: &CString, read_only: bool, kept: &mut Kept) -> c_int {
    #[cfg(not(feature = "pg13"))]
    // SAFETY: the caller's contract; the receiver and `kept` outlive the
    // statement.
    unsafe {
        let mut receiver = receiver::Receiver::new(kept);
        let options = pg_sys::SPIExecuteOptions {
            read_only,
            dest: receiver.dest(),
            ..Default::default()
        };
        pg_sys::SPI_execute_extended(text.as_ptr(), &options)
    }
    #[cfg(feature = "pg13")]
    // SAFETY: the caller's contract; SPI's table is valid until freed.
    unsafe {
        let rc = pg_sys::SPI_execute(text.as_ptr(), read_only, 0);
        let table = pg_sys::SPI_tuptable;
        if !table.is_null() {
            let desc = (*table).tupdesc;
            kept.start(desc);
            let natts = (*desc).natts as usize;
            let mut values = vec![pg_sys::Datum::from(0usize); natts];
            let mut nulls = vec![false; natts];
            for i in 0..pg_sys::SPI_processed as usize {
                let tuple = *(*table).vals.add(i);
                pg_sys::heap_deform_tuple(tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
                kept.add(&values, &nulls);
            }
            kept.end();
            pg_sys::SPI_freetuptable(table);
        }
        rc
    }
}

/// Runs `sql` in the current transaction, statement by statement; raises
/// the first error (the caller's transaction is then aborted).
pub fn run_text(sql: &str, read_only: bool, limits: Limits) -> Ran {
    let statements = statements(sql);
    let timeout_ms = limits
        .timeout
        .map(|t| crate::runtime::wait_millis(t).clamp(1, i32::MAX as std::ffi::c_long) as c_int);
    let mut processed = 0;
    // SAFETY: inside a transaction with a snapshot; SPI's state is cleaned
    // up by the transaction's abort if anything below raises.
    unsafe {
        pg_sys::SPI_connect();
        let mut kept = Kept {
            plan: None,
            scratch: scratch_context(),
            scratch_used: 0,
            framed: Vec::new(),
            rows: 0,
            returned: false,
            max: limits.max_result,
            last: false,
            over: false,
        };
        for (i, text) in statements.iter().enumerate() {
            kept.last = i + 1 == statements.len();
            // The `timeout` key and the session's statement_timeout (the
            // role's, or one the text SET) both hold: the shorter wins.
            let session = (pg_sys::StatementTimeout > 0).then_some(pg_sys::StatementTimeout);
            let limit = timeout_ms.into_iter().chain(session).min();
            if let Some(ms) = limit {
                enable_timeout_after(STATEMENT_TIMEOUT, ms);
            }
            let rc = execute(text, read_only, &mut kept);
            if limit.is_some() {
                disable_timeout(STATEMENT_TIMEOUT, false);
            }
            if rc < 0 {
                not_here(rc).report();
            }
            processed = pg_sys::SPI_processed as i64;
        }
        if kept.over {
            too_large(kept.max);
        }
        pg_sys::MemoryContextDelete(kept.scratch);
        pg_sys::SPI_finish();
        Ran {
            processed,
            returned: kept.returned,
            framed: kept.framed,
            rows: kept.rows,
        }
    }
}

/// Why a statement SPI refused (return code `rc`) cannot run in a worker.
fn not_here(rc: c_int) -> BgwError {
    let (what, hint) = match rc {
        pg_sys::SPI_ERROR_COPY => (
            "COPY to or from the client",
            "A worker has no client: COPY to or from a file or a program, or return the rows with a query.",
        ),
        pg_sys::SPI_ERROR_TRANSACTION => (
            "transaction control",
            "Transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT) is not allowed in a sql worker's text: a run is one transaction.",
        ),
        _ => (
            "the statement",
            "Transaction control and COPY to or from the client are not allowed in a sql worker's text.",
        ),
    };
    BgwError::WrongState {
        message: format!("{what} cannot run in a background worker (SPI code {rc})"),
        hint: Some(hint.into()),
    }
}

/// Turns a statement time limit off after a run that raised while it was
/// on (a run that ends normally turns it off itself).
pub fn timeout_off() {
    // SAFETY: disabling a timeout that is not active is a no-op.
    unsafe { disable_timeout(STATEMENT_TIMEOUT, false) };
}
