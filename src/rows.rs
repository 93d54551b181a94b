//! How a result's rows are laid out in one block of memory: each row (a
//! jsonb value's bytes, varlena header included) preceded by its length
//! in an 8-byte header and padded to a multiple of 8 bytes, so that in a
//! block that starts 8-aligned ([`Block`]) every row is a properly aligned
//! varlena the server can read in place. The worker frames rows as it
//! reads its statement's rows; `result()` walks them.

/// Bytes before each row: its length (four little-endian bytes) and
/// padding.
const HEADER: usize = 8;

/// Appends one row to `out`.
pub fn frame(out: &mut Vec<u8>, row: &[u8]) {
    frame_with(out, |out| {
        out.extend_from_slice(row);
        true
    });
}

/// Appends one row that `write` appends to `out` itself (a row written
/// in place, not copied); `write` false: it appended nothing, nor does
/// this.
pub fn frame_with(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>) -> bool) -> bool {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    if !write(out) {
        out.truncate(start);
        return false;
    }
    let len = out.len() - start - HEADER;
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    out.resize(out.len() + padding(len), 0);
    true
}

fn padding(len: usize) -> usize {
    len.div_ceil(8) * 8 - len
}

/// The rows framed in `block`, in order; a cut block ends early.
pub fn unframe(block: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = block;
    std::iter::from_fn(move || {
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let row = rest.get(HEADER..HEADER + len)?;
        rest = rest.get(HEADER + len + padding(len)..).unwrap_or(&[]);
        Some(row)
    })
}

/// A copy of framed rows that starts 8-aligned: each row in it is a
/// varlena aligned as the server expects.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Block {
    words: Vec<u64>,
    len: usize,
}

impl Block {
    pub fn from_bytes(bytes: &[u8]) -> Block {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        // SAFETY: the words hold at least `bytes.len()` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                words.as_mut_ptr() as *mut u8,
                bytes.len(),
            )
        };
        Block {
            words,
            len: bytes.len(),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the first `len` bytes of the words, initialised above.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr() as *const u8, self.len) }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    /// The bytes a row takes once framed.
    fn framed_len(row: &[u8]) -> usize {
        HEADER + row.len() + padding(row.len())
    }

    #[test]
    fn rows_round_trip_in_order_and_aligned() {
        let mut framed = Vec::new();
        for row in [&b"first"[..], b"", b"third row"] {
            frame(&mut framed, row);
        }
        assert_eq!(
            framed.len(),
            framed_len(b"first") + framed_len(b"") + framed_len(b"third row")
        );
        assert!(frame_with(&mut framed, |out| {
            out.extend_from_slice(b"in place");
            true
        }));
        assert!(!frame_with(&mut framed, |out| {
            out.extend_from_slice(b"given up");
            false
        }));
        let block = Block::from_bytes(&framed);
        let rows: Vec<&[u8]> = unframe(block.bytes()).collect();
        assert_eq!(rows, vec![&b"first"[..], b"", b"third row", b"in place"]);
        for row in &rows {
            assert_eq!(row.as_ptr() as usize % 8, 0, "every row starts 8-aligned");
        }
        // A cut block yields the whole rows before the cut only.
        assert_eq!(unframe(&framed[..framed.len() - 9]).count(), 3);
        assert_eq!(unframe(&[]).count(), 0);
    }
}
