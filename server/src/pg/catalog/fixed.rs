//! Catalogs whose contents do not depend on the data: `pg_type`, `pg_am`, `pg_roles`,
//! `pg_user`, `pg_tablespace`, and the catalogs of features Tally does not have (indexes,
//! constraints, defaults, comments, policies, publications, inheritance, triggers, rules,
//! collations …), which exist with PostgreSQL's columns and no rows, so client queries that
//! join them plan and return nothing.

use super::oids;
use super::table::{CatalogTable, Kind, boolean, int, null, oid, text};
use Kind::*;

/// `pg_type`: the built-in types of [`oids::TYPES`].
pub const PG_TYPE: CatalogTable = CatalogTable {
    name: "pg_type",
    oid: 1247,
    columns: &[
        ("oid", Oid),
        ("typname", Text),
        ("typnamespace", Oid),
        ("typowner", Oid),
        ("typlen", Int2),
        ("typbyval", Bool),
        ("typtype", Text),
        ("typcategory", Text),
        ("typispreferred", Bool),
        ("typisdefined", Bool),
        ("typdelim", Text),
        ("typrelid", Oid),
        ("typsubscript", Text),
        ("typelem", Oid),
        ("typarray", Oid),
        ("typinput", Text),
        ("typoutput", Text),
        ("typreceive", Text),
        ("typsend", Text),
        ("typmodin", Text),
        ("typmodout", Text),
        ("typanalyze", Text),
        ("typalign", Text),
        ("typstorage", Text),
        ("typnotnull", Bool),
        ("typbasetype", Oid),
        ("typtypmod", Int4),
        ("typndims", Int4),
        ("typcollation", Oid),
        ("typdefaultbin", Text),
        ("typdefault", Text),
        ("typacl", TextArray),
    ],
    rows: Some(|_| {
        oids::TYPES
            .iter()
            .map(|t| {
                let io = |suffix: &str| {
                    let base = if t.elem != 0 { "array" } else { t.name };
                    text(format!("{base}{suffix}"))
                };
                let no = boolean(false);
                vec![
                    oid(t.oid),
                    text(t.name),
                    oid(oids::PG_CATALOG),
                    oid(oids::OWNER),
                    int(t.len.into()),
                    boolean(t.len > 0 && t.len <= 8),
                    text("b"),
                    text(t.category),
                    no.clone(),
                    boolean(true),
                    text(","),
                    oid(0),
                    text(if t.elem != 0 {
                        "array_subscript_handler"
                    } else {
                        "-"
                    }),
                    oid(t.elem),
                    oid(t.array),
                    io("in"),
                    io("out"),
                    io("recv"),
                    io("send"),
                    text("-"),
                    text("-"),
                    text("-"),
                    text(if t.len == 8 || t.len < 0 { "d" } else { "i" }),
                    text(if t.len < 0 { "x" } else { "p" }),
                    no,
                    oid(0),
                    int(-1),
                    int(0),
                    oid(0),
                    null(),
                    null(),
                    null(),
                ]
            })
            .collect()
    }),
};

/// `pg_am`: the one table access method.
pub const PG_AM: CatalogTable = CatalogTable {
    name: "pg_am",
    oid: 2601,
    columns: &[
        ("oid", Oid),
        ("amname", Text),
        ("amhandler", Text),
        ("amtype", Text),
    ],
    rows: Some(|_| {
        vec![vec![
            oid(oids::TABLE_AM),
            text(oids::TABLE_AM_NAME),
            text("-"),
            text("t"),
        ]]
    }),
};

/// `pg_roles`: the one role.
pub const PG_ROLES: CatalogTable = CatalogTable {
    name: "pg_roles",
    oid: 12_002,
    columns: &[
        ("rolname", Text),
        ("rolsuper", Bool),
        ("rolinherit", Bool),
        ("rolcreaterole", Bool),
        ("rolcreatedb", Bool),
        ("rolcanlogin", Bool),
        ("rolreplication", Bool),
        ("rolconnlimit", Int4),
        ("rolpassword", Text),
        ("rolvaliduntil", Text),
        ("rolbypassrls", Bool),
        ("rolconfig", TextArray),
        ("oid", Oid),
    ],
    rows: Some(|_| {
        let yes = boolean(true);
        vec![vec![
            text(oids::OWNER_NAME),
            yes.clone(),
            yes.clone(),
            yes.clone(),
            yes.clone(),
            yes.clone(),
            boolean(false),
            int(-1),
            text("********"),
            null(),
            yes,
            null(),
            oid(oids::OWNER),
        ]]
    }),
};

/// `pg_user`: the one role, as a user.
pub const PG_USER: CatalogTable = CatalogTable {
    name: "pg_user",
    oid: 12_003,
    columns: &[
        ("usename", Text),
        ("usesysid", Oid),
        ("usecreatedb", Bool),
        ("usesuper", Bool),
        ("userepl", Bool),
        ("usebypassrls", Bool),
        ("passwd", Text),
        ("valuntil", Text),
        ("useconfig", TextArray),
    ],
    rows: Some(|_| {
        vec![vec![
            text(oids::OWNER_NAME),
            oid(oids::OWNER),
            boolean(true),
            boolean(true),
            boolean(false),
            boolean(true),
            text("********"),
            null(),
            null(),
        ]]
    }),
};

/// `pg_tablespace`: PostgreSQL's two default tablespaces.
pub const PG_TABLESPACE: CatalogTable = CatalogTable {
    name: "pg_tablespace",
    oid: 1213,
    columns: &[
        ("oid", Oid),
        ("spcname", Text),
        ("spcowner", Oid),
        ("spcacl", TextArray),
        ("spcoptions", TextArray),
    ],
    rows: Some(|_| {
        [(1663, "pg_default"), (1664, "pg_global")]
            .into_iter()
            .map(|(id, name)| vec![oid(id), text(name), oid(oids::OWNER), null(), null()])
            .collect()
    }),
};

/// A catalog that is always empty in Tally.
const fn empty(
    name: &'static str,
    oid: u32,
    columns: &'static [(&'static str, Kind)],
) -> CatalogTable {
    CatalogTable {
        name,
        oid,
        columns,
        rows: None,
    }
}

/// The always-empty catalogs, with PostgreSQL 16's columns.
pub const EMPTY: &[CatalogTable] = &[
    empty(
        "pg_attrdef",
        2604,
        &[
            ("oid", Oid),
            ("adrelid", Oid),
            ("adnum", Int2),
            ("adbin", Text),
        ],
    ),
    empty(
        "pg_auth_members",
        1261,
        &[
            ("oid", Oid),
            ("roleid", Oid),
            ("member", Oid),
            ("grantor", Oid),
            ("admin_option", Bool),
            ("inherit_option", Bool),
            ("set_option", Bool),
        ],
    ),
    empty(
        "pg_collation",
        3456,
        &[
            ("oid", Oid),
            ("collname", Text),
            ("collnamespace", Oid),
            ("collowner", Oid),
            ("collprovider", Text),
            ("collisdeterministic", Bool),
            ("collencoding", Int4),
            ("collcollate", Text),
            ("collctype", Text),
            ("colliculocale", Text),
            ("collicurules", Text),
            ("collversion", Text),
        ],
    ),
    empty(
        "pg_constraint",
        2606,
        &[
            ("oid", Oid),
            ("conname", Text),
            ("connamespace", Oid),
            ("contype", Text),
            ("condeferrable", Bool),
            ("condeferred", Bool),
            ("convalidated", Bool),
            ("conrelid", Oid),
            ("contypid", Oid),
            ("conindid", Oid),
            ("conparentid", Oid),
            ("confrelid", Oid),
            ("confupdtype", Text),
            ("confdeltype", Text),
            ("confmatchtype", Text),
            ("conislocal", Bool),
            ("coninhcount", Int4),
            ("connoinherit", Bool),
            ("conkey", Int2Array),
            ("confkey", Int2Array),
            ("conpfeqop", OidArray),
            ("conppeqop", OidArray),
            ("conffeqop", OidArray),
            ("confdelsetcols", Int2Array),
            ("conexclop", OidArray),
            ("conbin", Text),
        ],
    ),
    empty(
        "pg_depend",
        2608,
        &[
            ("classid", Oid),
            ("objid", Oid),
            ("objsubid", Int4),
            ("refclassid", Oid),
            ("refobjid", Oid),
            ("refobjsubid", Int4),
            ("deptype", Text),
        ],
    ),
    empty(
        "pg_description",
        2609,
        &[
            ("objoid", Oid),
            ("classoid", Oid),
            ("objsubid", Int4),
            ("description", Text),
        ],
    ),
    empty(
        "pg_enum",
        3501,
        &[
            ("oid", Oid),
            ("enumtypid", Oid),
            ("enumsortorder", Float4),
            ("enumlabel", Text),
        ],
    ),
    empty(
        "pg_extension",
        3079,
        &[
            ("oid", Oid),
            ("extname", Text),
            ("extowner", Oid),
            ("extnamespace", Oid),
            ("extrelocatable", Bool),
            ("extversion", Text),
            ("extconfig", OidArray),
            ("extcondition", TextArray),
        ],
    ),
    empty(
        "pg_foreign_table",
        3118,
        &[
            ("ftrelid", Oid),
            ("ftserver", Oid),
            ("ftoptions", TextArray),
        ],
    ),
    empty(
        "pg_index",
        2610,
        &[
            ("indexrelid", Oid),
            ("indrelid", Oid),
            ("indnatts", Int2),
            ("indnkeyatts", Int2),
            ("indisunique", Bool),
            ("indnullsnotdistinct", Bool),
            ("indisprimary", Bool),
            ("indisexclusion", Bool),
            ("indimmediate", Bool),
            ("indisclustered", Bool),
            ("indisvalid", Bool),
            ("indcheckxmin", Bool),
            ("indisready", Bool),
            ("indislive", Bool),
            ("indisreplident", Bool),
            ("indkey", Int2Array),
            ("indcollation", OidArray),
            ("indclass", OidArray),
            ("indoption", Int2Array),
            ("indexprs", Text),
            ("indpred", Text),
        ],
    ),
    empty(
        "pg_inherits",
        2611,
        &[
            ("inhrelid", Oid),
            ("inhparent", Oid),
            ("inhseqno", Int4),
            ("inhdetachpending", Bool),
        ],
    ),
    empty(
        "pg_opclass",
        2616,
        &[
            ("oid", Oid),
            ("opcmethod", Oid),
            ("opcname", Text),
            ("opcnamespace", Oid),
            ("opcowner", Oid),
            ("opcfamily", Oid),
            ("opcintype", Oid),
            ("opcdefault", Bool),
            ("opckeytype", Oid),
        ],
    ),
    empty(
        "pg_partitioned_table",
        3350,
        &[
            ("partrelid", Oid),
            ("partstrat", Text),
            ("partnatts", Int2),
            ("partdefid", Oid),
            ("partattrs", Int2Array),
            ("partclass", OidArray),
            ("partcollation", OidArray),
            ("partexprs", Text),
        ],
    ),
    empty(
        "pg_policy",
        3256,
        &[
            ("oid", Oid),
            ("polname", Text),
            ("polrelid", Oid),
            ("polcmd", Text),
            ("polpermissive", Bool),
            ("polroles", OidArray),
            ("polqual", Text),
            ("polwithcheck", Text),
        ],
    ),
    empty(
        "pg_proc",
        1255,
        &[
            ("oid", Oid),
            ("proname", Text),
            ("pronamespace", Oid),
            ("proowner", Oid),
            ("prolang", Oid),
            ("procost", Float4),
            ("prorows", Float4),
            ("provariadic", Oid),
            ("prosupport", Text),
            ("prokind", Text),
            ("prosecdef", Bool),
            ("proleakproof", Bool),
            ("proisstrict", Bool),
            ("proretset", Bool),
            ("provolatile", Text),
            ("proparallel", Text),
            ("pronargs", Int2),
            ("pronargdefaults", Int2),
            ("prorettype", Oid),
            ("proargtypes", OidArray),
            ("proallargtypes", OidArray),
            ("proargmodes", CharArray),
            ("proargnames", TextArray),
            ("proargdefaults", Text),
            ("protrftypes", OidArray),
            ("prosrc", Text),
            ("probin", Text),
            ("prosqlbody", Text),
            ("proconfig", TextArray),
            ("proacl", TextArray),
        ],
    ),
    empty(
        "pg_publication",
        6104,
        &[
            ("oid", Oid),
            ("pubname", Text),
            ("pubowner", Oid),
            ("puballtables", Bool),
            ("pubinsert", Bool),
            ("pubupdate", Bool),
            ("pubdelete", Bool),
            ("pubtruncate", Bool),
            ("pubviaroot", Bool),
        ],
    ),
    empty(
        "pg_publication_namespace",
        6237,
        &[("oid", Oid), ("pnpubid", Oid), ("pnnspid", Oid)],
    ),
    empty(
        "pg_publication_rel",
        6106,
        &[
            ("oid", Oid),
            ("prpubid", Oid),
            ("prrelid", Oid),
            ("prqual", Text),
            ("prattrs", Int2Array),
        ],
    ),
    empty(
        "pg_rewrite",
        2618,
        &[
            ("oid", Oid),
            ("rulename", Text),
            ("ev_class", Oid),
            ("ev_type", Text),
            ("ev_enabled", Text),
            ("is_instead", Bool),
            ("ev_qual", Text),
            ("ev_action", Text),
        ],
    ),
    empty(
        "pg_sequence",
        2224,
        &[
            ("seqrelid", Oid),
            ("seqtypid", Oid),
            ("seqstart", Int8),
            ("seqincrement", Int8),
            ("seqmax", Int8),
            ("seqmin", Int8),
            ("seqcache", Int8),
            ("seqcycle", Bool),
        ],
    ),
    empty(
        "pg_statistic_ext",
        3381,
        &[
            ("oid", Oid),
            ("stxrelid", Oid),
            ("stxname", Text),
            ("stxnamespace", Oid),
            ("stxowner", Oid),
            ("stxstattarget", Int4),
            ("stxkeys", Int2Array),
            ("stxkind", CharArray),
            ("stxexprs", Text),
        ],
    ),
    empty(
        "pg_trigger",
        2620,
        &[
            ("oid", Oid),
            ("tgrelid", Oid),
            ("tgparentid", Oid),
            ("tgname", Text),
            ("tgfoid", Oid),
            ("tgtype", Int2),
            ("tgenabled", Text),
            ("tgisinternal", Bool),
            ("tgconstrrelid", Oid),
            ("tgconstrindid", Oid),
            ("tgconstraint", Oid),
            ("tgdeferrable", Bool),
            ("tginitdeferred", Bool),
            ("tgnargs", Int2),
            ("tgattr", Int2Array),
            ("tgargs", Text),
            ("tgqual", Text),
            ("tgoldtable", Text),
            ("tgnewtable", Text),
        ],
    ),
    empty(
        "pg_views",
        12_004,
        &[
            ("schemaname", Text),
            ("viewname", Text),
            ("viewowner", Text),
            ("definition", Text),
        ],
    ),
];
