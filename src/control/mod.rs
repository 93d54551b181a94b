//! The core behind the SQL functions: launching (`start.rs`), watching
//! and stopping (`watch.rs`) workers, and background SQL with results
//! (`results.rs`). Authorisation is
//! `authz.rs`; the registry and the postmaster calls live below.

mod results;
mod start;
mod watch;

pub use results::{cancel, forget, result, result_memory, run};
pub use start::{
    config_jsonb, launch, launch_raw, parse_restart, parse_start_time, register, LaunchRequest,
};
pub use watch::{
    postmaster_alive, status, status_given, status_of, stop_record, terminate, wait_checked,
    wait_unchecked, Status, Target,
};
