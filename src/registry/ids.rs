//! Worker ids across server restarts. Ids count up while the server runs
//! (a crash-reinitialisation keeps counting); so that they also do across
//! restarts, they are handed out in blocks whose end is kept on disk
//! (`pg_lightdb_bgw.ids` in the data directory, written durably as each
//! block begins), and a clean start begins past the last block: an id a
//! client kept from before a restart never names a later worker.

use std::ffi::CStr;

use pgrx::pg_sys;

/// Ids a block holds: one durable write per this many launches.
const BLOCK: i64 = 1000;
const FILE: &CStr = c"pg_lightdb_bgw.ids";
const TEMPORARY: &CStr = c"pg_lightdb_bgw.ids.tmp";

/// The first id of a clean start: past every id an earlier run of the
/// server may have given, and past the static workers' (1 to `statics`).
pub(super) fn first_at_start(statics: i64) -> i64 {
    let path = FILE.to_str().expect("an ASCII name");
    let kept = match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse::<i64>().unwrap_or_else(|_| {
            pgrx::warning!("lightdb_bgw: {path} holds no id; ids count from the start again");
            0
        }),
        // A new cluster: nothing handed out yet.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => 0,
        Err(err) => {
            pgrx::warning!(
                "lightdb_bgw: cannot read {path} ({err}); ids count from the start again"
            );
            0
        }
    };
    kept.max(statics + 1)
}

/// Makes the block kept on disk cover `id`, which is about to be given;
/// `end` is the current block's end (exclusive) and moves with a new
/// block. Called under the registry lock, which orders the writes. A
/// failed write is reported (WARNING) and the id given all the same: only
/// a later restart could then give it again.
pub(super) fn cover(id: i64, end: &mut i64) {
    if id < *end {
        return;
    }
    let new_end = id + BLOCK;
    let temporary = TEMPORARY.to_str().expect("an ASCII name");
    match std::fs::write(temporary, new_end.to_string()) {
        // SAFETY: two NUL-terminated names relative to the data directory,
        // the process's working directory; the server's own durable rename
        // (fsync of the file, rename, fsync of the directory) reports
        // its failures at WARNING and returns.
        Ok(()) => unsafe {
            pg_sys::durable_rename(TEMPORARY.as_ptr(), FILE.as_ptr(), pg_sys::WARNING as i32);
        },
        Err(err) => pgrx::warning!("lightdb_bgw: cannot keep the worker ids' block on disk: {err}"),
    }
    *end = new_end;
}
