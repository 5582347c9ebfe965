//! A materialized view as DataFusion sees it: [`ViewTable`] plans a [`ViewScanExec`], which
//! reads the view when it runs, from the snapshot its task context carries
//! ([`ReadSnapshot`]). A plan holds no view data, so the same plan runs again at a later
//! snapshot (the prepared-plan cache relies on it).

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Statistics, internal_err};
use datafusion::datasource::TableType;
use datafusion::error::Result as DfResult;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};

use super::ViewStatus;
use super::bounds::{GroupBound, bounds_of};
use super::definition::CompiledView;
use super::scan::{Selection, estimate_rows, read};
use crate::error::{Error, Result, to_datafusion};
use crate::query::ReadSnapshot;
use crate::snapshot::{Snapshot, ViewEntry};

/// A view at the snapshot a statement was planned at.
pub(crate) struct ViewTable {
    entry: Arc<ViewEntry>,
}

impl ViewTable {
    pub(crate) fn new(entry: Arc<ViewEntry>) -> Self {
        ViewTable { entry }
    }

    /// The rows of the view whose groups pass `bounds`, projected.
    pub(crate) fn read(
        &self,
        bounds: &[GroupBound],
        projection: Option<&[usize]>,
    ) -> Result<arrow::array::RecordBatch> {
        read_entry(&self.entry, bounds, projection)
    }
}

/// Refuses a view that is still being backfilled.
fn check_ready(entry: &ViewEntry) -> Result<()> {
    if entry.status != ViewStatus::Ready {
        return Err(Error::NotSupported(format!(
            "materialized view \"{}\" is still being backfilled; it can be read once complete",
            entry.view.def.name
        )));
    }
    Ok(())
}

/// The rows of a ready view whose groups pass `bounds`, projected.
fn read_entry(
    entry: &ViewEntry,
    bounds: &[GroupBound],
    projection: Option<&[usize]>,
) -> Result<arrow::array::RecordBatch> {
    check_ready(entry)?;
    read(
        &entry.view,
        &entry.data,
        Selection::Bounds(bounds),
        projection,
    )
}

impl fmt::Debug for ViewTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ViewTable({})", self.entry.view.def.name)
    }
}

#[async_trait]
impl TableProvider for ViewTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.entry.view.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Comparisons on group columns narrow the scan; DataFusion still checks every row.
        Ok(filters
            .iter()
            .map(|f| {
                if bounds_of(&self.entry.view, f).is_empty() {
                    TableProviderFilterPushDown::Unsupported
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // A view that cannot be read fails the statement now, not at its first row.
        check_ready(&self.entry).map_err(to_datafusion)?;
        let bounds: Vec<GroupBound> = filters
            .iter()
            .flat_map(|f| bounds_of(&self.entry.view, f))
            .collect();
        let schema = match projection {
            Some(p) => Arc::new(self.entry.view.schema.project(p)?),
            None => Arc::clone(&self.entry.view.schema),
        };
        let estimate = estimate_rows(&self.entry.view, &self.entry.data, &bounds);
        Ok(Arc::new(ViewScanExec::new(
            Arc::clone(&self.entry.view),
            bounds,
            projection.cloned(),
            schema,
            estimate,
        )))
    }
}

/// Reads one view's groups that pass its bounds, at the snapshot of the task context it runs
/// in: one partition, one batch, in group-key order.
pub(crate) struct ViewScanExec {
    /// The definition it was planned against: a view of that name and id must be in the
    /// snapshot it runs at.
    view: Arc<CompiledView>,
    bounds: Vec<GroupBound>,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    /// Rows expected at planning (an upper bound); only a hint to the optimizer.
    estimate: usize,
    properties: Arc<PlanProperties>,
}

impl ViewScanExec {
    fn new(
        view: Arc<CompiledView>,
        bounds: Vec<GroupBound>,
        projection: Option<Vec<usize>>,
        schema: SchemaRef,
        estimate: usize,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        ViewScanExec {
            view,
            bounds,
            projection,
            schema,
            estimate,
            properties: Arc::new(properties),
        }
    }

    /// The view it reads: name and id.
    pub(crate) fn view(&self) -> (&str, u64) {
        (&self.view.def.name, self.view.def.id)
    }

    /// This view's entry in `snapshot`, if it is still the view this scan was planned against.
    fn entry_in(&self, snapshot: &Snapshot) -> Result<Arc<ViewEntry>> {
        let name = &self.view.def.name;
        match snapshot.views.get(name) {
            Some(entry) if entry.view.def.id == self.view.def.id => Ok(Arc::clone(entry)),
            _ => Err(Error::NotSupported(format!(
                "materialized view \"{name}\" was dropped or replaced after the statement was \
                 planned; run it again"
            ))),
        }
    }
}

impl fmt::Debug for ViewScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ViewScanExec({})", self.view.def.name)
    }
}

impl DisplayAs for ViewScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ViewScan: view={}", self.view.def.name)?;
        if !self.bounds.is_empty() {
            let groups = self.view.groups.len();
            write!(
                f,
                ", {} bound(s) on the {groups} group column(s)",
                self.bounds.len()
            )?;
        }
        let names: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|c| c.name().as_str())
            .collect();
        write!(f, ", projection=[{}]", names.join(", "))
    }
}

impl ExecutionPlan for ViewScanExec {
    fn name(&self) -> &str {
        "ViewScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            internal_err!("ViewScanExec has no children")
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("ViewScanExec has one partition, not {}", partition + 1);
        }
        let Some(snapshot) = context.session_config().get_extension::<ReadSnapshot>() else {
            return internal_err!("no snapshot to read view {} at", self.view.def.name);
        };
        let entry = self.entry_in(&snapshot.0).map_err(to_datafusion)?;
        let bounds = self.bounds.clone();
        let projection = self.projection.clone();
        // The view is read when the stream is first polled, on whichever thread polls it.
        let batch = futures::stream::once(async move {
            read_entry(&entry, &bounds, projection.as_deref()).map_err(to_datafusion)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batch,
        )))
    }

    fn partition_statistics(&self, _partition: Option<usize>) -> DfResult<Arc<Statistics>> {
        // Inexact: the plan may run at a later snapshot, so the optimizer must not answer
        // from it (an exact count would turn `count(*)` into a constant).
        let mut statistics = Statistics::new_unknown(&self.schema);
        statistics.num_rows = Precision::Inexact(self.estimate);
        Ok(Arc::new(statistics))
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::SessionConfig;
    use futures::StreamExt;

    use super::*;
    use crate::views::ViewData;
    use crate::views::definition::compile_for_tests;

    /// Runs a scan planned against view `v` id 1 at `snapshot`: the error of its first poll.
    fn run_at(snapshot: Snapshot) -> String {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true)]));
        let view = Arc::new(compile_for_tests(
            "SELECT k, count(*) AS n FROM t GROUP BY k",
            &schema,
            1,
        ));
        let scan = ViewScanExec::new(Arc::clone(&view), vec![], None, Arc::clone(&view.schema), 0);
        let config =
            SessionConfig::new().with_extension(Arc::new(ReadSnapshot(Arc::new(snapshot))));
        let context = Arc::new(TaskContext::default().with_session_config(config));
        match scan.execute(0, context) {
            Err(e) => e.to_string(),
            Ok(mut stream) => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("a runtime");
                match runtime.block_on(stream.next()) {
                    Some(Err(e)) => e.to_string(),
                    other => panic!("expected an error, got {other:?}"),
                }
            }
        }
    }

    /// A plan that outlives its view (dropped, or dropped and created again under the same
    /// name) fails with an error that says so, not a panic and not the new view's rows.
    #[test]
    fn a_scan_of_a_dropped_or_replaced_view_is_refused() {
        let dropped = run_at(Snapshot::default());
        assert!(dropped.contains("dropped or replaced"), "{dropped}");

        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true)]));
        let newer = compile_for_tests("SELECT k, count(*) AS n FROM t GROUP BY k", &schema, 2);
        let mut replaced = Snapshot::default();
        replaced.views.insert(
            "v".into(),
            Arc::new(ViewEntry {
                view: Arc::new(newer),
                status: ViewStatus::Ready,
                data: ViewData::default(),
            }),
        );
        let replaced = run_at(replaced);
        assert!(replaced.contains("dropped or replaced"), "{replaced}");
    }
}
