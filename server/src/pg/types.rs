//! Arrow ⇄ Postgres: type OIDs, text and binary encoding of result values, and decoding of
//! bound parameters into [`ScalarValue`]s.

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Datelike, NaiveDate, Timelike};
use pgwire::api::Type;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::error::PgWireResult;
use tally_engine::ColumnType;
use tally_engine::reexports::arrow::array::{Array, AsArray};
use tally_engine::reexports::arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, Decimal256Type, DurationMicrosecondType,
    DurationMillisecondType, DurationNanosecondType, DurationSecondType, Field, Float16Type,
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, IntervalDayTimeType,
    IntervalMonthDayNanoType, IntervalUnit, IntervalYearMonthType, Schema, Time32MillisecondType,
    Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimeUnit, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use tally_engine::reexports::arrow::util::display::{ArrayFormatter, FormatOptions};
use tally_engine::reexports::datafusion::common::ScalarValue;

use super::errors::{self, state};

mod array;
mod rows;
mod uuid_json;

pub(crate) use rows::ColumnEncoder;
pub use rows::encode_batch;
pub(crate) use uuid_json::jsonb_payload;

/// Microseconds between the Unix epoch and the Postgres epoch (2000-01-01).
pub(crate) const PG_EPOCH_US: i64 = 946_684_800_000_000;
/// Days between the Unix epoch and the Postgres epoch.
pub(crate) const PG_EPOCH_DAYS: i32 = 10_957;

/// The Postgres type that carries values of an Arrow type.
pub fn pg_type(data_type: &DataType) -> Type {
    match data_type {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => Type::INT8,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Decimal128(..) | DataType::Decimal256(..) => Type::NUMERIC,
        // Tally stores UUIDs, and only UUIDs, as 16 fixed bytes.
        DataType::FixedSizeBinary(16) => Type::UUID,
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => Type::BYTEA,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Time32(_) | DataType::Time64(_) => Type::TIME,
        DataType::Interval(_) | DataType::Duration(_) => Type::INTERVAL,
        DataType::List(element) | DataType::LargeList(element) => {
            array::array_type(element.data_type()).unwrap_or(Type::TEXT)
        }
        _ => Type::TEXT,
    }
}

/// The Postgres type of a result column: the declared SQL type its metadata names (CHAR(n),
/// VARCHAR(n), JSON, JSONB columns, and JSON accessors' results), else the type of its Arrow
/// values.
pub fn field_type(field: &Field) -> Type {
    match ColumnType::from_field(field) {
        Some(ColumnType::Char { .. }) => Type::BPCHAR,
        Some(ColumnType::Varchar { .. }) => Type::VARCHAR,
        Some(ColumnType::Json) => Type::JSON,
        Some(ColumnType::Jsonb) => Type::JSONB,
        _ => pg_type(field.data_type()),
    }
}

/// The Arrow type a Postgres parameter type decodes to.
fn arrow_type_of(pg: &Type) -> DataType {
    match *pg {
        Type::BOOL => DataType::Boolean,
        Type::INT2 => DataType::Int16,
        Type::INT4 | Type::OID => DataType::Int32,
        Type::INT8 => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 => DataType::Float64,
        Type::NUMERIC => DataType::Decimal128(38, 10),
        Type::BYTEA => DataType::Binary,
        Type::UUID => DataType::FixedSizeBinary(16),
        Type::DATE => DataType::Date32,
        Type::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        Type::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Type::INTERVAL => DataType::Interval(IntervalUnit::MonthDayNano),
        _ => DataType::Utf8,
    }
}

/// Row description of a result schema; `binary(i)` says whether column `i` is sent in binary.
pub fn fields(schema: &Schema, binary: impl Fn(usize) -> bool) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let format = if binary(i) {
                FieldFormat::Binary
            } else {
                FieldFormat::Text
            };
            let ty = field_type(f);
            let size = match ty {
                Type::BOOL => 1,
                Type::INT2 => 2,
                Type::INT4 | Type::FLOAT4 | Type::DATE => 4,
                Type::INT8 | Type::FLOAT8 | Type::TIMESTAMP | Type::TIMESTAMPTZ | Type::TIME => 8,
                Type::INTERVAL | Type::UUID => 16,
                _ => -1,
            };
            FieldInfo::new(f.name().clone(), None, None, ty, format).with_type_size(size)
        })
        .collect()
}

/// Whether a value is NULL (a `NullArray` has no validity buffer, so ask for logical nulls).
pub fn is_null(array: &dyn Array, row: usize) -> bool {
    array.data_type() == &DataType::Null || array.is_null(row)
}

/// The Postgres text form of a non-null value (what psql prints, and what COPY writes before
/// escaping).
pub fn write_text(array: &dyn Array, row: usize, out: &mut String) -> PgWireResult<()> {
    let w = |r: std::fmt::Result| r.map_err(|e| errors::pg(state::INTERNAL, e.to_string()));
    match array.data_type() {
        DataType::Boolean => out.push(if array.as_boolean().value(row) {
            't'
        } else {
            'f'
        }),
        DataType::Int8 => w(write!(
            out,
            "{}",
            array.as_primitive::<Int8Type>().value(row)
        ))?,
        DataType::Int16 => w(write!(
            out,
            "{}",
            array.as_primitive::<Int16Type>().value(row)
        ))?,
        DataType::Int32 => w(write!(
            out,
            "{}",
            array.as_primitive::<Int32Type>().value(row)
        ))?,
        DataType::Int64 => w(write!(
            out,
            "{}",
            array.as_primitive::<Int64Type>().value(row)
        ))?,
        DataType::UInt8 => w(write!(
            out,
            "{}",
            array.as_primitive::<UInt8Type>().value(row)
        ))?,
        DataType::UInt16 => w(write!(
            out,
            "{}",
            array.as_primitive::<UInt16Type>().value(row)
        ))?,
        DataType::UInt32 => w(write!(
            out,
            "{}",
            array.as_primitive::<UInt32Type>().value(row)
        ))?,
        DataType::UInt64 => w(write!(
            out,
            "{}",
            array.as_primitive::<UInt64Type>().value(row)
        ))?,
        DataType::Float16 => {
            float_text(array.as_primitive::<Float16Type>().value(row).to_f64(), out)
        }
        DataType::Float32 => {
            let v = array.as_primitive::<Float32Type>().value(row);
            if v.is_finite() {
                w(write!(out, "{v}"))?
            } else {
                float_text(v as f64, out)
            }
        }
        DataType::Float64 => float_text(array.as_primitive::<Float64Type>().value(row), out),
        DataType::Decimal128(..) => {
            out.push_str(&array.as_primitive::<Decimal128Type>().value_as_string(row))
        }
        DataType::Decimal256(..) => {
            out.push_str(&array.as_primitive::<Decimal256Type>().value_as_string(row))
        }
        DataType::Utf8 => out.push_str(array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => out.push_str(array.as_string::<i64>().value(row)),
        DataType::Utf8View => out.push_str(array.as_string_view().value(row)),
        DataType::Binary => hex(array.as_binary::<i32>().value(row), out),
        DataType::LargeBinary => hex(array.as_binary::<i64>().value(row), out),
        DataType::BinaryView => hex(array.as_binary_view().value(row), out),
        DataType::FixedSizeBinary(16) => {
            tally_engine::types::uuid::write(array.as_fixed_size_binary().value(row), out)
        }
        DataType::FixedSizeBinary(_) => hex(array.as_fixed_size_binary().value(row), out),
        DataType::Date32 => date_text(array.as_primitive::<Date32Type>().value(row), out),
        DataType::Date64 => date_text(
            (array.as_primitive::<Date64Type>().value(row) / 86_400_000) as i32,
            out,
        ),
        DataType::Timestamp(unit, tz) => {
            let us = timestamp_us(array, row, unit);
            timestamp_text(us, out);
            if tz.is_some() {
                out.push_str("+00");
            }
        }
        DataType::Time32(_) | DataType::Time64(_) => time_text(time_us(array, row), out),
        DataType::Interval(_) | DataType::Duration(_) => {
            let (months, days, us) = interval_parts(array, row);
            interval_text(months, days, us, out);
        }
        DataType::List(_) | DataType::LargeList(_) if array::write_array_text(array, row, out)? => {
        }
        _ => {
            let formatter = ArrayFormatter::try_new(array, &FormatOptions::default())
                .map_err(|e| errors::pg(state::INTERNAL, e.to_string()))?;
            w(write!(out, "{}", formatter.value(row)))?
        }
    }
    Ok(())
}

fn float_text(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        let _ = write!(out, "{v}");
    }
}

fn hex(bytes: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(2 + bytes.len() * 2);
    out.push_str("\\x");
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

fn date_text(days: i32, out: &mut String) {
    match NaiveDate::from_num_days_from_ce_opt(days.saturating_add(719_163)) {
        Some(d) => {
            let _ = write!(out, "{}", d.format("%Y-%m-%d"));
        }
        None => {
            let _ = write!(out, "{days}");
        }
    }
}

fn timestamp_us(array: &dyn Array, row: usize, unit: &TimeUnit) -> i64 {
    use tally_engine::reexports::arrow::datatypes::{
        TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
        TimestampSecondType,
    };
    match unit {
        TimeUnit::Second => array
            .as_primitive::<TimestampSecondType>()
            .value(row)
            .saturating_mul(1_000_000),
        TimeUnit::Millisecond => array
            .as_primitive::<TimestampMillisecondType>()
            .value(row)
            .saturating_mul(1_000),
        TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(row),
        TimeUnit::Nanosecond => array
            .as_primitive::<TimestampNanosecondType>()
            .value(row)
            .div_euclid(1_000),
    }
}

fn timestamp_text(us: i64, out: &mut String) {
    match DateTime::from_timestamp_micros(us) {
        Some(t) if (0..=9999).contains(&t.year()) => {
            // Fields rather than a strftime pattern: this runs once per value of a result.
            let _ = write!(
                out,
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            );
            fraction(us.rem_euclid(1_000_000), out);
        }
        Some(t) => {
            let _ = write!(out, "{}", t.format("%Y-%m-%d %H:%M:%S"));
            fraction(us.rem_euclid(1_000_000), out);
        }
        None => {
            let _ = write!(out, "{us}");
        }
    }
}

/// `.ffffff` without trailing zeros, as Postgres prints fractional seconds.
fn fraction(us: i64, out: &mut String) {
    if us != 0 {
        let digits = format!("{us:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

fn time_us(array: &dyn Array, row: usize) -> i64 {
    match array.data_type() {
        DataType::Time32(TimeUnit::Second) => {
            array.as_primitive::<Time32SecondType>().value(row) as i64 * 1_000_000
        }
        DataType::Time32(_) => {
            array.as_primitive::<Time32MillisecondType>().value(row) as i64 * 1_000
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            array.as_primitive::<Time64MicrosecondType>().value(row)
        }
        _ => array.as_primitive::<Time64NanosecondType>().value(row) / 1_000,
    }
}

fn time_text(us: i64, out: &mut String) {
    let secs = us.div_euclid(1_000_000);
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    fraction(us.rem_euclid(1_000_000), out);
}

/// (months, days, microseconds) of an interval or duration value.
fn interval_parts(array: &dyn Array, row: usize) -> (i32, i32, i64) {
    match array.data_type() {
        DataType::Interval(IntervalUnit::YearMonth) => (
            array.as_primitive::<IntervalYearMonthType>().value(row),
            0,
            0,
        ),
        DataType::Interval(IntervalUnit::DayTime) => {
            let v = array.as_primitive::<IntervalDayTimeType>().value(row);
            (0, v.days, v.milliseconds as i64 * 1_000)
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
            (v.months, v.days, v.nanoseconds / 1_000)
        }
        DataType::Duration(TimeUnit::Second) => (
            0,
            0,
            array
                .as_primitive::<DurationSecondType>()
                .value(row)
                .saturating_mul(1_000_000),
        ),
        DataType::Duration(TimeUnit::Millisecond) => (
            0,
            0,
            array
                .as_primitive::<DurationMillisecondType>()
                .value(row)
                .saturating_mul(1_000),
        ),
        DataType::Duration(TimeUnit::Microsecond) => (
            0,
            0,
            array.as_primitive::<DurationMicrosecondType>().value(row),
        ),
        _ => (
            0,
            0,
            array.as_primitive::<DurationNanosecondType>().value(row) / 1_000,
        ),
    }
}

/// The `postgres` IntervalStyle: `1 year 2 mons 3 days 04:05:06.5`.
fn interval_text(months: i32, days: i32, us: i64, out: &mut String) {
    let mut parts: Vec<String> = Vec::new();
    let unit = |n: i64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let (years, mons) = (months / 12, months % 12);
    if years != 0 {
        parts.push(unit(years as i64, "year", "years"));
    }
    if mons != 0 {
        parts.push(unit(mons as i64, "mon", "mons"));
    }
    if days != 0 {
        parts.push(unit(days as i64, "day", "days"));
    }
    if us != 0 || parts.is_empty() {
        let mut time = String::new();
        if us < 0 {
            time.push('-');
        }
        time_text(us.unsigned_abs() as i64, &mut time);
        parts.push(time);
    }
    out.push_str(&parts.join(" "));
}

/// The Postgres binary form of a non-null value.
pub(crate) fn write_binary(array: &dyn Array, row: usize, out: &mut BytesMut) -> PgWireResult<()> {
    match array.data_type() {
        DataType::Boolean => out.put_u8(array.as_boolean().value(row) as u8),
        DataType::Int8 => out.put_i16(array.as_primitive::<Int8Type>().value(row) as i16),
        DataType::UInt8 => out.put_i16(array.as_primitive::<UInt8Type>().value(row) as i16),
        DataType::Int16 => out.put_i16(array.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => out.put_i32(array.as_primitive::<Int32Type>().value(row)),
        DataType::UInt16 => out.put_i32(array.as_primitive::<UInt16Type>().value(row) as i32),
        DataType::Int64 => out.put_i64(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt32 => out.put_i64(array.as_primitive::<UInt32Type>().value(row) as i64),
        DataType::UInt64 => {
            let v = array.as_primitive::<UInt64Type>().value(row);
            let v = i64::try_from(v).map_err(|_| {
                errors::pg(
                    state::OUT_OF_RANGE,
                    format!("{v} is out of range for bigint"),
                )
            })?;
            out.put_i64(v)
        }
        DataType::Float16 => out.put_f32(array.as_primitive::<Float16Type>().value(row).to_f32()),
        DataType::Float32 => out.put_f32(array.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => out.put_f64(array.as_primitive::<Float64Type>().value(row)),
        DataType::Decimal128(..) | DataType::Decimal256(..) => {
            let mut text = String::new();
            write_text(array, row, &mut text)?;
            numeric_binary(&text, out);
        }
        DataType::Binary => out.extend_from_slice(array.as_binary::<i32>().value(row)),
        DataType::LargeBinary => out.extend_from_slice(array.as_binary::<i64>().value(row)),
        DataType::BinaryView => out.extend_from_slice(array.as_binary_view().value(row)),
        DataType::FixedSizeBinary(_) => {
            out.extend_from_slice(array.as_fixed_size_binary().value(row))
        }
        DataType::Date32 => out.put_i32(
            array
                .as_primitive::<Date32Type>()
                .value(row)
                .saturating_sub(PG_EPOCH_DAYS),
        ),
        DataType::Date64 => out.put_i32(
            ((array.as_primitive::<Date64Type>().value(row) / 86_400_000) as i32)
                .saturating_sub(PG_EPOCH_DAYS),
        ),
        DataType::Timestamp(unit, _) => {
            out.put_i64(timestamp_us(array, row, unit).saturating_sub(PG_EPOCH_US))
        }
        DataType::Time32(_) | DataType::Time64(_) => out.put_i64(time_us(array, row)),
        DataType::Interval(_) | DataType::Duration(_) => {
            let (months, days, us) = interval_parts(array, row);
            out.put_i64(us);
            out.put_i32(days);
            out.put_i32(months);
        }
        DataType::List(element) | DataType::LargeList(element)
            if array::array_type(element.data_type()).is_some() =>
        {
            array::write_array_binary(array, row, out)?;
        }
        _ => {
            // Sent as TEXT: the binary form of text is its bytes.
            let mut text = String::new();
            write_text(array, row, &mut text)?;
            out.extend_from_slice(text.as_bytes());
        }
    }
    Ok(())
}

/// Postgres' binary NUMERIC from a decimal string (`-123.4500`): base-10000 digit groups.
fn numeric_binary(text: &str, out: &mut BytesMut) {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    let int_part = int_part.trim_start_matches('0');
    let dscale = frac_part.len() as u16;
    let int_pad = (4 - int_part.len() % 4) % 4;
    let frac_pad = (4 - frac_part.len() % 4) % 4;
    let int_digits = format!("{}{}", "0".repeat(int_pad), int_part);
    let frac_digits = format!("{}{}", frac_part, "0".repeat(frac_pad));
    let group = |s: &str| -> Vec<i16> {
        s.as_bytes()
            .chunks(4)
            .map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + (d - b'0') as i16))
            .collect()
    };
    let mut groups = group(&int_digits);
    let mut weight = groups.len() as i16 - 1;
    groups.extend(group(&frac_digits));
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.put_i16(groups.len() as i16);
    out.put_i16(weight);
    out.put_u16(if negative && !groups.is_empty() {
        0x4000
    } else {
        0
    });
    out.put_u16(dscale);
    for g in groups {
        out.put_i16(g);
    }
}

/// Postgres' binary NUMERIC back to a decimal string.
pub(crate) fn numeric_from_binary(bytes: &[u8]) -> Option<String> {
    let read = |i: usize| -> Option<i16> {
        Some(i16::from_be_bytes(bytes.get(i..i + 2)?.try_into().ok()?))
    };
    let ndigits = read(0)?.max(0) as usize;
    let weight = read(2)? as i64;
    let sign = read(4)? as u16;
    let dscale = read(6)?.max(0) as usize;
    if sign == 0xC000 {
        return Some("NaN".into());
    }
    let groups: Vec<i64> = (0..ndigits)
        .map(|i| read(8 + 2 * i).map(|d| d as i64))
        .collect::<Option<_>>()?;
    let mut int_part = String::new();
    let mut frac_part = String::new();
    for (i, g) in groups.iter().enumerate() {
        let position = weight - i as i64;
        if position >= 0 {
            int_part.push_str(&format!("{g:04}"));
        } else {
            frac_part.push_str(&format!("{g:04}"));
        }
    }
    if weight >= ndigits as i64 {
        int_part.push_str(&"0000".repeat((weight + 1 - ndigits as i64) as usize));
    }
    if weight < -1 {
        frac_part.insert_str(0, &"0000".repeat((-1 - weight) as usize));
    }
    let int_part = int_part.trim_start_matches('0');
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    text.push_str(if int_part.is_empty() { "0" } else { int_part });
    if dscale > 0 {
        frac_part.truncate(dscale);
        while frac_part.len() < dscale {
            frac_part.push('0');
        }
        text.push('.');
        text.push_str(&frac_part);
    }
    Some(text)
}

/// Decodes one bound parameter into the Arrow type the statement expects (`expected`), from
/// the client's type (`sent`) and format.
pub fn decode_parameter(
    bytes: Option<&[u8]>,
    binary: bool,
    sent: &Type,
    expected: Option<&DataType>,
    index: usize,
) -> PgWireResult<ScalarValue> {
    // A parameter the plan no longer uses (a pruned catalog join) is typed NULL: keep the
    // value as sent.
    let target = expected
        .filter(|t| **t != DataType::Null)
        .cloned()
        .unwrap_or_else(|| arrow_type_of(sent));
    let Some(bytes) = bytes else {
        return ScalarValue::try_from(&target)
            .map_err(|e| errors::pg(state::INVALID_PARAMETER, e.to_string()));
    };
    let bad = |what: &str| {
        errors::pg(
            state::INVALID_TEXT,
            format!("invalid {what} for parameter ${}", index + 1),
        )
    };
    let value = if binary {
        let fixed = |n: usize| -> PgWireResult<&[u8]> {
            if bytes.len() == n {
                Ok(bytes)
            } else {
                Err(errors::pg(
                    state::PROTOCOL,
                    format!(
                        "incorrect binary data format in parameter ${}: expected {n} bytes, got {}",
                        index + 1,
                        bytes.len()
                    ),
                ))
            }
        };
        match *sent {
            Type::BOOL => ScalarValue::Boolean(Some(fixed(1)?[0] != 0)),
            Type::INT2 => ScalarValue::Int16(Some(i16::from_be_bytes(arr(fixed(2)?)))),
            Type::INT4 | Type::OID => ScalarValue::Int32(Some(i32::from_be_bytes(arr(fixed(4)?)))),
            Type::INT8 => ScalarValue::Int64(Some(i64::from_be_bytes(arr(fixed(8)?)))),
            Type::FLOAT4 => ScalarValue::Float32(Some(f32::from_be_bytes(arr(fixed(4)?)))),
            Type::FLOAT8 => ScalarValue::Float64(Some(f64::from_be_bytes(arr(fixed(8)?)))),
            Type::BYTEA => ScalarValue::Binary(Some(bytes.to_vec())),
            Type::UUID => ScalarValue::FixedSizeBinary(16, Some(fixed(16)?.to_vec())),
            Type::JSONB => {
                let text = uuid_json::jsonb_text(bytes, index)?;
                return from_text(text, &target, index);
            }
            Type::DATE => ScalarValue::Date32(Some(
                i32::from_be_bytes(arr(fixed(4)?)).saturating_add(PG_EPOCH_DAYS),
            )),
            Type::TIMESTAMP => ScalarValue::TimestampMicrosecond(
                Some(i64::from_be_bytes(arr(fixed(8)?)).saturating_add(PG_EPOCH_US)),
                None,
            ),
            Type::TIMESTAMPTZ => ScalarValue::TimestampMicrosecond(
                Some(i64::from_be_bytes(arr(fixed(8)?)).saturating_add(PG_EPOCH_US)),
                Some(Arc::from("UTC")),
            ),
            Type::NUMERIC => {
                let text = numeric_from_binary(bytes).ok_or_else(|| bad("numeric"))?;
                return from_text(&text, &target, index);
            }
            Type::INTERVAL => {
                let b = fixed(16)?;
                let us = i64::from_be_bytes(arr(&b[0..8]));
                let days = i32::from_be_bytes(arr(&b[8..12]));
                let months = i32::from_be_bytes(arr(&b[12..16]));
                ScalarValue::IntervalMonthDayNano(Some(
                    tally_engine::reexports::arrow::datatypes::IntervalMonthDayNano::new(
                        months,
                        days,
                        us.saturating_mul(1_000),
                    ),
                ))
            }
            _ => {
                let text = std::str::from_utf8(bytes).map_err(|_| {
                    errors::pg(
                        state::BAD_ENCODING,
                        format!("parameter ${} is not valid UTF-8", index + 1),
                    )
                })?;
                return from_text(text, &target, index);
            }
        }
    } else {
        let text = std::str::from_utf8(bytes).map_err(|_| {
            errors::pg(
                state::BAD_ENCODING,
                format!("parameter ${} is not valid UTF-8", index + 1),
            )
        })?;
        return from_text(text, &target, index);
    };
    if value.data_type() == target {
        Ok(value)
    } else {
        value.cast_to(&target).map_err(|e| {
            errors::pg(
                state::INVALID_PARAMETER,
                format!("parameter ${}: {e}", index + 1),
            )
        })
    }
}

fn arr<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

/// Parses a value's text form into `target`.
pub fn from_text(text: &str, target: &DataType, index: usize) -> PgWireResult<ScalarValue> {
    // PostgreSQL reads `'… 03:04:05-05'` as the timestamp 03:04:05: the offset of a value for
    // a column without time zone is dropped, not applied (JDBC's setTimestamp sends the JVM's
    // offset with every value).
    let text = match target {
        DataType::Timestamp(_, None) => without_offset(text),
        _ => text,
    };
    match target {
        DataType::FixedSizeBinary(16) => uuid_json::uuid_parameter(text, index),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            let bytes = parse_bytea(text).ok_or_else(|| {
                errors::pg(
                    state::INVALID_TEXT,
                    format!(
                        "invalid input syntax for type bytea in parameter ${}",
                        index + 1
                    ),
                )
            })?;
            ScalarValue::Binary(Some(bytes))
                .cast_to(target)
                .map_err(|e| errors::pg(state::INVALID_TEXT, e.to_string()))
        }
        DataType::Boolean => match parse_bool(text) {
            Some(b) => Ok(ScalarValue::Boolean(Some(b))),
            None => Err(errors::pg(
                state::INVALID_TEXT,
                format!("invalid input syntax for type boolean: \"{text}\""),
            )),
        },
        _ => ScalarValue::try_from_string(text.to_string(), target).map_err(|_| {
            errors::pg(
                state::INVALID_TEXT,
                format!(
                    "invalid input syntax for type {} in parameter ${}: \"{text}\"",
                    pg_type(target).name(),
                    index + 1
                ),
            )
        }),
    }
}

/// A timestamp's text without its UTC offset (`+05:30`, `-05`, `Z`) if it has one.
fn without_offset(text: &str) -> &str {
    let text = text.trim();
    // The offset follows the time of day, which follows the date after a space or a `T`.
    let Some(time) = text.find([' ', 'T']).map(|at| at + 1) else {
        return text;
    };
    match text[time..].find(['+', '-', 'Z', 'z']) {
        Some(offset) => text[..time + offset].trim_end(),
        None => text,
    }
}

/// Postgres' boolean spellings.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// A bytea in hex (`\x0102`) or as raw text.
pub fn parse_bytea(text: &str) -> Option<Vec<u8>> {
    match text
        .strip_prefix("\\x")
        .or_else(|| text.strip_prefix("\\X"))
    {
        Some(hex) => {
            if hex.len() % 2 != 0 {
                return None;
            }
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect()
        }
        None => Some(text.as_bytes().to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_binary_round_trips() {
        for text in [
            "0",
            "1",
            "-1.50",
            "12345.6789",
            "0.0001",
            "100000000",
            "-0.000012",
            "99999999999999999999.123",
        ] {
            let mut buf = BytesMut::new();
            numeric_binary(text, &mut buf);
            let back = numeric_from_binary(&buf).unwrap();
            let norm = |s: &str| s.parse::<f64>().unwrap();
            assert_eq!(norm(&back), norm(text), "{text} -> {back}");
        }
    }

    #[test]
    fn a_timestamp_parameter_drops_its_offset_as_postgres_does() {
        let plain = DataType::Timestamp(TimeUnit::Microsecond, None);
        let at = |text: &str| from_text(text, &plain, 0).unwrap();
        let expected = at("2026-01-02 03:04:05.123456");
        for text in [
            "2026-01-02 03:04:05.123456-05",
            "2026-01-02 03:04:05.123456+05:30",
            "2026-01-02T03:04:05.123456Z",
            " 2026-01-02 03:04:05.123456 +00 ",
        ] {
            assert_eq!(at(text), expected, "{text}");
        }
        assert_eq!(without_offset("2026-01-02"), "2026-01-02");
        // With a time zone the offset is the instant's.
        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")));
        assert_eq!(
            from_text("2026-01-02 03:00:00-05", &utc, 0).unwrap(),
            from_text("2026-01-02 08:00:00+00", &utc, 0).unwrap()
        );
    }

    #[test]
    fn bytea_and_timestamp_text_match_postgres() {
        let mut s = String::new();
        hex(&[0x00, 0xff, 0x1a], &mut s);
        assert_eq!(s, "\\x00ff1a");
        for (us, text) in [
            (1_767_256_380_500_000, "2026-01-01 08:33:00.5"),
            (0, "1970-01-01 00:00:00"),
            (-1, "1969-12-31 23:59:59.999999"),
        ] {
            s.clear();
            timestamp_text(us, &mut s);
            assert_eq!(s, text);
        }
        // Outside years 0–9999, chrono's own formatting (as before the fast path).
        let far = 253_402_300_800_000_000; // 10000-01-01
        s.clear();
        timestamp_text(far, &mut s);
        let expected = DateTime::from_timestamp_micros(far)
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        assert_eq!(s, expected);
    }

    #[test]
    fn interval_text_matches_postgres() {
        let mut s = String::new();
        interval_text(
            14,
            3,
            4 * 3_600_000_000 + 5 * 60_000_000 + 6_500_000,
            &mut s,
        );
        assert_eq!(s, "1 year 2 mons 3 days 04:05:06.5");
        s.clear();
        interval_text(0, 0, 0, &mut s);
        assert_eq!(s, "00:00:00");
    }
}
