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
    /// Whether a worker with this config needs a database: its kind's
    /// rule, and for a supervisor its children's, who run in its database.
    pub fn needs_database(&self) -> bool {
        match self {
            KindConfig::Supervisor { child, .. } => child.needs_database(),
            other => other.kind().info().needs_database,
        }
    }

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

/// A wait's timeout from an interval's parts: any length that is not
/// negative, a month counted as 30 days (as PostgreSQL compares
/// intervals), one beyond what fits waiting as long as it takes.
pub fn wait_timeout(months: i32, days: i32, micros: i64) -> Result<Duration, String> {
    let total = (months as i128 * 30 + days as i128) * 86_400_000_000 + micros as i128;
    if total < 0 {
        return Err("timeout must not be negative".into());
    }
    Ok(Duration::from_micros(
        u64::try_from(total).unwrap_or(u64::MAX),
    ))
}

/// `restart_after`: microseconds of an interval to whole seconds, refusing
/// negative values, more than a day, and sub-second remainders that the
/// server would silently drop.
pub fn restart_secs(months: i32, days: i32, micros: i64) -> Result<u32, String> {
    if months != 0 {
        return Err("restart_after must not use months or years".into());
    }
    // In 128 bits: the most days and microseconds an interval holds do not
    // wrap around to a small value.
    let total = days as i128 * 86_400_000_000 + micros as i128;
    if total < 0 {
        return Err("restart_after must not be negative".into());
    }
    if total > MAX_DURATION.as_micros() as i128 {
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
mod unit;
