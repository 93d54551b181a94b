//! Heap tuples formed by hand, for the one path that makes many rows of a
//! row type the extension declares itself (the `workers` listing): the
//! values are laid out straight into one reusable buffer by the rules of
//! the server's `heap_form_tuple` (`heaptuple.c`), read from the row's
//! descriptor (each attribute's length, by-value flag, alignment and
//! storage), and the tuplestore copies the finished tuple. The server's
//! own path takes the values as datums, measures them, then fills them,
//! attribute by generic attribute, from texts first made with 4-byte
//! headers: on a listing of 10,000 workers that was a third of the time.
//! Also what the attributes of a descriptor are, on every server version.

use pgrx::pg_sys;

/// One value of a row, as [`HeapRow::put`] takes it.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Null,
    /// A value passed by value (an integer, a bool, a float8, a time).
    ByValue(pg_sys::Datum),
    /// A text-like value, given as its bytes (no varlena header).
    Text(&'a [u8]),
    /// A whole varlena value, its header included (stored jsonb).
    Varlena(&'a [u8]),
    /// A fixed-length value passed by reference, as its bytes (an
    /// interval).
    Fixed(&'a [u8]),
}

/// What the descriptor says of one attribute.
#[derive(Debug, Clone, Copy)]
struct Column {
    /// `attlen`: bytes, or -1 for a varlena.
    len: i16,
    by_value: bool,
    /// `attalign` in bytes.
    align: usize,
    /// A varlena that may be stored with a 1-byte header (`attstorage`
    /// other than plain).
    packable: bool,
}

/// Longest varlena, header included, that a 1-byte header can carry.
const SHORT_MAX: usize = 0x7f;

/// The server's maximum alignment (`MAXIMUM_ALIGNOF`).
const MAXALIGN: usize = 8;

/// Forms the rows of one descriptor, reusing its buffer from row to row.
#[derive(Debug)]
pub struct HeapRow {
    columns: Vec<Column>,
    type_id: pg_sys::Oid,
    type_mod: i32,
    /// The tuple being formed (u64 words: maximally aligned, as the
    /// server's `palloc` is, which the alignment of the values assumes).
    buffer: Vec<u64>,
}

impl HeapRow {
    /// Reads the attributes of `desc`.
    ///
    /// # Safety
    /// `desc` is a valid descriptor.
    pub unsafe fn new(desc: pg_sys::TupleDesc) -> HeapRow {
        // SAFETY: the caller's contract.
        let natts = unsafe { (*desc).natts } as usize;
        let columns = (0..natts)
            .map(|index| {
                // SAFETY: `index` is below the descriptor's count.
                let att = unsafe { attribute(desc, index) };
                Column {
                    len: att.attlen,
                    by_value: att.attbyval,
                    align: align_of(att.attalign as u8),
                    packable: att.attlen == -1 && att.attstorage as u8 != pg_sys::TYPSTORAGE_PLAIN,
                }
            })
            .collect();
        // SAFETY: as above.
        let (type_id, type_mod) = unsafe { ((*desc).tdtypeid, (*desc).tdtypmod) };
        HeapRow {
            columns,
            type_id,
            type_mod,
            buffer: Vec::with_capacity(64),
        }
    }

    /// Forms the row of `values` and appends it to `store`.
    ///
    /// # Safety
    /// `store` is a valid tuplestore whose rows have this descriptor.
    pub unsafe fn put(&mut self, store: *mut pg_sys::Tuplestorestate, values: &[Value<'_>]) {
        let mut tuple = self.form(values);
        // SAFETY: a tuple laid out as `heap_form_tuple` would, which the
        // tuplestore copies into its own memory.
        unsafe { pg_sys::tuplestore_puttuple(store, &mut tuple) };
    }

    /// Lays out the row of `values` in the buffer, as `heap_form_tuple`
    /// does; the tuple returned points into the buffer.
    fn form(&mut self, values: &[Value<'_>]) -> pg_sys::HeapTupleData {
        assert_eq!(values.len(), self.columns.len(), "a row of another shape");
        let natts = values.len();
        let has_null = values.iter().any(|v| matches!(v, Value::Null));
        let bitmap = std::mem::offset_of!(pg_sys::HeapTupleHeaderData, t_bits);
        let header = bitmap + if has_null { natts.div_ceil(8) } else { 0 };
        let hoff = header.next_multiple_of(MAXALIGN);
        // Room enough whatever the alignments: each value's bytes, its
        // header and its padding.
        let bound = hoff
            + values
                .iter()
                .map(|v| match v {
                    Value::Null => 0,
                    Value::ByValue(_) => 8 + MAXALIGN,
                    Value::Text(t) => t.len() + 4 + MAXALIGN,
                    Value::Varlena(b) | Value::Fixed(b) => b.len() + MAXALIGN,
                })
                .sum::<usize>();
        self.buffer.clear();
        self.buffer.resize(bound.div_ceil(8), 0);
        // SAFETY: the words of the buffer, seen as bytes.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(self.buffer.as_mut_ptr().cast::<u8>(), bound) };
        let mut at = hoff;
        let mut var_width = false;
        for (index, (value, column)) in values.iter().zip(&self.columns).enumerate() {
            at = match *value {
                Value::Null => continue,
                Value::ByValue(datum) => fill_by_value(bytes, at, column, datum),
                Value::Text(text) => {
                    var_width = true;
                    fill_text(bytes, at, column, text)
                }
                Value::Varlena(whole) => {
                    var_width = true;
                    fill_varlena(bytes, at, column, whole)
                }
                Value::Fixed(fixed) => {
                    assert!(
                        !column.by_value && column.len as usize == fixed.len(),
                        "a fixed-length value of another type"
                    );
                    let at = align(at, column.align);
                    bytes[at..at + fixed.len()].copy_from_slice(fixed);
                    at + fixed.len()
                }
            };
            if has_null {
                bytes[bitmap + index / 8] |= 1 << (index % 8);
            }
        }
        let len = at;
        let td = self
            .buffer
            .as_mut_ptr()
            .cast::<pg_sys::HeapTupleHeaderData>();
        let invalid = pg_sys::ItemPointerData {
            ip_blkid: pg_sys::BlockIdData {
                bi_hi: u16::MAX,
                bi_lo: u16::MAX,
            },
            ip_posid: 0,
        };
        let mut infomask = 0;
        if has_null {
            infomask |= pg_sys::HEAP_HASNULL as u16;
        }
        if var_width {
            infomask |= pg_sys::HEAP_HASVARWIDTH as u16;
        }
        // SAFETY: the header lies at the start of the buffer, which is
        // longer than it and aligned for it.
        unsafe {
            (*td).t_choice.t_datum = pg_sys::DatumTupleFields {
                datum_len_: len as i32,
                datum_typmod: self.type_mod,
                datum_typeid: self.type_id,
            };
            (*td).t_ctid = invalid;
            (*td).t_infomask2 = natts as u16;
            (*td).t_infomask = infomask;
            (*td).t_hoff = hoff as u8;
        }
        pg_sys::HeapTupleData {
            t_len: len as u32,
            t_self: invalid,
            t_tableOid: pg_sys::InvalidOid,
            t_data: td,
        }
    }
}

/// Stores a by-value datum at `at` (aligned); returns where the next
/// value may go.
fn fill_by_value(bytes: &mut [u8], at: usize, column: &Column, datum: pg_sys::Datum) -> usize {
    assert!(column.by_value, "a by-value datum for a by-reference type");
    let at = align(at, column.align);
    let raw = datum.value() as u64;
    let len = column.len as usize;
    // `store_att_byval`: the low `len` bytes of the datum, as that width.
    match len {
        8 => bytes[at..at + 8].copy_from_slice(&raw.to_ne_bytes()),
        4 => bytes[at..at + 4].copy_from_slice(&(raw as u32).to_ne_bytes()),
        2 => bytes[at..at + 2].copy_from_slice(&(raw as u16).to_ne_bytes()),
        1 => bytes[at] = raw as u8,
        _ => panic!("a by-value type of {len} bytes"),
    }
    at + len
}

/// Stores a text given by its bytes: with a 1-byte header and unaligned
/// when the type allows and it is short enough, else with a 4-byte header.
fn fill_text(bytes: &mut [u8], at: usize, column: &Column, text: &[u8]) -> usize {
    assert!(column.len == -1, "a text for a type that is not a varlena");
    let len = text.len() + 1;
    if column.packable && len <= SHORT_MAX {
        // SAFETY: `len` bytes from `at` lie within the buffer.
        unsafe { pgrx::varlena::set_varsize_1b(bytes[at..].as_mut_ptr().cast(), len as i32) };
        bytes[at + 1..at + len].copy_from_slice(text);
        return at + len;
    }
    let at = align(at, column.align);
    let len = text.len() + 4;
    // SAFETY: as above, and `at` is 4-aligned.
    unsafe { pgrx::varlena::set_varsize_4b(bytes[at..].as_mut_ptr().cast(), len as i32) };
    bytes[at + 4..at + len].copy_from_slice(text);
    at + len
}

/// Stores a whole varlena, as `heap_fill_tuple` does: a short one as it
/// is, a 4-byte one made short when it may be, else aligned.
fn fill_varlena(bytes: &mut [u8], at: usize, column: &Column, whole: &[u8]) -> usize {
    assert!(column.len == -1, "a varlena for a type that is not one");
    let ptr = whole.as_ptr().cast::<pg_sys::varlena>();
    // SAFETY: `whole` is a complete varlena, header included.
    let (short, plain, size) = unsafe {
        assert!(
            !pgrx::varlena::varatt_is_1b_e(ptr),
            "a pointer to a varlena stored elsewhere"
        );
        (
            pgrx::varlena::varatt_is_1b(ptr),
            pgrx::varlena::varatt_is_4b_u(ptr),
            pgrx::varlena::varsize_any(ptr),
        )
    };
    assert!(size == whole.len(), "a varlena cut short");
    if short {
        bytes[at..at + size].copy_from_slice(whole);
        return at + size;
    }
    if plain {
        return fill_text(bytes, at, column, &whole[4..]);
    }
    let at = align(at, column.align);
    bytes[at..at + size].copy_from_slice(whole);
    at + size
}

/// `at` rounded up to `align`, a power of two (a mask, not a division:
/// this runs for every value of every row).
fn align(at: usize, align: usize) -> usize {
    (at + align - 1) & !(align - 1)
}

/// An `attalign` code in bytes.
fn align_of(code: u8) -> usize {
    match code {
        b'd' => 8,
        b'i' => 4,
        b's' => 2,
        _ => 1,
    }
}

/// The `index`th attribute of `desc` (PostgreSQL 18 lays them out behind
/// a compact form).
///
/// # Safety
/// `desc` is valid, with more than `index` attributes, and outlives `'a`.
pub unsafe fn attribute<'a>(
    desc: pg_sys::TupleDesc,
    index: usize,
) -> &'a pg_sys::FormData_pg_attribute {
    // SAFETY: the caller's contract.
    unsafe {
        #[cfg(feature = "pg18")]
        let att = pg_sys::TupleDescAttr(desc, index as std::ffi::c_int);
        #[cfg(not(feature = "pg18"))]
        let att = (*desc).attrs.as_ptr().add(index);
        &*att
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    fn column(len: i16, by_value: bool, align: usize) -> Column {
        Column {
            len,
            by_value,
            align,
            packable: len == -1,
        }
    }

    /// The bytes of the tuple `heap_form_tuple` makes of the same row:
    /// worked out by hand from its rules.
    #[test]
    fn rows_are_laid_out_as_the_server_lays_them_out() {
        let mut row = HeapRow {
            columns: vec![
                column(8, true, 8),   // int8
                column(-1, false, 4), // text
                column(4, true, 4),   // int4
                column(16, false, 8), // interval
                column(-1, false, 4), // text
                column(1, true, 1),   // bool
            ],
            type_id: pg_sys::RECORDOID,
            type_mod: -1,
            buffer: Vec::new(),
        };
        let long = [b'x'; 200];
        let mut four_byte = vec![0u8; 4];
        // SAFETY: a 4-byte header in a buffer of 4 bytes.
        unsafe { pgrx::varlena::set_varsize_4b(four_byte.as_mut_ptr().cast(), 204) };
        let tuple = row.form(&[
            Value::ByValue(pg_sys::Datum::from(7i64)),
            Value::Text(b"ab"),
            Value::Null,
            Value::Fixed(&[0x11; 16]),
            Value::Text(&long),
            Value::ByValue(pg_sys::Datum::from(true)),
        ]);
        assert_eq!(tuple.t_len, 261);
        // SAFETY: the tuple points into the row's buffer, `t_len` long.
        let bytes =
            unsafe { std::slice::from_raw_parts(tuple.t_data.cast::<u8>(), tuple.t_len as usize) };
        // SAFETY: as above.
        let header = unsafe { &*tuple.t_data };
        assert_eq!(header.t_infomask2, 6);
        assert_eq!(
            header.t_infomask as u32,
            pg_sys::HEAP_HASNULL | pg_sys::HEAP_HASVARWIDTH
        );
        assert_eq!(header.t_hoff, 24);
        assert_eq!(bytes[23], 0b0011_1011, "the NULL bitmap: the third is NULL");
        assert_eq!(&bytes[24..32], &7i64.to_ne_bytes(), "int8, aligned");
        assert_eq!(&bytes[32..35], &[(3 << 1) | 1, b'a', b'b'], "short text");
        assert_eq!(&bytes[35..40], &[0; 5], "padding is zero");
        assert_eq!(&bytes[40..56], &[0x11; 16], "interval, aligned to 8");
        assert_eq!(&bytes[56..60], &four_byte[..], "long text: a 4-byte header");
        assert_eq!(&bytes[60..260], &long[..]);
        assert_eq!(bytes[260], 1, "bool");

        // No NULL: no bitmap, and a 4-byte varlena short enough is made
        // short.
        row.columns.truncate(2);
        let mut jsonb = vec![0u8; 6];
        // SAFETY: a 4-byte header in a buffer of 6 bytes.
        unsafe { pgrx::varlena::set_varsize_4b(jsonb.as_mut_ptr().cast(), 6) };
        jsonb[4..].copy_from_slice(b"{}");
        let tuple = row.form(&[
            Value::ByValue(pg_sys::Datum::from(-1i64)),
            Value::Varlena(&jsonb),
        ]);
        // SAFETY: as above.
        let header = unsafe { &*tuple.t_data };
        assert_eq!(header.t_hoff, 24);
        assert_eq!(header.t_infomask as u32, pg_sys::HEAP_HASVARWIDTH);
        assert_eq!(tuple.t_len, 24 + 8 + 3);
        // SAFETY: as above.
        let bytes =
            unsafe { std::slice::from_raw_parts(tuple.t_data.cast::<u8>(), tuple.t_len as usize) };
        assert_eq!(&bytes[32..35], &[(3 << 1) | 1, b'{', b'}']);
    }
}
