//! The extension hook: code outside the engine (the server's `pg_catalog` emulation, an
//! embedder's own functions) adds schemas and functions to the DataFusion sessions Tally builds.
//!
//! An extension is set in [`Options::session_extensions`](crate::Options::session_extensions).
//! [`SessionExtension::configure`] runs once, when the database opens, on the session every
//! statement starts from; [`SessionExtension::extend`] runs for each statement, on that
//! statement's session, with a [`CatalogSnapshot`] of the tables and views it sees. Schemas are
//! registered the DataFusion way, on the `tally` catalog:
//!
//! ```
//! use std::sync::Arc;
//! use tally_engine::{CATALOG, CatalogSnapshot, SessionExtension};
//! use tally_engine::reexports::datafusion;
//! use datafusion::catalog::MemorySchemaProvider;
//! use datafusion::error::Result;
//! use datafusion::execution::context::SessionState;
//!
//! #[derive(Debug)]
//! struct Extra;
//!
//! impl SessionExtension for Extra {
//!     fn extend(&self, state: &mut SessionState, _catalog: &CatalogSnapshot) -> Result<()> {
//!         let catalog = state.catalog_list().catalog(CATALOG).expect("the tally catalog");
//!         catalog.register_schema("extra", Arc::new(MemorySchemaProvider::new()))?;
//!         Ok(())
//!     }
//! }
//! ```
//!
//! Extensions never change what the engine stores: they only add names that queries can read.

use std::fmt::Debug;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::error::Result as DfResult;
use datafusion::execution::context::SessionState;

use crate::catalog::TableDef;
use crate::snapshot::Snapshot;
use crate::views::{ViewDef, ViewStatus};

/// Adds schemas, tables or functions to the DataFusion sessions that run Tally's statements.
///
/// Both methods have empty defaults, so an extension implements only what it needs.
pub trait SessionExtension: Send + Sync + Debug {
    /// Called once when the database opens, on the session every statement's session is cloned
    /// from: the place for functions that do not depend on the data
    /// (`state.register_udf(..)`).
    fn configure(&self, state: &mut SessionState) -> DfResult<()> {
        let _ = state;
        Ok(())
    }

    /// Called for every statement, on its session, with the catalog as of its snapshot: the
    /// place for schemas whose tables describe the catalog
    /// (`state.catalog_list().catalog(CATALOG)?.register_schema(..)`). Keep it cheap: compute
    /// table contents lazily, when a query scans them.
    fn extend(&self, state: &mut SessionState, catalog: &CatalogSnapshot) -> DfResult<()> {
        let _ = (state, catalog);
        Ok(())
    }
}

/// The tables and materialized views one statement sees (cheap to clone).
#[derive(Debug, Clone)]
pub struct CatalogSnapshot {
    snapshot: Arc<Snapshot>,
}

/// A table as listed by [`CatalogSnapshot::tables`].
#[derive(Debug, Clone, Copy)]
pub struct TableInfo<'a> {
    /// Its definition (id, name, columns).
    pub def: &'a TableDef,
    /// Rows stored, in Parquet segments and the hot tier.
    pub rows: u64,
    /// Bytes stored: Parquet segments plus the Arrow IPC of hot batches.
    pub bytes: u64,
}

/// A materialized view as listed by [`CatalogSnapshot::views`].
#[derive(Debug, Clone, Copy)]
pub struct ViewInfo<'a> {
    /// Its catalog entry (id, name, table id, defining query).
    pub def: &'a ViewDef,
    /// The columns it returns.
    pub schema: &'a SchemaRef,
    /// Whether it is still being backfilled.
    pub status: ViewStatus,
}

impl CatalogSnapshot {
    pub(crate) fn new(snapshot: Arc<Snapshot>) -> Self {
        CatalogSnapshot { snapshot }
    }

    /// Tables in name order. Table and view ids come from one allocator, so an id names one
    /// relation for the life of the database.
    pub fn tables(&self) -> impl Iterator<Item = TableInfo<'_>> {
        self.snapshot.tables.values().map(|t| TableInfo {
            def: t.def.as_ref(),
            rows: t.segments.iter().map(|s| s.rows).sum::<u64>() + t.hot_rows() as u64,
            bytes: t.segments.iter().map(|s| s.bytes).sum::<u64>() + t.hot_bytes() as u64,
        })
    }

    /// Materialized views in name order.
    pub fn views(&self) -> impl Iterator<Item = ViewInfo<'_>> {
        self.snapshot.views.values().map(|v| ViewInfo {
            def: v.view.def.as_ref(),
            schema: &v.view.schema,
            status: v.status,
        })
    }
}
