//! No statement depth takes the server down. For each shape of deep statement — a long `+`
//! chain, nested parentheses, a long IN list, long AND and OR chains, nested CASE, subqueries
//! nested in expressions and in FROM — a size within the limits evaluates to its value and a
//! size past them gets SQLSTATE 54001 with a hint: as a simple query, as a prepared statement
//! (extended protocol) and inside a materialized view's definition (a view too deep is not
//! created; one within the limits is maintained by INSERT and COPY and compiles again after a
//! restart). After each, the same session and a bystander session opened first still answer.
//! The library API (`Database::execute`, `prepare`, transactions) is held to the same limits.
//! The limits are those of `engine/src/query/depth.rs` (docs/sql.md, "Limits on statement
//! depth"); sizes are chosen near them but small enough to run fast in a debug build.

use std::time::Instant;

use bytes::Bytes;
use futures::SinkExt;
use tally_engine::{Database, ErrorKind};
use tally_tests::{temp_db, test_options};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Row};

use crate::pg::{TestServer, simple_rows, simple_value};

/// A shape of deep statement, as an expression over an operand `atom` (a column or literal).
struct Shape {
    name: &'static str,
    /// The expression of size `n` over `atom`.
    expr: fn(usize, &str) -> String,
    /// A size that evaluates.
    ok: usize,
    /// A size that a view's definition holds (smaller where maintaining is slow: see docs/sql.md).
    view_ok: usize,
    /// Its value for `atom` = 5, as PostgreSQL's text output.
    value: &'static str,
    /// A size past the limits (`None`: no size of this shape is too deep).
    too_deep: Option<usize>,
    /// Whether the shape can be a materialized view's group key (subqueries cannot).
    in_view: bool,
    /// Whether the limit passed is the one on subqueries nested in expressions.
    subqueries: bool,
    /// The query of size `n` over the table `d`, when it is not `SELECT <expr over x> FROM d`.
    query: Option<fn(usize) -> String>,
}

/// `atom+1+1…`: `n` terms.
fn plus(n: usize, atom: &str) -> String {
    format!("{atom}{}", "+1".repeat(n - 1))
}

/// `((…(atom)…))`: `n` pairs.
fn parens(n: usize, atom: &str) -> String {
    format!("{}{atom}{}", "(".repeat(n), ")".repeat(n))
}

/// `atom IN (1, 2, …, n)`.
fn in_list(n: usize, atom: &str) -> String {
    let items: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    format!("{atom} IN ({})", items.join(", "))
}

/// `atom <> 6 AND atom <> 7 …`: `n` terms.
fn and_chain(n: usize, atom: &str) -> String {
    let terms: Vec<String> = (6..n + 6).map(|i| format!("{atom} <> {i}")).collect();
    terms.join(" AND ")
}

/// `atom = 1 OR atom = 2 …`: `n` terms.
fn or_chain(n: usize, atom: &str) -> String {
    let terms: Vec<String> = (1..=n).map(|i| format!("{atom} = {i}")).collect();
    terms.join(" OR ")
}

/// `CASE WHEN true THEN CASE … atom … END END`: `n` nested.
fn case(n: usize, atom: &str) -> String {
    format!(
        "{}{atom}{}",
        "CASE WHEN true THEN ".repeat(n),
        " END".repeat(n)
    )
}

/// `(SELECT (SELECT … (SELECT x FROM d)))`: `n` scalar subqueries, each in the one around it
/// (none correlated: `atom` is not used).
fn scalar_subqueries(n: usize, _atom: &str) -> String {
    format!(
        "{}(SELECT x FROM d){}",
        "(SELECT ".repeat(n - 1),
        ")".repeat(n - 1)
    )
}

/// `(SELECT x FROM (SELECT x FROM … (SELECT atom AS x) t …) t)`: `n` subqueries in FROM.
fn from_subqueries(n: usize, atom: &str) -> String {
    format!(
        "(SELECT x FROM {}(SELECT {atom} AS x) t{})",
        "(SELECT x FROM ".repeat(n - 1),
        ") t".repeat(n - 1)
    )
}

/// `SELECT x FROM (SELECT x FROM … d …) t`: `n` subqueries in FROM.
fn from_subqueries_query(n: usize) -> String {
    format!(
        "SELECT x AS v FROM {}d{}",
        "(SELECT x FROM ".repeat(n),
        ") t".repeat(n)
    )
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "plus",
        expr: plus,
        ok: 150,
        view_ok: 150,
        value: "154",
        too_deep: Some(5_001),
        in_view: true,
        subqueries: false,
        query: None,
    },
    Shape {
        name: "parentheses",
        expr: parens,
        ok: 4_000,
        view_ok: 4_000,
        value: "5",
        too_deep: Some(6_000),
        in_view: true,
        subqueries: false,
        query: None,
    },
    Shape {
        name: "in_list",
        expr: in_list,
        ok: 10_000,
        view_ok: 1_000,
        value: "t",
        too_deep: None,
        in_view: true,
        subqueries: false,
        query: None,
    },
    Shape {
        name: "and",
        expr: and_chain,
        ok: 150,
        view_ok: 150,
        value: "t",
        too_deep: Some(10_000),
        in_view: true,
        subqueries: false,
        query: None,
    },
    Shape {
        name: "or",
        expr: or_chain,
        ok: 150,
        view_ok: 150,
        value: "t",
        too_deep: Some(10_000),
        in_view: true,
        subqueries: false,
        query: None,
    },
    Shape {
        name: "case",
        expr: case,
        ok: 1_000,
        view_ok: 100,
        value: "5",
        too_deep: Some(3_000),
        in_view: true,
        subqueries: false,
        query: None,
    },
    Shape {
        name: "scalar_subqueries",
        expr: scalar_subqueries,
        ok: 12,
        view_ok: 12,
        value: "5",
        too_deep: Some(13),
        in_view: false,
        subqueries: true,
        query: None,
    },
    Shape {
        name: "from_subqueries",
        expr: from_subqueries,
        ok: 150,
        view_ok: 150,
        value: "5",
        too_deep: Some(3_000),
        in_view: false,
        subqueries: false,
        query: Some(from_subqueries_query),
    },
];

fn shape(name: &str) -> &'static Shape {
    SHAPES
        .iter()
        .find(|s| s.name == name)
        .expect("a shape of that name")
}

/// A query of the shape's expression over the one-row table `d` (`x` = 5).
fn query(shape: &Shape, n: usize) -> String {
    match shape.query {
        Some(query) => query(n),
        None => format!("SELECT {} AS v FROM d", (shape.expr)(n, "x")),
    }
}

/// A cell as PostgreSQL's text output writes it, whatever its type.
fn text(row: &Row, i: usize) -> String {
    match *row.columns()[i].type_() {
        Type::BOOL => if row.get::<_, bool>(i) { "t" } else { "f" }.into(),
        Type::INT8 => row.get::<_, i64>(i).to_string(),
        Type::INT4 => row.get::<_, i32>(i).to_string(),
        ref other => panic!("a cell of type {other}"),
    }
}

/// Checks that `err` is the 54001 of a statement too deep, with a message and hint to act on.
fn assert_too_deep(err: &tokio_postgres::Error, shape: &Shape, what: &str) {
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("{} {what}: not an ErrorResponse: {err}", shape.name));
    assert_eq!(db.code().code(), "54001", "{} {what}: {db:?}", shape.name);
    let message = db.message();
    assert!(
        message.starts_with("stack depth limit exceeded"),
        "{} {what}: {message}",
        shape.name
    );
    let limit = if shape.subqueries {
        "more than the limit of 12"
    } else {
        "more than the limit of 5000"
    };
    assert!(message.contains(limit), "{} {what}: {message}", shape.name);
    assert_eq!(
        message.contains("subqueries"),
        shape.subqueries,
        "{} {what}: {message}",
        shape.name
    );
    let hint = db.hint().unwrap_or_default();
    assert!(hint.starts_with("Simplify the statement"), "{hint}");
}

/// The session and the bystander both still answer.
async fn still_answer(client: &Client, bystander: &Client) {
    for c in [client, bystander] {
        assert_eq!(simple_value(c, "SELECT 42").await, "42");
        let row = c.query_one("SELECT 42", &[]).await.expect("SELECT 42");
        assert_eq!(row.get::<_, i64>(0), 42);
    }
}

/// Sends `rows` through `COPY t FROM STDIN`.
async fn copy_in(client: &Client, rows: &str) {
    let sink = client
        .copy_in::<_, Bytes>("COPY t FROM STDIN")
        .await
        .expect("COPY");
    futures::pin_mut!(sink);
    sink.send(Bytes::from(rows.to_string())).await.unwrap();
    sink.as_mut().finish().await.expect("COPY finishes");
}

/// The view equals its definition recomputed over the table.
async fn assert_view_exact(client: &Client, definition: &str) {
    let view = simple_rows(client, "SELECT g, k, n FROM deep ORDER BY g, k").await;
    let recomputed = crate::pg::raw_rows(
        client,
        &format!("SELECT g, k, n FROM ({definition}) q ORDER BY g, k"),
    )
    .await;
    assert!(!view.is_empty());
    assert_eq!(view, recomputed);
}

/// Every check of `shape` against one server: simple protocol, extended protocol, views.
async fn check_over_the_wire(shape: &Shape) {
    let started = Instant::now();
    let server = TestServer::start().await;
    let bystander = server.connect().await;
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE d (x BIGINT); INSERT INTO d VALUES (5)")
        .await
        .unwrap();
    let ok = query(shape, shape.ok);

    // (a) Simple protocol.
    assert_eq!(
        simple_value(&client, &ok).await,
        shape.value,
        "{}",
        shape.name
    );
    if let Some(n) = shape.too_deep {
        let err = client.simple_query(&query(shape, n)).await.unwrap_err();
        assert_too_deep(&err, shape, "simple query");
    }
    still_answer(&client, &bystander).await;

    // (b) Extended protocol: Parse is where the statement is refused.
    let statement = client.prepare(&ok).await.unwrap();
    let rows = client.query(&statement, &[]).await.unwrap();
    assert_eq!(text(&rows[0], 0), shape.value, "{}", shape.name);
    drop(statement);
    if let Some(n) = shape.too_deep {
        let err = client.prepare(&query(shape, n)).await.unwrap_err();
        assert_too_deep(&err, shape, "prepare");
        let err = client.query(&query(shape, n), &[]).await.unwrap_err();
        assert_too_deep(&err, shape, "query");
    }
    still_answer(&client, &bystander).await;

    // (c) In a materialized view's definition.
    let server = if shape.in_view {
        check_view(shape, server, &client, &bystander).await
    } else {
        if let Some(n) = shape.too_deep {
            let sql = format!(
                "CREATE MATERIALIZED VIEW deep AS SELECT {} AS k, count(*) AS n FROM d GROUP BY 1",
                (shape.expr)(n, "x")
            );
            let err = client.simple_query(&sql).await.unwrap_err();
            assert_too_deep(&err, shape, "view");
            assert!(server.db.view_names().is_empty());
        }
        still_answer(&client, &bystander).await;
        server
    };
    server.stop().await;
    eprintln!("{}: {:?}", shape.name, started.elapsed());
}

/// A view of the shape too deep is refused and nothing is created; one within the limits is
/// backfilled, maintained by INSERT and COPY, and compiles again after a restart. Returns the
/// restarted server.
async fn check_view(
    shape: &Shape,
    server: TestServer,
    client: &Client,
    bystander: &Client,
) -> TestServer {
    let definition = |n: usize| {
        format!(
            "SELECT g, {} AS k, count(*) AS n FROM t GROUP BY 1, 2",
            (shape.expr)(n, "x")
        )
    };
    client
        .batch_execute(
            "CREATE TABLE t (g BIGINT, x BIGINT); \
             INSERT INTO t VALUES (1, 5), (1, 6), (2, -3), (2, NULL)",
        )
        .await
        .unwrap();
    if let Some(n) = shape.too_deep {
        let sql = format!("CREATE MATERIALIZED VIEW too_deep AS {}", definition(n));
        let err = client.simple_query(&sql).await.unwrap_err();
        assert_too_deep(&err, shape, "view");
        let err = client.prepare(&sql).await.unwrap_err();
        assert_too_deep(&err, shape, "prepared view");
        assert!(server.db.view_names().is_empty(), "nothing is created");
        let err = client.simple_query("SELECT * FROM too_deep").await;
        assert_eq!(err.unwrap_err().code().unwrap().code(), "42P01");
    }
    let ok = definition(shape.view_ok);
    client
        .batch_execute(&format!("CREATE MATERIALIZED VIEW deep AS {ok}"))
        .await
        .unwrap();
    assert_view_exact(client, &ok).await;
    client
        .batch_execute("INSERT INTO t VALUES (1, 5), (3, 7), (3, 0)")
        .await
        .unwrap();
    copy_in(client, "1\t5\n2\t-3\n4\t9\n4\t\\N\n").await;
    assert_view_exact(client, &ok).await;
    still_answer(client, bystander).await;

    let server = server.restart().await;
    let client = server.connect().await;
    assert_view_exact(&client, &ok).await;
    client
        .batch_execute("INSERT INTO t VALUES (5, 5), (1, 1)")
        .await
        .unwrap();
    assert_view_exact(&client, &ok).await;
    assert_eq!(simple_value(&client, "SELECT 42").await, "42");
    server
}

#[tokio::test]
async fn a_long_plus_chain_evaluates_or_gets_54001() {
    check_over_the_wire(shape("plus")).await;
}

#[tokio::test]
async fn nested_parentheses_evaluate_or_get_54001() {
    check_over_the_wire(shape("parentheses")).await;
}

#[tokio::test]
async fn a_long_in_list_evaluates() {
    check_over_the_wire(shape("in_list")).await;
}

#[tokio::test]
async fn a_long_and_chain_evaluates_or_gets_54001() {
    check_over_the_wire(shape("and")).await;
}

#[tokio::test]
async fn a_long_or_chain_evaluates_or_gets_54001() {
    check_over_the_wire(shape("or")).await;
}

#[tokio::test]
async fn nested_case_evaluates_or_gets_54001() {
    check_over_the_wire(shape("case")).await;
}

#[tokio::test]
async fn nested_scalar_subqueries_evaluate_or_get_54001() {
    check_over_the_wire(shape("scalar_subqueries")).await;
}

#[tokio::test]
async fn nested_from_subqueries_evaluate_or_get_54001() {
    check_over_the_wire(shape("from_subqueries")).await;
}

/// 31 subqueries nested in FROM count about 100 levels, once the limit for running on the
/// caller's stack: planning them overflowed a 2 MiB thread (the in-process server's, an
/// embedder's tokio worker) in a debug build. Found by the property test in
/// `engine/src/query/depth.rs`; now they run on a stack of their own.
#[tokio::test]
async fn subqueries_nested_in_from_below_100_levels_run_on_a_stack_of_their_own() {
    let sql = format!(
        "SELECT * FROM {}d{} WHERE x IS NOT NULL",
        "(SELECT * FROM ".repeat(31),
        ") q".repeat(31)
    );
    let server = TestServer::start().await;
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE d (x BIGINT); INSERT INTO d VALUES (5)")
        .await
        .unwrap();
    assert_eq!(simple_value(&client, &sql).await, "5");
    let row = client.query_one(&sql, &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 5);
    assert_eq!(library_value(&server.db, &sql).await, "5");
    server.stop().await;
}

/// The first cell of a library result, as text.
async fn library_value(db: &Database, sql: &str) -> String {
    let batches = db.sql(sql).await.unwrap_or_else(|e| panic!("{e}"));
    let column = batches[0].column(0);
    let text = tally_engine::reexports::arrow::util::display::array_value_to_string(column, 0)
        .expect("a printable value");
    match text.as_str() {
        "true" => "t".into(),
        "false" => "f".into(),
        _ => text,
    }
}

#[tokio::test]
async fn the_library_api_evaluates_every_shape_or_refuses_it_as_too_deep() {
    let (_dir, db) = temp_db(test_options());
    db.execute("CREATE TABLE d (x BIGINT); INSERT INTO d VALUES (5)")
        .await
        .unwrap();
    for shape in SHAPES {
        let started = Instant::now();
        let ok = query(shape, shape.ok);
        assert_eq!(library_value(&db, &ok).await, shape.value, "{}", shape.name);
        let prepared = db.prepare(&ok).await.unwrap();
        drop(prepared);
        let tx = db.begin();
        tx.execute(&ok).await.unwrap();
        tx.rollback();
        if let Some(n) = shape.too_deep {
            let deep = query(shape, n);
            let err = db.execute(&deep).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::TooDeep, "{}: {err}", shape.name);
            let err = db.prepare(&deep).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::TooDeep, "{}: {err}", shape.name);
            let err = db.begin().execute(&deep).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::TooDeep, "{}: {err}", shape.name);
        }
        assert_eq!(library_value(&db, "SELECT 42").await, "42");
        eprintln!("library {}: {:?}", shape.name, started.elapsed());
    }
}

/// Prints how long the library takes for each shape at a few sizes (not a check: run it with
/// `cargo test --workspace --test e2e pg_depth::measure -- --ignored --nocapture`, sizes from
/// `TALLY_DEPTH_SIZES`, e.g. `100,1000,4000`). docs/sql.md quotes its numbers.
#[tokio::test]
#[ignore]
async fn measure() {
    let (_dir, db) = temp_db(test_options());
    db.execute("CREATE TABLE d (x BIGINT); INSERT INTO d VALUES (5)")
        .await
        .unwrap();
    let sizes: Vec<usize> = std::env::var("TALLY_DEPTH_SIZES")
        .unwrap_or_else(|_| "100,200,400,800".into())
        .split(',')
        .map(|s| s.trim().parse().expect("a size"))
        .collect();
    let only = std::env::var("TALLY_DEPTH_SHAPES").unwrap_or_default();
    for shape in SHAPES {
        if !only.is_empty() && !only.split(',').any(|s| s == shape.name) {
            continue;
        }
        for &n in &sizes {
            let sql = query(shape, n);
            let started = Instant::now();
            let outcome = match db.sql(&sql).await {
                Ok(_) => "ok".to_string(),
                Err(e) => format!("{:?}", e.kind()),
            };
            eprintln!(
                "{:>18} {n:>7}: {outcome:<10} {:>8.3} s",
                shape.name,
                started.elapsed().as_secs_f64()
            );
        }
    }
}
