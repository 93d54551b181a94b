//! What a utility statement does to a database, read from its parse tree:
//! drops it, renames it, moves it to another tablespace,
//! or copies it as the template of a `CREATE DATABASE`; nothing for any
//! other statement.

use std::ffi::{c_char, CStr};

use pgrx::list::PgList;
use pgrx::pg_sys;

/// A database command the hook cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbCommand {
    /// `DROP DATABASE name [WITH (FORCE)]`.
    Drop { name: String },
    /// `ALTER DATABASE name RENAME TO new_name`.
    Rename { name: String, new_name: String },
    /// `ALTER DATABASE name SET TABLESPACE tablespace`.
    Move { name: String, tablespace: String },
    /// `CREATE DATABASE new_name ... TEMPLATE template` (`template1` when
    /// none is named), which must have no other connection either.
    Copy { new_name: String, template: String },
}

impl DbCommand {
    /// The database the command drops, renames, moves or copies.
    pub fn database(&self) -> &str {
        match self {
            DbCommand::Drop { name, .. }
            | DbCommand::Rename { name, .. }
            | DbCommand::Move { name, .. } => name,
            DbCommand::Copy { template, .. } => template,
        }
    }
}

/// C string at `p` as text, if any.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string.
unsafe fn text(p: *const c_char) -> Option<String> {
    // SAFETY: the caller's contract.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// The value of option `name` among a statement's `DefElem`s, as text
/// (`defGetString` reads whatever node holds it); `None` when absent or
/// given as `DEFAULT` (no value: `TEMPLATE DEFAULT` is template1).
///
/// # Safety
/// `options` is a statement's list of `DefElem`s.
unsafe fn option(options: *mut pg_sys::List, name: &str) -> Option<String> {
    // SAFETY: the caller's contract.
    unsafe {
        PgList::<pg_sys::DefElem>::from_pg(options)
            .iter_ptr()
            .find(|&opt| text((*opt).defname).as_deref() == Some(name))
            .filter(|&opt| !(*opt).arg.is_null())
            .and_then(|opt| text(pg_sys::defGetString(opt)))
    }
}

/// The database command of a planned utility statement, if it is one.
///
/// # Safety
/// `pstmt` is the planned utility statement the server is about to run.
pub unsafe fn of(pstmt: *mut pg_sys::PlannedStmt) -> Option<DbCommand> {
    // SAFETY: the server hands us a valid statement tree; each node is read
    // as the struct its tag names.
    unsafe {
        let node = (*pstmt).utilityStmt;
        if node.is_null() {
            return None;
        }
        match (*node).type_ {
            pg_sys::NodeTag::T_DropdbStmt => {
                let stmt = node as *mut pg_sys::DropdbStmt;
                Some(DbCommand::Drop {
                    name: text((*stmt).dbname)?,
                })
            }
            pg_sys::NodeTag::T_RenameStmt => {
                let stmt = node as *mut pg_sys::RenameStmt;
                if (*stmt).renameType != pg_sys::ObjectType::OBJECT_DATABASE {
                    return None;
                }
                Some(DbCommand::Rename {
                    name: text((*stmt).subname)?,
                    new_name: text((*stmt).newname)?,
                })
            }
            pg_sys::NodeTag::T_AlterDatabaseStmt => {
                let stmt = node as *mut pg_sys::AlterDatabaseStmt;
                // The server refuses a tablespace beside other options.
                if PgList::<pg_sys::DefElem>::from_pg((*stmt).options).len() != 1 {
                    return None;
                }
                Some(DbCommand::Move {
                    name: text((*stmt).dbname)?,
                    tablespace: option((*stmt).options, "tablespace")?,
                })
            }
            pg_sys::NodeTag::T_CreatedbStmt => {
                let stmt = node as *mut pg_sys::CreatedbStmt;
                let template = option((*stmt).options, "template");
                Some(DbCommand::Copy {
                    new_name: text((*stmt).dbname)?,
                    template: template.unwrap_or_else(|| "template1".to_string()),
                })
            }
            _ => None,
        }
    }
}
