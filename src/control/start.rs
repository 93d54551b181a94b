//! Launching workers: a request validated at the SQL boundary, a registry
//! slot reserved (given back on every error path), the worker handed to an
//! idle spare process or registered with the postmaster, and, with `wait`,
//! returned once it is connected.
//! Also used by the supervisor kind from inside a worker.

use std::str::FromStr;
use std::time::Duration;

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::watch::{starts_after_promotion, wait_checked, wait_for_launch, Target};
use crate::authz::{self, Authorised};
use crate::capacity;
use crate::codec;
use crate::config::{self, KindConfig};
use crate::error::BgwError;
use crate::gucs;
use crate::jsonb_text::JsonbBytes;
use crate::launch::{self, pm_stopped, RawWorker};
use crate::preload;
use crate::registry::{self, Admission, Grant, NoRoom, Refusal, Reservation};
use crate::spare;
use crate::spec::{self, Kind, StartTime};
use crate::workerdef::WorkerDef;

/// A launch of a built-in kind, as `launch(...)` receives it.
#[derive(Debug, Clone)]
pub struct LaunchRequest {
    pub kind: String,
    pub name: Option<String>,
    /// The JSON object as jsonb prints it (compact); kept as given.
    pub config: String,
    pub database: Option<String>,
    pub role: Option<String>,
    pub start_time: String,
    /// `restart_after` as an interval: months, days, microseconds.
    pub restart_after: Option<(i32, i32, i64)>,
    pub bypass_allowconn: bool,
    pub wait: bool,
    /// Wait in the launch queue rather than fail for lack of capacity.
    pub queue: bool,
}

fn invalid_detail(message: String, detail: String) -> BgwError {
    BgwError::InvalidValue {
        message,
        detail: Some(detail),
        hint: None,
    }
}

pub fn parse_start_time(text: &str) -> Result<StartTime, BgwError> {
    StartTime::from_name(text).ok_or_else(|| {
        BgwError::invalid_with_hint(
            format!("unknown start_time \"{text}\""),
            "Use postmaster_start, consistent_state or recovery_finished.",
        )
    })
}

/// `restart_after` as interval parts (months, days, microseconds) to whole
/// seconds, or `None` for never.
pub fn parse_restart(value: Option<(i32, i32, i64)>) -> Result<Option<u32>, BgwError> {
    value
        .map(|(m, d, us)| config::restart_secs(m, d, us).map_err(BgwError::invalid))
        .transpose()
}

fn check_name(name: &str) -> Result<(), BgwError> {
    spec::check_c_string("worker name", name, registry::NAME_LEN).map_err(BgwError::invalid)
}

/// Reads a duration of a config with PostgreSQL's own interval input, so
/// every form `'5s'::interval` accepts works (ISO 8601 included).
fn pg_duration(text: &str) -> Result<Duration, String> {
    let interval =
        Interval::from_str(text).map_err(|_| format!("\"{text}\" is not an interval"))?;
    config::interval_duration(interval.months(), interval.days(), interval.micros())
        .map_err(|e| format!("\"{text}\": {e}"))
}

/// Refuses a config larger than `lightdb_bgw.max_config_size`: for a
/// `sql` worker the size of its text, for the others of the config as
/// given.
fn check_config_size(config: &KindConfig, config_json: &str) -> Result<(), BgwError> {
    let limit = gucs::max_config_size();
    let (what, size) = match config {
        KindConfig::Sql { sql, .. } => ("sql text", sql.len()),
        _ => ("config", config_json.len()),
    };
    if size > limit {
        return Err(BgwError::SizeLimit {
            message: format!(
                "{what} is {size} bytes long; \"lightdb_bgw.max_config_size\" allows {limit}"
            ),
            setting: "lightdb_bgw.max_config_size",
        });
    }
    Ok(())
}

/// The config as the `workers` view shows it: jsonb bytes, made once.
pub fn config_jsonb(config: &KindConfig) -> Vec<u8> {
    JsonbBytes::from_json(&codec::to_json(config).to_string()).0
}

/// What `registry::reserve` refused, as an error.
fn reserve_error(refusal: Refusal, def: &WorkerDef) -> BgwError {
    match refusal {
        Refusal::RegistryFull(capacity) => BgwError::RegistryFull(capacity),
        Refusal::TextsFull => BgwError::SizeLimit {
            message: "the shared memory for worker configs is full".into(),
            setting: "lightdb_bgw.max_text_memory",
        },
        Refusal::QueueFull(max) => BgwError::QueueFull(max),
        Refusal::RoleQueueFull(limit) => BgwError::RoleQueueFull {
            role: def.role.clone().unwrap_or_default(),
            limit,
        },
        Refusal::NoRoom(NoRoom::Quota(limit)) => BgwError::OverQuota {
            role: def.role.clone().unwrap_or_default(),
            limit,
        },
        Refusal::NoRoom(NoRoom::Reserved(n)) => BgwError::ReservedForSuperusers(n),
        Refusal::NoRoom(NoRoom::Postmaster) => BgwError::NoPostmasterSlot,
        Refusal::DatabaseClosing => BgwError::WrongState {
            message: format!(
                "database \"{}\" is being dropped, renamed, moved or copied",
                def.database.as_deref().unwrap_or_default()
            ),
            hint: Some("Launch again once that command has ended.".into()),
        },
    }
}

/// `launch(...)`: validates everything, registers the worker and, with
/// `wait`, returns once it is connected as its role. Returns the new id.
pub fn launch(req: LaunchRequest) -> Result<i64, BgwError> {
    preload::require()?;
    let kind = Kind::from_name(&req.kind).ok_or_else(|| {
        BgwError::invalid_with_hint(
            format!("unknown kind \"{}\"", req.kind),
            format!("Valid kinds are: {}.", Kind::valid_names()),
        )
    })?;
    let depth = config::nesting_depth(&req.config);
    if depth > config::MAX_CONFIG_DEPTH {
        return Err(BgwError::invalid(format!(
            "config is nested {depth} levels deep; at most {} are allowed",
            config::MAX_CONFIG_DEPTH
        )));
    }
    let config = config::parse(kind, &req.config, &pg_duration)
        .map_err(|e| invalid_detail(format!("invalid config for kind \"{kind}\""), e))?;
    check_config_size(&config, &req.config)?;
    let start_time = parse_start_time(&req.start_time)?;
    let restart_after = parse_restart(req.restart_after)?;
    if let Some(name) = &req.name {
        check_name(name)?;
    }
    let (me, superuser) = authz::current_user();
    if req.bypass_allowconn && !superuser {
        return Err(BgwError::NotAllowed(
            "only a superuser may launch with bypass_allowconn".into(),
        ));
    }
    if config.needs_database() && req.database.is_none() {
        return Err(BgwError::NullValue(match &config {
            KindConfig::Supervisor { child, .. } => format!(
                "database of a \"{kind}\" worker whose children are \"{}\" workers",
                child.kind()
            ),
            _ => format!("database of a \"{kind}\" worker"),
        }));
    }
    let role = req.role.clone().unwrap_or_else(|| me.clone());
    let def = WorkerDef {
        kind,
        name: req.name.clone().unwrap_or_default(),
        database: req.database.clone(),
        role: Some(role.clone()),
        start_time,
        restart_after,
        config,
    };
    launch::check_registrable(launch::builtin_flags(&def), start_time)
        .map_err(BgwError::invalid)?;
    let authorised = authz::authorise(req.database.as_deref(), &role, req.bypass_allowconn)?;
    let admission = capacity::admission(authorised.role_oid, authorised.database_oid, req.queue);
    let id = register(def, &me, authorised, req.bypass_allowconn, &admission)?;
    if req.wait {
        wait_for_launch(id, start_time)?;
    }
    Ok(id)
}

/// Reserves a slot and registers a built-in worker authorised as
/// `authorised`, or queues it when `admission` finds no room and allows
/// the queue; the reservation gives the slot back on every error path,
/// also an ERROR raised inside the server's registration. Used by `launch`
/// and by supervisors.
pub fn register(
    mut def: WorkerDef,
    launched_by: &str,
    authorised: Authorised,
    bypass_allowconn: bool,
    admission: &Admission,
) -> Result<i64, BgwError> {
    let unnamed = def.name.is_empty();
    let jsonb = config_jsonb(&def.config);
    let grant = Grant {
        role_oid: authorised.role_oid,
        database_oid: authorised.database_oid,
        bypass_allowconn,
    };
    let reservation = registry::reserve(&def, &jsonb, launched_by, grant, admission, pm_stopped)
        .map_err(|refusal| reserve_error(refusal, &def))?;
    if unnamed {
        def.name = format!("lightdb_bgw {} {}", def.kind, reservation.id);
        registry::rename(&reservation, &def.name);
    }
    if def.restart_after.is_some() || reservation.queued {
        keep_config_on_disk(reservation.id, &def);
    }
    if reservation.queued {
        let id = reservation.keep();
        registry::poke_dispatcher();
        return Ok(id);
    }
    if spare::fits(&def) {
        if let Some(handle) = take_spare(&def, &reservation, authorised, bypass_allowconn) {
            // The spare asks the dispatcher for its replacement once it
            // runs (and is connected): a process started meanwhile would
            // compete with it for the processor.
            registry::attach_handle(reservation.at, handle, true);
            return Ok(reservation.keep());
        }
    }
    let worker = launch::build(&def, reservation.at, reservation.id, registry::notify_pid())
        .map_err(BgwError::invalid)?;
    // Another process may take the last postmaster slot meanwhile: with
    // the queue allowed, the worker waits there.
    register_reserved(reservation, worker, |reservation| {
        let Some(max) = admission.queue else {
            return Err(BgwError::NoPostmasterSlot);
        };
        match registry::requeue(reservation.at, max) {
            registry::Requeued::Queued => {}
            registry::Requeued::Full => return Err(BgwError::QueueFull(max)),
            // Stopped meanwhile by another session: kept, as stopped.
            registry::Requeued::Gone => return Ok(reservation.keep()),
        }
        if def.restart_after.is_none() {
            keep_config_on_disk(reservation.id, &def);
        }
        let id = reservation.keep();
        registry::poke_dispatcher();
        Ok(id)
    })
}

/// The one way from a reservation to a worker the postmaster has:
/// registers `worker` (letting an idle spare go if that makes room),
/// records its handle in the slot and keeps the slot. When no postmaster
/// slot is free the reservation goes to `no_slot`; on any other error it
/// is dropped, which gives the slot back (also while unwinding from an
/// ERROR raised inside the server's registration).
fn register_reserved(
    reservation: Reservation,
    worker: pg_sys::BackgroundWorker,
    no_slot: impl FnOnce(Reservation) -> Result<i64, BgwError>,
) -> Result<i64, BgwError> {
    match spare::with_room(|| launch::register_dynamic(worker)) {
        Ok(handle) => {
            launch::attach(reservation.at, handle, false);
            Ok(reservation.keep())
        }
        Err(BgwError::NoPostmasterSlot) => no_slot(reservation),
        Err(err) => Err(err),
    }
}

/// Hands the worker of `reservation` to an idle spare that can run it, if
/// any: for a worker that connects, one connected exactly as it connects
/// (the role still a superuser or not, as the server kept it at that
/// connection), or one not connected. Not from a supervisor's process,
/// which has no database to read the role from: its children that connect
/// get processes of their own.
fn take_spare(
    def: &WorkerDef,
    reservation: &registry::Reservation,
    authorised: Authorised,
    bypass_allowconn: bool,
) -> Option<registry::PgHandle> {
    let connection = if def.kind.needs_connection(def.database.is_some()) {
        // SAFETY: a plain read of this backend's transaction state.
        if !unsafe { pg_sys::IsTransactionState() } {
            return None;
        }
        Some(registry::Connection {
            database_oid: authorised.database_oid,
            role_oid: authorised.role_oid,
            bypass_allowconn,
            // SAFETY: a catalog lookup in the launching transaction.
            superuser: unsafe { pg_sys::superuser_arg(pg_sys::Oid::from(authorised.role_oid)) },
        })
    } else {
        None
    };
    registry::take_spare(reservation.at, reservation.id, connection)
}

/// Writes worker `id`'s config to disk, for a worker that must come back
/// with it after a crash-reinitialisation (which loses shared memory):
/// a restartable or a queued one.
fn keep_config_on_disk(id: i64, def: &WorkerDef) {
    if let Err(err) = registry::save_config(id, &codec::encode(&def.config)) {
        warning!("lightdb_bgw: cannot keep the config of worker {id} on disk: {err}");
    }
}

/// `launch_raw(...)`: any library's entry point, superuser only.
pub fn launch_raw(mut raw: RawWorker, wait_for_start: bool) -> Result<i64, BgwError> {
    preload::require()?;
    let (me, superuser) = authz::current_user();
    if !superuser {
        return Err(BgwError::NotAllowed(
            "only a superuser may use launch_raw".into(),
        ));
    }
    launch::check_registrable(raw.flags, raw.start_time).map_err(BgwError::invalid)?;
    raw.notify_pid = registry::notify_pid();
    let worker = launch::build_raw(&raw).map_err(BgwError::invalid)?;
    let config = KindConfig::Raw {
        library: raw.library.clone(),
        function: raw.function.clone(),
        worker_type: raw.worker_type.clone(),
        main_arg: raw.main_arg,
        extra_bytes: raw.extra.len() as u32,
        flags: raw.flags,
    };
    let def = WorkerDef {
        kind: Kind::Raw,
        name: raw.name.clone(),
        database: None,
        role: None,
        start_time: raw.start_time,
        restart_after: raw.restart_after,
        config,
    };
    let grant = Grant {
        role_oid: 0,
        database_oid: 0,
        bypass_allowconn: false,
    };
    let reservation = registry::reserve(
        &def,
        &config_jsonb(&def.config),
        &me,
        grant,
        &Admission::unchecked(),
        pm_stopped,
    )
    .map_err(|refusal| reserve_error(refusal, &def))?;
    let id = register_reserved(reservation, worker, |_| Err(BgwError::NoPostmasterSlot))?;
    if wait_for_start && !starts_after_promotion(id, raw.start_time) {
        wait_checked(id, Target::Startup, None)?;
    }
    Ok(id)
}
