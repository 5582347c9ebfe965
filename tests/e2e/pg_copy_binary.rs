//! COPY in PostgreSQL's binary format: tokio-postgres' binary COPY writer and reader over every
//! column type, psql's `\copy … (FORMAT binary)` through a file, and malformed streams (each
//! refused with PostgreSQL's SQLSTATE, nothing stored, the connection still usable).

use bytes::{BufMut, Bytes, BytesMut};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use futures::{SinkExt, StreamExt};
use rust_decimal::Decimal;
use tokio_postgres::Client;
use tokio_postgres::binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream};
use tokio_postgres::types::{ToSql, Type};

use crate::pg::{TestServer, code, psql, simple_value};

const READINGS: &str = "CREATE TABLE readings (id BIGINT NOT NULL, ok BOOLEAN, small SMALLINT,
    medium INTEGER, ratio REAL, value DOUBLE PRECISION, amount NUMERIC(12, 3), label TEXT,
    payload BYTEA, day DATE, at TIMESTAMP, at_tz TIMESTAMPTZ)";

/// The column types of `readings`, in order.
const TYPES: [Type; 12] = [
    Type::INT8,
    Type::BOOL,
    Type::INT2,
    Type::INT4,
    Type::FLOAT4,
    Type::FLOAT8,
    Type::NUMERIC,
    Type::TEXT,
    Type::BYTEA,
    Type::DATE,
    Type::TIMESTAMP,
    Type::TIMESTAMPTZ,
];

/// One row of `readings` as Rust values.
#[derive(Debug, Clone, PartialEq)]
struct Reading {
    id: i64,
    ok: Option<bool>,
    small: Option<i16>,
    medium: Option<i32>,
    ratio: Option<f32>,
    value: Option<f64>,
    amount: Option<Decimal>,
    label: Option<String>,
    payload: Option<Vec<u8>>,
    day: Option<NaiveDate>,
    at: Option<NaiveDateTime>,
    at_tz: Option<DateTime<Utc>>,
}

/// Row `i`: extremes of every type near the ends, NULLs in every nullable column for
/// multiples of 9, dates and times on both sides of PostgreSQL's 2000-01-01 epoch.
fn reading(i: i64) -> Reading {
    if i % 9 == 0 {
        return Reading {
            id: i,
            ok: None,
            small: None,
            medium: None,
            ratio: None,
            value: None,
            amount: None,
            label: None,
            payload: None,
            day: None,
            at: None,
            at_tz: None,
        };
    }
    let day = NaiveDate::from_ymd_opt(1999, 12, 25).unwrap() + chrono::Days::new(i as u64 * 3);
    let at = day
        .and_hms_micro_opt(23, 59, 59, (i as u32 * 7919) % 1_000_000)
        .unwrap();
    Reading {
        id: if i == 1 { i64::MIN } else { i },
        ok: Some(i % 2 == 0),
        small: Some(if i == 2 {
            i16::MIN
        } else {
            (i % 300) as i16 - 150
        }),
        medium: Some(if i == 3 { i32::MAX } else { -(i as i32) * 1000 }),
        ratio: Some(i as f32 / 4.0),
        value: Some(if i == 4 {
            f64::INFINITY
        } else {
            i as f64 * 1.5 + 0.1
        }),
        amount: Some(Decimal::new(i * 10_007 - 500_000_000, 3)),
        label: Some(format!("naïve\t\"{i}\"\n\\ 日本")),
        payload: Some(vec![i as u8, 0, 255, b'\\']),
        day: Some(day),
        at: Some(at),
        at_tz: Some(at.and_utc() + chrono::Duration::hours(5)),
    }
}

impl Reading {
    fn values(&self) -> [&(dyn ToSql + Sync); 12] {
        [
            &self.id,
            &self.ok,
            &self.small,
            &self.medium,
            &self.ratio,
            &self.value,
            &self.amount,
            &self.label,
            &self.payload,
            &self.day,
            &self.at,
            &self.at_tz,
        ]
    }

    fn from_row(row: &tokio_postgres::binary_copy::BinaryCopyOutRow) -> Reading {
        Reading {
            id: row.get(0),
            ok: row.get(1),
            small: row.get(2),
            medium: row.get(3),
            ratio: row.get(4),
            value: row.get(5),
            amount: row.get(6),
            label: row.get(7),
            payload: row.get(8),
            day: row.get(9),
            at: row.get(10),
            at_tz: row.get(11),
        }
    }
}

/// Writes `rows` with tokio-postgres' binary COPY writer; returns the COPY's row count.
async fn copy_in(client: &Client, table: &str, rows: &[Reading]) -> u64 {
    let sink = client
        .copy_in(&format!("COPY {table} FROM STDIN (FORMAT binary)"))
        .await
        .unwrap();
    let writer = BinaryCopyInWriter::new(sink, &TYPES);
    futures::pin_mut!(writer);
    for row in rows {
        writer.as_mut().write(&row.values()).await.unwrap();
    }
    writer.finish().await.unwrap()
}

/// Reads `query` back with tokio-postgres' binary COPY reader.
async fn copy_out(client: &Client, query: &str) -> Vec<Reading> {
    let stream = client
        .copy_out(&format!("COPY ({query}) TO STDOUT (FORMAT binary)"))
        .await
        .unwrap();
    let rows = BinaryCopyOutStream::new(stream, &TYPES);
    futures::pin_mut!(rows);
    let mut out = Vec::new();
    while let Some(row) = rows.next().await {
        out.push(Reading::from_row(&row.unwrap()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_copy_round_trips_every_type_and_feeds_views() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client.batch_execute(READINGS).await.unwrap();
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW by_ok AS
                 SELECT ok, count(*) AS n, sum(amount) AS total, max(at_tz) AS last FROM readings GROUP BY ok",
        )
        .await
        .unwrap();
    let rows: Vec<Reading> = (1..=20_000).map(reading).collect();
    assert_eq!(copy_in(&client, "readings", &rows).await, 20_000);
    let back = copy_out(&client, "SELECT * FROM readings ORDER BY id").await;
    let mut expected = rows.clone();
    expected.sort_by_key(|r| r.id);
    assert_eq!(back.len(), expected.len());
    for (got, want) in back.iter().zip(&expected) {
        assert_eq!(got, want);
    }
    // The view counted the binary COPY like any other ingest.
    let view = simple_value(
        &client,
        "SELECT string_agg(ok || ':' || n || ':' || total, ',' ORDER BY ok) FROM by_ok",
    )
    .await;
    client
        .batch_execute("SET tally.view_rewrite = off")
        .await
        .unwrap();
    let recompute = simple_value(
        &client,
        "SELECT string_agg(ok || ':' || n || ':' || total, ',' ORDER BY ok) FROM
             (SELECT ok, count(*) AS n, sum(amount) AS total FROM readings GROUP BY ok) r",
    )
    .await;
    assert_eq!(view, recompute);
    // An empty result is the header and the trailer.
    assert!(
        copy_out(&client, "SELECT * FROM readings WHERE id = 0")
            .await
            .is_empty()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_copies_a_binary_file_out_and_back_in() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client.batch_execute(READINGS).await.unwrap();
    let rows: Vec<Reading> = (1..=500).map(reading).collect();
    copy_in(&client, "readings", &rows).await;
    psql(
        &server,
        &[
            "-c",
            "\\copy (SELECT * FROM readings ORDER BY id) TO 'readings.bin' (FORMAT binary)",
            "-c",
            &READINGS.replace("readings", "restored"),
            "-c",
            "\\copy restored FROM 'readings.bin' WITH (FORMAT binary)",
        ],
    )
    .await
    .unwrap();
    let file = std::fs::read(server.dir.path().join("readings.bin")).unwrap();
    assert!(file.starts_with(b"PGCOPY\n\xff\r\n\0"));
    assert!(file.ends_with(&[0xff, 0xff]));
    let original = copy_out(&client, "SELECT * FROM readings ORDER BY id").await;
    let restored = copy_out(&client, "SELECT * FROM restored ORDER BY id").await;
    assert_eq!(restored, original);
    server.stop().await;
}

/// A binary COPY stream: the header, then `tuples` as given (raw bytes), then the trailer.
fn stream(tuples: &[&[u8]]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_slice(b"PGCOPY\n\xff\r\n\0");
    out.put_u32(0);
    out.put_u32(0);
    for t in tuples {
        out.put_slice(t);
    }
    out.put_i16(-1);
    out.freeze()
}

/// A tuple of `(id BIGINT NOT NULL, label TEXT)` with the given raw fields (None = NULL).
fn tuple(fields: &[Option<&[u8]>]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_i16(fields.len() as i16);
    for f in fields {
        match f {
            Some(bytes) => {
                out.put_i32(bytes.len() as i32);
                out.put_slice(bytes);
            }
            None => out.put_i32(-1),
        }
    }
    out.to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_binary_copies_store_nothing_and_name_the_problem() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE t (id BIGINT NOT NULL, label TEXT)")
        .await
        .unwrap();
    let good = tuple(&[Some(&7i64.to_be_bytes()), Some(b"seven")]);
    let mut truncated = stream(&[&good]).to_vec();
    truncated.truncate(truncated.len() - 5);
    let cases: Vec<(&str, Bytes, &str)> = vec![
        (
            "not a binary stream",
            Bytes::from_static(b"1\tone\n"),
            "22P04",
        ),
        ("an empty stream", Bytes::new(), "22P04"),
        ("a truncated tuple", Bytes::from(truncated), "22P04"),
        (
            "a wrong field count",
            stream(&[&good, &tuple(&[Some(&8i64.to_be_bytes())])]),
            "22P04",
        ),
        (
            "an int8 of four bytes",
            stream(&[&good, &tuple(&[Some(&8i32.to_be_bytes()), None])]),
            "22P03",
        ),
        (
            "NULL in a NOT NULL column",
            stream(&[&good, &tuple(&[None, Some(b"x")])]),
            "23502",
        ),
        (
            "invalid UTF-8",
            stream(&[&tuple(&[Some(&8i64.to_be_bytes()), Some(b"\xc3\x28")])]),
            "22021",
        ),
        (
            "a field length below -1",
            stream(&[&[0, 2, 0xff, 0xff, 0xff, 0xfe][..]]),
            "22P03",
        ),
        (
            "a field length of 2^31-1 with no data",
            stream(&[&[0, 2, 0x7f, 0xff, 0xff, 0xff][..]]),
            "22P04",
        ),
    ];
    for (what, data, expected) in cases {
        let sink = client
            .copy_in::<_, Bytes>("COPY t FROM STDIN (FORMAT binary)")
            .await
            .unwrap();
        futures::pin_mut!(sink);
        let result = async {
            for chunk in data.chunks(3) {
                sink.send(Bytes::copy_from_slice(chunk)).await?;
            }
            sink.as_mut().finish().await
        }
        .await;
        let err = result.expect_err(what);
        assert_eq!(code(&err), expected, "{what}: {err:?}");
        assert_eq!(
            simple_value(&client, "SELECT count(*) FROM t").await,
            "0",
            "{what}"
        );
    }
    // Text options have no meaning in binary mode.
    let err = client
        .batch_execute("COPY t FROM STDIN (FORMAT binary, DELIMITER ',')")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "42601");
    server.stop().await;
}
