//! Kind configurations (`launch(..., config => '{...}')`), read once at the
//! SQL boundary into the typed [`KindConfig`] that the registry stores and
//! the worker reads back (see `codec.rs`). A config is a JSON object; an
//! unknown key is an error, and so is a value out of range. Durations are
//! read by the [`Durations`] the caller passes: in the server, PostgreSQL's
//! own interval input (every form `'5s'::interval` accepts); plain Rust
//! here, so this file is unit-tested without a server.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::spec::Kind;

/// The most children one supervisor keeps.
pub const MAX_CHILDREN: u32 = 1000;
/// The longest identifier or channel name (the server's NAMEDATALEN - 1).
pub const MAX_IDENT_BYTES: usize = 63;
/// The longest duration accepted anywhere, one day.
pub const MAX_DURATION: Duration = Duration::from_secs(86_400);
/// The shortest time between two runs of a repeating worker (a `sql`
/// worker's `interval`, a counter's `naptime`): the same floor as the
/// `lightdb_bgw.naptime` setting, so no configuration keeps a core busy.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// The deepest nesting of arrays and objects a config may have (the limit
/// of the JSON parser the worker kinds share).
pub const MAX_CONFIG_DEPTH: usize = 128;

/// Reads a duration: `Ok` with its length, or a reason.
pub type Durations<'a> = &'a dyn Fn(&str) -> Result<Duration, String>;

/// A kind's validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindConfig {
    Counter {
        naptime: Option<Duration>,
        schema: Option<String>,
        table: Option<String>,
        notify: Option<String>,
    },
    Sleep {
        duration: Option<Duration>,
        exit_code: i32,
    },
    Sql {
        sql: String,
        interval: Option<Duration>,
        /// Each statement's time limit (57014 when reached).
        timeout: Option<Duration>,
    },
    Supervisor {
        children: u32,
        /// The children's kind and config, itself validated.
        child: Box<KindConfig>,
    },
    /// A worker of any library (`launch_raw`): what was registered.
    Raw {
        library: String,
        function: String,
        worker_type: String,
        main_arg: i64,
        extra_bytes: u32,
        flags: i32,
    },
}

impl KindConfig {
    /// The kind this config belongs to.
    pub fn kind(&self) -> Kind {
        match self {
            KindConfig::Counter { .. } => Kind::Counter,
            KindConfig::Sleep { .. } => Kind::Sleep,
            KindConfig::Sql { .. } => Kind::Sql,
            KindConfig::Supervisor { .. } => Kind::Supervisor,
            KindConfig::Raw { .. } => Kind::Raw,
        }
    }

    /// The config of a static worker of `kind`: every default.
    pub fn defaults(kind: Kind) -> KindConfig {
        match kind {
            Kind::Sleep => KindConfig::Sleep {
                duration: None,
                exit_code: 0,
            },
            _ => KindConfig::Counter {
                naptime: None,
                schema: None,
                table: None,
                notify: None,
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CounterRaw {
    naptime: Option<String>,
    schema: Option<String>,
    table: Option<String>,
    notify: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SleepRaw {
    duration: Option<String>,
    exit_code: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRaw {
    sql: String,
    interval: Option<String>,
    timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SupervisorRaw {
    children: i64,
    child_kind: String,
    child_config: Option<Value>,
}

fn from_value<T: for<'de> Deserialize<'de>>(kind: Kind, value: &Value) -> Result<T, String> {
    T::deserialize(value).map_err(|e| {
        let keys = kind.info().config_keys.join(", ");
        format!("{e} (keys of kind \"{kind}\": {keys})")
    })
}

fn ident(what: &str, value: Option<String>) -> Result<Option<String>, String> {
    match value {
        Some(v) if v.is_empty() => Err(format!("{what} must not be empty")),
        Some(v) if v.len() > MAX_IDENT_BYTES || v.contains('\0') => Err(format!(
            "{what} \"{v}\" is longer than {MAX_IDENT_BYTES} bytes or contains NUL"
        )),
        other => Ok(other),
    }
}

fn duration(
    read: Durations,
    what: &str,
    value: Option<String>,
) -> Result<Option<Duration>, String> {
    value
        .map(|text| {
            let d = read(&text).map_err(|e| format!("{what}: {e}"))?;
            if d.is_zero() {
                return Err(format!("{what} must be greater than zero"));
            }
            if d > MAX_DURATION {
                return Err(format!("{what} must be at most one day"));
            }
            Ok(d)
        })
        .transpose()
}

/// A duration between two runs: at least [`MIN_INTERVAL`].
fn interval(
    read: Durations,
    what: &str,
    value: Option<String>,
) -> Result<Option<Duration>, String> {
    let d = duration(read, what, value)?;
    if d.is_some_and(|d| d < MIN_INTERVAL) {
        return Err(format!(
            "{what} must be at least {} ms",
            MIN_INTERVAL.as_millis()
        ));
    }
    Ok(d)
}

/// How deeply arrays and objects nest in `json` (0 for a scalar).
pub fn nesting_depth(json: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for b in json.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Parses and validates `json` (a JSON object) as the configuration of
/// `kind`. The error names the key at fault.
pub fn parse(kind: Kind, json: &str, read: Durations) -> Result<KindConfig, String> {
    let value: Value =
        serde_json::from_str(json).map_err(|e| format!("config is not valid JSON: {e}"))?;
    parse_value(kind, &value, read)
}

fn parse_value(kind: Kind, value: &Value, read: Durations) -> Result<KindConfig, String> {
    if !value.is_object() {
        return Err("config must be a JSON object".into());
    }
    match kind {
        Kind::Counter => {
            let raw: CounterRaw = from_value(kind, value)?;
            Ok(KindConfig::Counter {
                naptime: interval(read, "naptime", raw.naptime)?,
                schema: ident("schema", raw.schema)?,
                table: ident("table", raw.table)?,
                notify: ident("notify channel", raw.notify)?,
            })
        }
        Kind::Sleep => {
            let raw: SleepRaw = from_value(kind, value)?;
            let exit_code = match raw.exit_code {
                None | Some(0) => 0,
                Some(1) => 1,
                Some(other) => return Err(format!("exit_code must be 0 or 1, not {other}")),
            };
            Ok(KindConfig::Sleep {
                duration: duration(read, "duration", raw.duration)?,
                exit_code,
            })
        }
        Kind::Sql => {
            let raw: SqlRaw = from_value(kind, value)?;
            if raw.sql.trim().is_empty() {
                return Err("sql must not be empty".into());
            }
            if raw.sql.contains('\0') {
                return Err("sql must not contain NUL".into());
            }
            Ok(KindConfig::Sql {
                sql: raw.sql,
                interval: interval(read, "interval", raw.interval)?,
                timeout: duration(read, "timeout", raw.timeout)?,
            })
        }
        Kind::Supervisor => {
            let raw: SupervisorRaw = from_value(kind, value)?;
            if raw.children < 1 || raw.children > MAX_CHILDREN as i64 {
                return Err(format!(
                    "children must be between 1 and {MAX_CHILDREN}, not {}",
                    raw.children
                ));
            }
            let child_kind = Kind::from_name(&raw.child_kind)
                .filter(|k| *k != Kind::Supervisor)
                .ok_or_else(|| {
                    format!(
                        "child_kind \"{}\" is not a kind a supervisor can run (counter, sleep, sql)",
                        raw.child_kind
                    )
                })?;
            let child_value = raw
                .child_config
                .unwrap_or_else(|| Value::Object(Default::default()));
            let child = parse_value(child_kind, &child_value, read)
                .map_err(|e| format!("child_config: {e}"))?;
            Ok(KindConfig::Supervisor {
                children: raw.children as u32,
                child: Box::new(child),
            })
        }
        Kind::Raw => Err("a raw worker has no config; use launch_raw".into()),
    }
}

/// Reads an interval's parts (months, days, microseconds, as PostgreSQL
/// keeps them) as a fixed length: days are 24 hours; months, whose length
/// varies, and negative values are refused.
pub fn interval_duration(months: i32, days: i32, micros: i64) -> Result<Duration, String> {
    if months != 0 {
        return Err("months and years have no fixed length".into());
    }
    let total = days as i128 * 86_400_000_000 + micros as i128;
    if total < 0 {
        return Err("must not be negative".into());
    }
    u64::try_from(total)
        .map(Duration::from_micros)
        .map_err(|_| "is too long".into())
}

/// `restart_after`: microseconds of an interval to whole seconds, refusing
/// negative values, more than a day, and sub-second remainders that the
/// server would silently drop.
pub fn restart_secs(months: i32, days: i32, micros: i64) -> Result<u32, String> {
    if months != 0 {
        return Err("restart_after must not use months or years".into());
    }
    let total = days as i64 * 86_400_000_000 + micros;
    if total < 0 {
        return Err("restart_after must not be negative".into());
    }
    if total > MAX_DURATION.as_micros() as i64 {
        return Err("restart_after must be at most one day".into());
    }
    if total % 1_000_000 != 0 {
        return Err("restart_after must be a whole number of seconds".into());
    }
    if total < 1_000_000 {
        return Err("restart_after must be at least 1 second".into());
    }
    Ok((total / 1_000_000) as u32)
}

#[cfg(test)]
mod unit {
    use super::*;

    /// A duration reader for tests: `<n>ms`, `<n>s`, `<n>us`.
    fn read(text: &str) -> Result<Duration, String> {
        let (n, unit) = text.split_at(
            text.find(|c: char| !c.is_ascii_digit())
                .unwrap_or(text.len()),
        );
        let n: u64 = n
            .parse()
            .map_err(|_| format!("invalid duration \"{text}\""))?;
        match unit {
            "us" => Ok(Duration::from_micros(n)),
            "ms" => Ok(Duration::from_millis(n)),
            "s" => Ok(Duration::from_secs(n)),
            _ => Err(format!("invalid duration \"{text}\"")),
        }
    }

    fn parse(kind: Kind, json: &str) -> Result<KindConfig, String> {
        super::parse(kind, json, &read)
    }

    #[test]
    fn intervals_have_a_fixed_length() {
        assert_eq!(interval_duration(0, 1, 0), Ok(Duration::from_secs(86_400)));
        assert_eq!(
            interval_duration(0, 0, 200_000),
            Ok(Duration::from_millis(200))
        );
        assert!(interval_duration(1, 0, 0).unwrap_err().contains("months"));
        assert!(interval_duration(0, 0, -1).is_err());
        assert!(parse(Kind::Sleep, r#"{"duration": "90000s"}"#)
            .unwrap_err()
            .contains("at most one day"));
        assert!(parse(Kind::Sleep, r#"{"duration": "soon"}"#)
            .unwrap_err()
            .starts_with("duration: invalid duration"));
    }

    #[test]
    fn configs() {
        assert_eq!(
            parse(Kind::Sleep, r#"{"duration": "1s", "exit_code": 1}"#).unwrap(),
            KindConfig::Sleep {
                duration: Some(Duration::from_secs(1)),
                exit_code: 1
            }
        );
        let err = parse(Kind::Sleep, r#"{"duraton": "1s"}"#).unwrap_err();
        assert!(err.contains("unknown field `duraton`"), "{err}");
        assert!(
            err.contains("keys of kind \"sleep\": duration, exit_code"),
            "{err}"
        );
        assert!(parse(Kind::Sleep, r#"{"exit_code": 2}"#).is_err());
        assert!(parse(Kind::Sleep, "[]")
            .unwrap_err()
            .contains("JSON object"));
        assert!(parse(Kind::Sql, "{}")
            .unwrap_err()
            .contains("missing field `sql`"));
        let long = format!(r#"{{"sql": "select '{}'"}}"#, "x".repeat(2 << 20));
        assert!(
            parse(Kind::Sql, &long).is_ok(),
            "size is a setting, not a parse rule"
        );
        assert!(parse(Kind::Counter, r#"{"naptime": "0s"}"#).is_err());
        assert!(parse(
            Kind::Counter,
            &format!(r#"{{"table": "{}"}}"#, "t".repeat(64))
        )
        .is_err());
        let sup = parse(
            Kind::Supervisor,
            r#"{"children": 2, "child_kind": "sleep", "child_config": {"exit_code": 1}}"#,
        )
        .unwrap();
        assert_eq!(
            sup,
            KindConfig::Supervisor {
                children: 2,
                child: Box::new(KindConfig::Sleep {
                    duration: None,
                    exit_code: 1
                })
            }
        );
        assert_eq!(sup.kind(), Kind::Supervisor);
        let err = parse(
            Kind::Supervisor,
            r#"{"children": 2, "child_kind": "sleep", "child_config": {"bad": 1}}"#,
        )
        .unwrap_err();
        assert!(
            err.starts_with("child_config: unknown field `bad`"),
            "{err}"
        );
        assert!(parse(
            Kind::Supervisor,
            r#"{"children": 0, "child_kind": "sleep"}"#
        )
        .is_err());
        assert!(parse(
            Kind::Supervisor,
            r#"{"children": 1, "child_kind": "supervisor"}"#
        )
        .is_err());
    }

    #[test]
    fn repeating_workers_have_a_floor() {
        let err = parse(Kind::Sql, r#"{"sql": "select 1", "interval": "1ms"}"#).unwrap_err();
        assert_eq!(err, "interval must be at least 10 ms");
        assert!(parse(Kind::Sql, r#"{"sql": "select 1", "interval": "1us"}"#).is_err());
        assert!(parse(Kind::Sql, r#"{"sql": "select 1", "interval": "10ms"}"#).is_ok());
        assert!(parse(Kind::Counter, r#"{"naptime": "5ms"}"#).is_err());
    }

    #[test]
    fn nesting_is_measured_outside_strings() {
        assert_eq!(nesting_depth("1"), 0);
        assert_eq!(nesting_depth(r#"{"a": [1, {"b": 2}]}"#), 3);
        assert_eq!(nesting_depth(r#"{"a": "[[[{{{\"]]"}"#), 1);
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(nesting_depth(&deep), 200);
    }

    #[test]
    fn restart_after() {
        assert_eq!(restart_secs(0, 0, 5_000_000), Ok(5));
        assert_eq!(restart_secs(0, 1, 0), Ok(86_400));
        assert!(restart_secs(0, 1, 1_000_000).is_err());
        assert!(restart_secs(0, 0, -1_000_000).is_err());
        assert!(restart_secs(1, 0, 0).is_err());
        assert!(restart_secs(0, 0, 1_500_000).is_err());
        assert_eq!(
            restart_secs(0, 0, 0),
            Err("restart_after must be at least 1 second".into())
        );
        assert_eq!(restart_secs(0, 0, 1_000_000), Ok(1));
    }
}
