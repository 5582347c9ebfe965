//! The events table, its views, COPY writers that keep a ledger of what was acknowledged, and
//! the checks run after every restart.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use futures::SinkExt;
use tokio_postgres::{Client, SimpleQueryMessage};

/// The table every process test writes.
pub const EVENTS_DDL: &str = "CREATE TABLE IF NOT EXISTS events (ts TIMESTAMP NOT NULL, \
    user_id BIGINT, page TEXT, latency_ms DOUBLE PRECISION, batch_id BIGINT NOT NULL) \
    WITH (time_column = 'ts')";

/// Materialized views over `events`: (name, definition, its columns (a view with
/// `approx_count_distinct` also has a sketch column), the query that recomputes those columns,
/// ordered).
pub const VIEWS: [(&str, &str, &str, &str); 2] = [
    (
        "per_page",
        "SELECT page, count(*) AS n, sum(latency_ms) AS total, min(latency_ms) AS fastest, \
         max(latency_ms) AS slowest, avg(latency_ms) AS mean, count(DISTINCT user_id) AS users \
         FROM events GROUP BY page",
        "page, n, total, fastest, slowest, mean, users",
        "SELECT page, count(*), sum(latency_ms), min(latency_ms), max(latency_ms), \
         avg(latency_ms), count(DISTINCT user_id) FROM events GROUP BY page ORDER BY page",
    ),
    (
        "per_hour",
        "SELECT date_trunc('hour', ts) AS hour, count(*) AS n, sum(user_id) AS user_sum, \
         approx_count_distinct(user_id) AS approx_users FROM events GROUP BY 1",
        "hour, n, user_sum, approx_users",
        "SELECT date_trunc('hour', ts), count(*), sum(user_id), approx_count_distinct(user_id) \
         FROM events GROUP BY 1 ORDER BY 1",
    ),
];

/// Creates the table and its views (if missing).
pub async fn create_schema(client: &Client) {
    client
        .batch_execute(EVENTS_DDL)
        .await
        .expect("create events");
    for (name, select, _, _) in VIEWS {
        client
            .batch_execute(&format!(
                "CREATE MATERIALIZED VIEW IF NOT EXISTS {name} AS {select}"
            ))
            .await
            .unwrap_or_else(|e| panic!("create view {name}: {e}"));
    }
}

/// Rows in batch `id` (100 to 499).
pub fn rows_of(id: i64) -> usize {
    100 + (id * 37 % 400) as usize
}

/// Batch `id` as CSV: three days of timestamps, some NULL users and pages, latencies in halves
/// (exact in binary floating point, so sums do not depend on order).
pub fn batch_csv(id: i64) -> Vec<u8> {
    let mut out = String::with_capacity(rows_of(id) * 48);
    for i in 0..rows_of(id) as i64 {
        let second = (id * 7919 + i * 104_729).rem_euclid(3 * 86_400);
        let (day, hour, minute, sec) = (
            1 + second / 86_400,
            second / 3600 % 24,
            second / 60 % 60,
            second % 60,
        );
        let user = if i % 17 == 0 {
            String::new()
        } else {
            ((id * 31 + i) % 1000).to_string()
        };
        let page = if i % 13 == 0 {
            String::new()
        } else {
            format!("/p/{}", i % 50)
        };
        let latency = (i % 100) as f64 * 0.5;
        out.push_str(&format!(
            "2026-01-{day:02} {hour:02}:{minute:02}:{sec:02},{user},{page},{latency},{id}\n"
        ));
    }
    out.into_bytes()
}

/// COPYs one batch; `Ok` only once the server acknowledged it.
pub async fn copy_batch(client: &Client, id: i64) -> Result<u64, tokio_postgres::Error> {
    let sink = client
        .copy_in("COPY events FROM STDIN (FORMAT csv)")
        .await?;
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from(batch_csv(id))).await?;
    sink.finish().await
}

/// COPYs `count` new batches in one COPY, recording them in the ledger.
pub async fn copy_batches(
    client: &Client,
    ledger: &Ledger,
    count: i64,
) -> Result<u64, tokio_postgres::Error> {
    let first = ledger.next.fetch_add(count, Ordering::Relaxed);
    let ids: Vec<i64> = (first..first + count).collect();
    ledger.attempted.lock().unwrap().extend(&ids);
    let sink = client
        .copy_in("COPY events FROM STDIN (FORMAT csv)")
        .await?;
    futures::pin_mut!(sink);
    for id in &ids {
        sink.send(bytes::Bytes::from(batch_csv(*id))).await?;
    }
    let rows = sink.finish().await?;
    ledger.acked.lock().unwrap().extend(&ids);
    Ok(rows)
}

/// Which batches were sent and which were acknowledged, across restarts.
#[derive(Default)]
pub struct Ledger {
    next: AtomicI64,
    attempted: Mutex<BTreeSet<i64>>,
    acked: Mutex<BTreeSet<i64>>,
}

impl Ledger {
    /// Acknowledged batches so far.
    pub fn acked(&self) -> BTreeSet<i64> {
        self.acked.lock().unwrap().clone()
    }

    /// Rows of all acknowledged batches.
    pub fn acked_rows(&self) -> u64 {
        self.acked().iter().map(|id| rows_of(*id) as u64).sum()
    }

    /// Counts a batch that was found whole after a crash as acknowledged from now on: it must
    /// stay, exactly once, through every later restart.
    fn adopt(&self, id: i64) {
        self.acked.lock().unwrap().insert(id);
    }
}

/// COPYs batches until `stop` is set or the server goes away; returns how many were
/// acknowledged. A failure while `stop` is unset and `expect_failure` is false panics.
pub async fn write_until(
    client: Client,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    expect_failure: bool,
) -> usize {
    let mut done = 0;
    while !stop.load(Ordering::Relaxed) {
        let id = ledger.next.fetch_add(1, Ordering::Relaxed);
        ledger.attempted.lock().unwrap().insert(id);
        match copy_batch(&client, id).await {
            Ok(n) => {
                assert_eq!(
                    n,
                    rows_of(id) as u64,
                    "COPY of batch {id} reported {n} rows"
                );
                ledger.acked.lock().unwrap().insert(id);
                done += 1;
            }
            Err(_) if expect_failure || stop.load(Ordering::Relaxed) => break,
            Err(e) => panic!("COPY of batch {id} failed: {e:?}"),
        }
    }
    done
}

/// The rows of a simple query, each as its text fields joined by `|` (NULL as empty).
pub async fn rows(client: &Client, sql: &str) -> Vec<String> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect()
}

/// Every acknowledged batch is present exactly once, every other batch present is whole and was
/// sent, and every view equals its recompute. Batches found whole join the ledger's
/// acknowledged ones.
pub async fn check(client: &Client, ledger: &Ledger) {
    let counts: BTreeMap<i64, usize> = rows(
        client,
        "SELECT batch_id, count(*) FROM events GROUP BY batch_id",
    )
    .await
    .into_iter()
    .map(|line| {
        let (id, n) = line.split_once('|').expect("two columns");
        (id.parse().expect("batch id"), n.parse().expect("count"))
    })
    .collect();
    let acked = ledger.acked();
    for id in &acked {
        assert_eq!(
            counts.get(id).copied(),
            Some(rows_of(*id)),
            "acknowledged batch {id} must be present exactly once"
        );
    }
    let attempted = ledger.attempted.lock().unwrap().clone();
    for (id, n) in &counts {
        assert_eq!(*n, rows_of(*id), "batch {id} is partial or duplicated");
        assert!(attempted.contains(id), "batch {id} was never sent");
        if !acked.contains(id) {
            ledger.adopt(*id);
        }
    }
    check_views(client).await;
}

/// Every view equals the query that recomputes it from the table.
pub async fn check_views(client: &Client) {
    for (name, _, columns, recompute) in VIEWS {
        let columns = rows(client, &format!("SELECT {columns} FROM {name} ORDER BY 1")).await;
        let expected = rows(client, recompute).await;
        assert_eq!(columns.len(), expected.len(), "groups of view {name}");
        for (stored, recomputed) in columns.iter().zip(&expected) {
            assert_eq!(stored, recomputed, "view {name} differs from its recompute");
        }
    }
}
