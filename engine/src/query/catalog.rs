//! DataFusion's view of the catalog for one statement: catalog `tally`, schema `public`, and
//! every table as of the statement's snapshot, plus the schemas that
//! [session extensions](super::extension) register for the statement.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};

use super::system::{SYSTEM_TABLES, system_table};
use super::table::SnapshotTable;
use crate::error::to_datafusion;
use crate::snapshot::Snapshot;
use crate::transaction::AppendTarget;
use crate::views::progress::BackfillProgress;
use crate::views::provider::ViewTable;

/// The default (and only) catalog name.
pub const CATALOG: &str = "tally";
/// The default (and only) schema name.
pub const SCHEMA: &str = "public";

/// The snapshot a statement reads, as an extension of its session config (so of every task
/// context its plan runs with): scans that read when they run, such as a view's, find their
/// data here, which lets one plan run again at a later snapshot.
#[derive(Debug)]
pub(crate) struct ReadSnapshot(pub Arc<Snapshot>);

/// Catalog list holding the single `tally` catalog at one snapshot.
#[derive(Debug)]
pub(crate) struct SnapshotCatalogList {
    catalog: Arc<SnapshotCatalog>,
}

impl SnapshotCatalogList {
    pub(crate) fn new(
        snapshot: Arc<Snapshot>,
        segments_dir: PathBuf,
        writer: AppendTarget,
        backfills: Arc<BackfillProgress>,
    ) -> Self {
        let schema = Arc::new(SnapshotSchema {
            snapshot,
            segments_dir,
            writer,
            backfills,
            added: RwLock::default(),
        });
        SnapshotCatalogList {
            catalog: Arc::new(SnapshotCatalog {
                schema,
                extra: RwLock::default(),
            }),
        }
    }
}

impl CatalogProviderList for SnapshotCatalogList {
    fn register_catalog(
        &self,
        _name: String,
        _catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        None
    }

    fn catalog_names(&self) -> Vec<String> {
        vec![CATALOG.to_string()]
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        (name == CATALOG).then(|| Arc::clone(&self.catalog) as Arc<dyn CatalogProvider>)
    }
}

#[derive(Debug)]
struct SnapshotCatalog {
    schema: Arc<SnapshotSchema>,
    /// Schemas registered by session extensions for this statement (never `public`).
    extra: RwLock<BTreeMap<String, Arc<dyn SchemaProvider>>>,
}

impl CatalogProvider for SnapshotCatalog {
    fn schema_names(&self) -> Vec<String> {
        let extra = self.extra.read().unwrap_or_else(|e| e.into_inner());
        std::iter::once(SCHEMA.to_string())
            .chain(extra.keys().cloned())
            .collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == SCHEMA {
            return Some(Arc::clone(&self.schema) as Arc<dyn SchemaProvider>);
        }
        let extra = self.extra.read().unwrap_or_else(|e| e.into_inner());
        extra.get(name).cloned()
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> DfResult<Option<Arc<dyn SchemaProvider>>> {
        if name == SCHEMA {
            return Err(DataFusionError::Plan(format!(
                "schema \"{SCHEMA}\" holds the database's tables and cannot be replaced"
            )));
        }
        let mut extra = self.extra.write().unwrap_or_else(|e| e.into_inner());
        Ok(extra.insert(name.to_string(), schema))
    }
}

#[derive(Debug)]
struct SnapshotSchema {
    snapshot: Arc<Snapshot>,
    segments_dir: PathBuf,
    writer: AppendTarget,
    /// Running backfills' progress, for `tally_views`.
    backfills: Arc<BackfillProgress>,
    /// Tables session extensions registered for this statement (the server's
    /// `tally_sessions`); a table or view of the same name hides them.
    added: RwLock<BTreeMap<String, Arc<dyn TableProvider>>>,
}

#[async_trait]
impl SchemaProvider for SnapshotSchema {
    fn table_names(&self) -> Vec<String> {
        let added = self.added.read().unwrap_or_else(|e| e.into_inner());
        self.snapshot
            .tables
            .keys()
            .chain(self.snapshot.views.keys())
            .cloned()
            .chain(SYSTEM_TABLES.iter().map(|t| t.to_string()))
            .chain(added.keys().cloned())
            .collect()
    }

    /// Session extensions add system tables here, for one statement. A name the database
    /// already uses (a table, view or the engine's system table) keeps its meaning: the
    /// registration is ignored.
    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if self.snapshot.tables.contains_key(&name)
            || self.snapshot.views.contains_key(&name)
            || SYSTEM_TABLES.contains(&name.as_str())
        {
            return Ok(None);
        }
        let mut added = self.added.write().unwrap_or_else(|e| e.into_inner());
        Ok(added.insert(name, table))
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some(state) = self.snapshot.tables.get(name) {
            let table = SnapshotTable::new(
                Arc::clone(state),
                self.segments_dir.clone(),
                self.writer.clone(),
            );
            return Ok(Some(Arc::new(table)));
        }
        if let Some(system) =
            system_table(&self.snapshot, name, &self.backfills).map_err(to_datafusion)?
        {
            return Ok(Some(Arc::new(system)));
        }
        let Some(entry) = self.snapshot.views.get(name) else {
            let added = self.added.read().unwrap_or_else(|e| e.into_inner());
            return Ok(added.get(name).cloned());
        };
        Ok(Some(Arc::new(ViewTable::new(Arc::clone(entry)))))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.snapshot.tables.contains_key(name)
            || self.snapshot.views.contains_key(name)
            || SYSTEM_TABLES.contains(&name)
            || self
                .added
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(name)
    }
}
