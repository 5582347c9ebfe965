//! State segments: immutable, sorted runs of a view's merged group states, written by the
//! compactor as Parquet files (`views/<view_id>/<segment_id>.parquet`) and held in memory as
//! Arrow arrays. Beside each group's key and encoded states a segment keeps the finalized value
//! of every output column (except the `<column>_sketch` columns, which are the stored sketches
//! themselves), so a read of groups that no delta touched copies columns and decodes nothing.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, RecordBatch, RecordBatchReader, UInt32Array,
};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use super::definition::{CompiledView, OutputSource};
use super::key;
use crate::error::{Error, Result};

/// A state segment's catalog entry (JSON in `catalog`, key `'w' view_id segment_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewSegmentMeta {
    /// Encoding version ([`crate::catalog::CATALOG_ENTRY_VERSION`]).
    pub v: u32,
    /// Segment id (from the same counter as table segments).
    pub id: u64,
    /// The view it belongs to.
    pub view_id: u64,
    /// File name inside `views/<view_id>/`.
    pub file_name: String,
    /// Groups it holds.
    pub groups: u64,
    /// File size.
    pub bytes: u64,
    /// When the compaction that wrote it committed (ms since the Unix epoch).
    pub created_ms: u64,
}

impl crate::catalog::Versioned for ViewSegmentMeta {
    fn version(&self) -> u32 {
        self.v
    }
}

/// Column names of the key and states in a segment file (outputs keep their own names).
const KEY_COLUMN: &str = "__tally_group_key";
const STATE_COLUMN: &str = "__tally_states";

/// One state segment, in memory.
#[derive(Debug)]
pub(crate) struct StateSegment {
    /// Its catalog entry.
    pub meta: ViewSegmentMeta,
    /// Memcomparable group keys, strictly ascending.
    pub keys: BinaryArray,
    /// Encoded states, one per key.
    pub states: BinaryArray,
    /// Per view output: its finalized values (`None` for sketch outputs, read from `states`).
    pub finalized: Vec<Option<ArrayRef>>,
    /// Per group column after the first: the rows in the order of that column's value (then
    /// key), for lookups by a non-leading group column.
    pub by_group: Vec<Option<UInt32Array>>,
}

impl StateSegment {
    /// A segment of sorted `keys`, their `states` and the finalized values of the
    /// [`stored_outputs`], in that order.
    pub(crate) fn with_outputs(
        view: &CompiledView,
        meta: ViewSegmentMeta,
        keys: BinaryArray,
        states: BinaryArray,
        outputs: Vec<ArrayRef>,
    ) -> Result<StateSegment> {
        let stored = stored_outputs(view);
        let mut finalized: Vec<Option<ArrayRef>> = vec![None; view.outputs.len()];
        for (column, &index) in outputs.into_iter().zip(&stored) {
            if column.len() != keys.len() {
                return Err(Error::Corrupt(format!(
                    "view \"{}\": {} finalized values for {} groups",
                    view.def.name,
                    column.len(),
                    keys.len()
                )));
            }
            finalized[index] = Some(column);
        }
        StateSegment::assemble(view, meta, keys, states, finalized)
    }

    /// A segment of its parts, with the secondary orders built.
    fn assemble(
        view: &CompiledView,
        meta: ViewSegmentMeta,
        keys: BinaryArray,
        states: BinaryArray,
        finalized: Vec<Option<ArrayRef>>,
    ) -> Result<StateSegment> {
        let by_group = secondary_orders(view, &keys)?;
        Ok(StateSegment {
            meta,
            keys,
            states,
            finalized,
            by_group,
        })
    }

    /// Number of groups.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Writes the segment's file under `dir` (named by its meta) and syncs it and the
    /// directory. Returns the file size.
    pub(crate) fn write(&self, view: &CompiledView, dir: &Path) -> Result<u64> {
        let path = dir.join(&self.meta.file_name);
        let context = || format!("writing view state segment {}", path.display());
        let mut fields = vec![
            Field::new(KEY_COLUMN, DataType::Binary, false),
            Field::new(STATE_COLUMN, DataType::Binary, false),
        ];
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.keys.clone()) as ArrayRef,
            Arc::new(self.states.clone()),
        ];
        for (index, column) in self.finalized.iter().enumerate() {
            if let Some(column) = column {
                let field = view.schema.field(index);
                fields.push(Field::new(field.name(), column.data_type().clone(), true));
                columns.push(Arc::clone(column));
            }
        }
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns)
            .map_err(|e| Error::arrow(context(), e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(1).expect("zstd level 1 is valid"),
            ))
            .build();
        let file = File::create(&path).map_err(|e| Error::io(context(), e))?;
        let mut writer = ArrowWriter::try_new(file, schema, Some(props))
            .map_err(|e| Error::parquet(context(), e))?;
        writer
            .write(&batch)
            .map_err(|e| Error::parquet(context(), e))?;
        let file = writer
            .into_inner()
            .map_err(|e| Error::parquet(context(), e))?;
        file.sync_all().map_err(|e| Error::io(context(), e))?;
        let size = file.metadata().map_err(|e| Error::io(context(), e))?.len();
        crate::storage::segment::sync_dir(dir)?;
        Ok(size)
    }

    /// Reads a segment file written by [`StateSegment::write`] for `view`.
    pub(crate) fn read(
        view: &CompiledView,
        meta: ViewSegmentMeta,
        dir: &Path,
    ) -> Result<StateSegment> {
        let path = dir.join(&meta.file_name);
        let context = || format!("reading view state segment {}", path.display());
        let file = File::open(&path).map_err(|e| Error::io(context(), e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.with_batch_size(64 * 1024).build())
            .map_err(|e| Error::parquet(context(), e))?;
        let schema = reader.schema();
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::arrow(context(), e))?;
        let batch = concat_batches(&schema, &batches).map_err(|e| Error::arrow(context(), e))?;
        let stored = stored_outputs(view);
        let corrupt = |what: String| Error::Corrupt(format!("{}: {what}", context()));
        if batch.num_columns() != 2 + stored.len() {
            return Err(corrupt(format!(
                "{} columns, the view has {} stored outputs",
                batch.num_columns(),
                stored.len()
            )));
        }
        if batch.num_rows() as u64 != meta.groups {
            return Err(corrupt(format!(
                "{} groups, the catalog says {}",
                batch.num_rows(),
                meta.groups
            )));
        }
        let binary = |i: usize| {
            batch
                .column(i)
                .as_binary_opt::<i32>()
                .cloned()
                .ok_or_else(|| corrupt(format!("column {i} is not binary")))
        };
        let (keys, states) = (binary(0)?, binary(1)?);
        if keys.null_count() > 0 || states.null_count() > 0 {
            return Err(corrupt("null group key or states".into()));
        }
        if keys.iter().zip(keys.iter().skip(1)).any(|(a, b)| a >= b) {
            return Err(corrupt("group keys not strictly ascending".into()));
        }
        let mut finalized: Vec<Option<ArrayRef>> = vec![None; view.outputs.len()];
        for (position, &index) in stored.iter().enumerate() {
            let column = batch.column(2 + position);
            let expected = view.schema.field(index).data_type();
            if column.data_type() != expected {
                return Err(corrupt(format!(
                    "column {} is {}, the view's is {expected}",
                    view.schema.field(index).name(),
                    column.data_type()
                )));
            }
            finalized[index] = Some(Arc::clone(column));
        }
        StateSegment::assemble(view, meta, keys, states, finalized)
    }
}

/// The output columns a segment stores finalized (all but the hidden columns, read from the
/// states).
pub(crate) fn stored_outputs(view: &CompiledView) -> Vec<usize> {
    view.outputs
        .iter()
        .enumerate()
        .filter(|(_, o)| !matches!(o, OutputSource::Sketch(_) | OutputSource::AvgPart { .. }))
        .map(|(i, _)| i)
        .collect()
}

/// Per group column after the first: row numbers sorted by that column's encoded value, then
/// by key (so rows with one value are in key order).
fn secondary_orders(view: &CompiledView, keys: &BinaryArray) -> Result<Vec<Option<UInt32Array>>> {
    let kinds = view.group_kinds();
    if kinds.len() < 2 {
        return Ok(vec![None; kinds.len()]);
    }
    // The encoded values of each group column after the first, one list per column.
    let mut columns: Vec<Vec<&[u8]>> = vec![Vec::with_capacity(keys.len()); kinds.len() - 1];
    for k in keys.iter() {
        let values = key::split(k.unwrap_or_default(), &kinds)
            .ok_or_else(|| Error::Corrupt("malformed view group key".into()))?;
        for (column, value) in columns.iter_mut().zip(&values[1..]) {
            column.push(value);
        }
    }
    let orders = columns.iter().map(|values| {
        let mut rows: Vec<u32> = (0..keys.len() as u32).collect();
        // Stable: equal values stay in key order (rows are in key order, in runs sorted by
        // each later column, which the stable sort merges).
        rows.sort_by(|&a, &b| values[a as usize].cmp(values[b as usize]));
        Some(UInt32Array::from(rows))
    });
    Ok(std::iter::once(None).chain(orders).collect())
}
