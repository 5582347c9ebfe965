//! [`BulkIngest`]: one atomic commit of any number of batches (the path of `COPY`), in bounded
//! memory.
//!
//! Validated rows collect in memory up to the flush thresholds; beyond them they are written to
//! Parquet segment files (synced, not yet registered) on a blocking thread, while the next rows
//! keep arriving: one spill runs at a time, and a second one waits for it, which bounds memory
//! to about twice the thresholds. `commit` waits for the spill, registers the segments and
//! appends the rest to the hot tier in one RocksDB commit. Until then nothing is visible; a
//! bulk ingest that is dropped, fails or is interrupted by a crash leaves only unregistered
//! files, which are deleted (at drop, or as orphans at the next open).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use tokio::task::JoinHandle;

use crate::catalog::{SegmentMeta, TableDef};
use crate::commit::{Op, Outcome, Writer};
use crate::error::{Error, Result};
use crate::ingest;
use crate::query::depth;
use crate::storage::hot;
use crate::storage::segment::{self, WrittenSegment};
use crate::views::{self, CompiledView};

/// Where and when a bulk ingest spills to segment files.
pub(crate) struct BulkTarget {
    pub segments_dir: PathBuf,
    pub segment_ids: Arc<AtomicU64>,
    pub spill_rows: usize,
    pub spill_bytes: usize,
    pub row_group_rows: usize,
}

/// An atomic ingest of many batches into one table, from [`Database::bulk_ingest`](crate::Database::bulk_ingest).
pub struct BulkIngest {
    def: Arc<TableDef>,
    schema: SchemaRef,
    writer: Arc<Writer>,
    target: Arc<BulkTarget>,
    buffered: Vec<RecordBatch>,
    buffered_rows: usize,
    buffered_bytes: usize,
    written: Vec<WrittenSegment>,
    /// The spill running in the background, if any.
    spilling: Option<Spill>,
    rows: u64,
    /// The table's views when the bulk ingest started, and their deltas over every row so far.
    views: Vec<Arc<CompiledView>>,
    view_states: Vec<views::part::Groups>,
    /// The caller's id for this batch, for idempotent retries.
    batch_id: Option<String>,
}

/// What a commit with a batch id reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// Rows stored: by this commit, or (for a duplicate) by the first commit of the batch id.
    pub rows: u64,
    /// The batch id was already recorded for the table: this commit wrote nothing.
    pub duplicate: bool,
}

impl BulkIngest {
    pub(crate) fn new(
        def: Arc<TableDef>,
        writer: Arc<Writer>,
        target: BulkTarget,
        views: Vec<Arc<CompiledView>>,
    ) -> Self {
        let schema = def.arrow_schema();
        let view_states = vec![views::part::Groups::default(); views.len()];
        BulkIngest {
            views,
            view_states,
            def,
            schema,
            writer,
            target: Arc::new(target),
            buffered: Vec::new(),
            buffered_rows: 0,
            buffered_bytes: 0,
            written: Vec::new(),
            spilling: None,
            rows: 0,
            batch_id: None,
        }
    }

    /// Names this batch for idempotent retries: if a commit into the same table recorded
    /// `id` within [`Options::batch_id_window`](crate::Options::batch_id_window), this one
    /// writes nothing and reports that commit's rows (see [`BulkIngest::commit_receipt`]).
    /// The id is recorded in the same atomic commit as the rows. Ids are 1 to
    /// [`MAX_BATCH_ID_BYTES`](crate::MAX_BATCH_ID_BYTES) bytes.
    pub fn batch_id(&mut self, id: impl Into<String>) -> Result<()> {
        let id = id.into();
        crate::batch_ids::check(&id)?;
        self.batch_id = Some(id);
        Ok(())
    }

    /// The batch id given to [`BulkIngest::batch_id`], if any.
    pub fn batch_id_of(&self) -> Option<&str> {
        self.batch_id.as_deref()
    }

    /// The table's definition.
    pub fn table(&self) -> &TableDef {
        &self.def
    }

    /// The table's Arrow schema, which [`BulkIngest::write`] conforms batches to.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// Rows accepted so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Validates a batch (like [`Database::ingest`](crate::Database::ingest); errors name the
    /// row counted from the start of this bulk ingest) and adds it.
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let conformed = ingest::conform(&self.def, &self.schema, &batch, self.rows as usize)?;
        if conformed.num_rows() == 0 {
            return Ok(());
        }
        for (view, states) in self.views.iter().zip(self.view_states.iter_mut()) {
            // A deep view's expressions evaluate as deep as they nest, on this caller's thread.
            depth::with_big_stack(view.depth, || {
                views::maintain::accumulate(view, &conformed, states)
            })?;
        }
        self.rows += conformed.num_rows() as u64;
        self.buffered_rows += conformed.num_rows();
        self.buffered_bytes += conformed.get_array_memory_size();
        self.buffered.push(conformed);
        if self.buffered_rows >= self.target.spill_rows
            || self.buffered_bytes >= self.target.spill_bytes
        {
            self.spill().await?;
        }
        Ok(())
    }

    /// Starts writing the buffered rows to segment files on a blocking thread, after the
    /// previous spill (if one still runs) has finished.
    async fn spill(&mut self) -> Result<()> {
        self.settle().await?;
        let batches = std::mem::take(&mut self.buffered);
        self.buffered_rows = 0;
        self.buffered_bytes = 0;
        let def = Arc::clone(&self.def);
        let target = Arc::clone(&self.target);
        let rows = batches.clone();
        let task = tokio::task::spawn_blocking(move || {
            segment::write_segments(
                &target.segments_dir,
                &def,
                &rows,
                &target.segment_ids,
                target.row_group_rows,
            )
        });
        self.spilling = Some(Spill { batches, task });
        Ok(())
    }

    /// Waits for the spill in progress, if any: its segments join the written ones.
    pub(crate) async fn settle(&mut self) -> Result<()> {
        let Some(spill) = self.spilling.take() else {
            return Ok(());
        };
        let written = spill.task.await.map_err(|e| {
            Error::io(
                "writing bulk segments",
                std::io::Error::other(e.to_string()),
            )
        })?;
        match written {
            Ok(written) => {
                self.written.extend(written);
                Ok(())
            }
            // DROP TABLE removed the table's directory under the spill: say that, not which
            // file operation it broke.
            Err(_) if !segment::table_dir(&self.target.segments_dir, self.def.id).exists() => {
                Err(Error::TableNotFound(self.def.name.clone()))
            }
            Err(e) => Err(e),
        }
    }

    /// Makes every row visible in one durable commit and returns the number of rows.
    pub async fn commit(self) -> Result<u64> {
        Ok(self.commit_receipt().await?.rows)
    }

    /// [`BulkIngest::commit`], also saying whether the batch id was a duplicate (then nothing
    /// was written, the spilled files are deleted, and `rows` is the first commit's count).
    pub async fn commit_receipt(mut self) -> Result<Receipt> {
        self.settle().await?;
        let op = self.take_op()?;
        match self.writer.commit(op).await? {
            Outcome::Appended { rows, duplicate } => {
                if !duplicate {
                    self.registered();
                }
                Ok(Receipt { rows, duplicate })
            }
            other => Err(Error::Corrupt(format!(
                "unexpected commit outcome {other:?}"
            ))),
        }
    }

    /// What this bulk ingest holds so far, for a transaction that reads its own writes: its
    /// table id, buffered batches (with their in-memory sizes; a spill in progress counts as
    /// buffered) and spilled segments.
    pub(crate) fn pending(&self) -> (u64, Vec<(RecordBatch, usize)>, Vec<SegmentMeta>) {
        let spilling = self.spilling.iter().flat_map(|s| s.batches.iter());
        let batches = spilling
            .chain(self.buffered.iter())
            .map(|b| (b.clone(), b.get_array_memory_size()))
            .collect();
        let segments = self.written.iter().map(|w| w.meta.clone()).collect();
        (self.def.id, batches, segments)
    }

    /// The commit of everything written so far (buffered rows, spilled segments, view deltas);
    /// [`BulkIngest::settle`] first. The spilled files stay this bulk ingest's until
    /// [`BulkIngest::registered`].
    pub(crate) fn take_op(&mut self) -> Result<Op> {
        if self.spilling.is_some() {
            return Err(Error::Corrupt(
                "a bulk ingest was committed while a spill was running".into(),
            ));
        }
        let mut batches = Vec::with_capacity(self.buffered.len());
        for batch in std::mem::take(&mut self.buffered) {
            let encoded = hot::encode(&batch)?;
            batches.push((batch, encoded));
        }
        let segments = self.written.iter().map(|w| w.meta.clone()).collect();
        let mut covered: Vec<u64> = self.views.iter().map(|v| v.def.id).collect();
        covered.sort_unstable();
        let deltas = self
            .views
            .iter()
            .zip(std::mem::take(&mut self.view_states))
            .map(|(view, groups)| (view.def.id, views::part::DeltaPart::from_groups(groups)))
            .collect();
        Ok(Op::Append {
            table_id: self.def.id,
            table: self.def.name.clone(),
            batches,
            segments,
            view_deltas: Some((covered, deltas)),
            batch_id: self.batch_id.clone(),
        })
    }

    /// The commit of [`BulkIngest::take_op`] succeeded: the files now belong to the catalog.
    pub(crate) fn registered(&mut self) {
        self.written.clear();
    }
}

/// A spill in progress: the rows it writes (still readable by the transaction that holds the
/// bulk ingest) and the task writing them.
struct Spill {
    batches: Vec<RecordBatch>,
    task: JoinHandle<Result<Vec<WrittenSegment>>>,
}

impl Drop for BulkIngest {
    fn drop(&mut self) {
        // Not committed (or the commit failed): the spilled files were never registered.
        segment::remove_written(&self.written);
        // A spill still running removes its files when it ends; without a runtime to wait on
        // it, they are orphans that the next open deletes.
        if let Some(spill) = self.spilling.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Ok(Ok(written)) = spill.task.await {
                    segment::remove_written(&written);
                }
            });
        }
    }
}
