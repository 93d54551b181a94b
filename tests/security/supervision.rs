//! A supervisor's backoff from a child that keeps dying, and terminate of
//! a static worker through the postmaster.

use super::*;

#[test]
fn a_supervisor_backs_off_from_a_child_that_keeps_dying() {
    let (_cluster, mut admin) =
        Cluster::with_extension("backoff", &[("max_worker_processes", "16")]);
    let sup = launch(
        &mut admin,
        "'supervisor', database => NULL, config => '{\"children\": 1, \"child_kind\": \
         \"sleep\", \"child_config\": {\"duration\": \"1ms\"}}'",
    );
    std::thread::sleep(Duration::from_secs(5));
    let children: i64 = admin
        .query_one(
            "SELECT count(*) FROM lightdb_bgw.workers WHERE id > $1",
            &[&sup],
        )
        .unwrap()
        .get(0);
    // Launches at 0 s, then after waits of 1, 2 and 4 s: at most 4 in 5 s
    // (without a backoff: hundreds).
    assert!((2..=4).contains(&children), "{children} children in 5 s");
    let note: Option<String> = field(&mut admin, "last_error", sup);
    let note = note.unwrap_or_default();
    assert!(note.contains("times in a row; relaunching it in"), "{note}");
    stop_worker(&mut admin, sup);
}

#[test]
fn terminating_a_static_worker_frees_its_postmaster_slot() {
    // 6 slots: the logical replication launcher, the dispatcher and the
    // static sleep take three; dynamic launches fill the rest until 53000.
    let (_cluster, mut admin) = Cluster::with_extension(
        "static_handle",
        &[
            ("max_worker_processes", "6"),
            ("lightdb_bgw.static_workers", "sleep:1"),
        ],
    );
    let fill = |admin: &mut Client| -> Vec<i64> {
        let mut ids = Vec::new();
        loop {
            match admin.query_one("SELECT lightdb_bgw.launch('sleep', database => NULL)", &[]) {
                Ok(row) => ids.push(row.get(0)),
                Err(err) => {
                    assert_eq!(sqlstate(&err), "53000", "{err}");
                    return ids;
                }
            }
        }
    };
    let before = fill(&mut admin);
    for id in &before {
        stop_worker(&mut admin, *id);
    }
    let static_pid: i32 = field(&mut admin, "pid", 1);
    assert_eq!(stop_worker(&mut admin, 1), "stopped");
    eventually("the static worker's process is gone", LONG, || {
        (!process_alive(static_pid)).then_some(())
    });
    // The postmaster forgot the static worker at once (no restart that
    // sees the request and leaves): its slot is free for a dynamic one.
    let after = fill(&mut admin);
    assert_eq!(after.len(), before.len() + 1, "{before:?} then {after:?}");
    assert_eq!(field::<i32>(&mut admin, "restarts", 1), 0);
    for id in after {
        stop_worker(&mut admin, id);
    }
}
