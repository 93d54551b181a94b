//! What a worker is, in plain Rust: the built-in kinds and the static
//! worker list of `lightdb_bgw.static_workers`. No server needed here, so
//! everything is unit-tested with `cargo test`.

use std::fmt;

/// The most static workers one kind may ask for.
pub const MAX_STATIC_PER_KIND: u32 = 1000;

/// The built-in worker kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    Counter = 1,
    Sleep = 2,
    Sql = 3,
    Supervisor = 4,
    /// A worker of any library, registered with `launch_raw`.
    Raw = 5,
}

pub struct KindInfo {
    pub kind: Kind,
    pub name: &'static str,
    pub description: &'static str,
    pub config_keys: &'static [&'static str],
    /// Whether `lightdb_bgw.static_workers` may name it.
    pub static_ok: bool,
    /// Whether it needs a database connection.
    pub needs_database: bool,
    /// Whether `launch` takes it (every kind but `raw`).
    pub builtin: bool,
}

pub const KINDS: &[KindInfo] = &[
    KindInfo {
        kind: Kind::Counter,
        name: "counter",
        description: "keeps a table of deltas in its database and folds them into a total \
                      every naptime in one transaction, like PostgreSQL's worker_spi",
        config_keys: &["naptime", "schema", "table", "notify"],
        static_ok: true,
        needs_database: true,
        builtin: true,
    },
    KindInfo {
        kind: Kind::Sleep,
        name: "sleep",
        description: "waits on its latch until terminated or until duration ends, then \
                      exits with exit_code (0: unregistered, 1: restart rules apply)",
        config_keys: &["duration", "exit_code"],
        static_ok: true,
        needs_database: false,
        builtin: true,
    },
    KindInfo {
        kind: Kind::Sql,
        name: "sql",
        description: "runs a SQL text once or every interval, each run in its own transaction, \
                      as the launching role, and records each run",
        config_keys: &["sql", "interval", "timeout"],
        static_ok: false,
        needs_database: true,
        builtin: true,
    },
    KindInfo {
        kind: Kind::Supervisor,
        name: "supervisor",
        description: "registers children workers of another kind from inside a background \
                      worker and relaunches any that stops, until it is terminated",
        config_keys: &["children", "child_kind", "child_config"],
        static_ok: false,
        needs_database: false,
        builtin: true,
    },
    KindInfo {
        kind: Kind::Raw,
        name: "raw",
        description: "a worker of any library, registered with launch_raw",
        config_keys: &[],
        static_ok: false,
        needs_database: false,
        builtin: false,
    },
];

impl Kind {
    /// Whether a worker of this kind connects (to its database, as its
    /// role) before it runs: not without a database, and not a supervisor,
    /// which only registers workers. One that does not is ready as it
    /// starts.
    pub fn needs_connection(self, has_database: bool) -> bool {
        has_database && !matches!(self, Kind::Supervisor | Kind::Raw)
    }

    pub fn info(self) -> &'static KindInfo {
        KINDS
            .iter()
            .find(|k| k.kind == self)
            .expect("every kind has an entry in KINDS")
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// A kind `launch` takes, by name.
    pub fn from_name(name: &str) -> Option<Kind> {
        KINDS
            .iter()
            .find(|k| k.builtin && k.name == name)
            .map(|k| k.kind)
    }

    pub fn from_u8(raw: u8) -> Option<Kind> {
        KINDS.iter().find(|k| k.kind as u8 == raw).map(|k| k.kind)
    }

    /// The valid kind names, comma separated, for error messages.
    pub fn valid_names() -> String {
        names_where(|k| k.builtin)
    }

    /// The valid names for `lightdb_bgw.static_workers`.
    pub fn valid_static_names() -> String {
        names_where(|k| k.static_ok)
    }
}

/// The names of the kinds that pass `keep`, comma separated.
fn names_where(keep: impl Fn(&KindInfo) -> bool) -> String {
    KINDS
        .iter()
        .filter(|k| keep(k))
        .map(|k| k.name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One entry of `lightdb_bgw.static_workers`: a kind and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticEntry {
    pub kind: Kind,
    pub count: u32,
}

/// Why a `static_workers` value was refused; names the bad entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticSpecError {
    pub entry: String,
    pub reason: String,
}

impl fmt::Display for StaticSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "entry \"{}\": {}", self.entry, self.reason)
    }
}

/// Parses `kind[:count][, kind[:count] ...]`. An empty value means no
/// static workers. A kind may appear once.
pub fn parse_static_workers(value: &str) -> Result<Vec<StaticEntry>, StaticSpecError> {
    let mut entries: Vec<StaticEntry> = Vec::new();
    if value.trim().is_empty() {
        return Ok(entries);
    }
    for raw in value.split(',') {
        let entry = raw.trim();
        let fail = |reason: String| StaticSpecError {
            entry: entry.to_string(),
            reason,
        };
        if entry.is_empty() {
            return Err(fail("empty entry (stray comma)".into()));
        }
        let (kind_text, count_text) = match entry.split_once(':') {
            Some((k, c)) => (k.trim(), Some(c.trim())),
            None => (entry, None),
        };
        let kind = Kind::from_name(kind_text)
            .filter(|k| k.info().static_ok)
            .ok_or_else(|| {
                fail(format!(
                    "unknown kind \"{kind_text}\" (kinds that can start with the server: {})",
                    Kind::valid_static_names()
                ))
            })?;
        let count = match count_text {
            None => 1,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_STATIC_PER_KIND).contains(n))
                .ok_or_else(|| {
                    fail(format!(
                        "count \"{text}\" is not a whole number between 1 and {MAX_STATIC_PER_KIND}"
                    ))
                })?,
        };
        if entries.iter().any(|e| e.kind == kind) {
            return Err(fail(format!("kind \"{kind_text}\" is listed twice")));
        }
        entries.push(StaticEntry { kind, count });
    }
    Ok(entries)
}

/// The static workers one by one: kind and its number within the kind,
/// counted from 1, in the order the setting lists them.
pub fn expand_static(entries: &[StaticEntry]) -> Vec<(Kind, u32)> {
    entries
        .iter()
        .flat_map(|e| (1..=e.count).map(move |n| (e.kind, n)))
        .collect()
}

/// When the postmaster may start a worker (`bgw_start_time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StartTime {
    PostmasterStart = 0,
    ConsistentState = 1,
    RecoveryFinished = 2,
}

impl StartTime {
    pub const ALL: [StartTime; 3] = [
        StartTime::PostmasterStart,
        StartTime::ConsistentState,
        StartTime::RecoveryFinished,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StartTime::PostmasterStart => "postmaster_start",
            StartTime::ConsistentState => "consistent_state",
            StartTime::RecoveryFinished => "recovery_finished",
        }
    }

    pub fn from_name(name: &str) -> Option<StartTime> {
        StartTime::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn from_u8(raw: u8) -> Option<StartTime> {
        StartTime::ALL.into_iter().find(|s| *s as u8 == raw)
    }
}

/// Restart policy: `None` never restarts; `Some(s)` restarts `s` seconds
/// after an exit with code 1 (PostgreSQL's `bgw_restart_time`).
pub type RestartAfter = Option<u32>;

/// Static workers restart this many seconds after a crash or an exit with
/// code 1; after a crash-reinitialisation the postmaster starts them at once.
pub const STATIC_RESTART_SECS: u32 = 10;

/// The `bgw_type` every lightdb_bgw worker carries: `pg_stat_activity`
/// shows it as `backend_type`.
pub const WORKER_TYPE: &str = "lightdb_bgw";

/// The `bgw_name` of a static worker: kind and number.
pub fn static_worker_name(kind: Kind, number: u32) -> String {
    format!("lightdb_bgw {kind} {number}")
}

/// The schema a counter uses unless configured: one per worker id.
pub fn default_counter_schema(id: i64) -> String {
    format!("lightdb_bgw_counter_{id}")
}

/// The table a counter uses unless configured.
pub const DEFAULT_COUNTER_TABLE: &str = "counted";

/// Quotes an SQL identifier, always: safe for any name, keywords included.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Checks that `value` fits a fixed C buffer of `capacity` bytes with its
/// terminating NUL and has no NUL of its own.
pub fn check_c_string(what: &str, value: &str, capacity: usize) -> Result<(), String> {
    if value.contains('\0') {
        return Err(format!("{what} must not contain a NUL character"));
    }
    if value.len() >= capacity {
        return Err(format!(
            "{what} is {} bytes long; the server allows at most {}",
            value.len(),
            capacity - 1
        ));
    }
    Ok(())
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn empty_means_none() {
        assert_eq!(parse_static_workers("").unwrap(), vec![]);
        assert_eq!(parse_static_workers("   ").unwrap(), vec![]);
    }

    #[test]
    fn kinds_and_counts() {
        let parsed = parse_static_workers("counter:2, sleep").unwrap();
        assert_eq!(
            parsed,
            vec![
                StaticEntry {
                    kind: Kind::Counter,
                    count: 2
                },
                StaticEntry {
                    kind: Kind::Sleep,
                    count: 1
                },
            ]
        );
        assert_eq!(
            expand_static(&parsed),
            vec![(Kind::Counter, 1), (Kind::Counter, 2), (Kind::Sleep, 1)]
        );
    }

    #[test]
    fn bad_entries_are_named() {
        let err = parse_static_workers("counter:2,bogus:1").unwrap_err();
        assert_eq!(err.entry, "bogus:1");
        assert!(err.reason.contains("unknown kind \"bogus\""));
        assert!(err.reason.contains("counter, sleep"));

        let err = parse_static_workers("counter:x").unwrap_err();
        assert_eq!(err.entry, "counter:x");
        assert!(err.to_string().contains("\"counter:x\""));

        assert!(parse_static_workers("counter:0").is_err());
        assert!(parse_static_workers("counter:-1").is_err());
        assert!(parse_static_workers("counter:1001").is_err());
        assert!(parse_static_workers("counter,").is_err());
        let err = parse_static_workers("counter:1,counter:2").unwrap_err();
        assert!(err.reason.contains("twice"));
    }

    #[test]
    fn names_fit_the_server() {
        assert_eq!(
            static_worker_name(Kind::Counter, 2),
            "lightdb_bgw counter 2"
        );
        assert!(check_c_string("name", "abc", 4).is_ok());
        assert!(check_c_string("name", "abcd", 4)
            .unwrap_err()
            .contains("at most 3"));
        assert!(check_c_string("name", "a\0b", 96).is_err());
    }

    #[test]
    fn identifiers() {
        assert_eq!(quote_ident("select"), "\"select\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn start_times_round_trip() {
        for st in StartTime::ALL {
            assert_eq!(StartTime::from_name(st.name()), Some(st));
            assert_eq!(StartTime::from_u8(st as u8), Some(st));
        }
        assert_eq!(StartTime::from_name("sometime"), None);
    }

    #[test]
    fn kinds_round_trip() {
        for info in KINDS {
            let by_name = Kind::from_name(info.name);
            assert_eq!(by_name, info.builtin.then_some(info.kind));
            assert_eq!(Kind::from_u8(info.kind as u8), Some(info.kind));
        }
        assert_eq!(Kind::valid_names(), "counter, sleep, sql, supervisor");
        let err = parse_static_workers("sql:1").unwrap_err();
        assert!(err.reason.contains("counter, sleep"), "{err}");
        assert_eq!(Kind::from_name("nope"), None);
        assert_eq!(Kind::from_u8(0), None);
    }
}
