//! Writing a flat jsonb object (scalar values only) in the server's
//! on-disk format straight into a buffer, byte for byte what the server's
//! `JsonbValueToJsonb` makes of the same object, without its allocations:
//! the varlena header, the container header, one `JEntry` a key and a
//! value (lengths, every 32nd an end offset), then the keys' bytes and the
//! values' bytes, numbers 4-aligned. Integers are written as the numeric
//! `int64_to_numeric` makes (the short numeric form). The layout is the
//! one `src/include/utils/jsonb.h` documents, the same from PostgreSQL 13
//! to 18.
//! A runtime helper of `row_jsonb.rs`; it knows no kind.

/// A `JEntry`'s length or offset field, its type bits, and the flag of
/// an entry that holds an end offset.
const OFFLEN_MASK: u32 = 0x0FFF_FFFF;
const TYPE_MASK: u32 = 0x7000_0000;
const HAS_OFF: u32 = 0x8000_0000;
const IS_NUMERIC: u32 = 0x1000_0000;
const IS_BOOL_FALSE: u32 = 0x2000_0000;
const IS_BOOL_TRUE: u32 = 0x3000_0000;
const IS_NULL: u32 = 0x4000_0000;
/// Every this many entries one holds an end offset instead of a length.
const OFFSET_STRIDE: usize = 32;
/// The container header's flag of an object.
const IS_OBJECT: u32 = 0x2000_0000;

/// The short numeric form's header bits (`utils/adt/numeric.c`).
const NUMERIC_SHORT: u16 = 0x8000;
const NUMERIC_SHORT_SIGN: u16 = 0x2000;
const NUMERIC_SHORT_WEIGHT_MASK: u16 = 0x003F;
/// A numeric's digits are base 10,000.
const NBASE: u64 = 10_000;

/// A scalar value of an object.
#[derive(Debug, Clone, Copy)]
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    /// A string's bytes (UTF-8 as the server's encoding has them).
    String(&'a [u8]),
    /// An integer, written as the numeric `int64_to_numeric` makes.
    Int(i64),
    /// A numeric varlena's bytes, header included, copied as they are.
    Numeric(&'a [u8]),
}

/// Appends to `out` the jsonb varlena of the object of `pairs` pairs
/// whose keys are `key(0..pairs)` (sorted and unique, as jsonb keeps
/// them) and values `value(0..pairs)`, starting at a 4-aligned offset of
/// `out`. False, with nothing appended, when a value is not a scalar
/// (`None`) or the data would pass what one jsonb value holds: the caller
/// then lets the server make the object (and report what is too large).
pub fn write_object<'a>(
    out: &mut Vec<u8>,
    pairs: usize,
    key: impl Fn(usize) -> &'a [u8],
    value: impl Fn(usize) -> Option<Scalar<'a>>,
) -> bool {
    let start = out.len();
    let written = write_at(out, start, pairs, key, value).is_some();
    if !written {
        out.truncate(start);
    }
    written
}

/// [`write_object`]'s work; `None` as soon as it gives up, leaving what
/// it appended for the caller to take back.
fn write_at<'a>(
    out: &mut Vec<u8>,
    start: usize,
    pairs: usize,
    key: impl Fn(usize) -> &'a [u8],
    value: impl Fn(usize) -> Option<Scalar<'a>>,
) -> Option<()> {
    out.extend_from_slice(&[0; 4]);
    put_u32(out, pairs as u32 | IS_OBJECT);
    let entries = out.len();
    out.resize(entries + 8 * pairs, 0);
    let mut total = 0u32;
    let mut entry = |out: &mut Vec<u8>, index: usize, meta: u32| -> Option<()> {
        total += meta & OFFLEN_MASK;
        if total > OFFLEN_MASK {
            return None;
        }
        let meta = match index % OFFSET_STRIDE {
            0 => (meta & TYPE_MASK) | total | HAS_OFF,
            _ => meta,
        };
        let at = entries + 4 * index;
        out[at..at + 4].copy_from_slice(&meta.to_ne_bytes());
        Some(())
    };
    for i in 0..pairs {
        let key = key(i);
        out.extend_from_slice(key);
        entry(out, i, key.len() as u32)?;
    }
    for i in 0..pairs {
        let meta = match value(i)? {
            Scalar::Null => IS_NULL,
            Scalar::Bool(false) => IS_BOOL_FALSE,
            Scalar::Bool(true) => IS_BOOL_TRUE,
            Scalar::String(bytes) => {
                out.extend_from_slice(bytes);
                bytes.len().min(OFFLEN_MASK as usize + 1) as u32
            }
            Scalar::Int(n) => IS_NUMERIC | numeric(out, start, |out| int_numeric(out, n)),
            Scalar::Numeric(bytes) => {
                IS_NUMERIC | numeric(out, start, |out| out.extend_from_slice(bytes))
            }
        };
        entry(out, pairs + i, meta)?;
    }
    let size = out.len() - start;
    if size - 4 > OFFLEN_MASK as usize {
        return None;
    }
    set_varsize(&mut out[start..start + 4], size);
    Some(())
}

/// Pads `out` to a multiple of 4 bytes from `start` (the varlena's
/// start), then appends a numeric with `write`; the length of both.
fn numeric(out: &mut Vec<u8>, start: usize, write: impl FnOnce(&mut Vec<u8>)) -> u32 {
    let before = out.len();
    out.resize(before + (4 - (before - start) % 4) % 4, 0);
    write(out);
    (out.len() - before).min(OFFLEN_MASK as usize + 1) as u32
}

/// Appends `n` as the numeric varlena `int64_to_numeric(n)` makes: base
/// 10,000 digits, most significant first, without trailing zero digits,
/// weight the power of the first, scale 0, in the short form.
fn int_numeric(out: &mut Vec<u8>, n: i64) {
    let mut digits = [0u16; 5];
    let mut first = digits.len();
    let mut rest = n.unsigned_abs();
    while rest != 0 {
        first -= 1;
        digits[first] = (rest % NBASE) as u16;
        rest /= NBASE;
    }
    let mut digits = &digits[first..];
    // The weight counts the trailing zero digits left out.
    let weight = digits.len().saturating_sub(1) as u16;
    while let Some((0, kept)) = digits.split_last() {
        digits = kept;
    }
    let sign = match n < 0 {
        true => NUMERIC_SHORT_SIGN,
        false => 0,
    };
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(
        &(NUMERIC_SHORT | sign | (weight & NUMERIC_SHORT_WEIGHT_MASK)).to_ne_bytes(),
    );
    for digit in digits {
        out.extend_from_slice(&digit.to_ne_bytes());
    }
    let size = out.len() - start;
    set_varsize(&mut out[start..start + 4], size);
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_ne_bytes());
}

/// A 4-byte varlena header of `size` bytes (`SET_VARSIZE`).
fn set_varsize(header: &mut [u8], size: usize) {
    #[cfg(target_endian = "little")]
    let word = (size as u32) << 2;
    #[cfg(target_endian = "big")]
    let word = size as u32 & 0x3FFF_FFFF;
    header.copy_from_slice(&word.to_ne_bytes());
}

#[cfg(test)]
mod unit {
    use super::*;

    fn numeric_of(n: i64) -> Vec<u8> {
        let mut out = Vec::new();
        int_numeric(&mut out, n);
        out
    }

    #[test]
    fn integers_are_short_numerics_without_trailing_zero_digits() {
        // Header word (size << 2), then the short header, then digits.
        assert_eq!(numeric_of(0), [24, 0, 0, 0, 0x00, 0x80]);
        assert_eq!(numeric_of(7), [32, 0, 0, 0, 0x00, 0x80, 7, 0]);
        // 10,000 is one digit (1) of weight 1.
        assert_eq!(numeric_of(10_000), [32, 0, 0, 0, 0x01, 0x80, 1, 0]);
        assert_eq!(
            numeric_of(-12_345),
            [40, 0, 0, 0, 0x01, 0xA0, 1, 0, 0x29, 0x09]
        );
        // i64::MIN: 922 3372 0368 5477 5808, weight 4.
        let min = numeric_of(i64::MIN);
        assert_eq!(&min[4..6], &[0x04, 0xA0]);
        assert_eq!(min.len(), 6 + 2 * 5);
    }

    #[test]
    fn objects_lay_out_entries_then_keys_then_values() {
        let mut out = vec![0u8; 8];
        let keys: [&[u8]; 2] = [b"a", b"bb"];
        let values = [Scalar::Int(1), Scalar::String(b"xyz")];
        let ok = write_object(&mut out, 2, |i| keys[i], |i| Some(values[i]));
        assert!(ok);
        let jsonb = &out[8..];
        let word = |at: usize| u32::from_ne_bytes(jsonb[at..at + 4].try_into().unwrap());
        assert_eq!(word(0) >> 2, jsonb.len() as u32);
        assert_eq!(word(4), 2 | IS_OBJECT);
        // The first entry holds its end offset; the others their lengths.
        assert_eq!(word(8), 1 | HAS_OFF);
        assert_eq!(word(12), 2);
        // "a", "bb", then the numeric 4-aligned (1 byte of padding).
        assert_eq!(&jsonb[24..27], b"abb");
        assert_eq!(word(16), IS_NUMERIC | (1 + 8));
        assert_eq!(word(20), 3);
        assert_eq!(&jsonb[jsonb.len() - 3..], b"xyz");
    }

    #[test]
    fn an_object_with_a_value_not_a_scalar_is_left_to_the_server() {
        let mut out = vec![1u8; 4];
        let keys: [&[u8]; 2] = [b"a", b"b"];
        let values = [Some(Scalar::Int(1)), None];
        assert!(!write_object(&mut out, 2, |i| keys[i], |i| values[i]));
        assert_eq!(out, [1u8; 4], "nothing appended");
    }

    #[test]
    fn every_32nd_entry_holds_an_offset() {
        let names: Vec<String> = (0..20).map(|i| format!("k{i:02}")).collect();
        let keys: Vec<&[u8]> = names.iter().map(|k| k.as_bytes()).collect();
        let mut out = Vec::new();
        assert!(write_object(
            &mut out,
            20,
            |i| keys[i],
            |_| Some(Scalar::Bool(true))
        ));
        let entry = |i: usize| u32::from_ne_bytes(out[8 + 4 * i..12 + 4 * i].try_into().unwrap());
        assert_eq!(entry(0), 3 | HAS_OFF);
        assert_eq!(entry(1), 3);
        // Entry 32 is the 13th value: all 20 keys (60 bytes) before it.
        assert_eq!(entry(32), IS_BOOL_TRUE | 60 | HAS_OFF);
        assert_eq!(entry(33), IS_BOOL_TRUE);
    }
}
