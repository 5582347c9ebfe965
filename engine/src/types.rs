//! Tally's SQL column types and how each one is represented in Arrow and on disk.

pub mod json;
pub mod uuid;

use std::collections::HashMap;
use std::fmt;

use arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::sql::sqlparser::ast::{self, ExactNumberInfo, TimezoneInfo};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The time zone stored with TIMESTAMPTZ columns; values are UTC instants.
pub const UTC: &str = "UTC";

/// Precision and scale used for a NUMERIC column declared without them.
pub const DEFAULT_NUMERIC: (u8, i8) = (38, 10);

/// Arrow field metadata key naming the SQL type of a column whose Arrow type alone does not say
/// it (CHAR(n), VARCHAR(n), UUID, JSON, JSONB): the value is the catalog's spelling, e.g.
/// `character(25)` or `jsonb`. The server reads it to report the PostgreSQL type and modifier
/// of a column.
pub const SQL_TYPE_KEY: &str = "tally.sql_type";

/// A column type, as declared in `CREATE TABLE`.
///
/// The serialized form (in the catalog) is part of the on-disk format: see `docs/format.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// TEXT / VARCHAR without a length → Utf8.
    Text,
    /// CHAR(n) / CHARACTER(n) / BPCHAR → Utf8, stored with trailing blanks stripped (they are
    /// insignificant in PostgreSQL's `character` type), at most `length` characters.
    Char {
        /// The declared length in characters; `None` for BPCHAR without one (no limit).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        length: Option<u32>,
    },
    /// VARCHAR(n) / CHARACTER VARYING(n) → Utf8, at most `length` characters.
    Varchar {
        /// The declared length in characters.
        length: u32,
    },
    /// BYTEA → Binary.
    Bytea,
    /// UUID → FixedSizeBinary(16): the 16 bytes in RFC 9562 order (see [`uuid`]).
    Uuid,
    /// JSON → Utf8: the text as given, checked to be one JSON value (see [`json`]).
    Json,
    /// JSONB → Utf8, like [`ColumnType::Json`]: stored as validated text, not decomposed.
    Jsonb,
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
            ColumnType::Text
            | ColumnType::Char { .. }
            | ColumnType::Varchar { .. }
            | ColumnType::Json
            | ColumnType::Jsonb => DataType::Utf8,
            ColumnType::Bytea => DataType::Binary,
            ColumnType::Uuid => DataType::FixedSizeBinary(uuid::UUID_BYTES),
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
        }
    }

    /// The Arrow field of a column of this type: [`ColumnType::arrow_type`], and the
    /// [`SQL_TYPE_KEY`] metadata for types that the Arrow type alone does not name.
    pub fn field(self, name: &str, nullable: bool) -> Field {
        let field = Field::new(name, self.arrow_type(), nullable);
        match self.sql_name() {
            Some(sql) => field.with_metadata(HashMap::from([(SQL_TYPE_KEY.to_string(), sql)])),
            None => field,
        }
    }

    /// The PostgreSQL spelling of a type its Arrow type does not name (`character(25)`,
    /// `character varying(10)`, `bpchar`, `uuid`, `json`, `jsonb`), as stored under
    /// [`SQL_TYPE_KEY`].
    pub fn sql_name(self) -> Option<String> {
        match self {
            ColumnType::Uuid => Some("uuid".into()),
            ColumnType::Json => Some("json".into()),
            ColumnType::Jsonb => Some("jsonb".into()),
            ColumnType::Char { length: Some(n) } => Some(format!("character({n})")),
            ColumnType::Char { length: None } => Some("bpchar".into()),
            ColumnType::Varchar { length } => Some(format!("character varying({length})")),
            _ => None,
        }
    }

    /// The column type a field's [`SQL_TYPE_KEY`] metadata names, if it names one.
    pub fn from_field(field: &Field) -> Option<ColumnType> {
        let sql = field.metadata().get(SQL_TYPE_KEY)?;
        let length = |prefix: &str| {
            sql.strip_prefix(prefix)?
                .strip_prefix('(')?
                .strip_suffix(')')?
                .parse::<u32>()
                .ok()
        };
        match sql.as_str() {
            "bpchar" => return Some(ColumnType::Char { length: None }),
            "uuid" => return Some(ColumnType::Uuid),
            "json" => return Some(ColumnType::Json),
            "jsonb" => return Some(ColumnType::Jsonb),
            _ => {}
        }
        if let Some(n) = length("character varying") {
            Some(ColumnType::Varchar { length: n })
        } else {
            length("character").map(|n| ColumnType::Char { length: Some(n) })
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
            D::Text | D::String(_) => ColumnType::Text,
            D::Varchar(len) | D::CharacterVarying(len) | D::CharVarying(len) => match len {
                None => ColumnType::Text,
                Some(len) => ColumnType::Varchar {
                    length: char_length(len, "VARCHAR")?,
                },
            },
            // PostgreSQL: CHAR without a length is CHAR(1).
            D::Char(len) | D::Character(len) => ColumnType::Char {
                length: Some(match len {
                    None => 1,
                    Some(len) => char_length(len, "CHAR")?,
                }),
            },
            D::Custom(name, modifiers) if name.to_string().eq_ignore_ascii_case("bpchar") => {
                match modifiers.as_slice() {
                    [] => ColumnType::Char { length: None },
                    [n] => ColumnType::Char {
                        length: Some(length_value(n.parse::<u64>().ok(), "BPCHAR")?),
                    },
                    _ => {
                        return Err(Error::InvalidDefinition("BPCHAR takes one length".into()));
                    }
                }
            }
            D::Bytea => ColumnType::Bytea,
            D::Uuid => ColumnType::Uuid,
            D::JSON => ColumnType::Json,
            D::JSONB => ColumnType::Jsonb,
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
                    "column type {other} is not supported; supported types: BOOLEAN, SMALLINT, INTEGER, BIGINT, REAL, DOUBLE PRECISION, NUMERIC(p,s), TEXT, VARCHAR(n), CHAR(n), BYTEA, UUID, JSON, JSONB, DATE, TIMESTAMP, TIMESTAMPTZ"
                )));
            }
        };
        Ok(ty)
    }
}

/// PostgreSQL's limit on a declared character length (`MaxAttrSize` in characters).
const MAX_CHAR_LENGTH: u64 = 10_485_760;

fn char_length(len: &ast::CharacterLength, what: &str) -> Result<u32> {
    match len {
        ast::CharacterLength::IntegerLength { length, .. } => length_value(Some(*length), what),
        ast::CharacterLength::Max => Err(Error::InvalidDefinition(format!(
            "{what}(MAX) is not supported; use TEXT"
        ))),
    }
}

fn length_value(length: Option<u64>, what: &str) -> Result<u32> {
    match length {
        Some(n) if (1..=MAX_CHAR_LENGTH).contains(&n) => {
            Ok(u32::try_from(n).expect("bounded by MAX_CHAR_LENGTH"))
        }
        _ => Err(Error::InvalidDefinition(format!(
            "length for type {what} must be between 1 and {MAX_CHAR_LENGTH}"
        ))),
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
            ColumnType::Char { length: Some(n) } => write!(f, "CHAR({n})"),
            ColumnType::Char { length: None } => f.write_str("BPCHAR"),
            ColumnType::Varchar { length } => write!(f, "VARCHAR({length})"),
            ColumnType::Bytea => f.write_str("BYTEA"),
            ColumnType::Uuid => f.write_str("UUID"),
            ColumnType::Json => f.write_str("JSON"),
            ColumnType::Jsonb => f.write_str("JSONB"),
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
            ColumnType::Char { length: Some(25) },
            ColumnType::Char { length: None },
            ColumnType::Varchar { length: 10 },
            ColumnType::Bytea,
            ColumnType::Uuid,
            ColumnType::Json,
            ColumnType::Jsonb,
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
        assert_eq!(
            serde_json::to_string(&ColumnType::Char { length: Some(25) }).unwrap(),
            r#"{"type":"char","length":25}"#
        );
        assert_eq!(
            serde_json::to_string(&ColumnType::Char { length: None }).unwrap(),
            r#"{"type":"char"}"#
        );
        assert_eq!(
            serde_json::to_string(&ColumnType::Varchar { length: 10 }).unwrap(),
            r#"{"type":"varchar","length":10}"#
        );
        for ty in all {
            assert_eq!(
                ColumnType::from_field(&ty.field("c", true)),
                ty.sql_name().map(|_| ty),
                "{ty}"
            );
        }
    }

    #[test]
    fn character_types_parse_with_their_lengths() {
        let parse = |sql: &str| {
            let sql = format!("CREATE TABLE t (c {sql})");
            let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
            let statements =
                datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, &sql).unwrap();
            let ast::Statement::CreateTable(table) = &statements[0] else {
                panic!("{sql}")
            };
            ColumnType::from_sql(&table.columns[0].data_type)
        };
        assert_eq!(
            parse("CHAR(25)").unwrap(),
            ColumnType::Char { length: Some(25) }
        );
        assert_eq!(
            parse("CHARACTER(3)").unwrap(),
            ColumnType::Char { length: Some(3) }
        );
        assert_eq!(parse("CHAR").unwrap(), ColumnType::Char { length: Some(1) });
        assert_eq!(parse("BPCHAR").unwrap(), ColumnType::Char { length: None });
        assert_eq!(
            parse("VARCHAR(44)").unwrap(),
            ColumnType::Varchar { length: 44 }
        );
        assert_eq!(
            parse("CHARACTER VARYING(5)").unwrap(),
            ColumnType::Varchar { length: 5 }
        );
        assert_eq!(parse("VARCHAR").unwrap(), ColumnType::Text);
        assert!(parse("VARCHAR(0)").is_err());
    }
}
