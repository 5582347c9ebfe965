//! PostgreSQL's binary COPY format (`COPY … (FORMAT binary)`): an incremental decoder of
//! `FROM STDIN` input into Arrow batches, and the encoder of `TO STDOUT` output.
//!
//! The stream is the 11-byte signature `PGCOPY\n\377\r\n\0`, a 32-bit flags field, a header
//! extension (length, then bytes, skipped), then one tuple per row: a 16-bit field count and,
//! per field, a 32-bit length (-1 for NULL) followed by the value in the type's binary send
//! format (big-endian). A field count of -1 ends the data. Messages may split tuples anywhere.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use pgwire::error::PgWireResult;
use tally_engine::ColumnType;
use tally_engine::reexports::arrow::array::{
    Array, ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, FixedSizeBinaryBuilder,
    Float32Builder, Float64Builder, Int16Builder, Int32Builder, Int64Builder, RecordBatch,
    StringArray, StringBuilder, TimestampMicrosecondBuilder,
};
use tally_engine::reexports::arrow::compute::{CastOptions, cast_with_options};
use tally_engine::reexports::arrow::datatypes::{DataType, Field, SchemaRef, TimeUnit};

use super::{BATCH_ROWS, DecodeError, invalid_value, not_null_message};
use crate::pg::errors::{self, state};
use crate::pg::types::{self, PG_EPOCH_DAYS, PG_EPOCH_US};

/// The signature every binary COPY stream starts with.
pub const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Flags bit 16: each tuple carries an OID (tables WITH OIDS, gone since PostgreSQL 12).
const FLAG_OIDS: u32 = 1 << 16;

/// Decodes binary COPY input for one table.
pub struct Decoder {
    table: String,
    /// The columns the input provides, in input order.
    schema: SchemaRef,
    /// Bytes not yet decoded: the unfinished header or tuple.
    pending: Vec<u8>,
    header_done: bool,
    /// The trailer (field count -1) was seen.
    ended: bool,
    /// Number of the next tuple, 1-based (PostgreSQL's "line" for binary COPY).
    tuple: u64,
    /// Tuple number of the first row in the builders.
    first_tuple: u64,
    columns: Vec<Column>,
    rows: usize,
}

/// A column's builder, by the column's type.
enum Column {
    Boolean(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    /// NUMERIC values as decimal text, cast to the column's Decimal128 at the end of a batch
    /// (the same rounding and range checks as the text formats).
    Numeric(StringBuilder),
    Text(StringBuilder),
    /// JSONB: a version byte, then the text.
    Jsonb(StringBuilder),
    Bytea(BinaryBuilder),
    Uuid(FixedSizeBinaryBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl Column {
    fn new(field: &Field) -> Option<Column> {
        if ColumnType::from_field(field) == Some(ColumnType::Jsonb) {
            return Some(Column::Jsonb(StringBuilder::new()));
        }
        Some(match field.data_type() {
            DataType::Boolean => Column::Boolean(BooleanBuilder::new()),
            DataType::Int16 => Column::Int16(Int16Builder::new()),
            DataType::Int32 => Column::Int32(Int32Builder::new()),
            DataType::Int64 => Column::Int64(Int64Builder::new()),
            DataType::Float32 => Column::Float32(Float32Builder::new()),
            DataType::Float64 => Column::Float64(Float64Builder::new()),
            DataType::Decimal128(..) => Column::Numeric(StringBuilder::new()),
            DataType::Utf8 => Column::Text(StringBuilder::new()),
            DataType::Binary => Column::Bytea(BinaryBuilder::new()),
            DataType::FixedSizeBinary(16) => Column::Uuid(FixedSizeBinaryBuilder::new(16)),
            DataType::Date32 => Column::Date(Date32Builder::new()),
            DataType::Timestamp(TimeUnit::Microsecond, zone) => Column::Timestamp(
                TimestampMicrosecondBuilder::new().with_timezone_opt(zone.clone()),
            ),
            _ => return None,
        })
    }

    fn append_null(&mut self) {
        match self {
            Column::Boolean(b) => b.append_null(),
            Column::Int16(b) => b.append_null(),
            Column::Int32(b) => b.append_null(),
            Column::Int64(b) => b.append_null(),
            Column::Float32(b) => b.append_null(),
            Column::Float64(b) => b.append_null(),
            Column::Numeric(b) | Column::Text(b) | Column::Jsonb(b) => b.append_null(),
            Column::Bytea(b) => b.append_null(),
            Column::Uuid(b) => b.append_null(),
            Column::Date(b) => b.append_null(),
            Column::Timestamp(b) => b.append_null(),
        }
    }

    /// Appends one value in its binary send format; the error is (SQLSTATE, message).
    fn append(&mut self, bytes: &[u8]) -> Result<(), (&'static str, String)> {
        match self {
            Column::Boolean(b) => b.append_value(fixed::<1>(bytes)?[0] != 0),
            Column::Int16(b) => b.append_value(i16::from_be_bytes(fixed(bytes)?)),
            Column::Int32(b) => b.append_value(i32::from_be_bytes(fixed(bytes)?)),
            Column::Int64(b) => b.append_value(i64::from_be_bytes(fixed(bytes)?)),
            Column::Float32(b) => b.append_value(f32::from_be_bytes(fixed(bytes)?)),
            Column::Float64(b) => b.append_value(f64::from_be_bytes(fixed(bytes)?)),
            Column::Numeric(b) => {
                let text = types::numeric_from_binary(bytes).ok_or_else(bad_format)?;
                b.append_value(text);
            }
            Column::Text(b) => b.append_value(utf8(bytes)?),
            Column::Jsonb(b) => {
                let text = types::jsonb_payload(bytes).map_err(|e| (state::BAD_BINARY, e))?;
                b.append_value(utf8(text)?)
            }
            Column::Bytea(b) => b.append_value(bytes),
            Column::Uuid(b) => b
                .append_value(fixed::<16>(bytes)?)
                .expect("16 bytes fit a UUID column"),
            Column::Date(b) => {
                b.append_value(i32::from_be_bytes(fixed(bytes)?).saturating_add(PG_EPOCH_DAYS))
            }
            Column::Timestamp(b) => {
                b.append_value(i64::from_be_bytes(fixed(bytes)?).saturating_add(PG_EPOCH_US))
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Column::Boolean(b) => Arc::new(b.finish()),
            Column::Int16(b) => Arc::new(b.finish()),
            Column::Int32(b) => Arc::new(b.finish()),
            Column::Int64(b) => Arc::new(b.finish()),
            Column::Float32(b) => Arc::new(b.finish()),
            Column::Float64(b) => Arc::new(b.finish()),
            Column::Numeric(b) | Column::Text(b) | Column::Jsonb(b) => Arc::new(b.finish()),
            Column::Bytea(b) => Arc::new(b.finish()),
            Column::Uuid(b) => Arc::new(b.finish()),
            Column::Date(b) => Arc::new(b.finish()),
            Column::Timestamp(b) => Arc::new(b.finish()),
        }
    }
}

fn bad_format() -> (&'static str, String) {
    (state::BAD_BINARY, "incorrect binary data format".into())
}

/// The value as exactly `N` bytes.
fn fixed<const N: usize>(bytes: &[u8]) -> Result<[u8; N], (&'static str, String)> {
    bytes.try_into().map_err(|_| bad_format())
}

/// Text values: valid UTF-8 without NUL bytes, as PostgreSQL requires.
fn utf8(bytes: &[u8]) -> Result<&str, (&'static str, String)> {
    match std::str::from_utf8(bytes) {
        Ok(text) if !bytes.contains(&0) => Ok(text),
        _ => Err((
            state::BAD_ENCODING,
            "invalid byte sequence for encoding \"UTF8\"".into(),
        )),
    }
}

fn be_i16(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn be_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

impl Decoder {
    /// A decoder for `columns` (empty = all) of a table with `table_schema`.
    pub fn new(
        table: &str,
        table_schema: &tally_engine::reexports::arrow::datatypes::Schema,
        columns: &[String],
    ) -> Result<Decoder, DecodeError> {
        let schema = super::input_schema(table, table_schema, columns)?;
        let builders = schema
            .fields()
            .iter()
            .map(|f| {
                Column::new(f).ok_or_else(|| {
                    Box::new(errors::user_error(
                        state::NOT_SUPPORTED,
                        format!(
                            "binary COPY into column \"{}\" of type {} is not supported",
                            f.name(),
                            f.data_type()
                        ),
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Decoder {
            table: table.to_string(),
            schema,
            pending: Vec::new(),
            header_done: false,
            ended: false,
            tuple: 1,
            first_tuple: 1,
            columns: builders,
            rows: 0,
        })
    }

    /// Number of columns the input provides.
    pub fn columns(&self) -> usize {
        self.schema.fields().len()
    }

    /// Takes a chunk of input; returns the batches completed by it.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<RecordBatch>, DecodeError> {
        if self.ended {
            if chunk.is_empty() {
                return Ok(vec![]);
            }
            return Err(self.stream_error("received copy data after EOF marker"));
        }
        self.pending.extend_from_slice(chunk);
        let bytes = std::mem::take(&mut self.pending);
        let mut at = 0;
        let mut batches = Vec::new();
        if !self.header_done {
            match self.header(&bytes)? {
                Some(length) => {
                    at = length;
                    self.header_done = true;
                }
                None => {
                    self.pending = bytes;
                    return Ok(batches);
                }
            }
        }
        while let Some(length) = self.tuple_length(&bytes[at..])? {
            let tuple = &bytes[at..at + length];
            at += length;
            if be_i16(tuple, 0) == -1 {
                self.ended = true;
                if at < bytes.len() {
                    return Err(self.stream_error("received copy data after EOF marker"));
                }
                break;
            }
            self.decode_tuple(tuple)?;
            if self.rows >= BATCH_ROWS {
                batches.push(self.finish_batch()?);
            }
        }
        if !self.ended {
            self.pending = bytes[at..].to_vec();
        }
        Ok(batches)
    }

    /// Ends the input: the data must hold the header and whole tuples (the trailer may be
    /// missing, as PostgreSQL allows). Returns the last batch.
    pub fn finish(&mut self) -> Result<Option<RecordBatch>, DecodeError> {
        if !self.header_done {
            return Err(self.stream_error("COPY file signature not recognized"));
        }
        if !self.ended && !self.pending.is_empty() {
            return Err(self.stream_error("unexpected EOF in COPY data"));
        }
        if self.rows == 0 {
            Ok(None)
        } else {
            self.finish_batch().map(Some)
        }
    }

    /// The header's length once `bytes` holds all of it; checks signature and flags.
    fn header(&self, bytes: &[u8]) -> Result<Option<usize>, DecodeError> {
        let have = bytes.len().min(SIGNATURE.len());
        if bytes[..have] != SIGNATURE[..have] {
            return Err(self.stream_error("COPY file signature not recognized"));
        }
        if bytes.len() < SIGNATURE.len() + 8 {
            return Ok(None);
        }
        let flags = be_i32(bytes, 11) as u32;
        if flags & FLAG_OIDS != 0 {
            return Err(Box::new(errors::user_error(
                state::NOT_SUPPORTED,
                "COPY with OIDs is not supported",
            )));
        }
        if flags & 0xFFFE_0000 != 0 {
            return Err(self.stream_error("unrecognized critical flags in COPY file header"));
        }
        let extension = be_i32(bytes, 15);
        if extension < 0 {
            return Err(self.stream_error("invalid COPY file header (negative extension length)"));
        }
        let length = SIGNATURE.len() + 8 + extension as usize;
        Ok((bytes.len() >= length).then_some(length))
    }

    /// The length of the tuple (or trailer) at the start of `bytes`, once all of it is there;
    /// checks the field count and field lengths.
    fn tuple_length(&self, bytes: &[u8]) -> Result<Option<usize>, DecodeError> {
        if bytes.len() < 2 {
            return Ok(None);
        }
        let count = be_i16(bytes, 0);
        if count == -1 {
            return Ok(Some(2));
        }
        if count as usize != self.columns.len() || count < 0 {
            return Err(self.tuple_error(
                state::BAD_COPY_FORMAT,
                format!(
                    "row field count is {count}, expected {}",
                    self.columns.len()
                ),
            ));
        }
        let mut at = 2;
        for _ in 0..count {
            if bytes.len() < at + 4 {
                return Ok(None);
            }
            let length = be_i32(bytes, at);
            at += 4;
            if length < -1 {
                return Err(self.tuple_error(state::BAD_BINARY, "invalid field size".into()));
            }
            if length > 0 {
                at += length as usize;
                if bytes.len() < at {
                    return Ok(None);
                }
            }
        }
        Ok(Some(at))
    }

    /// Appends a whole tuple (its length checked by `tuple_length`) to the builders.
    fn decode_tuple(&mut self, tuple: &[u8]) -> Result<(), DecodeError> {
        let mut at = 2;
        for i in 0..self.columns.len() {
            let length = be_i32(tuple, at);
            at += 4;
            if length == -1 {
                let field = self.schema.field(i);
                if !field.is_nullable() {
                    let message = not_null_message(field.name(), &self.table);
                    return Err(self.field_error(i, state::NOT_NULL, message));
                }
                self.columns[i].append_null();
                continue;
            }
            let value = &tuple[at..at + length as usize];
            at += length as usize;
            if let Err((code, message)) = self.columns[i].append(value) {
                return Err(self.field_error(i, code, message));
            }
        }
        self.tuple += 1;
        self.rows += 1;
        Ok(())
    }

    /// Turns the builders into a batch; NUMERIC text is cast to the column's type here.
    fn finish_batch(&mut self) -> Result<RecordBatch, DecodeError> {
        let mut arrays = Vec::with_capacity(self.columns.len());
        for i in 0..self.columns.len() {
            let array = self.columns[i].finish();
            let data_type = self.schema.field(i).data_type();
            if array.data_type() == data_type {
                arrays.push(array);
                continue;
            }
            let cast = cast_with_options(
                &array,
                data_type,
                &CastOptions {
                    safe: true,
                    ..Default::default()
                },
            )
            .map_err(|e| {
                Box::new(errors::user_error(
                    state::INTERNAL,
                    format!("binary COPY column {}: {e}", self.schema.field(i).name()),
                ))
            })?;
            if cast.null_count() != array.null_count() {
                let text = array
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .expect("numeric values are collected as text");
                if let Some(row) = (0..text.len()).find(|r| cast.is_null(*r) && !text.is_null(*r)) {
                    let (code, message) = invalid_value(text.value(row), data_type);
                    let tuple = self.first_tuple + row as u64;
                    return Err(self.error_at(tuple, Some(i), code, message));
                }
            }
            arrays.push(cast);
        }
        self.first_tuple = self.tuple;
        self.rows = 0;
        RecordBatch::try_new(Arc::clone(&self.schema), arrays).map_err(|e| {
            Box::new(errors::user_error(
                state::INTERNAL,
                format!("building a COPY batch: {e}"),
            ))
        })
    }

    fn stream_error(&self, message: &str) -> DecodeError {
        self.tuple_error(state::BAD_COPY_FORMAT, message.to_string())
    }

    fn tuple_error(&self, code: &str, message: String) -> DecodeError {
        self.error_at(self.tuple, None, code, message)
    }

    fn field_error(&self, column: usize, code: &str, message: String) -> DecodeError {
        self.error_at(self.tuple, Some(column), code, message)
    }

    /// An error with PostgreSQL's CONTEXT for binary COPY: `COPY t, line 3, column c`.
    fn error_at(
        &self,
        tuple: u64,
        column: Option<usize>,
        code: &str,
        message: String,
    ) -> DecodeError {
        let mut info = super::copy_error(&self.table, code, message, tuple, None);
        if let Some(i) = column {
            let name = self.schema.field(i).name();
            info.where_context = Some(format!("COPY {}, line {tuple}, column {name}", self.table));
            info.column = Some(name.clone());
        }
        info
    }
}

/// Encodes result rows in the binary COPY format, one CopyData message per row as PostgreSQL
/// sends them (psycopg reads one row per message): the header travels with the first row, the
/// trailer in the last message (with the header when there are no rows).
pub fn encode_rows(batches: &[RecordBatch]) -> PgWireResult<Vec<Vec<u8>>> {
    let mut messages = Vec::new();
    let mut out = BytesMut::new();
    out.put_slice(SIGNATURE);
    out.put_u32(0);
    out.put_u32(0);
    let mut scratch = String::new();
    for batch in batches {
        let schema = batch.schema();
        let encoders: Vec<types::ColumnEncoder<'_>> = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(column, field)| {
                types::ColumnEncoder::for_type(column.as_ref(), true, &types::field_type(field))
            })
            .collect();
        for row in 0..batch.num_rows() {
            out.put_i16(encoders.len() as i16);
            for encoder in &encoders {
                encoder.encode(row, &mut out, &mut scratch)?;
            }
            messages.push(out.split().to_vec());
        }
    }
    out.put_i16(-1);
    messages.push(out.to_vec());
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_engine::reexports::arrow::array::AsArray;
    use tally_engine::reexports::arrow::datatypes::{Field, Int64Type, Schema};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("amount", DataType::Decimal128(12, 3), true),
        ])
    }

    /// A binary COPY stream of `(id, name, amount)` rows; amounts as numeric binary.
    fn stream(rows: &[(i64, Option<&str>, Option<&str>)]) -> Vec<u8> {
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("name", DataType::Utf8, true),
                Field::new("amount", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(Int64Builder::new().finish()),
                Arc::new(StringArray::from(Vec::<Option<&str>>::new())),
                Arc::new(StringArray::from(Vec::<Option<&str>>::new())),
            ],
        )
        .unwrap();
        // The header alone: an empty encoding without its trailer.
        let mut out = encode_rows(&[batch]).unwrap().concat();
        out.truncate(out.len() - 2);
        for (id, name, amount) in rows {
            out.put_i16(3);
            out.put_i32(8);
            out.put_i64(*id);
            match name {
                Some(n) => {
                    out.put_i32(n.len() as i32);
                    out.put_slice(n.as_bytes());
                }
                None => out.put_i32(-1),
            }
            match amount {
                Some(a) => {
                    let mut numeric = BytesMut::new();
                    let array = cast_with_options(
                        &StringArray::from(vec![*a]),
                        &DataType::Decimal128(38, 3),
                        &CastOptions::default(),
                    )
                    .unwrap();
                    types::write_binary(array.as_ref(), 0, &mut numeric).unwrap();
                    out.put_i32(numeric.len() as i32);
                    out.put_slice(&numeric);
                }
                None => out.put_i32(-1),
            }
        }
        out.put_i16(-1);
        out
    }

    fn decode_in_chunks(input: &[u8], size: usize) -> Result<Vec<RecordBatch>, DecodeError> {
        let mut decoder = Decoder::new("t", &schema(), &[])?;
        let mut batches = Vec::new();
        for chunk in input.chunks(size) {
            batches.extend(decoder.feed(chunk)?);
        }
        batches.extend(decoder.finish()?);
        Ok(batches)
    }

    #[test]
    fn tuples_split_anywhere_decode_the_same() {
        let input = stream(&[
            (1, Some("a"), Some("1.250")),
            (2, None, None),
            (-3, Some("naïve"), Some("-40000.5")),
        ]);
        for size in 1..=17 {
            let batches = decode_in_chunks(&input, size).unwrap();
            assert_eq!(batches.len(), 1, "chunk size {size}");
            let batch = &batches[0];
            let ids: Vec<i64> = batch
                .column(0)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec();
            assert_eq!(ids, [1, 2, -3]);
            let names = batch.column(1).as_string::<i32>();
            assert_eq!(
                names.iter().collect::<Vec<_>>(),
                [Some("a"), None, Some("naïve")]
            );
            let amounts = batch
                .column(2)
                .as_primitive::<tally_engine::reexports::arrow::datatypes::Decimal128Type>();
            assert_eq!(
                amounts.iter().collect::<Vec<_>>(),
                [Some(1250), None, Some(-40_000_500)]
            );
        }
    }

    #[test]
    fn bad_streams_are_refused_with_postgres_errors() {
        let good = stream(&[(1, Some("a"), None)]);
        let code = |input: &[u8]| decode_in_chunks(input, 5).unwrap_err().code.clone();
        assert_eq!(code(b"PGCOPX\n\xff\r\n\0\0\0\0\0\0\0\0\0"), "22P04");
        assert_eq!(code(b""), "22P04");
        // Truncated in the middle of the tuple.
        assert_eq!(code(&good[..good.len() - 4]), "22P04");
        // Data after the trailer.
        let mut after = good.clone();
        after.extend_from_slice(b"x");
        assert_eq!(code(&after), "22P04");
        // An int8 field four bytes long.
        let mut short = good[..19].to_vec();
        short.extend_from_slice(&[
            0, 3, 0, 0, 0, 4, 0, 0, 0, 1, 255, 255, 255, 255, 255, 255, 255, 255,
        ]);
        let err = decode_in_chunks(&short, 5).unwrap_err();
        assert_eq!(err.code, "22P03");
        assert_eq!(
            err.where_context.as_deref(),
            Some("COPY t, line 1, column id")
        );
        // NULL into NOT NULL.
        let mut null_id = good[..19].to_vec();
        null_id.extend_from_slice(&[
            0, 3, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
        ]);
        assert_eq!(code(&null_id), "23502");
        // Wrong field count.
        let mut two = good[..19].to_vec();
        two.extend_from_slice(&[0, 2]);
        assert_eq!(code(&two), "22P04");
        // Invalid UTF-8 and NUL in text.
        for bad in [&[0xC3u8, 0x28][..], &[b'a', 0, b'b'][..]] {
            let mut text = good[..19].to_vec();
            text.extend_from_slice(&[0, 3, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]);
            text.put_i32(bad.len() as i32);
            text.extend_from_slice(bad);
            text.extend_from_slice(&[255, 255, 255, 255]);
            assert_eq!(code(&text), "22021");
        }
        // A numeric beyond numeric(12, 3).
        let big = stream(&[(1, None, Some("123456789012.5"))]);
        assert!(decode_in_chunks(&big, 64).is_err());
    }
}
