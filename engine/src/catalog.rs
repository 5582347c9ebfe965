//! Table and segment definitions: what the catalog column family stores.
//!
//! Definitions are serialized as JSON objects with a format version field `v`; the layout is
//! documented in `docs/format.md` and must change only together with that document.

use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::types::ColumnType;

/// Version of the JSON encoding of catalog entries.
pub const CATALOG_ENTRY_VERSION: u32 = 1;

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    /// Column name (identifiers are folded to lower case unless quoted).
    pub name: String,
    /// Declared type.
    #[serde(flatten)]
    pub column_type: ColumnType,
    /// False for `NOT NULL` columns.
    pub nullable: bool,
}

/// A table's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    /// Encoding version ([`CATALOG_ENTRY_VERSION`]).
    pub v: u32,
    /// Stable numeric id: names may be reused after a drop, ids never are.
    pub id: u64,
    /// Table name.
    pub name: String,
    /// Columns in declaration order.
    pub columns: Vec<ColumnDef>,
    /// Column whose UTC day partitions the table's segments (`WITH (time_column = …)`).
    pub time_column: Option<String>,
    /// Columns that get Parquet bloom filters (`WITH (bloom_filter_columns = …)`).
    #[serde(default)]
    pub bloom_filter_columns: Vec<String>,
    /// Rows older than this many seconds (by the time column) are removed in whole-day
    /// segments (`WITH (retention = '30 days')`); views keep their aggregates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_seconds: Option<u64>,
    /// Whether retention has removed rows from it: its views then still count rows the table
    /// no longer holds, so none of them answers queries over the table (view matching).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rows_removed: bool,
}

impl TableDef {
    /// The Arrow schema of the table's rows.
    pub fn arrow_schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| c.column_type.field(&c.name, c.nullable))
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// Position of the named column.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Position of the time column, if the table has one.
    pub fn time_column_index(&self) -> Option<usize> {
        self.time_column
            .as_deref()
            .and_then(|c| self.column_index(c))
    }

    /// Checks the definition's internal consistency (names, options).
    pub fn validate(&self) -> Result<()> {
        if self.columns.is_empty() {
            return Err(Error::InvalidDefinition(format!(
                "table \"{}\" must have at least one column",
                self.name
            )));
        }
        for (i, c) in self.columns.iter().enumerate() {
            if self.columns[..i].iter().any(|o| o.name == c.name) {
                return Err(Error::InvalidDefinition(format!(
                    "column \"{}\" specified more than once",
                    c.name
                )));
            }
        }
        if let Some(tc) = &self.time_column {
            let idx = self.column_index(tc).ok_or_else(|| Error::ColumnNotFound {
                table: self.name.clone(),
                column: tc.clone(),
            })?;
            let ty = self.columns[idx].column_type;
            if !ty.is_temporal() {
                return Err(Error::InvalidDefinition(format!(
                    "time_column \"{tc}\" has type {ty}; it must be DATE, TIMESTAMP or TIMESTAMPTZ"
                )));
            }
        }
        if self.retention_seconds.is_some() && self.time_column.is_none() {
            return Err(Error::InvalidDefinition(format!(
                "table \"{}\" needs a time_column for retention: rows age out by it",
                self.name
            )));
        }
        for b in &self.bloom_filter_columns {
            if self.column_index(b).is_none() {
                return Err(Error::ColumnNotFound {
                    table: self.name.clone(),
                    column: b.clone(),
                });
            }
        }
        Ok(())
    }
}

/// An immutable Parquet file holding flushed rows of one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// Encoding version ([`CATALOG_ENTRY_VERSION`]).
    pub v: u32,
    /// Segment id, unique across the database.
    pub id: u64,
    /// Owning table.
    pub table_id: u64,
    /// File name inside `segments/<table_id>/`.
    pub file_name: String,
    /// Rows in the file.
    pub rows: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// Inclusive range of the time column's raw values (µs since the epoch for timestamps,
    /// days for dates), when the table has a time column and the segment has non-null values.
    pub time_range: Option<(i64, i64)>,
}

/// Encodes a catalog entry.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("catalog entries always serialize")
}

/// Decodes a catalog entry, refusing encodings newer than this build understands.
pub(crate) fn decode<T: for<'de> Deserialize<'de> + Versioned>(
    what: &str,
    bytes: &[u8],
) -> Result<T> {
    let value: T = serde_json::from_slice(bytes)
        .map_err(|e| Error::Corrupt(format!("cannot decode {what}: {e}")))?;
    if value.version() > CATALOG_ENTRY_VERSION {
        return Err(Error::Corrupt(format!(
            "{what} has encoding version {}, newer than {CATALOG_ENTRY_VERSION}",
            value.version()
        )));
    }
    Ok(value)
}

/// A catalog entry that carries its encoding version.
pub(crate) trait Versioned {
    fn version(&self) -> u32;
}

impl Versioned for TableDef {
    fn version(&self) -> u32 {
        self.v
    }
}

impl Versioned for SegmentMeta {
    fn version(&self) -> u32 {
        self.v
    }
}
