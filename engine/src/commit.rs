//! The single writer: every change (rows, DDL, segment registration) goes through one thread
//! that turns it into a RocksDB `WriteBatch`, commits it and publishes the next [`Snapshot`].
//!
//! Requests that arrive while a commit is being synced wait in the channel and are committed
//! together in the next `WriteBatch` with one WAL sync (group commit). Each request still
//! succeeds or fails on its own: a request is validated against the working snapshot before
//! any of its writes enter the batch.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use rocksdb::WriteBatch;
use tokio::sync::oneshot;

use crate::batch_ids::{self, BatchIds, Recorded};
use crate::catalog::{self, CATALOG_ENTRY_VERSION, SegmentMeta, TableDef};
use crate::changefeed::{GroupFeed, Hub};
use crate::error::{Error, Result};
use crate::metrics::Recorder;
use crate::snapshot::{Current, HotBatch, Snapshot, TableState, ViewEntry};
use crate::storage::keys::{self, CF_CATALOG, CF_HOT, CF_META, CF_VIEW_PARTS};
use crate::storage::reclaim::{DroppedRange, Reclaimer};
use crate::storage::segment;
use crate::storage::store::Store;
use crate::views::compact::Wake;
use crate::views::part::DeltaPart;
use crate::views::segment::StateSegment;
use crate::views::{self, CompiledView, ViewData, ViewDef, ViewStatus};

mod apply;

/// Delta parts computed by the caller, with the id of the view each belongs to.
pub(crate) type ViewParts = Vec<(u64, DeltaPart)>;

/// Most requests committed in one group.
const MAX_GROUP: usize = 512;

/// A view with this many delta parts wakes the compactor (it also runs on a timer).
const COMPACT_AT_PARTS: usize = 8;

/// Longest an append waits for compaction (see [`Writer::throttle`]).
const MAX_DELAY: Duration = Duration::from_secs(30);

/// The tables an append or a transaction of appends writes to.
fn collect_tables(op: &Op, out: &mut Vec<u64>) {
    match op {
        Op::Append { table_id, .. } => out.push(*table_id),
        Op::Transaction(ops) => ops.iter().for_each(|op| collect_tables(op, out)),
        _ => {}
    }
}

/// A change to commit.
pub(crate) enum Op {
    /// Append rows (already validated, with their IPC encodings) to a table.
    Append {
        /// Table id the rows were validated against.
        table_id: u64,
        /// Table name, for errors.
        table: String,
        /// The batches and their encodings, for the hot tier.
        batches: Vec<(RecordBatch, Vec<u8>)>,
        /// Segment files already written and synced by a bulk ingest, registered in the same
        /// commit.
        segments: Vec<SegmentMeta>,
        /// View delta parts computed by the caller for all rows (a bulk ingest, whose spilled
        /// rows are no longer in `batches`), with the ids of the views they cover. `None`: the
        /// commit thread computes them from `batches`.
        view_deltas: Option<(Vec<u64>, ViewParts)>,
        /// The caller's id for this batch: if a commit of the table already recorded it, this
        /// one writes nothing and reports that commit's rows (see `batch_ids.rs`).
        batch_id: Option<String>,
    },
    /// Appends to one or more tables committed together (a transaction block's INSERTs and
    /// COPYs): every part is an [`Op::Append`], and all of them succeed or none is written.
    Transaction(Vec<Op>),
    /// Create a table (its `id` is assigned here).
    CreateTable {
        /// The definition.
        def: TableDef,
        /// Succeed without change if the name exists.
        if_not_exists: bool,
    },
    /// Drop tables and all their data (all or none).
    DropTables {
        /// Table names.
        names: Vec<String>,
        /// Skip names that do not exist.
        if_exists: bool,
        /// Drop the views over them too (otherwise such views make the drop fail).
        cascade: bool,
    },
    /// Create a materialized view (its id is assigned here); it starts backfilling.
    CreateView {
        /// The compiled view (its `def.id` is replaced).
        view: Box<CompiledView>,
        /// Succeed without change if the name exists.
        if_not_exists: bool,
    },
    /// Add a chunk of backfill to a view, as a delta part.
    Backfill {
        /// The view.
        view_id: u64,
        /// The partial states of the chunk's rows.
        part: Box<DeltaPart>,
    },
    /// Replace delta parts and state segments of a view by one segment that merges them (its
    /// file already written and synced by the compactor).
    CompactView {
        /// The view.
        view_id: u64,
        /// The new segment.
        segment: Arc<StateSegment>,
        /// Ids of the segments it replaces.
        segments: Vec<u64>,
        /// Ids of the delta parts it replaces.
        parts: Vec<u64>,
    },
    /// Mark a backfilled view ready.
    ViewReady {
        /// The view.
        view_id: u64,
    },
    /// Drop materialized views and their states (all or none).
    DropViews {
        /// View names.
        names: Vec<String>,
        /// Skip names that do not exist.
        if_exists: bool,
    },
    /// Change a table's retention period (`None`: keep rows forever).
    SetRetention {
        /// Table name.
        table: String,
        /// Seconds.
        seconds: Option<u64>,
    },
    /// Remove segments that aged out of a table's retention from the catalog (their files are
    /// deleted once no snapshot reads them; ids no longer present are skipped).
    DropSegments {
        /// The table.
        table_id: u64,
        /// The segments.
        segment_ids: Vec<u64>,
    },
    /// Register flushed segments and delete the hot batches they hold.
    RegisterSegments {
        /// The table.
        table_id: u64,
        /// The new segments (files already written and synced).
        segments: Vec<SegmentMeta>,
        /// Sequence numbers of the hot batches the segments replace.
        flushed: Vec<u64>,
    },
}

/// What a committed [`Op`] did.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Rows appended.
    Appended {
        /// Rows written (for a duplicate batch id, the rows its first commit wrote).
        rows: u64,
        /// The batch id was already recorded: nothing was written.
        duplicate: bool,
    },
    /// Table created, or it existed and IF NOT EXISTS was given.
    Created,
    /// Tables dropped (those that did not exist skipped under IF EXISTS).
    Dropped,
    /// Segments registered.
    Registered,
    /// A table's definition changed.
    Altered,
    /// Segments removed from the catalog (their files still exist).
    SegmentsDropped(Vec<Arc<SegmentMeta>>),
    /// View created (`None`: it existed and IF NOT EXISTS was given). The snapshot is the one
    /// this commit published: the rows to backfill are exactly the rows it holds.
    ViewCreated(Option<(u64, Arc<Snapshot>)>),
    /// View states merged, view marked ready, or views dropped.
    ViewChanged,
    /// A compaction was swapped in (`false`: its view was dropped meanwhile).
    Compacted(bool),
}

struct Request {
    op: Op,
    reply: Reply,
    /// When the request was sent, for the commit latency.
    queued: Instant,
}

/// Where a commit result goes: an async waiter or a blocked thread.
enum Reply {
    Async(oneshot::Sender<Result<Outcome>>),
    Blocking(mpsc::SyncSender<Result<Outcome>>),
}

impl Reply {
    fn send(self, result: Result<Outcome>) {
        let _ = match self {
            Reply::Async(tx) => tx.send(result).map_err(|_| ()),
            Reply::Blocking(tx) => tx.send(result).map_err(|_| ()),
        };
    }
}

enum Message {
    Commit(Request),
    Shutdown,
}

/// Handle to the commit thread; cheap to share.
#[derive(Debug)]
pub(crate) struct Writer {
    tx: Mutex<Sender<Message>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// For backpressure: the latest snapshot, the compactor, and the parts limit.
    current: Arc<Current>,
    compaction: Arc<Wake>,
    view_parts_to_delay: usize,
}

/// What the commit thread starts from (state loaded at open, shared handles).
pub(crate) struct WriterSetup {
    pub store: Arc<Store>,
    pub current: Arc<Current>,
    pub segments_dir: PathBuf,
    /// Sync the WAL for row commits.
    pub sync: bool,
    pub next_table_id: u64,
    pub reclaimer: Arc<Reclaimer>,
    /// Batch ids recorded within the window.
    pub batch_ids: BatchIds,
    pub metrics: Arc<Recorder>,
    /// Receives each group's changed view groups when someone subscribes.
    pub changefeed: Arc<Hub>,
    /// Id of the next delta part (one more than the largest stored).
    pub next_part_id: u64,
    /// Woken when a view's delta parts pile up.
    pub compaction: Arc<Wake>,
    /// Where views' state segments live (`DATA/views`).
    pub views_dir: PathBuf,
    /// Appends wait while a view of their table has this many delta parts.
    pub view_parts_to_delay: usize,
}

impl Writer {
    /// Starts the commit thread.
    pub(crate) fn start(setup: WriterSetup) -> Result<Writer> {
        let WriterSetup {
            store,
            current,
            segments_dir,
            sync,
            next_table_id,
            reclaimer,
            batch_ids,
            metrics,
            changefeed,
            next_part_id,
            compaction,
            views_dir,
            view_parts_to_delay,
        } = setup;
        let (tx, rx) = mpsc::channel();
        let writer_current = Arc::clone(&current);
        let writer_compaction = Arc::clone(&compaction);
        let committer = Committer {
            batch_ids,
            store,
            reclaimer,
            current,
            segments_dir,
            sync,
            next_table_id,
            group_next_segment: 0,
            metrics,
            changefeed,
            feed: GroupFeed::default(),
            next_part_id: next_part_id.max(1),
            compaction,
            views_dir,
        };
        let thread = std::thread::Builder::new()
            .name("tally-commit".into())
            // View maintenance evaluates the views' expressions here.
            .stack_size(crate::query::depth::THREAD_STACK)
            .spawn(move || committer.run(rx))
            .map_err(|e| Error::io("starting the commit thread", e))?;
        Ok(Writer {
            tx: Mutex::new(tx),
            thread: Mutex::new(Some(thread)),
            current: writer_current,
            compaction: writer_compaction,
            view_parts_to_delay,
        })
    }

    /// Backpressure: while a view of a table that `op` appends to has
    /// `view_parts_to_delay` delta parts or more, wakes the compactor and waits (at most
    /// [`MAX_DELAY`], then commits anyway: a stalled compactor slows ingest, never fails it).
    async fn throttle(&self, op: &Op) {
        let mut tables = Vec::new();
        collect_tables(op, &mut tables);
        if tables.is_empty() {
            return;
        }
        let started = Instant::now();
        let mut warned = false;
        loop {
            let snapshot = self.current.get();
            let piled = tables.iter().any(|t| {
                snapshot
                    .views_of(*t)
                    .any(|v| v.data.parts.len() >= self.view_parts_to_delay)
            });
            drop(snapshot);
            if !piled || started.elapsed() >= MAX_DELAY {
                return;
            }
            if !warned && started.elapsed() >= Duration::from_secs(1) {
                tracing::info!("ingest waits for view compaction to catch up");
                warned = true;
            }
            self.compaction.notify();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn send(&self, message: Message) -> Result<()> {
        self.tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(message)
            .map_err(|_| Error::Closed)
    }

    /// Commits `op` and waits for it to be durable and visible (an append first waits while
    /// its views' compaction is far behind).
    pub(crate) async fn commit(&self, op: Op) -> Result<Outcome> {
        self.throttle(&op).await;
        let (reply, rx) = oneshot::channel();
        self.send(Message::Commit(Request {
            op,
            reply: Reply::Async(reply),
            queued: Instant::now(),
        }))?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// [`Writer::commit`] for threads outside the async runtime.
    pub(crate) fn commit_blocking(&self, op: Op) -> Result<Outcome> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.send(Message::Commit(Request {
            op,
            reply: Reply::Blocking(reply),
            queued: Instant::now(),
        }))?;
        rx.recv().map_err(|_| Error::Closed)?
    }

    /// Commits what is queued, then stops the thread. Later commits fail with [`Error::Closed`].
    pub(crate) fn shutdown(&self) {
        let _ = self.send(Message::Shutdown);
        if let Some(handle) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = handle.join();
        }
    }
}

struct Committer {
    store: Arc<Store>,
    /// Compacts away the key ranges of dropped tables and views after their commit.
    reclaimer: Arc<Reclaimer>,
    current: Arc<Current>,
    segments_dir: PathBuf,
    sync: bool,
    next_table_id: u64,
    /// The segment-id counter as written by earlier appends of the group being committed.
    group_next_segment: u64,
    /// Batch ids recorded by recent commits (for idempotent retries).
    batch_ids: BatchIds,
    metrics: Arc<Recorder>,
    changefeed: Arc<Hub>,
    /// The changefeed's view of the group being committed (keys of followed views).
    feed: GroupFeed,
    /// Id of the next delta part.
    next_part_id: u64,
    /// Woken when a view's delta parts pile up.
    compaction: Arc<Wake>,
    /// Where views' state segments live.
    views_dir: PathBuf,
}

impl Committer {
    fn run(mut self, rx: Receiver<Message>) {
        let mut shutting_down = false;
        while !shutting_down {
            let mut group = Vec::new();
            match rx.recv() {
                Ok(Message::Commit(req)) => group.push(req),
                Ok(Message::Shutdown) | Err(_) => break,
            }
            // A view's backfill reads the snapshot its CreateView publishes; a later append in
            // the same group would be in that snapshot and also send deltas, so CreateView ends
            // its group.
            let ends_group = |req: &Request| matches!(req.op, Op::CreateView { .. });
            while group.len() < MAX_GROUP && !group.last().is_some_and(ends_group) {
                match rx.try_recv() {
                    Ok(Message::Commit(req)) => group.push(req),
                    Ok(Message::Shutdown) => {
                        shutting_down = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group);
        }
    }

    fn commit_group(&mut self, group: Vec<Request>) {
        let mut working = (*self.current.get()).clone();
        let mut batch = WriteBatch::default();
        self.group_next_segment = 0;
        self.feed = self.changefeed.begin_group();
        let mut results: Vec<Result<Outcome>> = Vec::with_capacity(group.len());
        let mut dropped = Dropped::default();
        let mut needs_sync = self.sync;
        for req in &group {
            if !matches!(req.op, Op::Append { .. } | Op::Transaction(_)) {
                // Catalog changes are rare and must never be lost once reported.
                needs_sync = true;
            }
            let result = self.apply(&req.op, &mut working, &mut batch, &mut dropped);
            results.push(result);
        }
        let now_ms = batch_ids::now_ms();
        if !batch.is_empty() {
            self.batch_ids.expire(&self.store, &mut batch, now_ms);
        }
        let write = if batch.is_empty() {
            Ok(())
        } else {
            self.store.write(batch, needs_sync)
        };
        match write {
            Ok(()) => {
                self.batch_ids.committed(now_ms);
                for table_id in &dropped.tables {
                    self.batch_ids.forget_table(*table_id);
                }
                let published = self.current.set(working);
                if !dropped.ranges.is_empty() {
                    self.feed.note_drop();
                }
                self.changefeed
                    .group_published(std::mem::take(&mut self.feed), Some(&published));
                for result in results.iter_mut() {
                    if let Ok(Outcome::ViewCreated(Some((_, snapshot)))) = result {
                        *snapshot = Arc::clone(&published);
                    }
                }
                self.reclaimer.reclaim(dropped.ranges);
                for dir in dropped.dirs {
                    if let Err(e) = std::fs::remove_dir_all(&dir)
                        && e.kind() != std::io::ErrorKind::NotFound
                    {
                        tracing::warn!("could not remove {}: {e}", dir.display());
                    }
                }
                self.metrics.group_committed();
                for (req, result) in group.into_iter().zip(results) {
                    self.metrics.committed(&req.op, &result, req.queued);
                    req.reply.send(result);
                }
            }
            Err(e) => {
                self.changefeed
                    .group_published(std::mem::take(&mut self.feed), None);
                self.batch_ids.abandoned();
                tracing::error!("commit failed: {e}");
                self.metrics.group_failed(group.len());
                let message = e.to_string();
                for (req, result) in group.into_iter().zip(results) {
                    let failed = result.and_then(|_| {
                        Err(Error::Io {
                            context: "committing".into(),
                            source: std::io::Error::other(message.clone()),
                        })
                    });
                    req.reply.send(failed);
                }
            }
        }
    }
}

/// What the DROPs of a commit group leave to clean up once the group is written: segment
/// directories to delete and key ranges to compact away.
#[derive(Default)]
struct Dropped {
    /// Ids of the dropped tables.
    tables: Vec<u64>,
    dirs: Vec<PathBuf>,
    ranges: Vec<DroppedRange>,
}

impl Dropped {
    /// Deletes `[from, to)` of `cf` in `batch`, and remembers the range for the reclaimer.
    fn delete_range(
        &mut self,
        store: &Store,
        batch: &mut WriteBatch,
        cf: &'static str,
        from: impl AsRef<[u8]>,
        to: impl AsRef<[u8]>,
    ) {
        let (from, to) = (from.as_ref().to_vec(), to.as_ref().to_vec());
        batch.delete_range_cf(store.cf(cf), &from, &to);
        self.ranges.push(DroppedRange { cf, from, to });
    }
}
