//! A column of a view's group values or aggregate arguments, cast once per batch to the
//! canonical representation of its key kind (64-bit integers, doubles, 128-bit decimals,
//! booleans, UTF-8 or bytes), which the typed update loops of `maintain.rs` and the key
//! encoder read without a per-value cast.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Decimal128Array, Float64Array, Int64Array,
    StringArray, new_null_array,
};
use arrow::buffer::NullBuffer;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type};

use super::key::{KeyKind, KeyValue, encode_bytes, encode_value};
use crate::error::{Error, Result};

/// A column of group values or aggregate arguments in its canonical representation.
pub(crate) enum Column {
    Int(Int64Array),
    Float(Float64Array),
    Decimal(Decimal128Array),
    Bool(BooleanArray),
    Text(StringArray),
    Bytes(BinaryArray),
    Null,
}

impl Column {
    /// Casts `array` to the canonical representation of `kind`.
    pub(crate) fn new(array: ArrayRef, kind: KeyKind) -> Result<Column> {
        if array.data_type() == &DataType::Null {
            return Ok(Column::Null);
        }
        let canon =
            |to: &DataType| cast(&array, to).map_err(|e| Error::arrow("evaluating a view", e));
        Ok(match kind {
            KeyKind::Int => {
                let ints = match array.data_type() {
                    DataType::Date32 => canon(&DataType::Int32).and_then(|a| {
                        cast(&a, &DataType::Int64).map_err(|e| Error::arrow("evaluating a view", e))
                    })?,
                    _ => canon(&DataType::Int64)?,
                };
                Column::Int(ints.as_primitive::<Int64Type>().clone())
            }
            KeyKind::Float => Column::Float(
                canon(&DataType::Float64)?
                    .as_primitive::<Float64Type>()
                    .clone(),
            ),
            KeyKind::Decimal => Column::Decimal(array.as_primitive::<Decimal128Type>().clone()),
            KeyKind::Bool => Column::Bool(array.as_boolean().clone()),
            KeyKind::Bytes => match array.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                    Column::Text(canon(&DataType::Utf8)?.as_string::<i32>().clone())
                }
                _ => Column::Bytes(canon(&DataType::Binary)?.as_binary::<i32>().clone()),
            },
        })
    }

    /// The column as an array of its canonical type (a NULL literal: 64-bit integer nulls).
    pub(super) fn into_array(self, rows: usize) -> ArrayRef {
        match self {
            Column::Int(a) => Arc::new(a),
            Column::Float(a) => Arc::new(a),
            Column::Decimal(a) => Arc::new(a),
            Column::Bool(a) => Arc::new(a),
            Column::Text(a) => Arc::new(a),
            Column::Bytes(a) => Arc::new(a),
            Column::Null => new_null_array(&DataType::Int64, rows),
        }
    }

    /// The column's null mask (`None`: no nulls, or the NULL literal, handled by callers).
    pub(super) fn nulls(&self) -> Option<&NullBuffer> {
        match self {
            Column::Int(a) => a.nulls(),
            Column::Float(a) => a.nulls(),
            Column::Decimal(a) => a.nulls(),
            Column::Bool(a) => a.nulls(),
            Column::Text(a) => a.nulls(),
            Column::Bytes(a) => a.nulls(),
            Column::Null => None,
        }
    }

    /// Appends the memcomparable encoding of row `i`'s value to a group key (as
    /// [`encode_value`] of [`Column::get`] would, without copying text).
    pub(super) fn encode_key(&self, i: usize, key: &mut Vec<u8>) {
        match self {
            Column::Text(a) if a.is_valid(i) => encode_bytes(key, a.value(i).as_bytes()),
            Column::Bytes(a) if a.is_valid(i) => encode_bytes(key, a.value(i)),
            other => encode_value(key, &other.get(i)),
        }
    }

    /// The value at row `i`.
    pub(crate) fn get(&self, i: usize) -> KeyValue {
        match self {
            Column::Null => KeyValue::Null,
            Column::Int(a) => {
                if a.is_null(i) {
                    KeyValue::Null
                } else {
                    KeyValue::Int(a.value(i))
                }
            }
            Column::Float(a) => {
                if a.is_null(i) {
                    KeyValue::Null
                } else {
                    KeyValue::Float(a.value(i))
                }
            }
            Column::Decimal(a) => {
                if a.is_null(i) {
                    KeyValue::Null
                } else {
                    KeyValue::Decimal(a.value(i))
                }
            }
            Column::Bool(a) => {
                if a.is_null(i) {
                    KeyValue::Null
                } else {
                    KeyValue::Bool(a.value(i))
                }
            }
            Column::Text(a) => {
                if a.is_null(i) {
                    KeyValue::Null
                } else {
                    KeyValue::Bytes(a.value(i).as_bytes().to_vec())
                }
            }
            Column::Bytes(a) => {
                if a.is_null(i) {
                    KeyValue::Null
                } else {
                    KeyValue::Bytes(a.value(i).to_vec())
                }
            }
        }
    }
}
