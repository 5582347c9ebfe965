//! The SQL types DataFusion does not know, taught to its planner:
//!
//! - [`TallyTypes`], a [`TypePlanner`]: `UUID` in casts is `FixedSizeBinary(16)`, `JSON` and
//!   `JSONB` are `Utf8`, each field marked with its type ([`ColumnType::field`]);
//! - [`TypedText`], a [`FunctionRewrite`] run before type coercion: text meets a UUID the way
//!   an untyped literal meets one in PostgreSQL. Casts between text and UUID become
//!   `uuid_in`/`uuid_out`, casts of text to JSON become `json_in`/`jsonb_in` (checked), and a
//!   text operand of a comparison (`=`, `<`, `IN`, `BETWEEN` …) with a UUID is read as a UUID.
//!   A constant is read once, while planning, so a bad one fails the statement with 22P02
//!   whether or not any row is compared with it.

use std::sync::Arc;

use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::expr::{Between, Cast, InList, ScalarFunction, TryCast};
use datafusion::logical_expr::expr_rewriter::FunctionRewrite;
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, Operator, ScalarUDF};
use datafusion::sql::sqlparser::ast;

use super::uuid::{UUID_TYPE, parse};
use crate::types::ColumnType;

/// Plans `UUID`, `JSON` and `JSONB` in casts and other type positions.
#[derive(Debug)]
pub(crate) struct TallyTypes;

impl TypePlanner for TallyTypes {
    fn plan_type_field(&self, sql_type: &ast::DataType) -> DfResult<Option<FieldRef>> {
        let ty = match sql_type {
            ast::DataType::Uuid => ColumnType::Uuid,
            ast::DataType::JSON => ColumnType::Json,
            ast::DataType::JSONB => ColumnType::Jsonb,
            _ => return Ok(None),
        };
        Ok(Some(Arc::new(ty.field("", true))))
    }
}

/// Reads text as UUID or JSON where the other operand or the cast asks for it.
#[derive(Debug)]
pub(crate) struct TypedText {
    uuid_in: Arc<ScalarUDF>,
    uuid_out: Arc<ScalarUDF>,
    json_in: Arc<ScalarUDF>,
    jsonb_in: Arc<ScalarUDF>,
    json_out: Arc<ScalarUDF>,
}

impl TypedText {
    /// The rewrite, calling the functions `functions` holds.
    pub(super) fn new(functions: &[Arc<ScalarUDF>]) -> Self {
        let find = |name: &str| super::registered(functions, name);
        TypedText {
            uuid_in: find("uuid_in"),
            uuid_out: find("uuid_out"),
            json_in: find(super::json::json_in_name(ColumnType::Json)),
            jsonb_in: find(super::json::json_in_name(ColumnType::Jsonb)),
            json_out: find(super::json::json_in_name(ColumnType::Text)),
        }
    }

    /// `expr` (text) read as a UUID: a constant now, anything else per row.
    fn to_uuid(&self, expr: Expr) -> DfResult<Expr> {
        if let Expr::Literal(value, _) = &expr
            && let Some(text) = value.try_as_str()
        {
            let bytes = text.map(parse).transpose()?;
            return Ok(Expr::Literal(
                ScalarValue::FixedSizeBinary(16, bytes.map(|b| b.to_vec())),
                None,
            ));
        }
        Ok(call(&self.uuid_in, expr))
    }

    /// The operand of a comparison with a UUID, read as one when it is text.
    fn uuid_operand(&self, expr: Expr, schema: &DFSchema) -> DfResult<(Expr, bool)> {
        if is_text(&expr.get_type(schema)?) {
            Ok((self.to_uuid(expr)?, true))
        } else {
            Ok((expr, false))
        }
    }

    fn cast(&self, expr: Expr, field: &FieldRef, schema: &DFSchema) -> DfResult<Option<Expr>> {
        let from = expr.get_type(schema)?;
        let to = field.data_type();
        Ok(
            if *to == UUID_TYPE && (is_text(&from) || from == DataType::Null) {
                Some(self.to_uuid(expr)?)
            } else if from == UUID_TYPE && is_text(to) {
                let text = call(&self.uuid_out, expr);
                Some(match to {
                    DataType::Utf8 => text,
                    _ => text.cast_to(to, schema)?,
                })
            } else if (is_text(&from) || from == DataType::Null) && is_text(to) {
                let json = |t| matches!(t, Some(ColumnType::Json | ColumnType::Jsonb));
                match ColumnType::from_field(field) {
                    Some(ColumnType::Json) => Some(call(&self.json_in, expr)),
                    Some(ColumnType::Jsonb) => Some(call(&self.jsonb_in, expr)),
                    // JSON cast to text is text: without this the no-op cast would be dropped
                    // and the column would stay typed json.
                    to_type
                        if !json(to_type)
                            && json(ColumnType::from_field(&expr.to_field(schema)?.1)) =>
                    {
                        let text = call(&self.json_out, expr);
                        Some(match to {
                            DataType::Utf8 => text,
                            _ => text.cast_to(to, schema)?,
                        })
                    }
                    _ => None,
                }
            } else {
                None
            },
        )
    }
}

fn call(function: &Arc<ScalarUDF>, arg: Expr) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(Arc::clone(function), vec![arg]))
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn is_comparison(op: Operator) -> bool {
    matches!(
        op,
        Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
            | Operator::IsDistinctFrom
            | Operator::IsNotDistinctFrom
    )
}

impl FunctionRewrite for TypedText {
    fn name(&self) -> &str {
        "tally_typed_text"
    }

    fn rewrite(
        &self,
        expr: Expr,
        schema: &DFSchema,
        _config: &ConfigOptions,
    ) -> DfResult<Transformed<Expr>> {
        match expr {
            Expr::Cast(Cast { expr, field }) => match self.cast(*expr.clone(), &field, schema)? {
                Some(rewritten) => Ok(Transformed::yes(rewritten)),
                None => Ok(Transformed::no(Expr::Cast(Cast { expr, field }))),
            },
            Expr::TryCast(TryCast { expr, field }) => {
                match self.cast(*expr.clone(), &field, schema)? {
                    Some(rewritten) => Ok(Transformed::yes(rewritten)),
                    None => Ok(Transformed::no(Expr::TryCast(TryCast { expr, field }))),
                }
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) if is_comparison(op) => {
                let (lt, rt) = (left.get_type(schema)?, right.get_type(schema)?);
                let (left, right, changed) = if lt == UUID_TYPE {
                    let (right, changed) = self.uuid_operand(*right, schema)?;
                    (*left, right, changed)
                } else if rt == UUID_TYPE {
                    let (left, changed) = self.uuid_operand(*left, schema)?;
                    (left, *right, changed)
                } else {
                    (*left, *right, false)
                };
                let expr = Expr::BinaryExpr(BinaryExpr::new(Box::new(left), op, Box::new(right)));
                Ok(if changed {
                    Transformed::yes(expr)
                } else {
                    Transformed::no(expr)
                })
            }
            Expr::InList(list) if list.expr.get_type(schema)? == UUID_TYPE => {
                let items = list
                    .list
                    .into_iter()
                    .map(|item| self.uuid_operand(item, schema).map(|(e, _)| e))
                    .collect::<DfResult<Vec<_>>>()?;
                Ok(Transformed::yes(Expr::InList(InList::new(
                    list.expr,
                    items,
                    list.negated,
                ))))
            }
            Expr::Between(between) if between.expr.get_type(schema)? == UUID_TYPE => {
                let (low, _) = self.uuid_operand(*between.low, schema)?;
                let (high, _) = self.uuid_operand(*between.high, schema)?;
                Ok(Transformed::yes(Expr::Between(Between::new(
                    between.expr,
                    between.negated,
                    Box::new(low),
                    Box::new(high),
                ))))
            }
            other => Ok(Transformed::no(other)),
        }
    }
}
