//! Set-returning functions in materialize mode, for the two that return
//! many rows (the `workers` listing and `result`): the call set up with a
//! tuplestore in the query's memory, which the rows go straight into.
//! pgrx makes value-per-call functions only, so these are declared by
//! hand (with the SQL pgrx would write).

use pgrx::pg_sys;

use super::kept;
use crate::error::BgwError;

/// What `PG_FUNCTION_INFO_V1` declares in C: the version-1 calling
/// convention.
pub static V1: &pg_sys::Pg_finfo_record = &pg_sys::Pg_finfo_record { api_version: 1 };

/// What one returned row is.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// A row of this many columns, as the function is declared.
    Row(usize),
    /// One value of this type (`RETURNS SETOF <type>`).
    Scalar(pg_sys::Oid),
}

/// Where the rows are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// In the query's memory, kept there up to `work_mem` or this many
    /// bytes, whichever is larger, before the tuplestore spills to a
    /// temporary file.
    Query { in_memory: usize },
    /// In the session's listing memory (see `kept.rs`).
    Kept,
}

impl Store {
    /// The tuplestore's memory before it spills, in kB.
    fn memory_kb(self) -> i32 {
        // SAFETY: reads a setting of this backend.
        let work_mem = unsafe { pg_sys::work_mem };
        match self {
            Store::Query { in_memory } => {
                work_mem.max((in_memory / 1024).min(i32::MAX as usize) as i32)
            }
            Store::Kept => work_mem,
        }
    }
}

/// Sets the call up in materialize mode: a tuplestore for the rows and
/// the row descriptor, in the query's memory (the rows where `store`
/// says).
///
/// # Safety
/// `fcinfo` is the call's, from the server.
pub unsafe fn materialize(
    fcinfo: pg_sys::FunctionCallInfo,
    shape: Shape,
    store: Store,
) -> Result<(*mut pg_sys::Tuplestorestate, pg_sys::TupleDesc), BgwError> {
    // SAFETY: the caller's contract.
    unsafe {
        let rsinfo = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
        if rsinfo.is_null()
            || (*rsinfo).allowedModes & pg_sys::SetFunctionReturnMode::SFRM_Materialize as i32 == 0
        {
            return Err(BgwError::WrongState {
                message: "set-valued function called in context that cannot accept a set".into(),
                hint: Some("Call it in a FROM clause.".into()),
            });
        }
        let old = pg_sys::MemoryContextSwitchTo((*(*rsinfo).econtext).ecxt_per_query_memory);
        let mut desc: pg_sys::TupleDesc = std::ptr::null_mut();
        let desc = match shape {
            Shape::Row(columns) => {
                let kind = pg_sys::get_call_result_type(fcinfo, std::ptr::null_mut(), &mut desc);
                if kind != pg_sys::TypeFuncClass::TYPEFUNC_COMPOSITE
                    || (*desc).natts as usize != columns
                {
                    pg_sys::MemoryContextSwitchTo(old);
                    return Err(BgwError::Internal(
                        "the function is declared with another row type".into(),
                    ));
                }
                pg_sys::CreateTupleDescCopy(desc)
            }
            // A set of one scalar: a one-column descriptor of its type.
            Shape::Scalar(type_oid) => {
                let desc = pg_sys::CreateTemplateTupleDesc(1);
                pg_sys::TupleDescInitEntry(desc, 1, c"value".as_ptr(), type_oid, -1, 0);
                desc
            }
        };
        let random = (*rsinfo).allowedModes
            & pg_sys::SetFunctionReturnMode::SFRM_Materialize_Random as i32
            != 0;
        if store == Store::Kept {
            pg_sys::MemoryContextSwitchTo(kept::listing_memory(
                (*(*rsinfo).econtext).ecxt_per_query_memory,
            ));
        }
        let store = pg_sys::tuplestore_begin_heap(random, false, store.memory_kb());
        (*rsinfo).returnMode = pg_sys::SetFunctionReturnMode::SFRM_Materialize;
        (*rsinfo).setResult = store;
        (*rsinfo).setDesc = desc;
        pg_sys::MemoryContextSwitchTo(old);
        Ok((store, desc))
    }
}
