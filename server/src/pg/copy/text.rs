//! The text and csv COPY formats: an incremental decoder into Arrow batches (rows may be
//! split anywhere across CopyData messages).
//!
//! The decoder keeps only the unfinished last record and up to [`BATCH_ROWS`] decoded rows;
//! full batches go to the engine's `BulkIngest`, which bounds memory on its side.

use std::sync::Arc;

use tally_engine::reexports::arrow::array::{
    Array, ArrayRef, BinaryBuilder, BooleanBuilder, RecordBatch, StringArray, StringBuilder,
};
use tally_engine::reexports::arrow::compute::{CastOptions, cast_with_options};
use tally_engine::reexports::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::{BATCH_ROWS, DecodeError, WithColumn, invalid_value};
use crate::pg::errors::{self, state};
use crate::pg::statement::CopyFormat;
use crate::pg::types;

/// Decodes text or csv COPY input for one table.
pub struct Decoder {
    table: String,
    format: CopyFormat,
    /// The columns the input provides, in input order (fields of the table's schema).
    schema: SchemaRef,
    /// Bytes of the unfinished record.
    pending: Vec<u8>,
    /// Input line number of the next record (1-based, header included).
    line: u64,
    header_pending: bool,
    /// `\.` was seen: the rest of the input is ignored.
    ended: bool,
    builders: Vec<StringBuilder>,
    lines: Vec<u64>,
}

impl Decoder {
    /// A decoder for `columns` (empty = all) of a table with `table_schema`.
    pub fn new(
        table: &str,
        table_schema: &Schema,
        columns: &[String],
        format: CopyFormat,
    ) -> Result<Decoder, DecodeError> {
        let schema = super::input_schema(table, table_schema, columns)?;
        let builders = schema
            .fields()
            .iter()
            .map(|_| StringBuilder::new())
            .collect();
        Ok(Decoder {
            table: table.to_string(),
            header_pending: format.header,
            format,
            schema,
            pending: Vec::new(),
            line: 1,
            ended: false,
            builders,
            lines: Vec::new(),
        })
    }

    /// Number of columns the input provides.
    pub fn columns(&self) -> usize {
        self.schema.fields().len()
    }

    /// Takes a chunk of input; returns the batches completed by it.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<RecordBatch>, DecodeError> {
        if self.ended {
            return Ok(vec![]);
        }
        self.pending.extend_from_slice(chunk);
        let mut batches = Vec::new();
        let mut start = 0;
        let mut in_quotes = false;
        let mut i = 0;
        let bytes = std::mem::take(&mut self.pending);
        while i < bytes.len() {
            let b = bytes[i];
            if self.format.csv {
                if in_quotes && b == self.format.escape && self.format.escape != self.format.quote {
                    i += 2;
                    continue;
                }
                if b == self.format.quote {
                    in_quotes = !in_quotes;
                }
            } else if b == b'\\' {
                i += 2;
                continue;
            }
            if b == b'\n' && !in_quotes {
                self.record(&bytes[start..i])?;
                start = i + 1;
                if self.ended {
                    break;
                }
                if self.lines.len() >= BATCH_ROWS {
                    batches.push(self.finish_batch()?);
                }
            }
            i += 1;
        }
        if !self.ended {
            self.pending = bytes[start.min(bytes.len())..].to_vec();
        }
        Ok(batches)
    }

    /// Ends the input: decodes an unterminated last line and returns the last batch.
    pub fn finish(&mut self) -> Result<Option<RecordBatch>, DecodeError> {
        let rest = std::mem::take(&mut self.pending);
        if !self.ended && !rest.is_empty() {
            self.record(&rest)?;
        }
        if self.lines.is_empty() {
            Ok(None)
        } else {
            self.finish_batch().map(Some)
        }
    }

    /// Decodes one record (without its newline) into the builders.
    fn record(&mut self, raw: &[u8]) -> Result<(), DecodeError> {
        let line = self.line;
        self.line += 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw == b"\\." {
            self.ended = true;
            return Ok(());
        }
        if self.header_pending {
            self.header_pending = false;
            return Ok(());
        }
        let text = std::str::from_utf8(raw).map_err(|_| {
            self.error(
                state::BAD_ENCODING,
                "invalid byte sequence for encoding \"UTF8\"".into(),
                line,
                None,
            )
        })?;
        let fields = if self.format.csv {
            self.csv_fields(text)
        } else {
            self.text_fields(text)
        }
        .map_err(|message| self.error(state::BAD_COPY_FORMAT, message, line, Some(text)))?;
        let expected = self.builders.len();
        if fields.len() < expected {
            let missing = self.schema.field(fields.len()).name().clone();
            return Err(self.error(
                state::BAD_COPY_FORMAT,
                format!("missing data for column \"{missing}\""),
                line,
                Some(text),
            ));
        }
        if fields.len() > expected {
            return Err(self.error(
                state::BAD_COPY_FORMAT,
                "extra data after last expected column".into(),
                line,
                Some(text),
            ));
        }
        for (i, value) in fields.into_iter().enumerate() {
            match value {
                Some(v) => self.builders[i].append_value(v),
                None => {
                    if !self.schema.field(i).is_nullable() {
                        let column = self.schema.field(i).name().clone();
                        return Err(self.error(
                            state::NOT_NULL,
                            super::not_null_message(&column, &self.table),
                            line,
                            Some(text),
                        ));
                    }
                    self.builders[i].append_null()
                }
            }
        }
        self.lines.push(line);
        Ok(())
    }

    /// Text format: delimiter-separated, `\N` for NULL, backslash escapes.
    fn text_fields(&self, text: &str) -> Result<Vec<Option<String>>, String> {
        let bytes = text.as_bytes();
        let delimiter = self.format.delimiter;
        let mut raw_fields = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'\\' {
                i += 2;
                continue;
            }
            if bytes[i] == delimiter {
                raw_fields.push(&text[start..i]);
                start = i + 1;
            }
            i += 1;
        }
        raw_fields.push(&text[start.min(text.len())..]);
        Ok(raw_fields
            .into_iter()
            .map(|raw| {
                if raw == self.format.null {
                    None
                } else {
                    Some(unescape_text(raw))
                }
            })
            .collect())
    }

    /// CSV: quoted fields may hold delimiters, quotes (doubled or escaped) and newlines; an
    /// unquoted field equal to the NULL string is NULL.
    fn csv_fields(&self, text: &str) -> Result<Vec<Option<String>>, String> {
        let (delimiter, quote, escape) = (
            self.format.delimiter as char,
            self.format.quote as char,
            self.format.escape as char,
        );
        let mut fields = Vec::new();
        let mut value = String::new();
        let mut quoted = false;
        let mut in_quotes = false;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if in_quotes {
                if c == escape
                    && chars.peek().is_some_and(|n| *n == quote || *n == escape)
                    && (escape != quote || chars.peek() == Some(&quote))
                {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                } else if c == quote {
                    in_quotes = false;
                } else {
                    value.push(c);
                }
            } else if c == quote {
                in_quotes = true;
                quoted = true;
            } else if c == delimiter {
                fields.push(csv_value(
                    std::mem::take(&mut value),
                    quoted,
                    &self.format.null,
                ));
                quoted = false;
            } else {
                value.push(c);
            }
        }
        if in_quotes {
            return Err("unterminated CSV quoted field".into());
        }
        fields.push(csv_value(value, quoted, &self.format.null));
        Ok(fields)
    }

    /// Turns the builders into a batch of the table's types, checking every value.
    fn finish_batch(&mut self) -> Result<RecordBatch, DecodeError> {
        let lines = std::mem::take(&mut self.lines);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.builders.len());
        for i in 0..self.builders.len() {
            let strings = self.builders[i].finish();
            let field = self.schema.field(i).clone();
            columns.push(self.convert(&strings, &field, &lines)?);
        }
        RecordBatch::try_new(Arc::clone(&self.schema), columns).map_err(|e| {
            Box::new(errors::user_error(
                state::INTERNAL,
                format!("building a COPY batch: {e}"),
            ))
        })
    }

    fn convert(
        &self,
        strings: &StringArray,
        field: &Field,
        lines: &[u64],
    ) -> Result<ArrayRef, DecodeError> {
        let invalid = |row: usize| {
            let value = strings.value(row);
            let (code, message) = invalid_value(value, field.data_type());
            self.error(code, message, lines[row], None)
                .with_column(field.name(), value)
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
                let trimmed: StringArray = strings.iter().map(|v| v.map(str::trim)).collect();
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

    fn error(&self, code: &str, message: String, line: u64, raw: Option<&str>) -> DecodeError {
        super::copy_error(&self.table, code, message, line, raw)
    }
}

fn csv_value(value: String, quoted: bool, null: &str) -> Option<String> {
    if !quoted && value == null {
        None
    } else {
        Some(value)
    }
}

/// Undoes text-format escapes: `\n`, `\t`, `\\`, octal and `\x` hex bytes.
fn unescape_text(raw: &str) -> String {
    if !raw.contains('\\') {
        return raw.to_string();
    }
    let bytes = raw.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' || i + 1 >= bytes.len() {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let c = bytes[i + 1];
        i += 2;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = (c - b'0') as u32;
                let mut n = 1;
                while n < 3 && i < bytes.len() && (b'0'..=b'7').contains(&bytes[i]) {
                    v = v * 8 + (bytes[i] - b'0') as u32;
                    i += 1;
                    n += 1;
                }
                out.push(v as u8);
            }
            b'x' if i < bytes.len() && bytes[i].is_ascii_hexdigit() => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 && i < bytes.len() && bytes[i].is_ascii_hexdigit() {
                    v = v * 16 + (bytes[i] as char).to_digit(16).unwrap_or(0);
                    i += 1;
                    n += 1;
                }
                out.push(v as u8);
            }
            other => out.push(other),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_engine::reexports::arrow::array::{AsArray, Int64Array};
    use tally_engine::reexports::arrow::datatypes::Int64Type;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ])
    }

    fn format(csv: bool) -> CopyFormat {
        CopyFormat {
            csv,
            delimiter: if csv { b',' } else { b'\t' },
            null: if csv { String::new() } else { "\\N".into() },
            header: csv,
            quote: b'"',
            escape: b'"',
            binary: false,
        }
    }

    /// Feeds `input` in chunks of every size from 1 to 13 bytes; each gives the same rows.
    fn decode_in_chunks(input: &str, csv: bool) -> Vec<(i64, Option<String>)> {
        let mut expected: Option<Vec<(i64, Option<String>)>> = None;
        for size in 1..=13 {
            let mut decoder = Decoder::new("t", &schema(), &[], format(csv)).unwrap();
            let mut batches = Vec::new();
            for chunk in input.as_bytes().chunks(size) {
                batches.extend(decoder.feed(chunk).unwrap());
            }
            batches.extend(decoder.finish().unwrap());
            let mut rows = Vec::new();
            for batch in &batches {
                let ids: &Int64Array = batch.column(0).as_primitive::<Int64Type>();
                let names = batch.column(1).as_string::<i32>();
                for r in 0..batch.num_rows() {
                    let name = (!names.is_null(r)).then(|| names.value(r).to_string());
                    rows.push((ids.value(r), name));
                }
            }
            match &expected {
                Some(e) => assert_eq!(&rows, e, "chunk size {size}"),
                None => expected = Some(rows),
            }
        }
        expected.unwrap_or_default()
    }

    #[test]
    fn text_rows_split_anywhere_decode_the_same() {
        let rows = decode_in_chunks("1\ta\\tb\n2\t\\N\r\n3\tc\\\\d\n\\.\nignored\n", false);
        assert_eq!(
            rows,
            vec![
                (1, Some("a\tb".into())),
                (2, None),
                (3, Some("c\\d".into()))
            ]
        );
    }

    #[test]
    fn csv_rows_split_anywhere_decode_the_same() {
        let rows = decode_in_chunks("id,name\n1,\"a,\"\"b\"\"\nc\"\n2,\n3,\"\"\n4,x", true);
        assert_eq!(
            rows,
            vec![
                (1, Some("a,\"b\"\nc".into())),
                (2, None),
                (3, Some(String::new())),
                (4, Some("x".into()))
            ]
        );
    }

    #[test]
    fn bad_values_name_line_and_column() {
        let mut decoder = Decoder::new("t", &schema(), &[], format(false)).unwrap();
        decoder.feed(b"1\ta\nx2\tb\n").unwrap();
        let err = decoder.finish().unwrap_err();
        assert_eq!(err.code, "22P02");
        assert_eq!(
            err.where_context.as_deref(),
            Some("COPY t, line 2, column id: \"x2\"")
        );
    }
}
