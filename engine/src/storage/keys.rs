//! Key layouts of the column families (documented byte by byte in `docs/format.md`).
//!
//! Every integer in a key is big-endian, so RocksDB's byte order equals numeric order.

/// Column family of table and segment definitions.
pub(crate) const CF_CATALOG: &str = "catalog";
/// Column family of hot (not yet flushed) batches.
pub(crate) const CF_HOT: &str = "hot";
/// Column family of counters and the format version.
pub(crate) const CF_META: &str = "meta";
/// Column family of materialized views' delta parts (key: view id, part id).
pub(crate) const CF_VIEW_PARTS: &str = "view_parts";
/// Column family where format 1 kept view states (dropped when such a directory is opened).
pub(crate) const CF_VIEWS_V1: &str = "views";
/// All column families this version uses.
pub(crate) const ALL_CFS: [&str; 4] = [CF_CATALOG, CF_HOT, CF_META, CF_VIEW_PARTS];

/// The on-disk format version this build writes and the newest it reads. Format 1 (per-group
/// view states under a merge operator) is upgraded at open: its views are rebuilt.
pub(crate) const FORMAT_VERSION: u32 = 2;

/// `meta` key: format version (u32 BE).
pub(crate) const META_FORMAT_VERSION: &[u8] = b"format_version";
/// `meta` key: next table id (u64 BE).
pub(crate) const META_NEXT_TABLE_ID: &[u8] = b"next_table_id";
/// `meta` key: next segment id (u64 BE).
pub(crate) const META_NEXT_SEGMENT_ID: &[u8] = b"next_segment_id";
/// `meta` key: sequence number of the last commit that wrote rows (u64 BE).
pub(crate) const META_LAST_SEQ: &[u8] = b"last_seq";

const TABLE_PREFIX: u8 = b't';
const VIEW_PREFIX: u8 = b'v';
const SEGMENT_PREFIX: u8 = b's';
const VIEW_SEGMENT_PREFIX: u8 = b'w';

/// `catalog` key of a view's state segment: `'w' view_id segment_id`.
pub(crate) fn view_segment_key(view_id: u64, segment_id: u64) -> Vec<u8> {
    let mut k = view_segment_prefix(view_id);
    k.extend_from_slice(&segment_id.to_be_bytes());
    k
}

/// Prefix of one view's state segments: `'w' view_id`.
pub(crate) fn view_segment_prefix(view_id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(VIEW_SEGMENT_PREFIX);
    k.extend_from_slice(&view_id.to_be_bytes());
    k
}

/// Prefix of every view's state segments.
pub(crate) fn all_view_segments_prefix() -> Vec<u8> {
    vec![VIEW_SEGMENT_PREFIX]
}

/// `view_parts` key of a delta part: `view_id part_id`.
pub(crate) fn part_key(view_id: u64, part_id: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&view_id.to_be_bytes());
    k[8..].copy_from_slice(&part_id.to_be_bytes());
    k
}

/// `catalog` key of a table definition: `'t' table_id`.
pub(crate) fn table_key(table_id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(TABLE_PREFIX);
    k.extend_from_slice(&table_id.to_be_bytes());
    k
}

/// Prefix of all table definitions.
pub(crate) fn table_prefix() -> Vec<u8> {
    vec![TABLE_PREFIX]
}

/// `catalog` key of a view definition: `'v' view_id`.
pub(crate) fn view_key(view_id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(VIEW_PREFIX);
    k.extend_from_slice(&view_id.to_be_bytes());
    k
}

/// Prefix of all view definitions.
pub(crate) fn view_def_prefix() -> Vec<u8> {
    vec![VIEW_PREFIX]
}

/// `catalog` key of a segment: `'s' table_id segment_id`.
pub(crate) fn segment_key(table_id: u64, segment_id: u64) -> Vec<u8> {
    let mut k = segment_prefix(table_id);
    k.extend_from_slice(&segment_id.to_be_bytes());
    k
}

/// Prefix of one table's segments.
pub(crate) fn segment_prefix(table_id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(SEGMENT_PREFIX);
    k.extend_from_slice(&table_id.to_be_bytes());
    k
}

/// Prefix of all segments.
pub(crate) fn all_segments_prefix() -> Vec<u8> {
    vec![SEGMENT_PREFIX]
}

/// `hot` key of a batch: `table_id seq`.
pub(crate) fn hot_key(table_id: u64, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&table_id.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Splits a `hot` key into table id and sequence number.
pub(crate) fn parse_hot_key(key: &[u8]) -> Option<(u64, u64)> {
    if key.len() != 16 {
        return None;
    }
    let table = u64::from_be_bytes(key[..8].try_into().ok()?);
    let seq = u64::from_be_bytes(key[8..].try_into().ok()?);
    Some((table, seq))
}

/// Prefix of the `meta` keys of recorded batch ids (see `batch_ids.rs`).
pub(crate) const BATCH_ID_PREFIX: &[u8] = b"batch/";

/// Prefix of one table's recorded batch ids: `"batch/" table_id`.
pub(crate) fn batch_id_prefix(table_id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(BATCH_ID_PREFIX.len() + 8);
    k.extend_from_slice(BATCH_ID_PREFIX);
    k.extend_from_slice(&table_id.to_be_bytes());
    k
}

/// `meta` key of a recorded batch id: `"batch/" table_id id-bytes`.
pub(crate) fn batch_id_key(table_id: u64, id: &str) -> Vec<u8> {
    let mut k = batch_id_prefix(table_id);
    k.extend_from_slice(id.as_bytes());
    k
}

/// Splits a batch id key into table id and id.
pub(crate) fn decode_batch_id_key(key: &[u8]) -> crate::error::Result<(u64, String)> {
    let bad = || crate::error::Error::Corrupt(format!("malformed batch id key {key:?}"));
    let rest = key.strip_prefix(BATCH_ID_PREFIX).ok_or_else(bad)?;
    let table = rest.get(..8).and_then(decode_u64).ok_or_else(bad)?;
    let id = std::str::from_utf8(&rest[8..]).map_err(|_| bad())?;
    Ok((table, id.to_string()))
}

/// Reads a big-endian u64 value.
pub(crate) fn decode_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_keys_sort_by_table_then_sequence() {
        let mut keys = [
            hot_key(2, 1),
            hot_key(1, 300),
            hot_key(1, 2),
            hot_key(1, 256),
        ];
        keys.sort();
        let parsed: Vec<_> = keys.iter().map(|k| parse_hot_key(k).unwrap()).collect();
        assert_eq!(parsed, vec![(1, 2), (1, 256), (1, 300), (2, 1)]);
        assert_eq!(parse_hot_key(b"short"), None);
    }

    #[test]
    fn segment_keys_share_their_table_prefix() {
        assert!(segment_key(7, 9).starts_with(&segment_prefix(7)));
        assert!(!segment_key(8, 9).starts_with(&segment_prefix(7)));
    }

    #[test]
    fn batch_id_keys_round_trip_within_their_table_prefix() {
        let key = batch_id_key(7, "retry/1");
        assert!(key.starts_with(&batch_id_prefix(7)));
        assert!(key.as_slice() < batch_id_prefix(8).as_slice());
        assert_eq!(decode_batch_id_key(&key).unwrap(), (7, "retry/1".into()));
        assert!(decode_batch_id_key(b"batch/short").is_err());
    }
}
