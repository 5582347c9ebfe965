//! kill -9 at random moments while four clients COPY into a table with views and the server
//! flushes its hot rows to Parquet: after every restart each acknowledged COPY is present
//! exactly once, every other one whole or absent, and every view equals its recompute.
//!
//! 20 cycles by default; `TALLY_CRASH_CYCLES=200` for the long run. `TALLY_CRASH_SEED` repeats
//! the kill moments of an earlier run (the seed is printed).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::harness::Tally;
use crate::workload::{self, Ledger};

/// Flush after a few COPYs, and by age, so that kills land inside flushes too.
const CONFIG: &str = "[storage]\nflush_rows = 4000\nflush_age_seconds = 1\n";

/// A small xorshift generator: reproducible from its seed, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_and_duplicates_nothing() {
    let cycles = env_number("TALLY_CRASH_CYCLES").unwrap_or(20);
    let seed = env_number("TALLY_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1
    });
    eprintln!("crash loop: {cycles} cycles, TALLY_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ledger = Arc::new(Ledger::default());
    let started = Instant::now();

    for cycle in 0..cycles {
        let mut server = Tally::start(&data, CONFIG).await;
        let client = server.client().await;
        if cycle == 0 {
            workload::create_schema(&client).await;
        }
        workload::check(&client, &ledger).await;

        let before = ledger.acked().len();
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for _ in 0..4 {
            writers.push(tokio::spawn(workload::write_until(
                server.client().await,
                Arc::clone(&ledger),
                Arc::clone(&stop),
                true,
            )));
        }
        // A reader too, so that queries are in flight when the kill comes.
        let reader = server.client().await;
        let reads = tokio::spawn(async move {
            while reader.simple_query("SELECT * FROM per_hour").await.is_ok() {}
        });
        let delay = Duration::from_millis(100 + rng.below(900));
        tokio::time::sleep(delay).await;
        server.kill_9();
        for writer in writers {
            writer.await.expect("writer task");
        }
        reads.await.expect("reader task");
        eprintln!(
            "cycle {cycle}: killed after {delay:?}, {} COPYs acknowledged in the cycle",
            ledger.acked().len() - before
        );
    }

    let server = Tally::start(&data, CONFIG).await;
    let client = server.client().await;
    workload::check(&client, &ledger).await;
    let stored = workload::rows(&client, "SELECT count(*) FROM events").await;
    eprintln!(
        "crash loop: {cycles} kills in {:?}; {} batches acknowledged, {} rows stored",
        started.elapsed(),
        ledger.acked().len(),
        stored[0]
    );
    assert!(
        ledger.acked().len() as u64 >= cycles,
        "too few COPYs were acknowledged to test anything"
    );
    server.stop().await;
}
