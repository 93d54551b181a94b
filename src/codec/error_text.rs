//! A worker's full last error ([`ErrorText`]): SQLSTATE, message,
//! detail, hint and context, as PostgreSQL reported them, the short form
//! the `workers` view shows, and the bytes the registry stores.

use super::wire::{Reader, Writer, VERSION};

/// The most bytes of a message, detail, hint or context that are kept.
pub const MAX_FIELD: usize = 64 * 1024;

/// `text` cut to at most [`MAX_FIELD`] bytes at a character boundary,
/// ending in "..." when cut.
fn cut(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_FIELD {
        return text.into();
    }
    let mut end = MAX_FIELD - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end]).into()
}

/// A worker's error in full, as PostgreSQL reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorText {
    pub sqlstate: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub context: Option<String>,
}

impl std::fmt::Display for ErrorText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.sqlstate, self.message)
    }
}

impl ErrorText {
    /// `SQLSTATE: message`, as the `workers` view shows it.
    pub fn short(&self) -> String {
        match self.sqlstate.as_str() {
            "" => self.message.clone(), // a note, not an error
            code => format!("{code}: {}", self.message),
        }
    }

    /// The bytes the registry stores: each text cut to its first
    /// [`MAX_FIELD`] bytes (an error can quote megabytes of data; what is
    /// stored counts against shared memory).
    pub fn encode(&self) -> Vec<u8> {
        let opt = |v: &Option<String>| v.as_deref().map(|t| cut(t).into_owned());
        let mut w = Writer(vec![VERSION]);
        w.str(&self.sqlstate);
        w.str(&cut(&self.message));
        w.opt_str(&opt(&self.detail));
        w.opt_str(&opt(&self.hint));
        w.opt_str(&opt(&self.context));
        w.0
    }

    /// The error stored as `bytes` by [`ErrorText::encode`].
    pub fn decode(bytes: &[u8]) -> Result<ErrorText, String> {
        let mut r = Reader(bytes);
        if r.u8()? != VERSION {
            return Err("error of another version".into());
        }
        Ok(ErrorText {
            sqlstate: r.str()?,
            message: r.str()?,
            detail: r.opt_str()?,
            hint: r.opt_str()?,
            context: r.opt_str()?,
        })
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn long_texts_are_kept_cut() {
        let e = ErrorText {
            sqlstate: "P0001".into(),
            message: "é".repeat(MAX_FIELD),
            detail: Some("d".repeat(10)),
            ..Default::default()
        };
        let back = ErrorText::decode(&e.encode()).unwrap();
        assert!(back.message.len() <= MAX_FIELD && back.message.ends_with("..."));
        assert!(back.message.starts_with("éé"));
        assert_eq!(back.detail, e.detail, "a short text is kept whole");
    }

    #[test]
    fn errors_round_trip_in_full() {
        let e = ErrorText {
            sqlstate: "22P02".into(),
            message: "invalid input syntax for type integer: \"x\"".repeat(40),
            detail: Some("a detail".into()),
            hint: None,
            context: Some("SQL statement \"SELECT 'x'::int\"".into()),
        };
        assert_eq!(ErrorText::decode(&e.encode()), Ok(e.clone()));
        assert!(e.short().starts_with("22P02: invalid input syntax"));
        assert!(e.short().len() > 256, "not cut");
    }
}
