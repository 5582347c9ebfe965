//! The JSON accessors dashboards use, over JSON/JSONB text (see [`crate::types::json`]):
//!
//! - `j -> 'key'`, `j -> 2` (`json_get`): the member or element, as JSON;
//! - `j ->> 'key'`, `j ->> 2` (`json_get_text`): the same as text (a string unquoted, `null`
//!   as SQL NULL);
//! - `j #> '{a,b}'`, `json_extract_path(j, 'a', 'b')`: the value at a path, as JSON;
//! - `j #>> '{a,b}'`, `json_extract_path_text(j, 'a', 'b')`: the same as text (also spelled
//!   `jsonb_extract_path[_text]`); a path step into an array is its index;
//! - `json_in(text)`, `jsonb_in(text)`: text checked to be JSON (what `::json` casts become);
//!   `json_out(json)`: the same text typed text (what `::text` of JSON becomes).
//!
//! JSON results are `Utf8` whose field names the type (`tally.sql_type` = `json`, or `jsonb`
//! when the input is JSONB), so clients see json/jsonb columns. The operators reach these
//! functions through [`JsonOperators`], an [`ExprPlanner`].

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray, StringBuilder};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DFSchema, ScalarValue, exec_err, plan_err};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility, lit,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;

use crate::error::{DataErrorClass, Error, to_datafusion};
use crate::types::ColumnType;
use crate::types::json::{self, Step};

/// The JSON functions, to register on a session.
pub(super) fn functions() -> Vec<Arc<ScalarUDF>> {
    let access = |name, aliases: &[&str], output, path| {
        Arc::new(ScalarUDF::from(JsonAccess {
            name,
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            output,
            path,
            signature: Signature::user_defined(Volatility::Immutable),
        }))
    };
    vec![
        access("json_get", &[], Output::Json, false),
        access("json_get_text", &[], Output::Text, false),
        access(
            "json_extract_path",
            &["jsonb_extract_path"],
            Output::Json,
            true,
        ),
        access(
            "json_extract_path_text",
            &["jsonb_extract_path_text"],
            Output::Text,
            true,
        ),
        Arc::new(ScalarUDF::from(JsonIn::new(ColumnType::Json))),
        Arc::new(ScalarUDF::from(JsonIn::new(ColumnType::Jsonb))),
        Arc::new(ScalarUDF::from(JsonIn::new(ColumnType::Text))),
    ]
}

fn invalid(reason: &str) -> datafusion::error::DataFusionError {
    to_datafusion(Error::InvalidValue {
        class: DataErrorClass::InvalidText,
        reason: json::invalid_message(reason),
    })
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// The JSON type of a function's result: JSONB when its JSON argument is JSONB, else JSON.
fn json_field(name: &str, input: Option<&FieldRef>, nullable: bool) -> Field {
    let kind = match input.and_then(|f| ColumnType::from_field(f)) {
        Some(ColumnType::Jsonb) => ColumnType::Jsonb,
        _ => ColumnType::Json,
    };
    kind.field(name, nullable)
}

/// What an accessor returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Output {
    /// The value as JSON text.
    Json,
    /// The value's text form (`->>`).
    Text,
}

/// One of the accessors: `->`/`->>` (one key or index) or a path of keys.
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonAccess {
    name: &'static str,
    aliases: Vec<String>,
    output: Output,
    /// Path semantics (`#>>`, `json_extract_path_text`): any number of text steps, each an
    /// index when it meets an array. Otherwise one step, a key for objects (text) or an
    /// index for arrays (integer), as `->` takes.
    path: bool,
    signature: Signature,
}

impl ScalarUDFImpl for JsonAccess {
    fn name(&self) -> &str {
        self.name
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        if arg_types.len() < 2 || (!self.path && arg_types.len() != 2) {
            return plan_err!(
                "{} takes a JSON value and {}",
                self.name,
                if self.path { "path steps" } else { "one key" }
            );
        }
        arg_types
            .iter()
            .enumerate()
            .map(|(i, t)| match t {
                DataType::Null => Ok(DataType::Utf8),
                t if is_text(t) => Ok(DataType::Utf8),
                t if i > 0 && t.is_integer() && !self.path => Ok(DataType::Int64),
                t if i > 0 && t.is_integer() => Ok(DataType::Utf8),
                other => plan_err!(
                    "{}: argument {} must be {}, not {other}",
                    self.name,
                    i + 1,
                    if i == 0 { "json" } else { "text or an integer" }
                ),
            })
            .collect()
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        Ok(Arc::new(match self.output {
            Output::Json => json_field(self.name, args.arg_fields.first(), true),
            Output::Text => Field::new(self.name, DataType::Utf8, true),
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<DfResult<Vec<_>>>()?;
        let out = self.access(&arrays, rows)?;
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

impl JsonAccess {
    fn access(&self, arrays: &[ArrayRef], rows: usize) -> DfResult<ArrayRef> {
        let docs = cast(&arrays[0], &DataType::Utf8)?;
        let docs = docs.as_string::<i32>();
        let steps: Vec<ArrayRef> = arrays[1..]
            .iter()
            .map(|a| match a.data_type() {
                DataType::Int64 => Ok(Arc::clone(a)),
                _ => cast(a, &DataType::Utf8),
            })
            .collect::<Result<_, _>>()?;
        let mut out = StringBuilder::with_capacity(rows, 16 * rows);
        'rows: for row in 0..rows {
            if docs.is_null(row) {
                out.append_null();
                continue;
            }
            let mut value = docs.value(row);
            for step in &steps {
                if step.is_null(row) {
                    out.append_null();
                    continue 'rows;
                }
                let step = match step.data_type() {
                    DataType::Int64 => Step::Index(
                        step.as_primitive::<arrow::datatypes::Int64Type>()
                            .value(row),
                    ),
                    _ => {
                        let key = step.as_string::<i32>().value(row);
                        if self.path && value.trim_start().starts_with('[') {
                            match key.trim().parse::<i64>() {
                                Ok(index) => Step::Index(index),
                                Err(_) => {
                                    out.append_null();
                                    continue 'rows;
                                }
                            }
                        } else {
                            Step::Key(key)
                        }
                    }
                };
                match json::get(value, step).map_err(|e| invalid(&e))? {
                    Some(found) => value = found,
                    None => {
                        out.append_null();
                        continue 'rows;
                    }
                }
            }
            match self.output {
                Output::Json => out.append_value(value),
                Output::Text => match json::as_text(value).map_err(|e| invalid(&e))? {
                    Some(text) => out.append_value(text),
                    None => out.append_null(),
                },
            }
        }
        Ok(Arc::new(out.finish()))
    }
}

/// `json_in(text)` / `jsonb_in(text)`: the text, checked to be JSON, typed json/jsonb; and
/// `json_out(json)` (`kind` text): JSON's text, typed text (the field loses the JSON mark).
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct JsonIn {
    kind: ColumnType,
    signature: Signature,
}

impl JsonIn {
    fn new(kind: ColumnType) -> Self {
        JsonIn {
            kind,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// The name of the function that checks text into `kind` (JSON or JSONB), or that gives JSON
/// as text (`kind` text).
pub(super) fn json_in_name(kind: ColumnType) -> &'static str {
    match kind {
        ColumnType::Jsonb => "jsonb_in",
        ColumnType::Text => "json_out",
        _ => "json_in",
    }
}

impl ScalarUDFImpl for JsonIn {
    fn name(&self) -> &str {
        json_in_name(self.kind)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        match arg_types {
            [t] if is_text(t) || *t == DataType::Null => Ok(vec![DataType::Utf8]),
            [other] => plan_err!("{} takes text, not {other}", self.name()),
            _ => plan_err!("{} takes one argument", self.name()),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let nullable = args.arg_fields.iter().any(|f| f.is_nullable());
        Ok(Arc::new(self.kind.field(self.name(), nullable)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return exec_err!("{} takes one argument", self.name());
        };
        if self.kind == ColumnType::Text {
            return Ok(arg.clone());
        }
        match arg {
            ColumnarValue::Scalar(scalar) => {
                if let Some(Some(text)) = scalar.try_as_str() {
                    json::validate(text).map_err(|e| invalid(&e))?;
                }
                Ok(ColumnarValue::Scalar(scalar.clone()))
            }
            ColumnarValue::Array(array) => {
                let text: &StringArray = array.as_string::<i32>();
                for value in text.iter().flatten() {
                    json::validate(value).map_err(|e| invalid(&e))?;
                }
                Ok(ColumnarValue::Array(Arc::clone(array)))
            }
        }
    }
}

/// Plans `->`, `->>`, `#>` and `#>>` on text (JSON) operands as calls of the accessors.
#[derive(Debug)]
pub(crate) struct JsonOperators {
    get: Arc<ScalarUDF>,
    get_text: Arc<ScalarUDF>,
    path: Arc<ScalarUDF>,
    path_text: Arc<ScalarUDF>,
}

impl JsonOperators {
    /// The planner, calling the functions `functions` holds.
    pub(super) fn new(functions: &[Arc<ScalarUDF>]) -> Self {
        let find = |name: &str| super::registered(functions, name);
        JsonOperators {
            get: find("json_get"),
            get_text: find("json_get_text"),
            path: find("json_extract_path"),
            path_text: find("json_extract_path_text"),
        }
    }
}

impl ExprPlanner for JsonOperators {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> DfResult<PlannerResult<RawBinaryExpr>> {
        let function = match expr.op {
            BinaryOperator::Arrow => &self.get,
            BinaryOperator::LongArrow => &self.get_text,
            BinaryOperator::HashArrow => &self.path,
            BinaryOperator::HashLongArrow => &self.path_text,
            _ => return Ok(PlannerResult::Original(expr)),
        };
        let left = expr.left.get_type(schema)?;
        if !(is_text(&left) || left == DataType::Null) {
            return Ok(PlannerResult::Original(expr));
        }
        let mut args = vec![expr.left];
        if matches!(
            expr.op,
            BinaryOperator::HashArrow | BinaryOperator::HashLongArrow
        ) {
            args.extend(path_steps(&expr.right)?);
        } else {
            args.push(expr.right);
        }
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            ScalarFunction::new_udf(Arc::clone(function), args),
        )))
    }
}

/// The steps of a constant path (`'{a,b}'`, PostgreSQL's text-array syntax) as literals.
fn path_steps(path: &Expr) -> DfResult<Vec<Expr>> {
    let text = match path {
        Expr::Literal(value, _) => value.try_as_str().flatten(),
        Expr::Cast(cast) => match cast.expr.as_ref() {
            Expr::Literal(value, _) => value.try_as_str().flatten(),
            _ => None,
        },
        _ => None,
    };
    let Some(text) = text else {
        return Err(to_datafusion(Error::NotSupported(
            "#> and #>> take a constant path such as '{a,b}'".into(),
        )));
    };
    let steps = parse_text_array(text).ok_or_else(|| {
        to_datafusion(Error::InvalidValue {
            class: DataErrorClass::InvalidText,
            reason: format!("malformed array literal: \"{text}\""),
        })
    })?;
    Ok(steps
        .into_iter()
        .map(|s| match s {
            Some(s) => lit(s),
            None => lit(ScalarValue::Utf8(None)),
        })
        .collect())
}

/// A one-dimensional text array in PostgreSQL's syntax: `{a,"b c",NULL}`.
fn parse_text_array(text: &str) -> Option<Vec<Option<String>>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut out = Vec::new();
    if inner.trim().is_empty() {
        return Some(out);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut element = String::new();
        let mut quoted = false;
        if chars.next_if_eq(&'"').is_some() {
            quoted = true;
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => element.push(chars.next()?),
                    c => element.push(c),
                }
            }
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                match c {
                    '\\' => element.push(chars.next()?),
                    '"' | '{' | '}' => return None,
                    c => element.push(c),
                }
            }
            let trimmed = element.trim_end().len();
            element.truncate(trimmed);
            if element.is_empty() {
                return None;
            }
        }
        out.push((quoted || !element.eq_ignore_ascii_case("null")).then_some(element));
        match chars.next() {
            None => return Some(out),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_arrays_parse_as_postgres_reads_them() {
        let s = |v: &[Option<&str>]| v.iter().map(|s| s.map(String::from)).collect::<Vec<_>>();
        assert_eq!(parse_text_array("{a,b}"), Some(s(&[Some("a"), Some("b")])));
        assert_eq!(
            parse_text_array(" { a , \"b c\", NULL, \"NULL\" } "),
            Some(s(&[Some("a"), Some("b c"), None, Some("NULL")]))
        );
        assert_eq!(parse_text_array("{}"), Some(vec![]));
        assert_eq!(
            parse_text_array("{1,-2}"),
            Some(s(&[Some("1"), Some("-2")]))
        );
        for bad in ["a,b", "{a,}", "{\"a}", "{a\"b}", "{a} x"] {
            assert_eq!(parse_text_array(bad), None, "{bad}");
        }
    }
}
