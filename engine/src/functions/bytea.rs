//! `length(bytea)` and `octet_length(bytea)`: the number of bytes, as in PostgreSQL.
//! DataFusion's `length` casts its argument to text (failing on bytes that are not UTF-8) and
//! its `octet_length` refuses binary; these wrappers answer binary arguments themselves and
//! hand every other argument to DataFusion's function.

use std::sync::Arc;

use arrow::compute::kernels::length::length;
use arrow::datatypes::DataType;
use datafusion::common::{ScalarValue, plan_err};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// DataFusion's `function`, under `name`, extended to binary arguments.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct ByteLength {
    name: &'static str,
    builtin: Arc<ScalarUDF>,
    /// Whether the builtin takes any argument cast to text (`length`) or only text
    /// (`octet_length`).
    casts_to_text: bool,
    signature: Signature,
}

impl ByteLength {
    /// `length`, whose other aliases (`char_length`, `character_length`) stay DataFusion's.
    pub(super) fn length() -> Self {
        ByteLength::new(
            "length",
            datafusion::functions::unicode::character_length(),
            true,
        )
    }

    /// `octet_length`.
    pub(super) fn octet_length() -> Self {
        ByteLength::new(
            "octet_length",
            datafusion::functions::string::octet_length(),
            false,
        )
    }

    fn new(name: &'static str, builtin: Arc<ScalarUDF>, casts_to_text: bool) -> Self {
        ByteLength {
            name,
            builtin,
            casts_to_text,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

fn is_binary(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView
    )
}

fn is_text(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, value) => is_text(value),
        _ => false,
    }
}

impl ScalarUDFImpl for ByteLength {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        let [arg] = arg_types else {
            return plan_err!("{} takes one argument", self.name);
        };
        Ok(vec![match arg {
            t if is_binary(t) || is_text(t) => t.clone(),
            DataType::FixedSizeBinary(_) => DataType::Binary,
            DataType::Null => DataType::Utf8,
            _ if self.casts_to_text => DataType::Utf8,
            other => return plan_err!("{} takes text or bytea, not {other}", self.name),
        }])
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        match arg_types {
            [DataType::LargeBinary] => Ok(DataType::Int64),
            [t] if is_binary(t) => Ok(DataType::Int32),
            _ => self.builtin.return_type(arg_types),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let binary = args.args.len() == 1 && is_binary(&args.args[0].data_type());
        if !binary {
            return self.builtin.invoke_with_args(args);
        }
        Ok(match &args.args[0] {
            ColumnarValue::Array(array) => ColumnarValue::Array(length(array)?),
            ColumnarValue::Scalar(scalar) => ColumnarValue::Scalar(match scalar {
                ScalarValue::LargeBinary(v) => {
                    ScalarValue::Int64(v.as_ref().map(|b| b.len() as i64))
                }
                ScalarValue::Binary(v) | ScalarValue::BinaryView(v) => {
                    ScalarValue::Int32(v.as_ref().map(|b| b.len() as i32))
                }
                other => return plan_err!("{}: unexpected argument {other:?}", self.name),
            }),
        })
    }
}
