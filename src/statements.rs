//! A SQL text split into its statements by the server's own raw parser
//! (so a `;` inside a string, a comment or a dollar-quoted body splits
//! nothing), each statement a C string for SPI. A runtime helper of the
//! `sql` kind; it knows no kind.

use std::ffi::CString;

use pgrx::pg_sys;

use crate::error::BgwError;

/// The statements of `sql`, as the server's parser splits them; a text
/// with a NUL byte (which no SQL value holds) is refused with 22023.
pub fn statements(sql: &str) -> Vec<CString> {
    let Ok(text) = CString::new(sql) else {
        BgwError::invalid("the SQL text contains a NUL byte").report()
    };
    // SAFETY: the raw parser reads a NUL-terminated string and returns a
    // List of RawStmt in the current memory context (or raises a syntax
    // error); locations are byte offsets into the text.
    unsafe {
        #[cfg(not(feature = "pg13"))]
        let list = pg_sys::raw_parser(text.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        #[cfg(feature = "pg13")]
        let list = pg_sys::raw_parser(text.as_ptr());
        if list.is_null() {
            return Vec::new();
        }
        (0..(*list).length as usize)
            .map(|i| {
                let raw = (*(*list).elements.add(i)).ptr_value as *const pg_sys::RawStmt;
                let start = ((*raw).stmt_location.max(0) as usize).min(sql.len());
                let end = match (*raw).stmt_len {
                    0 => sql.len(),
                    len => (start + len as usize).min(sql.len()),
                };
                CString::new(sql.get(start..end).unwrap_or(""))
                    .expect("a part of a text without NUL bytes has none")
            })
            .collect()
    }
}
