//! Out-of-line texts of the registry (configs, full errors, results):
//! kept in a DSA area, PostgreSQL's allocator for shared memory that grows and
//! shrinks with what is stored. The area is created in place inside the
//! registry's fixed segment (the postmaster cannot use DSM segments, as
//! pgstat_shmem.c explains) and grows into DSM segments as needed, up to
//! `lightdb_bgw.max_text_memory`. Each process attaches on first use.
//!
//! A crash-reinitialisation rebuilds shared memory: the texts are gone.
//! The configs of workers that come back (restartable ones) are therefore
//! also written, at launch, to `pg_lightdb_bgw/<id>.config` in the data
//! directory, from which the restarted worker reads its config again.

use std::ffi::CStr;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicPtr, Ordering};

use pgrx::pg_sys;

/// Where a text lives: a DSA pointer and its length; `ptr == 0` is none.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TextRef {
    pub ptr: u64,
    pub len: u64,
}

impl TextRef {
    pub const NONE: TextRef = TextRef { ptr: 0, len: 0 };

    pub fn is_none(self) -> bool {
        self.ptr == 0
    }
}

const TRANCHE_NAME: &CStr = c"lightdb_bgw texts";

/// Bytes of the fixed segment the area starts with (PostgreSQL's default
/// first segment size); texts beyond it go to DSM segments.
pub const IN_PLACE_BYTES: usize = 1024 * 1024;

/// This process's attachment to the area.
static AREA: AtomicPtr<pg_sys::dsa_area> = AtomicPtr::new(std::ptr::null_mut());

/// Creates the area in `place` (the postmaster, at each creation of shared
/// memory), caps it at `limit` bytes and returns the tranche id of its lock.
///
/// # Safety
/// `place` points at `IN_PLACE_BYTES` of fresh shared memory; called in the
/// postmaster while no other process runs.
pub unsafe fn create(place: *mut u8, limit: usize) -> i32 {
    // SAFETY: the caller's contract; the postmaster may create an area in
    // place (no DSM segment is made until the area grows), pins it so it
    // lives as long as shared memory, and detaches its own mapping.
    unsafe {
        let tranche = pg_sys::LWLockNewTrancheId();
        pg_sys::LWLockRegisterTranche(tranche, TRANCHE_NAME.as_ptr());
        #[cfg(not(any(feature = "pg17", feature = "pg18")))]
        let area = pg_sys::dsa_create_in_place(
            place.cast(),
            IN_PLACE_BYTES,
            tranche,
            std::ptr::null_mut(),
        );
        #[cfg(any(feature = "pg17", feature = "pg18"))]
        let area = pg_sys::dsa_create_in_place_ext(
            place.cast(),
            IN_PLACE_BYTES,
            tranche,
            std::ptr::null_mut(),
            IN_PLACE_BYTES,
            1usize << 40,
        );
        pg_sys::dsa_pin(area);
        pg_sys::dsa_set_size_limit(area, limit.max(IN_PLACE_BYTES));
        pg_sys::dsa_detach(area);
        tranche
    }
}

/// This process's attachment, made on first use and kept for its life.
fn area(place: *mut u8, tranche: i32) -> *mut pg_sys::dsa_area {
    let area = AREA.load(Ordering::Acquire);
    if !area.is_null() {
        return area;
    }
    // SAFETY: the area was created in `place` by the postmaster. The
    // process-local `dsa_area` is allocated in TopMemoryContext, which lives
    // as long as the process (the current context may be a statement's),
    // and pinning the mapping keeps it beyond the current resource owner.
    let area = unsafe {
        pg_sys::LWLockRegisterTranche(tranche, TRANCHE_NAME.as_ptr());
        let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        let area = pg_sys::dsa_attach_in_place(place.cast(), std::ptr::null_mut());
        pg_sys::dsa_pin_mapping(area);
        pg_sys::MemoryContextSwitchTo(old);
        area
    };
    AREA.store(area, Ordering::Release);
    area
}

/// A text kept as a chain of pieces (a result, see [`store_chained`]) has
/// this bit set in its `ptr`; a DSA pointer never uses it.
const CHAINED: u64 = 1 << 63;
/// The size of one piece of a chained text, its link to the next piece
/// (8 bytes) first: whole pages of the area.
const PIECE: usize = 1 << 20;
const PIECE_DATA: usize = PIECE - 8;

/// Copies `text` into the area as a chain of pieces of [`PIECE`] bytes
/// when it is longer than one: the area keeps the segments its large
/// allocations came from, in the sizes they were made, so after many
/// texts come and go a large text may find no room in one piece where
/// pieces of a megabyte still fit. `None` when the area's cap is reached
/// (nothing is left allocated then).
pub fn store_chained(place: *mut u8, tranche: i32, text: &[u8]) -> Option<TextRef> {
    if text.len() <= PIECE_DATA {
        return store(place, tranche, text);
    }
    let area = area(place, tranche);
    // The last piece first: each piece holds the pointer of the next.
    let mut next: u64 = 0;
    for piece in text.chunks(PIECE_DATA).rev() {
        // SAFETY: as in `store`; a piece is its 8-byte link (DSA memory is
        // maximally aligned) and then its bytes, inside the allocation.
        unsafe {
            let ptr = pg_sys::dsa_allocate_extended(
                area,
                8 + piece.len(),
                pg_sys::DSA_ALLOC_NO_OOM as i32,
            );
            if ptr == 0 {
                free_chain(area, next);
                return None;
            }
            let dst = pg_sys::dsa_get_address(area, ptr) as *mut u8;
            (dst as *mut u64).write(next);
            std::ptr::copy_nonoverlapping(piece.as_ptr(), dst.add(8), piece.len());
            next = ptr;
        }
    }
    Some(TextRef {
        ptr: next | CHAINED,
        len: text.len() as u64,
    })
}

/// Frees the pieces of a chain from `first` on.
///
/// # Safety
/// `first` is 0 or the first piece of a chain made by [`store_chained`].
unsafe fn free_chain(area: *mut pg_sys::dsa_area, first: u64) {
    let mut piece = first;
    while piece != 0 {
        // SAFETY: the caller's contract; the link is read before the free.
        unsafe {
            let next = (pg_sys::dsa_get_address(area, piece) as *const u64).read();
            pg_sys::dsa_free(area, piece);
            piece = next;
        }
    }
}

/// The bytes of a chained text, in one buffer.
///
/// # Safety
/// `r` is a live chained text.
unsafe fn gather(area: *mut pg_sys::dsa_area, r: TextRef) -> Vec<u8> {
    let mut out = Vec::with_capacity(r.len as usize);
    let mut piece = r.ptr & !CHAINED;
    while piece != 0 && out.len() < r.len as usize {
        let take = (r.len as usize - out.len()).min(PIECE_DATA);
        // SAFETY: the caller's contract: each piece holds its link and at
        // least `take` bytes.
        unsafe {
            let src = pg_sys::dsa_get_address(area, piece) as *const u8;
            out.extend_from_slice(std::slice::from_raw_parts(src.add(8), take));
            piece = (src as *const u64).read();
        }
    }
    out
}

/// Copies `text` into the area; `None` when the area's cap is reached.
pub fn store(place: *mut u8, tranche: i32, text: &[u8]) -> Option<TextRef> {
    if text.is_empty() {
        return Some(TextRef::NONE);
    }
    let area = area(place, tranche);
    // SAFETY: an allocation that returns InvalidDsaPointer instead of
    // raising when the cap is reached; the copy stays inside it.
    unsafe {
        let ptr = pg_sys::dsa_allocate_extended(area, text.len(), pg_sys::DSA_ALLOC_NO_OOM as i32);
        if ptr == 0 {
            return None;
        }
        let dst = pg_sys::dsa_get_address(area, ptr) as *mut u8;
        std::ptr::copy_nonoverlapping(text.as_ptr(), dst, text.len());
        Some(TextRef {
            ptr,
            len: text.len() as u64,
        })
    }
}

/// A copy of the text at `r`.
///
/// # Safety
/// `r` was returned by [`store`] and not freed since: the caller holds the
/// registry lock under which texts are freed.
pub unsafe fn read(place: *mut u8, tranche: i32, r: TextRef) -> Vec<u8> {
    if r.is_none() {
        return Vec::new();
    }
    let area = area(place, tranche);
    // SAFETY: the caller's contract.
    unsafe {
        if r.ptr & CHAINED != 0 {
            return gather(area, r);
        }
        let src = pg_sys::dsa_get_address(area, r.ptr) as *const u8;
        std::slice::from_raw_parts(src, r.len as usize).to_vec()
    }
}

/// Runs `read` on the text at `r` where it lies, without a copy.
///
/// # Safety
/// As for [`read`].
pub unsafe fn with<R>(
    place: *mut u8,
    tranche: i32,
    r: TextRef,
    read: impl FnOnce(&[u8]) -> R,
) -> R {
    if r.is_none() {
        return read(&[]);
    }
    let area = area(place, tranche);
    // SAFETY: the caller's contract.
    unsafe {
        if r.ptr & CHAINED != 0 {
            return read(&gather(area, r));
        }
        let src = pg_sys::dsa_get_address(area, r.ptr) as *const u8;
        read(std::slice::from_raw_parts(src, r.len as usize))
    }
}

/// Gives the memory of `r` back to the area.
///
/// # Safety
/// `r` was returned by [`store`] and is freed once: the caller unlinks it
/// from its slot under the registry lock.
pub unsafe fn free(place: *mut u8, tranche: i32, r: TextRef) {
    if r.is_none() {
        return;
    }
    let area = area(place, tranche);
    // SAFETY: the caller's contract.
    unsafe {
        match r.ptr & CHAINED {
            0 => pg_sys::dsa_free(area, r.ptr),
            _ => free_chain(area, r.ptr & !CHAINED),
        }
    }
}

/// The directory of the configs kept on disk for crash-reinitialisation,
/// relative to the data directory (every server process runs there).
fn config_dir() -> PathBuf {
    PathBuf::from("pg_lightdb_bgw")
}

fn config_file(id: i64) -> PathBuf {
    config_dir().join(format!("{id}.config"))
}

/// Keeps the (encoded) config of restartable worker `id` on disk, written
/// to a temporary name, then renamed: a crash never leaves half a file.
pub fn save_config(id: i64, config: &[u8]) -> std::io::Result<()> {
    fs::create_dir_all(config_dir())?;
    let tmp = config_dir().join(format!("{id}.config.tmp"));
    fs::write(&tmp, config)?;
    fs::rename(&tmp, config_file(id))
}

/// The (encoded) config of worker `id` kept on disk, if any.
pub fn load_config(id: i64) -> Option<Vec<u8>> {
    fs::read(config_file(id)).ok()
}

/// Removes the config of worker `id` from disk (nothing if there is none).
pub fn remove_config(id: i64) {
    let _ = fs::remove_file(config_file(id));
}

/// Removes every config kept on disk: at a clean start of the server no
/// worker of a previous run comes back.
pub fn clear_configs() {
    let _ = fs::remove_dir_all(config_dir());
}
