//! The flusher: turns a table's hot batches into Parquet segments, in the background when
//! thresholds are crossed, and on demand ([`Database::flush`](crate::Database::flush), close).
//!
//! Order of durability: segment files are written and fsynced first; then one commit registers
//! them and deletes the hot batches they replace. A crash in between leaves files the catalog
//! does not name, which the next open deletes.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::commit::{Op, Outcome, Writer};
use crate::error::{Error, Result};
use crate::metrics::Recorder;
use crate::options::Options;
use crate::retention::{self, Graveyard, RetentionReport};
use crate::snapshot::{Current, TableState};
use crate::storage::segment;
use crate::storage::store::Store;

enum Message {
    FlushAll(Reply),
    /// Apply every table's retention now.
    Retain(oneshot::Sender<Result<RetentionReport>>),
    Shutdown,
}

/// Where a flush result goes: an async waiter or a blocked thread (close runs outside async).
enum Reply {
    Async(oneshot::Sender<Result<()>>),
    Blocking(mpsc::SyncSender<Result<()>>),
}

impl Reply {
    fn send(self, result: Result<()>) {
        let _ = match self {
            Reply::Async(tx) => tx.send(result).map_err(|_| ()),
            Reply::Blocking(tx) => tx.send(result).map_err(|_| ()),
        };
    }
}

/// Handle to the flusher thread.
pub(crate) struct Flusher {
    tx: Mutex<Sender<Message>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Flusher {
    /// Starts the flusher thread.
    pub(crate) fn start(
        current: Arc<Current>,
        writer: Arc<Writer>,
        store: Arc<Store>,
        segments_dir: PathBuf,
        options: Options,
        segment_ids: Arc<AtomicU64>,
        metrics: Arc<Recorder>,
    ) -> Result<Flusher> {
        let (tx, rx) = mpsc::channel();
        let mut worker = Worker {
            current,
            writer,
            store,
            segments_dir,
            options,
            segment_ids,
            metrics,
            graveyard: Graveyard::default(),
        };
        let thread = std::thread::Builder::new()
            .name("tally-flush".into())
            .spawn(move || {
                let mut backoff = Backoff::new(worker.options.flush_check_interval);
                let mut retained = Instant::now();
                loop {
                    match rx.recv_timeout(worker.options.flush_check_interval) {
                        Ok(Message::FlushAll(reply)) => reply.send(worker.flush_tables(true)),
                        Ok(Message::Retain(reply)) => {
                            let _ = reply.send(worker.apply_retention());
                        }
                        Ok(Message::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                        Err(RecvTimeoutError::Timeout) => {
                            worker.graveyard.sweep();
                            if !worker.options.background_flush || !backoff.due() {
                                continue;
                            }
                            if retained.elapsed() >= worker.options.retention_check_interval {
                                retained = Instant::now();
                                if let Err(e) = worker.apply_retention() {
                                    tracing::warn!("applying retention failed: {e}");
                                }
                            }
                            match worker.flush_tables(false) {
                                Ok(()) => backoff.succeeded(),
                                Err(e) => {
                                    let wait = backoff.failed();
                                    tracing::warn!(
                                        "background flush failed (next attempt in {wait:?}): {e}"
                                    );
                                }
                            }
                        }
                    }
                }
                worker.graveyard.sweep();
                if worker.graveyard.len() > 0 {
                    tracing::info!(
                        "{} expired segment file(s) still read at close; the next open deletes them",
                        worker.graveyard.len()
                    );
                }
            })
            .map_err(|e| Error::io("starting the flush thread", e))?;
        Ok(Flusher {
            tx: Mutex::new(tx),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Flushes every table's hot tier now and waits until the segments are registered.
    pub(crate) async fn flush_all(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.send(Message::FlushAll(Reply::Async(reply)))?;
        rx.await.map_err(|_| Error::Closed)?
    }

    fn send(&self, message: Message) -> Result<()> {
        self.tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(message)
            .map_err(|_| Error::Closed)
    }

    /// Applies every table's retention now (see `retention.rs`) and reports what it removed.
    pub(crate) async fn apply_retention(&self) -> Result<RetentionReport> {
        let (reply, rx) = oneshot::channel();
        self.send(Message::Retain(reply))?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// [`Flusher::flush_all`] for threads outside the async runtime.
    pub(crate) fn flush_all_blocking(&self) -> Result<()> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.send(Message::FlushAll(Reply::Blocking(reply)))?;
        rx.recv().map_err(|_| Error::Closed)?
    }

    /// Stops the thread (without flushing: call [`Flusher::flush_all_blocking`] first).
    pub(crate) fn shutdown(&self) {
        let _ = self.send(Message::Shutdown);
        if let Some(handle) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = handle.join();
        }
    }
}

/// Spaces out background flushes after failures (a full disk fails every attempt): the wait
/// doubles from the check interval up to [`Backoff::MAX`], and resets after a success.
struct Backoff {
    base: Duration,
    wait: Duration,
    next: Instant,
}

impl Backoff {
    const MAX: Duration = Duration::from_secs(30);

    fn new(base: Duration) -> Backoff {
        Backoff {
            base,
            wait: Duration::ZERO,
            next: Instant::now(),
        }
    }

    /// Whether an attempt may run now.
    fn due(&self) -> bool {
        Instant::now() >= self.next
    }

    fn succeeded(&mut self) {
        self.wait = Duration::ZERO;
    }

    /// Records a failure; returns how long until the next attempt.
    fn failed(&mut self) -> Duration {
        self.wait = (self.wait * 2).max(self.base).min(Self::MAX);
        self.next = Instant::now() + self.wait;
        self.wait
    }
}

struct Worker {
    current: Arc<Current>,
    writer: Arc<Writer>,
    /// To release the write-ahead log of rows moved to Parquet.
    store: Arc<Store>,
    segments_dir: PathBuf,
    options: Options,
    segment_ids: Arc<AtomicU64>,
    metrics: Arc<Recorder>,
    /// Files of segments that aged out, deleted once no snapshot reads them.
    graveyard: Graveyard,
}

impl Worker {
    /// Removes the segments older than each table's retention (flushing hot rows that are
    /// older first), hands their files to the graveyard and deletes those no longer read.
    fn apply_retention(&mut self) -> Result<RetentionReport> {
        let now = retention::now_micros();
        let mut report = RetentionReport::default();
        let snapshot = self.current.get();
        for table in snapshot.tables.values() {
            let Some(expired) = retention::expired(table, now)? else {
                continue;
            };
            let mut ids = expired.segments;
            if expired.hot_rows {
                self.flush_table(table)?;
                let flushed = self.current.get();
                ids = match flushed.table_by_id(table.def.id) {
                    Some(t) => retention::expired(t, now)?
                        .map(|e| e.segments)
                        .unwrap_or_default(),
                    None => vec![],
                };
            }
            if ids.is_empty() {
                continue;
            }
            let outcome = self.writer.commit_blocking(Op::DropSegments {
                table_id: table.def.id,
                segment_ids: ids,
            })?;
            let Outcome::SegmentsDropped(gone) = outcome else {
                continue;
            };
            let dir = segment::table_dir(&self.segments_dir, table.def.id);
            let (rows, bytes): (u64, u64) = gone
                .iter()
                .fold((0, 0), |(r, b), s| (r + s.rows, b + s.bytes));
            tracing::info!(
                "retention ({}) removed {} segment(s), {rows} rows, {bytes} bytes of table \"{}\"",
                retention::format_period(table.def.retention_seconds.unwrap_or_default()),
                gone.len(),
                table.def.name
            );
            report.segments += gone.len() as u64;
            report.rows += rows;
            report.bytes += bytes;
            self.graveyard.bury(gone.into_iter().map(|s| {
                let path = dir.join(&s.file_name);
                (s, path)
            }));
        }
        drop(snapshot);
        self.graveyard.sweep();
        Ok(report)
    }

    /// Flushes tables whose hot tier crossed a threshold, or every non-empty one if `force`.
    fn flush_tables(&self, force: bool) -> Result<()> {
        let snapshot = self.current.get();
        let mut first_error = None;
        let mut flushed = false;
        for table in snapshot.tables.values() {
            if table.hot.is_empty() || !(force || self.is_due(table)) {
                continue;
            }
            match self.flush_table(table) {
                Ok(()) => flushed = true,
                Err(e) => {
                    tracing::warn!("flushing table \"{}\" failed: {e}", table.def.name);
                    self.metrics.flush_failed();
                    first_error.get_or_insert(e);
                }
            }
        }
        if flushed {
            self.store.release_wal();
        }
        first_error.map_or(Ok(()), Err)
    }

    fn is_due(&self, table: &TableState) -> bool {
        let oldest = table
            .hot
            .first()
            .map(|h| h.since.elapsed())
            .unwrap_or_default();
        table.hot_rows() >= self.options.flush_rows
            || table.hot_bytes() >= self.options.flush_bytes
            || table.hot.len() >= self.options.flush_batches
            || oldest >= self.options.flush_age
    }

    fn flush_table(&self, table: &TableState) -> Result<()> {
        let started = Instant::now();
        let def = &table.def;
        let batches: Vec<_> = table.hot.iter().map(|h| h.batch.clone()).collect();
        let flushed: Vec<u64> = table.hot.iter().map(|h| h.seq).collect();
        let written = segment::write_segments(
            &self.segments_dir,
            def,
            &batches,
            &self.segment_ids,
            self.options.row_group_rows,
        )?;
        let rows: u64 = written.iter().map(|w| w.meta.rows).sum();
        let files = written.len();
        let segments = written.iter().map(|w| w.meta.clone()).collect();
        if let Err(e) = self.writer.commit_blocking(Op::RegisterSegments {
            table_id: def.id,
            segments,
            flushed,
        }) {
            segment::remove_written(&written);
            if self.current.get().table_by_id(def.id).is_none() {
                // Dropped while its rows were being written: nothing is left to flush.
                tracing::debug!("table \"{}\" was dropped during its flush", def.name);
                return Ok(());
            }
            return Err(e);
        }
        self.metrics
            .flushed(rows, written.iter().map(|w| w.meta.bytes).sum());
        tracing::info!(
            "flushed {rows} rows of table \"{}\" into {files} segment(s) in {:?}",
            def.name,
            started.elapsed()
        );
        Ok(())
    }
}

#[cfg(test)]
mod backoff_tests {
    use super::*;

    #[test]
    fn failed_flushes_wait_longer_each_time_up_to_the_cap_and_reset_on_success() {
        let mut backoff = Backoff::new(Duration::from_millis(500));
        assert!(backoff.due());
        let waits: Vec<Duration> = (0..9).map(|_| backoff.failed()).collect();
        assert_eq!(waits[0], Duration::from_millis(500));
        assert_eq!(waits[1], Duration::from_secs(1));
        assert_eq!(waits[2], Duration::from_secs(2));
        assert_eq!(*waits.last().unwrap(), Backoff::MAX);
        assert!(!backoff.due(), "the next attempt waits");
        backoff.succeeded();
        assert_eq!(backoff.failed(), Duration::from_millis(500));
    }
}
