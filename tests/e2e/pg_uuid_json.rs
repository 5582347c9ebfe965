//! UUID and JSON/JSONB columns end to end: the library API, then the wire (INSERT, COPY in
//! three formats, parameters, views, errors) and the clients dashboards use.

use std::error::Error as StdError;
use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use bytes::{BufMut, Bytes, BytesMut};
use futures::{SinkExt, TryStreamExt};
use tally_engine::{DataErrorClass, Error, ErrorKind};
use tally_tests::{query_lines, temp_db, test_options};
use tokio_postgres::Client;
use tokio_postgres::binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, accepts, to_sql_checked};

use super::pg::{TestServer, code, psql, simple_rows};

type BoxError = Box<dyn StdError + Sync + Send>;

const A: &str = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
const B: &str = "b1ffcd00-0d1c-4f09-8c7e-7cc0ce491b22";

const EVENTS: &str = "CREATE TABLE ev (id UUID NOT NULL, owner UUID, \
     properties JSONB, raw JSON, n BIGINT)";

#[tokio::test]
async fn library_batches_and_sql_read_uuid_and_json() {
    let (_dir, db) = temp_db(test_options());
    db.sql(EVENTS).await.unwrap();
    // A batch from an embedder: UUIDs as text in any of PostgreSQL's spellings, JSON as text.
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("properties", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec![
                A.to_uppercase(),
                format!("{{{B}}}"),
                B.replace('-', ""),
            ])),
            Arc::new(StringArray::from(vec![
                Some(r#"{"plan": "pro", "amount": 12.50, "tags": ["a", "b"]}"#),
                Some(r#"{"plan": "free", "amount": 3, "nested": {"k": "v"}}"#),
                None,
            ])),
        ],
    )
    .unwrap();
    db.ingest("ev", batch).await.unwrap();
    assert_eq!(
        query_lines(
            &db,
            &format!(
                "SELECT uuid_out(id), properties->>'plan', properties #>> '{{nested,k}}', \
                 (properties->>'amount')::numeric(10,2), properties->'tags'->>1 \
                 FROM ev WHERE id = '{A}'"
            )
        )
        .await,
        [format!("{A}|pro||12.50|b")]
    );
    assert_eq!(
        query_lines(
            &db,
            &format!("SELECT count(*), count(DISTINCT id) FROM ev WHERE id IN ('{B}', '{A}')")
        )
        .await,
        ["3|2"]
    );
    // Bad text is refused with the column, the row and PostgreSQL's words.
    let bad = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("raw", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(StringArray::from(vec![A, "not-a-uuid"])),
            Arc::new(StringArray::from(vec!["{}", "{}"])),
        ],
    )
    .unwrap();
    let err = db.ingest("ev", bad).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Data(DataErrorClass::InvalidText));
    assert_eq!(
        err.to_string(),
        "table \"ev\", column \"id\", row 2: invalid input syntax for type uuid: \"not-a-uuid\""
    );
    let err = db
        .sql(&format!(
            "INSERT INTO ev (id, raw) VALUES ('{A}', '{{\"a\": }}')"
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Data(DataErrorClass::InvalidText));
    assert!(
        err.to_string()
            .contains("invalid input syntax for type json"),
        "{err}"
    );
    let err = db
        .sql("SELECT * FROM ev WHERE id = 'zzz'")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidValue { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "invalid input syntax for type uuid: \"zzz\""
    );
}

/// A UUID as tokio-postgres sends and reads it without its `uuid` feature: 16 raw bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PgUuid([u8; 16]);

impl PgUuid {
    fn parse(text: &str) -> PgUuid {
        PgUuid(tally_engine::types::uuid::parse(text).expect("a UUID"))
    }
}

impl ToSql for PgUuid {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        out.put_slice(&self.0);
        Ok(IsNull::No)
    }
    accepts!(UUID);
    to_sql_checked!();
}

impl<'a> FromSql<'a> for PgUuid {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<PgUuid, BoxError> {
        Ok(PgUuid(raw.try_into()?))
    }
    accepts!(UUID);
}

/// JSON or JSONB text in the binary format: JSONB's starts with the version byte 1.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PgJson(String);

impl ToSql for PgJson {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        if *ty == Type::JSONB {
            out.put_u8(1);
        }
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
    accepts!(JSON, JSONB);
    to_sql_checked!();
}

impl<'a> FromSql<'a> for PgJson {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<PgJson, BoxError> {
        let text = match (ty, raw.split_first()) {
            (&Type::JSONB, Some((1, text))) => text,
            (&Type::JSONB, _) => return Err("bad jsonb version".into()),
            _ => raw,
        };
        Ok(PgJson(String::from_utf8(text.to_vec())?))
    }
    accepts!(JSON, JSONB);
}

async fn copy_in(client: &Client, sql: &str, data: &str) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in::<_, Bytes>(sql).await?;
    futures::pin_mut!(sink);
    sink.send(Bytes::from(data.to_string())).await?;
    sink.finish().await
}

const C: &str = "c2000000-0000-4000-8000-000000000003";

/// Loads the same kinds of rows through INSERT, COPY text, COPY csv and COPY binary.
async fn load(client: &Client) {
    client.batch_execute(EVENTS).await.unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO ev VALUES ('{A}', '{{{B}}}', '{{\"plan\": \"pro\", \"amount\": \"12.50\"}}', \
             '[1, 2]', 1), ('{}', NULL, NULL, 'null', 2)",
            B.to_uppercase()
        ))
        .await
        .unwrap();
    copy_in(
        client,
        "COPY ev (id, owner, properties, raw, n) FROM STDIN",
        &format!(
            "{}\t{A}\t{{\"plan\": \"free\", \"amount\": 3, \"a\": {{\"b\": \"deep\"}}}}\t\\N\t3\n",
            C.replace('-', "")
        ),
    )
    .await
    .unwrap();
    copy_in(
        client,
        "COPY ev FROM STDIN (FORMAT csv)",
        &format!("{A},{A},\"{{\"\"plan\"\": \"\"pro\"\", \"\"amount\"\": 7.25}}\",\"{{}}\",4\n"),
    )
    .await
    .unwrap();
    let sink = client
        .copy_in("COPY ev FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    let writer = BinaryCopyInWriter::new(
        sink,
        &[Type::UUID, Type::UUID, Type::JSONB, Type::JSON, Type::INT8],
    );
    futures::pin_mut!(writer);
    let plan = PgJson(r#"{"plan": "max", "amount": 100}"#.into());
    writer
        .as_mut()
        .write(&[
            &PgUuid::parse(B),
            &None::<PgUuid>,
            &plan,
            &PgJson("\"s\"".into()),
            &5i64,
        ])
        .await
        .unwrap();
    assert_eq!(writer.finish().await.unwrap(), 1);
}

#[tokio::test]
async fn uuid_and_json_round_trip_through_insert_copy_and_parameters() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    load(&client).await;

    // Text results: the canonical UUID form; JSON as stored.
    let rows = simple_rows(
        &client,
        "SELECT id, owner, properties, raw FROM ev ORDER BY n",
    )
    .await;
    let text = |v: &str| Some(v.to_string());
    assert_eq!(
        rows[0],
        [
            text(A),
            text(B),
            text(r#"{"plan": "pro", "amount": "12.50"}"#),
            text("[1, 2]")
        ]
    );
    assert_eq!(rows[1], [text(B), None, None, text("null")]);
    assert_eq!(rows[2][0], text(C));
    assert_eq!(rows[3][2], text(r#"{"plan": "pro", "amount": 7.25}"#));
    assert_eq!(
        rows[4],
        [
            text(B),
            None,
            text(r#"{"plan": "max", "amount": 100}"#),
            text("\"s\"")
        ]
    );

    // Binary results and the types clients see.
    let statement = client
        .prepare(
            "SELECT id, properties, raw, properties->'a', properties->>'plan', \
             properties::text AS p, raw::varchar AS r, id::text AS i FROM ev WHERE n = $1",
        )
        .await
        .unwrap();
    let types: Vec<_> = statement
        .columns()
        .iter()
        .map(|c| c.type_().clone())
        .collect();
    // A JSON column cast to text is described as text (Describe sees the analyzed plan).
    assert_eq!(
        types,
        [
            Type::UUID,
            Type::JSONB,
            Type::JSON,
            Type::JSONB,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT
        ]
    );
    let row = client.query_one(&statement, &[&3i64]).await.unwrap();
    assert_eq!(row.get::<_, PgUuid>(0), PgUuid::parse(C));
    assert_eq!(row.get::<_, PgJson>(3), PgJson(r#"{"b": "deep"}"#.into()));
    assert_eq!(row.get::<_, String>(4), "free");
    assert_eq!(
        row.get::<_, String>(5),
        r#"{"plan": "free", "amount": 3, "a": {"b": "deep"}}"#
    );
    assert_eq!(row.get::<_, String>(7), C);

    // A UUID parameter, in comparisons and casts.
    let statement = client
        .prepare("SELECT n FROM ev WHERE id = $1 ORDER BY n")
        .await
        .unwrap();
    assert_eq!(statement.params(), [Type::UUID]);
    let ns: Vec<i64> = client
        .query(&statement, &[&PgUuid::parse(A)])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ns, [1, 4]);
    let row = client
        .query_one(
            "SELECT $1::uuid, $2::jsonb->>'k'",
            &[&PgUuid::parse(B), &r#"{"k": 1}"#],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, PgUuid>(0), PgUuid::parse(B));
    assert_eq!(row.get::<_, String>(1), "1");
    client
        .execute(
            "INSERT INTO ev (id, properties, n) VALUES ($1, $2, 6)",
            &[&PgUuid::parse(C), &"{\"plan\": \"pro\"}"],
        )
        .await
        .unwrap();

    for (sql, expected) in [
        (
            format!("SELECT count(*) FROM ev WHERE id = '{}'", A.to_uppercase()),
            "2",
        ),
        (
            format!("SELECT count(*) FROM ev WHERE id <> CAST('{A}' AS UUID)"),
            "4",
        ),
        (
            format!("SELECT count(*) FROM ev WHERE owner = '{B}'::uuid"),
            "1",
        ),
        (
            format!("SELECT count(*) FROM ev WHERE id IN ('{B}', '{C}')"),
            "4",
        ),
        ("SELECT id::text FROM ev WHERE n = 3".into(), C),
        ("SELECT count(DISTINCT id) FROM ev".into(), "3"),
        ("SELECT approx_count_distinct(id) FROM ev".into(), "3"),
        ("SELECT min(id) FROM ev".into(), A),
        (
            "SELECT properties #>> '{a,b}' FROM ev WHERE n = 3".into(),
            "deep",
        ),
        (
            "SELECT json_extract_path_text(properties, 'a', 'b') FROM ev WHERE n = 3".into(),
            "deep",
        ),
        ("SELECT raw->>1 FROM ev WHERE n = 1".into(), "2"),
        (
            "SELECT sum((properties->>'amount')::numeric(12,2)) FROM ev".into(),
            "122.75",
        ),
        (
            "SELECT sum((properties->>'amount')::double precision) FROM ev".into(),
            "122.75",
        ),
        (
            "SELECT (properties->>'amount')::int FROM ev WHERE n = 3".into(),
            "3",
        ),
        (
            "SELECT count(*) FROM ev WHERE properties->>'plan' = 'pro'".into(),
            "3",
        ),
        (
            "SELECT '{\"x\": [1, {\"y\": true}]}'::json #> '{x,1}'".into(),
            "{\"y\": true}",
        ),
    ] {
        assert_eq!(
            simple_rows(&client, &sql).await[0][0].as_deref(),
            Some(expected),
            "{sql}"
        );
    }

    // COPY out, in text and binary.
    let out = copy_out(
        &client,
        "COPY (SELECT id, properties FROM ev WHERE n = 1) TO STDOUT",
    )
    .await;
    assert_eq!(
        out,
        format!("{A}\t{{\"plan\": \"pro\", \"amount\": \"12.50\"}}\n")
    );
    let stream = client
        .copy_out("COPY (SELECT id, properties, raw FROM ev WHERE n = 5) TO STDOUT (FORMAT binary)")
        .await
        .unwrap();
    let rows: Vec<_> = BinaryCopyOutStream::new(stream, &[Type::UUID, Type::JSONB, Type::JSON])
        .try_collect()
        .await
        .unwrap();
    assert_eq!(rows[0].get::<PgUuid>(0), PgUuid::parse(B));
    assert_eq!(
        rows[0].get::<PgJson>(1),
        PgJson(r#"{"plan": "max", "amount": 100}"#.into())
    );
    assert_eq!(rows[0].get::<PgJson>(2), PgJson("\"s\"".into()));
}

async fn copy_out(client: &Client, sql: &str) -> String {
    let stream = client.copy_out(sql).await.unwrap();
    let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
    String::from_utf8(chunks.concat()).unwrap()
}

#[tokio::test]
async fn views_group_by_uuid_and_json_keys_and_stay_exact() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    load(&client).await;
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW by_owner AS SELECT owner, count(*) AS events, \
             count(DISTINCT id) AS ids, approx_count_distinct(id) AS approx_ids FROM ev GROUP BY owner; \
             CREATE MATERIALIZED VIEW by_plan AS SELECT properties->>'plan' AS plan, count(*) AS events, \
             sum((properties->>'amount')::numeric(12,2)) AS amount FROM ev GROUP BY 1",
        )
        .await
        .unwrap();
    // Live deltas after the backfill.
    load_more(&client).await;
    let by_owner = "SELECT owner, events, ids, approx_ids FROM by_owner ORDER BY owner";
    let recomputed = "SELECT owner, count(*), count(DISTINCT id), approx_count_distinct(id) \
         FROM ev GROUP BY owner ORDER BY owner";
    assert_eq!(
        simple_rows(&client, by_owner).await,
        crate::pg::raw_rows(&client, recomputed).await
    );
    assert_eq!(
        simple_rows(
            &client,
            &format!("SELECT ids FROM by_owner WHERE owner = '{A}'")
        )
        .await,
        [[Some("3".to_string())]]
    );
    let by_plan = "SELECT plan, events, amount FROM by_plan ORDER BY plan";
    let recomputed = "SELECT properties->>'plan', count(*), sum((properties->>'amount')::numeric(12,2)) \
         FROM ev GROUP BY 1 ORDER BY 1";
    let rows = simple_rows(&client, by_plan).await;
    assert_eq!(rows, crate::pg::raw_rows(&client, recomputed).await);
    let s = |v: &str| Some(v.to_string());
    assert_eq!(rows[0], [s("free"), s("2"), s("4.00")]);
    assert_eq!(rows[2], [s("pro"), s("2"), s("19.75")]);
    // The key column keeps its type through the view.
    let statement = client
        .prepare("SELECT owner, plan FROM by_owner, by_plan LIMIT 1")
        .await;
    if let Ok(statement) = statement {
        assert_eq!(statement.columns()[0].type_(), &Type::UUID);
    }
}

async fn load_more(client: &Client) {
    copy_in(
        client,
        "COPY ev (id, owner, properties, n) FROM STDIN (FORMAT csv)",
        &format!("{B},{A},\"{{\"\"plan\"\": \"\"free\"\", \"\"amount\"\": 1}}\",7\n{C},{A},,8\n"),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn bad_uuid_and_json_are_22p02_and_the_session_continues() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client.batch_execute(EVENTS).await.unwrap();
    let cases = [
        "INSERT INTO ev (id) VALUES ('not-a-uuid')".to_string(),
        format!("INSERT INTO ev (id, properties) VALUES ('{A}', '{{\"a\": }}')"),
        format!("INSERT INTO ev (id, raw) VALUES ('{A}', 'nope')"),
        "SELECT 'a0eebc99-9c0b'::uuid".into(),
        "SELECT * FROM ev WHERE id = 'a0eebc99-zzzz-4ef8-bb6d-6bb9bd380a11'".into(),
        "SELECT '[1,'::jsonb".into(),
    ];
    for sql in &cases {
        let err = client.batch_execute(sql).await.unwrap_err();
        assert_eq!(code(&err), "22P02", "{sql}: {err:?}");
        let message = err.as_db_error().unwrap().message();
        assert!(
            message.contains("invalid input syntax for type"),
            "{sql}: {message}"
        );
    }
    let err = client
        .batch_execute("INSERT INTO ev (id) VALUES ('xyz')")
        .await
        .unwrap_err();
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .ends_with("invalid input syntax for type uuid: \"xyz\""),
        "{err:?}"
    );
    let err = copy_in(&client, "COPY ev (id) FROM STDIN", "{A}\n")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "22P02", "{err:?}");
    let err = copy_in(
        &client,
        "COPY ev (id, raw) FROM STDIN (FORMAT csv)",
        &format!("{A},{{x}}\n"),
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "22P02", "{err:?}");
    // A parameter the client declares as text is read as a UUID, or refused.
    let statement = client
        .prepare_typed("SELECT n FROM ev WHERE id = $1", &[Type::TEXT])
        .await
        .unwrap();
    assert!(client.query(&statement, &[&A]).await.unwrap().is_empty());
    let err = client.query(&statement, &[&"xyz"]).await.unwrap_err();
    assert_eq!(code(&err), "22P02", "{err:?}");
    // Nothing was stored, and the session goes on.
    assert_eq!(
        simple_rows(&client, "SELECT count(*) FROM ev").await,
        [[Some("0".to_string())]]
    );
}

#[tokio::test]
async fn psql_and_the_catalog_name_uuid_json_and_jsonb() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client.batch_execute(EVENTS).await.unwrap();
    let rows = simple_rows(
        &client,
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = 'ev'::regclass AND attnum > 0 ORDER BY attnum",
    )
    .await;
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        rows,
        [
            [s("id"), s("uuid")],
            [s("owner"), s("uuid")],
            [s("properties"), s("jsonb")],
            [s("raw"), s("json")],
            [s("n"), s("bigint")],
        ]
    );
    let rows = simple_rows(
        &client,
        "SELECT data_type, udt_name FROM information_schema.columns \
         WHERE table_name = 'ev' ORDER BY ordinal_position",
    )
    .await;
    assert_eq!(rows[0], [s("uuid"), s("uuid")]);
    assert_eq!(rows[2], [s("jsonb"), s("jsonb")]);
    assert_eq!(rows[3], [s("json"), s("json")]);
    let out = psql(&server, &["-A", "-c", "\\d ev"]).await.unwrap();
    assert!(out.contains("id|uuid||not null|\n"), "{out}");
    assert!(out.contains("properties|jsonb|||\n"), "{out}");
    assert!(out.contains("raw|json|||\n"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_adapts_uuid_and_jsonb() {
    let server = TestServer::start().await;
    let dsn = format!(
        "host=127.0.0.1 port={} user=tally dbname=tally sslmode=disable",
        server.addr.port()
    );
    let out = super::pg_psycopg::run_script("psycopg_session.py", &["uuid_json", &dsn]).await;
    assert!(
        out.contains("ok: binary results of uuid and jsonb"),
        "{out}"
    );
    server.stop().await;
}
