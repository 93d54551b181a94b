//! The core behind the SQL functions: launching (`start.rs`) and
//! watching and stopping (`watch.rs`) workers. Authorisation is
//! `authz.rs`; the registry and the postmaster calls live below.

mod start;
mod watch;

pub use start::{
    config_jsonb, launch, launch_raw, parse_restart, parse_start_time, register, LaunchRequest,
};
pub use watch::{
    pm_stopped, postmaster_alive, status, status_given, status_of, stop_record, terminate,
    wait_checked, wait_unchecked, Status, Target,
};
