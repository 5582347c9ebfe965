//! Retention: raw rows of a table age out by its time column while its materialized views keep
//! their aggregates (`CREATE TABLE … WITH (retention = '30 days')`).
//!
//! The unit of removal is a whole segment, and segments hold one UTC day each: a segment goes
//! once its newest row is older than the limit. Hot rows older than the limit are flushed first
//! so that they go the same way. Removal is one catalog commit ([`Op::DropSegments`]); the
//! files are deleted by the [`Graveyard`] once no statement's snapshot can still read them (a
//! crash before that leaves orphans, which the next open deletes). Views are not touched: their
//! states already hold the rows they saw.
//!
//! [`Op::DropSegments`]: crate::commit::Op::DropSegments

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::catalog::SegmentMeta;
use crate::error::{Error, Result};
use crate::snapshot::TableState;
use crate::storage::segment::{raw_time_micros, time_bounds};
use crate::types::ColumnType;

const UNITS: [(&str, u64); 5] = [
    ("week", 7 * 86_400),
    ("day", 86_400),
    ("hour", 3_600),
    ("minute", 60),
    ("second", 1),
];

/// Parses a retention period written as PostgreSQL writes intervals: `'30 days'`, `'12 hours'`,
/// `'1 week 2 days'`, `'90 min'`, `'3600 s'`. Returns seconds (at least one).
pub(crate) fn parse_period(text: &str) -> Result<u64> {
    let bad = || {
        Error::InvalidDefinition(format!(
            "retention \"{text}\" is not a period: write it like '30 days', '12 hours' or \
             '1 week' (units: weeks, days, hours, minutes, seconds)"
        ))
    };
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() || !words.len().is_multiple_of(2) {
        return Err(bad());
    }
    let mut seconds: u64 = 0;
    for pair in words.chunks(2) {
        let count: u64 = pair[0].parse().map_err(|_| bad())?;
        let unit = pair[1].to_ascii_lowercase();
        let per = UNITS
            .iter()
            .find(|(name, _)| {
                unit == *name
                    || unit.strip_suffix('s') == Some(name)
                    || matches!(
                        (unit.as_str(), *name),
                        ("w", "week")
                            | ("d", "day")
                            | ("h" | "hr" | "hrs", "hour")
                            | ("m" | "min" | "mins", "minute")
                            | ("s" | "sec" | "secs", "second")
                    )
            })
            .map(|(_, per)| *per)
            .ok_or_else(bad)?;
        seconds = count
            .checked_mul(per)
            .and_then(|s| seconds.checked_add(s))
            .ok_or_else(bad)?;
    }
    if seconds == 0 {
        return Err(Error::InvalidDefinition(
            "retention must be longer than zero; to keep rows forever, set retention = NULL".into(),
        ));
    }
    Ok(seconds)
}

/// Writes a period the way [`parse_period`] reads it, in its largest whole unit
/// (`2592000` → `30 days`).
pub fn format_period(seconds: u64) -> String {
    for (name, per) in UNITS {
        if seconds.is_multiple_of(per) {
            let n = seconds / per;
            return format!("{n} {name}{}", if n == 1 { "" } else { "s" });
        }
    }
    format!("{seconds} seconds")
}

/// Now, in µs since the Unix epoch.
pub(crate) fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// What retention would remove from one table at `now` (µs since the epoch).
pub(crate) struct Expired {
    /// Segments whose newest row is older than the limit.
    pub segments: Vec<u64>,
    /// Whether hot rows older than the limit wait to be flushed first.
    pub hot_rows: bool,
}

/// The segments (and whether hot rows) of `table` older than its retention, `None` when it has
/// no retention.
pub(crate) fn expired(table: &TableState, now: i64) -> Result<Option<Expired>> {
    let (Some(seconds), Some(index)) = (table.def.retention_seconds, table.def.time_column_index())
    else {
        return Ok(None);
    };
    let in_days = table.def.columns[index].column_type == ColumnType::Date;
    let cutoff = now.saturating_sub((seconds as i64).saturating_mul(1_000_000));
    let segments = table
        .segments
        .iter()
        .filter(|s| {
            s.time_range
                .is_some_and(|(_, newest)| raw_time_micros(newest, in_days) < cutoff)
        })
        .map(|s| s.id)
        .collect();
    let mut hot_rows = false;
    for hot in &table.hot {
        if time_bounds(hot.batch.column(index))?
            .is_some_and(|(oldest, _)| raw_time_micros(oldest, in_days) < cutoff)
        {
            hot_rows = true;
            break;
        }
    }
    Ok(Some(Expired { segments, hot_rows }))
}

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segments removed from the catalog.
    pub segments: u64,
    /// Rows they held.
    pub rows: u64,
    /// Bytes of their files.
    pub bytes: u64,
}

/// Segment files removed from the catalog whose deletion waits until no snapshot holds them.
#[derive(Debug, Default)]
pub(crate) struct Graveyard {
    waiting: Vec<(Arc<SegmentMeta>, PathBuf)>,
}

impl Graveyard {
    /// Adds segments a commit removed, with their file paths.
    pub(crate) fn bury(&mut self, segments: impl IntoIterator<Item = (Arc<SegmentMeta>, PathBuf)>) {
        self.waiting.extend(segments);
    }

    /// Deletes the files no snapshot refers to any more (the graveyard's reference is the only
    /// one left); keeps the others for a later call. Returns the files deleted.
    pub(crate) fn sweep(&mut self) -> usize {
        let before = self.waiting.len();
        self.waiting.retain(|(meta, path)| {
            if Arc::strong_count(meta) > 1 {
                return true;
            }
            match std::fs::remove_file(path) {
                Ok(()) => false,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => {
                    tracing::warn!("could not delete expired segment {}: {e}", path.display());
                    true
                }
            }
        });
        before - self.waiting.len()
    }

    /// Files still waiting.
    pub(crate) fn len(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_read_as_postgres_writes_intervals() {
        assert_eq!(parse_period("30 days").unwrap(), 30 * 86_400);
        assert_eq!(parse_period("1 day").unwrap(), 86_400);
        assert_eq!(parse_period("12 HOURS").unwrap(), 12 * 3_600);
        assert_eq!(parse_period("1 week 2 days").unwrap(), 9 * 86_400);
        assert_eq!(parse_period("90 min").unwrap(), 5_400);
        assert_eq!(parse_period(" 3600 s ").unwrap(), 3_600);
        for bad in [
            "",
            "30",
            "days",
            "30 fortnights",
            "-1 day",
            "1.5 days",
            "0 days",
        ] {
            assert!(parse_period(bad).is_err(), "{bad:?}");
        }
        assert!(parse_period("99999999999999999 weeks").is_err());
    }

    #[test]
    fn the_graveyard_keeps_files_a_snapshot_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let meta = |id: u64| {
            Arc::new(SegmentMeta {
                v: 1,
                id,
                table_id: 1,
                file_name: format!("{id}.parquet"),
                rows: 1,
                bytes: 1,
                time_range: None,
            })
        };
        let (read, unread) = (meta(1), meta(2));
        for m in [&read, &unread] {
            std::fs::write(dir.path().join(&m.file_name), b"x").unwrap();
        }
        let snapshot_holds = Arc::clone(&read);
        let mut graveyard = Graveyard::default();
        graveyard.bury([read, unread].map(|m| {
            let path = dir.path().join(&m.file_name);
            (m, path)
        }));
        assert_eq!(graveyard.sweep(), 1);
        assert!(dir.path().join("1.parquet").exists());
        assert!(!dir.path().join("2.parquet").exists());
        drop(snapshot_holds);
        assert_eq!(graveyard.sweep(), 1);
        assert_eq!(graveyard.len(), 0);
        assert!(!dir.path().join("1.parquet").exists());
    }

    #[test]
    fn periods_print_in_their_largest_whole_unit() {
        assert_eq!(format_period(30 * 86_400), "30 days");
        assert_eq!(format_period(14 * 86_400), "2 weeks");
        assert_eq!(format_period(3_600), "1 hour");
        assert_eq!(format_period(90), "90 seconds");
        for seconds in [1, 59, 60, 86_400, 700_000] {
            assert_eq!(parse_period(&format_period(seconds)).unwrap(), seconds);
        }
    }
}
