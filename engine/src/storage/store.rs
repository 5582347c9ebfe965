//! The RocksDB database: opening it with its column families, atomic writes, and loading the
//! catalog and hot tier at open.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rocksdb::properties::{self, PropName};
use rocksdb::statistics::{StatsLevel, Ticker};
use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DB, IteratorMode, WriteBatch, WriteOptions};

use super::keys::{self, ALL_CFS, CF_CATALOG, CF_HOT, CF_META};
use crate::error::{Error, Result};
use crate::metrics::RocksDbMetrics;

/// A stored delta part: view id, part id, value.
pub(crate) type StoredPart = (u64, u64, Box<[u8]>);

/// One key-value pair read from RocksDB.
pub(crate) type Entry = (Box<[u8]>, Box<[u8]>);

/// The engine's RocksDB instance.
pub(crate) struct Store {
    db: DB,
    /// The options the database was opened with: they hold its statistics (tickers).
    opts: rocksdb::Options,
    path: PathBuf,
    /// Set by [`Store::stop_background_work`].
    stopping: AtomicBool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// The write-ahead log size past which RocksDB flushes memtables to let old logs go.
const MAX_TOTAL_WAL_BYTES: u64 = 256 << 20;
/// Memtable size of the column families of short-lived data (hot rows, delta parts): above
/// the default table flush threshold (`Options::flush_bytes`, 64 MiB).
const TRANSIENT_WRITE_BUFFER_BYTES: usize = 128 << 20;
/// Sliding window (entries) of the deletion-triggered compaction of the short-lived families:
/// a file with half of any window deleted, or half of all its entries, is compacted.
const DELETION_WINDOW: usize = 128;
/// Memtable bytes past which a table flush or view compaction flushes the memtables.
const RELEASE_WAL_BYTES: u64 = 32 << 20;

impl Store {
    /// Opens (or creates) the RocksDB database under `path`, with every column family this
    /// version uses plus any that exist on disk (so a newer directory can be inspected and
    /// refused with a clear error rather than a RocksDB one).
    pub(crate) fn open(path: &Path) -> Result<Store> {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.set_keep_log_file_num(4);
        // A bound on the write-ahead log: past it RocksDB flushes the column families that
        // keep the oldest log alive. Without it a family with few writes (the catalog) would
        // hold every log, with the rows long since moved to Parquet, until the next open.
        opts.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
        // Counters only (compaction and flush bytes, stall time): no histograms or timers, whose
        // cost shows on the write path.
        opts.enable_statistics();
        opts.set_statistics_level(StatsLevel::ExceptHistogramOrTimers);
        let mut names: Vec<String> = ALL_CFS.iter().map(|s| s.to_string()).collect();
        if path.join("CURRENT").exists() {
            let existing = DB::list_cf(&opts, path).map_err(|e| {
                Error::storage(format!("listing column families in {}", path.display()), e)
            })?;
            for name in existing {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        let descriptors = names.iter().map(|name| {
            let mut cf_opts = rocksdb::Options::default();
            if name == keys::CF_HOT || name == keys::CF_VIEW_PARTS {
                // Short-lived Arrow IPC: deleted once flushed to Parquet or merged into a
                // segment. A memtable that holds a whole hot tier is released (see
                // `release_wal`) with its rows already deleted, instead of writing them to
                // SST files first; what does reach SSTs is not worth compressing.
                cf_opts.set_write_buffer_size(TRANSIENT_WRITE_BUFFER_BYTES);
                cf_opts.set_compression_type(rocksdb::DBCompressionType::None);
                // Their values are deleted soon after being written, often once they reached
                // SST files; a file whose entries are mostly such deletions is compacted at
                // once, dropping the values it covers, instead of waiting for the level to fill.
                cf_opts.add_compact_on_deletion_collector_factory(
                    DELETION_WINDOW,
                    DELETION_WINDOW / 2,
                    0.5,
                );
            } else {
                cf_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
            }
            ColumnFamilyDescriptor::new(name, cf_opts)
        });
        let mut db = DB::open_cf_descriptors(&opts, path, descriptors)
            .map_err(|e| Error::storage(format!("opening {}", path.display()), e))?;
        if names.iter().any(|n| n == keys::CF_VIEWS_V1) {
            // Format 1 kept view states here, combined by a merge operator this build no
            // longer has; the upgrade to format 2 rebuilds every view from its table's rows.
            db.drop_cf(keys::CF_VIEWS_V1)
                .map_err(|e| Error::storage("dropping the format 1 view states", e))?;
        }
        Ok(Store {
            db,
            opts,
            path: path.to_path_buf(),
            stopping: AtomicBool::new(false),
        })
    }

    /// A column family handle.
    pub(crate) fn cf(&self, name: &str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("every column family is opened at start")
    }

    /// Writes every column family's memtable to SST files, so that the write-ahead log is no
    /// longer needed: RocksDB deletes it, and the next open has nothing to replay. Hot batches
    /// written and deleted again (flushed to Parquet) since the last memtable flush cancel out
    /// and take no space.
    pub(crate) fn persist_memtables(&self) -> Result<()> {
        let handles: Vec<&ColumnFamily> = ALL_CFS.iter().map(|name| self.cf(name)).collect();
        self.db
            .flush_cfs_opt(&handles, &rocksdb::FlushOptions::default())
            .map_err(|e| {
                Error::storage(format!("flushing memtables of {}", self.path.display()), e)
            })
    }

    /// When the memtables hold more than [`RELEASE_WAL_BYTES`], asks RocksDB to flush them
    /// in the background (without waiting), so that the write-ahead log of rows moved to
    /// Parquet (and of delta parts merged meanwhile) is deleted: entries written and deleted
    /// since the last flush cancel out and reach no SST file. Called after table flushes, when
    /// most of what the memtables hold is dead.
    pub(crate) fn release_wal(&self) {
        let held: u64 = ALL_CFS
            .iter()
            .filter_map(|name| {
                self.db
                    .property_int_value_cf(self.cf(name), "rocksdb.cur-size-all-mem-tables")
                    .ok()
                    .flatten()
            })
            .sum();
        if held < RELEASE_WAL_BYTES {
            return;
        }
        let handles: Vec<&ColumnFamily> = ALL_CFS.iter().map(|name| self.cf(name)).collect();
        let mut opts = rocksdb::FlushOptions::default();
        opts.set_wait(false);
        if let Err(e) = self.db.flush_cfs_opt(&handles, &opts) {
            tracing::warn!(
                "flushing the memtables of {} failed: {e}",
                self.path.display()
            );
        }
    }

    /// Gives back the space of the deleted range `[from, to)` of column family `cf` by
    /// compacting it: the range deletion drops every key under it that no live snapshot still
    /// sees. (RocksDB's `DeleteFilesInRange` would be faster but ignores snapshots, and a query
    /// that began before the DROP may still be reading the range.)
    pub(crate) fn reclaim_range(&self, cf: &str, from: &[u8], to: &[u8]) {
        self.db.compact_range_cf(self.cf(cf), Some(from), Some(to));
    }

    /// RocksDB's memtable, compaction and stall figures, summed over the column families where
    /// RocksDB keeps them per family. A property RocksDB cannot give counts as 0.
    pub(crate) fn metrics(&self) -> RocksDbMetrics {
        let per_cf = |name: &PropName| -> u64 {
            ALL_CFS
                .iter()
                .filter_map(|cf| {
                    self.db
                        .property_int_value_cf(self.cf(cf), name)
                        .ok()
                        .flatten()
                })
                .sum()
        };
        let db_wide = |name: &PropName| -> u64 {
            self.db.property_int_value(name).ok().flatten().unwrap_or(0)
        };
        RocksDbMetrics {
            memtable_bytes: per_cf(properties::CUR_SIZE_ALL_MEM_TABLES),
            pending_compaction_bytes: per_cf(properties::ESTIMATE_PENDING_COMPACTION_BYTES),
            running_compactions: db_wide(properties::NUM_RUNNING_COMPACTIONS),
            running_flushes: db_wide(properties::NUM_RUNNING_FLUSHES),
            live_sst_bytes: per_cf(properties::LIVE_SST_FILES_SIZE),
            write_stopped: db_wide(properties::IS_WRITE_STOPPED),
            compaction_read_bytes: self.opts.get_ticker_count(Ticker::CompactReadBytes),
            compaction_write_bytes: self.opts.get_ticker_count(Ticker::CompactWriteBytes),
            flush_write_bytes: self.opts.get_ticker_count(Ticker::FlushWriteBytes),
            stall_micros: self.opts.get_ticker_count(Ticker::StallMicros),
        }
    }

    /// Makes RocksDB abandon running compactions and start no more, before close.
    pub(crate) fn stop_background_work(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.db.cancel_all_background_work(true);
    }

    /// Whether [`Store::stop_background_work`] was called.
    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Applies a write batch atomically, syncing the WAL first when `sync` is set.
    pub(crate) fn write(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db
            .write_opt(batch, &opts)
            .map_err(|e| Error::storage(format!("committing to {}", self.path.display()), e))
    }

    /// Reads a `meta` value.
    pub(crate) fn meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db
            .get_cf(self.cf(CF_META), key)
            .map_err(|e| Error::storage("reading metadata", e))
    }

    /// Reads a `meta` counter, 0 when absent.
    pub(crate) fn meta_u64(&self, key: &[u8]) -> Result<u64> {
        match self.meta(key)? {
            None => Ok(0),
            Some(v) => keys::decode_u64(&v).ok_or_else(|| {
                Error::Corrupt(format!(
                    "meta key {} is not a u64",
                    String::from_utf8_lossy(key)
                ))
            }),
        }
    }

    /// Checks the directory's format version, stamping new directories with ours. Returns the
    /// version found (`None` for a new directory); an older one is the caller's to upgrade.
    pub(crate) fn check_format_version(&self, data_dir: &Path) -> Result<Option<u32>> {
        match self.meta(keys::META_FORMAT_VERSION)? {
            None => {
                let mut batch = WriteBatch::default();
                batch.put_cf(
                    self.cf(CF_META),
                    keys::META_FORMAT_VERSION,
                    keys::FORMAT_VERSION.to_be_bytes(),
                );
                self.write(batch, true).map(|()| None)
            }
            Some(v) => {
                let found = u32::from_be_bytes(
                    v.as_slice()
                        .try_into()
                        .map_err(|_| Error::Corrupt("format_version is not a u32".into()))?,
                );
                if found > keys::FORMAT_VERSION {
                    return Err(Error::FormatTooNew {
                        path: data_dir.to_path_buf(),
                        found,
                        supported: keys::FORMAT_VERSION,
                    });
                }
                Ok(Some(found))
            }
        }
    }

    /// All `(key, value)` pairs of a column family whose key starts with `prefix`, in key order.
    pub(crate) fn scan_prefix(&self, cf: &str, prefix: &[u8]) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        let iter = self.db.iterator_cf(
            self.cf(cf),
            IteratorMode::From(prefix, rocksdb::Direction::Forward),
        );
        for item in iter {
            let (k, v) =
                item.map_err(|e| Error::storage(format!("scanning column family {cf}"), e))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k, v));
        }
        Ok(out)
    }

    /// Every `(key, value)` of the hot column family.
    pub(crate) fn scan_hot(&self) -> Result<Vec<Entry>> {
        self.scan_prefix(CF_HOT, &[])
    }

    /// Every delta part of every view.
    pub(crate) fn scan_parts(&self) -> Result<Vec<StoredPart>> {
        self.scan_prefix(keys::CF_VIEW_PARTS, &[])?
            .into_iter()
            .map(|(k, v)| {
                let (view, part) = k
                    .split_first_chunk::<8>()
                    .and_then(|(v, rest)| Some((*v, *rest.first_chunk::<8>()?)))
                    .filter(|_| k.len() == 16)
                    .ok_or_else(|| Error::Corrupt("malformed view part key".into()))?;
                Ok((u64::from_be_bytes(view), u64::from_be_bytes(part), v))
            })
            .collect()
    }

    /// Every `(key, value)` of the catalog column family under `prefix`.
    pub(crate) fn scan_catalog(&self, prefix: &[u8]) -> Result<Vec<Entry>> {
        self.scan_prefix(CF_CATALOG, prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes of live SST files in the hot column family.
    fn hot_sst_bytes(store: &Store) -> u64 {
        store
            .db
            .property_int_value_cf(store.cf(CF_HOT), properties::LIVE_SST_FILES_SIZE)
            .unwrap()
            .unwrap_or(0)
    }

    /// Hot rows that reached an SST file and were deleted afterwards leave the disk without
    /// waiting for their level to fill: the file of deletions is compacted at once.
    #[test]
    fn deleted_hot_rows_that_reached_sst_files_are_compacted_away() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("rocksdb")).unwrap();
        let key = |i: u64| keys::hot_key(1, i);
        let mut batch = WriteBatch::default();
        for i in 0..200 {
            batch.put_cf(store.cf(CF_HOT), key(i), vec![7u8; 32 << 10]);
        }
        store.write(batch, false).unwrap();
        store.db.flush_cf(store.cf(CF_HOT)).unwrap();
        let written = hot_sst_bytes(&store);
        assert!(written > 6 << 20, "{written} bytes of SSTs");
        let mut batch = WriteBatch::default();
        for i in 0..200 {
            batch.delete_cf(store.cf(CF_HOT), key(i));
        }
        store.write(batch, false).unwrap();
        store.db.flush_cf(store.cf(CF_HOT)).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while hot_sst_bytes(&store) > 1 << 20 {
            assert!(
                std::time::Instant::now() < deadline,
                "{} bytes of deleted rows still on disk",
                hot_sst_bytes(&store)
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
