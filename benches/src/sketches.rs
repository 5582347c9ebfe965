//! `tally-bench sketches`: what percentiles cost the writer. The workload's three views are
//! ingested as they are, and again with p50, p95 and p99 of `latency_ms` added to
//! `page_hourly` (one quantile sketch per group, shared by the three), each configuration
//! `repeat` times into fresh databases (the two alternating); then the bytes per group of `page_hourly` either way,
//! and how long a p95-per-day rollup of it takes.

use std::time::Instant;

use arrow::array::RecordBatch;

use crate::{clickstream, ingest_with, int_rows, median_and_range, median_secs};

/// `page_hourly` with its percentiles.
const PAGE_HOURLY_WITH_PERCENTILES: &str = "SELECT date_trunc('hour', ts) AS hour, page, \
    count(*) AS views, sum(bytes) AS bytes, avg(latency_ms) AS avg_latency, \
    max(latency_ms) AS max_latency, approx_count_distinct(user_id) AS users, \
    approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50, \
    approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95, \
    approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS p99 \
    FROM events GROUP BY 1, 2";

/// The p95 of each page's latency per day, merged from the hourly sketches.
const P95_PER_DAY: &str = "SELECT date_trunc('day', hour) AS day, page, \
    sketch_quantile(quantile_union_agg(p95_sketch), 0.95) AS p95 FROM page_hourly GROUP BY 1, 2";

/// Runs the comparison and prints a markdown table.
pub async fn run(
    rows: usize,
    batch_rows: usize,
    repeat: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    eprintln!("generating {rows} events in batches of {batch_rows} …");
    let batches = clickstream::generate(rows, batch_rows, crate::SEED);
    let mut with_percentiles = clickstream::VIEWS.to_vec();
    with_percentiles[0].1 = PAGE_HOURLY_WITH_PERCENTILES;
    println!("| figure | value |");
    println!("|---|---|");
    println!("| rows | {rows} in batches of {batch_rows}, sync on |");
    let configurations = [
        ("the 3 views", clickstream::VIEWS.to_vec()),
        (
            "the 3 views, `page_hourly` with p50/p95/p99 of `latency_ms`",
            with_percentiles,
        ),
    ];
    // The two configurations alternate, round by round, so that whatever else the machine is
    // doing weighs on both alike; the cost is the median of the rounds' paired ratios.
    let rows_in: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut last = Vec::new();
    for round in 0..repeat {
        for (i, (_, views)) in configurations.iter().enumerate() {
            let dir = tempfile::tempdir()?;
            let (db, secs) = ingest_with(dir.path(), &batches, views).await?;
            rates[i].push(rows_in as f64 / secs);
            if round + 1 == repeat {
                last.push((db, dir));
            } else {
                db.close()?;
            }
        }
    }
    let mut ratios: Vec<f64> = rates[1].iter().zip(&rates[0]).map(|(b, a)| b / a).collect();
    let (ratio, ratio_low, ratio_high) = median_and_range(&mut ratios);
    for (i, ((label, _), (db, dir))) in configurations.iter().zip(last).enumerate() {
        let (rate, low, high) = median_and_range(&mut rates[i]);
        if i == 0 {
            println!(
                "| ingest with {label}, median of {repeat} | {rate:.0} rows/s ({low:.0}–{high:.0}) |"
            );
        } else {
            println!(
                "| ingest with {label}, median of {repeat} | {rate:.0} rows/s ({low:.0}–{high:.0}); {ratio:.2} of the 3 views (median of the rounds' ratios, {ratio_low:.2}–{ratio_high:.2}) |"
            );
        }
        db.compact_views().await?;
        for (name, groups, bytes) in int_rows(
            &db,
            "SELECT name, groups, bytes FROM tally_views WHERE name = 'page_hourly'",
        )
        .await?
        {
            println!(
                "| `{name}` with {label}: groups, bytes per group after compaction | {groups}, {:.0} B |",
                bytes as f64 / groups.max(1) as f64
            );
        }
        if label.contains("p95") {
            let started = Instant::now();
            let days = db.sql(P95_PER_DAY).await?;
            let n: usize = days.iter().map(RecordBatch::num_rows).sum();
            println!(
                "| p95 per (day, page) from the hourly sketches ({n} groups), first run | {:.1} ms |",
                started.elapsed().as_secs_f64() * 1e3
            );
            println!(
                "| same, median of 5 | {:.1} ms |",
                median_secs(5, || async {
                    db.sql(P95_PER_DAY).await.expect("rollup");
                })
                .await
                    * 1e3
            );
        }
        db.close()?;
        drop(dir);
    }
    Ok(())
}
