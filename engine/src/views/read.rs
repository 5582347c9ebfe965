//! Reading a view: its group states at one snapshot, finalized (avg = sum / count …) into an
//! Arrow batch, served to DataFusion as a table.

use std::fmt;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Decimal128Array, Float64Array, Int64Array, RecordBatch,
    StringArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use super::bounds::{GroupBound, bounds_of, key_range};
use super::definition::{CompiledView, OutputSource};
use super::key::{self, KeyKind, KeyValue};
use super::state::{self, AggState};
use super::{ViewStatus, view_prefix};
use crate::error::{Error, Result, to_datafusion};
use crate::storage::store::{DbSnapshot, Entry};

/// Turns a view's stored `(key, state)` entries into rows of its output schema (or of the
/// `projection` of it).
pub(crate) fn finalize(
    view: &CompiledView,
    entries: &[Entry],
    projection: Option<&[usize]>,
) -> Result<RecordBatch> {
    let all: Vec<usize> = (0..view.outputs.len()).collect();
    let projection = projection.unwrap_or(&all);
    let mut wanted = vec![false; view.aggs.len()];
    for &i in projection {
        if let OutputSource::Agg(a) | OutputSource::Sketch(a) = view.outputs[i] {
            wanted[a] = true;
        }
    }
    let kinds: Vec<KeyKind> = view.groups.iter().map(|g| g.kind).collect();
    let mut group_values: Vec<Vec<KeyValue>> = vec![Vec::with_capacity(entries.len()); kinds.len()];
    let mut agg_states: Vec<Vec<Option<AggState>>> =
        vec![Vec::with_capacity(entries.len()); view.aggs.len()];
    for (k, v) in entries {
        let values = key::decode(&k[8..], &kinds)?;
        for (column, value) in group_values.iter_mut().zip(values) {
            column.push(value);
        }
        let states = state::decode_selected(v, Some(&wanted))?;
        if states.len() != view.aggs.len() {
            return Err(Error::Corrupt(format!(
                "view \"{}\" has states of another definition",
                view.def.name
            )));
        }
        for (column, s) in agg_states.iter_mut().zip(states) {
            column.push(s);
        }
    }
    if kinds.is_empty() && entries.is_empty() {
        // Without GROUP BY a view has exactly one row, even before any row matched.
        for (column, agg) in agg_states.iter_mut().zip(&view.aggs) {
            column.push(Some(super::maintain::initial_state(agg.kind, agg.arg_kind)));
        }
    }
    let mut columns = Vec::with_capacity(projection.len());
    for &index in projection {
        let array = match view.outputs[index] {
            OutputSource::Group(i) => build(
                &group_values[i],
                view.groups[i].kind,
                &view.groups[i].output_type,
            )?,
            OutputSource::Agg(i) => finish_agg(
                &selected(&agg_states[i])?,
                view.aggs[i].arg_kind,
                &view.aggs[i].output_type,
            )?,
            OutputSource::Sketch(i) => Arc::new(BinaryArray::from_iter(agg_states[i].iter().map(
                |s| match s {
                    Some(AggState::Hll(hll)) => Some(hll.to_bytes()),
                    _ => None,
                },
            ))),
        };
        columns.push(array);
    }
    let schema = view
        .schema
        .project(projection)
        .map_err(|e| Error::arrow("reading a view", e))?;
    RecordBatch::try_new_with_options(
        Arc::new(schema),
        columns,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(
            group_values
                .first()
                .map_or_else(|| agg_states.first().map_or(0, Vec::len), Vec::len),
        )),
    )
    .map_err(|e| Error::arrow(format!("reading view \"{}\"", view.def.name), e))
}

/// The states of a column whose aggregate was selected for decoding.
fn selected(states: &[Option<AggState>]) -> Result<Vec<AggState>> {
    states
        .iter()
        .map(|s| {
            s.clone()
                .ok_or_else(|| Error::Corrupt("a selected view state was skipped".into()))
        })
        .collect()
}

fn finish_agg(states: &[AggState], arg_kind: KeyKind, output: &DataType) -> Result<ArrayRef> {
    let Some(first) = states.first() else {
        return Ok(arrow::array::new_empty_array(output));
    };
    let array: ArrayRef = match first {
        AggState::Count(_) => Arc::new(Int64Array::from_iter_values(
            states
                .iter()
                .map(|s| if let AggState::Count(n) = s { *n } else { 0 }),
        )),
        AggState::SumInt(_) => Arc::new(Int64Array::from_iter(states.iter().map(|s| {
            if let AggState::SumInt(v) = s {
                *v
            } else {
                None
            }
        }))),
        AggState::SumFloat(_) => Arc::new(Float64Array::from_iter(states.iter().map(|s| {
            if let AggState::SumFloat(v) = s {
                *v
            } else {
                None
            }
        }))),
        AggState::SumDecimal(_) => {
            let values = states.iter().map(|s| {
                if let AggState::SumDecimal(v) = s {
                    *v
                } else {
                    None
                }
            });
            decimal(Decimal128Array::from_iter(values), output)?
        }
        AggState::Min(_) | AggState::Max(_) => {
            let values: Vec<KeyValue> = states
                .iter()
                .map(|s| match s {
                    AggState::Min(v) | AggState::Max(v) => v.clone().unwrap_or(KeyValue::Null),
                    _ => KeyValue::Null,
                })
                .collect();
            return build(&values, arg_kind, output);
        }
        AggState::Avg { .. } => Arc::new(Float64Array::from_iter(states.iter().map(|s| match s {
            AggState::Avg { sum, count } if *count > 0 => Some(sum / *count as f64),
            _ => None,
        }))),
        AggState::Hll(_) | AggState::Distinct(_) => Arc::new(Int64Array::from_iter_values(
            states.iter().map(|s| match s {
                AggState::Hll(hll) => hll.estimate(),
                AggState::Distinct(set) => set.count(),
                _ => 0,
            }),
        )),
    };
    to_type(array, output)
}

/// Builds an array of `output` type from canonical values of `kind`.
fn build(values: &[KeyValue], kind: KeyKind, output: &DataType) -> Result<ArrayRef> {
    let array: ArrayRef = match kind {
        KeyKind::Int => {
            let ints = Int64Array::from_iter(values.iter().map(|v| {
                if let KeyValue::Int(x) = v {
                    Some(*x)
                } else {
                    None
                }
            }));
            if matches!(output, DataType::Date32) {
                let narrow =
                    cast(&ints, &DataType::Int32).map_err(|e| Error::arrow("reading a view", e))?;
                return cast(&narrow, output).map_err(|e| Error::arrow("reading a view", e));
            }
            Arc::new(ints)
        }
        KeyKind::Float => Arc::new(Float64Array::from_iter(values.iter().map(|v| {
            if let KeyValue::Float(x) = v {
                Some(*x)
            } else {
                None
            }
        }))),
        KeyKind::Decimal => {
            let values = values.iter().map(|v| {
                if let KeyValue::Decimal(x) = v {
                    Some(*x)
                } else {
                    None
                }
            });
            return decimal(Decimal128Array::from_iter(values), output);
        }
        KeyKind::Bool => Arc::new(BooleanArray::from_iter(values.iter().map(|v| {
            if let KeyValue::Bool(x) = v {
                Some(*x)
            } else {
                None
            }
        }))),
        KeyKind::Bytes => {
            let bytes = values.iter().map(|v| {
                if let KeyValue::Bytes(x) = v {
                    Some(x.as_slice())
                } else {
                    None
                }
            });
            if matches!(
                output,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) {
                let texts = bytes
                    .map(|b| b.map(std::str::from_utf8).transpose())
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| Error::Corrupt(format!("view text value is not UTF-8: {e}")))?;
                Arc::new(StringArray::from(texts))
            } else {
                Arc::new(BinaryArray::from_iter(bytes))
            }
        }
    };
    to_type(array, output)
}

fn decimal(array: Decimal128Array, output: &DataType) -> Result<ArrayRef> {
    let DataType::Decimal128(p, s) = output else {
        return to_type(Arc::new(array), output);
    };
    Ok(Arc::new(
        array
            .with_precision_and_scale(*p, *s)
            .map_err(|e| Error::arrow("reading a view", e))?,
    ))
}

fn to_type(array: ArrayRef, output: &DataType) -> Result<ArrayRef> {
    if array.data_type() == output {
        return Ok(array);
    }
    cast(&array, output).map_err(|e| Error::arrow("reading a view", e))
}

/// A view as DataFusion sees it, at one snapshot.
pub(crate) struct ViewTable {
    view: Arc<CompiledView>,
    status: ViewStatus,
    rocks: Arc<DbSnapshot>,
}

impl ViewTable {
    pub(crate) fn new(view: Arc<CompiledView>, status: ViewStatus, rocks: Arc<DbSnapshot>) -> Self {
        ViewTable {
            view,
            status,
            rocks,
        }
    }

    /// The rows of the view whose groups pass `bounds`, projected.
    pub(crate) fn read(
        &self,
        bounds: &[GroupBound],
        projection: Option<&[usize]>,
    ) -> Result<RecordBatch> {
        if self.status != ViewStatus::Ready {
            return Err(Error::NotSupported(format!(
                "materialized view \"{}\" is still being backfilled; it can be read once complete",
                self.view.def.name
            )));
        }
        let prefix = view_prefix(self.view.def.id);
        let (lower, upper) = key_range(&prefix, self.view.groups.len(), bounds);
        let kinds: Vec<KeyKind> = self.view.groups.iter().map(|g| g.kind).collect();
        let encoded: Vec<Vec<u8>> = bounds.iter().map(GroupBound::encoded).collect();
        // Keys are checked as bytes, before any value is copied or decoded; a malformed key is
        // kept, so that decoding reports it.
        let entries = self.rocks.scan_views_range(&lower, &upper, |key| {
            bounds.is_empty()
                || key::split(&key[8..], &kinds).is_none_or(|values| {
                    bounds
                        .iter()
                        .zip(&encoded)
                        .all(|(b, e)| b.admits_encoded(values[b.group], e))
                })
        })?;
        finalize(&self.view, &entries, projection)
    }
}

impl fmt::Debug for ViewTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ViewTable({})", self.view.def.name)
    }
}

#[async_trait]
impl TableProvider for ViewTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.view.schema)
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
                if bounds_of(&self.view, f).is_empty() {
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
        let bounds: Vec<GroupBound> = filters
            .iter()
            .flat_map(|f| bounds_of(&self.view, f))
            .collect();
        let batch = self
            .read(&bounds, projection.map(Vec::as_slice))
            .map_err(to_datafusion)?;
        let source = MemorySourceConfig::try_new(&[vec![batch.clone()]], batch.schema(), None)?;
        Ok(DataSourceExec::from_data_source(source))
    }
}
