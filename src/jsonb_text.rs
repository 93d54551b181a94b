//! `jsonb` values crossing the SQL boundary without serde in between:
//! `JsonbText`, an argument received as the text `jsonb_out` prints,
//! without parsing it, and `JsonbBytes`, a value returned from bytes made
//! once by `jsonb_in`. pgrx's own `JsonB` parses the value while it unboxes
//! the argument and fails with an internal error (XX000) on a document
//! nested deeper than serde_json's limit; receiving the text lets the
//! configuration parser refuse it with a clear SQLSTATE instead.

use std::ffi::CStr;

use pgrx::callconv::{Arg, ArgAbi};
use pgrx::nullable::Nullable;
use pgrx::{direct_function_call, impl_sql_translatable, pg_sys, FromDatum};

/// A `jsonb` value as its canonical text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonbText(pub String);

impl FromDatum for JsonbText {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _typoid: pg_sys::Oid,
    ) -> Option<JsonbText> {
        if is_null {
            return None;
        }
        // SAFETY: the caller guarantees `datum` is a non-null jsonb datum;
        // jsonb_out detoasts it and returns a palloc'd C string, which we
        // copy and free.
        unsafe {
            let text = direct_function_call::<&CStr>(pg_sys::jsonb_out, &[Some(datum)])?;
            let owned = text.to_string_lossy().into_owned();
            pg_sys::pfree(text.as_ptr() as *mut std::ffi::c_void);
            Some(JsonbText(owned))
        }
    }
}

impl_sql_translatable!(JsonbText, "jsonb");

// SAFETY: unboxed through `FromDatum` exactly as pgrx unboxes its own
// `JsonB`: the argument is declared `jsonb` in SQL (see above).
unsafe impl<'fcx> ArgAbi<'fcx> for JsonbText {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        // SAFETY: the caller guarantees a non-null jsonb argument.
        unsafe { arg.unbox_arg_using_from_datum() }
            .unwrap_or_else(|| panic!("argument {index} must not be null"))
    }

    unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
        // SAFETY: the caller guarantees a jsonb argument, null or not.
        unsafe { arg.unbox_arg_using_from_datum() }.into()
    }
}

/// A `jsonb` value as its binary varlena bytes: built once (at launch) by
/// PostgreSQL's own `jsonb_in`, kept as bytes, and returned as a datum by
/// copying them, so a listing never parses JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonbBytes(pub Vec<u8>);

impl JsonbBytes {
    /// The jsonb of `json` (valid JSON text, as serde_json prints it).
    pub fn from_json(json: &str) -> JsonbBytes {
        let text = std::ffi::CString::new(json).expect("JSON text escapes NUL as \\u0000");
        // SAFETY: jsonb_in takes a NUL-terminated C string and returns a
        // fresh, untoasted jsonb varlena in the current memory context,
        // whose bytes we copy.
        unsafe {
            let datum = pgrx::direct_function_call_as_datum(
                pg_sys::jsonb_in,
                &[Some(pg_sys::Datum::from(text.as_ptr()))],
            );
            let Some(datum) = datum else {
                return JsonbBytes(Vec::new());
            };
            let ptr = datum.cast_mut_ptr::<pg_sys::varlena>();
            let len = pgrx::varlena::varsize_any(ptr);
            JsonbBytes(std::slice::from_raw_parts(ptr as *const u8, len).to_vec())
        }
    }
}

impl pgrx::IntoDatum for JsonbBytes {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        if self.0.is_empty() {
            return None;
        }
        // SAFETY: palloc'd memory of the bytes' length in the current
        // context; the bytes are a whole jsonb varlena with its header.
        unsafe {
            let ptr = pg_sys::palloc(self.0.len()) as *mut u8;
            std::ptr::copy_nonoverlapping(self.0.as_ptr(), ptr, self.0.len());
            Some(pg_sys::Datum::from(ptr))
        }
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

impl_sql_translatable!(JsonbBytes, "jsonb");

// SAFETY: returned as `jsonb` through `into_datum`, exactly as pgrx returns
// its own types.
unsafe impl pgrx::callconv::BoxRet for JsonbBytes {
    unsafe fn box_into<'fcx>(
        self,
        fcinfo: &mut pgrx::callconv::FcInfo<'fcx>,
    ) -> pgrx::datum::Datum<'fcx> {
        match pgrx::IntoDatum::into_datum(self) {
            // SAFETY: a datum made in this call's memory context.
            Some(datum) => unsafe { fcinfo.return_raw_datum(datum) },
            None => fcinfo.return_null(),
        }
    }
}
