//! Whether a database command will get past PostgreSQL's own checks, asked
//! before the hook stops anybody's workers for it. Workers are stopped
//! only for a command the server will not refuse outright: issued where it
//! allows it (not in a read-only transaction or on a standby; outside a
//! transaction block, for the commands that refuse one), by the
//! database's owner (a superuser, or a member of the owning role) with the
//! other rights it needs (CREATEDB to rename, CREATE on the new
//! tablespace, which is another one and not pg_global; to copy a
//! database, CREATEDB and, unless it is a template, ownership; a new name
//! not taken), not on the session's own database, and with nothing in its
//! way that stays there: prepared transactions, for a drop a template, an
//! active replication slot or a subscription. A move to a tablespace that
//! already holds relations of the database is refused here, with the
//! server's own error, which the server itself raises only after counting
//! sessions. Any other command is left to the server, which raises its
//! own error: no worker is touched and no NOTICE names any.
//! Other sessions in the database are not asked about: the server waits
//! for them to leave (up to 5 s) after the hook, and sessions that are
//! leaving, or parallel workers of the extension's own workers, would be
//! counted wrongly by a look beforehand; if they stay, the owner's command
//! fails with 55006 with the workers already stopped. The facts are read
//! from the catalogs' caches and the server's functions, by OID; the two
//! counts through SQL whose every name and operator is schema-qualified,
//! so no search_path changes them.

use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::command::DbCommand;
use crate::catalog::{self, AclOn};
use crate::error::BgwError;

/// What the checks need of a database's catalog row.
struct Database {
    owner: pg_sys::Oid,
    is_template: bool,
    tablespace: pg_sys::Oid,
}

/// The catalog row of database `oid`, if it exists.
fn database(oid: pg_sys::Oid) -> Option<Database> {
    catalog::database(oid, |row| Database {
        owner: row.datdba,
        is_template: row.datistemplate,
        tablespace: row.dattablespace,
    })
}

/// Whether the current user may create databases (what `RENAME` asks).
fn may_create_databases() -> bool {
    // SAFETY: a plain read of the session's user state.
    let me = unsafe { pg_sys::GetUserId() };
    // SAFETY: a catalog lookup inside the command's transaction.
    let superuser = unsafe { pg_sys::superuser_arg(me) };
    superuser || catalog::role(me, |row| row.rolcreatedb).unwrap_or(false)
}

/// Whether the current user may create objects in tablespace `oid`.
fn may_create_in(tablespace: pg_sys::Oid) -> bool {
    // SAFETY: a plain read of the session's user state.
    let me = unsafe { pg_sys::GetUserId() };
    catalog::has_privilege(AclOn::Tablespace, tablespace, me, pg_sys::ACL_CREATE)
}

/// Whether some relations of database `oid` already lie in tablespace
/// `target`: the server then refuses to move the database there, once it
/// looks into the tablespace's directory for the database (as here).
fn has_relations_in(oid: pg_sys::Oid, target: pg_sys::Oid) -> bool {
    // SAFETY: builds a palloc'd path (relative to the data directory, the
    // process's working directory) from two OIDs; copied, then freed.
    let path = unsafe {
        let raw = pg_sys::GetDatabasePath(oid, target);
        let path = CStr::from_ptr(raw).to_string_lossy().into_owned();
        pg_sys::pfree(raw.cast());
        path
    };
    std::fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_some())
}

/// Whether an active replication slot uses database `oid`.
fn has_active_slot(oid: pg_sys::Oid) -> bool {
    let (mut slots, mut active) = (0, 0);
    // SAFETY: counts under the slots' own lock; plain out-parameters.
    unsafe { pg_sys::ReplicationSlotsCountDBSlots(oid, &mut slots, &mut active) };
    active > 0
}

/// Prepared transactions and subscriptions in database `oid`: they do not
/// go away while the command waits, and the server refuses it for them.
const IN_THE_WAY: &str = "\
SELECT (SELECT pg_catalog.count(*) FROM pg_catalog.pg_prepared_xact() p \
         WHERE p.dbid OPERATOR(pg_catalog.=) $1), \
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_subscription s \
         WHERE s.subdbid OPERATOR(pg_catalog.=) $1)";

/// What stands in the way of a command on database `oid`: (prepared
/// transactions, subscriptions).
fn in_the_way(oid: pg_sys::Oid) -> (i64, i64) {
    match Spi::get_two_with_args::<i64, i64>(IN_THE_WAY, &[oid.into()]) {
        Ok((prepared, subscriptions)) => (prepared.unwrap_or(0), subscriptions.unwrap_or(0)),
        // Not known: something may be in the way.
        Err(_) => (1, 1),
    }
}

/// Whether `command` on database `oid` will run, as far as the server's
/// checks before it touches the database go. `top_level`: the statement
/// was issued by the client, not from a function.
pub fn will_run(command: &DbCommand, oid: pg_sys::Oid, top_level: bool) -> bool {
    let Some(db) = database(oid) else {
        return false;
    };
    // SAFETY: plain reads of the session's transaction, recovery and user
    // state.
    let (read_only, in_block, mine, owner) = unsafe {
        (
            pg_sys::XactReadOnly || pg_sys::RecoveryInProgress(),
            pg_sys::IsInTransactionBlock(top_level),
            pg_sys::MyDatabaseId == oid,
            pg_sys::has_privs_of_role(pg_sys::GetUserId(), db.owner),
        )
    };
    // The server refuses these in a read-only transaction and on a standby
    // (after this hook).
    if read_only {
        return false;
    }
    // The tablespace a move goes to, looked up once.
    let target = match command {
        DbCommand::Move { tablespace, .. } => catalog::tablespace_oid(tablespace),
        _ => None,
    };
    let first = match command {
        DbCommand::Drop { .. } => !in_block && owner && !mine && !db.is_template,
        DbCommand::Rename { new_name, .. } => {
            owner && !mine && may_create_databases() && catalog::database_oid(new_name).is_none()
        }
        DbCommand::Move { .. } => {
            !in_block
                && owner
                && !mine
                && target.is_some_and(|t| {
                    t != db.tablespace && t != pg_sys::GLOBALTABLESPACE_OID && may_create_in(t)
                })
        }
        // A template anyone with CREATEDB may copy, any other database
        // only its owner; under a name not taken.
        DbCommand::Copy { new_name, .. } => {
            return !in_block
                && may_create_databases()
                && (db.is_template || owner)
                && catalog::database_oid(new_name).is_none();
        }
    };
    if !first {
        return false;
    }
    let dropping = matches!(command, DbCommand::Drop { .. });
    if dropping && has_active_slot(oid) {
        return false;
    }
    let (prepared, subscriptions) = in_the_way(oid);
    if prepared > 0 || (dropping && subscriptions > 0) {
        return false;
    }
    if let (DbCommand::Move { name, tablespace }, Some(target)) = (command, target) {
        refuse_onto_own_relations(name, oid, tablespace, target);
    }
    true
}

/// Raises the server's own refusal of moving database `name` (`oid`) to
/// `tablespace` (`target`) when some of its relations already lie there. The server
/// looks only after it has counted the sessions in the database, so the
/// extension's workers would turn this into a 55006 naming them; raised
/// here, before any worker is stopped, it reads as if they were not there.
fn refuse_onto_own_relations(name: &str, oid: pg_sys::Oid, tablespace: &str, target: pg_sys::Oid) {
    if has_relations_in(oid, target) {
        BgwError::WrongState {
            message: format!(
                "some relations of database \"{name}\" are already in tablespace \"{tablespace}\""
            ),
            hint: Some(
                "You must move them back to the database's default tablespace before using \
                 this command."
                    .into(),
            ),
        }
        .report();
    }
}
