//! How far each running backfill has got, for `tally_views` (`backfill_rows_done` of
//! `backfill_rows_total`). Held by the query engine; the backfill updates it, statements read it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Rows aggregated and rows to aggregate, per view being backfilled.
#[derive(Debug, Default)]
pub(crate) struct BackfillProgress {
    running: Mutex<HashMap<u64, (u64, u64)>>,
}

impl BackfillProgress {
    /// Starts tracking the backfill of `view_id` over `total` rows; it is forgotten when the
    /// returned guard drops (done, failed or cancelled).
    pub(crate) fn start(self: &Arc<Self>, view_id: u64, total: u64) -> BackfillTracker {
        self.lock().insert(view_id, (0, total));
        BackfillTracker {
            progress: Arc::clone(self),
            view_id,
        }
    }

    /// `(done, total)` of a running backfill.
    pub(crate) fn of(&self, view_id: u64) -> Option<(u64, u64)> {
        self.lock().get(&view_id).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (u64, u64)>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One running backfill's entry in [`BackfillProgress`].
pub(crate) struct BackfillTracker {
    progress: Arc<BackfillProgress>,
    view_id: u64,
}

impl BackfillTracker {
    /// `rows` more rows were aggregated.
    pub(crate) fn done(&self, rows: u64) {
        if let Some(entry) = self.progress.lock().get_mut(&self.view_id) {
            entry.0 += rows;
        }
    }
}

impl Drop for BackfillTracker {
    fn drop(&mut self) {
        self.progress.lock().remove(&self.view_id);
    }
}
