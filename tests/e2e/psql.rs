//! psql's meta-commands (`\d`, `\dt`, `\dm`, `\l` …) through the real `psql` binary: they run
//! PostgreSQL catalog queries, which Tally answers from its `pg_catalog` emulation.

use super::pg::{TestServer, psql, psql_command};

/// What one psql run printed.
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs psql with `args` (errors do not stop it) and keeps stdout and stderr apart.
async fn run(server: &TestServer, args: &[&str]) -> Run {
    let mut command = psql_command(server);
    command.args(args);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("psql thread")
        .expect("psql runs (install postgresql-client: scripts/setup.sh)");
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A server with a table `events` (one row) and a materialized view `hits` over it.
async fn server_with_events() -> TestServer {
    let server = TestServer::start().await;
    psql(
        &server,
        &[
            "-c",
            "CREATE TABLE events (ts TIMESTAMP NOT NULL, user_id BIGINT, page TEXT, \
             amount NUMERIC(10,2), ok BOOLEAN NOT NULL)",
            "-c",
            "INSERT INTO events VALUES ('2026-01-01 10:00:00', 1, '/home', 2.50, true)",
            "-c",
            "CREATE MATERIALIZED VIEW hits AS SELECT page, count(*) AS n, sum(amount) AS total \
             FROM events GROUP BY page",
        ],
    )
    .await
    .expect("create the schema");
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_lists_relations_schemas_and_databases() {
    let server = server_with_events().await;
    let out = psql(&server, &["-A", "-c", "\\dt"]).await.unwrap();
    assert_eq!(
        out,
        "List of relations\nSchema|Name|Type|Owner\npublic|events|table|tally\n(1 row)\n"
    );
    let out = psql(&server, &["-A", "-c", "\\dm"]).await.unwrap();
    assert_eq!(
        out,
        "List of relations\nSchema|Name|Type|Owner\npublic|hits|materialized view|tally\n(1 row)\n"
    );
    let out = psql(&server, &["-A", "-c", "\\d"]).await.unwrap();
    assert!(out.contains("public|events|table|tally\n"), "{out}");
    assert!(
        out.contains("public|hits|materialized view|tally\n"),
        "{out}"
    );
    // Tally has no plain views.
    let dv = run(&server, &["-A", "-c", "\\dv"]).await;
    assert!(dv.success, "{}", dv.stderr);
    assert_eq!(dv.stderr.trim(), "Did not find any relations.");
    let out = psql(&server, &["-A", "-c", "\\dn"]).await.unwrap();
    assert_eq!(out, "List of schemas\nName|Owner\npublic|tally\n(1 row)\n");
    let out = psql(&server, &["-A", "-c", "\\l"]).await.unwrap();
    assert_eq!(
        out,
        "List of databases\n\
         Name|Owner|Encoding|Collate|Ctype|ICU Locale|Locale Provider|Access privileges\n\
         tally|tally|UTF8|C|C||libc|\n(1 row)\n"
    );
    let out = psql(&server, &["-c", "\\conninfo"]).await.unwrap();
    assert_eq!(
        out.trim(),
        format!(
            "You are connected to database \"tally\" as user \"tally\" on host \"127.0.0.1\" \
             at port \"{}\".",
            server.addr.port()
        )
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_describes_tables_and_materialized_views() {
    let server = server_with_events().await;
    let out = psql(&server, &["-c", "\\d events"]).await.unwrap();
    assert_eq!(
        out,
        [
            "                         Table \"public.events\"",
            " Column  |            Type             | Collation | Nullable | Default ",
            "---------+-----------------------------+-----------+----------+---------",
            " ts      | timestamp without time zone |           | not null | ",
            " user_id | bigint                      |           |          | ",
            " page    | text                        |           |          | ",
            " amount  | numeric(10,2)               |           |          | ",
            " ok      | boolean                     |           | not null | ",
            "",
            "",
        ]
        .join("\n")
    );
    let out = psql(&server, &["-A", "-c", "\\d+ events"]).await.unwrap();
    assert!(
        out.starts_with(
            "Table \"public.events\"\n\
             Column|Type|Collation|Nullable|Default|Storage|Compression|Stats target|Description\n\
             ts|timestamp without time zone||not null||plain|||\n"
        ),
        "{out}"
    );
    assert!(out.contains("page|text||||extended|||\n"), "{out}");
    assert!(out.ends_with("Access method: tally\n"), "{out}");

    let out = psql(&server, &["-A", "-c", "\\d hits"]).await.unwrap();
    assert_eq!(
        out,
        "Materialized view \"public.hits\"\n\
         Column|Type|Collation|Nullable|Default\n\
         page|text|||\nn|bigint|||\ntotal|numeric(20,2)|||\n"
    );
    let out = psql(&server, &["-A", "-c", "\\d+ hits"]).await.unwrap();
    assert!(
        out.contains(
            "View definition:\n \
             SELECT page, count(*) AS n, sum(amount) AS total FROM events GROUP BY page;\n"
        ),
        "{out}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_sees_a_new_table_and_copies_a_csv_file_into_it() {
    let server = TestServer::start().await;
    let csv = server.dir.path().join("fresh.csv");
    std::fs::write(&csv, "id,name\n1,one\n2,\"two, too\"\n3,\n").unwrap();
    // One session: the table created by the first command is listed by the next one.
    let out = psql(
        &server,
        &[
            "-A",
            "-c",
            "CREATE TABLE fresh (id INTEGER NOT NULL, name TEXT)",
            "-c",
            "\\dt",
            "-c",
            "\\copy fresh FROM 'fresh.csv' WITH (FORMAT csv, HEADER)",
            "-c",
            "\\d fresh",
            "-c",
            "SELECT count(*) AS n, max(name) AS top FROM fresh",
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        "CREATE TABLE\n\
         List of relations\nSchema|Name|Type|Owner\npublic|fresh|table|tally\n(1 row)\n\
         COPY 3\n\
         Table \"public.fresh\"\nColumn|Type|Collation|Nullable|Default\n\
         id|integer||not null|\nname|text|||\n\
         n|top\n3|two, too\n(1 row)\n"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_describing_a_missing_relation_keeps_the_session_usable() {
    let server = server_with_events().await;
    std::fs::write(
        server.dir.path().join("script.sql"),
        "\\d nosuchtable\nSELECT count(*) AS n FROM events;\n",
    )
    .unwrap();
    let result = run(&server, &["-A", "-f", "script.sql"]).await;
    assert!(
        result
            .stderr
            .contains("Did not find any relation named \"nosuchtable\"."),
        "{}",
        result.stderr
    );
    assert_eq!(result.stdout, "n\n1\n(1 row)\n");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_queries_work_over_the_extended_protocol() {
    let server = server_with_events().await;
    let client = server.connect().await;
    let rows = client
        .query(
            "SELECT c.relname, c.relkind FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 ORDER BY 1",
            &[&"public"],
        )
        .await
        .unwrap();
    let listed: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        listed,
        [("events".into(), "r".into()), ("hits".into(), "m".into())]
    );
    let rows = client
        .query(
            "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull \
             FROM pg_catalog.pg_attribute a WHERE a.attrelid = 'events'::regclass \
             AND a.attnum > 0 ORDER BY a.attnum",
            &[],
        )
        .await
        .unwrap();
    let columns: Vec<(String, String, bool)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(columns[3], ("amount".into(), "numeric(10,2)".into(), false));
    assert_eq!(columns[4], ("ok".into(), "boolean".into(), true));
    assert_eq!(rows[0].columns()[1].name(), "format_type");
    server.stop().await;
}
