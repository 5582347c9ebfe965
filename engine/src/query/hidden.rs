//! Sketch columns are hidden from `*`: a view's `<column>_sketch` columns (a serialized HLL
//! sketch per group, up to 16 KiB each) are left out of `SELECT *` and `SELECT v.*`, as
//! PostgreSQL leaves system columns out and ClickHouse its MATERIALIZED columns. Named, they
//! read as any column (`hll_union_agg(users_sketch)`).
//!
//! DataFusion has no hidden columns, so the statement is rewritten before planning: such a
//! wildcard gets `EXCLUDE (<sketch columns>)`. An unqualified `*` is rewritten when the
//! `SELECT` reads one relation; over a join it keeps every column (write `v.*` there).

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    ExcludeSelectItem, Ident, ObjectName, ObjectNamePart, Query, Select, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, TableFactor, VisitMut, VisitorMut,
    WildcardAdditionalOptions,
};

use super::{CATALOG, SCHEMA};

/// Adds `EXCLUDE (…)` to the wildcards of `statement` that would return sketch columns.
/// `sketches(view)` gives the sketch columns of a view by name (`None` for anything else).
pub(crate) fn hide_sketch_columns(
    statement: &mut DfStatement,
    sketches: &dyn Fn(&str) -> Option<Vec<String>>,
) {
    match statement {
        DfStatement::Statement(statement) => {
            let mut ctes = CteNames::default();
            let _ = statement.visit(&mut ctes);
            let _ = statement.visit(&mut Hider {
                sketches,
                ctes: ctes.0,
            });
        }
        DfStatement::Explain(explain) => hide_sketch_columns(&mut explain.statement, sketches),
        _ => {}
    }
}

/// Names the statement's `WITH` clauses define: a relation of such a name is not a view.
#[derive(Default)]
struct CteNames(BTreeSet<String>);

impl VisitorMut for CteNames {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.0.insert(normalize(&cte.alias.name));
            }
        }
        ControlFlow::Continue(())
    }
}

struct Hider<'a> {
    sketches: &'a dyn Fn(&str) -> Option<Vec<String>>,
    ctes: BTreeSet<String>,
}

impl VisitorMut for Hider<'_> {
    type Break = ();

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        self.set_expr(&mut query.body);
        ControlFlow::Continue(())
    }
}

impl Hider<'_> {
    /// The `SELECT`s of a query body (nested queries are visited on their own).
    fn set_expr(&self, body: &mut SetExpr) {
        match body {
            SetExpr::Select(select) => self.select(select),
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left);
                self.set_expr(right);
            }
            _ => {}
        }
    }

    fn select(&self, select: &mut Select) {
        // (name the relation is referred to by, its sketch columns)
        let mut relations: Vec<(String, Option<Vec<String>>)> = Vec::new();
        for from in &select.from {
            relations.push(self.relation(&from.relation));
            for join in &from.joins {
                relations.push(self.relation(&join.relation));
            }
        }
        for item in &mut select.projection {
            match item {
                SelectItem::Wildcard(options) => {
                    if let [(_, Some(sketches))] = relations.as_slice() {
                        exclude(options, sketches);
                    }
                }
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(name),
                    options,
                ) => {
                    let Some(last) = name.0.last().and_then(ObjectNamePart::as_ident) else {
                        continue;
                    };
                    let qualifier = normalize(last);
                    if let Some((_, Some(sketches))) =
                        relations.iter().find(|(name, _)| *name == qualifier)
                    {
                        exclude(options, sketches);
                    }
                }
                _ => {}
            }
        }
    }

    /// How a FROM item is referred to, and its sketch columns if it is a view that has some.
    fn relation(&self, factor: &TableFactor) -> (String, Option<Vec<String>>) {
        let TableFactor::Table { name, alias, .. } = factor else {
            let alias = match factor {
                TableFactor::Derived { alias, .. } => alias.as_ref(),
                _ => None,
            };
            return (alias.map(|a| normalize(&a.name)).unwrap_or_default(), None);
        };
        let table = view_name(name);
        let called = alias
            .as_ref()
            .map(|a| normalize(&a.name))
            .or_else(|| table.clone())
            .unwrap_or_default();
        let sketches = table
            .filter(|t| !self.ctes.contains(t))
            .and_then(|t| (self.sketches)(&t))
            .filter(|s| !s.is_empty());
        (called, sketches)
    }
}

/// The view a relation name can refer to: `v`, `public.v` or `tally.public.v`.
fn view_name(name: &ObjectName) -> Option<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(normalize))
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [view] => Some(view.clone()),
        [schema, view] if schema == SCHEMA => Some(view.clone()),
        [catalog, schema, view] if catalog == CATALOG && schema == SCHEMA => Some(view.clone()),
        _ => None,
    }
}

/// An identifier as DataFusion resolves it: unquoted ones are lowercased.
fn normalize(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// Gives a wildcard `EXCLUDE (columns)`. The PostgreSQL dialect has no EXCLUDE or EXCEPT of
/// its own, so a wildcard that somehow has one is left as written.
fn exclude(options: &mut WildcardAdditionalOptions, columns: &[String]) {
    if options.opt_exclude.is_some() || options.opt_except.is_some() {
        return;
    }
    let names = columns
        .iter()
        .map(|c| ObjectName::from(vec![Ident::with_quote('"', c)]))
        .collect();
    options.opt_exclude = Some(ExcludeSelectItem::Multiple(names));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut statements = crate::query::parse(sql).unwrap();
        let sketches = |name: &str| match name {
            "v" => Some(vec!["users_sketch".to_string()]),
            "w" => Some(vec!["a_sketch".to_string(), "b_sketch".to_string()]),
            "plain" => Some(vec![]),
            _ => None,
        };
        hide_sketch_columns(&mut statements[0], &sketches);
        statements[0].to_string()
    }

    #[test]
    fn a_wildcard_over_one_view_leaves_its_sketches_out() {
        assert_eq!(
            rewritten("SELECT * FROM v WHERE day = $1"),
            "SELECT * EXCLUDE (\"users_sketch\") FROM v WHERE day = $1"
        );
        assert_eq!(
            rewritten("SELECT * FROM public.W"),
            "SELECT * EXCLUDE (\"a_sketch\", \"b_sketch\") FROM public.W"
        );
        assert_eq!(
            rewritten("SELECT x.* FROM v AS x JOIN t ON true"),
            "SELECT x.* EXCLUDE (\"users_sketch\") FROM v AS x JOIN t ON true"
        );
        assert_eq!(
            rewritten("SELECT * FROM (SELECT * FROM v) AS q"),
            "SELECT * FROM (SELECT * EXCLUDE (\"users_sketch\") FROM v) AS q"
        );
        assert_eq!(
            rewritten("SELECT * FROM v UNION ALL SELECT * FROM v"),
            "SELECT * EXCLUDE (\"users_sketch\") FROM v UNION ALL SELECT * EXCLUDE (\"users_sketch\") FROM v"
        );
        assert_eq!(
            rewritten("EXPLAIN SELECT * FROM v"),
            "EXPLAIN SELECT * EXCLUDE (\"users_sketch\") FROM v"
        );
    }

    #[test]
    fn other_wildcards_are_left_alone() {
        for sql in [
            "SELECT * FROM t",
            "SELECT * FROM plain",
            "SELECT users_sketch FROM v",
            "SELECT * FROM v JOIN t ON true",
            "SELECT t.* FROM v JOIN t ON true",
            "SELECT * FROM other.v",
            "WITH v AS (SELECT 1 AS users_sketch) SELECT * FROM v",
            "SELECT * FROM \"V\"",
        ] {
            let parsed = crate::query::parse(sql).unwrap()[0].to_string();
            assert_eq!(rewritten(sql), parsed, "{sql}");
        }
    }
}
