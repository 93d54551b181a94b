//! A worker's full last error ([`ErrorText`]): SQLSTATE, message,
//! detail, hint and context, as PostgreSQL reported them, the short form
//! the `workers` view shows, and the bytes the registry stores.

use super::wire::{Reader, Writer, VERSION};

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

    /// The bytes the registry stores.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(vec![VERSION]);
        w.str(&self.sqlstate);
        w.str(&self.message);
        w.opt_str(&self.detail);
        w.opt_str(&self.hint);
        w.opt_str(&self.context);
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
