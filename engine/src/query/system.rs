//! System tables: `tally_views` lists the materialized views with their progress and size.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;

use crate::error::{Error, Result};
use crate::snapshot::Snapshot;
use crate::views::{ViewStatus, index_prefix, view_prefix};

/// Name of the table that lists materialized views.
pub const TALLY_VIEWS: &str = "tally_views";

/// `tally_views` at one snapshot: name, table, definition, state, groups, bytes, last commit.
pub(crate) fn views_table(snapshot: &Snapshot) -> Result<MemTable> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("definition", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("groups", DataType::Int64, false),
        Field::new("bytes", DataType::Int64, false),
        Field::new("last_commit", DataType::Int64, false),
    ]));
    let (mut names, mut tables, mut definitions, mut states, mut groups, mut bytes) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for (name, entry) in &snapshot.views {
        let def = &entry.view.def;
        let (entries, index) = match &snapshot.rocks {
            Some(rocks) => (
                rocks.scan_views(&view_prefix(def.id))?,
                rocks.scan_views(&index_prefix(def.id))?,
            ),
            None => (vec![], vec![]),
        };
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
        groups.push(entries.len() as i64);
        // States and index entries, as stored (before RocksDB's compression).
        bytes.push(
            entries
                .iter()
                .chain(&index)
                .map(|(k, v)| (k.len() + v.len()) as i64)
                .sum::<i64>(),
        );
    }
    let last = vec![snapshot.last_seq as i64; names.len()];
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(names)),
        Arc::new(StringArray::from(tables)),
        Arc::new(StringArray::from(definitions)),
        Arc::new(StringArray::from(states)),
        Arc::new(Int64Array::from(groups)),
        Arc::new(Int64Array::from(bytes)),
        Arc::new(Int64Array::from(last)),
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)
        .map_err(|e| Error::arrow("listing views", e))?;
    MemTable::try_new(schema, vec![vec![batch]]).map_err(Error::Query)
}
