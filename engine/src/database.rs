//! [`Database`]: opening a data directory, the public read and write API, and closing.

use std::collections::{HashMap, HashSet};
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::batch_ids::BatchIds;
use crate::bulk::{BulkIngest, BulkTarget, Receipt};
use crate::catalog::{self, CATALOG_ENTRY_VERSION, SegmentMeta, TableDef};
use crate::changefeed::{Hub, Subscription};
use crate::commit::{Op, Outcome, Writer, WriterSetup};
use crate::error::{Error, Result};
use crate::flush::Flusher;
use crate::metrics::{Metrics, Recorder};
use crate::options::Options;
use crate::query::ddl::Ddl;
use crate::query::{QueryEngine, StatementResult};
use crate::snapshot::{Current, HotBatch, Snapshot, TableState};
use crate::storage::reclaim::Reclaimer;
use crate::storage::store::Store;
use crate::storage::{self, keys};
use crate::transaction::{AppendTarget, Transaction};
use crate::views::compact::{Compactor, CompactorSetup, Wake};
use crate::views::{self, ViewDef, ViewStatus};
use crate::{ingest, storage::hot};

mod statements;

pub use statements::Prepared;

/// An open Tally database. Cheap to clone; every clone shares the same engine, and it is safe
/// to use from many tasks at once.
///
/// ```no_run
/// # async fn demo() -> tally_engine::Result<()> {
/// use tally_engine::{Database, Options};
/// let db = Database::open("./data", Options::default())?;
/// db.sql("CREATE TABLE IF NOT EXISTS t (ts TIMESTAMP NOT NULL, n BIGINT)").await?;
/// db.sql("INSERT INTO t VALUES ('2026-01-01 00:00:00', 1)").await?;
/// let batches = db.sql("SELECT count(*) FROM t").await?;
/// db.close()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    current: Arc<Current>,
    writer: Arc<Writer>,
    flusher: Flusher,
    /// Merges views' delta parts into state segments; stopped at close before the writer.
    compactor: Compactor,
    /// Compacts away what DROP deleted; stopped at close before RocksDB is.
    reclaimer: Arc<Reclaimer>,
    engine: QueryEngine,
    segments_dir: PathBuf,
    /// Allocator of segment ids, shared by the flusher and bulk ingests.
    segment_ids: Arc<AtomicU64>,
    options: Options,
    flush_on_close: bool,
    /// Held until close: the RocksDB handle and the directory lock.
    resources: Mutex<Option<(Arc<Store>, File)>>,
    /// Counters of commits, flushes and backfills ([`Database::metrics`]).
    metrics: Arc<Recorder>,
    /// The view changefeed ([`Database::subscribe`]).
    changefeed: Arc<Hub>,
}

impl Database {
    /// Opens the data directory at `path`, creating it if needed.
    ///
    /// Fails with [`Error::Locked`] if another process has it open, and with
    /// [`Error::FormatTooNew`] if a newer Tally wrote it. Parquet files that the catalog does not
    /// name (left by a crash during a flush) are deleted.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Database> {
        let started = Instant::now();
        let dir = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating data directory {}", dir.display()), e))?;
        // Segment paths reach DataFusion's object store, which resolves them from the root.
        let dir = dir
            .canonicalize()
            .map_err(|e| Error::io(format!("resolving data directory {}", dir.display()), e))?;
        let lock = lock_directory(&dir)?;
        let store = Arc::new(Store::open(&dir.join("rocksdb"))?);
        if store.check_format_version(&dir)? == Some(1) {
            views::load::upgrade_from_v1(&store)?;
        }
        let segments_dir = dir.join("segments");
        let views_dir = dir.join("views");
        for sub in [&segments_dir, &views_dir] {
            std::fs::create_dir_all(sub)
                .map_err(|e| Error::io(format!("creating {}", sub.display()), e))?;
        }

        let engine = QueryEngine::new(&options, segments_dir.clone())?;
        let mut snapshot = load_snapshot(&store)?;
        let loaded = views::load::load_views(&store, &engine, &mut snapshot, &views_dir)?;
        let removed = remove_orphans(&segments_dir, &snapshot)?
            + views::load::remove_orphans(&views_dir, &snapshot)?;
        if removed > 0 {
            tracing::info!(
                "removed {removed} orphaned segment file(s) from {}",
                dir.display()
            );
        }
        let next_table_id = store.meta_u64(keys::META_NEXT_TABLE_ID)?;
        let segment_ids = Arc::new(AtomicU64::new(
            store.meta_u64(keys::META_NEXT_SEGMENT_ID)?.max(1),
        ));
        let current = Arc::new(Current::new(snapshot));
        let reclaimer = Arc::new(Reclaimer::start(Arc::clone(&store))?);
        let metrics = Arc::new(Recorder::default());
        let changefeed = Hub::start(options.changefeed_ring_commits, options.changefeed_linger)?;
        let wake = Arc::new(Wake::default());
        let writer = Arc::new(Writer::start(WriterSetup {
            store: Arc::clone(&store),
            current: Arc::clone(&current),
            segments_dir: segments_dir.clone(),
            sync: options.sync,
            next_table_id,
            reclaimer: Arc::clone(&reclaimer),
            batch_ids: BatchIds::load(&store, options.batch_id_window)?,
            metrics: Arc::clone(&metrics),
            changefeed: Arc::clone(&changefeed),
            next_part_id: loaded.next_part_id,
            compaction: Arc::clone(&wake),
            views_dir: views_dir.clone(),
            view_parts_to_delay: options.view_parts_to_delay.max(1),
        })?);
        let compactor = Compactor::start(
            CompactorSetup {
                current: Arc::clone(&current),
                writer: Arc::clone(&writer),
                views_dir,
                segment_ids: Arc::clone(&segment_ids),
                interval: options.compaction_interval,
                background: options.background_flush,
            },
            wake,
        )?;
        let flusher = Flusher::start(
            Arc::clone(&current),
            Arc::clone(&writer),
            Arc::clone(&store),
            segments_dir.clone(),
            options.clone(),
            Arc::clone(&segment_ids),
            Arc::clone(&metrics),
        )?;
        let db = Database {
            inner: Arc::new(Inner {
                dir,
                current,
                writer,
                flusher,
                compactor,
                reclaimer,
                engine,
                segments_dir,
                segment_ids,
                options: options.clone(),
                flush_on_close: options.flush_on_close,
                resources: Mutex::new(Some((store, lock))),
                metrics,
                changefeed,
            }),
        };
        for view_id in loaded.unfinished {
            // A backfill interrupted by a crash starts over: its partial states were deleted
            // at load, and the rows it must cover are all rows committed so far.
            let db2 = db.clone();
            run_on_own_runtime(async move { db2.backfill(view_id).await })?;
        }
        tracing::info!(
            "opened {} in {:?}",
            db.inner.dir.display(),
            started.elapsed()
        );
        Ok(db)
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// What this database has done since it was opened (commits, ingested rows and bytes,
    /// commit latency, flushes, backfills) and what it holds now (hot tier, segments, views
    /// still backfilling, RocksDB's memtables and compactions). Cheap enough to call on every
    /// monitoring scrape; after [`Database::close`], [`Metrics::rocksdb`] is `None`.
    pub fn metrics(&self) -> Metrics {
        let snapshot = self.inner.current.get();
        // Read under the lock: close takes the store from it, and must not find a reader still
        // holding RocksDB open when it releases the directory.
        let resources = self
            .inner
            .resources
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let rocksdb = resources.as_ref().map(|(store, _)| store.metrics());
        drop(resources);
        self.inner.metrics.snapshot(&snapshot, rocksdb)
    }

    /// Starts a transaction block: its INSERTs (and bulk loads handed to it) are held until
    /// [`Transaction::commit`] commits them together. See [`Transaction`] for what it covers.
    pub fn begin(&self) -> Transaction {
        Transaction::new(self.clone())
    }

    /// INSERTs commit when they run.
    fn commit_target(&self) -> AppendTarget {
        AppendTarget::Commit(Arc::clone(&self.inner.writer))
    }

    pub(crate) fn writer(&self) -> &Writer {
        &self.inner.writer
    }

    async fn run_ddl(&self, ddl: Ddl) -> Result<StatementResult> {
        let command = ddl.command();
        let writer = &self.inner.writer;
        let mut notices = Vec::new();
        match ddl {
            Ddl::CreateTable { def, if_not_exists } => {
                writer
                    .commit(Op::CreateTable { def, if_not_exists })
                    .await?;
            }
            Ddl::DropTables {
                names,
                if_exists,
                cascade,
            } => {
                writer
                    .commit(Op::DropTables {
                        names,
                        if_exists,
                        cascade,
                    })
                    .await?;
            }
            Ddl::CreateView {
                name,
                query,
                if_not_exists,
            } => {
                self.create_view(name.clone(), query, if_not_exists).await?;
                notices.extend(self.retention_notice(&name));
            }
            Ddl::DropViews { names, if_exists } => {
                writer.commit(Op::DropViews { names, if_exists }).await?;
            }
            Ddl::SetRetention { table, seconds } => {
                writer.commit(Op::SetRetention { table, seconds }).await?;
            }
        }
        Ok(StatementResult {
            notices,
            ..StatementResult::command(command, 0)
        })
    }

    /// A view created over a table with retention holds only the rows still stored: say so.
    fn retention_notice(&self, view: &str) -> Option<String> {
        let snapshot = self.inner.current.get();
        let entry = snapshot.views.get(view)?;
        let table = snapshot.table_by_id(entry.view.def.table_id)?;
        let seconds = table.def.retention_seconds?;
        Some(format!(
            "table \"{}\" keeps rows for {} (retention): materialized view \"{view}\" was \
             backfilled from the rows still stored, not from rows retention already removed",
            table.def.name,
            crate::retention::format_period(seconds)
        ))
    }

    /// Appends `batch` to `table` as one atomic, durable commit and returns the rows written.
    ///
    /// Columns are matched by name; missing nullable columns become NULL, and safe widenings
    /// (INT → BIGINT, REAL → DOUBLE …) are applied. Anything else is rejected with an error that
    /// names the table, column and row, and nothing is stored.
    pub async fn ingest(&self, table: &str, batch: RecordBatch) -> Result<u64> {
        match self.append_op(table, &batch)? {
            Some((op, rows)) => self.commit_target().append(op, rows).await,
            None => Ok(0),
        }
    }

    /// Validates `batch` for `table` and makes the append that stores it (`None`: no rows).
    pub(crate) fn append_op(&self, table: &str, batch: &RecordBatch) -> Result<Option<(Op, u64)>> {
        self.inner.check_open()?;
        let snapshot = self.inner.current.get();
        let state = snapshot
            .tables
            .get(table)
            .ok_or_else(|| Error::TableNotFound(table.to_string()))?;
        let def = Arc::clone(&state.def);
        let schema = def.arrow_schema();
        let conformed = ingest::conform(&def, &schema, batch, 0)?;
        if conformed.num_rows() == 0 {
            return Ok(None);
        }
        let rows = conformed.num_rows() as u64;
        let encoded = hot::encode(&conformed)?;
        let op = Op::Append {
            table_id: def.id,
            table: def.name.clone(),
            batches: vec![(conformed, encoded)],
            segments: vec![],
            view_deltas: None,
            batch_id: None,
        };
        Ok(Some((op, rows)))
    }

    /// [`Database::ingest`] with a batch id, for retries that must not write twice: if a commit
    /// into `table` recorded `batch_id` within
    /// [`Options::batch_id_window`](crate::Options::batch_id_window), nothing is written and
    /// the receipt says `duplicate` with that commit's rows. The id is recorded in the same
    /// atomic commit as the rows, so a retry after a lost acknowledgement or a crash is safe.
    pub async fn ingest_with_batch_id(
        &self,
        table: &str,
        batch: RecordBatch,
        batch_id: &str,
    ) -> Result<Receipt> {
        crate::batch_ids::check(batch_id)?;
        let Some((mut op, _)) = self.append_op(table, &batch)? else {
            return Ok(Receipt {
                rows: 0,
                duplicate: false,
            });
        };
        if let Op::Append { batch_id: id, .. } = &mut op {
            *id = Some(batch_id.to_string());
        }
        match self.inner.writer.commit(op).await? {
            Outcome::Appended { rows, duplicate } => Ok(Receipt { rows, duplicate }),
            other => Err(Error::Corrupt(format!(
                "unexpected commit outcome {other:?}"
            ))),
        }
    }

    /// Starts an atomic ingest of any number of batches into `table` (the path of `COPY`):
    /// memory stays bounded because rows beyond the flush thresholds are written to Parquet
    /// segments as they arrive, and nothing becomes visible until [`BulkIngest::commit`].
    pub fn bulk_ingest(&self, table: &str) -> Result<BulkIngest> {
        self.inner.check_open()?;
        let snapshot = self.inner.current.get();
        let state = snapshot
            .tables
            .get(table)
            .ok_or_else(|| Error::TableNotFound(table.to_string()))?;
        let views = snapshot
            .views_of(state.def.id)
            .map(|v| Arc::clone(&v.view))
            .collect();
        Ok(BulkIngest::new(
            Arc::clone(&state.def),
            Arc::clone(&self.inner.writer),
            BulkTarget {
                segments_dir: self.inner.segments_dir.clone(),
                segment_ids: Arc::clone(&self.inner.segment_ids),
                spill_rows: self.inner.options.flush_rows,
                spill_bytes: self.inner.options.flush_bytes,
                row_group_rows: self.inner.options.row_group_rows,
            },
            views,
        ))
    }

    async fn create_view(&self, name: String, query: String, if_not_exists: bool) -> Result<()> {
        let snapshot = self.inner.current.get();
        if snapshot.views.contains_key(&name) && if_not_exists {
            return Ok(());
        }
        let def = ViewDef {
            v: CATALOG_ENTRY_VERSION,
            id: 0,
            name: name.clone(),
            table_id: 0,
            query,
            status: ViewStatus::Backfilling,
            indexed: false,
        };
        let compiled = self
            .inner
            .engine
            .compile_view(&snapshot.tables, def)
            .await?;
        let outcome = self
            .inner
            .writer
            .commit(Op::CreateView {
                view: Box::new(compiled),
                if_not_exists,
            })
            .await?;
        let Outcome::ViewCreated(Some((view_id, created_at))) = outcome else {
            return Ok(());
        };
        if let Err(e) = self.backfill_at(view_id, created_at).await {
            let _ = self
                .inner
                .writer
                .commit(Op::DropViews {
                    names: vec![name],
                    if_exists: true,
                })
                .await;
            return Err(e);
        }
        Ok(())
    }

    /// Backfills a view from the rows committed so far (used at open for interrupted backfills).
    async fn backfill(&self, view_id: u64) -> Result<()> {
        let snapshot = self.inner.current.get();
        self.backfill_at(view_id, snapshot).await
    }

    /// Aggregates the rows of `snapshot` into a view created by the commit that published it,
    /// then marks the view ready. Rows committed later reach the view as ordinary deltas, and
    /// merges commute, so the two cannot race.
    async fn backfill_at(&self, view_id: u64, snapshot: Arc<Snapshot>) -> Result<()> {
        const CHUNK_ROWS: usize = 256 * 1024;
        let entry = snapshot
            .views
            .values()
            .find(|v| v.view.def.id == view_id)
            .cloned()
            .ok_or_else(|| Error::TableNotFound(format!("(view id {view_id})")))?;
        let table = snapshot
            .table_by_id(entry.view.def.table_id)
            .map(|t| t.def.name.clone())
            .ok_or_else(|| Error::TableNotFound(format!("(id {})", entry.view.def.table_id)))?;
        let started = Instant::now();
        let total = table_rows(&snapshot, &table);
        let mut progress = self.inner.metrics.backfill(total);
        let tracker = self.inner.engine.backfills.start(view_id, total);
        let state = self
            .inner
            .engine
            .state_at(Arc::clone(&snapshot), self.commit_target());
        let ctx = datafusion::prelude::SessionContext::new_with_state(state);
        let sql = format!("SELECT * FROM \"{}\"", table.replace('"', "\"\""));
        let frame = ctx.sql(&sql).await.map_err(Error::Query)?;
        let mut stream = frame.execute_stream().await.map_err(Error::Query)?;
        let (mut groups, mut pending_rows, mut total_rows) =
            (views::part::Groups::default(), 0usize, 0u64);
        while let Some(batch) = futures::StreamExt::next(&mut stream).await {
            let batch = batch.map_err(Error::Query)?;
            pending_rows += batch.num_rows();
            total_rows += batch.num_rows() as u64;
            progress.done(batch.num_rows() as u64);
            tracker.done(batch.num_rows() as u64);
            views::maintain::accumulate(&entry.view, &batch, &mut groups)?;
            if pending_rows >= CHUNK_ROWS {
                let part = Box::new(views::part::DeltaPart::from_groups(std::mem::take(
                    &mut groups,
                )));
                self.inner
                    .writer
                    .commit(Op::Backfill { view_id, part })
                    .await?;
                pending_rows = 0;
                tracing::info!(
                    "backfilling view \"{}\": {total_rows} rows so far",
                    entry.view.def.name
                );
            }
        }
        if !groups.is_empty() {
            let part = Box::new(views::part::DeltaPart::from_groups(groups));
            self.inner
                .writer
                .commit(Op::Backfill { view_id, part })
                .await?;
        }
        self.inner.writer.commit(Op::ViewReady { view_id }).await?;
        tracing::info!(
            "backfilled view \"{}\" from {total_rows} rows in {:?}",
            entry.view.def.name,
            started.elapsed()
        );
        Ok(())
    }

    /// Follows the changes of the materialized view `view`: each commit that changes it yields
    /// a [`ChangeBatch`](crate::ChangeBatch) with the commit's sequence and the new values of
    /// the groups it changed.
    ///
    /// Without `from`, the subscription starts with a snapshot of the whole view at the current
    /// sequence ([`ChangeKind::Snapshot`](crate::ChangeKind::Snapshot)), then every later
    /// change. With `from = Some(seq)` (the last sequence a client applied, after a
    /// reconnect) it yields every change after `seq` if the view's in-memory ring still holds
    /// them ([`Options::changefeed_ring_commits`](crate::Options::changefeed_ring_commits)), and
    /// otherwise (older than the ring, after a restart) a fresh snapshot first. A subscriber
    /// that falls behind the ring also gets a fresh snapshot rather than a gap. Delivery is
    /// at-least-once and idempotent by sequence: skip what is at or below the last sequence
    /// applied, apply rows as upserts by group key.
    ///
    /// Fails with [`Error::TableNotFound`] for an unknown name, [`Error::NotSupported`] for a
    /// table or a view still backfilling, and [`Error::InvalidArgument`] for a `from` ahead of
    /// the last committed sequence.
    ///
    /// ```no_run
    /// # async fn demo(db: tally_engine::Database) -> tally_engine::Result<()> {
    /// let mut changes = db.subscribe("per_page", None).await?;
    /// loop {
    ///     let change = changes.next().await?;
    ///     println!("{} {:?}: {} groups", change.seq, change.kind, change.rows.num_rows());
    /// }
    /// # }
    /// ```
    pub async fn subscribe(&self, view: &str, from: Option<u64>) -> Result<Subscription> {
        self.inner.check_open()?;
        Subscription::start(
            Arc::clone(&self.inner.changefeed),
            Arc::clone(&self.inner.current),
            view,
            from,
        )
        .await
    }

    /// The definition of a materialized view.
    pub fn view(&self, name: &str) -> Option<ViewDef> {
        self.inner
            .current
            .get()
            .views
            .get(name)
            .map(|v| ViewDef::clone(&v.view.def))
    }

    /// Names of all materialized views.
    pub fn view_names(&self) -> Vec<String> {
        self.inner.current.get().views.keys().cloned().collect()
    }

    /// The definition of a table.
    pub fn table(&self, name: &str) -> Option<TableDef> {
        self.inner
            .current
            .get()
            .tables
            .get(name)
            .map(|t| TableDef::clone(&t.def))
    }

    /// Names of all tables.
    pub fn table_names(&self) -> Vec<String> {
        self.inner.current.get().tables.keys().cloned().collect()
    }

    /// The Arrow schema of a table.
    pub fn table_schema(&self, name: &str) -> Result<SchemaRef> {
        self.table(name)
            .map(|d| d.arrow_schema())
            .ok_or_else(|| Error::TableNotFound(name.to_string()))
    }

    /// Statistics of a table: rows and segments in Parquet, rows in the hot tier.
    pub fn table_stats(&self, name: &str) -> Result<TableStats> {
        let snapshot = self.inner.current.get();
        let t = snapshot
            .tables
            .get(name)
            .ok_or_else(|| Error::TableNotFound(name.to_string()))?;
        Ok(TableStats {
            segments: t.segments.len(),
            segment_rows: t.segments.iter().map(|s| s.rows).sum(),
            segment_bytes: t.segments.iter().map(|s| s.bytes).sum(),
            hot_batches: t.hot.len(),
            hot_rows: t.hot_rows() as u64,
        })
    }

    /// Writes every table's hot tier to Parquet segments now.
    pub async fn flush(&self) -> Result<()> {
        self.inner.flusher.flush_all().await
    }

    /// Merges every materialized view's delta parts and state segments into one segment per
    /// view now, and waits until the result is committed. The background compactor does this
    /// incrementally on its own (see [`Options::compaction_interval`](crate::Options::compaction_interval)); this is for tests,
    /// benchmarks and maintenance windows.
    pub async fn compact_views(&self) -> Result<()> {
        self.inner.check_open()?;
        self.inner.compactor.compact_all().await
    }

    /// Applies every table's retention now (the background flusher also does it every
    /// [`Options::retention_check_interval`]): segments whose newest row is older than the
    /// table's `retention` leave the catalog (hot rows that old are flushed first), and their
    /// files are deleted once no running statement reads them. Materialized views keep their
    /// aggregates. Returns what was removed.
    pub async fn apply_retention(&self) -> Result<crate::RetentionReport> {
        self.inner.check_open()?;
        self.inner.flusher.apply_retention().await
    }

    /// Flushes, stops the background threads and releases the directory. Idempotent; other
    /// clones of this handle fail with [`Error::Closed`] afterwards. Dropping the last clone
    /// closes too. This blocks the calling thread while the flush runs.
    pub fn close(&self) -> Result<()> {
        self.inner.close()
    }
}

/// Rows of `table` in `snapshot`, hot and flushed.
fn table_rows(snapshot: &Snapshot, table: &str) -> u64 {
    snapshot.tables.get(table).map_or(0, |t| {
        t.hot_rows() as u64 + t.segments.iter().map(|s| s.rows).sum::<u64>()
    })
}

/// Row and segment counts of one table, from [`Database::table_stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableStats {
    /// Parquet segments.
    pub segments: usize,
    /// Rows in those segments.
    pub segment_rows: u64,
    /// Bytes of those segments.
    pub segment_bytes: u64,
    /// Batches in the hot tier.
    pub hot_batches: usize,
    /// Rows in the hot tier.
    pub hot_rows: u64,
}

impl Inner {
    fn check_open(&self) -> Result<()> {
        match self
            .resources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            true => Ok(()),
            false => Err(Error::Closed),
        }
    }

    fn close(&self) -> Result<()> {
        let Some(resources) = self
            .resources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return Ok(());
        };
        let flushed = if self.flush_on_close {
            self.flusher.flush_all_blocking()
        } else {
            Ok(())
        };
        self.flusher.shutdown();
        self.compactor.shutdown();
        self.writer.shutdown();
        // After the writer: no group can start any more. Subscriptions end with `Closed`.
        self.changefeed.shutdown();
        self.current.set(Snapshot::default());
        // Memtables to SST files: the write-ahead log goes, so the next open replays nothing.
        let persisted = resources.0.persist_memtables();
        self.reclaimer.shutdown(&resources.0);
        self.engine.shutdown();
        drop(resources);
        let flushed = flushed.and(persisted);
        tracing::info!("closed {}", self.dir.display());
        flushed
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!("closing {} failed: {e}", self.dir.display());
        }
    }
}

fn lock_directory(dir: &Path) -> Result<File> {
    let path = dir.join("LOCK");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(Error::Locked {
            path: dir.to_path_buf(),
        }),
        Err(TryLockError::Error(e)) => Err(Error::io(format!("locking {}", path.display()), e)),
    }
}

/// Rebuilds the in-memory snapshot from the catalog and hot column families.
fn load_snapshot(store: &Store) -> Result<Snapshot> {
    let mut by_id: HashMap<u64, TableState> = HashMap::new();
    for (_, value) in store.scan_catalog(&keys::table_prefix())? {
        let def: TableDef = catalog::decode("table definition", &value)?;
        by_id.insert(def.id, TableState::new(def));
    }
    for (_, value) in store.scan_catalog(&keys::all_segments_prefix())? {
        let seg: SegmentMeta = catalog::decode("segment", &value)?;
        if let Some(t) = by_id.get_mut(&seg.table_id) {
            t.segments.push(Arc::new(seg));
        }
    }
    let mut last_seq = store.meta_u64(keys::META_LAST_SEQ)?;
    let now = Instant::now();
    for (key, value) in store.scan_hot()? {
        let (table_id, seq) = keys::parse_hot_key(&key)
            .ok_or_else(|| Error::Corrupt("malformed hot-tier key".into()))?;
        last_seq = last_seq.max(seq);
        let Some(t) = by_id.get_mut(&table_id) else {
            continue;
        };
        let batch = hot::decode(&value)?;
        let batch = ingest::conform(&t.def, &t.def.arrow_schema(), &batch, 0)?;
        t.hot.push(Arc::new(HotBatch {
            seq,
            batch,
            bytes: value.len(),
            since: now,
        }));
    }
    let tables = by_id
        .into_values()
        .map(|t| (t.def.name.clone(), Arc::new(t)))
        .collect();
    Ok(Snapshot {
        tables,
        last_seq,
        ..Snapshot::default()
    })
}

/// Runs a future to completion on a fresh single-threaded runtime on its own thread, so that
/// synchronous code (open) can use async engine code whether or not it runs inside a runtime.
fn run_on_own_runtime<F>(future: F) -> Result<()>
where
    F: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let thread = std::thread::Builder::new()
        .name("tally-backfill".into())
        .stack_size(crate::query::depth::THREAD_STACK);
    let thread = thread.spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting a runtime for backfill", e))?;
        runtime.block_on(future)
    });
    thread
        .map_err(|e| Error::io("starting the backfill thread", e))?
        .join()
        .map_err(|_| Error::Corrupt("backfill thread panicked".into()))?
}

/// Deletes segment files and table directories that the catalog does not name.
fn remove_orphans(segments_dir: &Path, snapshot: &Snapshot) -> Result<usize> {
    let known: HashMap<String, HashSet<&str>> = snapshot
        .tables
        .values()
        .map(|t| {
            (
                t.def.id.to_string(),
                t.segments.iter().map(|s| s.file_name.as_str()).collect(),
            )
        })
        .collect();
    storage::segment::remove_unknown(segments_dir, &known)
}
