//! pgjdbc, the PostgreSQL JDBC driver every Java application uses, against the server:
//! `tests/java/JdbcSession.java` run in source-file mode (`java -cp postgresql.jar File.java`,
//! no build tool) with Debian's `libpostgresql-jdbc-java` and a JRE, which `scripts/setup.sh`
//! installs. The program prints `ok: …` per check and PASS last; see its header for what it
//! covers (prepared INSERT with executeUpdate, batches, CopyManager, server-prepared SELECT
//! with binary results, DatabaseMetaData, transactions, SET, a materialized view).

use std::path::PathBuf;
use std::process::Command;

use crate::pg::TestServer;

/// The JDBC driver: `$TALLY_PGJDBC`, else Debian's. A missing one fails the test (it must not
/// pass by running nothing).
fn driver() -> PathBuf {
    let jar = std::env::var_os("TALLY_PGJDBC")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/java/postgresql.jar"));
    assert!(
        jar.exists(),
        "{} is missing: run scripts/setup.sh, which installs libpostgresql-jdbc-java (or point \
         TALLY_PGJDBC at a pgjdbc jar)",
        jar.display()
    );
    jar
}

/// `java`: `$JAVA_HOME/bin/java`, else the one on the PATH.
fn java() -> PathBuf {
    match std::env::var_os("JAVA_HOME") {
        Some(home) => PathBuf::from(home).join("bin/java"),
        None => PathBuf::from("java"),
    }
}

/// Runs `tests/java/JdbcSession.java` against `server` with the JVM in `time_zone`; panics
/// with its output unless it passes (exits 0 with `PASS` as its last line).
async fn run_session(server: &TestServer, time_zone: &str) -> String {
    let program = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("java/JdbcSession.java");
    let mut command = Command::new(java());
    command
        .arg(format!("-Duser.timezone={time_zone}"))
        .arg("-cp")
        .arg(driver())
        .arg(&program)
        .arg(server.addr.port().to_string());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .unwrap_or_else(|e| {
            panic!("cannot run java ({e}): run scripts/setup.sh, which installs a headless JRE")
        });
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim_end().ends_with("PASS"),
        "JdbcSession.java in {time_zone} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_session_with_prepared_writes_batches_copy_metadata_and_transactions() {
    // A JVM west and one east of UTC: JDBC sends a timestamp with the JVM's offset, which a
    // TIMESTAMP column must ignore.
    for time_zone in ["America/New_York", "Asia/Kolkata"] {
        let server = TestServer::start().await;
        let out = run_session(&server, time_zone).await;
        for line in [
            "ok: executeUpdate of a prepared INSERT counts 1, 10 times",
            "ok: executeBatch counts 1 per row",
            "ok: the rewritten batch's rows are there",
            "ok: copyIn reports the rows copied",
            "ok: copyOut writes the CSV with a header",
            "ok: the SELECT became server-prepared (binary results)",
            "ok: getColumns gives each column's name, type and nullability",
            "ok: rollback discards it",
            "ok: a prepared SET counts 0",
            "ok: a prepared DROP MATERIALIZED VIEW counts 0",
        ] {
            assert!(out.contains(line), "{time_zone}: no `{line}` in:\n{out}");
        }
        server.stop().await;
    }
}
