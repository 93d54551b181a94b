//! SQL helpers shared by the cluster tests: launching, status, waits,
//! grants, and reading a SQLSTATE back from an error.

use super::Client;

/// Lets `roles` (a comma-separated list) use the extension: USAGE on its
/// schema, EXECUTE on its functions, SELECT on `workers`.
pub fn grant_all(admin: &mut Client, roles: &str) {
    admin
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA lightdb_bgw TO {roles};
             GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA lightdb_bgw TO {roles};
             GRANT SELECT ON lightdb_bgw.workers TO {roles};"
        ))
        .unwrap();
}

/// `lightdb_bgw.launch(<args>)`, the new id; panics with the server's
/// error if it fails.
pub fn launch(client: &mut Client, args: &str) -> i64 {
    client
        .query_one(&format!("SELECT lightdb_bgw.launch({args})"), &[])
        .unwrap_or_else(|e| panic!("launch({args}): {e:?}"))
        .get(0)
}

/// `lightdb_bgw.status(id)`.
pub fn status(client: &mut Client, id: i64) -> String {
    client
        .query_one("SELECT lightdb_bgw.status($1)", &[&id])
        .unwrap_or_else(|e| panic!("status({id}): {e:?}"))
        .get(0)
}

/// Terminates worker `id` and waits until it has stopped; returns the
/// status the wait reached.
pub fn stop_worker(client: &mut Client, id: i64) -> String {
    client
        .query_one("SELECT lightdb_bgw.terminate($1)", &[&id])
        .unwrap_or_else(|e| panic!("terminate({id}): {e:?}"));
    wait_for_shutdown(client, id)
}

/// Waits (at most 30 s) until worker `id` has stopped; returns the status
/// the wait reached.
pub fn wait_for_shutdown(client: &mut Client, id: i64) -> String {
    client
        .query_one("SELECT lightdb_bgw.wait_for_shutdown($1, '30s')", &[&id])
        .unwrap_or_else(|e| panic!("wait_for_shutdown({id}): {e:?}"))
        .get(0)
}

/// How many rows `lightdb_bgw.workers` lists (the registry's entries the
/// caller may see).
pub fn worker_rows(client: &mut Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM lightdb_bgw.workers", &[])
        .unwrap_or_else(|e| panic!("count workers: {e:?}"))
        .get(0)
}

/// Worker `id`'s `last_error` as `workers` shows it to `client`.
pub fn last_error(client: &mut Client, id: i64) -> Option<String> {
    client
        .query_one(
            "SELECT last_error FROM lightdb_bgw.workers WHERE id = $1",
            &[&id],
        )
        .unwrap_or_else(|e| panic!("last_error of {id}: {e:?}"))
        .get(0)
}

/// The SQLSTATE of a failed query, e.g. "55000".
pub fn sqlstate(err: &postgres::Error) -> String {
    err.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {err}"))
}

/// The hint of a failed query, empty without one.
pub fn hint_of(err: &postgres::Error) -> &str {
    db_error(err).hint().unwrap_or("")
}

/// The server's detail/hint of a failed query.
pub fn db_error(err: &postgres::Error) -> &postgres::error::DbError {
    err.as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {err}"))
}
