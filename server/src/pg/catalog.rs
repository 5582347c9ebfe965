//! `pg_catalog` emulation, so psql's meta-commands (`\d`, `\dt`, `\dm`, `\l` …) and other
//! clients that read the system catalogs work against Tally.
//!
//! - [`table`] declares catalog tables (name, OID, typed columns, rows);
//! - [`live`] computes `pg_class`, `pg_attribute`, `pg_namespace`, `pg_database`, `pg_tables`
//!   and `pg_matviews` from the statement's snapshot;
//! - [`fixed`] holds the catalogs that do not depend on the data (`pg_type`, `pg_am`, roles)
//!   and the always-empty ones (constraints, indexes, policies …);
//! - [`oids`] assigns object identifiers and names types (`format_type`);
//! - [`functions`] implements the system functions clients call, [`compat`] the string, array
//!   and session functions DataFusion lacks (`quote_ident`, `array_lower`, `current_setting` …);
//! - [`rewrite`] turns PostgreSQL-only syntax in catalog queries into SQL DataFusion plans;
//! - [`information_schema`] presents the tables and columns with PostgreSQL's type names.
//!
//! [`PgCatalog`] plugs all of it into the engine as a [`SessionExtension`]: the functions once,
//! the `pg_catalog` schema per statement. Its tables are built when a query scans them, so
//! statements that do not read the catalog pay nothing but a map insert.

pub mod compat;
pub mod fixed;
pub mod functions;
pub mod information_schema;
pub mod live;
pub mod oids;
pub mod rewrite;
pub mod table;

use std::sync::Arc;

use async_trait::async_trait;
use tally_engine::reexports::datafusion::catalog::{SchemaProvider, TableProvider};
use tally_engine::reexports::datafusion::error::{DataFusionError, Result};
use tally_engine::reexports::datafusion::execution::FunctionRegistry;
use tally_engine::reexports::datafusion::execution::context::SessionState;
use tally_engine::{CATALOG, CatalogSnapshot, SessionExtension};

use table::CatalogTable;

/// Name of the schema.
pub const SCHEMA: &str = "pg_catalog";

/// Every catalog relation, live ones first.
pub fn tables() -> impl Iterator<Item = &'static CatalogTable> {
    static NAMED: &[&CatalogTable] = &[
        &live::PG_CLASS,
        &live::PG_ATTRIBUTE,
        &live::PG_NAMESPACE,
        &live::PG_DATABASE,
        &live::PG_TABLES,
        &live::PG_MATVIEWS,
        &fixed::PG_TYPE,
        &fixed::PG_AM,
        &fixed::PG_ROLES,
        &fixed::PG_USER,
        &fixed::PG_TABLESPACE,
    ];
    NAMED.iter().copied().chain(fixed::EMPTY.iter())
}

/// The catalog relation with this name.
pub fn table(name: &str) -> Option<&'static CatalogTable> {
    tables().find(|t| t.name == name)
}

/// Whether this catalog relation never has rows in Tally.
pub fn is_always_empty(name: &str) -> bool {
    table(name).is_some_and(|t| t.rows.is_none())
}

/// The `pg_catalog` schema and system functions, as an engine [`SessionExtension`].
#[derive(Debug, Default)]
pub struct PgCatalog;

impl SessionExtension for PgCatalog {
    fn configure(&self, state: &mut SessionState) -> Result<()> {
        for function in functions::static_functions() {
            state.register_udf(Arc::new(function))?;
        }
        // DataFusion's information_schema (Arrow type names) would shadow the PostgreSQL one
        // registered per statement below.
        state.config_mut().options_mut().catalog.information_schema = false;
        Ok(())
    }

    fn extend(&self, state: &mut SessionState, catalog: &CatalogSnapshot) -> Result<()> {
        for function in functions::snapshot_functions(catalog) {
            state.register_udf(Arc::new(function))?;
        }
        let tally = state.catalog_list().catalog(CATALOG).ok_or_else(|| {
            DataFusionError::Internal(format!("catalog \"{CATALOG}\" is missing"))
        })?;
        tally.register_schema(
            SCHEMA,
            Arc::new(CatalogSchema {
                catalog: catalog.clone(),
                names: || tables().map(|t| t.name).collect(),
                lookup: table,
            }),
        )?;
        tally.register_schema(
            information_schema::SCHEMA,
            Arc::new(CatalogSchema {
                catalog: catalog.clone(),
                names: || information_schema::TABLES.iter().map(|t| t.name).collect(),
                lookup: information_schema::table,
            }),
        )?;
        Ok(())
    }
}

/// An emulated system schema (`pg_catalog`, `information_schema`) of one statement.
#[derive(Debug)]
struct CatalogSchema {
    catalog: CatalogSnapshot,
    names: fn() -> Vec<&'static str>,
    lookup: fn(&str) -> Option<&'static CatalogTable>,
}

#[async_trait]
impl SchemaProvider for CatalogSchema {
    fn table_names(&self) -> Vec<String> {
        (self.names)().into_iter().map(String::from).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        match (self.lookup)(name) {
            Some(t) => Ok(Some(Arc::new(t.scan(&self.catalog)?))),
            None => Ok(None),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        (self.lookup)(name).is_some()
    }
}
