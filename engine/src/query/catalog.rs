//! DataFusion's view of the catalog for one statement: catalog `tally`, schema `public`, and
//! every table as of the statement's snapshot, plus the schemas that
//! [session extensions](super::extension) register for the statement.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};

use super::system::{TALLY_VIEWS, views_table};
use super::table::SnapshotTable;
use crate::error::to_datafusion;
use crate::snapshot::Snapshot;
use crate::transaction::AppendTarget;
use crate::views::read::ViewTable;

/// The default (and only) catalog name.
pub const CATALOG: &str = "tally";
/// The default (and only) schema name.
pub const SCHEMA: &str = "public";

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
    ) -> Self {
        let schema = Arc::new(SnapshotSchema {
            snapshot,
            segments_dir,
            writer,
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
}

#[async_trait]
impl SchemaProvider for SnapshotSchema {
    fn table_names(&self) -> Vec<String> {
        self.snapshot
            .tables
            .keys()
            .chain(self.snapshot.views.keys())
            .cloned()
            .chain([TALLY_VIEWS.to_string()])
            .collect()
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
        if name == TALLY_VIEWS {
            return Ok(Some(Arc::new(
                views_table(&self.snapshot).map_err(to_datafusion)?,
            )));
        }
        let (Some(entry), Some(rocks)) =
            (self.snapshot.views.get(name), self.snapshot.rocks.as_ref())
        else {
            return Ok(None);
        };
        Ok(Some(Arc::new(ViewTable::new(
            Arc::clone(&entry.view),
            entry.status,
            Arc::clone(rocks),
        ))))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.snapshot.tables.contains_key(name)
            || self.snapshot.views.contains_key(name)
            || name == TALLY_VIEWS
    }
}
