//! The measuring operations the sections share: a client connection, the
//! latency loops (launch -> started, the floor's launch, connecting) and the
//! throughput harness with the operations it repeats (whole lifecycles,
//! connection churn, one-shot sql workers, run + result and pg_background's
//! launch + result), and forgetting the runs of `lightdb_bgw.run`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{Client, Cluster, NoTls};
use crate::report::ms;

pub fn connect(cluster: &Cluster) -> Client {
    postgres::Config::new()
        .host("127.0.0.1")
        .port(cluster.port)
        .user("postgres")
        .dbname("postgres")
        .connect(NoTls)
        .expect("connect")
}

/// What a launch waits for in [`launch_sleep_latency`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// `launch(..., wait => false)` then `wait_for_startup`, in one
    /// statement: the postmaster has started the process (the event the
    /// floor's WaitForBackgroundWorkerStartup waits for).
    Started,
    /// `launch(..., wait => true)`: the worker runs and is connected as
    /// its role.
    Ready,
}

pub fn launch_sleep_latency(cluster: &Cluster, database: bool, until: Until, n: usize) -> Vec<f64> {
    let mut client = connect(cluster);
    let db = if database { "" } else { ", database => NULL" };
    let sql = match until {
        Until::Ready => format!("SELECT lightdb_bgw.launch('sleep'{db})"),
        Until::Started => format!(
            "SELECT id FROM (SELECT lightdb_bgw.launch('sleep'{db}, wait => false) AS id) l \
             WHERE lightdb_bgw.wait_for_startup(id) <> 'not_yet_started'"
        ),
    };
    let mut out = Vec::new();
    for i in 0..n + 5 {
        let began = Instant::now();
        let id: i64 = client.query_one(&sql, &[]).unwrap().get(0);
        let took = began.elapsed();
        client
            .query_one("SELECT lightdb_bgw.terminate($1)", &[&id])
            .unwrap();
        client
            .query_one("SELECT lightdb_bgw.wait_for_shutdown($1)", &[&id])
            .unwrap();
        if i >= 5 {
            out.push(ms(took));
        }
    }
    out
}

/// The floor: PostgreSQL's own RegisterDynamicBackgroundWorker +
/// WaitForBackgroundWorkerStartup, from the `bench` build; with
/// `Until::Ready`, on until the floor's worker says it runs (and is
/// connected).
pub fn floor_launch_latency(cluster: &Cluster, database: bool, until: Until, n: usize) -> Vec<f64> {
    let mut client = connect(cluster);
    let running = until == Until::Ready;
    let mut out = Vec::new();
    for i in 0..n + 5 {
        let began = Instant::now();
        let pid: i32 = client
            .query_one(
                "SELECT lightdb_bgw.floor_launch($1, $2)",
                &[&database, &running],
            )
            .unwrap()
            .get(0);
        let took = began.elapsed();
        client
            .query_one("SELECT lightdb_bgw.floor_stop($1)", &[&pid])
            .unwrap();
        if i >= 5 {
            out.push(ms(took));
        }
    }
    out
}

/// Whose lifecycle [`full_lifecycle_op`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cycle {
    /// The floor: register, wait for startup, terminate, wait for shutdown.
    Floor,
    /// The same four steps: launch(wait => false), wait_for_startup,
    /// terminate, wait_for_shutdown.
    Started,
    /// launch (waiting until it is connected), terminate, wait_for_shutdown.
    Ready,
}

/// One whole lifecycle in one statement.
pub fn full_lifecycle_op(
    database: bool,
    cycle: Cycle,
) -> impl Fn(&Cluster, &mut Option<Client>) + Clone + Send + Sync {
    move |cluster, client| {
        let c = client.get_or_insert_with(|| connect(cluster));
        let db = if database { "" } else { ", database => NULL" };
        let sql = match cycle {
            Cycle::Floor => {
                format!("SELECT lightdb_bgw.floor_stop(lightdb_bgw.floor_launch({database}))::text")
            }
            Cycle::Ready => format!(
                "WITH l AS MATERIALIZED (SELECT lightdb_bgw.launch('sleep'{db}) AS id) \
                 SELECT lightdb_bgw.wait_for_shutdown(id) FROM l WHERE lightdb_bgw.terminate(id)"
            ),
            Cycle::Started => format!(
                "WITH l AS MATERIALIZED (SELECT lightdb_bgw.launch('sleep'{db}, wait => false) \
                 AS id), s AS MATERIALIZED (SELECT id FROM l \
                 WHERE lightdb_bgw.wait_for_startup(id) <> 'not_yet_started') \
                 SELECT lightdb_bgw.wait_for_shutdown(id) FROM s WHERE lightdb_bgw.terminate(id)"
            ),
        };
        let done: String = c.query_one(&sql, &[]).expect("lifecycle").get(0);
        assert!(done == "stopped" || done == "true", "{done}");
    }
}

pub fn connect_latency(cluster: &Cluster, n: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for i in 0..n + 5 {
        let began = Instant::now();
        let mut c = connect(cluster);
        let took = began.elapsed();
        c.simple_query("SELECT 1").unwrap();
        if i >= 5 {
            out.push(ms(took));
        }
    }
    out
}

/// Runs `op` in `sessions` threads for `window`; returns operations per
/// second and the per-operation latencies in ms.
pub fn throughput<F>(cluster: &Cluster, sessions: usize, window: Duration, op: F) -> (f64, Vec<f64>)
where
    F: Fn(&Cluster, &mut Option<Client>) + Send + Sync + 'static + Clone,
{
    let stop = Arc::new(AtomicBool::new(false));
    let began = Instant::now();
    let handles: Vec<_> = (0..sessions)
        .map(|_| {
            let stop = stop.clone();
            let op = op.clone();
            let port = cluster.port;
            std::thread::spawn(move || {
                let cluster = Cluster::detached(port);
                let mut client: Option<Client> = None;
                let mut lat = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    op(&cluster, &mut client);
                    lat.push(ms(t.elapsed()));
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(window);
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().expect("a benchmark session failed"));
    }
    let secs = began.elapsed().as_secs_f64();
    (all.len() as f64 / secs, all)
}

pub fn lifecycle_op(
    database: bool,
) -> impl Fn(&Cluster, &mut Option<Client>) + Clone + Send + Sync {
    move |cluster, client| {
        let c = client.get_or_insert_with(|| connect(cluster));
        let sql = if database {
            "SELECT lightdb_bgw.wait_for_shutdown(lightdb_bgw.launch('sleep', \
             config => '{\"duration\": \"1ms\"}', wait => false))"
        } else {
            "SELECT lightdb_bgw.wait_for_shutdown(lightdb_bgw.launch('sleep', \
             config => '{\"duration\": \"1ms\"}', database => NULL, wait => false))"
        };
        let status: String = c.query_one(sql, &[]).expect("lifecycle").get(0);
        assert_eq!(status, "stopped");
    }
}

pub fn connection_op() -> impl Fn(&Cluster, &mut Option<Client>) + Clone + Send + Sync {
    |cluster, _| {
        let mut c = connect(cluster);
        c.simple_query("SELECT 1").unwrap();
    }
}

pub fn sql_worker_op() -> impl Fn(&Cluster, &mut Option<Client>) + Clone + Send + Sync {
    |cluster, client| {
        let c = client.get_or_insert_with(|| connect(cluster));
        let status: String = c
            .query_one(
                "SELECT lightdb_bgw.wait_for_shutdown(lightdb_bgw.launch('sql', \
                 config => '{\"sql\": \"SELECT 1\"}', wait => false))",
                &[],
            )
            .expect("sql worker")
            .get(0);
        assert_eq!(status, "stopped");
    }
}

/// pg_background's launch + result of `SELECT 1`, in one statement.
pub const PGBG_SELECT_1: &str =
    "SELECT * FROM pg_background_result(pg_background_launch('select 1')) AS (x int)";

/// `run('select 1')` then `result(id)`, two statements; the id goes to
/// `started`, to be forgotten afterwards.
pub fn run_result_op(
    started: Arc<Mutex<Vec<i64>>>,
) -> impl Fn(&Cluster, &mut Option<Client>) + Clone + Send + Sync {
    move |cluster, client| {
        let c = client.get_or_insert_with(|| connect(cluster));
        let id: i64 = c
            .query_one("SELECT lightdb_bgw.run('select 1')", &[])
            .expect("run")
            .get(0);
        let rows = c
            .query("SELECT * FROM lightdb_bgw.result($1)", &[&id])
            .expect("result");
        assert_eq!(rows.len(), 1, "result of run {id}");
        started.lock().unwrap().push(id);
    }
}

pub fn pg_background_op() -> impl Fn(&Cluster, &mut Option<Client>) + Clone + Send + Sync {
    |cluster, client| {
        let c = client.get_or_insert_with(|| connect(cluster));
        let rows = c.query(PGBG_SELECT_1, &[]).expect("pg_background");
        assert_eq!(rows.len(), 1, "pg_background result");
    }
}

/// Waits until each worker has stopped, then forgets it.
pub fn forget_runs(client: &mut Client, ids: &[i64]) {
    for &id in ids {
        let status: String = client
            .query_one("SELECT lightdb_bgw.wait_for_shutdown($1, '30s')", &[&id])
            .unwrap_or_else(|e| panic!("wait_for_shutdown({id}): {e:?}"))
            .get(0);
        assert_eq!(status, "stopped", "worker {id}");
        let forgotten: bool = client
            .query_one("SELECT lightdb_bgw.forget($1)", &[&id])
            .unwrap_or_else(|e| panic!("forget({id}): {e:?}"))
            .get(0);
        assert!(forgotten, "worker {id} was not forgotten");
    }
}

/// Medians over repeats of a throughput window.
pub fn repeated<F>(cluster: &Cluster, sessions: usize, op: F) -> (Vec<f64>, Vec<f64>)
where
    F: Fn(&Cluster, &mut Option<Client>) + Send + Sync + 'static + Clone,
{
    // Warm-up.
    throughput(cluster, sessions, Duration::from_millis(300), op.clone());
    let mut rates = Vec::new();
    let mut lat = Vec::new();
    for _ in 0..3 {
        let (rate, l) = throughput(cluster, sessions, Duration::from_millis(1500), op.clone());
        rates.push(rate);
        lat.extend(l);
    }
    (rates, lat)
}
