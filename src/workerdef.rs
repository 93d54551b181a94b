//! The typed spec of a worker: everything needed to register a worker of a
//! built-in kind, validated once (at the SQL boundary, or from the static
//! worker settings), stored in the registry and read back by the worker.

use crate::config::KindConfig;
use crate::spec::{static_worker_name, Kind, RestartAfter, StartTime, STATIC_RESTART_SECS};

/// Everything needed to register a worker of a built-in kind; shared by
/// static and dynamic launches and kept in the worker's registry slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerDef {
    pub kind: Kind,
    pub name: String,
    /// `None`: no database connection (shared catalogs only).
    pub database: Option<String>,
    /// `None`: the bootstrap superuser.
    pub role: Option<String>,
    pub start_time: StartTime,
    pub restart_after: RestartAfter,
    /// The kind's configuration, validated.
    pub config: KindConfig,
}

impl WorkerDef {
    /// A static worker from `lightdb_bgw.static_workers`.
    pub fn static_worker(kind: Kind, number: u32, database: &str, role: Option<&str>) -> Self {
        let info = kind.info();
        WorkerDef {
            kind,
            name: static_worker_name(kind, number),
            database: info.needs_database.then(|| database.to_string()),
            role: role.map(str::to_string),
            start_time: if info.needs_database {
                StartTime::RecoveryFinished
            } else {
                StartTime::PostmasterStart
            },
            restart_after: Some(STATIC_RESTART_SECS),
            config: KindConfig::defaults(kind),
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn static_defs() {
        let counter = WorkerDef::static_worker(Kind::Counter, 1, "postgres", None);
        assert_eq!(counter.database.as_deref(), Some("postgres"));
        assert_eq!(counter.start_time, StartTime::RecoveryFinished);
        assert_eq!(counter.restart_after, Some(STATIC_RESTART_SECS));
        let sleep = WorkerDef::static_worker(Kind::Sleep, 3, "postgres", Some("alice"));
        assert_eq!(sleep.database, None);
        assert_eq!(sleep.role.as_deref(), Some("alice"));
        assert_eq!(sleep.name, "lightdb_bgw sleep 3");
        assert_eq!(sleep.start_time, StartTime::PostmasterStart);
    }
}
