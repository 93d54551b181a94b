//! The memory the `workers` listing's rows are stored in: one memory
//! context per session that outlives the query, so that the pages a
//! listing fills are already mapped when the next one runs. (In a query's
//! own memory, the rows of a 1,000-worker listing are mapped page by page
//! and given back at the query's end, which took half of the listing's
//! time.) The context's first block, which a reset keeps, grows to what a
//! listing needed, at most `work_mem` (past which the rows would go to a
//! temporary file anyway). The context is reset each time no listing uses
//! it any more, as the last query that holds one ends, normally or by an
//! error: a listing cut short by an error leaves nothing behind.

use std::cell::Cell;

use pgrx::pg_sys;
use pgrx::prelude::*;

/// The largest block a listing's memory grows by (the server's default).
const MAX_BLOCK: usize = 8 * 1024 * 1024;

thread_local! {
    /// The context, or null before the first listing (or after it grew).
    static CONTEXT: Cell<pg_sys::MemoryContext> = const { Cell::new(std::ptr::null_mut()) };
    /// The size of its first block, which a reset keeps.
    static FIRST_BLOCK: Cell<usize> = const { Cell::new(0) };
    /// Queries whose listing may still use it.
    static USERS: Cell<u32> = const { Cell::new(0) };
}

/// The context a listing run by the query of `per_query` stores its rows
/// in; it is reset once that query (and every other using it) has ended.
///
/// # Safety
/// `per_query` is the running query's memory context.
pub unsafe fn listing_memory(per_query: pg_sys::MemoryContext) -> pg_sys::MemoryContext {
    let mut context = CONTEXT.get();
    if context.is_null() {
        // SAFETY: a context under the session's top context, with sizes
        // the server accepts (0, or a multiple of 8 of at least 1 kB, for
        // the first block).
        context = unsafe {
            pg_sys::AllocSetContextCreateInternal(
                pg_sys::TopMemoryContext,
                c"lightdb_bgw listing".as_ptr(),
                FIRST_BLOCK.get(),
                8 * 1024,
                MAX_BLOCK,
            )
        };
        CONTEXT.set(context);
    }
    // SAFETY: the callback lives in the query's memory, as long as the
    // query; the server calls it when that memory is reset or deleted.
    unsafe {
        let callback = pg_sys::MemoryContextAllocZero(
            per_query,
            std::mem::size_of::<pg_sys::MemoryContextCallback>(),
        ) as *mut pg_sys::MemoryContextCallback;
        (*callback).func = Some(query_ended);
        pg_sys::MemoryContextRegisterResetCallback(per_query, callback);
    }
    USERS.set(USERS.get() + 1);
    context
}

/// A query that held a listing ended: once none does, the context is
/// reset (its first block kept), or made again with a larger first block
/// when the listing needed more.
#[pg_guard]
unsafe extern "C-unwind" fn query_ended(_arg: *mut std::ffi::c_void) {
    let users = USERS.get().saturating_sub(1);
    USERS.set(users);
    let context = CONTEXT.get();
    if users > 0 || context.is_null() {
        return;
    }
    // SAFETY: no query uses the context any more: whatever is left in it
    // (the rows of a listing cut short by an error) is referenced by
    // nobody.
    unsafe {
        let used = pg_sys::MemoryContextMemAllocated(context, false);
        let cap = (pg_sys::work_mem.max(64) as usize) * 1024;
        let first = FIRST_BLOCK.get();
        if used > first && first < cap {
            FIRST_BLOCK.set(used.next_power_of_two().min(cap));
            pg_sys::MemoryContextDelete(context);
            CONTEXT.set(std::ptr::null_mut());
        } else {
            pg_sys::MemoryContextReset(context);
        }
    }
}
