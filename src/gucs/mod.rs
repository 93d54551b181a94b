//! The `lightdb_bgw.*` settings: the registry's and the static workers'
//! here, the limits of capacity and results in `limits.rs`.
//!
//! Reload-time settings are always defined; the postmaster-context ones only
//! when the library is preloaded (as PostgreSQL's contrib modules do). The
//! prefix is reserved so a misspelt `lightdb_bgw.something` is reported.

use std::ffi::{CStr, CString};

use pgrx::pg_sys;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PgLogLevel, PgSqlErrorCode};

use crate::spec::{self, StaticEntry};

mod limits;

pub use limits::*;

pub static STATIC_WORKERS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static DATABASE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));
pub static ROLE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static NAPTIME_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
pub static MAX_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(64);
/// kB.
pub static MAX_CONFIG_SIZE_KB: GucSetting<i32> = GucSetting::<i32>::new(1024);
/// kB.
pub static MAX_TEXT_MEMORY_KB: GucSetting<i32> = GucSetting::<i32>::new(128 * 1024);

const STATIC_WORKERS_NAME: &CStr = c"lightdb_bgw.static_workers";

/// Defines the settings. `preloaded` decides whether the postmaster-context
/// ones exist in this process.
pub fn init(preloaded: bool) {
    GucRegistry::define_int_guc(
        c"lightdb_bgw.naptime",
        c"Time a counter worker sleeps between two folds.",
        c"Counter workers launched without their own naptime re-read this on SIGHUP.",
        &NAPTIME_MS,
        10,
        86_400_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );

    GucRegistry::define_int_guc(
        c"lightdb_bgw.max_config_size",
        c"Largest config (or sql text) a launch accepts.",
        c"A larger one is refused with SQLSTATE 54000.",
        &MAX_CONFIG_SIZE_KB,
        1,
        1024 * 1024,
        GucContext::Suset,
        GucFlags::UNIT_KB,
    );

    limits::define();
    if preloaded {
        define_postmaster_gucs();
    }

    // SAFETY: called from _PG_init with a static NUL-terminated prefix.
    unsafe {
        #[cfg(any(feature = "pg15", feature = "pg16", feature = "pg17", feature = "pg18"))]
        pg_sys::MarkGUCPrefixReserved(c"lightdb_bgw".as_ptr());
        #[cfg(any(feature = "pg13", feature = "pg14"))]
        pg_sys::EmitWarningsOnPlaceholders(c"lightdb_bgw".as_ptr());
    }
}

fn define_postmaster_gucs() {
    // Refuse to start on a malformed list before the server silently falls
    // back to the default: PostgreSQL only WARNs when a preloaded module's
    // setting fails its check hook at definition time.
    if let Some(raw) = raw_setting(STATIC_WORKERS_NAME) {
        if let Err(err) = spec::parse_static_workers(&raw) {
            fatal(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("invalid value for parameter \"lightdb_bgw.static_workers\": \"{raw}\""),
                Some(err.to_string()),
                Some(
                    "Write a comma-separated list of kind:count, for example 'counter:2, sleep:1'."
                        .into(),
                ),
            );
        }
    }

    // SAFETY: `check_static_workers` is a valid string check hook that never
    // raises an error; the name and descriptions are static C strings.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            STATIC_WORKERS_NAME,
            c"Built-in workers started with the server, as kind:count, comma separated.",
            c"For example 'counter:2, sleep:1'. Empty: none.",
            &STATIC_WORKERS,
            GucContext::Postmaster,
            GucFlags::default(),
            Some(check_static_workers),
            None,
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"lightdb_bgw.database",
            c"Database the static workers connect to.",
            c"",
            &DATABASE,
            GucContext::Postmaster,
            GucFlags::default(),
            Some(check_object_name),
            None,
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"lightdb_bgw.role",
            c"Role the static workers run as; empty: the bootstrap superuser.",
            c"",
            &ROLE,
            GucContext::Postmaster,
            GucFlags::default(),
            Some(check_object_name),
            None,
            None,
        );
    }
    GucRegistry::define_int_guc(
        c"lightdb_bgw.max_workers",
        c"How many workers, static and dynamic, live or recently stopped, the registry holds.",
        c"Each slot takes a little shared memory; launches beyond it fail with SQLSTATE 53400.",
        &MAX_WORKERS,
        1,
        10_000,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"lightdb_bgw.max_text_memory",
        c"Shared memory the registry's out-of-line texts (configs) may take in all.",
        c"It is taken as texts are stored and given back as slots are reused; past it, launches fail with SQLSTATE 54000.",
        &MAX_TEXT_MEMORY_KB,
        1024,
        i32::MAX,
        GucContext::Postmaster,
        GucFlags::UNIT_KB,
    );
}

/// The static workers as configured, checked against the registry and the
/// server's `max_worker_processes`. Stops the postmaster when they do not fit.
pub fn validated_static_workers() -> Vec<StaticEntry> {
    let value = string_setting(&STATIC_WORKERS).unwrap_or_default();
    let entries = match spec::parse_static_workers(&value) {
        Ok(entries) => entries,
        // The check hook already refused it; keep the server honest anyway.
        Err(err) => fatal(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("invalid value for parameter \"lightdb_bgw.static_workers\": \"{value}\""),
            Some(err.to_string()),
            None,
        ),
    };
    let total: u32 = entries.iter().map(|e| e.count).sum();
    let capacity = max_workers();
    if total > capacity {
        fatal(
            PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
            format!("\"lightdb_bgw.static_workers\" asks for {total} workers but \"lightdb_bgw.max_workers\" is {capacity}"),
            None,
            Some("Raise \"lightdb_bgw.max_workers\" or list fewer static workers.".into()),
        );
    }
    // SAFETY: a plain integer global of the server, set before preload.
    let server_max = unsafe { pg_sys::max_worker_processes };
    // One more for the dispatcher, which always runs.
    if total as i64 + 1 > server_max as i64 {
        fatal(
            PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
            format!("\"lightdb_bgw.static_workers\" asks for {total} workers, and the dispatcher takes one more, but \"max_worker_processes\" is {server_max}"),
            None,
            Some("Raise \"max_worker_processes\" or list fewer static workers.".into()),
        );
    }
    entries
}

/// Registry capacity (`lightdb_bgw.max_workers`).
pub fn max_workers() -> u32 {
    MAX_WORKERS.get().max(1) as u32
}

/// `lightdb_bgw.max_config_size` in bytes.
pub fn max_config_size() -> usize {
    MAX_CONFIG_SIZE_KB.get().max(1) as usize * 1024
}

/// `lightdb_bgw.max_text_memory` in bytes.
pub fn max_text_memory() -> usize {
    MAX_TEXT_MEMORY_KB.get().max(1024) as usize * 1024
}

/// The counter naptime, as currently configured in this process.
pub fn naptime() -> std::time::Duration {
    std::time::Duration::from_millis(NAPTIME_MS.get().max(1) as u64)
}

/// Database of static workers.
pub fn database() -> String {
    string_setting(&DATABASE)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "postgres".into())
}

/// Role of static workers; `None` means the bootstrap superuser.
pub fn role() -> Option<String> {
    string_setting(&ROLE).filter(|s| !s.is_empty())
}

fn string_setting(setting: &GucSetting<Option<CString>>) -> Option<String> {
    setting.get().map(|c| c.to_string_lossy().into_owned())
}

/// The value the configuration gave a setting, before it is defined.
fn raw_setting(name: &CStr) -> Option<String> {
    // SAFETY: GetConfigOption with missing_ok returns NULL or a valid C
    // string owned by the GUC machinery; we copy it at once.
    unsafe {
        let value = pg_sys::GetConfigOption(name.as_ptr(), true, false);
        if value.is_null() {
            None
        } else {
            Some(CStr::from_ptr(value).to_string_lossy().into_owned())
        }
    }
}

fn fatal(code: PgSqlErrorCode, message: String, detail: Option<String>, hint: Option<String>) -> ! {
    let mut report = pgrx::pg_sys::panic::ErrorReport::new(code, message, "lightdb_bgw");
    if let Some(detail) = detail {
        report = report.set_detail(detail);
    }
    if let Some(hint) = hint {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::FATAL);
    unreachable!("a FATAL report does not return")
}

/// Sets the detail line PostgreSQL prints when a check hook refuses a value.
fn set_check_detail(detail: &str) {
    let text = CString::new(detail.replace('\0', " ")).expect("NUL bytes replaced");
    // SAFETY: pstrdup copies into the current memory context, which the GUC
    // machinery keeps until it has reported the failure.
    unsafe {
        pg_sys::GUC_check_errdetail_string = pg_sys::pstrdup(text.as_ptr());
    }
}

/// The body every string check hook shares: reads the proposed value and
/// runs `check` on it; a refusal becomes the detail PostgreSQL prints.
///
/// # Safety
/// `newval` must be the pointer the GUC machinery passed to a check hook.
unsafe fn check_string(
    newval: *mut *mut std::ffi::c_char,
    check: impl FnOnce(&str) -> Result<(), String>,
) -> bool {
    // SAFETY: the caller passes the GUC machinery's pointer to a
    // NUL-terminated string or to NULL.
    let value = unsafe {
        let ptr = *newval;
        if ptr.is_null() {
            return true;
        }
        CStr::from_ptr(ptr).to_string_lossy().into_owned()
    };
    match check(&value) {
        Ok(()) => true,
        Err(reason) => {
            set_check_detail(&reason);
            false
        }
    }
}

/// Check hook of `lightdb_bgw.static_workers`: also runs for `ALTER SYSTEM`,
/// so a bad value is refused before it reaches the configuration file.
unsafe extern "C-unwind" fn check_static_workers(
    newval: *mut *mut std::ffi::c_char,
    _extra: *mut *mut std::ffi::c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: called by the GUC machinery with its own pointer.
    unsafe {
        check_string(newval, |value| {
            spec::parse_static_workers(value)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// Check hook of the database and role names: they must fit a `name`.
unsafe extern "C-unwind" fn check_object_name(
    newval: *mut *mut std::ffi::c_char,
    _extra: *mut *mut std::ffi::c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: called by the GUC machinery with its own pointer.
    unsafe {
        check_string(newval, |value| {
            spec::check_c_string("the name", value, pg_sys::NAMEDATALEN as usize)
        })
    }
}
