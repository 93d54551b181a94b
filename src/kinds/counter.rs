//! `counter`: PostgreSQL's `worker_spi`, kept honest.
//!
//! The worker keeps a table `(type, value)` in its database. Clients insert
//! `('delta', n)` rows; every naptime the worker deletes the deltas and adds
//! their sum to the single `'total'` row, in one SPI transaction. It shows
//! each step in `pg_stat_activity`, re-reads `lightdb_bgw.naptime` on SIGHUP,
//! leaves at once on SIGTERM (also in the middle of a fold) and on
//! postmaster death, and survives a failed fold (the table dropped, a lock
//! timeout) by recording the error and trying again next naptime.
//!
//! It touches only a schema and a table its own role owns: `CREATE ... IF
//! NOT EXISTS` finds what someone else may have made first under the same
//! name (a counter's default schema is easy to guess), and a table of
//! another role's runs that role's triggers with the counter's rights. So
//! before each write the table is locked and both owners are checked
//! (42501 otherwise, recorded and tried again next naptime); and its SQL
//! runs with `search_path` `pg_catalog, pg_temp`.

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

/// The SQL texts of one counter, with quoted identifiers: `create` makes
/// the schema and table if missing, `guard` locks the table and says
/// whether the worker's role owns it and its schema, `ensure` finishes
/// the set-up (after the guard), `fold` folds.
pub struct CounterSql {
    pub qualified: String,
    pub create: String,
    pub guard: String,
    pub ensure: String,
    pub fold: String,
}

impl CounterSql {
    pub fn new(schema: &str, table: &str) -> Self {
        let qualified = format!("{}.{}", quote_ident(schema), quote_ident(table));
        let index = quote_ident(&format!("{table}_one_total"));
        let create = format!(
            "CREATE SCHEMA IF NOT EXISTS {schema_q};\n\
             CREATE TABLE IF NOT EXISTS {qualified} (\n\
                 type text NOT NULL CHECK (type IN ('total', 'delta')),\n\
                 value bigint NOT NULL)",
            schema_q = quote_ident(schema),
        );
        let guard = format!(
            "SELECT c.relkind = 'r' AND c.relowner = u.oid AND n.nspowner = u.oid, \
                    c.relowner::regrole::text \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, \
                  (SELECT oid FROM pg_roles WHERE rolname = current_user) u \
             WHERE c.oid = '{}'::regclass",
            qualified.replace('\'', "''")
        );
        let ensure = format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {qualified} ((type)) WHERE type = 'total';\n\
             INSERT INTO {qualified} (type, value)\n\
                 SELECT 'total', 0 WHERE NOT EXISTS (SELECT FROM {qualified} WHERE type = 'total')"
        );
        let fold = format!(
            "WITH deleted AS (DELETE FROM {qualified} WHERE type = 'delta' RETURNING value),\n\
                  total AS (SELECT coalesce(sum(value), 0)::bigint AS sum, count(*) AS n FROM deleted)\n\
             UPDATE {qualified} AS t SET value = t.value + total.sum FROM total\n\
             WHERE t.type = 'total' RETURNING t.value, total.n"
        );
        CounterSql {
            qualified,
            create,
            guard,
            ensure,
            fold,
        }
    }
}

pub fn run(record: &WorkerRecord, config: &CounterConfig) {
    runtime::set_application_name(&record.def.name);
    runtime::set_search_path("pg_catalog, pg_temp");
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
                Spi::connect_mut(|client| {
                    client.update(sql.create.as_str(), None, &[])?;
                    guard(client, &sql)?;
                    client.update(sql.ensure.as_str(), None, &[]).map(|_| ())
                })
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
                let (total, deltas) = fold(&sql);
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

/// Locks the counter's table (so that it stays the table checked until
/// the transaction ends) and raises 42501 unless the worker's role owns
/// it (a plain table) and its schema. Nothing of the table runs before.
fn guard(client: &mut pgrx::spi::SpiClient<'_>, sql: &CounterSql) -> Result<(), pgrx::spi::Error> {
    client.update(
        &format!("LOCK TABLE {} IN ROW EXCLUSIVE MODE", sql.qualified),
        None,
        &[],
    )?;
    let checked = client.select(&sql.guard, Some(1), &[])?;
    let row = checked.first();
    if row.get::<bool>(1)? != Some(true) {
        let owner = row.get::<String>(2)?.unwrap_or_default();
        BgwError::NotAllowed(format!(
            "counter table {} is owned by role {owner} or is not a plain table in a schema of the \
             worker's own role; a counter uses only a schema and a table its role owns",
            sql.qualified
        ))
        .report();
    }
    Ok(())
}

/// One fold: the new total and how many deltas went into it.
fn fold(sql: &CounterSql) -> (i64, i64) {
    Spi::connect_mut(|client| {
        guard(client, sql)?;
        let table = client.update(&sql.fold, None, &[])?;
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

/// Records the outcome of a unit of work in the registry, and in the log
/// an error that is not the one logged last (a counter failing the same
/// way every naptime logs it once, until it succeeds or fails otherwise).
fn note<T>(outcome: Result<T, WorkError>) -> Option<T> {
    static LOGGED: std::sync::Mutex<Option<WorkError>> = std::sync::Mutex::new(None);
    let mut logged = LOGGED.lock().unwrap_or_else(|e| e.into_inner());
    match outcome {
        Ok(value) => {
            *logged = None;
            runtime::record_error(None);
            Some(value)
        }
        Err(err) => {
            if logged.as_ref() != Some(&err) {
                warning!("lightdb_bgw counter: {err}");
                *logged = Some(err.clone());
            }
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
        assert!(plain
            .guard
            .ends_with("WHERE c.oid = '\"lightdb_bgw_counter_1\".\"counted\"'::regclass"));
        let quoted = CounterSql::new("it's", "t");
        assert!(quoted.guard.contains("'\"it''s\".\"t\"'::regclass"));
    }
}
