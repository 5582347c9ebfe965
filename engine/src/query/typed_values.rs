//! String literals in an INSERT's VALUES take the type of their UUID column, as PostgreSQL's
//! untyped literals do: `INSERT INTO t VALUES ('a0eebc99-…')` stores the UUID. DataFusion casts
//! each VALUES column to its target's Arrow type, and there is no Arrow cast from text to
//! `FixedSizeBinary(16)`, so the statement is rewritten before planning: such a literal
//! becomes `CAST('…' AS UUID)`, which the planner reads as a UUID (see
//! `functions::types`). JSON columns need nothing: their values are text, checked on ingest.

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, CastKind, SetExpr};

use super::ddl;
use crate::snapshot::Snapshot;
use crate::types::ColumnType;

/// Wraps the string literals of `statement`'s VALUES rows (an INSERT into a table of
/// `snapshot`) that go to UUID columns in `CAST(… AS UUID)`.
pub(crate) fn type_insert_literals(statement: &mut DfStatement, snapshot: &Snapshot) {
    let DfStatement::Statement(statement) = statement else {
        return;
    };
    let ast::Statement::Insert(insert) = statement.as_mut() else {
        return;
    };
    let ast::TableObject::TableName(name) = &insert.table else {
        return;
    };
    let Some(table) = ddl::object_name(name)
        .ok()
        .and_then(|t| snapshot.tables.get(&t))
    else {
        return;
    };
    let def = &table.def;
    // The target column of each VALUES position: the column list, or every column in order.
    let targets: Vec<Option<ColumnType>> = if insert.columns.is_empty() {
        def.columns.iter().map(|c| Some(c.column_type)).collect()
    } else {
        insert
            .columns
            .iter()
            .map(|c| {
                let name = c.0.last()?.as_ident()?;
                let column = def.column_index(&ddl::normalize(name))?;
                Some(def.columns[column].column_type)
            })
            .collect()
    };
    if !targets.contains(&Some(ColumnType::Uuid)) {
        return;
    }
    let Some(source) = insert.source.as_mut() else {
        return;
    };
    let SetExpr::Values(values) = source.body.as_mut() else {
        return;
    };
    for row in &mut values.rows {
        for (value, target) in row.iter_mut().zip(&targets) {
            if *target == Some(ColumnType::Uuid) && is_string_literal(value) {
                let literal = std::mem::replace(value, ast::Expr::value(ast::Value::Null));
                *value = ast::Expr::Cast {
                    kind: CastKind::Cast,
                    expr: Box::new(literal),
                    data_type: ast::DataType::Uuid,
                    array: false,
                    format: None,
                };
            }
        }
    }
}

fn is_string_literal(expr: &ast::Expr) -> bool {
    matches!(
        expr,
        ast::Expr::Value(v) if matches!(
            v.value,
            ast::Value::SingleQuotedString(_)
                | ast::Value::EscapedStringLiteral(_)
                | ast::Value::UnicodeStringLiteral(_)
                | ast::Value::DollarQuotedString(_)
        )
    )
}
