//! `uuid_in(text)` and `uuid_out(uuid)`: text to UUID and back, PostgreSQL's names for its
//! input and output functions. Casts between text and UUID are rewritten to them (see
//! [`super::types`]), since Arrow's casts between `Utf8` and `FixedSizeBinary(16)` would copy
//! raw bytes instead of reading the hex form.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, FixedSizeBinaryBuilder, StringBuilder};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::error::{DataErrorClass, Error, to_datafusion};
use crate::types::{ColumnType, uuid};

/// The Arrow type of UUID values.
pub(crate) const UUID_TYPE: DataType = DataType::FixedSizeBinary(uuid::UUID_BYTES);

/// The bytes of a UUID's text, or the 22P02 error PostgreSQL gives for text that is not one.
pub(crate) fn parse(text: &str) -> DfResult<[u8; 16]> {
    uuid::parse(text).ok_or_else(|| {
        to_datafusion(Error::InvalidValue {
            class: DataErrorClass::InvalidText,
            reason: uuid::invalid_message(text),
        })
    })
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// `uuid_in(text) → uuid`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct UuidIn {
    signature: Signature,
}

impl UuidIn {
    pub(super) fn new() -> Self {
        UuidIn {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for UuidIn {
    fn name(&self) -> &str {
        "uuid_in"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        match arg_types {
            [t] if is_text(t) || *t == UUID_TYPE => Ok(vec![t.clone()]),
            [DataType::Null] => Ok(vec![DataType::Utf8]),
            [other] => plan_err!("uuid_in takes text, not {other}"),
            _ => plan_err!("uuid_in takes one argument"),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(UUID_TYPE)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let nullable = args.arg_fields.iter().any(|f| f.is_nullable());
        Ok(Arc::new(ColumnType::Uuid.field(self.name(), nullable)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return exec_err!("uuid_in takes one argument");
        };
        match arg {
            ColumnarValue::Scalar(scalar) => {
                let value = match scalar {
                    ScalarValue::FixedSizeBinary(16, v) => v.clone(),
                    other => match other.try_as_str() {
                        Some(Some(text)) => Some(parse(text)?.to_vec()),
                        Some(None) => None,
                        None => return exec_err!("uuid_in: unexpected argument {other:?}"),
                    },
                };
                Ok(ColumnarValue::Scalar(ScalarValue::FixedSizeBinary(
                    uuid::UUID_BYTES,
                    value,
                )))
            }
            ColumnarValue::Array(array) if *array.data_type() == UUID_TYPE => {
                Ok(ColumnarValue::Array(Arc::clone(array)))
            }
            ColumnarValue::Array(array) => {
                let text = cast(array, &DataType::Utf8)?;
                let text = text.as_string::<i32>();
                let mut out = FixedSizeBinaryBuilder::with_capacity(text.len(), uuid::UUID_BYTES);
                for value in text.iter() {
                    match value {
                        Some(value) => out.append_value(parse(value)?)?,
                        None => out.append_null(),
                    }
                }
                Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
            }
        }
    }
}

/// `uuid_out(uuid) → text`: the canonical lowercase `8-4-4-4-12` form.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct UuidOut {
    signature: Signature,
}

impl UuidOut {
    pub(super) fn new() -> Self {
        UuidOut {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for UuidOut {
    fn name(&self) -> &str {
        "uuid_out"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        match arg_types {
            [t] if *t == UUID_TYPE => Ok(vec![UUID_TYPE]),
            [DataType::Null] => Ok(vec![UUID_TYPE]),
            [other] => plan_err!("uuid_out takes a uuid, not {other}"),
            _ => plan_err!("uuid_out takes one argument"),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let nullable = args.arg_fields.iter().any(|f| f.is_nullable());
        Ok(Arc::new(Field::new(self.name(), DataType::Utf8, nullable)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return exec_err!("uuid_out takes one argument");
        };
        match arg {
            ColumnarValue::Scalar(ScalarValue::FixedSizeBinary(16, v)) => Ok(
                ColumnarValue::Scalar(ScalarValue::Utf8(v.as_deref().map(uuid::format))),
            ),
            ColumnarValue::Scalar(other) if other.is_null() => {
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))
            }
            ColumnarValue::Array(array) if *array.data_type() == UUID_TYPE => {
                let bytes = array.as_fixed_size_binary();
                let mut out = StringBuilder::with_capacity(bytes.len(), 36 * bytes.len());
                let mut text = String::with_capacity(36);
                for value in bytes.iter() {
                    match value {
                        Some(value) => {
                            text.clear();
                            uuid::write(value, &mut text);
                            out.append_value(&text);
                        }
                        None => out.append_null(),
                    }
                }
                Ok(ColumnarValue::Array(Arc::new(out.finish())))
            }
            other => exec_err!(
                "uuid_out: unexpected argument of type {}",
                other.data_type()
            ),
        }
    }
}
