//! What the registry stores out of line, typed: a compact binary encoding
//! of [`KindConfig`], written once at launch and read back by the worker
//! (no JSON is parsed after the SQL boundary), and the JSON the `workers`
//! view shows, rendered from the typed value. A worker's full last error
//! is [`ErrorText`] (`error_text.rs`); the bytes both are made of are
//! `wire.rs`'s.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::config::KindConfig;
use crate::spec::Kind;

mod error_text;
mod wire;

pub use error_text::ErrorText;
use wire::{Reader, Writer, VERSION};

impl Writer {
    fn config(&mut self, c: &KindConfig) {
        self.u8(c.kind() as u8);
        match c {
            KindConfig::Counter {
                naptime,
                schema,
                table,
                notify,
            } => {
                self.opt_duration(*naptime);
                self.opt_str(schema);
                self.opt_str(table);
                self.opt_str(notify);
            }
            KindConfig::Sleep {
                duration,
                exit_code,
            } => {
                self.opt_duration(*duration);
                self.i64(*exit_code as i64);
            }
            KindConfig::Sql {
                sql,
                interval,
                timeout,
            } => {
                self.str(sql);
                self.opt_duration(*interval);
                self.opt_duration(*timeout);
            }
            KindConfig::Supervisor { children, child } => {
                self.u32(*children);
                self.config(child);
            }
            KindConfig::Raw {
                library,
                function,
                worker_type,
                main_arg,
                extra_bytes,
                flags,
            } => {
                self.str(library);
                self.str(function);
                self.str(worker_type);
                self.i64(*main_arg);
                self.u32(*extra_bytes);
                self.i64(*flags as i64);
            }
        }
    }
}

impl Reader<'_> {
    fn config(&mut self) -> Result<KindConfig, String> {
        let kind = Kind::from_u8(self.u8()?).ok_or("unknown kind in config")?;
        Ok(match kind {
            Kind::Counter => KindConfig::Counter {
                naptime: self.opt_duration()?,
                schema: self.opt_str()?,
                table: self.opt_str()?,
                notify: self.opt_str()?,
            },
            Kind::Sleep => KindConfig::Sleep {
                duration: self.opt_duration()?,
                exit_code: self.i64()? as i32,
            },
            Kind::Sql => KindConfig::Sql {
                sql: self.str()?,
                interval: self.opt_duration()?,
                timeout: self.opt_duration()?,
            },
            Kind::Supervisor => KindConfig::Supervisor {
                children: self.u32()?,
                child: Box::new(self.config()?),
            },
            Kind::Raw => KindConfig::Raw {
                library: self.str()?,
                function: self.str()?,
                worker_type: self.str()?,
                main_arg: self.i64()?,
                extra_bytes: self.u32()?,
                flags: self.i64()? as i32,
            },
        })
    }
}

/// The bytes the registry stores for `config`.
pub fn encode(config: &KindConfig) -> Vec<u8> {
    let mut w = Writer(vec![VERSION]);
    w.config(config);
    w.0
}

/// The config stored as `bytes` by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<KindConfig, String> {
    let mut r = Reader(bytes);
    if r.u8()? != VERSION {
        return Err("config of another version".into());
    }
    let config = r.config()?;
    if !r.0.is_empty() {
        return Err("config has trailing bytes".into());
    }
    Ok(config)
}

/// A duration as interval text that PostgreSQL reads back: `5s`, `200ms`
/// or `1500us`.
pub fn duration_text(d: Duration) -> String {
    let us = d.as_micros();
    if us.is_multiple_of(1_000_000) {
        format!("{}s", us / 1_000_000)
    } else if us.is_multiple_of(1000) {
        format!("{}ms", us / 1000)
    } else {
        format!("{us}us")
    }
}

/// The config as the `workers` view shows it: a JSON object with the keys
/// that were given (defaults left out).
pub fn to_json(config: &KindConfig) -> Value {
    let mut m = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(v) = value {
            m.insert(key.to_string(), v);
        }
    };
    match config {
        KindConfig::Counter {
            naptime,
            schema,
            table,
            notify,
        } => {
            put("naptime", naptime.map(|d| json!(duration_text(d))));
            put("schema", schema.as_ref().map(|s| json!(s)));
            put("table", table.as_ref().map(|s| json!(s)));
            put("notify", notify.as_ref().map(|s| json!(s)));
        }
        KindConfig::Sleep {
            duration,
            exit_code,
        } => {
            put("duration", duration.map(|d| json!(duration_text(d))));
            put("exit_code", (*exit_code != 0).then(|| json!(exit_code)));
        }
        KindConfig::Sql {
            sql,
            interval,
            timeout,
        } => {
            put("sql", Some(json!(sql)));
            put("interval", interval.map(|d| json!(duration_text(d))));
            put("timeout", timeout.map(|d| json!(duration_text(d))));
        }
        KindConfig::Supervisor { children, child } => {
            put("children", Some(json!(children)));
            put("child_kind", Some(json!(child.kind().name())));
            put("child_config", Some(to_json(child)));
        }
        KindConfig::Raw {
            library,
            function,
            worker_type,
            main_arg,
            extra_bytes,
            flags,
        } => {
            put("library", Some(json!(library)));
            put("function", Some(json!(function)));
            put("type", Some(json!(worker_type)));
            put("main_arg", Some(json!(main_arg)));
            put("extra_bytes", Some(json!(extra_bytes)));
            put("flags", Some(json!(flags)));
        }
    }
    Value::Object(m)
}

#[cfg(test)]
mod unit {
    use super::*;

    fn samples() -> Vec<KindConfig> {
        vec![
            KindConfig::defaults(Kind::Counter),
            KindConfig::Counter {
                naptime: Some(Duration::from_millis(250)),
                schema: Some("s".into()),
                table: Some("t é".into()),
                notify: None,
            },
            KindConfig::Sleep {
                duration: Some(Duration::from_micros(1500)),
                exit_code: 1,
            },
            KindConfig::Sql {
                sql: "SELECT 'x'".repeat(1000),
                interval: None,
                timeout: Some(Duration::from_millis(250)),
            },
            KindConfig::Supervisor {
                children: 3,
                child: Box::new(KindConfig::Sql {
                    sql: "SELECT 1".into(),
                    interval: Some(Duration::from_secs(5)),
                    timeout: None,
                }),
            },
            KindConfig::Raw {
                library: "lib".into(),
                function: "main".into(),
                worker_type: "t".into(),
                main_arg: -7,
                extra_bytes: 12,
                flags: 3,
            },
        ]
    }

    #[test]
    fn every_config_round_trips() {
        for config in samples() {
            let bytes = encode(&config);
            assert_eq!(decode(&bytes), Ok(config.clone()));
            assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        }
        assert!(decode(&[9, 1]).is_err(), "another version");
    }

    #[test]
    fn the_view_shows_what_was_given() {
        let sup = &samples()[4];
        assert_eq!(
            to_json(sup),
            json!({"children": 3, "child_kind": "sql",
                   "child_config": {"sql": "SELECT 1", "interval": "5s"}})
        );
        assert_eq!(to_json(&samples()[0]), json!({}));
        assert_eq!(duration_text(Duration::from_millis(200)), "200ms");
        assert_eq!(duration_text(Duration::from_micros(1500)), "1500us");
    }
}
