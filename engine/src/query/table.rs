//! A Tally table as DataFusion sees it: a scan over its Parquet segments and hot batches at one
//! snapshot, and an INSERT sink that commits through the writer.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use futures::StreamExt;

use crate::commit::Op;
use crate::error::{Error, to_datafusion};
use crate::ingest;
use crate::snapshot::TableState;
use crate::storage::{hot, segment};
use crate::transaction::AppendTarget;

/// A table bound to one snapshot.
#[derive(Debug)]
pub(crate) struct SnapshotTable {
    state: Arc<TableState>,
    schema: SchemaRef,
    segments_dir: PathBuf,
    writer: AppendTarget,
}

/// What the table scans of one EXPLAIN statement pruned (a session-config extension that only
/// EXPLAIN sets): the segments DataFusion never sees are not in its plan, so they are listed
/// beside it.
#[derive(Debug, Default)]
pub(crate) struct ScanLog(std::sync::Mutex<Vec<String>>);

impl ScanLog {
    fn note(&self, line: String) {
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !lines.contains(&line) {
            lines.push(line);
        }
    }

    /// The lines noted, in scan order.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl SnapshotTable {
    pub(crate) fn new(state: Arc<TableState>, segments_dir: PathBuf, writer: AppendTarget) -> Self {
        let schema = state.def.arrow_schema();
        SnapshotTable {
            state,
            schema,
            segments_dir,
            writer,
        }
    }

    /// Segments whose time range can hold rows matching `filters`.
    fn candidate_files(&self, filters: &[Expr]) -> Vec<PartitionedFile> {
        let bounds = self
            .state
            .def
            .time_column
            .as_deref()
            .map(|tc| time_bounds(tc, filters));
        let dir = segment::table_dir(&self.segments_dir, self.state.def.id);
        self.state
            .segments
            .iter()
            .filter(|seg| match (bounds, seg.time_range) {
                (Some((lo, hi)), Some((min, max))) => max >= lo && min <= hi,
                // Segments of rows with a NULL time never match a time predicate.
                (Some((lo, hi)), None) => lo == i64::MIN && hi == i64::MAX,
                (None, _) => true,
            })
            .map(|seg| {
                let path = dir.join(&seg.file_name);
                PartitionedFile::new(
                    path.to_string_lossy().trim_start_matches('/').to_string(),
                    seg.bytes,
                )
            })
            .collect()
    }
}

#[async_trait]
impl TableProvider for SnapshotTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Segments and row groups are pruned with the filters, but rows are not filtered
        // exactly here: DataFusion re-applies every filter above the scan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let partitions = state.config().target_partitions().max(1);
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();

        let files = self.candidate_files(filters);
        if let Some(log) = state.config().get_extension::<ScanLog>() {
            let pruned = self.state.segments.len() - files.len();
            log.note(format!(
                "{}: {} of {} segment(s) scanned, {pruned} pruned by the time column; {} hot batch(es)",
                self.state.def.name,
                files.len(),
                self.state.segments.len(),
                self.state.hot.len()
            ));
        }
        if !files.is_empty() {
            // DataFusion pushes the query's filters into this source (row-group statistics,
            // page index and bloom-filter pruning); segments were pruned by time above.
            let source = ParquetSource::new(Arc::clone(&self.schema));
            let mut groups: Vec<Vec<PartitionedFile>> =
                vec![Vec::new(); partitions.min(files.len())];
            for (i, file) in files.into_iter().enumerate() {
                groups[i % partitions].push(file);
            }
            let config =
                FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
                    .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
                    .with_projection_indices(projection.cloned())?
                    .with_limit(limit)
                    .build();
            let format =
                ParquetFormat::default().with_options(state.table_options().parquet.clone());
            inputs.push(format.create_physical_plan(state, config).await?);
        }

        if !self.state.hot.is_empty() {
            let mut parts: Vec<Vec<_>> = vec![Vec::new(); partitions.min(self.state.hot.len())];
            let n = parts.len();
            for (i, h) in self.state.hot.iter().enumerate() {
                parts[i % n].push(h.batch.clone());
            }
            let memory =
                MemorySourceConfig::try_new(&parts, Arc::clone(&self.schema), projection.cloned())?
                    .with_limit(limit);
            inputs.push(datafusion::datasource::source::DataSourceExec::from_data_source(memory));
        }

        match inputs.len() {
            0 => {
                let projected = match projection {
                    Some(p) => Arc::new(self.schema.project(p)?),
                    None => Arc::clone(&self.schema),
                };
                Ok(Arc::new(EmptyExec::new(projected)))
            }
            1 => Ok(inputs.pop().expect("one input")),
            _ => UnionExec::try_new(inputs),
        }
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(to_datafusion(Error::NotSupported(format!(
                "{insert_op} is not supported: tables are append-only"
            ))));
        }
        // The sink accepts NULLs everywhere so that `ingest::conform` checks NOT NULL itself and
        // names the column and row, instead of DataFusion's anonymous check.
        let accepted = self
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>();
        let sink = InsertSink {
            state: Arc::clone(&self.state),
            table_schema: Arc::clone(&self.schema),
            accepted: Arc::new(arrow::datatypes::Schema::new(accepted)),
            writer: self.writer.clone(),
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// Inclusive bounds on the raw time-column value implied by `filters` (`i64::MIN/MAX` when
/// unbounded). Only comparisons between the column and a literal of its own type are used.
fn time_bounds(time_column: &str, filters: &[Expr]) -> (i64, i64) {
    let mut lo = i64::MIN;
    let mut hi = i64::MAX;
    for filter in filters {
        for conjunct in datafusion::logical_expr::utils::split_conjunction(filter) {
            match conjunct {
                Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                    let (op, value) = match (left.as_ref(), right.as_ref()) {
                        (Expr::Column(c), Expr::Literal(v, _)) if c.name == time_column => (*op, v),
                        (Expr::Literal(v, _), Expr::Column(c)) if c.name == time_column => {
                            match op.swap() {
                                Some(op) => (op, v),
                                None => continue,
                            }
                        }
                        _ => continue,
                    };
                    let Some(v) = raw_time(value) else { continue };
                    match op {
                        Operator::Eq => {
                            lo = lo.max(v);
                            hi = hi.min(v);
                        }
                        Operator::Gt | Operator::GtEq => lo = lo.max(v),
                        Operator::Lt | Operator::LtEq => hi = hi.min(v),
                        _ => {}
                    }
                }
                Expr::Between(between) if !between.negated => {
                    if let (Expr::Column(c), Expr::Literal(low, _), Expr::Literal(high, _)) = (
                        between.expr.as_ref(),
                        between.low.as_ref(),
                        between.high.as_ref(),
                    ) && c.name == time_column
                        && let (Some(l), Some(h)) = (raw_time(low), raw_time(high))
                    {
                        lo = lo.max(l);
                        hi = hi.min(h);
                    }
                }
                _ => {}
            }
        }
    }
    (lo, hi)
}

/// The raw stored value of a time literal (µs for timestamps, days for dates).
fn raw_time(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(*v),
        ScalarValue::Date32(Some(d)) => Some(i64::from(*d)),
        _ => None,
    }
}

/// Collects an INSERT's rows and commits them as one atomic append.
struct InsertSink {
    state: Arc<TableState>,
    /// The table's schema: what is stored.
    table_schema: SchemaRef,
    /// What the sink accepts from its input: the table's schema with every column nullable.
    accepted: SchemaRef,
    writer: AppendTarget,
}

impl fmt::Debug for InsertSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InsertSink({})", self.state.def.name)
    }
}

impl DisplayAs for InsertSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TallyInsert: table={}", self.state.def.name)
    }
}

#[async_trait]
impl DataSink for InsertSink {
    fn schema(&self) -> &SchemaRef {
        &self.accepted
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> DfResult<u64> {
        let def = &self.state.def;
        let mut batches = Vec::new();
        let mut rows = 0;
        while let Some(batch) = data.next().await {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            let conformed =
                ingest::conform(def, &self.table_schema, &batch, rows).map_err(to_datafusion)?;
            rows += batch.num_rows();
            let encoded = hot::encode(&conformed).map_err(to_datafusion)?;
            batches.push((conformed, encoded));
        }
        if batches.is_empty() {
            return Ok(0);
        }
        let op = Op::Append {
            table_id: def.id,
            table: def.name.clone(),
            batches,
            segments: vec![],
            view_deltas: None,
            batch_id: None,
        };
        self.writer
            .append(op, rows as u64)
            .await
            .map_err(to_datafusion)
    }
}
