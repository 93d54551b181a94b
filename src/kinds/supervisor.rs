//! `supervisor`: a worker that itself registers `children` workers of
//! `child_kind` (dynamic registration from a background worker) and keeps
//! them running: a child that stops, for whatever reason, is relaunched
//! under a new id. Terminating the supervisor terminates its children.
//!
//! The supervisor is the children's `bgw_notify_pid`, so the postmaster
//! wakes it (SIGUSR1, which sets its latch) whenever a child starts or
//! stops; a one-second nap is only a backstop.

use std::sync::Mutex;
use std::time::Duration;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::control::{self, Status};
use crate::registry::{self, WorkerRecord};
use crate::spec::{Kind, WorkerDef};
use crate::worker;

/// Ids of the current children, for the exit callback.
static CHILDREN: Mutex<Vec<i64>> = Mutex::new(Vec::new());

pub fn run(record: &WorkerRecord, children: u32, child_kind: Kind, child_config: &str) {
    // SAFETY: registered once; runs at exit, SIGTERM included.
    unsafe { pg_sys::before_shmem_exit(Some(stop_children), pg_sys::Datum::from(0usize)) };
    // SAFETY: MyProcPid is set in every server process.
    let me = unsafe { pg_sys::MyProcPid };
    let launched_by = record
        .launched_by
        .clone()
        .unwrap_or_else(|| "lightdb_bgw".into());
    let mut current: Vec<Option<i64>> = vec![None; children as usize];
    loop {
        for (index, child) in current.iter_mut().enumerate() {
            let alive = child.and_then(registry::find).map(|rec| {
                let (status, _) = control::status_of(&rec);
                status != Status::Stopped
            });
            if alive == Some(true) {
                continue;
            }
            let def = WorkerDef {
                kind: child_kind,
                name: format!("{} child {}", record.def.name, index + 1),
                database: record.def.database.clone(),
                role: record.def.role.clone(),
                start_time: record.def.start_time,
                restart_after: None,
                config: child_config.to_string(),
            };
            match control::register(def, &launched_by, record.role_oid, false, me) {
                Ok(id) => {
                    if child.is_some() {
                        log!(
                            "{}: relaunched child {} as worker {id}",
                            worker::describe(record),
                            index + 1
                        );
                    }
                    *child = Some(id);
                    worker::record_error(None);
                }
                Err(err) => {
                    worker::record_error(Some(&format!(
                        "cannot launch child {}: {}",
                        index + 1,
                        err
                    )));
                    *child = None;
                }
            }
        }
        if let Ok(mut ids) = CHILDREN.lock() {
            *ids = current.iter().flatten().copied().collect();
        }
        worker::nap(Some(Duration::from_secs(1)));
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn stop_children(_code: i32, _arg: pg_sys::Datum) {
    let ids = CHILDREN.lock().map(|ids| ids.clone()).unwrap_or_default();
    for id in ids {
        if let Some(rec) = registry::request_terminate(id) {
            control::stop_record(&rec);
        }
    }
}
