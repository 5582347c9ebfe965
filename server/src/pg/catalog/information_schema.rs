//! `information_schema` as PostgreSQL presents it (type names such as `bigint` and
//! `timestamp without time zone`, `udt_name` such as `int8`), for the tools that browse it
//! rather than `pg_catalog`: Grafana's table and column pickers, BI tools, ORMs.
//!
//! It replaces DataFusion's own `information_schema` (which speaks Arrow type names) on server
//! connections. One deliberate difference from PostgreSQL: materialized views are listed in
//! `tables` (as `VIEW`), `columns` and `views`, because they are what dashboards read and
//! PostgreSQL's `information_schema` would hide them.

use tally_engine::CatalogSnapshot;
use tally_engine::reexports::arrow::datatypes::DataType;
use tally_engine::reexports::datafusion::common::ScalarValue;

use super::live::{self, view_definition};
use super::oids;
use super::table::{CatalogTable, Kind, int, null, text};
use Kind::*;

/// Name of the schema.
pub const SCHEMA: &str = "information_schema";

/// Every `information_schema` relation.
pub const TABLES: &[CatalogTable] = &[
    SCHEMATA,
    TABLES_VIEW,
    COLUMNS,
    VIEWS,
    EMPTY_CONSTRAINTS,
    EMPTY_KEY_USAGE,
];

/// The relation with this name.
pub fn table(name: &str) -> Option<&'static CatalogTable> {
    TABLES.iter().find(|t| t.name == name)
}

/// `information_schema.schemata`.
const SCHEMATA: CatalogTable = CatalogTable {
    name: "schemata",
    oid: 13_100,
    columns: &[
        ("catalog_name", Text),
        ("schema_name", Text),
        ("schema_owner", Text),
        ("default_character_set_catalog", Text),
        ("default_character_set_schema", Text),
        ("default_character_set_name", Text),
        ("sql_path", Text),
    ],
    rows: Some(|_| {
        ["information_schema", "pg_catalog", "public"]
            .into_iter()
            .map(|schema| {
                vec![
                    text(oids::DATABASE_NAME),
                    text(schema),
                    text(oids::OWNER_NAME),
                    null(),
                    null(),
                    null(),
                    null(),
                ]
            })
            .collect()
    }),
};

/// `information_schema.tables`.
const TABLES_VIEW: CatalogTable = CatalogTable {
    name: "tables",
    oid: 13_101,
    columns: &[
        ("table_catalog", Text),
        ("table_schema", Text),
        ("table_name", Text),
        ("table_type", Text),
        ("self_referencing_column_name", Text),
        ("reference_generation", Text),
        ("user_defined_type_catalog", Text),
        ("user_defined_type_schema", Text),
        ("user_defined_type_name", Text),
        ("is_insertable_into", Text),
        ("is_typed", Text),
        ("commit_action", Text),
    ],
    rows: Some(tables),
};

/// `information_schema.columns`.
const COLUMNS: CatalogTable = CatalogTable {
    name: "columns",
    oid: 13_102,
    columns: &[
        ("table_catalog", Text),
        ("table_schema", Text),
        ("table_name", Text),
        ("column_name", Text),
        ("ordinal_position", Int4),
        ("column_default", Text),
        ("is_nullable", Text),
        ("data_type", Text),
        ("character_maximum_length", Int4),
        ("character_octet_length", Int4),
        ("numeric_precision", Int4),
        ("numeric_precision_radix", Int4),
        ("numeric_scale", Int4),
        ("datetime_precision", Int4),
        ("interval_type", Text),
        ("interval_precision", Int4),
        ("character_set_catalog", Text),
        ("character_set_schema", Text),
        ("character_set_name", Text),
        ("collation_catalog", Text),
        ("collation_schema", Text),
        ("collation_name", Text),
        ("domain_catalog", Text),
        ("domain_schema", Text),
        ("domain_name", Text),
        ("udt_catalog", Text),
        ("udt_schema", Text),
        ("udt_name", Text),
        ("dtd_identifier", Text),
        ("is_self_referencing", Text),
        ("is_identity", Text),
        ("identity_generation", Text),
        ("is_generated", Text),
        ("generation_expression", Text),
        ("is_updatable", Text),
    ],
    rows: Some(columns),
};

/// `information_schema.views`: the materialized views.
const VIEWS: CatalogTable = CatalogTable {
    name: "views",
    oid: 13_103,
    columns: &[
        ("table_catalog", Text),
        ("table_schema", Text),
        ("table_name", Text),
        ("view_definition", Text),
        ("check_option", Text),
        ("is_updatable", Text),
        ("is_insertable_into", Text),
        ("is_trigger_updatable", Text),
        ("is_trigger_deletable", Text),
        ("is_trigger_insertable_into", Text),
    ],
    rows: Some(|catalog| {
        catalog
            .views()
            .map(|v| {
                vec![
                    text(oids::DATABASE_NAME),
                    text("public"),
                    text(&v.def.name),
                    text(view_definition(&v.def.query)),
                    text("NONE"),
                    text("NO"),
                    text("NO"),
                    text("NO"),
                    text("NO"),
                    text("NO"),
                ]
            })
            .collect()
    }),
};

/// `information_schema.table_constraints`: Tally has no constraints but NOT NULL, which
/// PostgreSQL lists here as CHECK constraints only for its own bookkeeping; empty.
const EMPTY_CONSTRAINTS: CatalogTable = CatalogTable {
    name: "table_constraints",
    oid: 13_104,
    columns: &[
        ("constraint_catalog", Text),
        ("constraint_schema", Text),
        ("constraint_name", Text),
        ("table_catalog", Text),
        ("table_schema", Text),
        ("table_name", Text),
        ("constraint_type", Text),
        ("is_deferrable", Text),
        ("initially_deferred", Text),
        ("enforced", Text),
        ("nulls_distinct", Text),
    ],
    rows: None,
};

/// `information_schema.key_column_usage`: no keys; empty.
const EMPTY_KEY_USAGE: CatalogTable = CatalogTable {
    name: "key_column_usage",
    oid: 13_105,
    columns: &[
        ("constraint_catalog", Text),
        ("constraint_schema", Text),
        ("constraint_name", Text),
        ("table_catalog", Text),
        ("table_schema", Text),
        ("table_name", Text),
        ("column_name", Text),
        ("ordinal_position", Int4),
        ("position_in_unique_constraint", Int4),
    ],
    rows: None,
};

/// The schema name of a relation's namespace.
fn schema_name(namespace: u32) -> &'static str {
    if namespace == oids::PG_CATALOG {
        "pg_catalog"
    } else {
        "public"
    }
}

fn tables(catalog: &CatalogSnapshot) -> Vec<Vec<ScalarValue>> {
    let mut rows: Vec<Vec<ScalarValue>> = live::relations(catalog)
        .into_iter()
        .map(|r| {
            let is_table = r.kind == "r";
            vec![
                text(oids::DATABASE_NAME),
                text(schema_name(r.namespace)),
                text(r.name),
                text(if is_table { "BASE TABLE" } else { "VIEW" }),
                null(),
                null(),
                null(),
                null(),
                null(),
                text(if is_table && r.namespace == oids::PUBLIC {
                    "YES"
                } else {
                    "NO"
                }),
                text("NO"),
                null(),
            ]
        })
        .collect();
    rows.extend(TABLES.iter().map(|t| {
        vec![
            text(oids::DATABASE_NAME),
            text(SCHEMA),
            text(t.name),
            text("VIEW"),
            null(),
            null(),
            null(),
            null(),
            null(),
            text("NO"),
            text("NO"),
            null(),
        ]
    }));
    rows
}

fn columns(catalog: &CatalogSnapshot) -> Vec<Vec<ScalarValue>> {
    let mut rows = Vec::new();
    for r in live::relations(catalog) {
        let schema = schema_name(r.namespace);
        for (i, field) in r.schema.fields().iter().enumerate() {
            let (type_oid, modifier) = match r.types.as_ref().and_then(|t| t.get(i)) {
                Some(declared) => (*declared, -1),
                None => oids::column_type(field),
            };
            let nullable = !r.not_null.iter().any(|n| n == field.name());
            rows.push(column_row(
                schema,
                &r.name,
                field.name(),
                i + 1,
                nullable,
                type_oid,
                modifier,
                field.data_type(),
                r.kind == "r" && r.namespace == oids::PUBLIC,
            ));
        }
    }
    rows
}

/// One row of `information_schema.columns`.
#[allow(clippy::too_many_arguments)]
fn column_row(
    schema: &str,
    table: &str,
    column: &str,
    position: usize,
    nullable: bool,
    type_oid: u32,
    modifier: i32,
    data_type: &DataType,
    updatable: bool,
) -> Vec<ScalarValue> {
    let pg = oids::pg_type(type_oid);
    let is_array = pg.is_some_and(|t| t.elem != 0);
    let type_name = if is_array {
        "ARRAY".to_string()
    } else {
        oids::format_type(type_oid, None)
    };
    let udt_name = pg.map_or("unknown", |t| t.name);
    let (precision, radix, scale) = numeric_facets(type_oid, modifier, data_type);
    let datetime_precision = match type_oid {
        1082 => Some(0),
        1083 | 1114 | 1184 | 1186 => Some(6),
        _ => None,
    };
    let opt = |v: Option<i64>| v.map_or_else(null, int);
    let char_length =
        (matches!(type_oid, 1042 | 1043) && modifier >= 4).then(|| i64::from(modifier - 4));
    vec![
        text(oids::DATABASE_NAME),
        text(schema),
        text(table),
        text(column),
        int(position as i64),
        null(),
        text(if nullable { "YES" } else { "NO" }),
        text(type_name),
        opt(char_length),
        // PostgreSQL reports the maximum octet length of unbounded text as 1 GiB, and of a
        // declared length as 4 bytes (UTF-8's widest character) per character.
        match (type_oid, char_length) {
            (1042 | 1043, Some(n)) => int(4 * n),
            (25 | 1042 | 1043, None) => int(1_073_741_824),
            _ => null(),
        },
        opt(precision),
        opt(radix),
        opt(scale),
        opt(datetime_precision),
        null(),
        null(),
        null(),
        null(),
        null(),
        null(),
        null(),
        null(),
        null(),
        null(),
        null(),
        text(oids::DATABASE_NAME),
        text("pg_catalog"),
        text(udt_name),
        text(position.to_string()),
        text("NO"),
        text("NO"),
        null(),
        text("NEVER"),
        null(),
        text(if updatable { "YES" } else { "NO" }),
    ]
}

/// `numeric_precision`, `numeric_precision_radix` and `numeric_scale` as PostgreSQL gives them.
fn numeric_facets(
    type_oid: u32,
    modifier: i32,
    data_type: &DataType,
) -> (Option<i64>, Option<i64>, Option<i64>) {
    match type_oid {
        21 => (Some(16), Some(2), Some(0)),
        23 => (Some(32), Some(2), Some(0)),
        20 => (Some(64), Some(2), Some(0)),
        700 => (Some(24), Some(2), None),
        701 => (Some(53), Some(2), None),
        1700 => match data_type {
            DataType::Decimal128(p, s) | DataType::Decimal256(p, s) if modifier >= 0 => {
                (Some(i64::from(*p)), Some(10), Some(i64::from(*s)))
            }
            _ => (None, Some(10), None),
        },
        _ => (None, None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_name_types_as_postgres_does() {
        let row = column_row(
            "public",
            "t",
            "ts",
            2,
            false,
            1114,
            -1,
            &DataType::Int64,
            true,
        );
        assert_eq!(row[7], text("timestamp without time zone"));
        assert_eq!(row[27], text("timestamp"));
        assert_eq!(row[6], text("NO"));
        assert_eq!(row[4], int(2));
        use tally_engine::reexports::arrow::datatypes::Field;
        let (oid, modifier) =
            oids::column_type(&Field::new("n", DataType::Decimal128(12, 3), true));
        let row = column_row(
            "public",
            "t",
            "n",
            1,
            true,
            oid,
            modifier,
            &DataType::Decimal128(12, 3),
            true,
        );
        assert_eq!(row[7], text("numeric"));
        assert_eq!((row[10].clone(), row[12].clone()), (int(12), int(3)));
        assert_eq!(row.len(), COLUMNS.columns.len());
        let row = column_row(
            "public",
            "t",
            "tags",
            1,
            true,
            1009,
            -1,
            &DataType::Utf8,
            true,
        );
        assert_eq!(
            (row[7].clone(), row[27].clone()),
            (text("ARRAY"), text("_text"))
        );
    }
}
