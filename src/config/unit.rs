//! Unit tests of config parsing: every kind, every bound, durations read
//! by a plain-Rust reader standing in for PostgreSQL's interval input.

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
    // '213503983 days 00:00:00.551616' wrapped around to 57,491 s in 64 bits.
    assert!(restart_secs(0, 213_503_983, 551_616).is_err());
    assert!(restart_secs(0, i32::MAX, i64::MAX).is_err());
    assert!(restart_secs(0, i32::MIN, i64::MIN).is_err());
}

#[test]
fn wait_timeouts_take_any_interval_that_is_not_negative() {
    let hour = 3_600_000_000i64;
    // '1 day -23 hours' is one hour.
    assert_eq!(
        wait_timeout(0, 1, -23 * hour),
        Ok(Duration::from_secs(3600))
    );
    assert_eq!(wait_timeout(1, 0, 0), Ok(Duration::from_secs(30 * 86_400)));
    // '178000000 years' waits as long as it takes.
    assert!(wait_timeout(i32::MAX, i32::MAX, i64::MAX).unwrap() >= Duration::from_secs(1 << 40));
    assert_eq!(wait_timeout(0, 0, 0), Ok(Duration::ZERO));
    assert_eq!(
        wait_timeout(0, 1, -25 * hour),
        Err("timeout must not be negative".into())
    );
    assert!(wait_timeout(-1, 0, 0).is_err());
}
