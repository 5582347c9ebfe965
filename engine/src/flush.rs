//! The flusher: turns a table's hot batches into Parquet segments, in the background when
//! thresholds are crossed, and on demand ([`Database::flush`](crate::Database::flush), close).
//!
//! Order of durability: segment files are written and fsynced first; then one commit registers
//! them and deletes the hot batches they replace. A crash in between leaves files the catalog
//! does not name, which the next open deletes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::catalog::{CATALOG_ENTRY_VERSION, SegmentMeta};
use crate::commit::{Op, Writer};
use crate::error::{Error, Result};
use crate::options::Options;
use crate::snapshot::{Current, TableState};
use crate::storage::segment;

enum Message {
    FlushAll(Reply),
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
        segments_dir: PathBuf,
        options: Options,
        next_segment_id: u64,
    ) -> Result<Flusher> {
        let (tx, rx) = mpsc::channel();
        let worker = Worker {
            current,
            writer,
            segments_dir,
            options,
            next_segment_id: AtomicU64::new(next_segment_id.max(1)),
        };
        let thread = std::thread::Builder::new()
            .name("tally-flush".into())
            .spawn(move || {
                loop {
                    match rx.recv_timeout(worker.options.flush_check_interval) {
                        Ok(Message::FlushAll(reply)) => reply.send(worker.flush_tables(true)),
                        Ok(Message::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                        Err(RecvTimeoutError::Timeout) => {
                            if worker.options.background_flush
                                && let Err(e) = worker.flush_tables(false)
                            {
                                tracing::warn!("background flush failed (will retry): {e}");
                            }
                        }
                    }
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

struct Worker {
    current: Arc<Current>,
    writer: Arc<Writer>,
    segments_dir: PathBuf,
    options: Options,
    next_segment_id: AtomicU64,
}

impl Worker {
    /// Flushes tables whose hot tier crossed a threshold, or every non-empty one if `force`.
    fn flush_tables(&self, force: bool) -> Result<()> {
        let snapshot = self.current.get();
        let mut first_error = None;
        for table in snapshot.tables.values() {
            if table.hot.is_empty() || !(force || self.is_due(table)) {
                continue;
            }
            if let Err(e) = self.flush_table(table) {
                tracing::warn!("flushing table \"{}\" failed: {e}", table.def.name);
                first_error.get_or_insert(e);
            }
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
        let schema = def.arrow_schema();
        let batches: Vec<_> = table.hot.iter().map(|h| h.batch.clone()).collect();
        let flushed: Vec<u64> = table.hot.iter().map(|h| h.seq).collect();
        let parts = segment::partition(def, &schema, &batches)?;
        let dir = segment::table_dir(&self.segments_dir, def.id);
        if !dir.exists() {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            segment::sync_dir(&self.segments_dir)?;
        }
        let mut written: Vec<PathBuf> = Vec::new();
        let result = (|| {
            let mut metas = Vec::with_capacity(parts.len());
            for part in &parts {
                let id = self.next_segment_id.fetch_add(1, Ordering::Relaxed);
                let file_name = segment::file_name(id);
                let path = dir.join(&file_name);
                written.push(path.clone());
                let bytes = segment::write(&path, def, &part.batch, self.options.row_group_rows)?;
                metas.push(SegmentMeta {
                    v: CATALOG_ENTRY_VERSION,
                    id,
                    table_id: def.id,
                    file_name,
                    rows: part.batch.num_rows() as u64,
                    bytes,
                    time_range: part.time_range,
                });
            }
            let rows: u64 = metas.iter().map(|m| m.rows).sum();
            let files = metas.len();
            self.writer.commit_blocking(Op::RegisterSegments {
                table_id: def.id,
                segments: metas,
                flushed,
            })?;
            tracing::info!(
                "flushed {rows} rows of table \"{}\" into {files} segment(s) in {:?}",
                def.name,
                started.elapsed()
            );
            Ok(())
        })();
        if result.is_err() {
            remove_files(&written);
        }
        result
    }
}

fn remove_files(paths: &[PathBuf]) {
    for path in paths {
        remove_quietly(path);
    }
}

fn remove_quietly(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("could not remove {}: {e}", path.display());
    }
}
