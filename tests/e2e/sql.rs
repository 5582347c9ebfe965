//! SQL surface: every column type round-trips (hot and flushed), information_schema, several
//! statements in one call, INSERT … SELECT.

use tally_tests::*;

const ALL_TYPES: &str = "CREATE TABLE all_types (
    b BOOLEAN, s SMALLINT, i INTEGER, l BIGINT, r REAL, d DOUBLE PRECISION, n NUMERIC(12, 3),
    t TEXT, v VARCHAR(20), y BYTEA, dt DATE, ts TIMESTAMP NOT NULL, tz TIMESTAMPTZ)
    WITH (time_column = 'ts')";

const ROW: &str = "INSERT INTO all_types VALUES (true, -12, 123456, 9007199254740993, 1.5, 2.25, 12345.678,
    'héllo', 'vc', decode('00ff10', 'hex'), '2026-02-28', '2026-01-01 12:34:56.123456', '2026-01-01 12:34:56.654321+00')";

#[tokio::test]
async fn every_type_round_trips_before_and_after_a_flush() {
    let (_dir, db) = temp_db(test_options());
    db.sql(ALL_TYPES).await.unwrap();
    db.sql(ROW).await.unwrap();
    db.sql("INSERT INTO all_types (ts) VALUES ('2026-01-02 00:00:00')")
        .await
        .unwrap();
    let query =
        "SELECT b, s, i, l, r, d, n, t, v, encode(y, 'hex'), dt, ts, tz FROM all_types ORDER BY ts";
    let expected = vec![
        "true|-12|123456|9007199254740993|1.5|2.25|12345.678|héllo|vc|00ff10|2026-02-28|2026-01-01T12:34:56.123456|2026-01-01T12:34:56.654321Z".to_string(),
        "|||||||||||2026-01-02T00:00:00|".to_string(),
    ];
    assert_eq!(query_lines(&db, query).await, expected);
    db.flush().await.unwrap();
    assert_eq!(db.table_stats("all_types").unwrap().hot_rows, 0);
    assert_eq!(query_lines(&db, query).await, expected);
    let types = query_lines(
        &db,
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = 'all_types' ORDER BY ordinal_position",
    )
    .await;
    assert_eq!(types.len(), 13);
    assert_eq!(types[6], "n|Decimal128(12, 3)|YES");
    assert_eq!(types[11], "ts|Timestamp(µs)|NO");
}

#[tokio::test]
async fn information_schema_lists_tables() {
    let (_dir, db) = temp_db(test_options());
    db.sql("CREATE TABLE a (x INT); CREATE TABLE \"B\" (y TEXT)")
        .await
        .unwrap();
    let tables = query_lines(
        &db,
        "SELECT table_catalog, table_schema, table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name",
    )
    .await;
    assert_eq!(
        tables,
        vec![
            "tally|public|B",
            "tally|public|a",
            "tally|public|tally_segments",
            "tally|public|tally_tables",
            "tally|public|tally_views"
        ]
    );
    assert_eq!(db.table_names(), vec!["B".to_string(), "a".to_string()]);
}

#[tokio::test]
async fn several_statements_run_in_order_and_see_each_other() {
    let (_dir, db) = temp_db(test_options());
    let results = db
        .execute("CREATE TABLE t (x BIGINT); INSERT INTO t VALUES (1), (2); INSERT INTO t SELECT x + 10 FROM t; SELECT sum(x) FROM t")
        .await
        .unwrap();
    let commands: Vec<_> = results
        .iter()
        .map(|r| (r.command.as_str(), r.rows))
        .collect();
    assert_eq!(
        commands,
        vec![
            ("CREATE TABLE", 0),
            ("INSERT", 2),
            ("INSERT", 2),
            ("SELECT", 1)
        ]
    );
    assert_eq!(query_i64(&db, "SELECT sum(x) FROM t").await, 26);
    assert_eq!(query_i64(&db, "SELECT sum(x) FROM public.t").await, 26);
}

#[tokio::test]
async fn prepared_statements_report_parameters_and_schema_and_see_new_data() {
    use tally_engine::reexports::arrow::datatypes::DataType;
    use tally_engine::reexports::datafusion::common::ScalarValue;
    let (_dir, db) = temp_db(test_options());
    db.sql("CREATE TABLE t (x BIGINT NOT NULL, label TEXT)")
        .await
        .unwrap();
    let select = db
        .prepare("SELECT label, x * 2 AS doubled FROM t WHERE x > $1 ORDER BY x")
        .await
        .unwrap();
    assert_eq!(select.param_types, vec![Some(DataType::Int64)]);
    let fields: Vec<_> = select
        .schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    assert_eq!(
        fields,
        vec![
            ("label".to_string(), DataType::Utf8),
            ("doubled".to_string(), DataType::Int64)
        ]
    );
    let insert = db.prepare("INSERT INTO t VALUES ($1, $2)").await.unwrap();
    assert_eq!(insert.command, "INSERT");
    assert_eq!(
        insert.param_types,
        vec![Some(DataType::Int64), Some(DataType::Utf8)]
    );
    for (x, label) in [(1, "a"), (2, "b"), (3, "c")] {
        let r = db
            .execute_prepared(
                &insert,
                vec![
                    ScalarValue::Int64(Some(x)),
                    ScalarValue::Utf8(Some(label.into())),
                ],
            )
            .await
            .unwrap();
        assert_eq!(r.rows, 1);
    }
    let result = db
        .execute_prepared(&select, vec![ScalarValue::Int64(Some(1))])
        .await
        .unwrap();
    assert_eq!(result.rows, 2, "rows inserted after prepare are visible");
    let err = db.execute_prepared(&select, vec![]).await.unwrap_err();
    assert!(err.to_string().contains("1 parameter"), "{err}");
    assert!(db.prepare("SELECT 1; SELECT 2").await.is_err());
    let ddl = db.prepare("CREATE TABLE u (y INT)").await.unwrap();
    assert_eq!(ddl.command, "CREATE TABLE");
    db.execute_prepared(&ddl, vec![]).await.unwrap();
    assert!(db.table("u").is_some());
}

/// `now()` is the time the statement started: one value for the whole statement, folded in at
/// planning (which needs the start time set on the statement's session).
#[tokio::test]
async fn now_is_the_time_the_statement_started() {
    let (_dir, db) = temp_db(test_options());
    db.sql("CREATE TABLE t (x BIGINT)").await.unwrap();
    db.sql("INSERT INTO t VALUES (1), (2)").await.unwrap();
    let before = chrono::Utc::now().timestamp();
    let lines = query_lines(
        &db,
        "SELECT now() = now(), now() > TIMESTAMP '2000-01-01', current_date > DATE '2000-01-01' FROM t",
    )
    .await;
    assert_eq!(lines, ["true|true|true", "true|true|true"]);
    let now = query_i64(&db, "SELECT to_unixtime(now())").await;
    let after = chrono::Utc::now().timestamp();
    assert!(
        before <= now && now <= after,
        "{before} <= {now} <= {after}"
    );
    let prepared = db
        .prepare("SELECT x, now() > $1 FROM t ORDER BY x")
        .await
        .unwrap();
    let result = db
        .execute_prepared(
            &prepared,
            vec![
                tally_engine::reexports::datafusion::common::ScalarValue::TimestampMicrosecond(
                    Some(0),
                    None,
                ),
            ],
        )
        .await
        .unwrap();
    let lines: Vec<String> = result.batches.iter().flat_map(batch_lines).collect();
    assert_eq!(lines, ["1|true", "2|true"]);
}

/// `length` and `octet_length` of BYTEA count bytes, as in PostgreSQL, whatever the bytes; of
/// text they stay DataFusion's (characters and bytes).
#[tokio::test]
async fn length_of_bytea_counts_bytes() {
    let (_dir, db) = temp_db(test_options());
    db.sql("CREATE TABLE blobs (ts TIMESTAMP NOT NULL, b BYTEA)")
        .await
        .unwrap();
    db.sql("INSERT INTO blobs VALUES ('2026-01-01', X'00ff10'), ('2026-01-01', X''), ('2026-01-01', NULL)")
        .await
        .unwrap();
    assert_eq!(
        query_lines(
            &db,
            "SELECT length(b), octet_length(b) FROM blobs ORDER BY length(b) NULLS LAST"
        )
        .await,
        vec!["0|0", "3|3", "|"]
    );
    assert_eq!(
        query_lines(
            &db,
            "SELECT length(X'ff00'), octet_length(X'ff00'), length('héllo'), octet_length('héllo'), char_length('héllo')"
        )
        .await,
        vec!["2|2|5|6|5"]
    );
    let err = db.sql("SELECT octet_length(1.5)").await.unwrap_err();
    assert!(err.to_string().contains("text or bytea"), "{err}");
}

/// `SELECT n::text FROM t ORDER BY n` sorts by the output column named `n`, as PostgreSQL
/// does, instead of failing on DataFusion's duplicate names (DataFusion issue 13558).
#[tokio::test]
async fn a_cast_column_sorts_by_its_name() {
    let (_dir, db) = temp_db(test_options());
    db.sql("CREATE TABLE nums (ts TIMESTAMP NOT NULL, n BIGINT, d DATE)")
        .await
        .unwrap();
    db.sql("INSERT INTO nums VALUES ('2026-01-01', 10, '2026-01-03'), ('2026-01-01', 9, '2026-01-01'), ('2026-01-01', 100, '2026-01-02')")
        .await
        .unwrap();
    // The output column is text, so the order is the text order, as in PostgreSQL.
    assert_eq!(
        query_lines(&db, "SELECT n::text FROM nums ORDER BY n").await,
        vec!["10", "100", "9"]
    );
    assert_eq!(
        query_lines(&db, "SELECT CAST(d AS TEXT), n FROM nums ORDER BY d DESC").await,
        vec!["2026-01-03|10", "2026-01-02|100", "2026-01-01|9"]
    );
    let batches = db
        .sql("SELECT n::double FROM nums ORDER BY n")
        .await
        .unwrap();
    assert_eq!(batches[0].schema().field(0).name(), "n");
}
