//! One row of a statement as one jsonb object, equal to what the server's
//! `to_jsonb` makes of the row: column names as keys, values as
//! `to_jsonb` turns them. What `to_jsonb` works out for every row is
//! worked out once per statement here: each column's conversion, and the
//! order of the keys in the object (jsonb keeps keys sorted, shorter
//! first, and of a name used twice the last column). Integers, text and
//! booleans are converted here as `to_jsonb` converts them; any other
//! type goes through `to_jsonb` itself, told the column's type. A row of
//! scalar values is written in jsonb's format straight into the kept
//! rows (`jsonb_write.rs`); a row with an array or object in it is made
//! by the server's `JsonbValueToJsonb` from its key/value pairs.
//! A runtime helper of `capture.rs`; it knows no kind.

use std::ffi::c_char;

use pgrx::pg_sys;
use pgrx::pg_sys::JsonbIteratorToken as Token;
use pgrx::varlena;

use crate::heap_row::attribute;
use crate::jsonb_write::{self, Scalar};
use crate::rows;

/// The longest string a jsonb value holds (`JENTRY_OFFLENMASK`); a longer
/// text goes through `to_jsonb`, which reports it.
const MAX_JSONB_STRING: usize = 0x0FFF_FFFF;

/// How a column's values become jsonb values.
enum Convert {
    /// `int2`, `int4`, `int8` (by their width): a jsonb number.
    Int(u8),
    /// `text`, `varchar`, `bpchar`: a jsonb string of the value's bytes.
    Text,
    /// `bool`: a jsonb boolean.
    Bool,
    /// Anything else: the server's `to_jsonb`, told the column's type.
    ToJsonb(Box<pg_sys::FmgrInfo>),
}

/// A column that has a key in the object.
struct Column {
    /// Its place in the row.
    index: usize,
    /// Its name, NUL-terminated (jsonb string values point into it).
    name: Box<[u8]>,
    convert: Convert,
}

/// A column's value in the row being made: an integer, or a jsonb value.
enum Cell {
    Int(i64),
    Value(pg_sys::JsonbValue),
}

/// A statement's columns in the order of their keys, each with how its
/// values become jsonb, and the values of the row being made.
pub struct RowJsonb {
    columns: Vec<Column>,
    cells: Vec<Cell>,
}

impl RowJsonb {
    /// The plan for rows of `desc`, made in the current memory context,
    /// which must live as long as the rows come.
    ///
    /// # Safety
    /// `desc` is a valid row type.
    pub unsafe fn new(desc: pg_sys::TupleDesc) -> RowJsonb {
        // SAFETY: the caller's contract: `natts` attributes follow.
        let mut columns: Vec<Column> = unsafe {
            (0..(*desc).natts as usize)
                .map(|index| attribute(desc, index))
                .enumerate()
                .filter(|(_, att)| !att.attisdropped)
                .map(|(index, att)| Column {
                    index,
                    name: std::ffi::CStr::from_ptr(att.attname.data.as_ptr())
                        .to_bytes_with_nul()
                        .into(),
                    convert: convert_for(att),
                })
                .collect()
        };
        // jsonb's order of keys: by length, then bytes; of equal names the
        // last column first, and only it kept.
        columns.sort_by(|a, b| {
            (a.key().len(), a.key())
                .cmp(&(b.key().len(), b.key()))
                .then(b.index.cmp(&a.index))
        });
        columns.dedup_by(|later, kept| later.key() == kept.key());
        let cells = Vec::with_capacity(columns.len());
        RowJsonb { columns, cells }
    }

    /// Frames the row `values`/`nulls` (one each a column of the plan's
    /// row type) into `out` as one jsonb object; what it needs on the way
    /// is allocated in the current memory context. False, nothing
    /// appended, when `out` would pass `limit` bytes (known before a byte
    /// of the row is copied).
    ///
    /// # Safety
    /// The values are valid datums of the columns' types.
    pub unsafe fn frame(
        &mut self,
        values: &[pg_sys::Datum],
        nulls: &[bool],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> bool {
        self.cells.clear();
        for column in &mut self.columns {
            let cell = match nulls[column.index] {
                true => Cell::Value(value(pg_sys::jbvType::jbvNull)),
                // SAFETY: the caller's contract.
                false => unsafe { column.cell(values[column.index]) },
            };
            self.cells.push(cell);
        }
        let (columns, cells) = (&self.columns, &self.cells);
        // At least the keys, the values' bytes and an entry each.
        let least: usize = columns
            .iter()
            .zip(cells)
            // SAFETY: as below.
            .map(|(c, cell)| c.key().len() + 8 + unsafe { scalar_len(cell) })
            .sum();
        if out.len().saturating_add(least) > limit {
            return false;
        }
        // SAFETY: the cells' strings and numerics live in the current
        // memory context (or the plan) until the row is framed.
        let written = rows::frame_with(out, |out| {
            jsonb_write::write_object(
                out,
                columns.len(),
                |i| columns[i].key(),
                |i| unsafe { scalar(&cells[i]) },
            )
        });
        // An array or object among the values, or too large.
        if !written {
            // SAFETY: as above; the jsonb lives in the current memory
            // context until it is framed.
            unsafe {
                let jsonb = self.by_the_server();
                let ptr = jsonb as *const pg_sys::varlena;
                let len = varlena::varsize_any(ptr);
                if out.len().saturating_add(len) > limit {
                    return false;
                }
                rows::frame(out, std::slice::from_raw_parts(ptr as *const u8, len));
            }
        }
        true
    }

    /// The row made by the server's `JsonbValueToJsonb` from its pairs
    /// (which reports a row too large for one jsonb value).
    ///
    /// # Safety
    /// As [`RowJsonb::frame`], with the cells of the row made.
    unsafe fn by_the_server(&mut self) -> *mut pg_sys::Jsonb {
        let mut pairs: Vec<pg_sys::JsonbPair> = self
            .columns
            .iter()
            .zip(&self.cells)
            .map(|(column, cell)| pg_sys::JsonbPair {
                key: string(column.name.as_ptr() as *mut c_char, column.key().len()),
                value: match cell {
                    Cell::Int(n) => {
                        let mut v = value(pg_sys::jbvType::jbvNumeric);
                        v.val.numeric = numeric(*n);
                        v
                    }
                    Cell::Value(v) => *v,
                },
                order: 0,
            })
            .collect();
        let mut object = value(pg_sys::jbvType::jbvObject);
        object.val.object.nPairs = pairs.len() as i32;
        object.val.object.pairs = pairs.as_mut_ptr();
        // SAFETY: an object whose keys are sorted and unique, as jsonb
        // keeps them; the caller's contract for the values.
        unsafe { pg_sys::JsonbValueToJsonb(&mut object) }
    }
}

impl Column {
    /// The name, without its NUL.
    fn key(&self) -> &[u8] {
        &self.name[..self.name.len() - 1]
    }

    /// `datum` (not null) as this column's cell.
    ///
    /// # Safety
    /// `datum` is a valid datum of the column's type.
    unsafe fn cell(&mut self, datum: pg_sys::Datum) -> Cell {
        // SAFETY: the caller's contract.
        unsafe {
            match &mut self.convert {
                Convert::Int(2) => Cell::Int(datum.value() as i16 as i64),
                Convert::Int(4) => Cell::Int(datum.value() as i32 as i64),
                Convert::Int(_) => Cell::Int(datum.value() as i64),
                Convert::Text => {
                    let mut text = datum.cast_mut_ptr::<pg_sys::varlena>();
                    if varlena::varatt_is_1b_e(text) || varlena::varatt_is_4b_c(text) {
                        text = pg_sys::pg_detoast_datum_packed(text);
                    }
                    let len = varlena::varsize_any_exhdr(text);
                    if len > MAX_JSONB_STRING {
                        // `to_jsonb` reports what is too long.
                        let mut flinfo = to_jsonb_of(pg_sys::TEXTOID, -1, pg_sys::InvalidOid);
                        return Cell::Value(through(&mut flinfo, datum));
                    }
                    Cell::Value(string(varlena::vardata_any(text).cast_mut(), len))
                }
                Convert::Bool => {
                    let mut v = value(pg_sys::jbvType::jbvBool);
                    v.val.boolean = datum.value() != 0;
                    Cell::Value(v)
                }
                Convert::ToJsonb(flinfo) => Cell::Value(through(flinfo, datum)),
            }
        }
    }
}

/// How many bytes `cell`'s value takes at least once written. Safety: as
/// [`scalar`].
unsafe fn scalar_len(cell: &Cell) -> usize {
    // SAFETY: the caller's contract.
    match unsafe { scalar(cell) } {
        Some(Scalar::String(bytes)) | Some(Scalar::Numeric(bytes)) => bytes.len(),
        _ => 0,
    }
}

/// A cell as a scalar for `jsonb_write`; None for an array or object.
///
/// # Safety
/// The cell's string or numeric is valid for `'a`.
unsafe fn scalar<'a>(cell: &Cell) -> Option<Scalar<'a>> {
    let v = match cell {
        Cell::Int(n) => return Some(Scalar::Int(*n)),
        Cell::Value(v) => v,
    };
    // SAFETY: the caller's contract; the union's member is the one the
    // type names.
    unsafe {
        Some(match v.type_ {
            pg_sys::jbvType::jbvNull => Scalar::Null,
            pg_sys::jbvType::jbvBool => Scalar::Bool(v.val.boolean),
            pg_sys::jbvType::jbvString => Scalar::String(std::slice::from_raw_parts(
                v.val.string.val as *const u8,
                v.val.string.len as usize,
            )),
            pg_sys::jbvType::jbvNumeric => {
                let ptr = v.val.numeric as *const pg_sys::varlena;
                Scalar::Numeric(std::slice::from_raw_parts(
                    ptr as *const u8,
                    varlena::varsize_any(ptr),
                ))
            }
            _ => return None,
        })
    }
}

/// How values of the attribute `att` become jsonb.
fn convert_for(att: &pg_sys::FormData_pg_attribute) -> Convert {
    match att.atttypid {
        pg_sys::INT2OID => Convert::Int(2),
        pg_sys::INT4OID => Convert::Int(4),
        pg_sys::INT8OID => Convert::Int(8),
        pg_sys::TEXTOID | pg_sys::VARCHAROID | pg_sys::BPCHAROID => Convert::Text,
        pg_sys::BOOLOID => Convert::Bool,
        // SAFETY: a valid type of a valid attribute.
        other => Convert::ToJsonb(unsafe { to_jsonb_of(other, att.atttypmod, att.attcollation) }),
    }
}

/// `to_jsonb`, looked up, with an argument of the given type (as in a
/// call to `to_jsonb(<a value of that type>)`), in the current memory
/// context.
///
/// # Safety
/// `type_oid` is a valid type.
unsafe fn to_jsonb_of(
    type_oid: pg_sys::Oid,
    typmod: i32,
    collation: pg_sys::Oid,
) -> Box<pg_sys::FmgrInfo> {
    // SAFETY: looks up a built-in function and builds the expression node
    // `to_jsonb` reads its argument's type from; FmgrInfo is plain data.
    unsafe {
        let mut flinfo: Box<pg_sys::FmgrInfo> = Box::new(std::mem::zeroed());
        pg_sys::fmgr_info(pg_sys::Oid::from(pg_sys::F_TO_JSONB), &mut *flinfo);
        let arg = pg_sys::makeNullConst(type_oid, typmod, collation);
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
        flinfo
    }
}

/// `datum` through `to_jsonb` (`flinfo`), as a jsonb value: a scalar as
/// itself, an array or object as the tree of its values (as the server
/// places a jsonb inside another).
///
/// # Safety
/// `datum` is a valid datum of the type `flinfo` was made for.
unsafe fn through(flinfo: &mut pg_sys::FmgrInfo, datum: pg_sys::Datum) -> pg_sys::JsonbValue {
    // SAFETY: the caller's contract; the jsonb and what the iterator
    // reads from it live in the current memory context.
    unsafe {
        let jsonb = pg_sys::FunctionCall1Coll(flinfo, pg_sys::InvalidOid, datum);
        let jsonb = jsonb.cast_mut_ptr::<pg_sys::Jsonb>();
        let mut v = value(pg_sys::jbvType::jbvNull);
        if pg_sys::JsonbExtractScalar(&mut (*jsonb).root, &mut v) {
            return v;
        }
        let mut state: *mut pg_sys::JsonbParseState = std::ptr::null_mut();
        let mut it = pg_sys::JsonbIteratorInit(&mut (*jsonb).root);
        let mut tree = std::ptr::null_mut();
        loop {
            let token = pg_sys::JsonbIteratorNext(&mut it, &mut v, false);
            tree = match token {
                Token::WJB_DONE => break,
                Token::WJB_BEGIN_ARRAY
                | Token::WJB_END_ARRAY
                | Token::WJB_BEGIN_OBJECT
                | Token::WJB_END_OBJECT => {
                    pg_sys::pushJsonbValue(&mut state, token, std::ptr::null_mut())
                }
                _ => pg_sys::pushJsonbValue(&mut state, token, &mut v),
            };
        }
        *tree
    }
}

/// `n` as a numeric, as `n::numeric` makes it (and `to_jsonb` of an
/// integer).
fn numeric(n: i64) -> pg_sys::Numeric {
    #[cfg(not(feature = "pg13"))]
    // SAFETY: allocates in the current memory context.
    unsafe {
        pg_sys::int64_to_numeric(n)
    }
    #[cfg(feature = "pg13")]
    // SAFETY: a built-in function of one int8 argument.
    unsafe {
        pgrx::direct_function_call::<pg_sys::Datum>(pg_sys::int8_numeric, &[Some(n.into())])
            .map_or(std::ptr::null_mut(), |d| d.cast_mut_ptr())
    }
}

/// A jsonb value of `kind` with nothing in it yet.
fn value(kind: pg_sys::jbvType::Type) -> pg_sys::JsonbValue {
    // SAFETY: JsonbValue is plain data; all zero is a valid value.
    let mut v: pg_sys::JsonbValue = unsafe { std::mem::zeroed() };
    v.type_ = kind;
    v
}

/// A jsonb string of `len` bytes at `val`.
fn string(val: *mut c_char, len: usize) -> pg_sys::JsonbValue {
    let mut v = value(pg_sys::jbvType::jbvString);
    v.val.string = pg_sys::JsonbValue__bindgen_ty_1__bindgen_ty_1 {
        len: len as i32,
        val,
    };
    v
}
