//! Idempotent ingest: the batch ids that commits recorded, so that a retried COPY or ingest
//! carrying the same id is acknowledged again without its rows being written twice.
//!
//! An id is recorded in the same `WriteBatch` as the rows it names (`meta` key
//! `batch/ table_id id`, see `docs/format.md`), so "rows stored" and "id recorded" are one
//! atomic fact: a retry after a crash or a lost acknowledgement finds the id exactly when the
//! rows are there. Ids are scoped to their table and kept for
//! [`Options::batch_id_window`](crate::Options::batch_id_window); the commit thread owns this
//! map and is its only user.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rocksdb::WriteBatch;

use crate::error::{Error, Result};
use crate::storage::keys::{self, CF_META};
use crate::storage::store::Store;

/// Longest batch id accepted, in bytes.
pub const MAX_BATCH_ID_BYTES: usize = 256;

/// What a commit recorded for a batch id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recorded {
    /// Sequence number of the commit's last row batch (the database's `last_seq` after it).
    pub seq: u64,
    /// Rows the commit stored.
    pub rows: u64,
    /// When it committed, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

impl Recorded {
    fn encode(&self) -> [u8; 24] {
        let mut v = [0u8; 24];
        v[..8].copy_from_slice(&self.seq.to_be_bytes());
        v[8..16].copy_from_slice(&self.rows.to_be_bytes());
        v[16..].copy_from_slice(&self.at_ms.to_be_bytes());
        v
    }

    fn decode(bytes: &[u8]) -> Result<Recorded> {
        let field = |i: usize| -> Result<u64> {
            bytes
                .get(i * 8..i * 8 + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| Error::Corrupt("a batch id record is shorter than 24 bytes".into()))
        };
        Ok(Recorded {
            seq: field(0)?,
            rows: field(1)?,
            at_ms: field(2)?,
        })
    }
}

/// Checks a caller's batch id: non-empty, at most [`MAX_BATCH_ID_BYTES`].
pub(crate) fn check(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::InvalidDefinition(
            "a batch id must not be empty".into(),
        ));
    }
    if id.len() > MAX_BATCH_ID_BYTES {
        return Err(Error::InvalidDefinition(format!(
            "a batch id must be at most {MAX_BATCH_ID_BYTES} bytes (this one has {})",
            id.len()
        )));
    }
    Ok(())
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

type Key = (u64, String);

/// The recorded batch ids younger than the window, and those of the commit group being built.
#[derive(Debug)]
pub(crate) struct BatchIds {
    recorded: HashMap<Key, Recorded>,
    /// Recorded ids in commit order, for expiry.
    order: VecDeque<(u64, Key)>,
    /// Ids of the group being committed: recorded only if its write succeeds.
    pending: Vec<(Key, Recorded)>,
    window: Duration,
}

impl BatchIds {
    /// Loads the ids recorded within `window` (older ones are deleted at the next commit).
    pub(crate) fn load(store: &Store, window: Duration) -> Result<BatchIds> {
        let mut entries = Vec::new();
        for (key, value) in store.scan_prefix(CF_META, keys::BATCH_ID_PREFIX)? {
            let (table_id, id) = keys::decode_batch_id_key(&key)?;
            entries.push(((table_id, id), Recorded::decode(&value)?));
        }
        entries.sort_by_key(|(_, r)| r.at_ms);
        let mut ids = BatchIds {
            recorded: HashMap::with_capacity(entries.len()),
            order: VecDeque::with_capacity(entries.len()),
            pending: Vec::new(),
            window,
        };
        for (key, recorded) in entries {
            ids.order.push_back((recorded.at_ms, key.clone()));
            ids.recorded.insert(key, recorded);
        }
        Ok(ids)
    }

    /// The earlier commit of `id` into `table_id`, if one is recorded (in this group too).
    pub(crate) fn find(&self, table_id: u64, id: &str) -> Option<Recorded> {
        let key = (table_id, id.to_string());
        self.pending
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, r)| *r)
            .or_else(|| self.recorded.get(&key).copied())
    }

    /// Records `id` in `batch` (with the rows it names) and as pending in memory.
    pub(crate) fn record(
        &mut self,
        store: &Store,
        batch: &mut WriteBatch,
        table_id: u64,
        id: &str,
        recorded: Recorded,
    ) {
        batch.put_cf(
            store.cf(CF_META),
            keys::batch_id_key(table_id, id),
            recorded.encode(),
        );
        self.pending.push(((table_id, id.to_string()), recorded));
    }

    /// Deletes, in `batch`, the ids older than the window (they stay findable until the group's
    /// write succeeds: [`BatchIds::committed`]).
    pub(crate) fn expire(&self, store: &Store, batch: &mut WriteBatch, now_ms: u64) {
        let horizon = now_ms.saturating_sub(self.window.as_millis() as u64);
        for (at_ms, (table_id, id)) in &self.order {
            if *at_ms >= horizon {
                break;
            }
            batch.delete_cf(store.cf(CF_META), keys::batch_id_key(*table_id, id));
        }
    }

    /// The group's write succeeded: its ids are recorded, expired ones forgotten.
    pub(crate) fn committed(&mut self, now_ms: u64) {
        let horizon = now_ms.saturating_sub(self.window.as_millis() as u64);
        while self.order.front().is_some_and(|(at, _)| *at < horizon) {
            if let Some((_, key)) = self.order.pop_front() {
                self.recorded.remove(&key);
            }
        }
        for (key, recorded) in self.pending.drain(..) {
            self.order.push_back((recorded.at_ms, key.clone()));
            self.recorded.insert(key, recorded);
        }
    }

    /// The group's write failed: nothing it recorded exists.
    pub(crate) fn abandoned(&mut self) {
        self.pending.clear();
    }

    /// Forgets the ids of dropped tables (their keys go with the table's key range).
    pub(crate) fn forget_table(&mut self, table_id: u64) {
        self.recorded.retain(|(t, _), _| *t != table_id);
        self.order.retain(|(_, (t, _))| *t != table_id);
        self.pending.retain(|((t, _), _)| *t != table_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_short_ones_are_refused() {
        let r = Recorded {
            seq: 7,
            rows: 1_000,
            at_ms: 1_764_000_000_000,
        };
        assert_eq!(Recorded::decode(&r.encode()).unwrap(), r);
        assert!(Recorded::decode(&r.encode()[..23]).is_err());
    }

    #[test]
    fn ids_must_be_non_empty_and_bounded() {
        assert!(check("load-2026-12-02T13:00").is_ok());
        assert!(check("").is_err());
        assert!(check(&"x".repeat(MAX_BATCH_ID_BYTES)).is_ok());
        assert!(check(&"x".repeat(MAX_BATCH_ID_BYTES + 1)).is_err());
    }
}
