//! What dashboards and catalog browsers send: Grafana's PostgreSQL data source (its metadata
//! queries and its macro expansions, as literal strings), `information_schema`, the string
//! and array functions they use, `\dT`, and `timestamptz` casts.

use tokio_postgres::Client;

use crate::pg::{TestServer, psql, simple_rows};

/// Events over one hour and a per-minute view of them.
async fn dashboard_data(client: &Client) {
    client
        .batch_execute(
            "CREATE TABLE events (ts TIMESTAMP NOT NULL, page TEXT, \"Latency Ms\" DOUBLE PRECISION, amount NUMERIC(10, 2))
                 WITH (time_column = 'ts');
             INSERT INTO events VALUES
                 ('2026-01-01 00:00:10', '/a', 1.5, 1.25), ('2026-01-01 00:00:50', '/b', 2.5, 2.50),
                 ('2026-01-01 00:01:30', '/a', 3.5, 3.75), ('2026-01-01 00:07:00', '/a', 4.5, 5.00),
                 ('2026-01-01 02:00:00', '/c', 9.0, 1.00);
             CREATE MATERIALIZED VIEW per_minute AS
                 SELECT date_trunc('minute', ts) AS minute, page, count(*) AS n FROM events GROUP BY 1, 2",
        )
        .await
        .unwrap();
}

/// Every row of `sql` as text, through both protocols (Grafana's pgx driver uses the extended
/// one); the two must agree.
async fn rows_both_ways(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let simple = simple_rows(client, sql).await;
    let statement = client
        .prepare(sql)
        .await
        .unwrap_or_else(|e| panic!("prepare {sql}: {e}"));
    let extended = client
        .query(&statement, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(extended.len(), simple.len(), "{sql}");
    simple
}

fn column(rows: &[Vec<Option<String>>], i: usize) -> Vec<String> {
    rows.iter()
        .map(|r| r[i].clone().unwrap_or_else(|| "NULL".into()))
        .collect()
}

/// Grafana's search-path constraint (`buildSchemaConstraint` in its PostgreSQL data source).
const GRAFANA_SCHEMA_CONSTRAINT: &str = "quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '\"$user\"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_metadata_queries_list_schemas_tables_and_columns() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    dashboard_data(&client).await;

    let version = rows_both_ways(
        &client,
        "SELECT current_setting('server_version_num')::int/100 as version",
    )
    .await;
    assert_eq!(column(&version, 0), ["1600"]);
    let timescale = rows_both_ways(
        &client,
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'",
    )
    .await;
    assert!(timescale.is_empty());

    let schemas = rows_both_ways(
        &client,
        "SELECT schema_name AS \"name\"
    FROM information_schema.schemata
    WHERE schema_name NOT IN ('information_schema', 'pg_catalog', 'pg_toast', '_timescaledb_cache',
                              '_timescaledb_catalog', '_timescaledb_internal', '_timescaledb_config',
                              'timescaledb_information', 'timescaledb_experimental')
    ORDER BY schema_name",
    )
    .await;
    assert_eq!(column(&schemas, 0), ["public"]);

    let tables = rows_both_ways(
        &client,
        &format!(
            "SELECT
    CASE WHEN {GRAFANA_SCHEMA_CONSTRAINT}
      THEN quote_ident(table_name)
      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
    END AS \"table\"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN ('information_schema', 'pg_catalog', '_timescaledb_cache',
                             '_timescaledb_catalog', '_timescaledb_internal', '_timescaledb_config',
                             'timescaledb_information', 'timescaledb_experimental')
    ORDER BY CASE WHEN {GRAFANA_SCHEMA_CONSTRAINT} THEN 0 ELSE 1 END, 1"
        ),
    )
    .await;
    assert_eq!(column(&tables, 0), ["events", "per_minute"]);

    let in_schema = rows_both_ways(
        &client,
        "SELECT quote_ident(table_name) AS \"table\"
      FROM information_schema.tables
      WHERE quote_ident(table_schema) = 'public'
      ORDER BY 1",
    )
    .await;
    assert_eq!(column(&in_schema, 0), ["events", "per_minute"]);

    for (table, expected) in [
        (
            "events",
            vec![
                ("ts", "timestamp without time zone"),
                ("page", "text"),
                ("\"Latency Ms\"", "double precision"),
                ("amount", "numeric"),
            ],
        ),
        (
            "public.per_minute",
            vec![
                ("minute", "timestamp without time zone"),
                ("page", "text"),
                ("n", "bigint"),
            ],
        ),
    ] {
        let columns = rows_both_ways(
            &client,
            &format!(
                "SELECT quote_ident(column_name) AS \"column\", data_type AS \"type\"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident('{table}'),1) = 2
        THEN quote_ident(table_schema) = (parse_ident('{table}'))[1]
          AND quote_ident(table_name) = (parse_ident('{table}'))[2]
        ELSE quote_ident(table_name) = '{table}'
          AND {GRAFANA_SCHEMA_CONSTRAINT}
      END"
            ),
        )
        .await;
        let got: Vec<(String, String)> = columns
            .iter()
            .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
            .collect();
        let expected: Vec<(String, String)> = expected
            .into_iter()
            .map(|(c, t)| (c.to_string(), t.to_string()))
            .collect();
        assert_eq!(got, expected, "columns of {table}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_time_series_macros_expand_to_queries_that_run() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    dashboard_data(&client).await;
    // $__timeGroupAlias(ts, '1m'), $__timeFilter(ts) over 00:00–01:00 as Grafana expands them.
    let per_minute = rows_both_ways(
        &client,
        "SELECT floor(extract(epoch from ts)/60)*60 AS \"time\", count(*) AS \"value\"
         FROM events
         WHERE ts BETWEEN '2026-01-01T00:00:00Z' AND '2026-01-01T01:00:00.5Z'
         GROUP BY 1 ORDER BY 1",
    )
    .await;
    assert_eq!(
        per_minute,
        [
            [Some("1767225600".to_string()), Some("2".to_string())],
            [Some("1767225660".to_string()), Some("1".to_string())],
            [Some("1767226020".to_string()), Some("1".to_string())],
        ]
    );
    // $__time, $__timeEpoch, $__timeFrom/$__timeTo and $__unixEpochFilter.
    let raw = rows_both_ways(
        &client,
        "SELECT ts AS \"time\", extract(epoch from ts) as \"epoch\", page FROM events
         WHERE ts >= '2026-01-01T00:01:00Z' AND ts <= '2026-01-01T00:10:00Z'
           AND extract(epoch from ts) >= 1767225600 AND extract(epoch from ts) <= 1767229200
         ORDER BY 1",
    )
    .await;
    assert_eq!(
        column(&raw, 0),
        ["2026-01-01 00:01:30", "2026-01-01 00:07:00"]
    );
    assert_eq!(column(&raw, 1)[0].parse::<f64>().unwrap(), 1_767_225_690.0);
    // A panel over the materialized view, five-minute buckets, one series per page.
    let panel = rows_both_ways(
        &client,
        "SELECT floor(extract(epoch from minute)/300)*300 AS \"time\", page AS metric, sum(n) AS \"value\"
         FROM per_minute
         WHERE minute BETWEEN '2026-01-01T00:00:00Z' AND '2026-01-01T01:00:00Z'
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .await;
    assert_eq!(column(&panel, 1), ["/a", "/b", "/a"]);
    assert_eq!(column(&panel, 2), ["2", "1", "1"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_functions_and_casts_answer_like_postgres() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    dashboard_data(&client).await;
    let row = &rows_both_ways(
        &client,
        "SELECT quote_ident('events'), quote_ident('Latency Ms'), quote_ident('user'),
                quote_literal('it''s'), quote_nullable(NULL::text), current_schemas(false),
                current_schemas(true), array_lower(ARRAY[5, 6, 7], 1), array_upper(ARRAY[5, 6, 7], 1),
                array_upper(ARRAY[5], 2), parse_ident('public.\"Mixed\"'), user,
                current_setting('search_path'), current_setting('no.such', true)",
    )
    .await[0];
    let got: Vec<String> = row
        .iter()
        .map(|v| v.clone().unwrap_or_else(|| "NULL".into()))
        .collect();
    assert_eq!(
        got,
        [
            "events",
            "\"Latency Ms\"",
            "\"user\"",
            "'it''s'",
            "NULL",
            "{public}",
            "{pg_catalog,public}",
            "1",
            "3",
            "NULL",
            "{public,Mixed}",
            "tally",
            "\"$user\", public",
            "NULL"
        ]
    );
    let err = client
        .simple_query("SELECT current_setting('no.such')")
        .await
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("unrecognized configuration parameter"),
        "{err:?}"
    );

    // information_schema.columns as ORMs read it.
    let columns = rows_both_ways(
        &client,
        "SELECT column_name, ordinal_position, is_nullable, data_type, udt_name, numeric_precision,
                numeric_scale
         FROM information_schema.columns WHERE table_name = 'events' ORDER BY ordinal_position",
    )
    .await;
    assert_eq!(
        columns[0],
        [
            "ts",
            "1",
            "NO",
            "timestamp without time zone",
            "timestamp",
            "NULL",
            "NULL"
        ]
        .map(|s| (s != "NULL").then(|| s.to_string()))
    );
    assert_eq!(
        columns[3],
        ["amount", "4", "YES", "numeric", "numeric", "10", "2"].map(|s| Some(s.to_string()))
    );
    let types = rows_both_ways(
        &client,
        "SELECT table_name, table_type FROM information_schema.tables
         WHERE table_schema = 'public' ORDER BY 1",
    )
    .await;
    assert_eq!(column(&types, 1), ["BASE TABLE", "VIEW"]);
    let views = rows_both_ways(
        &client,
        "SELECT table_name, view_definition LIKE '%GROUP BY%' FROM information_schema.views",
    )
    .await;
    assert_eq!(views, [[Some("per_minute".into()), Some("t".into())]]);

    // `'…'::timestamptz` is a timestamptz, in UTC.
    let cast = client
        .query_one("SELECT '2026-01-01 10:00:00+02'::timestamptz AS t", &[])
        .await
        .unwrap();
    assert_eq!(
        cast.columns()[0].type_(),
        &tokio_postgres::types::Type::TIMESTAMPTZ
    );
    let value: chrono::DateTime<chrono::Utc> = cast.get(0);
    assert_eq!(value.to_rfc3339(), "2026-01-01T08:00:00+00:00");
    let text = rows_both_ways(&client, "SELECT '2026-01-01 10:00:00+02'::timestamptz").await;
    assert_eq!(column(&text, 0), ["2026-01-01 08:00:00+00"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_lists_data_types() {
    let server = TestServer::start().await;
    let out = psql(&server, &["-c", "\\dT"]).await.unwrap();
    assert!(out.contains("List of data types"), "{out}");
    let out = psql(&server, &["-c", "\\dT+ pg_catalog.int8"]).await;
    assert!(out.is_ok(), "{out:?}");
    server.stop().await;
}
