//! Parquet segments: how flushed rows are cut into day partitions, sorted and written.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::{SortOptions, concat_batches, sort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, Date32Type, SchemaRef, TimestampMicrosecondType};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::catalog::{CATALOG_ENTRY_VERSION, SegmentMeta, TableDef};
use crate::error::{Error, Result};

/// Microseconds in a day.
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Rows of one segment-to-be: sorted by the time column, within one UTC day.
pub(crate) struct SegmentRows {
    /// The rows.
    pub batch: RecordBatch,
    /// Inclusive raw range of the time column, `None` if the table has none or all are NULL.
    pub time_range: Option<(i64, i64)>,
}

/// Directory holding a table's segments.
pub(crate) fn table_dir(segments_dir: &Path, table_id: u64) -> PathBuf {
    segments_dir.join(table_id.to_string())
}

/// File name of a segment.
pub(crate) fn file_name(segment_id: u64) -> String {
    format!("{segment_id:016}.parquet")
}

/// Concatenates hot batches and cuts them into segments: one per UTC day of the time column
/// (rows with a NULL time form their own segment), each sorted by time. Without a time column,
/// everything becomes one segment in commit order.
pub(crate) fn partition(
    def: &TableDef,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<Vec<SegmentRows>> {
    let all = concat_batches(schema, batches)
        .map_err(|e| Error::arrow("concatenating hot batches", e))?;
    if all.num_rows() == 0 {
        return Ok(vec![]);
    }
    let Some(time_idx) = def.time_column_index() else {
        return Ok(vec![SegmentRows {
            batch: all,
            time_range: None,
        }]);
    };
    let order = sort_to_indices(
        all.column(time_idx),
        Some(SortOptions {
            descending: false,
            nulls_first: true,
        }),
        None,
    )
    .map_err(|e| Error::arrow("sorting rows by the time column", e))?;
    let sorted = take_record_batch(&all, &order)
        .map_err(|e| Error::arrow("sorting rows by the time column", e))?;
    let times = RawTimes::new(sorted.column(time_idx))?;
    let mut out = Vec::new();
    let mut start = 0;
    while start < sorted.num_rows() {
        let day = times.day(start);
        let mut end = start + 1;
        while end < sorted.num_rows() && times.day(end) == day {
            end += 1;
        }
        let time_range = day.map(|_| (times.values[start], times.values[end - 1]));
        out.push(SegmentRows {
            batch: sorted.slice(start, end - start),
            time_range,
        });
        start = end;
    }
    Ok(out)
}

/// The time column as raw i64 values (days for DATE, µs for timestamps).
struct RawTimes {
    column: ArrayRef,
    values: Vec<i64>,
    in_days: bool,
}

impl RawTimes {
    fn new(column: &ArrayRef) -> Result<Self> {
        let (values, in_days) = match column.data_type() {
            DataType::Date32 => {
                let days = column.as_primitive::<Date32Type>().values();
                (days.iter().map(|d| i64::from(*d)).collect(), true)
            }
            DataType::Timestamp(_, _) => (
                column
                    .as_primitive::<TimestampMicrosecondType>()
                    .values()
                    .to_vec(),
                false,
            ),
            other => {
                return Err(Error::Corrupt(format!(
                    "time column has non-temporal type {other}"
                )));
            }
        };
        Ok(RawTimes {
            column: column.clone(),
            values,
            in_days,
        })
    }

    /// The UTC day of row `i`, `None` for NULL.
    fn day(&self, i: usize) -> Option<i64> {
        if self.column.is_null(i) {
            return None;
        }
        let v = self.values[i];
        Some(if self.in_days {
            v
        } else {
            v.div_euclid(MICROS_PER_DAY)
        })
    }
}

/// The inclusive raw range (days for DATE, µs for timestamps) of a time column's non-NULL
/// values, `None` when all are NULL.
pub(crate) fn time_bounds(column: &ArrayRef) -> Result<Option<(i64, i64)>> {
    let times = RawTimes::new(column)?;
    let mut bounds: Option<(i64, i64)> = None;
    for (i, v) in times.values.iter().enumerate() {
        if column.is_null(i) {
            continue;
        }
        bounds = Some(match bounds {
            Some((lo, hi)) => (lo.min(*v), hi.max(*v)),
            None => (*v, *v),
        });
    }
    Ok(bounds)
}

/// A raw time value (days for DATE columns, µs otherwise) in µs since the epoch.
pub(crate) fn raw_time_micros(raw: i64, in_days: bool) -> i64 {
    if in_days {
        raw.saturating_mul(MICROS_PER_DAY)
    } else {
        raw
    }
}

/// Writes one segment file and syncs it (and its directory) to disk. Returns the file size.
pub(crate) fn write(
    path: &Path,
    def: &TableDef,
    rows: &RecordBatch,
    row_group_rows: usize,
) -> Result<u64> {
    let context = || format!("writing segment {}", path.display());
    let file = File::create(path).map_err(|e| Error::io(context(), e))?;
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("zstd level 1 is valid"),
        ))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(row_group_rows.max(1)));
    if let Some(idx) = def.time_column_index() {
        props = props.set_sorting_columns(Some(vec![SortingColumn {
            column_idx: idx as i32,
            descending: false,
            nulls_first: true,
        }]));
    }
    // Dictionary encoding pays for strings and narrow values; for 64-bit numbers and times it
    // builds a hash table per column that mostly overflows (high cardinality) at a large CPU
    // cost, while zstd compresses the plain values about as well.
    for field in rows.schema().fields() {
        if matches!(
            field.data_type(),
            DataType::Int64 | DataType::UInt64 | DataType::Float64 | DataType::Timestamp(_, _)
        ) {
            props =
                props.set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), false);
        }
    }
    for column in &def.bloom_filter_columns {
        props = props.set_column_bloom_filter_enabled(ColumnPath::from(column.as_str()), true);
    }
    let mut writer = ArrowWriter::try_new(file, Arc::clone(&rows.schema()), Some(props.build()))
        .map_err(|e| Error::parquet(context(), e))?;
    writer
        .write(rows)
        .map_err(|e| Error::parquet(context(), e))?;
    let file = writer
        .into_inner()
        .map_err(|e| Error::parquet(context(), e))?;
    file.sync_all().map_err(|e| Error::io(context(), e))?;
    let size = file.metadata().map_err(|e| Error::io(context(), e))?.len();
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(size)
}

/// Syncs a directory so that the names created in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

/// A segment file written but perhaps not yet registered.
pub(crate) struct WrittenSegment {
    /// What the catalog will record.
    pub meta: SegmentMeta,
    /// Where the file is.
    pub path: PathBuf,
}

/// Writes `batches` of a table as segment files (one per UTC day of the time column), each
/// synced to disk, with ids from `ids`. On error, removes the files it wrote.
pub(crate) fn write_segments(
    segments_dir: &Path,
    def: &TableDef,
    batches: &[RecordBatch],
    ids: &AtomicU64,
    row_group_rows: usize,
) -> Result<Vec<WrittenSegment>> {
    let parts = partition(def, &def.arrow_schema(), batches)?;
    let dir = table_dir(segments_dir, def.id);
    if !dir.exists() {
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        sync_dir(segments_dir)?;
    }
    let mut written = Vec::with_capacity(parts.len());
    for part in &parts {
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let file_name = file_name(id);
        let path = dir.join(&file_name);
        match write(&path, def, &part.batch, row_group_rows) {
            Ok(bytes) => written.push(WrittenSegment {
                meta: SegmentMeta {
                    v: CATALOG_ENTRY_VERSION,
                    id,
                    table_id: def.id,
                    file_name,
                    rows: part.batch.num_rows() as u64,
                    bytes,
                    time_range: part.time_range,
                },
                path,
            }),
            Err(e) => {
                remove_file_quietly(&path);
                remove_written(&written);
                return Err(e);
            }
        }
    }
    Ok(written)
}

/// Removes segment files that will not be registered.
pub(crate) fn remove_written(written: &[WrittenSegment]) {
    for w in written {
        remove_file_quietly(&w.path);
    }
}

fn remove_file_quietly(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("could not remove {}: {e}", path.display());
    }
}

/// Deletes what `dir` holds beyond `known`: directories named by a key of `known` keep the files
/// it lists, everything else goes. Returns how many files were removed.
pub(crate) fn remove_unknown(
    dir: &Path,
    known: &std::collections::HashMap<String, std::collections::HashSet<&str>>,
) -> Result<usize> {
    let read = |dir: &Path| {
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))
    };
    let mut removed = 0;
    for entry in read(dir)? {
        let entry = entry.map_err(|e| Error::io("listing segments", e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        match known.get(&name) {
            Some(files) if path.is_dir() => {
                for file in read(&path)? {
                    let file = file.map_err(|e| Error::io("listing segments", e))?;
                    if !files.contains(file.file_name().to_string_lossy().as_ref()) {
                        let path = file.path();
                        let result = if path.is_dir() {
                            std::fs::remove_dir_all(&path)
                        } else {
                            std::fs::remove_file(&path)
                        };
                        result.map_err(|e| {
                            Error::io(format!("removing orphan {}", path.display()), e)
                        })?;
                        removed += 1;
                    }
                }
            }
            _ => {
                let count = if path.is_dir() {
                    read(&path)?.count()
                } else {
                    1
                };
                let result = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                result.map_err(|e| Error::io(format!("removing orphan {}", path.display()), e))?;
                removed += count;
            }
        }
    }
    Ok(removed)
}
