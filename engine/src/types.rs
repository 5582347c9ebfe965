//! Tally's SQL column types and how each one is represented in Arrow and on disk.

use std::fmt;

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::sql::sqlparser::ast::{self, ExactNumberInfo, TimezoneInfo};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The time zone stored with TIMESTAMPTZ columns; values are UTC instants.
pub const UTC: &str = "UTC";

/// Precision and scale used for a NUMERIC column declared without them.
pub const DEFAULT_NUMERIC: (u8, i8) = (38, 10);

/// A column type, as declared in `CREATE TABLE`.
///
/// The serialized form (in the catalog) is part of the on-disk format: see `docs/format.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ColumnType {
    /// BOOLEAN → Arrow Boolean.
    Boolean,
    /// SMALLINT → Int16.
    SmallInt,
    /// INTEGER → Int32.
    Integer,
    /// BIGINT → Int64.
    BigInt,
    /// REAL → Float32.
    Real,
    /// DOUBLE PRECISION → Float64.
    Double,
    /// NUMERIC(p, s) → Decimal128(p, s).
    Numeric {
        /// Total significant digits, 1..=38.
        precision: u8,
        /// Digits after the decimal point, 0..=precision.
        scale: i8,
    },
    /// TEXT / VARCHAR → Utf8.
    Text,
    /// BYTEA → Binary.
    Bytea,
    /// DATE → Date32.
    Date,
    /// TIMESTAMP (without time zone) → Timestamp(µs).
    Timestamp,
    /// TIMESTAMPTZ → Timestamp(µs, "UTC").
    TimestampTz,
}

impl ColumnType {
    /// The Arrow type that stores values of this column type.
    pub fn arrow_type(self) -> DataType {
        match self {
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::SmallInt => DataType::Int16,
            ColumnType::Integer => DataType::Int32,
            ColumnType::BigInt => DataType::Int64,
            ColumnType::Real => DataType::Float32,
            ColumnType::Double => DataType::Float64,
            ColumnType::Numeric { precision, scale } => DataType::Decimal128(precision, scale),
            ColumnType::Text => DataType::Utf8,
            ColumnType::Bytea => DataType::Binary,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
        }
    }

    /// Whether this type can serve as a table's time column (partitions segments by day).
    pub fn is_temporal(self) -> bool {
        matches!(
            self,
            ColumnType::Date | ColumnType::Timestamp | ColumnType::TimestampTz
        )
    }

    /// Maps a parsed SQL type to a column type, or explains why it is not supported.
    pub fn from_sql(data_type: &ast::DataType) -> Result<Self> {
        use ast::DataType as D;
        let ty = match data_type {
            D::Bool | D::Boolean => ColumnType::Boolean,
            D::SmallInt(_) | D::Int2(_) => ColumnType::SmallInt,
            D::Int(_) | D::Integer(_) | D::Int4(_) => ColumnType::Integer,
            D::BigInt(_) | D::Int8(_) => ColumnType::BigInt,
            D::Real | D::Float4 => ColumnType::Real,
            D::DoublePrecision | D::Float8 | D::Double(ExactNumberInfo::None) => ColumnType::Double,
            D::Float(info) => match info {
                ExactNumberInfo::Precision(p) if *p <= 24 => ColumnType::Real,
                _ => ColumnType::Double,
            },
            D::Numeric(info) | D::Decimal(info) => numeric(info)?,
            D::Text | D::Varchar(_) | D::CharacterVarying(_) | D::String(_) => ColumnType::Text,
            D::Bytea => ColumnType::Bytea,
            D::Date => ColumnType::Date,
            D::Timestamp(precision, tz) => {
                if let Some(p) = precision
                    && *p > 6
                {
                    return Err(Error::InvalidDefinition(format!(
                        "TIMESTAMP({p}): precision above 6 (microseconds) is not supported"
                    )));
                }
                match tz {
                    TimezoneInfo::None | TimezoneInfo::WithoutTimeZone => ColumnType::Timestamp,
                    TimezoneInfo::WithTimeZone | TimezoneInfo::Tz => ColumnType::TimestampTz,
                }
            }
            other => {
                return Err(Error::NotSupported(format!(
                    "column type {other} is not supported; supported types: BOOLEAN, SMALLINT, INTEGER, BIGINT, REAL, DOUBLE PRECISION, NUMERIC(p,s), TEXT, VARCHAR, BYTEA, DATE, TIMESTAMP, TIMESTAMPTZ"
                )));
            }
        };
        Ok(ty)
    }
}

fn numeric(info: &ExactNumberInfo) -> Result<ColumnType> {
    let (precision, scale) = match *info {
        ExactNumberInfo::None => return Ok(numeric_type(DEFAULT_NUMERIC.0, DEFAULT_NUMERIC.1)),
        ExactNumberInfo::Precision(p) => (p, 0),
        ExactNumberInfo::PrecisionAndScale(p, s) => (p, s),
    };
    if !(1..=38).contains(&precision) {
        return Err(Error::InvalidDefinition(format!(
            "NUMERIC precision {precision} must be between 1 and 38"
        )));
    }
    if scale < 0 || scale as u64 > precision {
        return Err(Error::InvalidDefinition(format!(
            "NUMERIC scale {scale} must be between 0 and the precision {precision}"
        )));
    }
    Ok(numeric_type(precision as u8, scale as i8))
}

fn numeric_type(precision: u8, scale: i8) -> ColumnType {
    ColumnType::Numeric { precision, scale }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::Boolean => f.write_str("BOOLEAN"),
            ColumnType::SmallInt => f.write_str("SMALLINT"),
            ColumnType::Integer => f.write_str("INTEGER"),
            ColumnType::BigInt => f.write_str("BIGINT"),
            ColumnType::Real => f.write_str("REAL"),
            ColumnType::Double => f.write_str("DOUBLE PRECISION"),
            ColumnType::Numeric { precision, scale } => write!(f, "NUMERIC({precision},{scale})"),
            ColumnType::Text => f.write_str("TEXT"),
            ColumnType::Bytea => f.write_str("BYTEA"),
            ColumnType::Date => f.write_str("DATE"),
            ColumnType::Timestamp => f.write_str("TIMESTAMP"),
            ColumnType::TimestampTz => f.write_str("TIMESTAMPTZ"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_through_the_catalog_encoding() {
        let all = [
            ColumnType::Boolean,
            ColumnType::SmallInt,
            ColumnType::Integer,
            ColumnType::BigInt,
            ColumnType::Real,
            ColumnType::Double,
            ColumnType::Numeric {
                precision: 12,
                scale: 2,
            },
            ColumnType::Text,
            ColumnType::Bytea,
            ColumnType::Date,
            ColumnType::Timestamp,
            ColumnType::TimestampTz,
        ];
        for ty in all {
            let json = serde_json::to_string(&ty).unwrap();
            assert_eq!(
                serde_json::from_str::<ColumnType>(&json).unwrap(),
                ty,
                "{json}"
            );
        }
        assert_eq!(
            serde_json::to_string(&ColumnType::Numeric {
                precision: 12,
                scale: 2
            })
            .unwrap(),
            r#"{"type":"numeric","precision":12,"scale":2}"#
        );
    }
}
