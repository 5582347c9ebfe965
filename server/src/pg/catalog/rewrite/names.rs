//! Column names: rewritten expressions keep the names PostgreSQL gives them, and the
//! duplicates PostgreSQL allows (`n.oid, n.*`) get names DataFusion accepts.

use std::collections::HashSet;

use tally_engine::reexports::datafusion::sql::sqlparser::ast::{
    self, Expr, Ident, Select, SelectItem,
};

use super::{is_pg_catalog, pg_type_name};

/// Column names already used in one projection.
#[derive(Default)]
pub(super) struct Names(pub(super) HashSet<String>);

impl Names {
    /// `name`, or `name_2`, `name_3` … if taken (DataFusion needs unique names).
    pub(super) fn unique(&mut self, name: String) -> String {
        let mut candidate = name.clone();
        let mut n = 1;
        while !self.0.insert(candidate.clone()) {
            n += 1;
            candidate = format!("{name}_{n}");
        }
        candidate
    }
}

/// Aliases unnamed projection items that the rewrite will change (qualified function calls,
/// catalog casts) with the name PostgreSQL gives them, so results keep PostgreSQL's column names.
///
/// Not with a wildcard in the projection: DataFusion rejects an unqualified `oid` next to the
/// `n.oid` that `n.*` expands to, so those items keep DataFusion's names.
pub(super) fn keep_postgres_names(select: &mut Select) {
    let wildcard = select.projection.iter().any(|item| {
        matches!(
            item,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
        )
    });
    if wildcard {
        return;
    }
    let mut names = Names::default();
    for item in &select.projection {
        if let SelectItem::ExprWithAlias { alias, .. } = item {
            names.0.insert(alias.value.clone());
        }
    }
    for item in select.projection.iter_mut() {
        let SelectItem::UnnamedExpr(expr) = item else {
            continue;
        };
        let rewritten = match expr {
            Expr::Function(f) => f.name.0.len() == 2 && is_pg_catalog(&f.name.0[0]),
            Expr::Cast { data_type, .. } => pg_type_name(data_type).is_some(),
            _ => false,
        };
        let name = postgres_name(expr);
        if rewritten && !names.0.contains(&name) {
            names.0.insert(name.clone());
            *item = SelectItem::ExprWithAlias {
                expr: expr.clone(),
                alias: Ident::with_quote('"', name),
            };
        }
    }
}

/// The column name PostgreSQL gives an unaliased expression.
pub(super) fn postgres_name(expr: &Expr) -> String {
    named(expr).0
}

/// PostgreSQL's `FigureColname`: a name and how strongly the expression determines it (2: a
/// column or function, 1: a type or keyword, 0: nothing), so `c.oid::regclass` is `oid` but
/// `'t'::regclass::oid` is `oid` too (the outer type wins over a literal).
fn named(expr: &Expr) -> (String, u8) {
    let unknown = || ("?column?".to_string(), 0);
    match expr {
        Expr::Identifier(i) => (i.value.clone(), 2),
        Expr::CompoundIdentifier(parts) => {
            parts.last().map_or_else(unknown, |i| (i.value.clone(), 2))
        }
        Expr::Function(f) => f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map_or_else(unknown, |i| (i.value.to_lowercase(), 2)),
        Expr::Cast {
            expr, data_type, ..
        } => {
            let inner = named(expr);
            if inner.1 > 1 {
                return inner;
            }
            match pg_type_name(data_type) {
                Some(name) => (name, 1),
                None => (data_type.to_string().to_lowercase(), 1),
            }
        }
        Expr::Case { .. } => ("case".into(), 1),
        Expr::Nested(inner) => named(inner),
        _ => unknown(),
    }
}

/// Renames `n.oid` in `SELECT n.oid, n.*` (PostgreSQL allows the duplicate column name,
/// DataFusion does not): the explicit column becomes `oid_2`, the wildcard keeps `oid`.
pub(super) fn rename_wildcard_duplicates(select: &mut Select) {
    let mut qualifiers = HashSet::new();
    let mut bare = false;
    for item in &select.projection {
        match item {
            SelectItem::Wildcard(_) => bare = true,
            SelectItem::QualifiedWildcard(
                ast::SelectItemQualifiedWildcardKind::ObjectName(n),
                _,
            ) => {
                if let Some(q) = n.0.last().and_then(|p| p.as_ident()) {
                    qualifiers.insert(q.value.to_lowercase());
                }
            }
            _ => {}
        }
    }
    if !bare && qualifiers.is_empty() {
        return;
    }
    let mut names = Names::default();
    for item in select.projection.iter_mut() {
        let SelectItem::UnnamedExpr(expr) = item else {
            continue;
        };
        let (column, duplicate) = match expr {
            Expr::Identifier(i) => (i.value.clone(), bare),
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                let qualifier = parts[parts.len() - 2].value.to_lowercase();
                (
                    parts[parts.len() - 1].value.clone(),
                    bare || qualifiers.contains(&qualifier),
                )
            }
            _ => continue,
        };
        if duplicate {
            names.0.insert(column.clone());
            *item = SelectItem::ExprWithAlias {
                expr: expr.clone(),
                alias: Ident::with_quote('"', names.unique(column)),
            };
        }
    }
}
