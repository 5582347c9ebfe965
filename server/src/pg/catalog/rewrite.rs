//! Rewrites the PostgreSQL-only syntax that catalog queries use into SQL DataFusion plans, on
//! the sqlparser AST. Each rule is small and local:
//!
//! | PostgreSQL                                 | becomes                                     |
//! |--------------------------------------------|---------------------------------------------|
//! | `a OPERATOR(pg_catalog.~) b`               | `a ~ b` (likewise `=`, `<>`, `!~`, `~~` …)  |
//! | `expr COLLATE pg_catalog.default`          | `expr` (Tally compares strings byte-wise)   |
//! | `pg_catalog.f(..)`                         | `f(..)`                                     |
//! | `pg_class` (unqualified catalog table)     | `pg_catalog.pg_class`                       |
//! | `'16384'::regclass`, `'t'::regclass`       | `16384`, `to_regclass('t')`                 |
//! | `c.oid::regclass`, `::regtype`, `::regnamespace` | `tally_regclass_name(c.oid)` …        |
//! | `x::pg_catalog.text`, `::name`, `::oid`, `::int2` … | the DataFusion type                  |
//! | `x = ANY('{a,b}')`, `x = ANY(ARRAY[..])`   | `x IN ('a', 'b')`, `x IN (..)`              |
//! | `x = ANY(arr)`, `x <> ALL(arr)`            | `array_has(arr, x)`, `NOT array_has(..)`    |
//! | `ARRAY(SELECT f(x) FROM unnest(arr) x)`   | `CAST(NULL AS TEXT[])` (see [`maps_catalog_array`]) |
//! | `SELECT n.oid, n.*`                       | `SELECT n.oid AS oid_2, n.*`                |
//! | `FROM generate_series(a, b) AS i`          | `FROM generate_series(a, b) AS i(i)`        |
//! | `FROM string_to_array(x, ',') s` (a scalar function in FROM) | `FROM (SELECT string_to_array(x, ',') AS s) AS s` |
//! | `SELECT … FROM pg_policy …` (a catalog that is always empty in Tally, inner-joined) | `SELECT NULL AS … WHERE false` |
//!
//! The last rule matters because clients join such catalogs with functions and syntax
//! (`ARRAY(subquery)`, correlated `generate_series`) that would otherwise need emulating just to
//! return no rows. Rewritten projection items keep the column names PostgreSQL gives them.

mod empty;
mod names;
mod planning;

use std::collections::HashSet;
use std::ops::ControlFlow;

use tally_engine::reexports::datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, CastKind, DataType, Expr, FunctionArg, FunctionArgExpr,
    FunctionArguments, Ident, ObjectName, ObjectNamePart, Query, Select, SetExpr, TableFactor,
    Value, VisitMut, VisitorMut,
};
use tally_engine::reexports::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use tally_engine::reexports::datafusion::sql::sqlparser::parser::Parser;

use super::oids;

/// Whether `sql` may need rewriting (a cheap test, so other statements are not re-parsed).
pub fn might_apply(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    [
        "pg_",
        "::reg",
        "operator(",
        "collate",
        "any(",
        "any (",
        "all(",
        "all (",
        "generate_series",
        "string_to_array",
        "bytea",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// Rewrites one parsed statement in place.
pub fn rewrite(statement: &mut ast::Statement) {
    let mut ctes = CteNames::default();
    let _ = statement.visit(&mut ctes);
    let _ = statement.visit(&mut Rewriter { ctes: ctes.0 });
}

/// Names of common table expressions, which shadow nothing in `pg_catalog` but must not be
/// qualified as if they were catalog tables.
#[derive(Default)]
struct CteNames(HashSet<String>);

impl VisitorMut for CteNames {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            self.0.extend(
                with.cte_tables
                    .iter()
                    .map(|c| c.alias.name.value.to_lowercase()),
            );
        }
        ControlFlow::Continue(())
    }
}

struct Rewriter {
    ctes: HashSet<String>,
}

impl VisitorMut for Rewriter {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if empty::prune(&mut query.body) {
            query.order_by = None;
            query.limit_clause = None;
        }
        planning::hoist_order_subqueries(query);
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
        names::keep_postgres_names(select);
        names::rename_wildcard_duplicates(select);
        planning::in_subqueries_in_projection(select);
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let Some(new) = planning::function_in_from(factor) {
            *factor = new;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, name: &mut ObjectName) -> ControlFlow<()> {
        if let [ObjectNamePart::Identifier(ident)] = name.0.as_slice() {
            let lower = ident.value.to_lowercase();
            if ident.quote_style.is_none()
                && super::table(&lower).is_some()
                && !self.ctes.contains(&lower)
            {
                name.0
                    .insert(0, ObjectNamePart::Identifier(Ident::new(super::SCHEMA)));
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Some(new) = rewrite_expr(expr) {
            *expr = new;
        }
        ControlFlow::Continue(())
    }
}

/// The rewritten form of one expression (its children are rewritten already), if it changes.
fn rewrite_expr(expr: &mut Expr) -> Option<Expr> {
    match expr {
        Expr::BinaryOp { left, op, right } => {
            let BinaryOperator::PGCustomBinaryOperator(parts) = op else {
                return None;
            };
            let standard = standard_operator(parts.last()?)?;
            Some(Expr::BinaryOp {
                left: left.clone(),
                op: standard,
                right: right.clone(),
            })
        }
        Expr::Collate { expr, .. } => Some((**expr).clone()),
        Expr::Function(function) => {
            if function.name.0.len() == 2 && is_pg_catalog(&function.name.0[0]) {
                function.name.0.remove(0);
            }
            maps_catalog_array(function).then(|| {
                cast(
                    null(),
                    DataType::Array(ast::ArrayElemTypeDef::SquareBracket(
                        Box::new(DataType::Text),
                        None,
                    )),
                )
            })
        }
        Expr::Cast {
            expr: inner,
            data_type,
            kind: CastKind::DoubleColon | CastKind::Cast,
            ..
        } => rewrite_cast(inner, data_type),
        Expr::AnyOp {
            left,
            compare_op: BinaryOperator::Eq,
            right,
            ..
        } => Some(membership(left, right, false)),
        Expr::AllOp {
            left,
            compare_op: BinaryOperator::NotEq,
            right,
        } => Some(membership(left, right, true)),
        Expr::Subquery(query) => {
            planning::aggregate_lookup(query).map(|q| Expr::Subquery(Box::new(q)))
        }
        _ => None,
    }
}

/// `ARRAY(SELECT f(x) FROM unnest(arr) x)`: an array mapped element by element, which psql
/// builds from catalog array columns (`reloptions` …). DataFusion cannot plan the correlated
/// table function, and Tally's array-valued catalog columns are always NULL, so the result is
/// the NULL array. Likewise `ARRAY(subquery)` over an always-empty catalog (role memberships).
fn maps_catalog_array(function: &ast::Function) -> bool {
    let is_array = function
        .name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .is_some_and(|i| i.value.eq_ignore_ascii_case("array"));
    let FunctionArguments::Subquery(query) = &function.args else {
        return false;
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    if !is_array {
        return false;
    }
    // A subquery over an always-empty catalog, pruned to `SELECT NULL … WHERE false`.
    let pruned = select.from.is_empty()
        && matches!(&select.selection, Some(Expr::Value(v)) if v.value == Value::Boolean(false));
    let maps_array = matches!(select.from.as_slice(), [item] if item.joins.is_empty()
    && matches!(
        &item.relation,
        TableFactor::Table { args: Some(_), .. } | TableFactor::UNNEST { .. }
    ));
    pruned || maps_array
}

fn is_pg_catalog(part: &ObjectNamePart) -> bool {
    part.as_ident()
        .is_some_and(|i| i.value.eq_ignore_ascii_case(super::SCHEMA))
}

/// The built-in operator `OPERATOR(pg_catalog.op)` names.
fn standard_operator(op: &str) -> Option<BinaryOperator> {
    Some(match op {
        "~" => BinaryOperator::PGRegexMatch,
        "~*" => BinaryOperator::PGRegexIMatch,
        "!~" => BinaryOperator::PGRegexNotMatch,
        "!~*" => BinaryOperator::PGRegexNotIMatch,
        "~~" => BinaryOperator::PGLikeMatch,
        "~~*" => BinaryOperator::PGILikeMatch,
        "!~~" => BinaryOperator::PGNotLikeMatch,
        "!~~*" => BinaryOperator::PGNotILikeMatch,
        "=" => BinaryOperator::Eq,
        "<>" | "!=" => BinaryOperator::NotEq,
        "<" => BinaryOperator::Lt,
        "<=" => BinaryOperator::LtEq,
        ">" => BinaryOperator::Gt,
        ">=" => BinaryOperator::GtEq,
        _ => return None,
    })
}

/// The PostgreSQL type a cast names, without a `pg_catalog.` qualifier, in lower case.
fn pg_type_name(data_type: &DataType) -> Option<String> {
    let (name, modifiers) = match data_type {
        DataType::Custom(name, modifiers) => (name, modifiers),
        DataType::Regclass => return Some("regclass".into()),
        _ => return None,
    };
    if !modifiers.is_empty() {
        return None;
    }
    match name.0.as_slice() {
        [schema, ty] if is_pg_catalog(schema) => ty.as_ident().map(|i| i.value.to_lowercase()),
        [ty] => ty.as_ident().map(|i| i.value.to_lowercase()),
        _ => None,
    }
}

/// The DataFusion type for a PostgreSQL type name, for the names DataFusion does not know.
fn datafusion_type(name: &str) -> Option<DataType> {
    Some(match name {
        "text" | "name" | "char" | "bpchar" | "varchar" => DataType::Text,
        "oid" | "int8" | "xid" => DataType::BigInt(None),
        "int4" => DataType::Integer(None),
        "int2" => DataType::SmallInt(None),
        "float4" => DataType::Real,
        "float8" => DataType::DoublePrecision,
        "bool" => DataType::Boolean,
        _ => return None,
    })
}

fn rewrite_cast(inner: &Expr, data_type: &DataType) -> Option<Expr> {
    if let DataType::Array(ast::ArrayElemTypeDef::SquareBracket(element, size)) = data_type {
        let element = datafusion_type(&pg_type_name(element)?)?;
        return Some(cast(
            inner.clone(),
            DataType::Array(ast::ArrayElemTypeDef::SquareBracket(
                Box::new(element),
                *size,
            )),
        ));
    }
    let literal = string_literal(inner);
    if matches!(data_type, DataType::Bytea)
        && let Some(bytes) = literal.and_then(bytea_input)
    {
        // DataFusion casts text to bytes as its UTF-8; PostgreSQL reads `\x…` hex (what
        // psycopg2 sends) or the escape format.
        let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
        return Some(Expr::value(Value::HexStringLiteral(hex)));
    }
    let name = pg_type_name(data_type)?;
    match (name.as_str(), literal) {
        ("regclass", Some(s)) => Some(match s.trim().parse::<u32>() {
            Ok(oid) => number(oid),
            Err(_) => call("to_regclass", vec![inner.clone()]),
        }),
        ("regclass", None) => Some(call("tally_regclass_name", vec![inner.clone()])),
        ("regtype", Some(s)) => {
            let oid = s.trim().parse::<u32>().ok().or_else(|| {
                let s = s.trim().to_lowercase();
                oids::TYPES
                    .iter()
                    .find(|t| t.name == s || t.display == s)
                    .map(|t| t.oid)
            });
            Some(oid.map_or_else(null, number))
        }
        ("regtype", None) => Some(call("tally_regtype_name", vec![inner.clone()])),
        ("regnamespace", Some(s)) => Some(match s.trim() {
            "pg_catalog" => number(oids::PG_CATALOG),
            "public" => number(oids::PUBLIC),
            "information_schema" => number(oids::INFORMATION_SCHEMA),
            other => other.parse::<u32>().map_or_else(|_| null(), number),
        }),
        ("regnamespace", None) => Some(call("tally_regnamespace_name", vec![inner.clone()])),
        ("regrole", Some(s)) => Some(match s.trim() {
            oids::OWNER_NAME => number(oids::OWNER),
            other => other.parse::<u32>().map_or_else(|_| null(), number),
        }),
        ("regrole", None) => Some(call("pg_get_userbyid", vec![inner.clone()])),
        ("regproc" | "regprocedure", _) => Some(cast(inner.clone(), DataType::Text)),
        (other, _) => Some(cast(inner.clone(), datafusion_type(other)?)),
    }
}

/// PostgreSQL's bytea input: `\x` then hex digit pairs (white space between pairs allowed), or
/// the escape format (`\\` a backslash, `\ooo` an octal byte, anything else its own bytes).
fn bytea_input(text: &str) -> Option<Vec<u8>> {
    if let Some(hex) = text
        .strip_prefix("\\x")
        .or_else(|| text.strip_prefix("\\X"))
    {
        let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !digits.len().is_multiple_of(2) {
            return None;
        }
        return digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
            .collect();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
        } else if bytes.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let octal = std::str::from_utf8(bytes.get(i + 1..i + 4)?).ok()?;
            out.push(u8::from_str_radix(octal, 8).ok()?);
            i += 4;
        }
    }
    Some(out)
}

/// `x = ANY(arr)` as `x IN (..)` for literal arrays, else `array_has(arr, x)`; `negated` for
/// `x <> ALL(arr)`.
fn membership(left: &Expr, right: &Expr, negated: bool) -> Expr {
    let elements = match right {
        Expr::Array(array) => Some(array.elem.clone()),
        other => string_literal(other)
            .and_then(parse_array_literal)
            .map(|items| items.into_iter().map(string).collect()),
    };
    match elements {
        Some(list) => Expr::InList {
            expr: Box::new(left.clone()),
            list,
            negated,
        },
        None => {
            let has = call("array_has", vec![right.clone(), left.clone()]);
            if negated {
                Expr::UnaryOp {
                    op: ast::UnaryOperator::Not,
                    expr: Box::new(has),
                }
            } else {
                has
            }
        }
    }
}

/// `{a,b,"c d"}` → `[a, b, c d]` (no nesting; `NULL` stays the string it is written as).
fn parse_array_literal(text: &str) -> Option<Vec<String>> {
    let body = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    if body.trim().is_empty() {
        return Some(vec![]);
    }
    let mut items = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' => current.extend(chars.next()),
            ',' if !quoted => items.push(std::mem::take(&mut current).trim().to_string()),
            c => current.push(c),
        }
    }
    items.push(current.trim().to_string());
    Some(items)
}

fn string_literal(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

fn number(n: u32) -> Expr {
    Expr::value(Value::Number(n.to_string(), false))
}

fn string(s: String) -> Expr {
    Expr::value(Value::SingleQuotedString(s))
}

fn null() -> Expr {
    Expr::value(Value::Null)
}

fn cast(expr: Expr, data_type: DataType) -> Expr {
    Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(expr),
        data_type,
        array: false,
        format: None,
    }
}

/// A call of `name` with `args`.
fn call(name: &str, args: Vec<Expr>) -> Expr {
    let mut expr = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("{name}()"))
        .and_then(|mut p| p.parse_expr())
        .expect("a function call parses");
    if let Expr::Function(f) = &mut expr
        && let FunctionArguments::List(list) = &mut f.args
    {
        list.args = args
            .into_iter()
            .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
            .collect();
    }
    expr
}

fn parse_select(sql: &str) -> Select {
    let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .ok()
        .and_then(|mut s| s.pop())
        .expect("a fixed SELECT parses");
    match statement {
        ast::Statement::Query(q) => match *q.body {
            SetExpr::Select(select) => *select,
            _ => unreachable!("a fixed SELECT is a SELECT"),
        },
        _ => unreachable!("a fixed SELECT is a query"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytea_literals_read_like_postgres() {
        assert_eq!(bytea_input(r"\x0b00FF5c"), Some(vec![0x0b, 0, 0xff, 0x5c]));
        assert_eq!(bytea_input(r"\x0b 00"), Some(vec![0x0b, 0]));
        assert_eq!(bytea_input(r"a\\b\001"), Some(vec![b'a', b'\\', b'b', 1]));
        assert_eq!(bytea_input(r"\x0"), None);
        assert_eq!(bytea_input(r"bad\9"), None);
        let sql = rewritten(r"SELECT '\xdead'::bytea");
        assert_eq!(sql, "SELECT X'DEAD'");
    }

    fn rewritten(sql: &str) -> String {
        let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
        let mut statement = statements.remove(0);
        rewrite(&mut statement);
        statement.to_string()
    }

    #[test]
    fn operators_collations_and_qualified_functions() {
        assert_eq!(
            rewritten(
                "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) \
                 '^(t)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid)"
            ),
            "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname ~ '^(t)$' AND \
             pg_table_is_visible(c.oid)"
        );
    }

    #[test]
    fn casts_to_catalog_types() {
        assert_eq!(
            rewritten("SELECT x FROM y WHERE c = '16384'::regclass"),
            "SELECT x FROM y WHERE c = 16384"
        );
        assert_eq!(
            rewritten("SELECT c.oid::pg_catalog.regclass FROM pg_class c"),
            "SELECT tally_regclass_name(c.oid) AS \"oid\" FROM pg_catalog.pg_class c"
        );
        assert_eq!(
            rewritten("SELECT a::pg_catalog.text AS t, b::oid AS o"),
            "SELECT CAST(a AS TEXT) AS t, CAST(b AS BIGINT) AS o"
        );
    }

    #[test]
    fn columns_keep_postgres_names() {
        assert_eq!(
            rewritten("SELECT 't'::regclass::oid, c.oid::regclass FROM pg_class c"),
            "SELECT CAST(to_regclass('t') AS BIGINT) AS \"oid\", \
             tally_regclass_name(c.oid) FROM pg_catalog.pg_class c"
        );
        assert_eq!(
            rewritten("SELECT n.oid, n.* FROM pg_namespace n"),
            "SELECT n.oid AS \"oid_2\", n.* FROM pg_catalog.pg_namespace n"
        );
    }

    #[test]
    fn any_over_literal_arrays() {
        assert_eq!(
            rewritten("SELECT 1 WHERE x = ANY('{r,\"a b\"}')"),
            "SELECT 1 WHERE x IN ('r', 'a b')"
        );
        assert_eq!(
            rewritten("SELECT 1 WHERE x <> ALL(arr)"),
            "SELECT 1 WHERE NOT array_has(arr, x)"
        );
    }

    #[test]
    fn selects_over_empty_catalogs_return_nothing() {
        assert_eq!(
            rewritten(
                "SELECT pol.polname, pg_catalog.pg_get_expr(pol.polqual, pol.polrelid) \
                 FROM pg_catalog.pg_policy pol WHERE pol.polrelid = '1' ORDER BY 1"
            ),
            "SELECT NULL AS \"polname\", NULL AS \"pg_get_expr\" WHERE false"
        );
        // Aggregates return a row even over nothing: left to DataFusion.
        assert_eq!(
            rewritten("SELECT count(*) FROM pg_index"),
            "SELECT count(*) FROM pg_catalog.pg_index"
        );
        // A left join to an empty catalog keeps the rows of the left side.
        assert!(
            rewritten(
                "SELECT c.relname FROM pg_class c LEFT JOIN pg_index i ON i.indrelid = c.oid"
            )
            .contains("LEFT JOIN")
        );
    }
}
