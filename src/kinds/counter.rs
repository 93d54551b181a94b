//! `counter`: PostgreSQL's `worker_spi`, kept honest.
//!
//! The worker keeps a table `(type, value)` in its database. Clients insert
//! `('delta', n)` rows; every naptime the worker deletes the deltas and adds
//! their sum to the single `'total'` row, in one SPI transaction. It shows
//! each step in `pg_stat_activity`, re-reads `lightdb_bgw.naptime` on SIGHUP,
//! leaves at once on SIGTERM (also in the middle of a fold) and on
//! postmaster death, and survives a failed fold (the table dropped, a lock
//! timeout) by recording the error and trying again next naptime.

use std::time::{Duration, Instant};

use pgrx::prelude::*;

use crate::error::BgwError;
use crate::gucs;
use crate::registry::WorkerRecord;
use crate::runtime::{self, WorkError};
use crate::spec::{self, quote_ident};

/// The counter's settings, from its registry record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterConfig {
    /// `None`: follow `lightdb_bgw.naptime`.
    pub naptime: Option<Duration>,
    pub schema: String,
    pub table: String,
    /// Channel notified (payload: the new total) after each fold.
    pub notify: Option<String>,
}

impl CounterConfig {
    /// The settings of worker `id` from its parsed config, defaults filled in.
    pub fn new(
        id: i64,
        naptime: Option<Duration>,
        schema: Option<String>,
        table: Option<String>,
        notify: Option<String>,
    ) -> Self {
        CounterConfig {
            naptime,
            schema: schema.unwrap_or_else(|| spec::default_counter_schema(id)),
            table: table.unwrap_or_else(|| spec::DEFAULT_COUNTER_TABLE.to_string()),
            notify,
        }
    }
}

/// The SQL texts of one counter, with quoted identifiers.
pub struct CounterSql {
    pub qualified: String,
    pub ensure: String,
    pub fold: String,
}

impl CounterSql {
    pub fn new(schema: &str, table: &str) -> Self {
        let qualified = format!("{}.{}", quote_ident(schema), quote_ident(table));
        let index = quote_ident(&format!("{table}_one_total"));
        let ensure = format!(
            "CREATE SCHEMA IF NOT EXISTS {schema_q};\n\
             CREATE TABLE IF NOT EXISTS {qualified} (\n\
                 type text NOT NULL CHECK (type IN ('total', 'delta')),\n\
                 value bigint NOT NULL);\n\
             CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {qualified} ((type)) WHERE type = 'total';\n\
             INSERT INTO {qualified} (type, value)\n\
                 SELECT 'total', 0 WHERE NOT EXISTS (SELECT FROM {qualified} WHERE type = 'total')",
            schema_q = quote_ident(schema),
        );
        let fold = format!(
            "WITH deleted AS (DELETE FROM {qualified} WHERE type = 'delta' RETURNING value),\n\
                  total AS (SELECT coalesce(sum(value), 0)::bigint AS sum, count(*) AS n FROM deleted)\n\
             UPDATE {qualified} AS t SET value = t.value + total.sum FROM total\n\
             WHERE t.type = 'total' RETURNING t.value, total.n"
        );
        CounterSql {
            qualified,
            ensure,
            fold,
        }
    }
}

pub fn run(record: &WorkerRecord, config: &CounterConfig) {
    runtime::set_application_name(&record.def.name);
    let sql = CounterSql::new(&config.schema, &config.table);
    log!(
        "{} initialized with {}",
        runtime::describe(record),
        sql.qualified
    );

    let mut ready = false;
    let mut last_round = Instant::now();
    loop {
        if !ready {
            runtime::report_activity(Some(&sql.ensure));
            ready = note(runtime::in_transaction(|| {
                Spi::connect_mut(|client| client.update(sql.ensure.as_str(), None, &[]).map(|_| ()))
                    .unwrap_or_else(|err| {
                        BgwError::Internal(format!("counter set-up failed: {err}")).report()
                    })
            }))
            .is_some();
        }
        if ready {
            runtime::report_activity(Some(&sql.fold));
            let notify = config.notify.clone();
            let folded = note(runtime::in_transaction(|| {
                let (total, deltas) = fold(&sql.fold);
                if let Some(channel) = &notify {
                    runtime::notify(channel, &total.to_string());
                }
                (total, deltas)
            }));
            if let Some((total, deltas)) = folded {
                if deltas > 0 {
                    debug1!(
                        "{}: folded {deltas} deltas, total is now {total}",
                        runtime::describe(record)
                    );
                }
            } else {
                // The table may have been dropped: re-create it next round.
                ready = false;
            }
        }
        runtime::report_activity(None);
        wait_for_next_round(config, last_round);
        last_round = Instant::now();
    }
}

/// One fold: the new total and how many deltas went into it.
fn fold(fold_sql: &str) -> (i64, i64) {
    Spi::connect_mut(|client| {
        let table = client.update(fold_sql, None, &[])?;
        if table.is_empty() {
            // No total row (deleted by someone): nothing to fold into.
            return Ok((0, 0));
        }
        let row = table.first();
        let total: i64 = row.get(1)?.unwrap_or(0);
        let deltas: i64 = row.get(2)?.unwrap_or(0);
        Ok::<_, pgrx::spi::Error>((total, deltas))
    })
    .unwrap_or_else(|err| BgwError::Internal(format!("counter fold failed: {err}")).report())
}

/// Records the outcome of a unit of work in the registry and the log.
fn note<T>(outcome: Result<T, WorkError>) -> Option<T> {
    match outcome {
        Ok(value) => {
            runtime::record_error(None);
            Some(value)
        }
        Err(err) => {
            warning!("lightdb_bgw counter: {err}");
            runtime::record_error(Some(&err));
            None
        }
    }
}

/// Naps until a naptime has passed since `since`. A SIGHUP wakes the nap,
/// re-reads the naptime and measures again from `since`.
fn wait_for_next_round(config: &CounterConfig, since: Instant) {
    loop {
        let naptime = config.naptime.unwrap_or_else(gucs::naptime);
        let Some(left) = naptime
            .checked_sub(since.elapsed())
            .filter(|d| !d.is_zero())
        else {
            return;
        };
        runtime::nap(Some(left));
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        let sql = CounterSql::new("My Schema", "t\"x");
        assert_eq!(sql.qualified, "\"My Schema\".\"t\"\"x\"");
        assert!(sql.fold.contains("DELETE FROM \"My Schema\".\"t\"\"x\""));
        let plain = CounterSql::new("lightdb_bgw_counter_1", "counted");
        assert_eq!(plain.qualified, "\"lightdb_bgw_counter_1\".\"counted\"");
        assert!(plain
            .ensure
            .contains("CREATE UNIQUE INDEX IF NOT EXISTS \"counted_one_total\""));
    }
}
