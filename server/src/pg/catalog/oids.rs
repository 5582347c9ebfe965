//! Object identifiers: fixed ones for the database, namespaces, role and access method, OIDs of
//! tables and views derived from their engine ids (stable for the life of the database, so a
//! client may look an OID up in one query and use it in the next), and the built-in types.

use tally_engine::ColumnType;
use tally_engine::reexports::arrow::datatypes::{DataType, Field};

use crate::pg::types;

/// The one database (PostgreSQL's `postgres` database has OID 5).
pub const DATABASE: u32 = 5;
/// Its name (what `current_database()` returns).
pub const DATABASE_NAME: &str = "tally";
/// The one role, which owns everything (PostgreSQL's bootstrap superuser has OID 10).
pub const OWNER: u32 = 10;
/// Its name.
pub const OWNER_NAME: &str = "tally";
/// Namespace `pg_catalog`.
pub const PG_CATALOG: u32 = 11;
/// Namespace `public`.
pub const PUBLIC: u32 = 2200;
/// Namespace `information_schema` (PostgreSQL assigns it at initdb; any value ≥ 12000 works).
pub const INFORMATION_SCHEMA: u32 = 13_000;
/// Access method of tables and materialized views.
pub const TABLE_AM: u32 = 2;
/// Its name: Tally stores rows in RocksDB and Parquet, not in a heap.
pub const TABLE_AM_NAME: &str = "tally";
/// `UTF8` in `pg_database.encoding`.
pub const UTF8_ENCODING: i64 = 6;
/// The first OID of user objects in PostgreSQL (`FirstNormalObjectId`).
const FIRST_USER_OID: u32 = 16_384;

/// The OID of the table or materialized view with this engine id (tables and views share one
/// id sequence, so OIDs never collide).
pub fn relation(engine_id: u64) -> u32 {
    u32::try_from(engine_id)
        .ok()
        .and_then(|id| FIRST_USER_OID.checked_add(id))
        .unwrap_or(u32::MAX)
}

/// One built-in type, as `pg_type` lists it.
#[derive(Debug, Clone, Copy)]
pub struct PgType {
    /// OID.
    pub oid: u32,
    /// `typname`.
    pub name: &'static str,
    /// How `format_type` spells it (SQL-standard names).
    pub display: &'static str,
    /// `typlen` (-1: variable length).
    pub len: i16,
    /// `typcategory`.
    pub category: &'static str,
    /// `typelem` of an array type, 0 otherwise.
    pub elem: u32,
    /// `typarray`: the array type of this type, 0 for array types.
    pub array: u32,
}

const fn base(
    oid: u32,
    name: &'static str,
    display: &'static str,
    len: i16,
    category: &'static str,
    array: u32,
) -> PgType {
    PgType {
        oid,
        name,
        display,
        len,
        category,
        elem: 0,
        array,
    }
}

const fn array(oid: u32, name: &'static str, elem: u32) -> PgType {
    PgType {
        oid,
        name,
        display: "",
        len: -1,
        category: "A",
        elem,
        array: 0,
    }
}

/// The types of Tally's columns and of the catalog's own columns, with their array types.
pub const TYPES: &[PgType] = &[
    base(16, "bool", "boolean", 1, "B", 1000),
    base(17, "bytea", "bytea", -1, "U", 1001),
    base(18, "char", "\"char\"", 1, "Z", 1002),
    base(19, "name", "name", 64, "S", 1003),
    base(20, "int8", "bigint", 8, "N", 1016),
    base(21, "int2", "smallint", 2, "N", 1005),
    base(23, "int4", "integer", 4, "N", 1007),
    base(24, "regproc", "regproc", 4, "N", 1008),
    base(25, "text", "text", -1, "S", 1009),
    base(26, "oid", "oid", 4, "N", 1028),
    base(114, "json", "json", -1, "U", 199),
    base(700, "float4", "real", 4, "N", 1021),
    base(701, "float8", "double precision", 8, "N", 1022),
    base(1042, "bpchar", "character", -1, "S", 1014),
    base(1043, "varchar", "character varying", -1, "S", 1015),
    base(1082, "date", "date", 4, "D", 1182),
    base(1083, "time", "time without time zone", 8, "D", 1183),
    base(
        1114,
        "timestamp",
        "timestamp without time zone",
        8,
        "D",
        1115,
    ),
    base(
        1184,
        "timestamptz",
        "timestamp with time zone",
        8,
        "D",
        1185,
    ),
    base(1186, "interval", "interval", 16, "T", 1187),
    base(1700, "numeric", "numeric", -1, "N", 1231),
    base(2205, "regclass", "regclass", 4, "N", 2210),
    base(2206, "regtype", "regtype", 4, "N", 2211),
    base(2950, "uuid", "uuid", 16, "U", 2951),
    base(3802, "jsonb", "jsonb", -1, "U", 3807),
    base(4089, "regnamespace", "regnamespace", 4, "N", 4090),
    array(199, "_json", 114),
    array(1000, "_bool", 16),
    array(1001, "_bytea", 17),
    array(1002, "_char", 18),
    array(1003, "_name", 19),
    array(1005, "_int2", 21),
    array(1007, "_int4", 23),
    array(1008, "_regproc", 24),
    array(1009, "_text", 25),
    array(1014, "_bpchar", 1042),
    array(1015, "_varchar", 1043),
    array(1016, "_int8", 20),
    array(1021, "_float4", 700),
    array(1022, "_float8", 701),
    array(1028, "_oid", 26),
    array(1115, "_timestamp", 1114),
    array(1182, "_date", 1082),
    array(1183, "_time", 1083),
    array(1185, "_timestamptz", 1184),
    array(1187, "_interval", 1186),
    array(1231, "_numeric", 1700),
    array(2210, "_regclass", 2205),
    array(2211, "_regtype", 2206),
    array(2951, "_uuid", 2950),
    array(3807, "_jsonb", 3802),
    array(4090, "_regnamespace", 4089),
];

/// The built-in type with this OID.
pub fn pg_type(oid: u32) -> Option<&'static PgType> {
    TYPES.iter().find(|t| t.oid == oid)
}

/// The type OID and type modifier (`atttypmod`) of a column: from the declared SQL type the
/// field's metadata names (CHAR(n), VARCHAR(n), UUID, JSON, JSONB), else from its Arrow type.
pub fn column_type(field: &Field) -> (u32, i32) {
    // A character type's modifier is its length plus 4 (`VARHDRSZ`), as in PostgreSQL.
    let char_modifier = |n: u32| i32::try_from(n).map_or(-1, |n| n + 4);
    match ColumnType::from_field(field) {
        Some(ColumnType::Char { length }) => return (1042, length.map_or(-1, char_modifier)),
        Some(ColumnType::Varchar { length }) => return (1043, char_modifier(length)),
        Some(ColumnType::Uuid) => return (2950, -1),
        Some(ColumnType::Json) => return (114, -1),
        Some(ColumnType::Jsonb) => return (3802, -1),
        _ => {}
    }
    match field.data_type() {
        DataType::Decimal128(precision, scale) | DataType::Decimal256(precision, scale) => {
            let modifier = ((i32::from(*precision) << 16) | i32::from(*scale as u8)) + 4;
            (1700, modifier)
        }
        other => (types::pg_type(other).oid(), -1),
    }
}

/// `format_type(oid, typmod)`: the SQL name of a type with its modifier, `???` for an
/// unknown OID (as PostgreSQL prints it).
pub fn format_type(oid: u32, modifier: Option<i32>) -> String {
    let Some(t) = pg_type(oid) else {
        return "???".into();
    };
    if t.elem != 0 {
        return format!("{}[]", format_type(t.elem, modifier));
    }
    let modifier = modifier.filter(|m| *m >= 0);
    match (t.oid, modifier) {
        (1700, Some(m)) if m >= 4 => {
            let m = m - 4;
            format!("numeric({},{})", (m >> 16) & 0xffff, m & 0xffff)
        }
        (1043, Some(m)) if m >= 4 => format!("character varying({})", m - 4),
        (1042, Some(m)) if m >= 4 => format!("character({})", m - 4),
        (1114, Some(p)) => format!("timestamp({p}) without time zone"),
        (1184, Some(p)) => format!("timestamp({p}) with time zone"),
        _ => t.display.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_format_like_postgres() {
        let (oid, modifier) = column_type(&Field::new("n", DataType::Decimal128(10, 2), true));
        assert_eq!(format_type(oid, Some(modifier)), "numeric(10,2)");
        for (ty, name) in [
            (ColumnType::Char { length: Some(25) }, "character(25)"),
            (ColumnType::Char { length: None }, "character"),
            (ColumnType::Varchar { length: 44 }, "character varying(44)"),
            (ColumnType::Text, "text"),
            (ColumnType::Uuid, "uuid"),
            (ColumnType::Json, "json"),
            (ColumnType::Jsonb, "jsonb"),
        ] {
            let (oid, modifier) = column_type(&ty.field("c", true));
            assert_eq!(format_type(oid, Some(modifier)), name);
        }
        assert_eq!(format_type(20, Some(-1)), "bigint");
        assert_eq!(format_type(1009, None), "text[]");
        assert_eq!(format_type(1114, None), "timestamp without time zone");
        assert_eq!(format_type(4242, None), "???");
    }

    #[test]
    fn array_types_point_back_at_their_elements() {
        for t in TYPES.iter().filter(|t| t.array != 0) {
            let array = pg_type(t.array).expect("array type listed");
            assert_eq!(array.elem, t.oid, "{}", t.name);
        }
    }
}
