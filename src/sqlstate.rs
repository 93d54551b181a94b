//! SQLSTATEs as clients see them (five characters) and as the server
//! packs them (`MAKE_SQLSTATE`): every valid code, also the many that
//! pgrx's `PgSqlErrorCode` does not name (a PL/pgSQL `RAISE ... USING
//! ERRCODE = 'P0123'`, an extension's own). pgrx turns those into XX000
//! when it catches or raises an error, so a worker's error keeps its code
//! through two error context callbacks: one that notes the code of the
//! error being reported while a unit of work runs ([`CodeWatch`]), and one
//! that sets it again on the error raised for the reader ([`push_raise`]).

use std::ffi::{c_char, c_int, c_void, CString};

use pgrx::pg_sys;
use pgrx::PgSqlErrorCode;

/// The server's packed code of a five-character SQLSTATE (digits and
/// upper-case letters), or `None` for anything else.
pub fn pack(text: &str) -> Option<i32> {
    let bytes = text.as_bytes();
    let valid = bytes.len() == 5
        && bytes
            .iter()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
    valid.then(|| {
        bytes.iter().enumerate().fold(0i32, |acc, (i, b)| {
            acc | ((((b - b'0') & 0x3f) as i32) << (6 * i))
        })
    })
}

/// The five characters of a packed code.
pub fn unpack(packed: i32) -> String {
    let packed = packed as u32;
    (0..5)
        .map(|i| char::from((((packed >> (6 * i)) & 0x3f) as u8) + b'0'))
        .collect()
}

/// The five-character SQLSTATE of an error code, as clients see it.
pub fn sqlstate_text(code: PgSqlErrorCode) -> String {
    unpack(code as isize as i32)
}

/// The error code of a five-character SQLSTATE; anything else, or a code
/// the bindings do not name, is an internal error (see [`push_raise`] for
/// raising any valid code).
pub fn sqlstate_code(text: &str) -> PgSqlErrorCode {
    pack(text).map_or(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, PgSqlErrorCode::from)
}

/// Splits a recorded `SQLSTATE: message` into its parts.
pub fn split_recorded(text: &str) -> Option<(&str, &str)> {
    let (code, message) = text.split_once(": ")?;
    pack(code).is_some().then_some((code, message))
}

thread_local! {
    /// The code of the last error reported under a [`CodeWatch`].
    static NOTED: std::cell::Cell<c_int> = const { std::cell::Cell::new(0) };
}

/// Notes the code of the report being finished (called by the server for
/// every report while the watch's callback is on the stack), unless it is
/// of the classes of success, warning or no data (00, 01, 02): a NOTICE or
/// WARNING after an error was caught in PL/pgSQL is not the error.
unsafe extern "C-unwind" fn note_code(_arg: *mut c_void) {
    // SAFETY: called from errfinish, with a report on the error stack.
    let code = unsafe { pg_sys::geterrcode() };
    if is_error(code) {
        NOTED.set(code);
    }
}

/// Whether a packed code is of an error class (not 00, 01 or 02).
fn is_error(code: i32) -> bool {
    !matches!(&unpack(code)[..2], "00" | "01" | "02")
}

/// Watches the reports made while a unit of work runs, so that its error's
/// own code is known after pgrx has caught it.
pub struct CodeWatch {
    callback: Box<pg_sys::ErrorContextCallback>,
    previous: *mut pg_sys::ErrorContextCallback,
}

impl CodeWatch {
    /// Puts the watch on the server's error context stack.
    pub fn start() -> CodeWatch {
        NOTED.set(0);
        // SAFETY: the stack is this process's; the callback lives in the
        // box until `finish` takes it off again.
        unsafe {
            let previous = pg_sys::error_context_stack;
            let mut callback = Box::new(pg_sys::ErrorContextCallback {
                previous,
                callback: Some(note_code),
                arg: std::ptr::null_mut(),
            });
            pg_sys::error_context_stack = &mut *callback;
            CodeWatch { callback, previous }
        }
    }

    /// Takes the watch off the stack (as it was before `start`); given the
    /// SQLSTATE pgrx made of an error of the server's it caught (not a Rust
    /// panic or a report of ours, which never reach the callback), the code
    /// the server reported for it, when pgrx's is what it makes of that
    /// code (so the last error watched was that one). One case stays wrong:
    /// a PL/pgSQL `RAISE;` that throws a caught error again runs no
    /// callback, so an error with another unnamed code caught in between
    /// would be taken for it.
    pub fn finish(self, caught: Option<&str>) -> Option<String> {
        // SAFETY: restores the stack as `start` found it; the frames above
        // ours, if any, belonged to the work that has ended.
        unsafe { pg_sys::error_context_stack = self.previous };
        drop(self.callback);
        let noted = NOTED.replace(0);
        let caught = sqlstate_code(caught?);
        (noted != 0 && PgSqlErrorCode::from(noted) == caught).then(|| unpack(noted))
    }
}

/// What the raising callback puts on the error: its code and a CONTEXT
/// line, if any.
struct Raise {
    code: Option<i32>,
    context: Option<CString>,
}

extern "C-unwind" {
    // elog.h; the bindings leave these out (one is variadic).
    fn errcode(sqlerrcode: c_int) -> c_int;
    fn errcontext_msg(fmt: *const c_char, ...) -> c_int;
}

/// Sets the code and adds the CONTEXT line of the error being reported.
unsafe extern "C-unwind" fn raise_callback(arg: *mut c_void) {
    // SAFETY: called by the server while it reports an error, with the
    // `Raise` that `push_raise` leaked for that report; errcode sets the
    // code of the report being finished, and "%s" takes the text verbatim.
    unsafe {
        let raise = &*(arg as *const Raise);
        if let Some(code) = raise.code {
            errcode(code);
        }
        if let Some(context) = &raise.context {
            errcontext_msg(c"%s".as_ptr(), context.as_ptr());
        }
    }
}

/// Puts `code` (a five-character SQLSTATE) and a CONTEXT line on the error
/// about to be raised: a callback on the server's error context stack. Only
/// called right before raising: the server resets the stack when it
/// recovers from the error. The callback's data is leaked (a few bytes an
/// error raised for a reader).
pub fn push_raise(code: Option<&str>, context: Option<&str>) {
    let raise = Box::new(Raise {
        code: code.and_then(pack),
        context: context.map(|c| CString::new(c.replace('\0', " ")).expect("NUL bytes replaced")),
    });
    // SAFETY: palloc'd in the current context, which lives until the error
    // is cleaned up; the callback struct is linked on top of the stack.
    unsafe {
        let callback = pg_sys::palloc0(std::mem::size_of::<pg_sys::ErrorContextCallback>())
            as *mut pg_sys::ErrorContextCallback;
        (*callback).previous = pg_sys::error_context_stack;
        (*callback).callback = Some(raise_callback);
        (*callback).arg = Box::into_raw(raise).cast();
        pg_sys::error_context_stack = callback;
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn sqlstates_unpack() {
        assert_eq!(
            sqlstate_text(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE),
            "22023"
        );
        assert_eq!(
            sqlstate_text(PgSqlErrorCode::ERRCODE_INVALID_CATALOG_NAME),
            "3D000"
        );
        assert_eq!(
            sqlstate_text(PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES),
            "53000"
        );
        assert_eq!(
            sqlstate_text(PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE),
            "42P01"
        );
    }

    #[test]
    fn sqlstates_pack() {
        for code in ["22023", "3D000", "53300", "28000", "42P01", "57014"] {
            assert_eq!(sqlstate_text(sqlstate_code(code)), code);
        }
        assert_eq!(
            sqlstate_code("nope"),
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR
        );
        assert_eq!(
            split_recorded("53300: too many connections for role \"x\""),
            Some(("53300", "too many connections for role \"x\""))
        );
        assert_eq!(split_recorded("no code here"), None);
    }

    #[test]
    fn codes_pgrx_does_not_name_survive_the_round_trip() {
        for code in ["P0123", "U0001", "22XYZ", "45000", "ZZ999"] {
            let packed = pack(code).expect(code);
            assert_eq!(unpack(packed), code);
            // pgrx's enum makes an internal error of it: hence the callbacks.
            assert_eq!(
                PgSqlErrorCode::from(packed),
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR
            );
            assert_eq!(split_recorded(&format!("{code}: m")), Some((code, "m")));
        }
        assert!(is_error(pack("P0123").unwrap()));
        for not_an_error in ["00000", "01000", "01U01", "02000"] {
            assert!(!is_error(pack(not_an_error).unwrap()), "{not_an_error}");
        }
        assert_eq!(pack("p0123"), None);
        assert_eq!(pack("P012"), None);
    }
}
