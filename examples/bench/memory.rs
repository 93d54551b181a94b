//! Section 5, memory: the registry's fixed shared memory at 10,000 slots
//! and, on a second throwaway server, at the default 64, and so what one
//! slot more costs; and the private memory of an idle sleep worker
//! against an idle client backend.

use std::time::Duration;

use crate::common::{Client, Cluster};
use crate::ops::connect;
use crate::report::Figure;

/// Measures and pushes the memory figures. Returns the idle client
/// session it measured; the caller keeps it open until the end of the run,
/// as the later sections have always run beside it.
pub fn run(cluster: &Cluster, client: &mut Client, figures: &mut Vec<Figure>) -> Client {
    let shmem = registry_shmem(client);
    let at_default = {
        let (_server, mut other) = Cluster::with_extension("bench64", &[]);
        registry_shmem(&mut other)
    };
    let per_slot = (shmem - at_default) as f64 / (10_000 - 64) as f64;
    figures.push(Figure {
        name: "registry fixed shared memory at 64 slots, the default (KiB)".into(),
        unit: "KiB",
        p50: at_default as f64 / 1024.0,
        p95: at_default as f64 / 1024.0,
        reference: "budget: 2 KiB a slot, and the text area's first 1 MiB".into(),
        ref_p50: (64 * 2 + 1024) as f64,
        higher_is_better: false,
    });
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
    let mut idle_client = connect(cluster);
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
        name: "registry fixed shared memory per slot, 10,000 against 64 slots (bytes)".into(),
        unit: "B",
        p50: per_slot,
        p95: per_slot,
        reference: "budget: 2 KiB a slot".into(),
        ref_p50: 2048.0,
        higher_is_better: false,
    });
    idle_client
}

/// The registry's allocation in the server's fixed shared memory.
fn registry_shmem(client: &mut Client) -> i64 {
    client
        .query_one(
            "SELECT allocated_size FROM pg_shmem_allocations WHERE name = 'lightdb_bgw registry'",
            &[],
        )
        .unwrap()
        .get(0)
}

/// Private memory (clean and dirty) of process `pid` in KiB, from
/// /proc/<pid>/smaps_rollup; 0 when it cannot be read.
fn private_kib(pid: i32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("Private_Clean:") || l.starts_with("Private_Dirty:"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|v| v.parse::<f64>().ok())
        .sum()
}
