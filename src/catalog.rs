//! Catalog facts by OID, the same on every version: a role's or a
//! database's row read through the server's catalog cache while the cache
//! holds it, the OID of a database or tablespace by name, and the server's
//! privilege check on a database or a tablespace. Lookups for a backend
//! inside a transaction.

use pgrx::pg_sys;

/// Reads the row of `oid` in catalog cache `cache` as a `T` with `read`,
/// before the cache lets go of it; `None` when there is no such row.
///
/// # Safety
/// `T` is the row struct of the catalog that `cache` caches.
unsafe fn row<T, R>(
    cache: pg_sys::SysCacheIdentifier::Type,
    oid: pg_sys::Oid,
    read: impl FnOnce(&T) -> R,
) -> Option<R> {
    // SAFETY: a catalog-cache lookup by OID; the tuple is a row of `T`
    // (the caller's contract) while held, and released before returning.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(cache as i32, pg_sys::Datum::from(oid));
        if tuple.is_null() {
            return None;
        }
        let found = read(&*pg_sys::heap_tuple_get_struct::<T>(tuple));
        pg_sys::ReleaseSysCache(tuple);
        Some(found)
    }
}

/// What `read` makes of role `oid`'s pg_authid row, if the role exists.
pub fn role<R>(oid: pg_sys::Oid, read: impl FnOnce(&pg_sys::FormData_pg_authid) -> R) -> Option<R> {
    // SAFETY: AUTHOID caches pg_authid rows.
    unsafe { row(pg_sys::SysCacheIdentifier::AUTHOID, oid, read) }
}

/// What `read` makes of database `oid`'s pg_database row, if it exists.
pub fn database<R>(
    oid: pg_sys::Oid,
    read: impl FnOnce(&pg_sys::FormData_pg_database) -> R,
) -> Option<R> {
    // SAFETY: DATABASEOID caches pg_database rows.
    unsafe { row(pg_sys::SysCacheIdentifier::DATABASEOID, oid, read) }
}

/// The OID a name lookup of the server gives `name` (`missing_ok`), if
/// any; a name with a NUL names nothing.
fn oid_by_name(
    name: &str,
    lookup: unsafe fn(*const std::ffi::c_char, bool) -> pg_sys::Oid,
) -> Option<pg_sys::Oid> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: a catalog lookup inside a transaction; the name is
    // NUL-terminated and outlives the call.
    let oid = unsafe { lookup(name.as_ptr(), true) };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// The OID of database `name`, if it exists.
pub fn database_oid(name: &str) -> Option<pg_sys::Oid> {
    oid_by_name(name, pg_sys::get_database_oid)
}

/// The OID of tablespace `name`, if it exists.
pub fn tablespace_oid(name: &str) -> Option<pg_sys::Oid> {
    oid_by_name(name, pg_sys::get_tablespace_oid)
}

/// What a privilege check is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclOn {
    Database,
    Tablespace,
}

/// Whether `role` has privilege `mode` (`ACL_CONNECT`, `ACL_CREATE`, ...)
/// on the database or tablespace `oid`, as the server checks it.
pub fn has_privilege(on: AclOn, oid: pg_sys::Oid, role: pg_sys::Oid, mode: u32) -> bool {
    let mode = mode as pg_sys::AclMode;
    // SAFETY: a privilege check in a backend inside a transaction.
    let result = unsafe {
        #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
        {
            match on {
                AclOn::Database => pg_sys::pg_database_aclcheck(oid, role, mode),
                AclOn::Tablespace => pg_sys::pg_tablespace_aclcheck(oid, role, mode),
            }
        }
        #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
        {
            let class = match on {
                AclOn::Database => pg_sys::DatabaseRelationId,
                AclOn::Tablespace => pg_sys::TableSpaceRelationId,
            };
            pg_sys::object_aclcheck(class, oid, role, mode)
        }
    };
    result == pg_sys::AclResult::ACLCHECK_OK
}
