//! The one error type of the extension and its SQLSTATEs.
//!
//! Core code returns `Result<_, BgwError>`; the SQL layer reports the error
//! once, at the boundary, through [`BgwError::report`].

use std::fmt;

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

use crate::sqlstate::{push_raise, sqlstate_code};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BgwError {
    /// The library is not in `shared_preload_libraries` (55000).
    NotPreloaded,
    /// A value the caller gave is not acceptable (22023).
    InvalidValue {
        message: String,
        detail: Option<String>,
        hint: Option<String>,
    },
    /// A NULL where a value is needed (22004).
    NullValue(String),
    /// Unknown worker id or role (42704).
    UndefinedObject(String),
    /// Unknown database (3D000).
    UndefinedDatabase(String),
    /// The caller may not do this (42501).
    NotAllowed(String),
    /// No postmaster background-worker slot is free (53000).
    NoPostmasterSlot,
    /// The extension's own registry is full (53400).
    RegistryFull(u32),
    /// The worker's role has as many workers as
    /// `lightdb_bgw.max_workers_per_role` allows (53000).
    OverQuota { role: String, limit: u32 },
    /// The free postmaster slots left are kept for superusers by
    /// `lightdb_bgw.superuser_reserved_workers` (53000).
    ReservedForSuperusers(u32),
    /// The launch queue holds `lightdb_bgw.max_queued` workers (53400).
    QueueFull(u32),
    /// The role has this many workers queued (`max_queued_per_role`).
    RoleQueueFull { role: String, limit: u32 },
    /// A configured size limit is exceeded (54000); names the setting.
    SizeLimit {
        message: String,
        setting: &'static str,
    },
    /// An object is not in the state the request needs (55000).
    WrongState {
        message: String,
        hint: Option<String>,
    },
    /// A failure of the server's interfaces that is nobody's input (XX000).
    Internal(String),
    /// A worker's own error, raised again with its own SQLSTATE; `context`
    /// becomes a CONTEXT line (naming the worker).
    Worker {
        sqlstate: String,
        message: String,
        detail: Option<String>,
        hint: Option<String>,
        context: Option<String>,
    },
    /// A wait reached its timeout (57014).
    TimedOut(String),
}

impl BgwError {
    pub fn invalid(message: impl Into<String>) -> Self {
        BgwError::InvalidValue {
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn invalid_with_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        BgwError::InvalidValue {
            message: message.into(),
            detail: None,
            hint: Some(hint.into()),
        }
    }

    pub fn sqlstate(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            BgwError::NotPreloaded => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            BgwError::InvalidValue { .. } => ERRCODE_INVALID_PARAMETER_VALUE,
            BgwError::NullValue(_) => ERRCODE_NULL_VALUE_NOT_ALLOWED,
            BgwError::UndefinedObject(_) => ERRCODE_UNDEFINED_OBJECT,
            BgwError::UndefinedDatabase(_) => ERRCODE_INVALID_CATALOG_NAME,
            BgwError::NotAllowed(_) => ERRCODE_INSUFFICIENT_PRIVILEGE,
            BgwError::NoPostmasterSlot
            | BgwError::OverQuota { .. }
            | BgwError::ReservedForSuperusers(_) => ERRCODE_INSUFFICIENT_RESOURCES,
            BgwError::RegistryFull(_) | BgwError::QueueFull(_) | BgwError::RoleQueueFull { .. } => {
                ERRCODE_CONFIGURATION_LIMIT_EXCEEDED
            }
            BgwError::SizeLimit { .. } => ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            BgwError::WrongState { .. } => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            BgwError::Internal(_) => ERRCODE_INTERNAL_ERROR,
            BgwError::TimedOut(_) => ERRCODE_QUERY_CANCELED,
            BgwError::Worker { sqlstate, .. } => sqlstate_code(sqlstate),
        }
    }

    pub fn message(&self) -> String {
        match self {
            BgwError::NotPreloaded => {
                "lightdb_bgw must be loaded via \"shared_preload_libraries\"".into()
            }
            BgwError::InvalidValue { message, .. } => message.clone(),
            BgwError::NullValue(what) => format!("{what} must not be null"),
            BgwError::UndefinedObject(m)
            | BgwError::UndefinedDatabase(m)
            | BgwError::NotAllowed(m)
            | BgwError::TimedOut(m)
            | BgwError::Internal(m) => m.clone(),
            BgwError::WrongState { message, .. }
            | BgwError::Worker { message, .. }
            | BgwError::SizeLimit { message, .. } => message.clone(),
            BgwError::NoPostmasterSlot => "no background worker slot is free".into(),
            BgwError::RegistryFull(n) => {
                format!("the lightdb_bgw registry is full ({n} workers)")
            }
            BgwError::OverQuota { role, limit: 0 } => {
                format!("role \"{role}\" may have no background workers")
            }
            BgwError::OverQuota { role, limit } => {
                format!("role \"{role}\" already has {limit} background workers")
            }
            BgwError::ReservedForSuperusers(n) => {
                format!("the remaining background worker slots are reserved for superusers ({n})")
            }
            BgwError::QueueFull(n) => {
                format!("the lightdb_bgw launch queue is full ({n} workers)")
            }
            BgwError::RoleQueueFull { role, limit } => {
                format!(
                    "role \"{role}\" already has {limit} workers in the lightdb_bgw launch queue"
                )
            }
        }
    }

    pub fn detail(&self) -> Option<String> {
        match self {
            BgwError::InvalidValue { detail, .. } | BgwError::Worker { detail, .. } => {
                detail.clone()
            }
            _ => None,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            BgwError::NotPreloaded => Some(
                "Add lightdb_bgw to \"shared_preload_libraries\" in postgresql.conf and restart the server."
                    .into(),
            ),
            BgwError::InvalidValue { hint, .. }
            | BgwError::WrongState { hint, .. }
            | BgwError::Worker { hint, .. } => hint.clone(),
            BgwError::NoPostmasterSlot => Some(
                "Launch with queue => true to wait for a slot, stop other background workers, or raise \"max_worker_processes\" and restart the server."
                    .into(),
            ),
            BgwError::OverQuota { limit: 0, .. } => Some(
                "Its \"lightdb_bgw.max_workers_per_role\" is 0; the queue cannot help.".into(),
            ),
            BgwError::OverQuota { .. } => Some(
                "The limit is set by \"lightdb_bgw.max_workers_per_role\"; launch with queue => true to wait for one of the role's workers to stop."
                    .into(),
            ),
            BgwError::ReservedForSuperusers(_) => Some(
                "The reserve is set by \"lightdb_bgw.superuser_reserved_workers\"; launch with queue => true to wait for a slot."
                    .into(),
            ),
            BgwError::QueueFull(_) => Some(
                "Wait for queued workers to start or raise \"lightdb_bgw.max_queued\"."
                    .into(),
            ),
            BgwError::RoleQueueFull { .. } => Some(
                "The limit is set by \"lightdb_bgw.max_queued_per_role\"; wait for the role's queued workers to start."
                    .into(),
            ),
            BgwError::RegistryFull(_) => Some(
                "Stop workers you no longer need or raise \"lightdb_bgw.max_workers\" and restart the server."
                    .into(),
            ),
            BgwError::SizeLimit { setting, .. } => {
                Some(format!("The limit is set by \"{setting}\"."))
            }
            _ => None,
        }
    }

    /// Raises this error as a PostgreSQL ERROR. Never returns. A worker's
    /// error keeps its own code, also one pgrx's enum does not name.
    pub fn report(self) -> ! {
        if let BgwError::Worker {
            sqlstate, context, ..
        } = &self
        {
            push_raise(Some(sqlstate), context.as_deref());
        }
        let mut report = ErrorReport::new(self.sqlstate(), self.message(), "lightdb_bgw");
        if let Some(detail) = self.detail() {
            report = report.set_detail(detail);
        }
        if let Some(hint) = self.hint() {
            report = report.set_hint(hint);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("an ERROR report does not return")
    }
}

impl fmt::Display for BgwError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())?;
        if let Some(detail) = self.detail() {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BgwError {}

/// Unwraps a core result at the SQL boundary, raising the error if any.
pub trait OrReport<T> {
    fn or_report(self) -> T;
}

impl<T> OrReport<T> for Result<T, BgwError> {
    fn or_report(self) -> T {
        match self {
            Ok(value) => value,
            Err(err) => err.report(),
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::sqlstate::sqlstate_text;

    #[test]
    fn sqlstates_are_the_documented_ones() {
        assert_eq!(
            BgwError::NotPreloaded.sqlstate(),
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
        );
        assert_eq!(sqlstate_text(BgwError::RegistryFull(4).sqlstate()), "53400");
        let big = BgwError::SizeLimit {
            message: "config is too big".into(),
            setting: "lightdb_bgw.max_config_size",
        };
        assert_eq!(sqlstate_text(big.sqlstate()), "54000");
        assert!(big
            .hint()
            .unwrap()
            .contains("\"lightdb_bgw.max_config_size\""));
        assert_eq!(
            BgwError::NoPostmasterSlot.sqlstate(),
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES
        );
        assert!(BgwError::NoPostmasterSlot
            .hint()
            .unwrap()
            .contains("\"max_worker_processes\""));
    }

    #[test]
    fn not_preloaded_hint_names_the_setting() {
        let hint = BgwError::NotPreloaded.hint().unwrap();
        assert!(hint.contains("\"shared_preload_libraries\""));
        assert!(hint.ends_with('.'));
        assert!(!BgwError::NotPreloaded.message().ends_with('.'));
    }
}
