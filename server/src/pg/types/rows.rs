//! Result batches as DataRows. Each column's encoder is chosen once per batch (a typed array
//! and its format), so the per-value work is a null check and a write into one shared buffer;
//! the common types (integers, floats, text, timestamps, dates, booleans) have direct paths and
//! every other type goes through [`write_binary`] / [`write_text`].

use bytes::{BufMut, BytesMut};
use pgwire::api::Type;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;
use tally_engine::reexports::arrow::array::{
    Array, AsArray, BooleanArray, Date32Array, Float32Array, Float64Array, Int16Array, Int32Array,
    Int64Array, LargeStringArray, RecordBatch, StringArray, StringViewArray,
    TimestampMicrosecondArray,
};
use tally_engine::reexports::arrow::buffer::NullBuffer;
use tally_engine::reexports::arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, TimeUnit,
    TimestampMicrosecondType,
};

use super::{PG_EPOCH_DAYS, PG_EPOCH_US, write_binary, write_text};

/// Encodes every row of `batch` as DataRows in the formats of `fields`.
pub fn encode_batch(batch: &RecordBatch, fields: &[FieldInfo]) -> PgWireResult<Vec<DataRow>> {
    let rows = batch.num_rows();
    let encoders: Vec<ColumnEncoder<'_>> = batch
        .columns()
        .iter()
        .zip(fields)
        .map(|(column, field)| {
            ColumnEncoder::for_type(
                column.as_ref(),
                field.format() == FieldFormat::Binary,
                field.datatype(),
            )
        })
        .collect();
    // One buffer for the batch, sized for all of it: each row is split off it, so rows share
    // its allocation and it never grows (and copies) while rows are written.
    let bytes: usize = encoders.iter().map(|e| e.batch_bytes_hint()).sum();
    let mut buf = BytesMut::with_capacity(bytes.max(1));
    let mut text = String::new();
    let mut out = Vec::with_capacity(rows);
    for row in 0..rows {
        for encoder in &encoders {
            encoder.encode(row, &mut buf, &mut text)?;
        }
        out.push(DataRow::new(buf.split(), encoders.len() as i16));
    }
    Ok(out)
}

/// How one column's values are written: a typed array and the format, resolved once.
pub(crate) struct ColumnEncoder<'a> {
    array: &'a dyn Array,
    /// The array's null mask, read without a virtual call per value.
    nulls: Option<&'a NullBuffer>,
    kind: Kind<'a>,
}

enum Kind<'a> {
    /// Every value is NULL (`DataType::Null` has no validity buffer).
    AllNull,
    Bool(&'a BooleanArray, bool),
    Int16(&'a Int16Array, bool),
    Int32(&'a Int32Array, bool),
    Int64(&'a Int64Array, bool),
    /// Floats in binary only: their text form follows Postgres' rules in [`write_text`].
    Float32(&'a Float32Array),
    Float64(&'a Float64Array),
    /// Text is the same bytes in both formats.
    Utf8(&'a StringArray),
    /// JSONB text in binary: the version byte, then the text.
    JsonbBinary(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
    Utf8View(&'a StringViewArray),
    /// Timestamps without time zone in microseconds, binary.
    TimestampMicros(&'a TimestampMicrosecondArray),
    /// Dates, binary.
    Date32(&'a Date32Array),
    /// Any other type or format, through the generic writers.
    Generic(bool),
}

impl<'a> ColumnEncoder<'a> {
    /// The encoder of `array` sent as Postgres type `ty` (which decides JSONB's binary form).
    pub(crate) fn for_type(array: &'a dyn Array, binary: bool, ty: &Type) -> ColumnEncoder<'a> {
        if binary
            && *ty == Type::JSONB
            && let Some(strings) = array.as_string_opt::<i32>()
        {
            return ColumnEncoder {
                array,
                nulls: array.nulls(),
                kind: Kind::JsonbBinary(strings),
            };
        }
        ColumnEncoder::new(array, binary)
    }

    /// The encoder of `array` in binary (`binary`) or text format.
    pub(crate) fn new(array: &'a dyn Array, binary: bool) -> ColumnEncoder<'a> {
        let kind = match array.data_type() {
            DataType::Null => Kind::AllNull,
            DataType::Boolean => Kind::Bool(array.as_boolean(), binary),
            DataType::Int16 => Kind::Int16(array.as_primitive::<Int16Type>(), binary),
            DataType::Int32 => Kind::Int32(array.as_primitive::<Int32Type>(), binary),
            DataType::Int64 => Kind::Int64(array.as_primitive::<Int64Type>(), binary),
            DataType::Float32 if binary => Kind::Float32(array.as_primitive::<Float32Type>()),
            DataType::Float64 if binary => Kind::Float64(array.as_primitive::<Float64Type>()),
            DataType::Utf8 => Kind::Utf8(array.as_string::<i32>()),
            DataType::LargeUtf8 => Kind::LargeUtf8(array.as_string::<i64>()),
            DataType::Utf8View => Kind::Utf8View(array.as_string_view()),
            DataType::Timestamp(TimeUnit::Microsecond, None) if binary => {
                Kind::TimestampMicros(array.as_primitive::<TimestampMicrosecondType>())
            }
            DataType::Date32 if binary => Kind::Date32(array.as_primitive::<Date32Type>()),
            _ => Kind::Generic(binary),
        };
        ColumnEncoder {
            array,
            nulls: array.nulls(),
            kind,
        }
    }

    /// The bytes the column's values take with their length prefixes: exact for fixed-width
    /// binary values and text, a guess for the rest.
    fn batch_bytes_hint(&self) -> usize {
        let rows = self.array.len();
        let values = match &self.kind {
            Kind::AllNull => 0,
            Kind::Bool(..) => rows,
            Kind::Int16(_, true) => 2 * rows,
            Kind::Int32(_, true) | Kind::Float32(_) | Kind::Date32(_) => 4 * rows,
            Kind::Int64(_, true) | Kind::Float64(_) | Kind::TimestampMicros(_) => 8 * rows,
            Kind::Utf8(a) => {
                let offsets = a.value_offsets();
                (offsets[offsets.len() - 1] - offsets[0]) as usize
            }
            Kind::JsonbBinary(a) => {
                let offsets = a.value_offsets();
                (offsets[offsets.len() - 1] - offsets[0]) as usize + rows
            }
            Kind::LargeUtf8(a) => {
                let offsets = a.value_offsets();
                (offsets[offsets.len() - 1] - offsets[0]) as usize
            }
            _ => 8 * rows,
        };
        4 * rows + values
    }

    /// Appends row `row`'s value with its length prefix (-1 for NULL). `scratch` is reused for
    /// text forms.
    #[inline]
    pub(crate) fn encode(
        &self,
        row: usize,
        out: &mut BytesMut,
        scratch: &mut String,
    ) -> PgWireResult<()> {
        if matches!(self.kind, Kind::AllNull) || self.nulls.is_some_and(|n| n.is_null(row)) {
            out.put_i32(-1);
            return Ok(());
        }
        match &self.kind {
            Kind::Bool(a, binary) => {
                out.put_i32(1);
                let v = a.value(row);
                out.put_u8(match (binary, v) {
                    (true, v) => v as u8,
                    (false, true) => b't',
                    (false, false) => b'f',
                });
            }
            Kind::Int16(a, true) => {
                out.put_i32(2);
                out.put_i16(a.value(row));
            }
            Kind::Int32(a, true) => {
                out.put_i32(4);
                out.put_i32(a.value(row));
            }
            Kind::Int64(a, true) => {
                out.put_i32(8);
                out.put_i64(a.value(row));
            }
            Kind::Int16(a, false) => put_text(out, itoa::Buffer::new().format(a.value(row))),
            Kind::Int32(a, false) => put_text(out, itoa::Buffer::new().format(a.value(row))),
            Kind::Int64(a, false) => put_text(out, itoa::Buffer::new().format(a.value(row))),
            Kind::Float32(a) => {
                out.put_i32(4);
                out.put_f32(a.value(row));
            }
            Kind::Float64(a) => {
                out.put_i32(8);
                out.put_f64(a.value(row));
            }
            Kind::Utf8(a) => put_text(out, a.value(row)),
            Kind::JsonbBinary(a) => {
                let text = a.value(row);
                out.put_i32(text.len() as i32 + 1);
                out.put_u8(super::uuid_json::JSONB_VERSION);
                out.extend_from_slice(text.as_bytes());
            }
            Kind::LargeUtf8(a) => put_text(out, a.value(row)),
            Kind::Utf8View(a) => put_text(out, a.value(row)),
            Kind::TimestampMicros(a) => {
                out.put_i32(8);
                out.put_i64(a.value(row).saturating_sub(PG_EPOCH_US));
            }
            Kind::Date32(a) => {
                out.put_i32(4);
                out.put_i32(a.value(row).saturating_sub(PG_EPOCH_DAYS));
            }
            Kind::Generic(binary) => {
                let at = out.len();
                out.put_i32(0);
                if *binary {
                    write_binary(self.array, row, out)?;
                } else {
                    scratch.clear();
                    write_text(self.array, row, scratch)?;
                    out.extend_from_slice(scratch.as_bytes());
                }
                let len = (out.len() - at - 4) as i32;
                out[at..at + 4].copy_from_slice(&len.to_be_bytes());
            }
            Kind::AllNull => unreachable!("handled above"),
        }
        Ok(())
    }
}

/// Appends a length-prefixed text value.
fn put_text(out: &mut BytesMut, text: &str) {
    out.put_i32(text.len() as i32);
    out.extend_from_slice(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tally_engine::reexports::arrow::array::{ArrayRef, Decimal128Array, NullArray};

    use super::*;

    /// A slice of a batch (text offsets not starting at zero, nulls in the middle) encodes
    /// the same rows as the whole batch does, in both formats.
    #[test]
    fn a_sliced_batch_encodes_its_own_rows() {
        let batch = RecordBatch::try_from_iter(vec![
            (
                "t",
                Arc::new(StringArray::from(vec![
                    Some("first"),
                    None,
                    Some("é"),
                    Some(""),
                ])) as ArrayRef,
            ),
            (
                "n",
                Arc::new(Int64Array::from(vec![Some(1), Some(2), None, Some(4)])) as ArrayRef,
            ),
        ])
        .unwrap();
        for binary in [true, false] {
            let fields = super::super::fields(&batch.schema(), |_| binary);
            let whole = encode_batch(&batch, &fields).unwrap();
            let sliced = encode_batch(&batch.slice(1, 3), &fields).unwrap();
            assert_eq!(sliced.len(), 3);
            for (a, b) in sliced.iter().zip(&whole[1..]) {
                assert_eq!(a.data, b.data, "binary {binary}");
                assert_eq!(a.field_count, 2);
            }
        }
    }

    /// Every fast path must produce exactly the bytes of the generic writers.
    #[test]
    fn fast_paths_match_the_generic_writers() {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
            Arc::new(Int16Array::from(vec![Some(-3), Some(i16::MAX), None])),
            Arc::new(Int32Array::from(vec![None, Some(i32::MIN), Some(7)])),
            Arc::new(Int64Array::from(vec![Some(i64::MIN), Some(0), None])),
            Arc::new(Float32Array::from(vec![Some(1.5), None, Some(f32::NAN)])),
            Arc::new(Float64Array::from(vec![
                Some(-0.0),
                Some(f64::INFINITY),
                Some(3.25),
            ])),
            Arc::new(StringArray::from(vec![Some("é/p"), None, Some("")])),
            Arc::new(LargeStringArray::from(vec![Some("a"), Some("b"), None])),
            Arc::new(StringViewArray::from(vec![
                Some("a long string view value"),
                None,
                Some("x"),
            ])),
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(1_767_225_600_000_000),
                None,
                Some(-5),
            ])),
            Arc::new(Date32Array::from(vec![Some(0), Some(20_000), None])),
            Arc::new(NullArray::new(3)),
            Arc::new(
                Decimal128Array::from(vec![Some(12345), None, Some(-1)])
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
        ];
        for binary in [true, false] {
            for column in &columns {
                for row in 0..column.len() {
                    let mut fast = BytesMut::new();
                    ColumnEncoder::new(column.as_ref(), binary)
                        .encode(row, &mut fast, &mut String::new())
                        .unwrap();
                    let mut generic = BytesMut::new();
                    ColumnEncoder {
                        array: column.as_ref(),
                        nulls: column.nulls(),
                        kind: if column.data_type() == &DataType::Null {
                            Kind::AllNull
                        } else {
                            Kind::Generic(binary)
                        },
                    }
                    .encode(row, &mut generic, &mut String::new())
                    .unwrap();
                    assert_eq!(
                        fast,
                        generic,
                        "{} row {row}, binary {binary}",
                        column.data_type()
                    );
                }
            }
        }
    }
}
