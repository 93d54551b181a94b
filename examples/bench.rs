//! Benchmarks: every figure beside a reference measured in the same run on
//! the same throwaway server, as a ratio. Run with `bash scripts/bench.sh`.
//!
//! Prints a table and writes `results/bench-<unix time>.{json,csv}` and
//! `results/lifecycle-latency.svg` (latency against concurrency).

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// One row of the results table.
struct Figure {
    name: String,
    unit: &'static str,
    p50: f64,
    p95: f64,
    reference: String,
    ref_p50: f64,
    /// Ratio as "better when above 1" or "better when below 1".
    higher_is_better: bool,
}

impl Figure {
    fn ratio(&self) -> f64 {
        if self.ref_p50 == 0.0 {
            f64::NAN
        } else {
            self.p50 / self.ref_p50
        }
    }
}

fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let idx = ((v.len() - 1) as f64 * p).round() as usize;
    v[idx]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn connect(cluster: &Cluster) -> Client {
    postgres::Config::new()
        .host("127.0.0.1")
        .port(cluster.port)
        .user("postgres")
        .dbname("postgres")
        .connect(NoTls)
        .expect("connect")
}

fn launch_sleep_latency(cluster: &Cluster, database: bool, n: usize) -> Vec<f64> {
    let mut client = connect(cluster);
    let sql = if database {
        "SELECT lightdb_bgw.launch('sleep')"
    } else {
        "SELECT lightdb_bgw.launch('sleep', database => NULL)"
    };
    let mut out = Vec::new();
    for i in 0..n + 5 {
        let began = Instant::now();
        let id: i64 = client.query_one(sql, &[]).unwrap().get(0);
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
/// WaitForBackgroundWorkerStartup, from the `bench` build.
fn floor_launch_latency(cluster: &Cluster, database: bool, n: usize) -> Vec<f64> {
    let mut client = connect(cluster);
    let mut out = Vec::new();
    for i in 0..n + 5 {
        let began = Instant::now();
        let pid: i32 = client
            .query_one("SELECT lightdb_bgw.floor_launch($1)", &[&database])
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

/// One whole lifecycle in one statement: launch (waiting until it runs),
/// terminate, wait for the shutdown.
fn full_lifecycle_op(
    database: bool,
    floor: bool,
) -> impl Fn(&Cluster, &mut Option<Client>) + Clone + Send + Sync {
    move |cluster, client| {
        let c = client.get_or_insert_with(|| connect(cluster));
        let sql = match (floor, database) {
            (true, db) => {
                format!("SELECT lightdb_bgw.floor_stop(lightdb_bgw.floor_launch({db}))::text")
            }
            (false, db) => format!(
                "WITH l AS MATERIALIZED (SELECT lightdb_bgw.launch('sleep'{}) AS id) \
                 SELECT lightdb_bgw.wait_for_shutdown(id) FROM l WHERE lightdb_bgw.terminate(id)",
                if db { "" } else { ", database => NULL" }
            ),
        };
        let done: String = c.query_one(&sql, &[]).expect("lifecycle").get(0);
        assert!(done == "stopped" || done == "true", "{done}");
    }
}

fn connect_latency(cluster: &Cluster, n: usize) -> Vec<f64> {
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
fn throughput<F>(cluster: &Cluster, sessions: usize, window: Duration, op: F) -> (f64, Vec<f64>)
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

fn lifecycle_op(database: bool) -> impl Fn(&Cluster, &mut Option<Client>) + Clone + Send + Sync {
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

fn connection_op() -> impl Fn(&Cluster, &mut Option<Client>) + Clone + Send + Sync {
    |cluster, _| {
        let mut c = connect(cluster);
        c.simple_query("SELECT 1").unwrap();
    }
}

fn sql_worker_op() -> impl Fn(&Cluster, &mut Option<Client>) + Clone + Send + Sync {
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

/// Medians over repeats of a throughput window.
fn repeated<F>(cluster: &Cluster, sessions: usize, op: F) -> (Vec<f64>, Vec<f64>)
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

fn private_kib(pid: i32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("Private_Clean:") || l.starts_with("Private_Dirty:"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|v| v.parse::<f64>().ok())
        .sum()
}

fn main() {
    let out_dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&out_dir).expect("results directory");
    let (cluster, mut client) = Cluster::with_extension(
        "bench",
        &[
            ("max_worker_processes", "40"),
            ("max_connections", "100"),
            ("lightdb_bgw.max_workers", "10000"),
        ],
    );
    let mut figures: Vec<Figure> = Vec::new();
    let mut plot: Vec<PlotPoint> = Vec::new();

    // 3. listing cost with 10, 100 and 1000 registry entries.
    let mut per_row_10 = 0.0;
    let mut filled: i64 = client
        .query_one("SELECT count(*) FROM lightdb_bgw.workers", &[])
        .unwrap()
        .get(0);
    for target in [10i64, 100, 1000, 10000] {
        while filled < target {
            let id: i64 = client
                .query_one(
                    "SELECT lightdb_bgw.launch('sleep', config => '{\"duration\": \"1ms\"}', database => NULL)",
                    &[],
                )
                .unwrap()
                .get(0);
            client
                .query_one("SELECT lightdb_bgw.wait_for_shutdown($1)", &[&id])
                .unwrap();
            // Counted here: listing the registry after each launch would
            // make the filling quadratic.
            filled += 1;
        }
        let mut samples = Vec::new();
        for i in 0..35 {
            let began = Instant::now();
            let rows = client
                .query("SELECT * FROM lightdb_bgw.workers", &[])
                .unwrap();
            let took = ms(began.elapsed());
            assert_eq!(rows.len() as i64, filled);
            if i >= 5 {
                samples.push(took);
            }
        }
        let p50 = percentile(&samples, 0.5);
        let per_row = p50 / filled as f64;
        if target == 10 {
            per_row_10 = per_row;
        }
        figures.push(Figure {
            name: format!("workers listing, {filled} entries (ms per call)"),
            unit: "ms",
            p50,
            p95: percentile(&samples, 0.95),
            reference: "per-row cost at 10 entries x rows".into(),
            ref_p50: per_row_10 * filled as f64,
            higher_is_better: false,
        });
        if target >= 1000 {
            // Server-side time (EXPLAIN ANALYZE), against the budget of
            // 1 ms per 1,000 entries.
            client
                .batch_execute(
                    "CREATE OR REPLACE FUNCTION pg_temp.exec_ms(q text) RETURNS float8 \
                     LANGUAGE plpgsql AS $$ DECLARE plan json; BEGIN \
                     EXECUTE 'EXPLAIN (ANALYZE, FORMAT JSON) ' || q INTO plan; \
                     RETURN (plan->0->>'Execution Time')::float8; END $$",
                )
                .unwrap();
            let mut server = Vec::new();
            for i in 0..25 {
                let took: f64 = client
                    .query_one(
                        "SELECT pg_temp.exec_ms('SELECT * FROM lightdb_bgw.workers')",
                        &[],
                    )
                    .unwrap()
                    .get(0);
                if i >= 5 {
                    server.push(took);
                }
            }
            figures.push(Figure {
                name: format!("workers listing, {filled} entries, server-side (ms)"),
                unit: "ms",
                p50: percentile(&server, 0.5),
                p95: percentile(&server, 0.95),
                reference: "budget: 1 ms per 1,000 entries".into(),
                ref_p50: filled as f64 / 1000.0,
                higher_is_better: false,
            });
        }
    }

    // 1. launch -> started, against opening a connection.
    let conn = connect_latency(&cluster, 40);
    for (database, label) in [(false, "no database"), (true, "with database")] {
        let l = launch_sleep_latency(&cluster, database, 40);
        figures.push(Figure {
            name: format!("launch -> started ({label})"),
            unit: "ms",
            p50: percentile(&l, 0.5),
            p95: percentile(&l, 0.95),
            reference: "open a connection".into(),
            ref_p50: percentile(&conn, 0.5),
            higher_is_better: false,
        });
    }

    // 1b. launch -> running against the floor's launch -> started.
    for (database, label) in [(false, "no database"), (true, "with database")] {
        let ours = launch_sleep_latency(&cluster, database, 40);
        let floor = floor_launch_latency(&cluster, database, 40);
        figures.push(Figure {
            name: format!("launch -> running ({label})"),
            unit: "ms",
            p50: percentile(&ours, 0.5),
            p95: percentile(&ours, 0.95),
            reference: "floor: RegisterDynamicBackgroundWorker + WaitForBackgroundWorkerStartup"
                .into(),
            ref_p50: percentile(&floor, 0.5),
            higher_is_better: false,
        });
    }

    // 2b. whole lifecycles per second against the floor.
    for sessions in [1usize, 2] {
        for (database, label) in [(false, "no database"), (true, "with database")] {
            let (ours, _) = repeated(&cluster, sessions, full_lifecycle_op(database, false));
            let (floor, _) = repeated(&cluster, sessions, full_lifecycle_op(database, true));
            figures.push(Figure {
                name: format!("launch+terminate+wait lifecycles/s, {sessions} client(s), {label}"),
                unit: "1/s",
                p50: percentile(&ours, 0.5),
                p95: percentile(&ours, 0.05),
                reference: "floor: register, wait startup, terminate, wait shutdown /s".into(),
                ref_p50: percentile(&floor, 0.5),
                higher_is_better: true,
            });
        }
    }

    // 2. full lifecycles per second against connection churn.
    for sessions in [1usize, 2, 8] {
        let (conn_rates, conn_lat) = repeated(&cluster, sessions, connection_op());
        let mut lat_plot = (sessions, percentile(&conn_lat, 0.5), 0.0, 0.0);
        for (database, label) in [(false, "no database"), (true, "with database")] {
            let (rates, lat) = repeated(&cluster, sessions, lifecycle_op(database));
            if database {
                lat_plot.3 = percentile(&lat, 0.5);
            } else {
                lat_plot.2 = percentile(&lat, 0.5);
            }
            figures.push(Figure {
                name: format!("lifecycles/s, {sessions} session(s), {label}"),
                unit: "1/s",
                p50: percentile(&rates, 0.5),
                p95: percentile(&rates, 0.05),
                reference: "connect + SELECT 1 + disconnect /s".into(),
                ref_p50: percentile(&conn_rates, 0.5),
                higher_is_better: true,
            });
        }
        plot.push(lat_plot);
    }

    // 4. wake-up: worker exit -> another session's wait returns, against
    // the server's own wake-up of a session waiting on an advisory lock.
    let mut wake = Vec::new();
    let mut launcher = connect(&cluster);
    for i in 0..35 {
        let id: i64 = launcher
            .query_one(
                "SELECT lightdb_bgw.launch('sleep', config => '{\"duration\": \"50ms\"}', database => NULL)",
                &[],
            )
            .unwrap()
            .get(0);
        let row = client
            .query_one(
                "SELECT lightdb_bgw.wait_for_shutdown($1), \
                 extract(epoch FROM clock_timestamp() - \
                   (SELECT stopped_at FROM lightdb_bgw.workers WHERE id = $1))::float8 * 1000",
                &[&id],
            )
            .unwrap();
        let lag: f64 = row.get::<_, f64>(1);
        if i >= 5 {
            wake.push(lag);
        }
    }
    let mut lock_wake = Vec::new();
    for i in 0..35 {
        let mut holder = connect(&cluster);
        holder
            .query_one("SELECT pg_advisory_lock(42)", &[])
            .unwrap();
        let port = cluster.port;
        let waiter = std::thread::spawn(move || {
            let mut w = Cluster::detached(port).connect("postgres");
            let row = w
                .query_one("SELECT pg_advisory_lock(42), clock_timestamp()::text", &[])
                .unwrap();
            let ts: String = row.get(1);
            w.query_one("SELECT pg_advisory_unlock(42)", &[]).unwrap();
            ts
        });
        std::thread::sleep(Duration::from_millis(50));
        let released: String = holder
            .query_one(
                "SELECT clock_timestamp()::text FROM (SELECT pg_advisory_unlock(42)) s",
                &[],
            )
            .unwrap()
            .get(0);
        let woke = waiter.join().unwrap();
        let lag: f64 = holder
            .query_one(
                "SELECT extract(epoch FROM $1::text::timestamptz - $2::text::timestamptz)::float8 * 1000",
                &[&woke, &released],
            )
            .unwrap()
            .get::<_, f64>(0);
        if i >= 5 {
            lock_wake.push(lag);
        }
    }
    let mut floor_wake = Vec::new();
    for i in 0..35 {
        let lag: f64 = client
            .query_one("SELECT lightdb_bgw.floor_wake_ms()", &[])
            .unwrap()
            .get(0);
        if i >= 5 {
            floor_wake.push(lag);
        }
    }
    figures.push(Figure {
        name: "wake-up: worker's last act -> another session's wait_for_shutdown returns".into(),
        unit: "ms",
        p50: percentile(&wake, 0.5),
        p95: percentile(&wake, 0.95),
        reference: "floor: launcher's WaitForBackgroundWorkerShutdown".into(),
        ref_p50: percentile(&floor_wake, 0.5),
        higher_is_better: false,
    });
    figures.push(Figure {
        name: "wake-up: worker exit -> wait_for_shutdown returns (other session)".into(),
        unit: "ms",
        p50: percentile(&wake, 0.5),
        p95: percentile(&wake, 0.95),
        reference: "advisory lock release -> waiter wakes".into(),
        ref_p50: percentile(&lock_wake, 0.5),
        higher_is_better: false,
    });

    // 5. memory: registry bytes per slot; private memory of idle processes.
    let shmem: i64 = client
        .query_one(
            "SELECT allocated_size FROM pg_shmem_allocations WHERE name = 'lightdb_bgw registry'",
            &[],
        )
        .unwrap()
        .get(0);
    let per_slot_kib = shmem as f64 / 10000.0 / 1024.0;
    figures.push(Figure {
        name: "registry fixed shared memory at 10,000 slots (MiB)".into(),
        unit: "MiB",
        p50: shmem as f64 / 1024.0 / 1024.0,
        p95: shmem as f64 / 1024.0 / 1024.0,
        reference: "budget: 24 MiB".into(),
        ref_p50: 24.0,
        higher_is_better: false,
    });
    let idle_id: i64 = client
        .query_one("SELECT lightdb_bgw.launch('sleep')", &[])
        .unwrap()
        .get(0);
    let idle_pid: i32 = client
        .query_one("SELECT lightdb_bgw.pid($1)", &[&idle_id])
        .unwrap()
        .get(0);
    let mut idle_client = connect(&cluster);
    let backend_pid: i32 = idle_client
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    std::thread::sleep(Duration::from_millis(300));
    let worker_kib = private_kib(idle_pid);
    let backend_kib = private_kib(backend_pid);
    figures.push(Figure {
        name: "private memory of an idle sleep worker (KiB)".into(),
        unit: "KiB",
        p50: worker_kib,
        p95: worker_kib,
        reference: "idle client backend after SELECT 1".into(),
        ref_p50: backend_kib,
        higher_is_better: false,
    });
    figures.push(Figure {
        name: "registry shared memory per slot (KiB)".into(),
        unit: "KiB",
        p50: per_slot_kib,
        p95: per_slot_kib,
        reference: "-".into(),
        ref_p50: 0.0,
        higher_is_better: false,
    });

    // 6. one-shot sql workers per second against fresh connections.
    for sessions in [1usize, 2] {
        let (rates, _) = repeated(&cluster, sessions, sql_worker_op());
        let (conn_rates, _) = repeated(&cluster, sessions, connection_op());
        figures.push(Figure {
            name: format!("one-shot sql workers (SELECT 1)/s, {sessions} session(s)"),
            unit: "1/s",
            p50: percentile(&rates, 0.5),
            p95: percentile(&rates, 0.05),
            reference: "fresh connection + SELECT 1 /s".into(),
            ref_p50: percentile(&conn_rates, 0.5),
            higher_is_better: true,
        });
    }
    drop(idle_client);

    report(&figures, &plot, &out_dir);
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cores} cores, {cpu}, PostgreSQL 15")
}

fn report(figures: &[Figure], plot: &[PlotPoint], out_dir: &std::path::Path) {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut table = String::new();
    let _ = writeln!(table, "machine: {}", machine());
    let _ = writeln!(
        table,
        "| figure | p50 | p95 (rates: p5) | reference | reference p50 | ratio |"
    );
    let _ = writeln!(table, "|---|---:|---:|---|---:|---:|");
    let mut csv =
        String::from("figure,unit,p50,p95,reference,reference_p50,ratio,higher_is_better\n");
    let mut json = Vec::new();
    for f in figures {
        let ratio = f.ratio();
        let _ = writeln!(
            table,
            "| {} | {:.2} {} | {:.2} | {} | {:.2} | {} |",
            f.name,
            f.p50,
            f.unit,
            f.p95,
            f.reference,
            f.ref_p50,
            if ratio.is_finite() {
                format!("{ratio:.2}x")
            } else {
                "-".into()
            }
        );
        let _ = writeln!(
            csv,
            "\"{}\",{},{:.4},{:.4},\"{}\",{:.4},{:.4},{}",
            f.name, f.unit, f.p50, f.p95, f.reference, f.ref_p50, ratio, f.higher_is_better
        );
        json.push(serde_json::json!({
            "figure": f.name, "unit": f.unit, "p50": f.p50, "p95": f.p95,
            "reference": f.reference, "reference_p50": f.ref_p50,
            "ratio": if ratio.is_finite() { Some(ratio) } else { None },
            "higher_is_better": f.higher_is_better,
        }));
    }
    println!("{table}");
    let doc = serde_json::json!({ "machine": machine(), "unix_time": stamp, "figures": json });
    std::fs::write(out_dir.join(format!("bench-{stamp}.json")), doc.to_string()).unwrap();
    std::fs::write(out_dir.join(format!("bench-{stamp}.csv")), csv).unwrap();
    std::fs::write(out_dir.join("lifecycle-latency.svg"), svg(plot)).unwrap();
    println!(
        "wrote results/bench-{stamp}.json, results/bench-{stamp}.csv, results/lifecycle-latency.svg"
    );
}

/// Sessions, and median ms per connection, per lifecycle without and with
/// a database.
type PlotPoint = (usize, f64, f64, f64);

/// A plotted series: its label, its colour, and how to read it off a point.
type Series = (&'static str, &'static str, fn(&PlotPoint) -> f64);

/// Median latency per operation against concurrency: connections, and
/// worker lifecycles without and with a database.
fn svg(points: &[PlotPoint]) -> String {
    let (w, h, pad) = (640.0, 360.0, 50.0);
    let max_y = points
        .iter()
        .flat_map(|p| [p.1, p.2, p.3])
        .fold(1.0f64, f64::max)
        * 1.1;
    let x_of = |i: usize| pad + i as f64 * (w - 2.0 * pad) / (points.len().max(2) - 1) as f64;
    let y_of = |v: f64| h - pad - v / max_y * (h - 2.0 * pad);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{pad}\" y=\"20\">median latency per operation (ms) against client sessions</text>\n\
         <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{}\" stroke=\"black\"/>\n",
        h - pad,
        w - pad,
        h - pad,
        h - pad
    );
    for (i, p) in points.iter().enumerate() {
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{} session(s)</text>",
            x_of(i),
            h - pad + 18.0,
            p.0
        );
    }
    for k in 0..=4 {
        let v = max_y * k as f64 / 4.0;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{v:.1}</text>",
            pad - 5.0,
            y_of(v) + 4.0
        );
    }
    let series: [Series; 3] = [
        ("connect + SELECT 1", "#888888", |p| p.1),
        ("worker lifecycle, no database", "#1f77b4", |p| p.2),
        ("worker lifecycle, with database", "#d62728", |p| p.3),
    ];
    for (n, (label, color, get)) in series.iter().enumerate() {
        let pts: Vec<String> = points
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", x_of(i), y_of(get(p))))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            pts.join(" ")
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" fill=\"{color}\">{label}</text>",
            pad + 10.0,
            pad + 15.0 * n as f64
        );
    }
    s.push_str("</svg>\n");
    s
}
