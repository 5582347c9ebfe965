//! Catalogs computed from the live catalog at query time: `pg_class`, `pg_attribute`,
//! `pg_namespace`, `pg_database`, and the views over them that tools read (`pg_tables`,
//! `pg_matviews`). A table created a moment ago is listed by the next statement.
//!
//! Tally's relations are the tables (relkind `r`) and materialized views (relkind `m`) of schema
//! `public`, plus the `pg_catalog` relations themselves, so `\d pg_class` works as well.

use tally_engine::reexports::arrow::datatypes::SchemaRef;
use tally_engine::reexports::datafusion::common::ScalarValue;
use tally_engine::{CatalogSnapshot, ViewStatus};

use super::oids;
use super::table::{CatalogTable, Kind, boolean, float, int, null, oid, text};
use Kind::*;

/// `pg_class`: one row per relation.
pub const PG_CLASS: CatalogTable = CatalogTable {
    name: "pg_class",
    oid: 1259,
    columns: &[
        ("oid", Oid),
        ("relname", Text),
        ("relnamespace", Oid),
        ("reltype", Oid),
        ("reloftype", Oid),
        ("relowner", Oid),
        ("relam", Oid),
        ("relfilenode", Oid),
        ("reltablespace", Oid),
        ("relpages", Int4),
        ("reltuples", Float4),
        ("relallvisible", Int4),
        ("reltoastrelid", Oid),
        ("relhasindex", Bool),
        ("relisshared", Bool),
        ("relpersistence", Text),
        ("relkind", Text),
        ("relnatts", Int2),
        ("relchecks", Int2),
        ("relhasrules", Bool),
        ("relhastriggers", Bool),
        ("relhassubclass", Bool),
        ("relrowsecurity", Bool),
        ("relforcerowsecurity", Bool),
        ("relispopulated", Bool),
        ("relreplident", Text),
        ("relispartition", Bool),
        ("relrewrite", Oid),
        ("relfrozenxid", Int8),
        ("relminmxid", Int8),
        ("relacl", TextArray),
        ("reloptions", TextArray),
        ("relpartbound", Text),
    ],
    rows: Some(pg_class),
};

/// `pg_attribute`: one row per column of every relation.
pub const PG_ATTRIBUTE: CatalogTable = CatalogTable {
    name: "pg_attribute",
    oid: 1249,
    columns: &[
        ("attrelid", Oid),
        ("attname", Text),
        ("atttypid", Oid),
        ("attstattarget", Int4),
        ("attlen", Int2),
        ("attnum", Int2),
        ("attndims", Int4),
        ("attcacheoff", Int4),
        ("atttypmod", Int4),
        ("attbyval", Bool),
        ("attalign", Text),
        ("attstorage", Text),
        ("attcompression", Text),
        ("attnotnull", Bool),
        ("atthasdef", Bool),
        ("atthasmissing", Bool),
        ("attidentity", Text),
        ("attgenerated", Text),
        ("attisdropped", Bool),
        ("attislocal", Bool),
        ("attinhcount", Int4),
        ("attcollation", Oid),
        ("attacl", TextArray),
        ("attoptions", TextArray),
        ("attfdwoptions", TextArray),
    ],
    rows: Some(pg_attribute),
};

/// `pg_namespace`: `pg_catalog`, `public` and `information_schema`.
pub const PG_NAMESPACE: CatalogTable = CatalogTable {
    name: "pg_namespace",
    oid: 2615,
    columns: &[
        ("oid", Oid),
        ("nspname", Text),
        ("nspowner", Oid),
        ("nspacl", TextArray),
    ],
    rows: Some(|_| {
        [
            (oids::PG_CATALOG, "pg_catalog"),
            (oids::PUBLIC, "public"),
            (oids::INFORMATION_SCHEMA, "information_schema"),
        ]
        .into_iter()
        .map(|(id, name)| vec![oid(id), text(name), oid(oids::OWNER), null()])
        .collect()
    }),
};

/// `pg_database`: the one database.
pub const PG_DATABASE: CatalogTable = CatalogTable {
    name: "pg_database",
    oid: 1262,
    columns: &[
        ("oid", Oid),
        ("datname", Text),
        ("datdba", Oid),
        ("encoding", Int4),
        ("datlocprovider", Text),
        ("datistemplate", Bool),
        ("datallowconn", Bool),
        ("datconnlimit", Int4),
        ("datfrozenxid", Int8),
        ("datminmxid", Int8),
        ("dattablespace", Oid),
        ("datcollate", Text),
        ("datctype", Text),
        ("daticulocale", Text),
        ("daticurules", Text),
        ("datcollversion", Text),
        ("datacl", TextArray),
    ],
    rows: Some(|_| {
        // Strings compare byte-wise, which is the C locale.
        vec![vec![
            oid(oids::DATABASE),
            text(oids::DATABASE_NAME),
            oid(oids::OWNER),
            int(oids::UTF8_ENCODING),
            text("c"),
            boolean(false),
            boolean(true),
            int(-1),
            int(0),
            int(1),
            oid(1663),
            text("C"),
            text("C"),
            null(),
            null(),
            null(),
            null(),
        ]]
    }),
};

/// `pg_tables`: the tables of schema `public`.
pub const PG_TABLES: CatalogTable = CatalogTable {
    name: "pg_tables",
    oid: 12_000,
    columns: &[
        ("schemaname", Text),
        ("tablename", Text),
        ("tableowner", Text),
        ("tablespace", Text),
        ("hasindexes", Bool),
        ("hasrules", Bool),
        ("hastriggers", Bool),
        ("rowsecurity", Bool),
    ],
    rows: Some(|catalog| {
        catalog
            .tables()
            .map(|t| {
                let no = boolean(false);
                vec![
                    text("public"),
                    text(&t.def.name),
                    text(oids::OWNER_NAME),
                    null(),
                    no.clone(),
                    no.clone(),
                    no.clone(),
                    no,
                ]
            })
            .collect()
    }),
};

/// `pg_matviews`: the materialized views, with their defining queries.
pub const PG_MATVIEWS: CatalogTable = CatalogTable {
    name: "pg_matviews",
    oid: 12_001,
    columns: &[
        ("schemaname", Text),
        ("matviewname", Text),
        ("matviewowner", Text),
        ("tablespace", Text),
        ("hasindexes", Bool),
        ("ispopulated", Bool),
        ("definition", Text),
    ],
    rows: Some(|catalog| {
        catalog
            .views()
            .map(|v| {
                vec![
                    text("public"),
                    text(&v.def.name),
                    text(oids::OWNER_NAME),
                    null(),
                    boolean(false),
                    boolean(v.status == ViewStatus::Ready),
                    text(view_definition(&v.def.query)),
                ]
            })
            .collect()
    }),
};

/// A view's definition as `pg_get_viewdef` prints it: a leading space, a final semicolon.
pub fn view_definition(query: &str) -> String {
    format!(" {};", query.trim().trim_end_matches(';').trim_end())
}

/// Catalog relations that PostgreSQL defines as views.
const SYSTEM_VIEWS: &[&str] = &[
    "pg_matviews",
    "pg_roles",
    "pg_tables",
    "pg_user",
    "pg_views",
];

/// A relation as `pg_class` and `pg_attribute` describe it.
pub(super) struct Relation {
    pub(super) oid: u32,
    pub(super) name: String,
    pub(super) namespace: u32,
    /// `pg_class.relkind`: `r` table, `m` materialized view, `v` view.
    pub(super) kind: &'static str,
    rows: f32,
    populated: bool,
    pub(super) schema: SchemaRef,
    /// Column names that are `NOT NULL`.
    pub(super) not_null: Vec<String>,
    /// Declared PostgreSQL column types (catalog relations), else derived from the Arrow types.
    pub(super) types: Option<Vec<u32>>,
}

/// Every relation at `catalog`: user tables and views, then the `pg_catalog` relations.
pub(super) fn relations(catalog: &CatalogSnapshot) -> Vec<Relation> {
    let mut out = Vec::new();
    for t in catalog.tables() {
        out.push(Relation {
            oid: oids::relation(t.def.id),
            name: t.def.name.clone(),
            namespace: oids::PUBLIC,
            kind: "r",
            rows: t.rows as f32,
            populated: true,
            schema: t.def.arrow_schema(),
            types: None,
            not_null: t
                .def
                .columns
                .iter()
                .filter(|c| !c.nullable)
                .map(|c| c.name.clone())
                .collect(),
        });
    }
    for v in catalog.views() {
        out.push(Relation {
            oid: oids::relation(v.def.id),
            name: v.def.name.clone(),
            namespace: oids::PUBLIC,
            kind: "m",
            rows: -1.0,
            populated: v.status == ViewStatus::Ready,
            schema: v.schema.clone(),
            not_null: vec![],
            types: None,
        });
    }
    for t in super::tables() {
        out.push(Relation {
            oid: t.oid,
            name: t.name.into(),
            namespace: oids::PG_CATALOG,
            kind: if SYSTEM_VIEWS.contains(&t.name) {
                "v"
            } else {
                "r"
            },
            rows: -1.0,
            populated: true,
            schema: t.schema(),
            not_null: vec![],
            types: Some(t.columns.iter().map(|(_, kind)| kind.pg_type()).collect()),
        });
    }
    out
}

fn pg_class(catalog: &CatalogSnapshot) -> Vec<Vec<ScalarValue>> {
    relations(catalog)
        .into_iter()
        .map(|r| {
            let no = boolean(false);
            let am = if r.kind == "v" { 0 } else { oids::TABLE_AM };
            vec![
                oid(r.oid),
                text(r.name),
                oid(r.namespace),
                oid(0),
                oid(0),
                oid(oids::OWNER),
                oid(am),
                oid(0),
                oid(0),
                int(0),
                float(r.rows),
                int(0),
                oid(0),
                no.clone(),
                no.clone(),
                text("p"),
                text(r.kind),
                int(r.schema.fields().len() as i64),
                int(0),
                no.clone(),
                no.clone(),
                no.clone(),
                no.clone(),
                no.clone(),
                boolean(r.populated),
                text(if r.namespace == oids::PG_CATALOG {
                    "n"
                } else {
                    "d"
                }),
                no,
                oid(0),
                int(0),
                int(0),
                null(),
                null(),
                null(),
            ]
        })
        .collect()
}

fn pg_attribute(catalog: &CatalogSnapshot) -> Vec<Vec<ScalarValue>> {
    let mut rows = Vec::new();
    for r in relations(catalog) {
        for (i, field) in r.schema.fields().iter().enumerate() {
            let (type_oid, modifier) = match r.types.as_ref().and_then(|t| t.get(i)) {
                Some(declared) => (*declared, -1),
                None => oids::column_type(field),
            };
            let len = oids::pg_type(type_oid).map_or(-1, |t| t.len);
            let varlena = len < 0;
            let no = boolean(false);
            rows.push(vec![
                oid(r.oid),
                text(field.name()),
                oid(type_oid),
                int(-1),
                int(len.into()),
                int(i as i64 + 1),
                int(i64::from(
                    oids::pg_type(type_oid).is_some_and(|t| t.elem != 0),
                )),
                int(-1),
                int(modifier.into()),
                boolean(!varlena && len <= 8),
                text(if varlena { "i" } else { "d" }),
                text(if varlena { "x" } else { "p" }),
                text(""),
                boolean(r.not_null.iter().any(|n| n == field.name())),
                no.clone(),
                no.clone(),
                text(""),
                text(""),
                no,
                boolean(true),
                int(0),
                oid(0),
                null(),
                null(),
                null(),
            ]);
        }
    }
    rows
}
