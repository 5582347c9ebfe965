//! Output columns that share a name: `SELECT a, a FROM t`, `SELECT count(*), count(*) …`,
//! `SELECT x AS n, y AS n …`. PostgreSQL returns both columns under the one name; DataFusion
//! refuses to plan such a projection ("Projections require unique expression names").
//!
//! When a query fails that way, its outermost `SELECT` is planned again with every item under
//! an alias of its own (`__tally_output_<i>`); a projection on top then gives each column the
//! name it would have had (the user's alias, or DataFusion's name for the expression), with a
//! distinct qualifier for each column of a repeated name, which DataFusion's schemas allow. The
//! Arrow schema a client sees drops qualifiers, so the names repeat there, as in PostgreSQL.
//! Queries that plan the first time are never touched.

use std::collections::HashMap;

use datafusion::common::{Column, DataFusionError, TableReference};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, Ident, SelectItem, SetExpr};

/// The prefix of the aliases given while planning again.
const PREFIX: &str = "__tally_output_";

/// Whether `statement` is a query (the only statement whose output names are kept).
pub(crate) fn is_query(statement: &DfStatement) -> bool {
    matches!(statement, DfStatement::Statement(s) if matches!(**s, ast::Statement::Query(_)))
}

/// Whether `error` is DataFusion's refusal of two projected expressions of one name.
pub(crate) fn is_duplicate_names(error: &DataFusionError) -> bool {
    error
        .to_string()
        .contains("Projections require unique expression names")
}

/// Plans `statement` (whose first planning failed with [`is_duplicate_names`]) with its
/// outermost `SELECT`'s repeated names allowed; `None` when the statement is not a query with
/// such a `SELECT`, or when the names do not come from it (the caller reports the first error).
pub(crate) async fn plan(state: &SessionState, mut statement: DfStatement) -> Option<LogicalPlan> {
    let aliases = alias_items(&mut statement)?;
    let plan = state.statement_to_plan(statement).await.ok()?;
    rename(plan, &aliases).ok()
}

/// Gives every unnamed expression of the outermost `SELECT`, and every one whose alias another
/// item repeats, an alias of its own; returns the user's alias of each item so replaced (`None`
/// for the others). `None` when there is no such `SELECT`.
fn alias_items(statement: &mut DfStatement) -> Option<Vec<Option<String>>> {
    let DfStatement::Statement(statement) = statement else {
        return None;
    };
    let ast::Statement::Query(query) = statement.as_mut() else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    // An alias no other item repeats stays, so that ORDER BY and HAVING can still name it.
    let mut given: HashMap<String, usize> = HashMap::new();
    for item in &select.projection {
        if let SelectItem::ExprWithAlias { alias, .. } = item {
            *given.entry(alias.value.clone()).or_default() += 1;
        }
    }
    let mut aliases = Vec::with_capacity(select.projection.len());
    for (i, item) in select.projection.iter_mut().enumerate() {
        if let SelectItem::ExprWithAlias { alias, .. } = item
            && given[&alias.value] == 1
        {
            aliases.push(None);
            continue;
        }
        let internal = Ident::new(format!("{PREFIX}{i}"));
        let (expr, alias) = match std::mem::replace(item, SelectItem::Wildcard(Default::default()))
        {
            SelectItem::UnnamedExpr(expr) => (expr, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value)),
            other => {
                // Wildcards keep their columns' names.
                *item = other;
                aliases.push(None);
                continue;
            }
        };
        *item = SelectItem::ExprWithAlias {
            expr,
            alias: internal,
        };
        aliases.push(alias);
    }
    Some(aliases)
}

/// Puts a projection on `plan` that names each `__tally_output_<i>` column as the user's
/// query would have: `aliases[i]`, or DataFusion's name for the expression.
fn rename(plan: LogicalPlan, aliases: &[Option<String>]) -> datafusion::error::Result<LogicalPlan> {
    let natural = natural_names(&plan);
    let names: Vec<String> = plan
        .schema()
        .fields()
        .iter()
        .map(|field| {
            let name = field.name();
            match name
                .strip_prefix(PREFIX)
                .and_then(|i| i.parse::<usize>().ok())
            {
                Some(i) => aliases
                    .get(i)
                    .cloned()
                    .flatten()
                    .or_else(|| natural.get(name).cloned())
                    .unwrap_or_else(|| "?column?".into()),
                None => name.clone(),
            }
        })
        .collect();
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for name in &names {
        *uses.entry(name.as_str()).or_default() += 1;
    }
    let exprs: Vec<Expr> = plan
        .schema()
        .iter()
        .zip(&names)
        .enumerate()
        .map(|(i, ((qualifier, field), name))| {
            let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
            if uses[name.as_str()] > 1 {
                column.alias_qualified(Some(TableReference::bare(format!("{PREFIX}{i}"))), name)
            } else if field.name() == name {
                column
            } else {
                column.alias(name)
            }
        })
        .collect();
    LogicalPlanBuilder::from(plan).project(exprs)?.build()
}

/// DataFusion's own name for each aliased item's expression (what the column would have been
/// called without the alias), found in the projection that gives the aliases.
fn natural_names(plan: &LogicalPlan) -> HashMap<String, String> {
    let mut names = HashMap::new();
    let mut node = Some(plan);
    while let Some(current) = node {
        if let LogicalPlan::Projection(projection) = current {
            for expr in &projection.expr {
                if let Expr::Alias(alias) = expr
                    && alias.name.starts_with(PREFIX)
                    && let Ok((_, field)) = alias.expr.to_field(projection.input.schema())
                {
                    names.insert(alias.name.clone(), field.name().clone());
                }
            }
            if !names.is_empty() {
                break;
            }
        }
        // The projection sits under the query's sort, limit and distinct, each of one input.
        node = match current.inputs().as_slice() {
            [input] => Some(*input),
            _ => None,
        };
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_of_the_outermost_select_gets_an_alias() {
        let mut statements =
            crate::query::parse("SELECT a, a AS b, count(*), *, c AS b, d AS e FROM t ORDER BY e")
                .unwrap();
        let aliases = alias_items(&mut statements[0]).unwrap();
        let b = Some("b".to_string());
        assert_eq!(aliases, [None, b.clone(), None, None, b, None]);
        assert_eq!(
            statements[0].to_string(),
            "SELECT a AS __tally_output_0, a AS __tally_output_1, count(*) AS __tally_output_2, *, \
             c AS __tally_output_4, d AS e FROM t ORDER BY e"
        );
        let mut insert = crate::query::parse("INSERT INTO t SELECT a, a FROM u").unwrap();
        assert_eq!(alias_items(&mut insert[0]), None);
    }
}
