//! How a catalog table is declared: a name, a fixed OID, typed columns and a function that
//! produces its rows from the catalog snapshot. Rows are tiny (one per table, column or type),
//! so they are built as [`ScalarValue`]s and turned into Arrow arrays once per scan.

use std::sync::Arc;

use tally_engine::CatalogSnapshot;
use tally_engine::reexports::arrow::array::{ArrayRef, RecordBatch, new_null_array};
use tally_engine::reexports::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use tally_engine::reexports::datafusion::common::ScalarValue;
use tally_engine::reexports::datafusion::datasource::MemTable;
use tally_engine::reexports::datafusion::error::Result;

/// The Postgres type of a catalog column, and so its Arrow type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `oid` (and `regproc`, `regclass` … columns): UInt32.
    Oid,
    /// `name`, `text`, `"char"`: Utf8.
    Text,
    /// `bool`.
    Bool,
    /// `int2`.
    Int2,
    /// `int4`.
    Int4,
    /// `int8`.
    Int8,
    /// `float4`.
    Float4,
    /// `text[]`, `aclitem[]`: a list of Utf8.
    TextArray,
    /// `oid[]`, `oidvector`.
    OidArray,
    /// `int2[]`, `int2vector`.
    Int2Array,
    /// `"char"[]`.
    CharArray,
}

impl Kind {
    /// The PostgreSQL type OID of a column of this kind.
    pub fn pg_type(self) -> u32 {
        match self {
            Kind::Oid => 26,
            Kind::Text => 25,
            Kind::Bool => 16,
            Kind::Int2 => 21,
            Kind::Int4 => 23,
            Kind::Int8 => 20,
            Kind::Float4 => 700,
            Kind::TextArray => 1009,
            Kind::OidArray => 1028,
            Kind::Int2Array => 1005,
            Kind::CharArray => 1002,
        }
    }

    /// The Arrow type of a column of this kind.
    pub fn data_type(self) -> DataType {
        let list = |t: DataType| DataType::List(Arc::new(Field::new_list_field(t, true)));
        match self {
            Kind::Oid => DataType::UInt32,
            Kind::Text => DataType::Utf8,
            Kind::Bool => DataType::Boolean,
            Kind::Int2 => DataType::Int16,
            Kind::Int4 => DataType::Int32,
            Kind::Int8 => DataType::Int64,
            Kind::Float4 => DataType::Float32,
            Kind::TextArray | Kind::CharArray => list(DataType::Utf8),
            Kind::OidArray => list(DataType::UInt32),
            Kind::Int2Array => list(DataType::Int16),
        }
    }
}

/// Rows of a catalog table, as of a snapshot.
pub type Rows = fn(&CatalogSnapshot) -> Vec<Vec<ScalarValue>>;

/// One `pg_catalog` relation.
#[derive(Debug)]
pub struct CatalogTable {
    /// Relation name.
    pub name: &'static str,
    /// Its OID (PostgreSQL's own where it has one, so tools that hard-code them agree).
    pub oid: u32,
    /// Columns in `pg_attribute` order.
    pub columns: &'static [(&'static str, Kind)],
    /// Its rows; `None` for a catalog Tally never populates (no constraints, policies …).
    pub rows: Option<Rows>,
}

impl CatalogTable {
    /// The Arrow schema (every column nullable, as catalog columns are read with outer joins).
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|(name, kind)| Field::new(*name, kind.data_type(), true))
                .collect::<Vec<_>>(),
        ))
    }

    /// The table's contents at `catalog`.
    pub fn scan(&self, catalog: &CatalogSnapshot) -> Result<MemTable> {
        let schema = self.schema();
        let rows = self.rows.map(|f| f(catalog)).unwrap_or_default();
        let columns = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, field)| column(field.data_type(), &rows, i))
            .collect::<Result<Vec<_>>>()?;
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
        MemTable::try_new(schema, vec![vec![batch]])
    }
}

/// Column `i` of `rows` as an array of `data_type`; `ScalarValue::Null` becomes a typed null.
fn column(data_type: &DataType, rows: &[Vec<ScalarValue>], i: usize) -> Result<ArrayRef> {
    if rows.is_empty() {
        return Ok(new_null_array(data_type, 0));
    }
    let values = rows.iter().map(|row| match row.get(i) {
        Some(value) if !value.is_null() => value.cast_to(data_type),
        _ => ScalarValue::try_from(data_type),
    });
    ScalarValue::iter_to_array(values.collect::<Result<Vec<_>>>()?)
}

/// An `oid` value.
pub fn oid(value: u32) -> ScalarValue {
    ScalarValue::UInt32(Some(value))
}

/// A `name` or `text` value.
pub fn text(value: impl Into<String>) -> ScalarValue {
    ScalarValue::Utf8(Some(value.into()))
}

/// A `bool` value.
pub fn boolean(value: bool) -> ScalarValue {
    ScalarValue::Boolean(Some(value))
}

/// An integer value (cast to the column's width when the table is built).
pub fn int(value: i64) -> ScalarValue {
    ScalarValue::Int64(Some(value))
}

/// A `float4` value.
pub fn float(value: f32) -> ScalarValue {
    ScalarValue::Float32(Some(value))
}

/// SQL NULL (typed by its column when the table is built).
pub fn null() -> ScalarValue {
    ScalarValue::Null
}
