//! The PostgreSQL system functions psql and other clients call on catalog rows:
//! `format_type`, `pg_get_userbyid`, `pg_table_is_visible`, `pg_get_viewdef`, the
//! `has_*_privilege` family, `obj_description` … Functions that do not depend on the data are
//! registered once ([`static_functions`]); those that read the catalog are made per statement
//! over its snapshot ([`snapshot_functions`]).
//!
//! `tally_regclass_name` and `tally_regnamespace_name` are what the rewriter turns
//! `x::regclass` and `x::regnamespace` into (the name of the object an OID denotes).

use std::sync::Arc;

use tally_engine::CatalogSnapshot;
use tally_engine::reexports::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, StringArray, UInt32Array,
};
use tally_engine::reexports::arrow::compute::cast;
use tally_engine::reexports::arrow::datatypes::{DataType, Int64Type};
use tally_engine::reexports::datafusion::common::ScalarValue;
use tally_engine::reexports::datafusion::error::Result;
use tally_engine::reexports::datafusion::logical_expr::{
    ColumnarValue, ScalarUDF, Signature, SimpleScalarUDF, TypeSignature, Volatility,
};

use super::live::{relations, view_definition};
use super::oids;

/// Arguments of one call, as arrays of equal length.
pub(super) struct Args(pub(super) Vec<ArrayRef>);

impl Args {
    pub(super) fn rows(&self) -> usize {
        self.0.first().map_or(1, |a| a.len())
    }

    /// Argument `i` of `row` as an integer (NULL, absent or not a number: `None`).
    pub(super) fn int(&self, i: usize, row: usize) -> Result<Option<i64>> {
        let Some(array) = self.0.get(i) else {
            return Ok(None);
        };
        let ints = cast(array, &DataType::Int64)?;
        let ints = ints.as_primitive::<Int64Type>();
        Ok((!ints.is_null(row)).then(|| ints.value(row)))
    }

    /// Argument `i` of `row` as text.
    pub(super) fn text(&self, i: usize, row: usize) -> Result<Option<String>> {
        let Some(array) = self.0.get(i) else {
            return Ok(None);
        };
        let strings = cast(array, &DataType::Utf8)?;
        let strings = strings.as_string::<i32>();
        Ok((!strings.is_null(row)).then(|| strings.value(row).to_string()))
    }

    /// Whether argument `i` is a string (a name rather than an OID).
    fn is_text(&self, i: usize) -> bool {
        self.0
            .get(i)
            .is_some_and(|a| matches!(a.data_type(), DataType::Utf8 | DataType::Utf8View))
    }
}

/// A function taking `arities` arguments of any type, computed row by row by `body`.
pub(super) fn function(
    name: &str,
    arities: &[usize],
    returns: DataType,
    body: impl Fn(&Args) -> Result<ArrayRef> + Send + Sync + 'static,
) -> ScalarUDF {
    let signatures = arities
        .iter()
        .map(|n| match n {
            0 => TypeSignature::Nullary,
            n => TypeSignature::Any(*n),
        })
        .collect();
    let signature = Signature::one_of(signatures, Volatility::Stable);
    let implementation = Arc::new(move |values: &[ColumnarValue]| {
        let scalar = values.iter().all(|v| matches!(v, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(values)?;
        let result = body(&Args(arrays))?;
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?)
        } else {
            ColumnarValue::Array(result)
        })
    });
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        name,
        signature,
        returns,
        implementation,
    ))
}

/// A function returning text, row by row.
pub(super) fn text_function(
    name: &str,
    arities: &[usize],
    row: impl Fn(&Args, usize) -> Result<Option<String>> + Send + Sync + 'static,
) -> ScalarUDF {
    function(name, arities, DataType::Utf8, move |args| {
        let values = (0..args.rows())
            .map(|i| row(args, i))
            .collect::<Result<StringArray>>()?;
        Ok(Arc::new(values))
    })
}

/// A function returning the same value for every row (NULL in, NULL out for the first
/// argument, as PostgreSQL's strict functions do).
fn constant(name: &str, arities: &[usize], value: ScalarValue) -> ScalarUDF {
    let returns = value.data_type();
    function(name, arities, returns, move |args| {
        let rows = args.rows();
        let result = value.to_array_of_size(rows)?;
        match args.0.first() {
            Some(first) if first.null_count() > 0 => {
                let keep = BooleanArray::from_iter((0..rows).map(|i| Some(first.is_valid(i))));
                Ok(tally_engine::reexports::arrow::compute::nullif(
                    &result,
                    &tally_engine::reexports::arrow::compute::not(&keep)?,
                )?)
            }
            _ => Ok(result),
        }
    })
}

/// Functions that do not depend on the data.
pub fn static_functions() -> Vec<ScalarUDF> {
    let yes = ScalarValue::Boolean(Some(true));
    let no_text = ScalarValue::Utf8(None);
    let mut functions = vec![
        constant("pg_table_is_visible", &[1], yes.clone()),
        constant("pg_type_is_visible", &[1], yes.clone()),
        constant("pg_function_is_visible", &[1], yes.clone()),
        constant(
            "pg_relation_is_publishable",
            &[1],
            ScalarValue::Boolean(Some(false)),
        ),
        text_function("pg_get_userbyid", &[1], |args, row| {
            Ok(args.int(0, row)?.map(|id| {
                if id == i64::from(oids::OWNER) {
                    oids::OWNER_NAME.to_string()
                } else {
                    format!("unknown (OID={id})")
                }
            }))
        }),
        text_function("pg_encoding_to_char", &[1], |args, row| {
            Ok(args
                .int(0, row)?
                .map(|e| if e == oids::UTF8_ENCODING { "UTF8" } else { "" }.to_string()))
        }),
        text_function("format_type", &[2], |args, row| {
            let Some(id) = args.int(0, row)? else {
                return Ok(None);
            };
            let modifier = args.int(1, row)?.and_then(|m| i32::try_from(m).ok());
            Ok(Some(u32::try_from(id).map_or("???".into(), |id| {
                oids::format_type(id, modifier)
            })))
        }),
        text_function("tally_regtype_name", &[1], |args, row| {
            Ok(args
                .int(0, row)?
                .map(|id| u32::try_from(id).map_or("???".into(), |id| oids::format_type(id, None))))
        }),
        text_function("tally_regnamespace_name", &[1], |args, row| {
            Ok(args.int(0, row)?.map(|id| match u32::try_from(id) {
                Ok(oids::PG_CATALOG) => "pg_catalog".into(),
                Ok(oids::PUBLIC) => "public".into(),
                Ok(oids::INFORMATION_SCHEMA) => "information_schema".into(),
                _ => id.to_string(),
            }))
        }),
        text_function("pg_size_pretty", &[1], |args, row| {
            Ok(args.int(0, row)?.map(size_pretty))
        }),
    ];
    // Tally has no comments, defaults, constraints, indexes, triggers, rules or statistics
    // objects: their descriptions and definitions are NULL.
    for (name, arities) in [
        ("obj_description", &[1, 2][..]),
        ("col_description", &[2]),
        ("shobj_description", &[2]),
        ("pg_get_expr", &[2, 3]),
        ("pg_get_constraintdef", &[1, 2]),
        ("pg_get_indexdef", &[1, 3]),
        ("pg_get_triggerdef", &[1, 2]),
        ("pg_get_ruledef", &[1, 2]),
        ("pg_get_statisticsobjdef_columns", &[1]),
    ] {
        functions.push(constant(name, arities, no_text.clone()));
    }
    // One role owns everything and may do anything.
    for name in [
        "has_table_privilege",
        "has_schema_privilege",
        "has_database_privilege",
        "has_column_privilege",
        "has_any_column_privilege",
        "has_function_privilege",
        "has_sequence_privilege",
    ] {
        functions.push(constant(name, &[2, 3, 4], yes.clone()));
    }
    functions.extend(super::compat::functions());
    functions
}

/// Functions that read the catalog, over one statement's snapshot.
pub fn snapshot_functions(catalog: &CatalogSnapshot) -> Vec<ScalarUDF> {
    let views = catalog.clone();
    let classes = catalog.clone();
    let lookups = catalog.clone();
    let sizes = catalog.clone();
    let mut functions = vec![
        text_function("pg_get_viewdef", &[1, 2], move |args, row| {
            let by_name = args.is_text(0);
            let name = args.text(0, row)?;
            let id = if by_name { None } else { args.int(0, row)? };
            Ok(views
                .views()
                .find(|v| match (&name, id) {
                    (_, Some(id)) => i64::from(oids::relation(v.def.id)) == id,
                    (Some(name), None) => unqualified(name) == v.def.name,
                    _ => false,
                })
                .map(|v| view_definition(&v.def.query)))
        }),
        text_function("tally_regclass_name", &[1], move |args, row| {
            let Some(id) = args.int(0, row)? else {
                return Ok(None);
            };
            let found = relations(&classes)
                .into_iter()
                .find(|r| i64::from(r.oid) == id);
            Ok(Some(found.map_or_else(|| id.to_string(), |r| r.name)))
        }),
        function("to_regclass", &[1], DataType::UInt32, move |args| {
            let relations = relations(&lookups);
            let values = (0..args.rows())
                .map(|row| {
                    Ok(args.text(0, row)?.and_then(|name| {
                        let name = unqualified(&name);
                        relations.iter().find(|r| r.name == name).map(|r| r.oid)
                    }))
                })
                .collect::<Result<UInt32Array>>()?;
            Ok(Arc::new(values) as ArrayRef)
        }),
    ];
    for name in [
        "pg_table_size",
        "pg_relation_size",
        "pg_total_relation_size",
    ] {
        let sizes = sizes.clone();
        functions.push(function(name, &[1, 2], DataType::Int64, move |args| {
            let values = (0..args.rows())
                .map(|row| {
                    let Some(id) = args.int(0, row)? else {
                        return Ok(None);
                    };
                    let table = sizes
                        .tables()
                        .find(|t| i64::from(oids::relation(t.def.id)) == id);
                    Ok(Some(table.map_or(0, |t| t.bytes as i64)))
                })
                .collect::<Result<Int64Array>>()?;
            Ok(Arc::new(values) as ArrayRef)
        }));
    }
    let database = catalog.clone();
    functions.push(function(
        "pg_database_size",
        &[1],
        DataType::Int64,
        move |args| {
            let total: u64 = database.tables().map(|t| t.bytes).sum();
            let values = (0..args.rows())
                .map(|row| {
                    let this = match args.is_text(0) {
                        true => args.text(0, row)?.map(|n| n == oids::DATABASE_NAME),
                        false => args.int(0, row)?.map(|id| id == i64::from(oids::DATABASE)),
                    };
                    Ok(this.map(|this| if this { total as i64 } else { 0 }))
                })
                .collect::<Result<Int64Array>>()?;
            Ok(Arc::new(values) as ArrayRef)
        },
    ));
    functions.push(constant(
        "pg_indexes_size",
        &[1],
        ScalarValue::Int64(Some(0)),
    ));
    functions
}

/// `public.t` or `"t"` → `t` (every relation is in `public` or `pg_catalog`, and names do
/// not repeat across them).
fn unqualified(name: &str) -> String {
    let last = name.rsplit('.').next().unwrap_or(name);
    match last.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => last.to_lowercase(),
    }
}

/// `pg_size_pretty`: bytes, kB, MB, GB, TB, rounding halves up as PostgreSQL does.
fn size_pretty(bytes: i64) -> String {
    const LIMIT: i64 = 10 * 1024;
    const LIMIT2: i64 = LIMIT * 2 - 1;
    let half_rounded = |x: i64| (x + if x < 0 { -1 } else { 1 }) / 2;
    if bytes.abs() < LIMIT {
        return format!("{bytes} bytes");
    }
    let mut size = bytes >> 9;
    for unit in ["kB", "MB", "GB"] {
        if size.abs() < LIMIT2 {
            return format!("{} {unit}", half_rounded(size));
        }
        size >>= 10;
    }
    format!("{} TB", half_rounded(size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_like_postgres() {
        assert_eq!(size_pretty(0), "0 bytes");
        assert_eq!(size_pretty(10_239), "10239 bytes");
        assert_eq!(size_pretty(10_240), "10 kB");
        assert_eq!(size_pretty(8 * 1024 * 1024), "8192 kB");
        assert_eq!(size_pretty(100 * 1024 * 1024), "100 MB");
    }

    #[test]
    fn names_lose_their_schema_and_quotes() {
        assert_eq!(unqualified("public.Events"), "events");
        assert_eq!(unqualified("\"Mixed\""), "Mixed");
    }
}
