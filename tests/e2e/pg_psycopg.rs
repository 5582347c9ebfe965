//! psycopg 3, the most used Python driver, against the server: `tests/python/psycopg_session.py`
//! run with the virtualenv that `scripts/setup.sh` creates.

use std::path::PathBuf;
use std::process::Command;

use tally_server::Config;
use tally_server::config::{AuthConfig, AuthMethod, TlsConfig, User};

use crate::pg::TestServer;

/// The python with psycopg: `$TALLY_PYTHON`, else the virtualenv of `scripts/setup.sh`. A
/// missing one fails the test (it must not pass by running nothing).
pub(crate) fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("TALLY_PYTHON") {
        return PathBuf::from(python);
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    let python = PathBuf::from(home).join(".cache/tally-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh, which installs psycopg 3 into that virtualenv \
         (or point TALLY_PYTHON at a python that has psycopg)",
        python.display()
    );
    python
}

/// Runs `tests/python/<script>` with `args`; panics with its output unless it passes (exits 0
/// with `PASS` as its last line).
pub(crate) async fn run_script(script: &str, args: &[&str]) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(script);
    let mut command = Command::new(python());
    command
        .arg(path)
        .args(args)
        .env_remove("PGPASSWORD")
        .env("PGCONNECT_TIMEOUT", "10");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run python (scripts/setup.sh installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim_end().ends_with("PASS"),
        "{script} {args:?} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_session_with_parameters_copy_and_transactions() {
    let server = TestServer::start().await;
    let dsn = format!(
        "host=127.0.0.1 port={} user=tally dbname=tally sslmode=disable",
        server.addr.port()
    );
    let out = run_script("psycopg_session.py", &["session", &dsn]).await;
    assert!(out.contains("ok: COPY reports its row count"), "{out}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_connects_with_scram_over_tls() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls");
    let server = TestServer::start_with(Config {
        auth: AuthConfig {
            method: AuthMethod::ScramSha256,
            users: vec![User {
                name: "app".into(),
                password: "pw with spaces".into(),
            }],
        },
        tls: Some(TlsConfig {
            cert: fixtures.join("server.crt"),
            key: fixtures.join("server.key"),
            require: true,
        }),
        ..Config::default()
    })
    .await;
    let base = format!(
        "host=localhost port={} user=app password='pw with spaces' dbname=tally",
        server.addr.port()
    );
    run_script(
        "psycopg_session.py",
        &[
            "connect",
            &format!("{base} sslmode=require channel_binding=require"),
        ],
    )
    .await;
    // libpq 17+ (psycopg's bundled one) can skip the SSLRequest: that needs ALPN `postgresql`.
    let ca = fixtures.join("ca.crt");
    run_script(
        "psycopg_session.py",
        &[
            "connect",
            &format!(
                "{base} sslmode=verify-full sslrootcert={} sslnegotiation=direct",
                ca.display()
            ),
        ],
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_subscriber_sees_every_commit_once_across_a_reconnect() {
    let server = TestServer::start().await;
    let dsn = format!(
        "host=127.0.0.1 port={} user=tally dbname=tally sslmode=disable",
        server.addr.port()
    );
    let out = run_script("psycopg_subscribe.py", &[&dsn]).await;
    assert!(
        out.contains("ok: every commit was seen exactly once across the reconnect"),
        "{out}"
    );
    server.stop().await;
}

/// Apache DataSketches' Python package reads the sketches of views fetched with psycopg, and
/// its sketches of the same values union with Tally's (tests/python/datasketches_interop.py).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datasketches_reads_view_sketches_and_unions_with_them() {
    let server = TestServer::start().await;
    let dsn = format!(
        "host=127.0.0.1 port={} user=tally dbname=tally sslmode=disable",
        server.addr.port()
    );
    let out = run_script("datasketches_interop.py", &[dsn.as_str()]).await;
    assert!(out.contains("ok: HLL: Tally's SQL unions"), "{out}");
    server.stop().await;
}
