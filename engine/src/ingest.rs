//! Validation of incoming rows against a table's schema.
//!
//! Whatever the source (library batch, INSERT, COPY), rows reach storage only through
//! [`conform`], which either returns a batch in the table's exact Arrow schema or an error that
//! names the table, the column and the row.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeBinaryBuilder, RecordBatch, StringArray, new_null_array,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};

use crate::catalog::{ColumnDef, TableDef};
use crate::error::{DataErrorClass, Error, Result};
use crate::types::{ColumnType, json, uuid};

/// Returns `batch` in the table's schema: columns matched by name, missing nullable columns
/// filled with NULL, safe widenings applied. `first_row` is the statement-wide index of the
/// batch's first row, used in error messages.
pub(crate) fn conform(
    def: &TableDef,
    schema: &SchemaRef,
    batch: &RecordBatch,
    first_row: usize,
) -> Result<RecordBatch> {
    for field in batch.schema().fields() {
        if def.column_index(field.name()).is_none() {
            return Err(Error::ColumnNotFound {
                table: def.name.clone(),
                column: field.name().clone(),
            });
        }
    }
    let mut columns = Vec::with_capacity(def.columns.len());
    for (column, field) in def.columns.iter().zip(schema.fields()) {
        let invalid = |row: Option<usize>, class, reason: String| Error::InvalidData {
            table: def.name.clone(),
            column: column.name.clone(),
            row: row.map(|r| first_row + r),
            class,
            reason,
        };
        let array = match batch.column_by_name(&column.name) {
            Some(array) => coerce(column, array, field.data_type())
                .and_then(|array| constrain(column.column_type, array))
                .map_err(|(row, class, reason)| invalid(row, class, reason))?,
            None if column.nullable => new_null_array(field.data_type(), batch.num_rows()),
            None => {
                return Err(invalid(
                    None,
                    DataErrorClass::NotNull,
                    "no value given for a NOT NULL column".into(),
                ));
            }
        };
        if !column.nullable && array.null_count() > 0 {
            let row = (0..array.len()).find(|i| array.is_null(*i));
            return Err(invalid(
                row,
                DataErrorClass::NotNull,
                "null value violates NOT NULL constraint".into(),
            ));
        }
        columns.push(array);
    }
    RecordBatch::try_new(Arc::clone(schema), columns)
        .map_err(|e| Error::arrow(format!("building a batch for table \"{}\"", def.name), e))
}

type CoerceError = (Option<usize>, DataErrorClass, String);

/// Converts one column to the stored type, or explains why it cannot be stored.
fn coerce(
    column: &ColumnDef,
    array: &ArrayRef,
    target: &DataType,
) -> Result<ArrayRef, CoerceError> {
    let source = array.data_type();
    if source == target {
        return Ok(Arc::clone(array));
    }
    if matches!(source, DataType::Null) {
        return Ok(new_null_array(target, array.len()));
    }
    if column.column_type == ColumnType::Uuid {
        return uuid_column(column, array);
    }
    if matches!(target, DataType::Utf8) && is_binary(source) {
        return binary_to_text(array);
    }
    if let (DataType::Timestamp(TimeUnit::Nanosecond, _), DataType::Timestamp(_, _)) =
        (source, target)
        && is_timestamp_widening(source, target)
    {
        let ns = array.as_primitive::<arrow::datatypes::TimestampNanosecondType>();
        if let Some(row) = (0..ns.len()).find(|i| ns.is_valid(*i) && ns.value(*i) % 1000 != 0) {
            return Err((
                Some(row),
                DataErrorClass::OutOfRange,
                format!(
                    "timestamp {} has nanoseconds; {} keeps microsecond precision",
                    ns.value(row),
                    column.column_type
                ),
            ));
        }
    }
    if !is_safe_widening(source, target) {
        return Err((
            None,
            DataErrorClass::WrongType,
            format!(
                "column is {} but the value has type {source}, which cannot be stored without loss",
                column.column_type
            ),
        ));
    }
    cast(array, target).map_err(|e| (None, DataErrorClass::OutOfRange, e.to_string()))
}

/// Applies a column type's constraints beyond its Arrow type: CHAR(n) values lose their trailing
/// blanks (insignificant in PostgreSQL's `character`), and CHAR(n)/VARCHAR(n) values may have
/// at most n characters. As in PostgreSQL, a value that is too long only because of trailing
/// blanks is truncated to n instead of refused. JSON and JSONB values must parse.
fn constrain(column_type: ColumnType, array: ArrayRef) -> Result<ArrayRef, CoerceError> {
    let (limit, strip) = match column_type {
        ColumnType::Json | ColumnType::Jsonb => return check_json(&array).map(|()| array),
        ColumnType::Char { length } => (length, true),
        ColumnType::Varchar { length } => (Some(length), false),
        _ => return Ok(array),
    };
    let Some(strings) = array.as_string_opt::<i32>() else {
        return Ok(array);
    };
    let limit = limit.map_or(usize::MAX, |n| n as usize);
    let fits = |s: &str| s.len() <= limit || s.chars().count() <= limit;
    // Most values need no change: check first, and rebuild the array only when one does.
    let unchanged = strings
        .iter()
        .flatten()
        .all(|s| fits(s) && !(strip && s.ends_with(' ')));
    if unchanged {
        return Ok(array);
    }
    let mut values = Vec::with_capacity(strings.len());
    for (row, value) in strings.iter().enumerate() {
        let Some(value) = value else {
            values.push(None);
            continue;
        };
        let value = if strip {
            value.trim_end_matches(' ')
        } else {
            value
        };
        if fits(value) {
            values.push(Some(value));
            continue;
        }
        let cut = value
            .char_indices()
            .nth(limit)
            .map_or(value.len(), |(at, _)| at);
        if !value[cut..].bytes().all(|b| b == b' ') {
            return Err((
                Some(row),
                DataErrorClass::TooLong,
                format!(
                    "value too long for type {}",
                    column_type.sql_name().unwrap_or_default()
                ),
            ));
        }
        values.push(Some(&value[..cut]));
    }
    Ok(Arc::new(StringArray::from(values)))
}

/// Values for a UUID column: text in any of PostgreSQL's spellings, or 16 bytes.
fn uuid_column(column: &ColumnDef, array: &ArrayRef) -> Result<ArrayRef, CoerceError> {
    let source = array.data_type();
    if is_binary(source) {
        return cast(array, &DataType::FixedSizeBinary(uuid::UUID_BYTES)).map_err(|e| {
            (
                None,
                DataErrorClass::WrongType,
                format!("a UUID is 16 bytes: {e}"),
            )
        });
    }
    if !matches!(
        source,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) {
        return Err((
            None,
            DataErrorClass::WrongType,
            format!(
                "column is {} but the value has type {source}",
                column.column_type
            ),
        ));
    }
    let text = cast(array, &DataType::Utf8)
        .map_err(|e| (None, DataErrorClass::WrongType, e.to_string()))?;
    let text = text.as_string::<i32>();
    let mut builder = FixedSizeBinaryBuilder::with_capacity(text.len(), uuid::UUID_BYTES);
    for (row, value) in text.iter().enumerate() {
        match value {
            None => builder.append_null(),
            Some(value) => {
                let bytes = uuid::parse(value).ok_or_else(|| {
                    (
                        Some(row),
                        DataErrorClass::InvalidText,
                        uuid::invalid_message(value),
                    )
                })?;
                builder
                    .append_value(bytes)
                    .expect("a parsed UUID has 16 bytes");
            }
        }
    }
    Ok(Arc::new(builder.finish()))
}

/// JSON and JSONB values must each be one JSON value.
fn check_json(array: &ArrayRef) -> Result<(), CoerceError> {
    let Some(strings) = array.as_string_opt::<i32>() else {
        return Ok(());
    };
    for (row, value) in strings.iter().enumerate() {
        if let Some(value) = value {
            json::validate(value).map_err(|reason| {
                (
                    Some(row),
                    DataErrorClass::InvalidText,
                    json::invalid_message(&reason),
                )
            })?;
        }
    }
    Ok(())
}

fn is_binary(ty: &DataType) -> bool {
    matches!(
        ty,
        DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_)
    )
}

/// Binary bytes into a TEXT column: accepted when they are valid UTF-8.
fn binary_to_text(array: &ArrayRef) -> Result<ArrayRef, CoerceError> {
    let binary = cast(array, &DataType::Binary)
        .map_err(|e| (None, DataErrorClass::WrongType, e.to_string()))?;
    let binary = binary.as_binary::<i32>();
    let mut values = Vec::with_capacity(binary.len());
    for i in 0..binary.len() {
        if binary.is_null(i) {
            values.push(None);
            continue;
        }
        match std::str::from_utf8(binary.value(i)) {
            Ok(s) => values.push(Some(s)),
            Err(e) => {
                return Err((
                    Some(i),
                    DataErrorClass::BadEncoding,
                    format!("invalid byte sequence for encoding \"UTF8\": {e}"),
                ));
            }
        }
    }
    Ok(Arc::new(StringArray::from(values)))
}

fn is_timestamp_widening(source: &DataType, target: &DataType) -> bool {
    match (source, target) {
        (DataType::Timestamp(_, from_tz), DataType::Timestamp(TimeUnit::Microsecond, to_tz)) => {
            from_tz.is_some() == to_tz.is_some()
        }
        _ => false,
    }
}

/// Conversions that never lose information or change meaning.
fn is_safe_widening(source: &DataType, target: &DataType) -> bool {
    use DataType::*;
    match target {
        Int16 => matches!(source, Int8 | UInt8),
        Int32 => matches!(source, Int8 | Int16 | UInt8 | UInt16),
        Int64 => matches!(source, Int8 | Int16 | Int32 | UInt8 | UInt16 | UInt32),
        Float32 => matches!(source, Float16 | Int8 | Int16 | UInt8 | UInt16),
        Float64 => matches!(
            source,
            Float16 | Float32 | Int8 | Int16 | Int32 | UInt8 | UInt16 | UInt32
        ),
        Decimal128(p, s) => {
            let int_digits = i16::from(*p) - i16::from(*s);
            match source {
                Decimal128(sp, ss) => ss <= s && i16::from(*sp) - i16::from(*ss) <= int_digits,
                Int8 | UInt8 => int_digits >= 3,
                Int16 | UInt16 => int_digits >= 5,
                Int32 | UInt32 => int_digits >= 10,
                Int64 => int_digits >= 19,
                _ => false,
            }
        }
        Utf8 => {
            matches!(source, LargeUtf8 | Utf8View)
                || matches!(source, Dictionary(_, v) if matches!(**v, Utf8 | LargeUtf8 | Utf8View))
        }
        Binary => matches!(source, LargeBinary | BinaryView | FixedSizeBinary(_)),
        Timestamp(_, _) => is_timestamp_widening(source, target),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{BinaryArray, Int32Array, Int64Array};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn table() -> TableDef {
        TableDef {
            retention_seconds: None,
            rows_removed: false,
            v: 1,
            id: 1,
            name: "t".into(),
            columns: vec![
                ColumnDef {
                    name: "id".into(),
                    column_type: ColumnType::BigInt,
                    nullable: false,
                },
                ColumnDef {
                    name: "name".into(),
                    column_type: ColumnType::Text,
                    nullable: true,
                },
            ],
            time_column: None,
            bloom_filter_columns: vec![],
        }
    }

    fn batch(fields: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let schema = Schema::new(
            fields
                .iter()
                .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        );
        RecordBatch::try_new(
            Arc::new(schema),
            fields.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap()
    }

    #[test]
    fn int_widens_to_bigint_and_missing_nullable_column_is_null() {
        let def = table();
        let out = conform(
            &def,
            &def.arrow_schema(),
            &batch(vec![("id", Arc::new(Int32Array::from(vec![1, 2])))]),
            0,
        )
        .unwrap();
        assert_eq!(
            out.column(0)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .values(),
            &[1, 2]
        );
        assert_eq!(out.column(1).null_count(), 2);
    }

    #[test]
    fn null_in_not_null_names_the_row() {
        let def = table();
        let input = batch(vec![(
            "id",
            Arc::new(Int64Array::from(vec![Some(1), None])),
        )]);
        let err = conform(&def, &def.arrow_schema(), &input, 10).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidData {
                    row: Some(11),
                    class: DataErrorClass::NotNull,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("row 12"), "{err}");
    }

    #[test]
    fn invalid_utf8_bytes_are_rejected_for_text() {
        let def = table();
        let bytes: ArrayRef = Arc::new(BinaryArray::from(vec![
            b"ok".as_ref(),
            b"\xff\xfe".as_ref(),
        ]));
        let input = batch(vec![
            ("id", Arc::new(Int64Array::from(vec![1, 2]))),
            ("name", bytes),
        ]);
        let err = conform(&def, &def.arrow_schema(), &input, 0).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidData {
                    row: Some(1),
                    class: DataErrorClass::BadEncoding,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn narrowing_and_unknown_columns_are_rejected() {
        let def = table();
        let input = batch(vec![(
            "id",
            Arc::new(arrow::array::Float64Array::from(vec![1.5])),
        )]);
        assert!(matches!(
            conform(&def, &def.arrow_schema(), &input, 0),
            Err(Error::InvalidData {
                class: DataErrorClass::WrongType,
                ..
            })
        ));
        let input = batch(vec![
            ("id", Arc::new(Int64Array::from(vec![1]))),
            ("nope", Arc::new(Int64Array::from(vec![1]))),
        ]);
        assert!(matches!(
            conform(&def, &def.arrow_schema(), &input, 0),
            Err(Error::ColumnNotFound { .. })
        ));
    }

    #[test]
    fn character_lengths_are_enforced_in_characters() {
        let strings = |v: Vec<Option<&str>>| Arc::new(StringArray::from(v)) as ArrayRef;
        let char3 = ColumnType::Char { length: Some(3) };
        let out = constrain(
            char3,
            strings(vec![Some("ab  "), Some("éèà"), None, Some("R")]),
        )
        .unwrap();
        let out = out.as_string::<i32>();
        assert_eq!(out.value(0), "ab");
        assert_eq!(out.value(1), "éèà");
        assert!(out.is_null(2));
        assert_eq!(out.value(3), "R");
        let (row, class, reason) =
            constrain(char3, strings(vec![Some("ok"), Some("abcd")])).unwrap_err();
        assert_eq!((row, class), (Some(1), DataErrorClass::TooLong));
        assert_eq!(reason, "value too long for type character(3)");

        let varchar2 = ColumnType::Varchar { length: 2 };
        // Trailing blanks are kept in VARCHAR, and cut (not refused) beyond the length.
        let out = constrain(varchar2, strings(vec![Some("a "), Some("ab   ")])).unwrap();
        let out = out.as_string::<i32>();
        assert_eq!((out.value(0), out.value(1)), ("a ", "ab"));
        let (row, class, reason) = constrain(varchar2, strings(vec![Some("abc")])).unwrap_err();
        assert_eq!((row, class), (Some(0), DataErrorClass::TooLong));
        assert_eq!(reason, "value too long for type character varying(2)");
    }
}
