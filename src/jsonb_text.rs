//! `JsonbText`: a `jsonb` argument received as the text `jsonb_out` prints,
//! without parsing it. pgrx's own `JsonB` parses the value while it unboxes
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
