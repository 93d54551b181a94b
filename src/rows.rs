//! How a result's rows are laid out in one block of memory: each row (a
//! jsonb value's bytes, varlena header included) preceded by its length
//! as four little-endian bytes. The worker frames them as it reads its
//! statement's rows; `result()` walks them to return one jsonb a row.

/// Appends one row to `out`.
pub fn frame(out: &mut Vec<u8>, row: &[u8]) {
    out.extend_from_slice(&(row.len() as u32).to_le_bytes());
    out.extend_from_slice(row);
}

/// The bytes a row takes once framed.
pub fn framed_len(row: &[u8]) -> usize {
    4 + row.len()
}

/// The rows framed in `block`, in order; a cut block ends early.
pub fn unframe(block: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = block;
    std::iter::from_fn(move || {
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let row = rest.get(4..4 + len)?;
        rest = &rest[4 + len..];
        Some(row)
    })
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn rows_round_trip_in_order() {
        let mut block = Vec::new();
        for row in [&b"first"[..], b"", b"third row"] {
            frame(&mut block, row);
        }
        assert_eq!(
            block.len(),
            framed_len(b"first") + 4 + framed_len(b"third row")
        );
        let rows: Vec<&[u8]> = unframe(&block).collect();
        assert_eq!(rows, vec![&b"first"[..], b"", b"third row"]);
        // A cut block yields the whole rows before the cut only.
        assert_eq!(unframe(&block[..block.len() - 1]).count(), 2);
        assert_eq!(unframe(&[]).count(), 0);
    }
}
