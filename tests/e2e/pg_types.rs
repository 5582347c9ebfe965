//! The column types of standard schemas (TPC-H's DDL as published): CHAR(n) and VARCHAR(n),
//! through INSERT, COPY (text, csv, binary), queries and the catalog psql reads.

use bytes::Bytes;
use futures::SinkExt;
use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use super::pg::{TestServer, code, psql, simple_rows};

/// TPC-H's `part` table, as the specification publishes it.
const PART_DDL: &str = "CREATE TABLE part (p_partkey INTEGER NOT NULL, \
     p_name VARCHAR(55) NOT NULL, p_mfgr CHAR(25) NOT NULL, p_brand CHAR(10) NOT NULL, \
     p_type VARCHAR(25) NOT NULL, p_size INTEGER NOT NULL, p_container CHAR(10) NOT NULL, \
     p_retailprice DECIMAL(15,2) NOT NULL, p_comment VARCHAR(23) NOT NULL)";

/// Enough of `lineitem` for the flag and status columns of Q1.
const LINEITEM_DDL: &str = "CREATE TABLE lineitem (l_orderkey INTEGER NOT NULL, \
     l_quantity DECIMAL(15,2) NOT NULL, l_returnflag CHAR(1) NOT NULL, \
     l_linestatus CHARACTER(1) NOT NULL, l_shipmode BPCHAR, l_comment CHARACTER VARYING(44))";

async fn copy_in(client: &Client, sql: &str, data: &str) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in::<_, Bytes>(sql).await?;
    futures::pin_mut!(sink);
    sink.send(Bytes::from(data.to_string())).await?;
    sink.finish().await
}

#[tokio::test]
async fn tpch_character_columns_load_compare_and_group_like_postgres() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client.batch_execute(PART_DDL).await.unwrap();
    client.batch_execute(LINEITEM_DDL).await.unwrap();

    client
        .batch_execute(
            "INSERT INTO part VALUES (1, 'goldenrod lace', 'Manufacturer#1   ', 'Brand#13', \
             'PROMO BURNISHED BRASS', 7, 'JUMBO PKG', 901.00, 'ly. slyly ironi')",
        )
        .await
        .unwrap();
    copy_in(
        &client,
        "COPY part FROM STDIN (FORMAT csv)",
        "2,blush thistle,Manufacturer#1,Brand#13,LARGE BRUSHED BRASS,1,LG CASE,902.00,lar accounts\n\
         3,spring green,Manufacturer#4,Brand#42,STANDARD POLISHED TIN,21,WRAP CASE,903.00,egular deposits\n",
    )
    .await
    .unwrap();
    // Trailing blanks of CHAR values are insignificant: stored without them, compared without.
    let rows = simple_rows(
        &client,
        "SELECT p_partkey, p_mfgr, length(p_mfgr) FROM part \
         WHERE p_type LIKE '%BRASS' AND p_mfgr = 'Manufacturer#1' ORDER BY 1",
    )
    .await;
    assert_eq!(
        rows,
        [
            [
                Some("1".into()),
                Some("Manufacturer#1".into()),
                Some("14".into())
            ],
            [
                Some("2".into()),
                Some("Manufacturer#1".into()),
                Some("14".into())
            ],
        ]
    );

    copy_in(
        &client,
        "COPY lineitem FROM STDIN",
        "1\t17\tN\tO\tTRUCK     \tegular courts above the\n\
         1\t36\tR\tF\tMAIL\t\\N\n\
         2\t8\tR\tF\t\\N\tly final dependencies\n",
    )
    .await
    .unwrap();
    let sink = client
        .copy_in("COPY lineitem FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    let types = [
        Type::INT4,
        Type::NUMERIC,
        Type::BPCHAR,
        Type::BPCHAR,
        Type::BPCHAR,
        Type::VARCHAR,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    futures::pin_mut!(writer);
    let quantity = rust_decimal::Decimal::new(4, 0);
    writer
        .as_mut()
        .write(&[&3i32, &quantity, &"A", &"F ", &"SHIP", &"final"])
        .await
        .unwrap();
    writer.finish().await.unwrap();
    let rows = simple_rows(
        &client,
        "SELECT l_returnflag, l_linestatus, sum(l_quantity), count(*) FROM lineitem \
         GROUP BY l_returnflag, l_linestatus ORDER BY 1, 2",
    )
    .await;
    let row = |f: &str, s: &str, q: &str, n: &str| {
        vec![
            Some(f.into()),
            Some(s.into()),
            Some(q.into()),
            Some(n.into()),
        ]
    };
    assert_eq!(
        rows,
        [
            row("A", "F", "4.00", "1"),
            row("N", "O", "17.00", "1"),
            row("R", "F", "44.00", "2"),
        ]
    );
    let modes = simple_rows(
        &client,
        "SELECT count(*) FROM lineitem WHERE l_shipmode = 'TRUCK' OR l_shipmode = 'SHIP'",
    )
    .await;
    assert_eq!(modes, [[Some("2".into())]]);

    // Result columns carry the declared types (bpchar 1042, varchar 1043).
    let statement = client
        .prepare("SELECT l_returnflag, l_comment FROM lineitem")
        .await
        .unwrap();
    let column_types: Vec<_> = statement
        .columns()
        .iter()
        .map(|c| c.type_().clone())
        .collect();
    assert_eq!(column_types, [Type::BPCHAR, Type::VARCHAR]);
    let flags: Vec<String> = client
        .query(
            "SELECT l_returnflag FROM lineitem WHERE l_orderkey = $1",
            &[&2i32],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(flags, ["R"]);

    // A CHAR column as a view's group key, kept up to date by later rows.
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW flags AS SELECT l_returnflag, count(*) AS n \
             FROM lineitem GROUP BY l_returnflag",
        )
        .await
        .unwrap();
    copy_in(
        &client,
        "COPY lineitem FROM STDIN",
        "4\t1\tR \tF\t\\N\t\\N\n",
    )
    .await
    .unwrap();
    let rows = simple_rows(&client, "SELECT l_returnflag, n FROM flags ORDER BY 1").await;
    assert_eq!(
        rows,
        [
            [Some("A".into()), Some("1".into())],
            [Some("N".into()), Some("1".into())],
            [Some("R".into()), Some("3".into())],
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn values_longer_than_the_declared_length_are_refused_with_22001() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE t (c CHAR(3), v VARCHAR(4))")
        .await
        .unwrap();
    // Lengths count characters, not bytes; blanks beyond the length are cut, not refused.
    client
        .batch_execute("INSERT INTO t VALUES ('éèà', 'ñañá'), ('ab    ', 'abcd   ')")
        .await
        .unwrap();
    let cases = [
        "INSERT INTO t VALUES ('abcd', NULL)",
        "INSERT INTO t VALUES (NULL, 'abcde')",
    ];
    for sql in cases {
        let err = client.batch_execute(sql).await.unwrap_err();
        assert_eq!(code(&err), "22001", "{sql}: {err:?}");
        let err = client.execute(sql, &[]).await.unwrap_err();
        assert_eq!(code(&err), "22001", "{sql} (extended): {err:?}");
    }
    let err = client
        .batch_execute("INSERT INTO t VALUES ('abcd', NULL)")
        .await
        .unwrap_err();
    let message = err.as_db_error().map(|e| e.message().to_string());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("value too long for type character(3)")),
        "{message:?}"
    );
    for (format, data) in [("text", "ok\tabcde\n"), ("csv", "abcd,ok\n")] {
        let err = copy_in(
            &client,
            &format!("COPY t FROM STDIN (FORMAT {format})"),
            data,
        )
        .await
        .unwrap_err();
        assert_eq!(code(&err), "22001", "{format}: {err:?}");
    }
    let sink = client
        .copy_in("COPY t FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    let writer = BinaryCopyInWriter::new(sink, &[Type::BPCHAR, Type::VARCHAR]);
    futures::pin_mut!(writer);
    writer.as_mut().write(&[&"long", &"ok"]).await.unwrap();
    let err = writer.finish().await.unwrap_err();
    assert_eq!(code(&err), "22001", "binary: {err:?}");

    let rows = simple_rows(&client, "SELECT c, v, length(v) FROM t ORDER BY c").await;
    assert_eq!(
        rows,
        [
            [Some("ab".into()), Some("abcd".into()), Some("4".into())],
            [Some("éèà".into()), Some("ñañá".into()), Some("4".into())],
        ]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogs_report_character_types_as_postgres_does() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client.batch_execute(LINEITEM_DDL).await.unwrap();
    let rows = simple_rows(
        &client,
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = 'lineitem'::regclass AND attnum > 0 ORDER BY attnum",
    )
    .await;
    let names: Vec<_> = rows
        .iter()
        .map(|r| format!("{} {}", r[0].as_deref().unwrap(), r[1].as_deref().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            "l_orderkey integer",
            "l_quantity numeric(15,2)",
            "l_returnflag character(1)",
            "l_linestatus character(1)",
            "l_shipmode character",
            "l_comment character varying(44)",
        ]
    );
    let rows = simple_rows(
        &client,
        "SELECT data_type, character_maximum_length FROM information_schema.columns \
         WHERE table_name = 'lineitem' AND column_name IN ('l_returnflag', 'l_comment') \
         ORDER BY column_name",
    )
    .await;
    assert_eq!(
        rows,
        [
            [Some("character varying".into()), Some("44".into())],
            [Some("character".into()), Some("1".into())],
        ]
    );
    let out = psql(&server, &["-A", "-c", "\\d lineitem"]).await.unwrap();
    assert!(
        out.contains("l_returnflag|character(1)||not null|\n"),
        "{out}"
    );
    assert!(
        out.contains("l_comment|character varying(44)|||\n"),
        "{out}"
    );
    server.stop().await;
}
