//! More Python clients against the server, each as an application would use it:
//! `tests/python/psycopg2_session.py` (client-side parameters, simple protocol, text results,
//! `copy_expert`), `tests/python/asyncpg_session.py` (extended protocol, binary parameters and
//! results, savepoints, portals read in pieces) and `tests/python/sqlalchemy_pandas.py`
//! (SQLAlchemy's inspector and reflection over `pg_catalog`, pandas `to_sql`/`read_sql`).
//! The scripts were written against PostgreSQL 15 and pass there unmodified; they run with the
//! virtualenv that `scripts/setup.sh` creates (see `pg_psycopg`).

use crate::pg::TestServer;
use crate::pg_psycopg::run_script;

/// The libpq keyword/value DSN of `server`, without TLS.
fn dsn(server: &TestServer) -> String {
    format!(
        "host=127.0.0.1 port={} user=tally dbname=tally sslmode=disable",
        server.addr.port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg2_session_with_literals_copy_views_and_transactions() {
    let server = TestServer::start().await;
    let out = run_script("psycopg2_session.py", &[&dsn(&server)]).await;
    assert!(
        out.contains("ok: copy_expert reports the rows copied"),
        "{out}"
    );
    assert!(
        out.contains("ok: ROLLBACK TO SAVEPOINT discards only the INSERTs after it"),
        "{out}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_session_with_binary_parameters_savepoints_and_prepared_statements() {
    let server = TestServer::start().await;
    let out = run_script("asyncpg_session.py", &[&dsn(&server)]).await;
    assert!(
        out.contains("ok: fetchrow: every type round-trips in binary"),
        "{out}"
    );
    assert!(
        out.contains("ok: a rolled-back savepoint discards only its INSERTs"),
        "{out}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy_inspector_and_pandas_with_psycopg2_and_psycopg() {
    let server = TestServer::start().await;
    let out = run_script("sqlalchemy_pandas.py", &[&dsn(&server)]).await;
    for driver in ["--- postgresql+psycopg2\n", "--- postgresql+psycopg\n"] {
        assert!(out.contains(driver), "{driver} did not run:\n{out}");
    }
    assert!(out.contains("ok: read_sql_table: 50 rows"), "{out}");
    server.stop().await;
}
