//! Who may do what, checked in the session that asks: who the caller is,
//! which roles it may act as, whether a worker may run as a role in a
//! database (resolved to the OIDs the worker will connect to), and who may
//! see a worker's data.

use pgrx::pg_sys;
use pgrx::prelude::*;

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

/// Whether the current user may see what a worker's data can carry
/// (config, errors, run figures): only for workers it may wait on, as
/// `pg_stat_activity` hides other roles' queries.
pub fn may_see_data(rec: &WorkerRecord) -> bool {
    may_act_as(rec.role_oid)
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

fn spi_failure(e: pgrx::spi::Error) -> BgwError {
    BgwError::Internal(format!("catalog lookup failed: {e}"))
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
/// Read-only queries: a launch on a hot standby may not take a
/// transaction id.
pub fn authorise(
    database: Option<&str>,
    role: &str,
    bypass_allowconn: bool,
) -> Result<Authorised, BgwError> {
    let (oid, can_login) = Spi::connect(|client| {
        let table = client
            .select(
                "SELECT r.oid, r.rolcanlogin FROM (SELECT 1) AS one \
                 LEFT JOIN pg_catalog.pg_roles r ON r.rolname = $1",
                None,
                &[role.into()],
            )?
            .first();
        Ok::<_, pgrx::spi::Error>((table.get::<pg_sys::Oid>(1)?, table.get::<bool>(2)?))
    })
    .map_err(spi_failure)?;
    let (Some(oid), Some(can_login)) = (oid, can_login) else {
        return Err(BgwError::UndefinedObject(format!(
            "role \"{role}\" does not exist"
        )));
    };
    if !may_act_as(oid.to_u32()) {
        return Err(BgwError::NotAllowed(format!(
            "permission denied to launch a worker as role \"{role}\""
        )));
    }
    if !can_login {
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

fn check_database(
    db: &str,
    role: &str,
    role_oid: pg_sys::Oid,
    bypass_allowconn: bool,
) -> Result<u32, BgwError> {
    let (oid, allowconn, may_connect) = Spi::connect(|client| {
        let table = client
            .select(
                "SELECT d.oid, d.datallowconn, \
                        pg_catalog.has_database_privilege($2, d.oid, 'CONNECT') \
                 FROM (SELECT 1) AS one \
                 LEFT JOIN pg_catalog.pg_database d ON d.datname = $1",
                None,
                &[db.into(), role_oid.into()],
            )?
            .first();
        Ok::<_, pgrx::spi::Error>((
            table.get::<pg_sys::Oid>(1)?,
            table.get::<bool>(2)?,
            table.get::<bool>(3)?,
        ))
    })
    .map_err(spi_failure)?;
    let Some(oid) = oid else {
        return Err(BgwError::UndefinedDatabase(format!(
            "database \"{db}\" does not exist"
        )));
    };
    if allowconn == Some(false) && !bypass_allowconn {
        return Err(BgwError::WrongState {
            message: format!("database \"{db}\" does not allow connections"),
            hint: Some(
                "Allow them with ALTER DATABASE ... ALLOW_CONNECTIONS true, or, as a superuser, \
                 launch with bypass_allowconn => true."
                    .into(),
            ),
        });
    }
    if may_connect != Some(true) {
        return Err(BgwError::NotAllowed(format!(
            "role \"{role}\" may not connect to database \"{db}\" (no CONNECT privilege)"
        )));
    }
    Ok(oid.to_u32())
}
