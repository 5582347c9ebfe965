//! String, array and session functions that PostgreSQL clients call and DataFusion lacks:
//! `quote_ident`, `quote_literal`, `quote_nullable`, `parse_ident`, `array_lower`,
//! `array_upper`, `current_schemas` and `current_setting`. Grafana's table and column pickers,
//! for one, are built from them.

use std::sync::Arc;

use tally_engine::reexports::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, ListBuilder, StringBuilder, UInt32Array,
};
use tally_engine::reexports::arrow::datatypes::{DataType, Field};
use tally_engine::reexports::datafusion::error::{DataFusionError, Result};
use tally_engine::reexports::datafusion::logical_expr::ScalarUDF;

use super::functions::{Args, function, text_function};
use super::oids;

/// The functions of this module.
pub fn functions() -> Vec<ScalarUDF> {
    vec![
        text_function("quote_ident", &[1], |args, row| {
            Ok(args.text(0, row)?.map(|s| quote_ident(&s)))
        }),
        text_function("quote_literal", &[1], |args, row| {
            Ok(args.text(0, row)?.map(|s| quote_literal(&s)))
        }),
        text_function("quote_nullable", &[1], |args, row| {
            Ok(Some(
                args.text(0, row)?
                    .map_or_else(|| "NULL".to_string(), |s| quote_literal(&s)),
            ))
        }),
        function("parse_ident", &[1, 2], text_list(), |args| {
            let mut out = ListBuilder::new(StringBuilder::new());
            for row in 0..args.rows() {
                match args.text(0, row)? {
                    Some(s) => {
                        let parts = parse_ident(&s).map_err(DataFusionError::Execution)?;
                        for part in parts {
                            out.values().append_value(part);
                        }
                        out.append(true);
                    }
                    None => out.append(false),
                }
            }
            Ok(Arc::new(out.finish()) as ArrayRef)
        }),
        array_bound("array_lower", |_| 1),
        array_bound("array_upper", |len| len as i64),
        function("current_schemas", &[1], text_list(), |args| {
            let mut out = ListBuilder::new(StringBuilder::new());
            for row in 0..args.rows() {
                let implicit = args.0.first().and_then(|a| {
                    let a = a.as_boolean_opt()?;
                    (!a.is_null(row)).then(|| a.value(row))
                });
                match implicit {
                    Some(implicit) => {
                        if implicit {
                            out.values().append_value("pg_catalog");
                        }
                        out.values().append_value("public");
                        out.append(true);
                    }
                    None => out.append(false),
                }
            }
            Ok(Arc::new(out.finish()) as ArrayRef)
        }),
        function("to_regtype", &[1], DataType::UInt32, |args| {
            let values = (0..args.rows())
                .map(|row| Ok(args.text(0, row)?.and_then(|name| type_oid(&name))))
                .collect::<Result<UInt32Array>>()?;
            Ok(Arc::new(values) as ArrayRef)
        }),
        text_function("current_setting", &[1, 2], |args, row| {
            let Some(name) = args.text(0, row)? else {
                return Ok(None);
            };
            let missing_ok = args
                .0
                .get(1)
                .and_then(|a| a.as_boolean_opt().map(|b| b.is_valid(row) && b.value(row)))
                .unwrap_or(false);
            match crate::pg::default_setting(&name.to_ascii_lowercase()) {
                Some(value) => Ok(Some(value)),
                None if missing_ok => Ok(None),
                None => Err(DataFusionError::Execution(format!(
                    "unrecognized configuration parameter \"{name}\""
                ))),
            }
        }),
    ]
}

/// The OID of a built-in type named as `::regtype` accepts it (`int8`, `bigint`,
/// `pg_catalog.text`, `text[]`); `None` for types Tally does not have (`hstore` …).
fn type_oid(name: &str) -> Option<u32> {
    let name = name.trim().to_lowercase();
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    if let Some(element) = name.strip_suffix("[]") {
        let element = type_oid(element)?;
        return oids::TYPES
            .iter()
            .find(|t| t.oid == element)
            .map(|t| t.array);
    }
    oids::TYPES
        .iter()
        .find(|t| t.elem == 0 && (t.name == name || t.display == name))
        .map(|t| t.oid)
}

fn text_list() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
}

/// `array_lower(array, dimension)` / `array_upper`: Tally's arrays are one-dimensional and
/// start at 1; an empty or NULL array, or another dimension, gives NULL. The result is a
/// `bigint` (PostgreSQL's is `integer`) because DataFusion's `generate_series` takes only that.
fn array_bound(name: &str, bound: fn(usize) -> i64) -> ScalarUDF {
    function(name, &[2], DataType::Int64, move |args: &Args| {
        let rows = args.rows();
        let list = args
            .0
            .first()
            .ok_or_else(|| DataFusionError::Plan(format!("{} needs an array", "array bound")))?;
        let lengths: Vec<Option<usize>> = match list.data_type() {
            DataType::List(_) => {
                let l = list.as_list::<i32>();
                (0..rows)
                    .map(|i| (!l.is_null(i)).then(|| l.value_length(i) as usize))
                    .collect()
            }
            DataType::LargeList(_) => {
                let l = list.as_list::<i64>();
                (0..rows)
                    .map(|i| (!l.is_null(i)).then(|| l.value_length(i) as usize))
                    .collect()
            }
            DataType::Null => vec![None; rows],
            other => {
                return Err(DataFusionError::Plan(format!(
                    "function array bound does not accept {other}"
                )));
            }
        };
        let values = (0..rows)
            .map(|row| {
                let dimension = args.int(1, row)?;
                Ok(match (lengths[row], dimension) {
                    (Some(len), Some(1)) if len > 0 => Some(bound(len)),
                    _ => None,
                })
            })
            .collect::<Result<Int64Array>>()?;
        Ok(Arc::new(values) as ArrayRef)
    })
}

/// Keywords `quote_ident` quotes: every PostgreSQL keyword that is not unreserved.
const QUOTED_KEYWORDS: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "between",
    "bigint",
    "binary",
    "bit",
    "boolean",
    "both",
    "case",
    "cast",
    "char",
    "character",
    "check",
    "coalesce",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "dec",
    "decimal",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "exists",
    "extract",
    "false",
    "fetch",
    "float",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "greatest",
    "group",
    "grouping",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "inout",
    "int",
    "integer",
    "intersect",
    "interval",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "least",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "national",
    "natural",
    "nchar",
    "none",
    "normalize",
    "not",
    "notnull",
    "null",
    "nullif",
    "numeric",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "out",
    "outer",
    "overlaps",
    "overlay",
    "placing",
    "position",
    "precision",
    "primary",
    "real",
    "references",
    "returning",
    "right",
    "row",
    "select",
    "session_user",
    "setof",
    "similar",
    "smallint",
    "some",
    "substring",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "time",
    "timestamp",
    "to",
    "trailing",
    "treat",
    "trim",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "values",
    "varchar",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
];

/// `quote_ident`: the identifier as SQL must spell it to mean exactly this name.
pub fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
        && !QUOTED_KEYWORDS.contains(&name);
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// `quote_literal`: a string literal, with the `E''` form when it holds backslashes.
pub fn quote_literal(value: &str) -> String {
    let quoted = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

/// `parse_ident`: a qualified identifier split into its names (unquoted ones lower-cased).
pub fn parse_ident(text: &str) -> std::result::Result<Vec<String>, String> {
    let invalid = |why: &str| format!("string is not a valid identifier: \"{text}\" ({why})");
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err(invalid("unclosed double quotes")),
                }
            }
            if part.is_empty() {
                return Err(invalid("quoted identifier must not be empty"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' || c.is_whitespace() {
                    break;
                }
                part.extend(c.to_lowercase());
                chars.next();
            }
            if part.is_empty() {
                return Err(invalid("no valid identifier"));
            }
        }
        parts.push(part);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => return Ok(parts),
            Some('.') => continue,
            Some(_) => return Err(invalid("unexpected character")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_quote_like_postgres() {
        assert_eq!(quote_ident("events"), "events");
        assert_eq!(quote_ident("Events"), "\"Events\"");
        assert_eq!(quote_ident("user"), "\"user\"");
        assert_eq!(quote_ident("page views"), "\"page views\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("_x1$"), "_x1$");
        assert_eq!(quote_ident("1x"), "\"1x\"");
    }

    #[test]
    fn type_names_resolve_like_regtype() {
        assert_eq!(type_oid("int8"), Some(20));
        assert_eq!(type_oid("BIGINT"), Some(20));
        assert_eq!(type_oid("pg_catalog.text[]"), Some(1009));
        assert_eq!(type_oid("hstore"), None);
    }

    #[test]
    fn literals_quote_like_postgres() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b"), "E'a\\\\b'");
    }

    #[test]
    fn qualified_names_parse_like_postgres() {
        assert_eq!(parse_ident("public.Events").unwrap(), ["public", "events"]);
        assert_eq!(
            parse_ident("\"My Schema\".\"T\"\"x\"").unwrap(),
            ["My Schema", "T\"x"]
        );
        assert_eq!(parse_ident(" t ").unwrap(), ["t"]);
        assert!(parse_ident("a.").is_err());
        assert!(parse_ident("\"open").is_err());
        assert!(parse_ident("").is_err());
    }
}
