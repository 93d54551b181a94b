//! The cluster's processes seen from /proc: children of the postmaster by
//! title, spares, a worker's pid, liveness.

use std::fs;

use super::Client;

/// Pids of the live children of `postmaster` whose command line (their
/// process title) `wanted` accepts, from /proc.
pub fn child_pids(postmaster: i32, wanted: impl Fn(&str) -> bool) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let cmdline = fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let ppid: i32 = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if ppid == postmaster && wanted(&cmdline) && process_alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// Pids of the idle spare processes of the cluster whose postmaster is
/// `postmaster`: its children whose process title names a spare.
pub fn spare_pids(postmaster: i32) -> std::collections::HashSet<i32> {
    child_pids(postmaster, |title| title.contains("lightdb_bgw spare"))
        .into_iter()
        .collect()
}

/// `lightdb_bgw.pid(id)`: the worker's pid while it is started.
pub fn worker_pid(client: &mut Client, id: i64) -> Option<i32> {
    client
        .query_one("SELECT lightdb_bgw.pid($1)", &[&id])
        .unwrap_or_else(|e| panic!("pid({id}): {e:?}"))
        .get(0)
}

/// Whether process `pid` still exists (and is not a zombie of ours).
pub fn process_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .map(|rest| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}
