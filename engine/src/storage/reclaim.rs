//! Giving back the disk space of dropped tables and views.
//!
//! DROP deletes a table's hot rows and a view's states with RocksDB range deletions in its
//! commit. A range deletion only hides the keys: their bytes stay in SST files until a
//! compaction happens to cover the range, which may be never for a quiet column family. So after
//! the commit, the [`Reclaimer`]'s thread compacts each dropped range, which drops the keys no
//! live snapshot still sees. Close stops it at once (RocksDB abandons a running compaction when
//! shutting down); a range not yet compacted keeps its tombstone, and RocksDB reclaims it
//! whenever a later compaction covers it.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::store::Store;
use crate::error::{Error, Result};

/// A range of keys `[from, to)` of one column family, deleted by a committed DROP.
#[derive(Debug, Clone)]
pub(crate) struct DroppedRange {
    /// The column family.
    pub(crate) cf: &'static str,
    /// First key of the range.
    pub(crate) from: Vec<u8>,
    /// First key past the range.
    pub(crate) to: Vec<u8>,
}

/// Handle to the thread that compacts dropped ranges away.
#[derive(Debug)]
pub(crate) struct Reclaimer {
    tx: Mutex<Option<Sender<Vec<DroppedRange>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Reclaimer {
    /// Starts the reclaim thread.
    pub(crate) fn start(store: Arc<Store>) -> Result<Reclaimer> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("tally-reclaim".into())
            .spawn(move || run(&store, rx))
            .map_err(|e| Error::io("starting the reclaim thread", e))?;
        Ok(Reclaimer {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues the ranges a committed DROP deleted (ignored once shut down).
    pub(crate) fn reclaim(&self, ranges: Vec<DroppedRange>) {
        if ranges.is_empty() {
            return;
        }
        if let Some(tx) = self.tx.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = tx.send(ranges);
        }
    }

    /// Stops `store`'s background work (a running compaction ends early) and the thread, which
    /// lets go of its handle of the store. Call it last before closing the store: RocksDB takes
    /// no more flushes or compactions.
    pub(crate) fn shutdown(&self, store: &Store) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(tx) = tx else { return };
        drop(tx);
        store.stop_background_work();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

fn run(store: &Arc<Store>, rx: Receiver<Vec<DroppedRange>>) {
    for ranges in rx {
        for range in ranges {
            if store.stopping() {
                return;
            }
            let started = std::time::Instant::now();
            store.reclaim_range(range.cf, &range.from, &range.to);
            tracing::debug!(
                "compacted a dropped range of {} in {:?}",
                range.cf,
                started.elapsed()
            );
        }
    }
}
