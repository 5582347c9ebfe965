//! From decoded text fields to typed Arrow columns, for the text and csv COPY formats.
//!
//! [`Fields`] holds a batch of records as the splitter left them: every field's bytes in one
//! buffer, row-major. Each column is then built straight from those bytes: integers, floats,
//! booleans, dates and timestamps in the usual ISO shapes by tight typed loops; anything else
//! (numeric, bytea, uuid, an unusual timestamp spelling, a value that does not parse) goes the general
//! way, a text array cast with Arrow's kernels, which also finds the bad value and names it.

use std::sync::Arc;

use tally_engine::reexports::arrow::array::{
    Array, ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, FixedSizeBinaryBuilder,
    Float32Builder, Float64Builder, Int16Builder, Int32Builder, Int64Builder, PrimitiveBuilder,
    StringArray, StringBuilder, TimestampMicrosecondBuilder,
};
use tally_engine::reexports::arrow::compute::{CastOptions, cast_with_options};
use tally_engine::reexports::arrow::datatypes::{ArrowPrimitiveType, DataType, Field, TimeUnit};
use tally_engine::types::uuid;

use super::{DecodeError, WithColumn, copy_error, invalid_value};
use crate::pg::errors::{self, state};
use crate::pg::types;

/// Days from 0001-01-01 (chrono's `num_days_from_ce` = 1) to 1970-01-01.
const UNIX_EPOCH_FROM_CE: i32 = 719_163;

/// The decoded fields of up to a batch of records, row-major.
#[derive(Default)]
pub struct Fields {
    /// Every field's decoded bytes, one after the other.
    pub data: Vec<u8>,
    /// Where each field ends in `data`, row-major (`columns` entries per row).
    pub ends: Vec<usize>,
    /// Whether each field is NULL, row-major.
    pub nulls: Vec<bool>,
    /// The input line each row starts on.
    pub lines: Vec<u64>,
}

impl Fields {
    /// Number of complete rows.
    pub fn rows(&self) -> usize {
        self.lines.len()
    }

    /// The bytes of field `column` of `row`.
    fn field(&self, row: usize, columns: usize, column: usize) -> &[u8] {
        let at = row * columns + column;
        let start = if at == 0 { 0 } else { self.ends[at - 1] };
        &self.data[start..self.ends[at]]
    }

    fn is_null(&self, row: usize, columns: usize, column: usize) -> bool {
        self.nulls[row * columns + column]
    }

    /// The whole buffer as text, when every field is valid UTF-8 without NUL: checked once for
    /// the batch instead of field by field. Each field must also end on a character boundary
    /// (escapes can split one character's bytes over two fields, each invalid alone).
    pub fn checked_text(&self) -> Option<&str> {
        if memchr::memchr(0, &self.data).is_some() {
            return None;
        }
        let text = std::str::from_utf8(&self.data).ok()?;
        self.ends
            .iter()
            .all(|&end| text.is_char_boundary(end))
            .then_some(text)
    }

    /// Empties the batch, keeping the allocations.
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
        self.nulls.clear();
        self.lines.clear();
    }
}

/// Builds column `column` (of `columns`) of the batch as `field`'s type. `checked` is
/// [`Fields::checked_text`], computed once per batch.
pub fn build(
    table: &str,
    fields: &Fields,
    checked: Option<&str>,
    columns: usize,
    column: usize,
    field: &Field,
) -> Result<ArrayRef, DecodeError> {
    // A value that is not UTF-8 is refused with 22021, and so is NUL: PostgreSQL's text cannot
    // hold it. When the whole batch passed that check, fields are sliced from it; otherwise
    // each is checked alone, to find the bad one.
    let text = |row: usize| {
        if let Some(all) = checked {
            let at = row * columns + column;
            let start = if at == 0 { 0 } else { fields.ends[at - 1] };
            return all.get(start..fields.ends[at]);
        }
        let bytes = fields.field(row, columns, column);
        match memchr::memchr(0, bytes) {
            None => std::str::from_utf8(bytes).ok(),
            Some(_) => None,
        }
    };
    let not_utf8 = |row: usize| {
        copy_error(
            table,
            state::BAD_ENCODING,
            "invalid byte sequence for encoding \"UTF8\"".into(),
            fields.lines[row],
            None,
        )
    };
    let rows = fields.rows();
    let null = |row: usize| fields.is_null(row, columns, column);
    let fast: Option<ArrayRef> = match field.data_type() {
        DataType::Utf8 => {
            let mut b = StringBuilder::with_capacity(rows, rows * 16);
            for row in 0..rows {
                if null(row) {
                    b.append_null();
                    continue;
                }
                match text(row) {
                    Some(s) => b.append_value(s),
                    None => return Err(not_utf8(row)),
                }
            }
            Some(Arc::new(b.finish()))
        }
        DataType::Int16 => primitive(Int16Builder::with_capacity(rows), rows, &null, |row| {
            trimmed(text(row)?).parse().ok()
        }),
        DataType::Int32 => primitive(Int32Builder::with_capacity(rows), rows, &null, |row| {
            trimmed(text(row)?).parse().ok()
        }),
        DataType::Int64 => primitive(Int64Builder::with_capacity(rows), rows, &null, |row| {
            trimmed(text(row)?).parse().ok()
        }),
        DataType::Float32 => primitive(Float32Builder::with_capacity(rows), rows, &null, |row| {
            trimmed(text(row)?).parse().ok()
        }),
        DataType::Float64 => primitive(Float64Builder::with_capacity(rows), rows, &null, |row| {
            trimmed(text(row)?).parse().ok()
        }),
        DataType::Date32 => primitive(Date32Builder::with_capacity(rows), rows, &null, |row| {
            iso_date(trimmed(text(row)?).as_bytes())
        }),
        DataType::Timestamp(TimeUnit::Microsecond, zone) => primitive(
            TimestampMicrosecondBuilder::with_capacity(rows).with_timezone_opt(zone.clone()),
            rows,
            &null,
            |row| iso_timestamp_us(trimmed(text(row)?).as_bytes()),
        ),
        DataType::Boolean => {
            let mut b = BooleanBuilder::with_capacity(rows);
            let mut ok = true;
            for row in 0..rows {
                if null(row) {
                    b.append_null();
                } else if let Some(v) = text(row).and_then(types::parse_bool) {
                    b.append_value(v);
                } else {
                    ok = false;
                    break;
                }
            }
            ok.then(|| Arc::new(b.finish()) as ArrayRef)
        }
        _ => None,
    };
    match fast {
        Some(array) => Ok(array),
        None => {
            let mut strings = StringBuilder::with_capacity(rows, rows * 16);
            for row in 0..rows {
                if null(row) {
                    strings.append_null();
                } else {
                    strings.append_value(text(row).ok_or_else(|| not_utf8(row))?);
                }
            }
            convert(table, &strings.finish(), field, &fields.lines)
        }
    }
}

/// Fills a primitive builder with `parse(row)` for each non-null row; `None` as soon as one
/// value does not parse (the caller then takes the general path, which names it).
fn primitive<T: ArrowPrimitiveType>(
    mut builder: PrimitiveBuilder<T>,
    rows: usize,
    null: &dyn Fn(usize) -> bool,
    parse: impl Fn(usize) -> Option<T::Native>,
) -> Option<ArrayRef> {
    for row in 0..rows {
        if null(row) {
            builder.append_null();
        } else {
            builder.append_value(parse(row)?);
        }
    }
    Some(Arc::new(builder.finish()))
}

/// The value without the spaces PostgreSQL's input functions skip; a leading `+` kept (Rust's
/// number parsers accept it, as PostgreSQL does).
fn trimmed(text: &str) -> &str {
    match (text.as_bytes().first(), text.as_bytes().last()) {
        (Some(first), Some(last))
            if !first.is_ascii_whitespace() && !last.is_ascii_whitespace() =>
        {
            text
        }
        _ => text.trim_matches(|c: char| c.is_ascii_whitespace()),
    }
}

/// `YYYY-MM-DD` as days since 1970-01-01.
fn iso_date(b: &[u8]) -> Option<i32> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(
        digits(&b[0..4])? as i32,
        digits(&b[5..7])?,
        digits(&b[8..10])?,
    )?;
    Some(chrono::Datelike::num_days_from_ce(&date) - UNIX_EPOCH_FROM_CE)
}

/// `YYYY-MM-DD HH:MM:SS[.f…]` (or `T` between date and time), without a zone, as microseconds
/// since 1970-01-01 00:00:00. Fractions beyond microseconds are rounded, as PostgreSQL does.
fn iso_timestamp_us(b: &[u8]) -> Option<i64> {
    if b.len() < 19 || !(b[10] == b' ' || b[10] == b'T') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let days = iso_date(&b[0..10])? as i64;
    let (hour, minute, second) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut micros = 0i64;
    if b.len() > 19 {
        let fraction = &b[20..];
        if b[19] != b'.' || fraction.is_empty() || fraction.len() > 9 {
            return None;
        }
        let value = digits(fraction)? as i64;
        micros = match fraction.len() {
            n @ 1..=6 => value * 10i64.pow(6 - n as u32),
            n => {
                let divisor = 10i64.pow(n as u32 - 6);
                (value + divisor / 2) / divisor
            }
        };
    }
    let seconds = days * 86_400 + (hour * 3600 + minute * 60 + second) as i64;
    seconds.checked_mul(1_000_000)?.checked_add(micros)
}

/// ASCII digits as a number (at most 9 of them).
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, d| {
        d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
    })
}

/// The general path: a text array converted to `field`'s type, each value checked; the first
/// bad one is named with its line and column.
fn convert(
    table: &str,
    strings: &StringArray,
    field: &Field,
    lines: &[u64],
) -> Result<ArrayRef, DecodeError> {
    let invalid = |row: usize| {
        let value = strings.value(row);
        let (code, message) = invalid_value(value, field.data_type());
        copy_error(table, code, message, lines[row], None).with_column(field.name(), value)
    };
    let array: ArrayRef = match field.data_type() {
        DataType::Utf8 => Arc::new(strings.clone()),
        DataType::Boolean => {
            let mut b = BooleanBuilder::with_capacity(strings.len());
            for row in 0..strings.len() {
                if strings.is_null(row) {
                    b.append_null();
                } else {
                    match types::parse_bool(strings.value(row)) {
                        Some(v) => b.append_value(v),
                        None => return Err(invalid(row)),
                    }
                }
            }
            Arc::new(b.finish())
        }
        DataType::FixedSizeBinary(16) => {
            let mut b = FixedSizeBinaryBuilder::with_capacity(strings.len(), 16);
            for row in 0..strings.len() {
                if strings.is_null(row) {
                    b.append_null();
                } else {
                    match uuid::parse(strings.value(row)) {
                        Some(v) => b.append_value(v).expect("a parsed UUID has 16 bytes"),
                        None => return Err(invalid(row)),
                    }
                }
            }
            Arc::new(b.finish())
        }
        DataType::Binary => {
            let mut b = BinaryBuilder::with_capacity(strings.len(), 0);
            for row in 0..strings.len() {
                if strings.is_null(row) {
                    b.append_null();
                } else {
                    match types::parse_bytea(strings.value(row)) {
                        Some(v) => b.append_value(v),
                        None => return Err(invalid(row)),
                    }
                }
            }
            Arc::new(b.finish())
        }
        target => {
            let options = CastOptions {
                safe: true,
                ..Default::default()
            };
            let trimmed: StringArray = strings.iter().map(|v| v.map(trimmed)).collect();
            let cast = cast_with_options(&trimmed, target, &options).map_err(|e| {
                Box::new(errors::user_error(
                    state::NOT_SUPPORTED,
                    format!("COPY into column \"{}\": {e}", field.name()),
                ))
            })?;
            if cast.null_count() != strings.null_count()
                && let Some(row) =
                    (0..strings.len()).find(|r| cast.is_null(*r) && !strings.is_null(*r))
            {
                return Err(invalid(row));
            }
            cast
        }
    };
    Ok(array)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates_and_timestamps_parse_like_arrow() {
        let cast = |s: &str, t: DataType| {
            let array = cast_with_options(&StringArray::from(vec![s]), &t, &CastOptions::default())
                .unwrap();
            match t {
                DataType::Date32 => array
                    .as_any()
                    .downcast_ref::<tally_engine::reexports::arrow::array::Date32Array>()
                    .unwrap()
                    .value(0) as i64,
                _ => array
                    .as_any()
                    .downcast_ref::<tally_engine::reexports::arrow::array::TimestampMicrosecondArray>()
                    .unwrap()
                    .value(0),
            }
        };
        for date in [
            "1970-01-01",
            "2000-02-29",
            "1969-12-31",
            "0001-01-01",
            "9999-12-31",
        ] {
            assert_eq!(
                iso_date(date.as_bytes()).map(i64::from),
                Some(cast(date, DataType::Date32)),
                "{date}"
            );
        }
        let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
        for ts in [
            "2026-01-02 03:04:05",
            "2026-01-02T03:04:05.5",
            "2026-01-02 03:04:05.123456",
            "1960-06-30 23:59:59.999999",
            "2000-01-01 00:00:00.000001",
        ] {
            assert_eq!(
                iso_timestamp_us(ts.as_bytes()),
                Some(cast(ts, micros.clone())),
                "{ts}"
            );
        }
        assert_eq!(
            iso_timestamp_us(b"2026-01-02 03:04:05.1234567"),
            Some(cast("2026-01-02 03:04:05.123457", micros.clone()))
        );
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "2026-1-01",
            "26-01-01",
            "2026/01/01",
            "",
        ] {
            assert_eq!(iso_date(bad.as_bytes()), None, "{bad}");
        }
        for other in [
            "2026-01-02 24:00:00",
            "2026-01-02 03:04:05+02",
            "2026-01-02 03:04:05.",
            "2026-01-02 03:04",
            "2026-01-02 03:04:05 UTC",
        ] {
            assert_eq!(iso_timestamp_us(other.as_bytes()), None, "{other}");
        }
    }
}
