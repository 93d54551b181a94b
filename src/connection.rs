//! A worker's database connection, made as it was authorised at launch.
//!
//! Dynamic workers connect to the database OID and role OID checked by the
//! launching session (`BackgroundWorkerInitializeConnectionByOid`), never
//! to names looked up again: a role renamed, and another created under its
//! old name, cannot lend its identity to a restarted worker. Static workers
//! follow the names in the server's configuration, which only a superuser
//! writes. When what a worker was authorised as is gone (its role or its
//! database), the connection fails for good and the worker is not
//! restarted: see [`gone_for_good`].

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use pgrx::pg_sys;

use crate::error::BgwError;
use crate::registry::{self, Connection, WorkerRecord};

/// True while this process is inside the server's connection routine.
static CONNECTING: AtomicBool = AtomicBool::new(false);

/// A spare running a worker: once connected, it asks the dispatcher for
/// the spare that replaces it.
static REPLACE_WHEN_CONNECTED: AtomicBool = AtomicBool::new(false);

/// Asks for the dispatcher to be woken once this worker is connected.
pub fn replace_when_connected() {
    REPLACE_WHEN_CONNECTED.store(true, Ordering::Relaxed);
}

/// How long after connecting a process given back (see `worker.rs`) may
/// still run later workers over its connection: what the server reads
/// once at connection (the settings of `ALTER ROLE/DATABASE ... SET`) is
/// at most that old for them.
pub const REUSE_FOR: i64 = 60_000_000;

/// What this process is connected as.
#[derive(Debug, Clone, Copy)]
enum Connected {
    Never,
    /// By OID, as a dynamic worker, at this time (`TimestampTz`).
    As(Connection, i64),
    /// Any other way (a static worker's, by name): never lent to another
    /// worker.
    Otherwise,
}

static CONNECTED: Mutex<Connected> = Mutex::new(Connected::Never);

/// What a process given back at `now` may be lent as: `Some(None)` if it
/// never connected, `Some(Some(c))` if it is connected as `c` recently
/// enough (see [`REUSE_FOR`]); `None` if it must not serve another worker.
pub fn lendable_as(now: i64) -> Option<Option<Connection>> {
    match CONNECTED.lock().map(|c| *c) {
        Ok(Connected::Never) => Some(None),
        Ok(Connected::As(c, at)) if now.saturating_sub(at) <= REUSE_FOR => Some(Some(c)),
        _ => None,
    }
}

/// Whether this process is connected already, by OID, exactly as a
/// worker connecting to `database_oid` as `role_oid` (`bypass_allowconn`)
/// would be: a process given back and handed such a worker, which is then
/// ready as it starts.
pub fn connected_exactly_as(database_oid: u32, role_oid: u32, bypass_allowconn: bool) -> bool {
    matches!(
        CONNECTED.lock().map(|c| *c),
        Ok(Connected::As(c, _)) if c.is_for(database_oid, role_oid, bypass_allowconn)
    )
}

impl Connection {
    /// Whether a worker connecting to `database_oid` as `role_oid`
    /// (`bypass_allowconn`) would connect exactly so.
    fn is_for(&self, database_oid: u32, role_oid: u32, bypass_allowconn: bool) -> bool {
        (self.database_oid, self.role_oid, self.bypass_allowconn)
            == (database_oid, role_oid, bypass_allowconn)
    }
}

fn set_connected(state: Connected) {
    if let Ok(mut c) = CONNECTED.lock() {
        *c = state;
    }
}

/// A C string for the server, refusing a NUL byte (SQLSTATE 22023) rather
/// than passing on a text cut short.
pub fn c_text(what: &str, value: &str) -> Result<CString, BgwError> {
    CString::new(value).map_err(|_| BgwError::invalid(format!("{what} must not contain NUL")))
}

/// Connects as recorded: the database, the role,
/// `BGWORKER_BYPASS_ALLOWCONN`. Then records the worker as ready, so
/// `launch(..., wait => true)` returns (and, `woken`, as one that
/// `terminate` wakes from then on). A failure is a FATAL error that ends
/// the process.
pub fn connect(record: &WorkerRecord, woken: bool) {
    if record.def.database.is_some() {
        let flags = if record.bypass_allowconn {
            pg_sys::BGWORKER_BYPASS_ALLOWCONN
        } else {
            0
        };
        CONNECTING.store(true, Ordering::Relaxed);
        let before = CONNECTED.lock().map_or(Connected::Otherwise, |c| *c);
        match before {
            // A process given back keeps its connection: it was handed
            // this worker because it is connected exactly so.
            Connected::As(c, _)
                if c.is_for(
                    record.database_oid,
                    record.role_oid,
                    record.bypass_allowconn,
                ) => {}
            Connected::As(..) | Connected::Otherwise => BgwError::Internal(format!(
                "worker {} was handed a process connected otherwise",
                record.id
            ))
            .report(),
            Connected::Never if record.is_static => {
                set_connected(Connected::Otherwise);
                connect_by_name(record, flags);
            }
            Connected::Never => {
                set_connected(Connected::Otherwise);
                // SAFETY: called once, at worker start, before any
                // transaction (a process connected before was handed only a
                // worker that connects as it did, above).
                unsafe {
                    pg_sys::BackgroundWorkerInitializeConnectionByOid(
                        pg_sys::Oid::from(record.database_oid),
                        pg_sys::Oid::from(record.role_oid),
                        flags as _,
                    );
                }
                set_connected(Connected::As(
                    Connection {
                        database_oid: record.database_oid,
                        role_oid: record.role_oid,
                        bypass_allowconn: record.bypass_allowconn,
                        superuser: session_is_superuser(),
                    },
                    // SAFETY: reading the clock has no preconditions.
                    unsafe { pg_sys::GetCurrentTimestamp() },
                ));
            }
        }
        CONNECTING.store(false, Ordering::Relaxed);
    }
    registry::mark_connected(record.at, woken);
    if REPLACE_WHEN_CONNECTED.swap(false, Ordering::Relaxed) {
        registry::poke_dispatcher();
    }
}

/// Whether the role this process connected as is a superuser, as the
/// server read it while connecting (its `is_superuser` setting, made from
/// the same catalog row as the session's rights): not a second reading,
/// which a change committed in between could make differ.
fn session_is_superuser() -> bool {
    // SAFETY: a built-in setting's value, a string the server keeps; read
    // at once.
    unsafe {
        let value = pg_sys::GetConfigOption(c"is_superuser".as_ptr(), false, false);
        !value.is_null() && std::ffi::CStr::from_ptr(value).to_bytes() == b"on"
    }
}

fn connect_by_name(record: &WorkerRecord, flags: u32) {
    let database = record.def.database.as_deref().unwrap_or_default();
    let db = c_text("database name", database).unwrap_or_else(|e| e.report());
    let user = record
        .def
        .role
        .as_deref()
        .map(|r| c_text("role name", r).unwrap_or_else(|e| e.report()));
    // SAFETY: called once, at worker start, with NUL-terminated strings that
    // outlive the call.
    unsafe {
        pg_sys::BackgroundWorkerInitializeConnection(
            db.as_ptr(),
            user.as_ref().map_or(std::ptr::null(), |u| u.as_ptr()),
            flags as _,
        );
    }
}

/// Whether an error with `sqlstate`, raised now, means the worker can never
/// connect again: it is leaving while connecting, and what it was
/// authorised for is not there (see [`authorisation_gone`]).
pub fn gone_for_good(sqlstate: &str) -> bool {
    CONNECTING.load(Ordering::Relaxed) && authorisation_gone(sqlstate)
}

/// Whether a connection failing with `sqlstate` says that the database
/// (3D000) or the role (28000: gone, or no longer allowed to log in) a
/// worker was authorised for is not there.
pub fn authorisation_gone(sqlstate: &str) -> bool {
    matches!(sqlstate, "3D000" | "28000")
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn nul_bytes_are_refused_not_dropped() {
        let err = c_text("channel", "a\0b").unwrap_err();
        assert_eq!(err.message(), "channel must not contain NUL");
        assert_eq!(c_text("channel", "ab").unwrap().as_bytes(), b"ab");
    }

    #[test]
    fn only_missing_identities_while_connecting_are_final() {
        assert!(!gone_for_good("3D000"), "not while running");
        CONNECTING.store(true, Ordering::Relaxed);
        assert!(gone_for_good("3D000"));
        assert!(gone_for_good("28000"));
        assert!(!gone_for_good("53300"), "too many connections passes");
        CONNECTING.store(false, Ordering::Relaxed);
    }
}
