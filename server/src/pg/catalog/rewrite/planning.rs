//! Query shapes PostgreSQL plans and DataFusion does not, rewritten into equivalent ones:
//! functions in FROM, correlated key lookups in catalogs, and subqueries in ORDER BY.

use tally_engine::reexports::datafusion::sql::sqlparser::ast::{
    self, Expr, Ident, OrderByKind, Query, Select, SelectItem, SetExpr, TableFactor, Value, Visit,
    VisitMut, Visitor, VisitorMut,
};
use tally_engine::reexports::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use tally_engine::reexports::datafusion::sql::sqlparser::parser::Parser;

/// Table functions DataFusion has; any other function called in FROM returns a scalar.
const TABLE_FUNCTIONS: &[&str] = &["generate_series", "range", "unnest"];

/// A function call in FROM as PostgreSQL reads it: the alias of a function that returns one
/// column also names that column (`generate_series(1, 3) AS i` has column `i`), and a scalar
/// function is a one-row table (`string_to_array(x, ',') s`).
pub(super) fn function_in_from(factor: &TableFactor) -> Option<TableFactor> {
    let TableFactor::Table {
        name,
        alias,
        args: Some(_),
        ..
    } = factor
    else {
        return None;
    };
    let function = name.0.last()?.as_ident()?.value.to_lowercase();
    if TABLE_FUNCTIONS.contains(&function.as_str()) {
        let alias = alias.as_ref().filter(|a| a.columns.is_empty())?;
        if function == "unnest" {
            return None;
        }
        let mut factor = factor.clone();
        if let TableFactor::Table {
            alias: Some(alias_mut),
            ..
        } = &mut factor
        {
            alias_mut.columns = vec![ast::TableAliasColumnDef {
                name: alias.name.clone(),
                data_type: None,
            }];
        }
        return Some(factor);
    }
    let column = alias
        .as_ref()
        .map(|a| a.name.clone())
        .unwrap_or_else(|| Ident::new(&function));
    let mut call = factor.clone();
    if let TableFactor::Table { alias, .. } = &mut call {
        *alias = None;
    }
    let sql = format!("SELECT {call} AS {column}");
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, &sql).ok()?;
    let ast::Statement::Query(query) = statements.pop()? else {
        return None;
    };
    Some(TableFactor::Derived {
        lateral: false,
        subquery: query,
        alias: Some(alias.clone().unwrap_or(ast::TableAlias {
            explicit: true,
            name: column,
            columns: vec![],
            at: None,
        })),
        sample: None,
    })
}

/// `(SELECT c.relkind = 'c' FROM pg_class c WHERE c.oid = t.typrelid)`: a correlated scalar
/// subquery that looks a row up by key in a catalog, which DataFusion plans only when it is
/// aggregated. At most one row matches, so `max(…)` of it is the same value.
pub(super) fn aggregate_lookup(query: &Query) -> Option<Query> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let [item] = select.from.as_slice() else {
        return None;
    };
    let TableFactor::Table {
        name, args: None, ..
    } = &item.relation
    else {
        return None;
    };
    let table = name.0.last()?.as_ident()?.value.to_lowercase();
    if !item.joins.is_empty() || super::super::table(&table).is_none() || select.selection.is_none()
    {
        return None;
    }
    if !matches!(&select.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty()) {
        return None;
    }
    let [projection] = select.projection.as_slice() else {
        return None;
    };
    let (expr, alias) = match projection {
        ast::SelectItem::UnnamedExpr(e) => (e, None),
        ast::SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.clone())),
        _ => return None,
    };
    let aggregated = matches!(expr, Expr::Function(f) if f.name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| {
        ["count", "max", "min", "sum", "avg", "array_agg", "string_agg", "bool_and", "bool_or"]
            .contains(&i.value.to_lowercase().as_str())
    }));
    if aggregated {
        return None;
    }
    let sql = format!("SELECT max({expr})");
    let mut parsed = Parser::parse_sql(&PostgreSqlDialect {}, &sql).ok()?;
    let ast::Statement::Query(max) = parsed.pop()? else {
        return None;
    };
    let SetExpr::Select(max_select) = max.body.as_ref() else {
        return None;
    };
    let ast::SelectItem::UnnamedExpr(max_expr) = max_select.projection.first()?.clone() else {
        return None;
    };
    let mut query = query.clone();
    if let SetExpr::Select(select) = query.body.as_mut() {
        select.projection = vec![match alias {
            Some(alias) => ast::SelectItem::ExprWithAlias {
                expr: max_expr,
                alias,
            },
            None => ast::SelectItem::UnnamedExpr(max_expr),
        }];
    }
    Some(query)
}

/// `SELECT … ORDER BY CASE WHEN x IN (SELECT …) THEN 0 ELSE 1 END`: DataFusion evaluates
/// subqueries in projections and filters only. The ordering keys that hold a subquery become
/// hidden columns of an inner query, which an outer query sorts by and leaves out
/// (`ORDER BY 1` becomes the first column's name).
pub(super) fn hoist_order_subqueries(query: &mut Query) {
    let Some(order_by) = &query.order_by else {
        return;
    };
    let OrderByKind::Expressions(keys) = &order_by.kind else {
        return;
    };
    if !keys.iter().any(|k| has_subquery(&k.expr)) {
        return;
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return;
    };
    if select.distinct.is_some() {
        return;
    }
    let Some(names) = select
        .projection
        .iter()
        .map(output_name)
        .collect::<Option<Vec<Ident>>>()
    else {
        return;
    };
    let mut inner = query.clone();
    inner.order_by = None;
    inner.limit_clause = None;
    let mut outer_keys = Vec::with_capacity(keys.len());
    let SetExpr::Select(inner_select) = inner.body.as_mut() else {
        return;
    };
    for (n, key) in keys.iter().enumerate() {
        let mut key = key.clone();
        if has_subquery(&key.expr) {
            let alias = Ident::new(format!("__tally_order_{n}"));
            inner_select.projection.push(SelectItem::ExprWithAlias {
                expr: key.expr.clone(),
                alias: alias.clone(),
            });
            key.expr = Expr::Identifier(alias);
        } else if let Expr::Value(v) = &key.expr
            && let Value::Number(position, _) = &v.value
        {
            let Some(name) = position
                .parse::<usize>()
                .ok()
                .and_then(|p| names.get(p.wrapping_sub(1)))
            else {
                return;
            };
            key.expr = Expr::Identifier(name.clone());
        }
        outer_keys.push(key.to_string());
    }
    let columns: Vec<String> = names.iter().map(ToString::to_string).collect();
    let limit = query
        .limit_clause
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let sql = format!(
        "SELECT {} FROM ({inner}) AS __tally_sorted ORDER BY {}{limit}",
        columns.join(", "),
        outer_keys.join(", ")
    );
    if let Ok(mut parsed) = Parser::parse_sql(&PostgreSqlDialect {}, &sql)
        && let Some(ast::Statement::Query(outer)) = parsed.pop()
    {
        *query = *outer;
    }
}

/// `x IN (SELECT …)` in a SELECT list (Grafana's `CASE WHEN schema IN (…) THEN …`): DataFusion
/// plans IN subqueries only as filters, so in a projection it becomes
/// `array_has((SELECT array_agg(…) …), x)`, a scalar subquery. Inside CASE WHEN the two agree,
/// NULLs included (an unknown membership takes the ELSE branch either way).
pub(super) fn in_subqueries_in_projection(select: &mut Select) {
    struct Rewrite;
    impl VisitorMut for Rewrite {
        type Break = ();
        fn post_visit_expr(&mut self, expr: &mut Expr) -> std::ops::ControlFlow<()> {
            if let Expr::InSubquery {
                expr: needle,
                subquery,
                negated: false,
            } = expr
                && let Some(new) = array_membership(needle, subquery)
            {
                *expr = new;
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    for item in select.projection.iter_mut() {
        let _ = item.visit(&mut Rewrite);
    }
}

fn array_membership(needle: &Expr, subquery: &Query) -> Option<Expr> {
    let SetExpr::Select(inner) = subquery.body.as_ref() else {
        return None;
    };
    let [item] = inner.projection.as_slice() else {
        return None;
    };
    let value = match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
        _ => return None,
    };
    let mut aggregated = subquery.clone();
    let SetExpr::Select(select) = aggregated.body.as_mut() else {
        return None;
    };
    select.projection = vec![SelectItem::UnnamedExpr(
        Parser::new(&PostgreSqlDialect {})
            .try_with_sql(&format!("array_agg({value})"))
            .ok()?
            .parse_expr()
            .ok()?,
    )];
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("array_has(({aggregated}), {needle})"))
        .ok()?
        .parse_expr()
        .ok()
}

/// The name a projection item gives its output column, when it is plain to see.
fn output_name(item: &SelectItem) -> Option<Ident> {
    match item {
        SelectItem::ExprWithAlias { alias, .. } => Some(alias.clone()),
        SelectItem::UnnamedExpr(Expr::Identifier(ident)) => Some(ident.clone()),
        SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => parts.last().cloned(),
        _ => None,
    }
}

/// Whether an expression holds a subquery.
fn has_subquery(expr: &Expr) -> bool {
    struct Finder;
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> std::ops::ControlFlow<()> {
            match expr {
                Expr::Subquery(_) | Expr::InSubquery { .. } | Expr::Exists { .. } => {
                    std::ops::ControlFlow::Break(())
                }
                _ => std::ops::ControlFlow::Continue(()),
            }
        }
    }
    expr.visit(&mut Finder).is_break()
}
