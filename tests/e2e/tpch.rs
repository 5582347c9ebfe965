//! TPC-H over psql: the published DDL (`tests/tpch/dss.ddl`), a generated scale-0.01 data set
//! loaded with `\copy`, and the 22 queries (`tests/tpch/qN.sql`), whose every row must match
//! what PostgreSQL 15 returned on the same data (`tests/tpch/answers/`, recorded by
//! `tests/tpch/compare_postgres.py`; the generator is deterministic).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::pg::{TestServer, code, psql};

/// The tables in load order, with their row counts at scale factor 0.01.
const TABLES: [(&str, u64); 8] = [
    ("region", 5),
    ("nation", 25),
    ("part", 2000),
    ("supplier", 100),
    ("partsupp", 8000),
    ("customer", 1500),
    ("orders", 15000),
    ("lineitem", 60175),
];

fn tpch_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tpch")
}

/// `tpchgen-cli`: `$TALLY_TPCHGEN`, the virtualenv of `scripts/setup.sh`, or `PATH`; installed
/// into that virtualenv with pip when missing. `None` (the test skips) only if that fails.
fn tpchgen() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TALLY_TPCHGEN") {
        return Some(PathBuf::from(path));
    }
    let venv =
        PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/tally-venv");
    let in_venv = venv.join("bin/tpchgen-cli");
    let runs = |program: &Path| {
        Command::new(program)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if runs(&in_venv) {
        return Some(in_venv);
    }
    if runs(Path::new("tpchgen-cli")) {
        return Some("tpchgen-cli".into());
    }
    let installed = Command::new(venv.join("bin/python"))
        .args([
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "tpchgen-cli",
        ])
        .status()
        .is_ok_and(|s| s.success());
    (installed && runs(&in_venv)).then_some(in_venv)
}

/// Rows of psql's unaligned, tab-separated output (header first).
fn tsv(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|line| line.split('\t').map(str::to_string).collect())
        .collect()
}

/// Numbers equal within rounding (engines give averages different scales); text equal but for
/// the trailing blanks of CHAR(n), which PostgreSQL pads and Tally does not keep.
fn same_field(tally: &str, postgres: &str) -> bool {
    match (tally.parse::<f64>(), postgres.parse::<f64>()) {
        (Ok(a), Ok(b)) => (a - b).abs() <= 1e-4_f64.max(1e-9 * b.abs()),
        _ => tally.trim_end_matches(' ') == postgres.trim_end_matches(' '),
    }
}

/// PostgreSQL names an unaliased call after its function (`sum`), DataFusion after the
/// expression (`sum(lineitem.l_quantity)`); other names must be the same.
fn same_name(tally: &str, postgres: &str) -> bool {
    tally == postgres || (!postgres.contains('(') && tally.starts_with(&format!("{postgres}(")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_loads_and_its_22_queries_return_what_postgres_returns() {
    let Some(generator) = tpchgen() else {
        eprintln!(
            "SKIPPED tpch_loads_and_its_22_queries_return_what_postgres_returns: tpchgen-cli \
             is not installed and pip could not install it (run scripts/setup.sh, or set \
             TALLY_TPCHGEN)"
        );
        return;
    };
    let server = TestServer::start().await;
    let data = server.dir.path().join("tpch");
    let mut command = Command::new(&generator);
    command.args(["csv", "-s", "0.01", "-q", "-o"]).arg(&data);
    let generated = tokio::task::spawn_blocking(move || command.status())
        .await
        .expect("join")
        .expect("run tpchgen-cli");
    assert!(generated.success(), "tpchgen-cli failed: {generated}");

    let ddl = tpch_dir().join("dss.ddl");
    let out = psql(&server, &["-f", ddl.to_str().expect("UTF-8 path")])
        .await
        .unwrap();
    assert_eq!(out, "CREATE TABLE\n".repeat(8));
    let started = Instant::now();
    for (table, rows) in TABLES {
        let copy = format!("\\copy {table} FROM 'tpch/{table}.csv' WITH (FORMAT csv, HEADER)");
        let out = psql(&server, &["-c", &copy]).await.unwrap();
        assert_eq!(out, format!("COPY {rows}\n"), "{table}");
    }
    let load = started.elapsed();

    let mut times = Vec::new();
    for n in 1..=22 {
        let query = tpch_dir().join(format!("q{n}.sql"));
        let started = Instant::now();
        let out = psql(
            &server,
            &[
                "-q",
                "-A",
                "-F",
                "\t",
                "-P",
                "footer=off",
                "-f",
                query.to_str().expect("UTF-8"),
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("q{n}: {e}"));
        times.push(started.elapsed());
        let expected = std::fs::read_to_string(tpch_dir().join(format!("answers/q{n}.tsv")))
            .expect("recorded answer");
        let (got, expected) = (tsv(&out), tsv(&expected));
        assert_eq!(got.len(), expected.len(), "q{n}: rows (with header)\n{out}");
        let (names, expected_names) = (&got[0], &expected[0]);
        assert!(
            names.len() == expected_names.len()
                && names
                    .iter()
                    .zip(expected_names)
                    .all(|(a, b)| same_name(a, b)),
            "q{n}: columns {names:?}, PostgreSQL {expected_names:?}"
        );
        for (i, (row, want)) in got.iter().zip(&expected).enumerate().skip(1) {
            assert!(
                row.len() == want.len() && row.iter().zip(want).all(|(a, b)| same_field(a, b)),
                "q{n} row {i}: {row:?}, PostgreSQL {want:?}"
            );
        }
    }
    let total: Duration = times.iter().sum();
    eprintln!(
        "TPC-H SF 0.01: load {load:.2?}; queries {total:.2?}: {}",
        times
            .iter()
            .enumerate()
            .map(|(i, t)| format!("q{} {:.0}ms", i + 1, t.as_secs_f64() * 1000.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_ddl_is_accepted_and_what_tally_lacks_is_refused_clearly() {
    let server = TestServer::start().await;
    let ddl = tpch_dir().join("dss.ddl");
    psql(&server, &["-f", ddl.to_str().expect("UTF-8 path")])
        .await
        .unwrap();
    let out = psql(&server, &["-A", "-c", "\\d orders"]).await.unwrap();
    for column in [
        "o_orderkey|integer||not null|",
        "o_orderstatus|character(1)||not null|",
        "o_totalprice|numeric(15,2)||not null|",
        "o_orderdate|date||not null|",
        "o_comment|character varying(79)||not null|",
    ] {
        assert!(out.contains(&format!("{column}\n")), "{column}: {out}");
    }

    let client = server.connect().await;
    // dss.ri's keys, in its own (DB2) form and in PostgreSQL's; and inline ones.
    for sql in [
        "ALTER TABLE TPCD.NATION ADD FOREIGN KEY NATION_FK1 (N_REGIONKEY) references TPCD.REGION",
        "ALTER TABLE region ADD PRIMARY KEY (r_regionkey)",
        "ALTER TABLE nation ADD CONSTRAINT nation_fk1 FOREIGN KEY (n_regionkey) REFERENCES region",
        "CREATE TABLE keyed (k INTEGER PRIMARY KEY)",
        "CREATE TABLE keyed (k INTEGER NOT NULL, PRIMARY KEY (k))",
    ] {
        let err = client.batch_execute(sql).await.unwrap_err();
        assert_eq!(code(&err), "0A000", "{sql}: {err:?}");
        let message = err.as_db_error().map(|e| e.message().to_string());
        assert!(
            message
                .as_deref()
                .is_some_and(|m| m.contains("KEY constraints are not supported")),
            "{sql}: {message:?}"
        );
    }
    // The view of Q15's standard text: Tally has no plain views (q15.sql is Variant A).
    let err = client
        .batch_execute(
            "create view revenue0 (supplier_no, total_revenue) as \
             select l_suppkey, sum(l_extendedprice) from lineitem group by l_suppkey",
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), "0A000", "{err:?}");
    // Q1's interval with a leading field precision: kept if the value fits, else refused.
    let out = psql(
        &server,
        &[
            "-A",
            "-t",
            "-c",
            "SELECT date '1998-12-01' - interval '90' day (3)",
        ],
    )
    .await
    .unwrap();
    assert_eq!(out, "1998-09-02\n");
    let err = client
        .batch_execute("SELECT date '1998-12-01' - interval '1000' day (3)")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "22023", "{err:?}");
    server.stop().await;
}
