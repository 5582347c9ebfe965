//! Pruning SELECTs that read catalogs Tally never populates: such a SELECT returns no rows,
//! so it becomes `SELECT NULL AS <its column names> WHERE false`, and DataFusion never sees
//! the functions and syntax around it.

use std::ops::ControlFlow;

use tally_engine::reexports::datafusion::sql::sqlparser::ast::{
    Expr, GroupByExpr, Ident, JoinOperator, Query, Select, SelectItem, SetExpr, TableFactor, Visit,
    Visitor,
};

use super::names::{Names, postgres_name};
use super::{is_pg_catalog, null, parse_select};

/// Replaces every SELECT of `body` that reads an always-empty catalog with one returning the
/// same number of NULL columns and no rows. Returns whether all of `body` was replaced.
pub(super) fn prune(body: &mut SetExpr) -> bool {
    match body {
        SetExpr::Select(select) => {
            if reads_empty_catalog(select)
                && !aggregates_everything(select)
                && let Some(empty) = empty_select(select)
            {
                **select = empty;
                return true;
            }
            false
        }
        SetExpr::SetOperation { left, right, .. } => {
            let left = prune(left);
            let right = prune(right);
            left && right
        }
        _ => false,
    }
}

/// Whether a FROM item that is an always-empty catalog makes the SELECT return no rows: as a
/// FROM item itself, on the left of a left join, or on either side of an inner or cross join.
fn reads_empty_catalog(select: &Select) -> bool {
    select.from.iter().any(|item| {
        let root = is_empty_catalog(&item.relation)
            && item.joins.iter().all(|j| {
                !matches!(
                    j.join_operator,
                    JoinOperator::Right(_)
                        | JoinOperator::RightOuter(_)
                        | JoinOperator::FullOuter(_)
                )
            });
        root || item.joins.iter().any(|j| {
            is_empty_catalog(&j.relation)
                && matches!(
                    j.join_operator,
                    JoinOperator::Join(_) | JoinOperator::Inner(_) | JoinOperator::CrossJoin(_)
                )
        })
    })
}

fn is_empty_catalog(factor: &TableFactor) -> bool {
    let TableFactor::Table {
        name, args: None, ..
    } = factor
    else {
        return false;
    };
    let table = match name.0.as_slice() {
        [schema, table] if is_pg_catalog(schema) => table,
        [table] => table,
        _ => return false,
    };
    table
        .as_ident()
        .is_some_and(|i| super::super::is_always_empty(&i.value.to_lowercase()))
}

/// An aggregate without GROUP BY returns one row even over no input: such a SELECT is kept.
fn aggregates_everything(select: &Select) -> bool {
    let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
    if grouped {
        return false;
    }
    let mut finder = AggregateFinder { depth: 0 };
    select.projection.iter().any(|item| match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
            e.visit(&mut finder).is_break()
        }
        _ => false,
    })
}

/// Finds an aggregate call outside subqueries (those aggregate their own rows).
struct AggregateFinder {
    depth: usize,
}

impl Visitor for AggregateFinder {
    type Break = ();

    fn pre_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        const AGGREGATES: &[&str] = &[
            "count",
            "sum",
            "min",
            "max",
            "avg",
            "string_agg",
            "array_agg",
            "bool_and",
            "bool_or",
            "every",
        ];
        if self.depth == 0
            && let Expr::Function(f) = expr
            && let Some(name) = f.name.0.last().and_then(|p| p.as_ident())
            && AGGREGATES.contains(&name.value.to_lowercase().as_str())
        {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

/// `SELECT NULL AS <name>, … WHERE false` with the names of `select`'s columns; `None` if
/// its columns are not known (a wildcard).
fn empty_select(select: &Select) -> Option<Select> {
    let mut names = Names::default();
    let mut projection = Vec::new();
    for item in &select.projection {
        let name = match item {
            SelectItem::ExprWithAlias { alias, .. } => alias.value.clone(),
            SelectItem::UnnamedExpr(expr) => postgres_name(expr),
            _ => return None,
        };
        projection.push(SelectItem::ExprWithAlias {
            expr: null(),
            alias: Ident::with_quote('"', names.unique(name)),
        });
    }
    let mut empty = parse_select("SELECT NULL WHERE false");
    empty.projection = projection;
    Some(empty)
}
