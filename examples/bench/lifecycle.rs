//! Sections 1, 2 and 6, the lifecycle figures: launch -> running against
//! opening a connection; launch -> started (the floor's own event) and
//! launch -> running and connected against the floor; whole lifecycles
//! per second against the floor (the same four steps, and with
//! launch(wait => true)) and against connection churn (the latencies of
//! the latter are the SVG plot's points); one-shot sql workers per second.
//! The figures against the floor are measured without spare processes and
//! with `lightdb_bgw.spare_workers = 2` (see `SPARES`).

/// The spare processes of the rows that name them.
pub const SPARES: u32 = 2;

/// Sets `lightdb_bgw.spare_workers` to `n` and waits until the cluster
/// has exactly `n` idle spares (child processes titled so).
pub fn set_spares(cluster: &Cluster, n: u32) {
    let mut c = connect(cluster);
    c.batch_execute(&format!("ALTER SYSTEM SET lightdb_bgw.spare_workers = {n}"))
        .expect("set spare_workers");
    c.batch_execute("SELECT pg_reload_conf()").expect("reload");
    let pm = cluster.postmaster_pid();
    eventually("the spares", Duration::from_secs(30), || {
        let now = child_pids(pm, |title| title.contains("lightdb_bgw spare")).len();
        (now == n as usize).then_some(())
    });
}

/// The label of a row measured with `spares` spare processes.
fn with_spares(spares: u32) -> String {
    match spares {
        0 => String::new(),
        n => format!(", {n} spares"),
    }
}

use std::time::Duration;

use crate::common::{child_pids, eventually, Cluster};
use crate::ops::{
    connect, connect_latency, connection_op, floor_launch_latency, full_lifecycle_op,
    launch_sleep_latency, lifecycle_op, repeated, sql_worker_op, throughput as window, Cycle,
    Until,
};
use crate::report::{percentile, Figure, PlotPoint};

/// Launch latencies (sections 1 and 1b).
pub fn latency(cluster: &Cluster, figures: &mut Vec<Figure>) {
    // 1. launch -> started, against opening a connection.
    let conn = connect_latency(cluster, 40);
    for (database, label) in [(false, "no database"), (true, "with database")] {
        let l = launch_sleep_latency(cluster, database, Until::Ready, 40);
        figures.push(Figure {
            name: format!("launch -> running and connected ({label})"),
            unit: "ms",
            p50: percentile(&l, 0.5),
            p95: percentile(&l, 0.95),
            reference: "open a connection".into(),
            ref_p50: percentile(&conn, 0.5),
            higher_is_better: false,
        });
    }

    // 1b. against the floor's launch -> started: the same event (the
    // postmaster has started the process), and the worker running and
    // connected (what launch(wait => true) waits for), also against the
    // floor's own worker running (connected). Without spares, in rounds
    // that take turns with the floor's, as the noise of a shared machine
    // moves all alike; with spares after them.
    for (database, label) in [(false, "no database"), (true, "with database")] {
        let (floors, mut ours) = rounds(|until, ours| {
            if ours {
                launch_sleep_latency(cluster, database, until, 8)
            } else {
                floor_launch_latency(cluster, database, until, 8)
            }
        });
        for spares in [0, SPARES] {
            set_spares(cluster, spares);
            for (i, (until, what)) in UNTILS.iter().enumerate() {
                let ours = if spares == 0 {
                    std::mem::take(&mut ours[i])
                } else {
                    launch_sleep_latency(cluster, database, *until, 40)
                };
                let name = format!("{what} ({label}{})", with_spares(spares));
                let references = [(STARTED_FLOOR, &floors[0]), (RUNNING_FLOOR, &floors[1])];
                // Against the floor's running only a wait until running.
                let wanted = if *until == Until::Ready { 2 } else { 1 };
                against(figures, &name, &ours, &references[..wanted]);
            }
        }
        set_spares(cluster, 0);
    }

    // 1c. The same with 2 clients launching at once (without spares),
    // against the floor's launch -> started at 2 clients. (The floor's
    // worker says that it runs through one time stamp, which a second
    // client's worker would overwrite: not measured at 2 clients.)
    for (database, label) in [(false, "no database"), (true, "with database")] {
        let mut floor = Vec::new();
        let mut ours = [Vec::new(), Vec::new()];
        for _ in 0..ROUNDS {
            floor.extend(two_clients(|| {
                floor_launch_latency(cluster, database, Until::Started, 8)
            }));
            for ((until, _), got) in UNTILS.iter().zip(ours.iter_mut()) {
                got.extend(two_clients(|| {
                    launch_sleep_latency(cluster, database, *until, 8)
                }));
            }
        }
        for (i, (_, what)) in UNTILS.iter().enumerate() {
            let name = format!("{what} ({label}, 2 clients)");
            against(figures, &name, &ours[i], &[(STARTED_FLOOR, &floor)]);
        }
    }
}

/// The floor's two references: launch -> started, and launch -> its own
/// worker running (connected) and saying so, the event launch(wait =>
/// true) waits for.
const STARTED_FLOOR: &str =
    "floor: RegisterDynamicBackgroundWorker + WaitForBackgroundWorkerStartup";
const RUNNING_FLOOR: &str = "floor: register -> its worker runs (connected) and says so";

/// What the launch figures wait for, and their names.
const UNTILS: [(Until, &str); 2] = [
    (Until::Started, "launch -> started (wait_for_startup)"),
    (
        Until::Ready,
        "launch -> running and connected (wait => true)",
    ),
];

/// `ROUNDS` rounds in which the floor's samples and ours take turns, for
/// each of `UNTILS`; `sample(until, ours)` measures one batch. Returns
/// (the floor's, ours), each indexed as `UNTILS`.
fn rounds(sample: impl Fn(Until, bool) -> Vec<f64>) -> ([Vec<f64>; 2], [Vec<f64>; 2]) {
    let mut floors = [Vec::new(), Vec::new()];
    let mut ours = [Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        for (side, of) in [(false, &mut floors), (true, &mut ours)] {
            for ((until, _), got) in UNTILS.iter().zip(of.iter_mut()) {
                got.extend(sample(*until, side));
            }
        }
    }
    (floors, ours)
}

/// Runs `sample` in 2 clients at once; all their samples.
fn two_clients(sample: impl Fn() -> Vec<f64> + Sync) -> Vec<f64> {
    std::thread::scope(|s| {
        let a = s.spawn(&sample);
        let b = s.spawn(&sample);
        let mut all = a.join().expect("client 1");
        all.extend(b.join().expect("client 2"));
        all
    })
}

/// Pushes the figure `name` (`ours`) against each of `references`.
fn against(figures: &mut Vec<Figure>, name: &str, ours: &[f64], references: &[(&str, &Vec<f64>)]) {
    for (reference, floor) in references {
        figures.push(Figure {
            name: name.to_string(),
            unit: "ms",
            p50: percentile(ours, 0.5),
            p95: percentile(ours, 0.95),
            reference: reference.to_string(),
            ref_p50: percentile(floor, 0.5),
            higher_is_better: false,
        });
    }
}

/// Rounds of the lifecycle comparison with the floor, and each one's
/// measuring window.
const ROUNDS: usize = 5;
const WINDOW: Duration = Duration::from_millis(1500);

/// Lifecycles per second (sections 2b and 2); pushes one plot point per
/// number of sessions.
pub fn throughput(cluster: &Cluster, figures: &mut Vec<Figure>, plot: &mut Vec<PlotPoint>) {
    // 2b. whole lifecycles per second against the floor, in rounds that
    // take turns (floor, ours without spares, ours with them), so that a
    // noisy moment of the machine falls on all of them alike.
    for sessions in [1usize, 2] {
        for (database, label) in [(false, "no database"), (true, "with database")] {
            let cycles = [
                (Cycle::Started, "launch+wait_for_startup+terminate+wait"),
                (Cycle::Ready, "launch(wait)+terminate+wait"),
            ];
            let mut floor = Vec::new();
            let mut ours = vec![Vec::new(); cycles.len() * 2];
            window(
                cluster,
                sessions,
                Duration::from_millis(300),
                full_lifecycle_op(database, Cycle::Floor),
            );
            for _ in 0..ROUNDS {
                floor.push(
                    window(
                        cluster,
                        sessions,
                        WINDOW,
                        full_lifecycle_op(database, Cycle::Floor),
                    )
                    .0,
                );
                for (s, spares) in [0, SPARES].into_iter().enumerate() {
                    set_spares(cluster, spares);
                    for (i, (cycle, _)) in cycles.iter().enumerate() {
                        let op = full_lifecycle_op(database, *cycle);
                        ours[s * cycles.len() + i].push(window(cluster, sessions, WINDOW, op).0);
                    }
                }
                set_spares(cluster, 0);
            }
            for (s, spares) in [0, SPARES].into_iter().enumerate() {
                for (i, (_, what)) in cycles.iter().enumerate() {
                    let rates = &ours[s * cycles.len() + i];
                    figures.push(Figure {
                        name: format!(
                            "{what} lifecycles/s, {sessions} client(s), {label}{}",
                            with_spares(spares)
                        ),
                        unit: "1/s",
                        p50: percentile(rates, 0.5),
                        p95: percentile(rates, 0.05),
                        reference: "floor: register, wait startup, terminate, wait shutdown /s"
                            .into(),
                        ref_p50: percentile(&floor, 0.5),
                        higher_is_better: true,
                    });
                }
            }
        }
    }

    // 2. full lifecycles per second against connection churn.
    for sessions in [1usize, 2, 8] {
        let (conn_rates, conn_lat) = repeated(cluster, sessions, connection_op());
        let mut lat_plot = (sessions, percentile(&conn_lat, 0.5), 0.0, 0.0);
        for (database, label) in [(false, "no database"), (true, "with database")] {
            let (rates, lat) = repeated(cluster, sessions, lifecycle_op(database));
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
}

/// One-shot sql workers per second (section 6).
pub fn one_shot_sql(cluster: &Cluster, figures: &mut Vec<Figure>) {
    // 6. one-shot sql workers per second against fresh connections.
    for sessions in [1usize, 2] {
        let (rates, _) = repeated(cluster, sessions, sql_worker_op());
        let (conn_rates, _) = repeated(cluster, sessions, connection_op());
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
}
