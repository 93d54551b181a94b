//! Who may do what, checked in the session that asks: who the caller is,
//! which roles it may act as, whether a worker may run as a role in a
//! database (resolved to the OIDs the worker will connect to), and who may
//! see a worker's data.

use pgrx::pg_sys;

use crate::catalog::{self, AclOn};
use crate::error::BgwError;
use crate::registry::WorkerRecord;

/// The current user's name and whether it is a superuser.
pub fn current_user() -> (String, bool) {
    // SAFETY: plain reads of the session state in a backend.
    unsafe {
        let oid = pg_sys::GetUserId();
        let name = pg_sys::GetUserNameFromId(oid, false);
        let text = std::ffi::CStr::from_ptr(name)
            .to_string_lossy()
            .into_owned();
        (text, pg_sys::superuser())
    }
}

/// Whether the current user may act as `role_oid` (SET ROLE to it).
pub fn may_act_as(role_oid: u32) -> bool {
    let role = pg_sys::Oid::from(role_oid);
    // SAFETY: catalog lookups in a backend inside a transaction.
    unsafe {
        if pg_sys::superuser() {
            return true;
        }
        if role_oid == 0 {
            // The bootstrap superuser: superusers only.
            return false;
        }
        #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
        {
            pg_sys::is_member_of_role(pg_sys::GetUserId(), role)
        }
        #[cfg(any(feature = "pg16", feature = "pg17", feature = "pg18"))]
        {
            pg_sys::member_can_set_role(pg_sys::GetUserId(), role)
        }
    }
}

/// Who lists the registry: whether the caller may see each worker's data,
/// asked of the catalogs once per role however many rows there are.
pub struct Viewer {
    superuser: bool,
    seen: Vec<(u32, bool)>,
}

impl Viewer {
    pub fn new() -> Viewer {
        // SAFETY: a plain read of the session state in a backend.
        let superuser = unsafe { pg_sys::superuser() };
        Viewer {
            superuser,
            seen: Vec::new(),
        }
    }

    /// [`Viewer::may_see`] as already decided, without a catalog lookup:
    /// false for a role not decided yet.
    pub fn decided(&self, role_oid: u32) -> bool {
        self.superuser || self.seen.iter().any(|&(role, may)| role == role_oid && may)
    }

    /// Whether the caller may see the data of a worker of `role_oid`.
    pub fn may_see(&mut self, role_oid: u32) -> bool {
        if self.superuser {
            return true;
        }
        if let Some((_, may)) = self.seen.iter().find(|(r, _)| *r == role_oid) {
            return *may;
        }
        let may = may_act_as(role_oid);
        self.seen.push((role_oid, may));
        may
    }
}

impl Default for Viewer {
    fn default() -> Self {
        Viewer::new()
    }
}

/// Refuses `what` on `rec` unless the caller may act as the worker's role.
pub fn check_may_control(rec: &WorkerRecord, what: &str) -> Result<(), BgwError> {
    if may_act_as(rec.role_oid) {
        Ok(())
    } else {
        Err(BgwError::NotAllowed(format!(
            "permission denied to {what} worker {}",
            rec.id
        )))
    }
}

/// What a launch is authorised as: the OIDs the worker connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authorised {
    pub role_oid: u32,
    /// InvalidOid (0) for a worker without a database connection.
    pub database_oid: u32,
}

/// Checks, in the launching backend, that a worker may run as `role` in
/// `database` (or in none), and resolves both to OIDs: the role exists, the
/// caller may act as it, it may log in; the database exists, accepts
/// connections (unless `bypass_allowconn`) and the role may CONNECT to it.
/// Catalog-cache lookups only: fast, and fine on a hot standby.
pub fn authorise(
    database: Option<&str>,
    role: &str,
    bypass_allowconn: bool,
) -> Result<Authorised, BgwError> {
    let role_c = c_name(role)?;
    // What other sessions committed since this transaction last looked (a
    // revoked CONNECT, a role made NOLOGIN or no longer superuser): a
    // worker served by a process already connected (a spare's) is not
    // checked again by the server as a new connection would be.
    // SAFETY: a backend inside a transaction may process invalidations at
    // any time; the server does so at every lock it takes.
    unsafe { pg_sys::AcceptInvalidationMessages() };
    // SAFETY: a catalog lookup in a backend inside a transaction; the name
    // is NUL-terminated and outlives the call.
    let oid = unsafe { pg_sys::get_role_oid(role_c.as_ptr(), true) };
    if oid == pg_sys::InvalidOid {
        return Err(BgwError::UndefinedObject(format!(
            "role \"{role}\" does not exist"
        )));
    }
    if !may_act_as(oid.to_u32()) {
        return Err(BgwError::NotAllowed(format!(
            "permission denied to launch a worker as role \"{role}\""
        )));
    }
    if !role_can_login(oid) {
        return Err(BgwError::NotAllowed(format!(
            "role \"{role}\" is not permitted to log in, so a worker cannot run as it"
        )));
    }
    let database_oid = match database {
        Some(db) => check_database(db, role, oid, bypass_allowconn)?,
        None => 0,
    };
    Ok(Authorised {
        role_oid: oid.to_u32(),
        database_oid,
    })
}

/// A name for the catalogs, as a C string (a NUL is refused).
fn c_name(name: &str) -> Result<std::ffi::CString, BgwError> {
    std::ffi::CString::new(name).map_err(|_| BgwError::invalid("a name must not contain NUL"))
}

/// `rolcanlogin` of role `oid` (which exists).
fn role_can_login(oid: pg_sys::Oid) -> bool {
    catalog::role(oid, |row| row.rolcanlogin).unwrap_or(false)
}

/// `datallowconn` of database `oid`, if it exists.
fn database_allows_connections(oid: pg_sys::Oid) -> Option<bool> {
    catalog::database(oid, |row| row.datallowconn)
}

/// Whether role `role` has CONNECT on database `db`.
fn may_connect(db: pg_sys::Oid, role: pg_sys::Oid) -> bool {
    catalog::has_privilege(AclOn::Database, db, role, pg_sys::ACL_CONNECT)
}

fn check_database(
    db: &str,
    role: &str,
    role_oid: pg_sys::Oid,
    bypass_allowconn: bool,
) -> Result<u32, BgwError> {
    let db_c = c_name(db)?;
    // SAFETY: a catalog lookup, as in `authorise`.
    let oid = unsafe { pg_sys::get_database_oid(db_c.as_ptr(), true) };
    let allowconn = (oid != pg_sys::InvalidOid)
        .then(|| database_allows_connections(oid))
        .flatten();
    let Some(allowconn) = allowconn else {
        return Err(BgwError::UndefinedDatabase(format!(
            "database \"{db}\" does not exist"
        )));
    };
    if !allowconn && !bypass_allowconn {
        return Err(BgwError::WrongState {
            message: format!("database \"{db}\" does not allow connections"),
            hint: Some(
                "Allow them with ALTER DATABASE ... ALLOW_CONNECTIONS true, or, as a superuser, \
                 launch with bypass_allowconn => true."
                    .into(),
            ),
        });
    }
    if !may_connect(oid, role_oid) {
        return Err(BgwError::NotAllowed(format!(
            "role \"{role}\" may not connect to database \"{db}\" (no CONNECT privilege)"
        )));
    }
    Ok(oid.to_u32())
}
