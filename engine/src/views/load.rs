//! Loading materialized views at open: definitions (re-compiled), state segments (read into
//! memory) and delta parts; the upgrade of format 1 directories; orphaned segment files.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use rocksdb::WriteBatch;

use super::compact::view_dir;
use super::part::DeltaPart;
use super::segment::{StateSegment, ViewSegmentMeta};
use super::{ViewData, ViewDef, ViewStatus};
use crate::catalog;
use crate::error::{Error, Result};
use crate::query::QueryEngine;
use crate::snapshot::{Snapshot, ViewEntry};
use crate::storage::keys;
use crate::storage::store::Store;

/// What loading the views found.
pub(crate) struct LoadedViews {
    /// Views whose backfill was interrupted (their states were deleted; backfill again).
    pub unfinished: Vec<u64>,
    /// One more than the largest delta part id stored.
    pub next_part_id: u64,
}

/// Upgrades a format 1 directory to format 2. Format 1 kept one RocksDB value per view group
/// (its column family is dropped when the store opens); format 2 rebuilds every view from its
/// table's rows, by marking it as backfilling, which the open then runs.
pub(crate) fn upgrade_from_v1(store: &Store) -> Result<()> {
    let mut batch = WriteBatch::default();
    let mut views = 0;
    for (key, value) in store.scan_catalog(&keys::view_def_prefix())? {
        let def: ViewDef = catalog::decode("view definition", &value)?;
        let def = ViewDef {
            status: ViewStatus::Backfilling,
            ..def
        };
        batch.put_cf(store.cf(keys::CF_CATALOG), key, catalog::encode(&def));
        views += 1;
    }
    batch.put_cf(
        store.cf(keys::CF_META),
        keys::META_FORMAT_VERSION,
        keys::FORMAT_VERSION.to_be_bytes(),
    );
    store.write(batch, true)?;
    tracing::info!(
        "upgraded the data directory from format 1 to {}: {views} materialized view(s) will be rebuilt from their tables",
        keys::FORMAT_VERSION
    );
    Ok(())
}

/// Loads and compiles the materialized views with their segments and parts into `snapshot`.
/// The states of views whose backfill was interrupted are deleted here, to be backfilled again.
pub(crate) fn load_views(
    store: &Store,
    engine: &QueryEngine,
    snapshot: &mut Snapshot,
    views_dir: &Path,
) -> Result<LoadedViews> {
    let mut segment_metas: HashMap<u64, Vec<ViewSegmentMeta>> = HashMap::new();
    for (_, value) in store.scan_catalog(&keys::all_view_segments_prefix())? {
        let meta: ViewSegmentMeta = catalog::decode("view state segment", &value)?;
        segment_metas.entry(meta.view_id).or_default().push(meta);
    }
    // Part id and value, by view id.
    type Parts = HashMap<u64, Vec<(u64, Box<[u8]>)>>;
    let mut parts: Parts = HashMap::new();
    let mut next_part_id = 1;
    for (view_id, part_id, value) in store.scan_parts()? {
        next_part_id = next_part_id.max(part_id + 1);
        parts.entry(view_id).or_default().push((part_id, value));
    }
    let mut unfinished = Vec::new();
    for (_, value) in store.scan_catalog(&keys::view_def_prefix())? {
        let def: ViewDef = catalog::decode("view definition", &value)?;
        let Some(table) = snapshot.table_by_id(def.table_id) else {
            continue;
        };
        let table_name = table.def.name.clone();
        let (status, id, name) = (def.status, def.id, def.name.clone());
        let tables = snapshot.tables.clone();
        // A deep definition plans on a stack of its own, whatever thread opens the database.
        let depth = crate::query::statement_depth(&def.query).unwrap_or(0);
        let compiled = crate::query::depth::with_big_stack(depth, || {
            futures::executor::block_on(engine.compile_view(&tables, def))
        })
        .map_err(|e| {
            Error::Corrupt(format!(
                "materialized view \"{name}\" over \"{table_name}\" no longer compiles: {e}"
            ))
        })?;
        let metas = segment_metas.remove(&id).unwrap_or_default();
        let stored_parts = parts.remove(&id).unwrap_or_default();
        let mut data = ViewData::default();
        if status == ViewStatus::Backfilling {
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(
                store.cf(keys::CF_VIEW_PARTS),
                id.to_be_bytes(),
                (id + 1).to_be_bytes(),
            );
            batch.delete_range_cf(
                store.cf(keys::CF_CATALOG),
                keys::view_segment_prefix(id),
                keys::view_segment_prefix(id + 1),
            );
            store.write(batch, true)?;
            unfinished.push(id);
        } else {
            let dir = view_dir(views_dir, id);
            for meta in metas {
                data.segments
                    .push(Arc::new(StateSegment::read(&compiled, meta, &dir)?));
            }
            for (part_id, value) in stored_parts {
                data.parts
                    .push(Arc::new(DeltaPart::decode(part_id, &value)?));
            }
        }
        snapshot.views.insert(
            name,
            Arc::new(ViewEntry {
                view: Arc::new(compiled),
                status,
                data,
            }),
        );
    }
    Ok(LoadedViews {
        unfinished,
        next_part_id,
    })
}

/// Deletes the files and directories under `views_dir` that no loaded segment names (written
/// by a compaction that did not commit, or left by a dropped view). Returns how many.
pub(crate) fn remove_orphans(views_dir: &Path, snapshot: &Snapshot) -> Result<usize> {
    let known: HashMap<String, HashSet<&str>> = snapshot
        .views
        .values()
        .map(|v| {
            (
                v.view.def.id.to_string(),
                v.data
                    .segments
                    .iter()
                    .map(|s| s.meta.file_name.as_str())
                    .collect(),
            )
        })
        .collect();
    crate::storage::segment::remove_unknown(views_dir, &known)
}
