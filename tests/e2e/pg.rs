//! The Postgres wire server through real clients (tokio-postgres, psql): protocols, types,
//! settings, transactions and errors. COPY is in `pg_copy`.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use tally_server::{Config, Server};
use tally_tests::test_options;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// A server running in-process on a free port over a temporary directory.
pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    /// The server's database, for what SQL cannot do (a flush now).
    pub db: tally_engine::Database,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(Config::default()).await
    }

    /// Starts with `config`'s authentication and TLS, in a temporary directory on a free
    /// loopback port.
    pub async fn start_with(config: Config) -> TestServer {
        TestServer::start_in(tempfile::tempdir().expect("temp dir"), config).await
    }

    /// Starts over the data directory `dir/data` (new or left by a server before).
    async fn start_in(dir: tempfile::TempDir, config: Config) -> TestServer {
        let config = Config {
            data: dir.path().join("data"),
            listen: "127.0.0.1:0".into(),
            ..config
        };
        let server = Server::bind(&config, test_options())
            .await
            .expect("start server")
            .with_shutdown_grace(Duration::from_millis(100));
        let addr = server.local_addr().expect("local addr");
        let db = server.database().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            db,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=tally dbname=tally",
            self.addr.port()
        )
    }

    pub async fn connect(&self) -> Client {
        let (client, connection) = tokio_postgres::connect(&self.conninfo(), NoTls)
            .await
            .expect("connect");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// Stops the server and waits for it to close the database.
    pub async fn stop(mut self) {
        self.shut_down().await;
    }

    /// Stops the server cleanly and starts a new one (on a new port) over the same data
    /// directory, with the default configuration.
    pub async fn restart(mut self) -> TestServer {
        self.shut_down().await;
        let TestServer { dir, db, .. } = self;
        drop(db);
        TestServer::start_in(dir, Config::default()).await
    }

    async fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("clean shutdown");
        }
    }
}

/// The SQLSTATE of a failed statement.
pub fn code(err: &tokio_postgres::Error) -> String {
    err.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {err}"))
}

/// `sql` cut to its first 80 characters for a failure message: deep or huge statements are
/// megabytes long.
pub fn short(sql: &str) -> String {
    match sql.char_indices().nth(80) {
        Some((i, _)) => format!("{}… ({} bytes)", &sql[..i], sql.len()),
        None => sql.to_string(),
    }
}

/// Rows of a simple query as text cells.
pub async fn simple_rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}: {:?}", short(sql), e.as_db_error()))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// One value from a simple query.
/// [`simple_rows`] of a query over the raw tables, with no materialized view answering for
/// them (`tally.view_rewrite` off for the one query): the recompute a view is checked against.
pub async fn raw_rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .batch_execute("SET tally.view_rewrite = off")
        .await
        .unwrap();
    let rows = simple_rows(client, sql).await;
    client
        .batch_execute("RESET tally.view_rewrite")
        .await
        .unwrap();
    rows
}

pub async fn simple_value(client: &Client, sql: &str) -> String {
    simple_rows(client, sql).await[0][0]
        .clone()
        .unwrap_or_else(|| "NULL".into())
}

const ALL_TYPES_DDL: &str = "CREATE TABLE all_types (id BIGINT NOT NULL, b BOOLEAN, i2 SMALLINT, \
     i4 INTEGER, i8 BIGINT, f4 REAL, f8 DOUBLE PRECISION, n NUMERIC(12, 3), t TEXT, by BYTEA, \
     d DATE, ts TIMESTAMP, tz TIMESTAMPTZ)";

const ALL_TYPES_ROW: &str = "INSERT INTO all_types VALUES (1, true, -2, 40000, 5000000000, 1.5, \
     -2.25, 1234.5, 'héllo', X'DEADBEEF', '2026-01-02', '2026-01-02 03:04:05.678', \
     '2026-01-02 03:04:05+00'), (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
     NULL, NULL)";

#[tokio::test]
async fn simple_protocol_encodes_every_type_as_postgres_text() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client.batch_execute(ALL_TYPES_DDL).await.unwrap();
    let messages = client.simple_query(ALL_TYPES_ROW).await.unwrap();
    assert!(
        matches!(
            messages.last(),
            Some(SimpleQueryMessage::CommandComplete(2))
        ),
        "{messages:?}"
    );
    let rows = simple_rows(&client, "SELECT * FROM all_types ORDER BY id").await;
    let text: Vec<Option<&str>> = rows[0].iter().map(|c| c.as_deref()).collect();
    assert_eq!(
        text,
        vec![
            Some("1"),
            Some("t"),
            Some("-2"),
            Some("40000"),
            Some("5000000000"),
            Some("1.5"),
            Some("-2.25"),
            Some("1234.500"),
            Some("héllo"),
            Some("\\xdeadbeef"),
            Some("2026-01-02"),
            Some("2026-01-02 03:04:05.678"),
            Some("2026-01-02 03:04:05+00"),
        ]
    );
    assert!(rows[1][1..].iter().all(Option::is_none), "{:?}", rows[1]);
    assert_eq!(
        simple_value(&client, "SELECT INTERVAL '1 day 2 hours'").await,
        "1 day 02:00:00"
    );
    // Several statements in one query string each get their result.
    let messages = client
        .simple_query("SELECT 1; SELECT 2, 3; CREATE TABLE other (x BIGINT)")
        .await
        .unwrap();
    let completes: Vec<u64> = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(completes, vec![1, 1, 0]);
    server.stop().await;
}

#[tokio::test]
async fn extended_protocol_returns_every_type_in_binary_with_parameters() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client.batch_execute(ALL_TYPES_DDL).await.unwrap();
    let ts = NaiveDate::from_ymd_opt(2026, 1, 2)
        .unwrap()
        .and_hms_micro_opt(3, 4, 5, 678_000)
        .unwrap();
    let tz: DateTime<Utc> = DateTime::from_naive_utc_and_offset(ts, Utc);
    let n = Decimal::new(12345, 1);
    let inserted = client
        .execute(
            "INSERT INTO all_types VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            &[
                &1i64,
                &true,
                &-2i16,
                &40000i32,
                &5_000_000_000i64,
                &1.5f32,
                &-2.25f64,
                &n,
                &"héllo",
                &vec![0xde_u8, 0xad],
                &NaiveDate::from_ymd_opt(2026, 1, 2).unwrap(),
                &ts,
                &tz,
            ],
        )
        .await
        .unwrap();
    assert_eq!(inserted, 1);
    let statement = client
        .prepare("SELECT * FROM all_types WHERE id = $1 AND t = $2")
        .await
        .unwrap();
    assert_eq!(
        statement.params(),
        &[
            tokio_postgres::types::Type::INT8,
            tokio_postgres::types::Type::TEXT
        ]
    );
    assert_eq!(
        statement.columns().len(),
        13,
        "Describe returns the row shape"
    );
    let row = client
        .query_one(&statement, &[&1i64, &"héllo"])
        .await
        .unwrap();
    assert!(row.get::<_, bool>("b"));
    assert_eq!(row.get::<_, i16>("i2"), -2);
    assert_eq!(row.get::<_, i32>("i4"), 40000);
    assert_eq!(row.get::<_, i64>("i8"), 5_000_000_000);
    assert_eq!(row.get::<_, f32>("f4"), 1.5);
    assert_eq!(row.get::<_, f64>("f8"), -2.25);
    assert_eq!(row.get::<_, Decimal>("n"), Decimal::new(1234500, 3));
    assert_eq!(row.get::<_, String>("t"), "héllo");
    assert_eq!(row.get::<_, Vec<u8>>("by"), vec![0xde, 0xad]);
    assert_eq!(
        row.get::<_, NaiveDate>("d"),
        NaiveDate::from_ymd_opt(2026, 1, 2).unwrap()
    );
    assert_eq!(row.get::<_, NaiveDateTime>("ts"), ts);
    assert_eq!(row.get::<_, DateTime<Utc>>("tz"), tz);
    // NULL parameters and NULL results.
    client
        .execute(
            "INSERT INTO all_types (id, i4) VALUES ($1, $2)",
            &[&2i64, &None::<i32>],
        )
        .await
        .unwrap();
    let row = client
        .query_one("SELECT i4, t FROM all_types WHERE id = $1", &[&2i64])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<i32>>(0), None);
    assert_eq!(row.get::<_, Option<String>>(1), None);
    // Negative and fractional numerics survive the binary encoding.
    let row = client
        .query_one(
            "SELECT CAST(-0.005 AS NUMERIC(10, 3)), CAST(100000 AS NUMERIC(12, 2))",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Decimal>(0), Decimal::new(-5, 3));
    assert_eq!(row.get::<_, Decimal>(1), Decimal::new(10000000, 2));
    server.stop().await;
}

#[tokio::test]
async fn portals_return_rows_in_pieces() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    client
        .batch_execute("CREATE TABLE n (x BIGINT); INSERT INTO n VALUES (1), (2), (3), (4), (5)")
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    let portal = tx.bind("SELECT x FROM n ORDER BY x", &[]).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let rows = tx.query_portal(&portal, 2).await.unwrap();
        assert!(rows.len() <= 2);
        if rows.is_empty() {
            break;
        }
        seen.extend(rows.iter().map(|r| r.get::<_, i64>(0)));
    }
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);
    tx.commit().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn set_and_show_keep_per_connection_settings() {
    let server = TestServer::start().await;
    let a = server.connect().await;
    let b = server.connect().await;
    a.batch_execute(
        "SET application_name = 'loader'; SET extra_float_digits TO 3; SET TIME ZONE 'Europe/Paris'; \
         SET search_path = public; SET statement_timeout = '5s'; SET client_encoding = 'UTF8'; \
         SET DateStyle = 'ISO, MDY'",
    )
    .await
    .unwrap();
    assert_eq!(simple_value(&a, "SHOW application_name").await, "loader");
    assert_eq!(simple_value(&a, "SHOW extra_float_digits").await, "3");
    assert_eq!(simple_value(&a, "SHOW TimeZone").await, "Europe/Paris");
    assert_eq!(simple_value(&a, "SHOW statement_timeout").await, "5s");
    assert_eq!(simple_value(&b, "SHOW application_name").await, "");
    assert_eq!(simple_value(&b, "SHOW timezone").await, "UTC");
    assert_eq!(simple_value(&b, "SHOW server_version").await, "16.6");
    // Through the extended protocol too.
    let row = a.query_one("SHOW DateStyle", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "ISO, MDY");
    a.batch_execute("RESET application_name").await.unwrap();
    assert_eq!(simple_value(&a, "SHOW application_name").await, "");
    let err = a.batch_execute("SHOW no_such_setting").await.unwrap_err();
    assert_eq!(code(&err), "42704");
    let err = a
        .batch_execute("SET client_encoding = 'LATIN1'")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "0A000");
    let err = a
        .batch_execute("SET statement_timeout = 'soon'")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "22023");
    server.stop().await;
}

#[tokio::test]
async fn session_functions_answer_like_postgres() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    let rows = simple_rows(
        &client,
        "SELECT version(), current_database(), current_schema(), current_user",
    )
    .await;
    let row: Vec<String> = rows[0].iter().map(|c| c.clone().unwrap()).collect();
    assert!(row[0].starts_with("PostgreSQL 16"), "{row:?}");
    assert_eq!(&row[1..], &["tally", "public", "tally"]);
    let row = client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap();
    assert_eq!(row.columns()[0].name(), "current_database");
    assert_eq!(row.get::<_, String>(0), "tally");
    server.stop().await;
}

#[tokio::test]
async fn driver_transactions_commit_and_rollback() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    client
        .batch_execute("CREATE TABLE t (x BIGINT)")
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO t VALUES ($1)", &[&7i64])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO t VALUES (8)", &[]).await.unwrap();
    // ROLLBACK discards the block's INSERT (see pg_transactions for the rest).
    tx.rollback().await.unwrap();
    let count = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(count, 1);
    client
        .batch_execute("BEGIN; INSERT INTO t VALUES (9); COMMIT")
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn errors_carry_sqlstates_and_leave_the_connection_usable() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE t (ts TIMESTAMP NOT NULL, x INTEGER)")
        .await
        .unwrap();
    let cases: &[(&str, SqlState)] = &[
        ("SELECT * FROM missing", SqlState::UNDEFINED_TABLE),
        ("SELECT nope FROM t", SqlState::UNDEFINED_COLUMN),
        ("SELEC 1", SqlState::SYNTAX_ERROR),
        ("CREATE TABLE t (x BIGINT)", SqlState::DUPLICATE_TABLE),
        ("DELETE FROM t", SqlState::FEATURE_NOT_SUPPORTED),
        ("INSERT INTO t (x) VALUES (1)", SqlState::NOT_NULL_VIOLATION),
        ("COPY t FROM '/etc/passwd'", SqlState::FEATURE_NOT_SUPPORTED),
    ];
    for (sql, expected) in cases {
        let err = client.batch_execute(sql).await.unwrap_err();
        assert_eq!(code(&err), expected.code(), "{sql}: {err:?}");
        // The extended protocol reports the same.
        let err = client.execute(*sql, &[]).await.unwrap_err();
        assert_eq!(code(&err), expected.code(), "{sql} (extended): {err:?}");
        assert_eq!(simple_value(&client, "SELECT 1").await, "1");
    }
    // A parameter of the wrong type is refused (here by the driver, which knows it is int4).
    client
        .query("SELECT x FROM t WHERE x = $1", &[&"abc"])
        .await
        .unwrap_err();
    assert_eq!(simple_value(&client, "SELECT 1").await, "1");
    server.stop().await;
}

/// A query that runs for seconds in DataFusion.
const SLOW_QUERY: &str = "SELECT sum(value) FROM generate_series(1, 1000000000)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_and_cancel_stop_long_queries() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client
        .batch_execute("SET statement_timeout = 200")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = client.batch_execute(SLOW_QUERY).await.unwrap_err();
    assert_eq!(code(&err), "57014", "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    client
        .batch_execute("SET statement_timeout = 0")
        .await
        .unwrap();
    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(NoTls).await
    });
    let err = client.batch_execute(SLOW_QUERY).await.unwrap_err();
    assert_eq!(code(&err), "57014", "{err:?}");
    canceller.await.unwrap().unwrap();
    assert_eq!(simple_value(&client, "SELECT 1").await, "1");
    server.stop().await;
}

#[test]
fn a_non_loopback_address_without_auth_is_refused() {
    let config = Config {
        listen: "0.0.0.0:5433".into(),
        ..Config::default()
    };
    let err = config.check().unwrap_err();
    assert!(err.contains("not a loopback address"), "{err}");
    let config = Config::default();
    assert!(config.check().is_ok());
}

#[test]
fn config_file_flags_and_defaults_merge() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tally.toml");
    std::fs::write(
        &file,
        "data = \"/srv/tally\"\nlisten = \"127.0.0.1:6000\"\n",
    )
    .unwrap();
    let config = Config::resolve(None, Some("127.0.0.1:7000".into()), Some(&file)).unwrap();
    assert_eq!(config.data, std::path::PathBuf::from("/srv/tally"));
    assert_eq!(config.listen, "127.0.0.1:7000");
    let config = Config::resolve(None, None, None).unwrap();
    assert_eq!(config.listen, "127.0.0.1:5433");
    std::fs::write(&file, "colour = 1\n").unwrap();
    assert!(Config::resolve(None, None, Some(&file)).is_err());
}

/// A psql command connected to the server (no `.psqlrc`), run in its directory.
pub fn psql_command(server: &TestServer) -> std::process::Command {
    let mut command = std::process::Command::new("psql");
    command
        .args(["-X", "-h", "127.0.0.1", "-p"])
        .arg(server.addr.port().to_string())
        .args(["-U", "tally", "-d", "tally"])
        .current_dir(server.dir.path());
    command
}

/// Runs psql against the server (on a blocking thread) and returns its stdout.
pub async fn psql(server: &TestServer, args: &[&str]) -> Result<String, String> {
    let mut command = psql_command(server);
    command.args(["-v", "ON_ERROR_STOP=1"]).args(args);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("psql: {e} (install postgresql-client: scripts/setup.sh)"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_runs_queries_and_copies_a_csv_file() {
    let server = TestServer::start().await;
    let out = psql(
        &server,
        &[
            "-c",
            "CREATE TABLE events (ts TIMESTAMP NOT NULL, user_id BIGINT, page TEXT)",
            "-c",
            "INSERT INTO events VALUES ('2026-01-01 10:00:00', 1, '/home')",
        ],
    )
    .await
    .unwrap();
    assert!(out.contains("CREATE TABLE"), "{out}");
    assert!(out.contains("INSERT 0 1"), "{out}");
    let csv = server.dir.path().join("events.csv");
    let mut data = String::from("ts,user_id,page\n");
    for i in 0..1000 {
        data.push_str(&format!("2026-01-02 00:00:{:02},{i},\"/p,{i}\"\n", i % 60));
    }
    std::fs::write(&csv, data).unwrap();
    let out = psql(
        &server,
        &[
            "-c",
            "\\copy events FROM 'events.csv' WITH (FORMAT csv, HEADER)",
        ],
    )
    .await
    .unwrap();
    assert!(out.contains("COPY 1000"), "{out}");
    let out = psql(
        &server,
        &["-A", "-t", "-c", "SELECT count(*), max(page) FROM events"],
    )
    .await
    .unwrap();
    assert_eq!(out.trim(), "1001|/p,999");
    let err = psql(&server, &["-c", "SELECT * FROM nope"])
        .await
        .unwrap_err();
    assert!(err.contains("does not exist"), "{err}");
    server.stop().await;
}
