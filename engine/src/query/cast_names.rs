//! `SELECT day::text FROM t ORDER BY day`: PostgreSQL names the cast column `day` and sorts by
//! it. DataFusion names the cast after its column too, then adds `t.day` for the sort, and
//! refuses the two equal names ("Projections require unique expression names", DataFusion
//! issue 13558). So before planning, an unnamed cast of a column in a sorted query gets that
//! column's name as an explicit alias, which is what PostgreSQL calls it: the sort then refers
//! to the output column, as in PostgreSQL.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    Expr, Ident, Query, SelectItem, SetExpr, VisitMut, VisitorMut,
};

/// Aliases the unnamed column casts of every sorted `SELECT` in `statement` (see the module).
pub(crate) fn name_sorted_casts(statement: &mut DfStatement) {
    match statement {
        DfStatement::Statement(statement) => {
            let _ = statement.visit(&mut SortedCasts);
        }
        DfStatement::Explain(explain) => name_sorted_casts(&mut explain.statement),
        _ => {}
    }
}

struct SortedCasts;

impl VisitorMut for SortedCasts {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if query.order_by.is_none() {
            return ControlFlow::Continue(());
        }
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        // The names the projection already gives: an alias equal to a cast's column must stay
        // the only column of that name.
        let mut taken = HashSet::new();
        for item in &select.projection {
            match item {
                SelectItem::ExprWithAlias { alias, .. } => {
                    taken.insert(alias.value.to_lowercase());
                }
                SelectItem::ExprWithAliases { aliases, .. } => {
                    taken.extend(aliases.iter().map(|a| a.value.to_lowercase()));
                }
                SelectItem::UnnamedExpr(expr) => {
                    if let Some(name) = column_name(expr) {
                        taken.insert(name.value.to_lowercase());
                    }
                }
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                    return ControlFlow::Continue(());
                }
            }
        }
        for item in select.projection.iter_mut() {
            let SelectItem::UnnamedExpr(expr) = item else {
                continue;
            };
            let Some(name) = cast_column(expr) else {
                continue;
            };
            if !taken.insert(name.value.to_lowercase()) {
                continue;
            }
            *item = SelectItem::ExprWithAlias {
                expr: expr.clone(),
                alias: name,
            };
        }
        ControlFlow::Continue(())
    }
}

/// The column a plain column reference names.
fn column_name(expr: &Expr) -> Option<Ident> {
    match expr {
        Expr::Identifier(ident) => Some(ident.clone()),
        Expr::CompoundIdentifier(parts) => parts.last().cloned(),
        _ => None,
    }
}

/// The column of `column::type` (also nested casts, `CAST(column AS type)`).
fn cast_column(expr: &Expr) -> Option<Ident> {
    match expr {
        Expr::Cast { expr, .. } => column_name(expr).or_else(|| cast_column(expr)),
        Expr::Nested(inner) => cast_column(inner),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut statements = crate::query::parse(sql).expect("parses");
        name_sorted_casts(&mut statements[0]);
        statements[0].to_string()
    }

    #[test]
    fn a_sorted_cast_of_a_column_is_named_after_it() {
        assert_eq!(
            rewritten("SELECT day::TEXT, n FROM t ORDER BY day"),
            "SELECT day::TEXT AS day, n FROM t ORDER BY day"
        );
        assert_eq!(
            rewritten("SELECT CAST(t.day AS DATE) FROM t ORDER BY 1"),
            "SELECT CAST(t.day AS DATE) AS day FROM t ORDER BY 1"
        );
    }

    #[test]
    fn names_already_given_and_unsorted_queries_are_left_alone() {
        for sql in [
            "SELECT day::TEXT FROM t",
            "SELECT day::TEXT AS d FROM t ORDER BY day",
            "SELECT day, day::TEXT FROM t ORDER BY day",
            "SELECT x AS day, day::TEXT FROM t ORDER BY day",
            "SELECT *, day::TEXT FROM t ORDER BY day",
            "SELECT (a + 1)::TEXT FROM t ORDER BY a",
        ] {
            assert_eq!(rewritten(sql), sql, "{sql}");
        }
    }
}
