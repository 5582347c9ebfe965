//! System tables, read at the statement's snapshot like any table: `tally_tables` (rows,
//! segments, hot tier, bytes, time range of each table), `tally_segments` (one row per Parquet
//! segment) and `tally_views` (the materialized views with their progress and size).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::MemTable;

use crate::error::{Error, Result};
use crate::retention::format_period;
use crate::snapshot::{Snapshot, TableState};
use crate::storage::segment::{raw_time_micros, time_bounds};
use crate::types::ColumnType;
use crate::views::ViewStatus;
use crate::views::progress::BackfillProgress;

/// Name of the table that lists materialized views.
pub const TALLY_VIEWS: &str = "tally_views";
/// Name of the table that lists tables.
pub const TALLY_TABLES: &str = "tally_tables";
/// Name of the table that lists Parquet segments.
pub const TALLY_SEGMENTS: &str = "tally_segments";
/// Every system table the engine answers (no table or view may take these names).
pub const SYSTEM_TABLES: [&str; 3] = [TALLY_TABLES, TALLY_SEGMENTS, TALLY_VIEWS];

/// The system table `name` at `snapshot`, if `name` is one.
pub(crate) fn system_table(
    snapshot: &Snapshot,
    name: &str,
    backfills: &BackfillProgress,
) -> Result<Option<MemTable>> {
    Ok(Some(match name {
        TALLY_TABLES => tables_table(snapshot)?,
        TALLY_SEGMENTS => segments_table(snapshot)?,
        TALLY_VIEWS => views_table(snapshot, backfills)?,
        _ => return Ok(None),
    }))
}

/// A timestamp column type (µs, UTC), as PostgreSQL's `timestamptz`.
fn timestamptz() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The inclusive range of a table's time column over its segments and hot rows, in µs since
/// the epoch (`None` without a time column or rows with a time).
fn time_range(table: &TableState) -> Result<Option<(i64, i64)>> {
    let Some(index) = table.def.time_column_index() else {
        return Ok(None);
    };
    let in_days = table.def.columns[index].column_type == ColumnType::Date;
    let mut range: Option<(i64, i64)> = None;
    let mut widen = |(lo, hi): (i64, i64)| {
        range = Some(match range {
            Some((a, b)) => (a.min(lo), b.max(hi)),
            None => (lo, hi),
        });
    };
    for segment in &table.segments {
        if let Some(r) = segment.time_range {
            widen(r);
        }
    }
    for hot in &table.hot {
        if let Some(r) = time_bounds(hot.batch.column(index))? {
            widen(r);
        }
    }
    Ok(range.map(|(lo, hi)| (raw_time_micros(lo, in_days), raw_time_micros(hi, in_days))))
}

fn mem_table(what: &str, schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<MemTable> {
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)
        .map_err(|e| Error::arrow(format!("listing {what}"), e))?;
    MemTable::try_new(schema, vec![vec![batch]]).map_err(Error::Query)
}

/// `tally_tables`: one row per table.
pub(crate) fn tables_table(snapshot: &Snapshot) -> Result<MemTable> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("table_id", DataType::Int64, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("bytes", DataType::Int64, false),
        Field::new("segments", DataType::Int64, false),
        Field::new("segment_rows", DataType::Int64, false),
        Field::new("segment_bytes", DataType::Int64, false),
        Field::new("hot_batches", DataType::Int64, false),
        Field::new("hot_rows", DataType::Int64, false),
        Field::new("hot_bytes", DataType::Int64, false),
        Field::new("time_column", DataType::Utf8, true),
        Field::new("oldest", timestamptz(), true),
        Field::new("newest", timestamptz(), true),
        Field::new("retention", DataType::Utf8, true),
    ]));
    let n = snapshot.tables.len();
    let mut names = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    let mut counts: [Vec<i64>; 8] = Default::default();
    let (mut time_columns, mut oldest, mut newest) = (Vec::new(), Vec::new(), Vec::new());
    let mut retention = Vec::with_capacity(n);
    for (name, table) in &snapshot.tables {
        let segment_rows: u64 = table.segments.iter().map(|s| s.rows).sum();
        let segment_bytes: u64 = table.segments.iter().map(|s| s.bytes).sum();
        let (hot_rows, hot_bytes) = (table.hot_rows() as u64, table.hot_bytes() as u64);
        names.push(name.clone());
        ids.push(table.def.id as i64);
        let values = [
            segment_rows + hot_rows,
            segment_bytes + hot_bytes,
            table.segments.len() as u64,
            segment_rows,
            segment_bytes,
            table.hot.len() as u64,
            hot_rows,
            hot_bytes,
        ];
        for (column, value) in counts.iter_mut().zip(values) {
            column.push(value as i64);
        }
        time_columns.push(table.def.time_column.clone());
        retention.push(table.def.retention_seconds.map(format_period));
        let range = time_range(table)?;
        oldest.push(range.map(|r| r.0));
        newest.push(range.map(|r| r.1));
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(names)),
        Arc::new(Int64Array::from(ids)),
    ];
    columns.extend(
        counts
            .into_iter()
            .map(|c| Arc::new(Int64Array::from(c)) as ArrayRef),
    );
    columns.push(Arc::new(StringArray::from(time_columns)));
    columns.push(Arc::new(
        TimestampMicrosecondArray::from(oldest).with_timezone("UTC"),
    ));
    columns.push(Arc::new(
        TimestampMicrosecondArray::from(newest).with_timezone("UTC"),
    ));
    columns.push(Arc::new(StringArray::from(retention)));
    mem_table("tables", schema, columns)
}

/// `tally_segments`: one row per Parquet segment, in table then segment order.
pub(crate) fn segments_table(snapshot: &Snapshot) -> Result<MemTable> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("table_name", DataType::Utf8, false),
        Field::new("segment_id", DataType::Int64, false),
        Field::new("file_name", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("bytes", DataType::Int64, false),
        Field::new("min_time", timestamptz(), true),
        Field::new("max_time", timestamptz(), true),
    ]));
    let (mut tables, mut ids, mut files, mut rows, mut bytes, mut lo, mut hi) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for (name, table) in &snapshot.tables {
        let in_days = table
            .def
            .time_column_index()
            .is_some_and(|i| table.def.columns[i].column_type == ColumnType::Date);
        for segment in &table.segments {
            tables.push(name.clone());
            ids.push(segment.id as i64);
            files.push(format!("segments/{}/{}", table.def.id, segment.file_name));
            rows.push(segment.rows as i64);
            bytes.push(segment.bytes as i64);
            lo.push(segment.time_range.map(|r| raw_time_micros(r.0, in_days)));
            hi.push(segment.time_range.map(|r| raw_time_micros(r.1, in_days)));
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(tables)),
        Arc::new(Int64Array::from(ids)),
        Arc::new(StringArray::from(files)),
        Arc::new(Int64Array::from(rows)),
        Arc::new(Int64Array::from(bytes)),
        Arc::new(TimestampMicrosecondArray::from(lo).with_timezone("UTC")),
        Arc::new(TimestampMicrosecondArray::from(hi).with_timezone("UTC")),
    ];
    mem_table("segments", schema, columns)
}

/// `tally_views` at one snapshot: name, table, definition, state, groups, storage (segments,
/// delta parts, bytes), compaction, last commit and backfill progress.
pub(crate) fn views_table(snapshot: &Snapshot, backfills: &BackfillProgress) -> Result<MemTable> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("definition", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("groups", DataType::Int64, false),
        Field::new("bytes", DataType::Int64, false),
        Field::new("segments", DataType::Int64, false),
        Field::new("delta_parts", DataType::Int64, false),
        Field::new("backlog_groups", DataType::Int64, false),
        Field::new(
            "last_compaction",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("last_commit", DataType::Int64, false),
        Field::new("backfill_rows_done", DataType::Int64, true),
        Field::new("backfill_rows_total", DataType::Int64, true),
    ]));
    let (mut names, mut tables, mut definitions, mut states) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut groups, mut bytes, mut segments, mut parts, mut backlog, mut compacted) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let (mut backfill_done, mut backfill_total) = (Vec::new(), Vec::new());
    for (name, entry) in &snapshot.views {
        let def = &entry.view.def;
        let data = &entry.data;
        names.push(name.clone());
        tables.push(
            snapshot
                .table_by_id(def.table_id)
                .map(|t| t.def.name.clone())
                .unwrap_or_default(),
        );
        definitions.push(def.query.clone());
        states.push(match entry.status {
            ViewStatus::Backfilling => "backfilling",
            ViewStatus::Ready => "ready",
        });
        groups.push(count_groups(data)? as i64);
        bytes.push(data.bytes() as i64);
        segments.push(data.segments.len() as i64);
        parts.push(data.parts.len() as i64);
        backlog.push(data.part_groups() as i64);
        compacted.push(
            data.segments
                .iter()
                .map(|s| s.meta.created_ms as i64 * 1000)
                .max(),
        );
        let progress = match entry.status {
            ViewStatus::Backfilling => backfills.of(def.id),
            ViewStatus::Ready => None,
        };
        backfill_done.push(progress.map(|p| p.0 as i64));
        backfill_total.push(progress.map(|p| p.1 as i64));
    }
    let last = vec![snapshot.last_seq as i64; names.len()];
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(names)),
        Arc::new(StringArray::from(tables)),
        Arc::new(StringArray::from(definitions)),
        Arc::new(StringArray::from(states)),
        Arc::new(Int64Array::from(groups)),
        Arc::new(Int64Array::from(bytes)),
        Arc::new(Int64Array::from(segments)),
        Arc::new(Int64Array::from(parts)),
        Arc::new(Int64Array::from(backlog)),
        Arc::new(TimestampMicrosecondArray::from(compacted).with_timezone("UTC")),
        Arc::new(Int64Array::from(last)),
        Arc::new(Int64Array::from(backfill_done)),
        Arc::new(Int64Array::from(backfill_total)),
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)
        .map_err(|e| Error::arrow("listing views", e))?;
    MemTable::try_new(schema, vec![vec![batch]]).map_err(Error::Query)
}

/// The number of distinct groups across a view's segments and parts (a merge of their keys).
fn count_groups(data: &crate::views::ViewData) -> Result<usize> {
    use crate::views::merge::{Candidates, Run, Step, merge};
    let runs: Vec<Run<'_>> = data
        .segments
        .iter()
        .map(|s| (&s.keys, &s.states))
        .chain(data.parts.iter().map(|p| (&p.keys, &p.states)))
        .map(|(keys, states)| Run {
            keys,
            states,
            rows: Candidates::Range(0..keys.len()),
            finalized: true,
        })
        .collect();
    let mut groups = 0;
    merge(&runs, |step| {
        groups += match step {
            Step::Rows { positions, .. } => positions.len(),
            Step::Group { .. } => 1,
        };
        Ok(())
    })?;
    Ok(groups)
}
