//! The text and csv COPY formats: an incremental splitter of input into records and fields
//! (rows may be split anywhere across CopyData messages), with PostgreSQL's rules for each.
//!
//! The splitter scans for the few bytes that matter (delimiter, newline, backslash or quote)
//! with `memchr` and copies the runs between them into one buffer ([`Fields`]); no value is
//! allocated on its own. A full batch of records is then turned into typed columns by
//! [`columns::build`]. Only the unfinished last record is kept between messages.

use std::sync::Arc;

use memchr::{memchr, memchr2, memchr3};
use tally_engine::reexports::arrow::array::RecordBatch;
use tally_engine::reexports::arrow::datatypes::{Schema, SchemaRef};

use super::columns::{self, Fields};
use super::{BATCH_ROWS, DecodeError, copy_error, not_null_message};
use crate::pg::errors::{self, state};
use crate::pg::statement::CopyFormat;

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
    /// The records of the batch being filled.
    fields: Fields,
}

/// What splitting the start of the input gave.
enum Split {
    /// A record (or the `\.` end marker), this many bytes long with its newline.
    Record(usize),
    /// The input ends inside a record: wait for more.
    Incomplete,
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
        Ok(Decoder {
            table: table.to_string(),
            header_pending: format.header,
            format,
            schema,
            pending: Vec::new(),
            line: 1,
            ended: false,
            fields: Fields::default(),
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
        let mut batches = Vec::new();
        if self.pending.is_empty() {
            let used = self.split_all(chunk, false, &mut batches)?;
            if !self.ended {
                self.pending.extend_from_slice(&chunk[used..]);
            }
        } else if memchr(b'\n', chunk).is_none() {
            // No record can end in this chunk: a long value arriving in pieces is kept, not
            // split again from its start for every message.
            self.pending.extend_from_slice(chunk);
        } else {
            let mut input = std::mem::take(&mut self.pending);
            input.extend_from_slice(chunk);
            let used = self.split_all(&input, false, &mut batches)?;
            if !self.ended {
                input.drain(..used);
                self.pending = input;
            }
        }
        Ok(batches)
    }

    /// Ends the input: decodes an unterminated last line and returns the last batch.
    pub fn finish(&mut self) -> Result<Option<RecordBatch>, DecodeError> {
        let rest = std::mem::take(&mut self.pending);
        if !self.ended && !rest.is_empty() {
            let mut batches = Vec::new();
            self.split_all(&rest, true, &mut batches)?;
            if let Some(batch) = batches.pop() {
                return Ok(Some(batch));
            }
        }
        if self.fields.rows() == 0 {
            Ok(None)
        } else {
            self.finish_batch().map(Some)
        }
    }

    /// Splits every whole record of `input` (all of it when `at_end`), pushing full batches;
    /// returns the bytes used.
    fn split_all(
        &mut self,
        input: &[u8],
        at_end: bool,
        batches: &mut Vec<RecordBatch>,
    ) -> Result<usize, DecodeError> {
        let mut at = 0;
        while at < input.len() && !self.ended {
            match self.record(&input[at..], at_end)? {
                Split::Record(length) => at += length,
                Split::Incomplete => break,
            }
            if self.fields.rows() >= BATCH_ROWS {
                batches.push(self.finish_batch()?);
            }
        }
        Ok(at)
    }

    /// Splits the record at the start of `input` into the batch (or skips the header, or ends
    /// the data at `\.`), checking its field count and NOT NULL columns.
    fn record(&mut self, input: &[u8], at_end: bool) -> Result<Split, DecodeError> {
        if input[0] == b'\\' {
            match end_marker(input, at_end) {
                Some(Some(length)) => {
                    self.ended = true;
                    return Ok(Split::Record(length));
                }
                Some(None) => return Ok(Split::Incomplete),
                None => {}
            }
        }
        let fields_before = self.fields.ends.len();
        let data_before = self.fields.data.len();
        let split = if self.format.csv {
            self.csv_record(input, at_end)?
        } else {
            self.text_record(input, at_end)
        };
        let Some(length) = split else {
            self.fields.ends.truncate(fields_before);
            self.fields.nulls.truncate(fields_before);
            self.fields.data.truncate(data_before);
            return Ok(Split::Incomplete);
        };
        let line = self.line;
        self.line += 1;
        if self.header_pending {
            self.header_pending = false;
            self.fields.ends.truncate(fields_before);
            self.fields.nulls.truncate(fields_before);
            self.fields.data.truncate(data_before);
            return Ok(Split::Record(length));
        }
        let raw = || {
            let raw = &input[..length];
            let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
            String::from_utf8_lossy(raw.strip_suffix(b"\r").unwrap_or(raw)).into_owned()
        };
        let found = self.fields.ends.len() - fields_before;
        let expected = self.schema.fields().len();
        if found != expected {
            let message = if found < expected {
                format!(
                    "missing data for column \"{}\"",
                    self.schema.field(found).name()
                )
            } else {
                "extra data after last expected column".to_string()
            };
            return Err(copy_error(
                &self.table,
                state::BAD_COPY_FORMAT,
                message,
                line,
                Some(&raw()),
            ));
        }
        for (i, field) in self.schema.fields().iter().enumerate() {
            if self.fields.nulls[fields_before + i] && !field.is_nullable() {
                return Err(copy_error(
                    &self.table,
                    state::NOT_NULL,
                    not_null_message(field.name(), &self.table),
                    line,
                    Some(&raw()),
                ));
            }
        }
        self.fields.lines.push(line);
        Ok(Split::Record(length))
    }

    /// Ends a field whose raw (still escaped) bytes are `raw` and whose decoded bytes start at
    /// `data_start`: NULL when `null_if_raw` and the raw bytes are the NULL string.
    fn end_field(&mut self, raw: &[u8], data_start: usize, null_if_raw: bool) {
        let null = null_if_raw && raw == self.format.null.as_bytes();
        if null {
            self.fields.data.truncate(data_start);
        }
        self.fields.ends.push(self.fields.data.len());
        self.fields.nulls.push(null);
    }

    /// Text format: fields split at the delimiter, `\N` (the NULL string) for NULL, backslash
    /// escapes. Returns the record's length with its newline, or `None` when the input ends
    /// first (and is not at its end).
    fn text_record(&mut self, input: &[u8], at_end: bool) -> Option<usize> {
        let delimiter = self.format.delimiter;
        let mut field_start = 0;
        let mut data_start = self.fields.data.len();
        let mut run = 0;
        loop {
            let Some(offset) = memchr3(delimiter, b'\n', b'\\', &input[run..]) else {
                if !at_end {
                    return None;
                }
                // The last line of the input, without a newline.
                let end = strip_cr(input, run, input.len());
                self.fields.data.extend_from_slice(&input[run..end]);
                self.end_field(&input[field_start..end], data_start, true);
                return Some(input.len());
            };
            let at = run + offset;
            match input[at] {
                b'\\' => {
                    self.fields.data.extend_from_slice(&input[run..at]);
                    let Some(&escaped) = input.get(at + 1) else {
                        if !at_end {
                            return None;
                        }
                        self.fields.data.push(b'\\');
                        run = at + 1;
                        continue;
                    };
                    run = at + 2 + unescape(escaped, &input[at + 2..], &mut self.fields.data);
                }
                b'\n' => {
                    let end = strip_cr(input, run, at);
                    self.fields.data.extend_from_slice(&input[run..end]);
                    self.end_field(&input[field_start..end], data_start, true);
                    return Some(at + 1);
                }
                _ => {
                    self.fields.data.extend_from_slice(&input[run..at]);
                    self.end_field(&input[field_start..at], data_start, true);
                    field_start = at + 1;
                    run = at + 1;
                    data_start = self.fields.data.len();
                }
            }
        }
    }

    /// CSV: quoted fields may hold delimiters, newlines and quotes (doubled, or after the
    /// escape character); an unquoted field equal to the NULL string is NULL, a quoted one never
    /// is. Returns as [`Self::text_record`] does; an unterminated quote at the end of the input
    /// is an error.
    fn csv_record(&mut self, input: &[u8], at_end: bool) -> Result<Option<usize>, DecodeError> {
        let (delimiter, quote, escape) =
            (self.format.delimiter, self.format.quote, self.format.escape);
        let mut field_start = 0;
        let mut data_start = self.fields.data.len();
        let mut quoted = false;
        let mut run = 0;
        loop {
            // Outside quotes.
            let Some(offset) = memchr3(delimiter, b'\n', quote, &input[run..]) else {
                if !at_end {
                    return Ok(None);
                }
                let end = strip_cr(input, run, input.len());
                self.fields.data.extend_from_slice(&input[run..end]);
                self.end_field(&input[field_start..end], data_start, !quoted);
                return Ok(Some(input.len()));
            };
            let at = run + offset;
            let byte = input[at];
            if byte == b'\n' {
                let end = strip_cr(input, run, at);
                self.fields.data.extend_from_slice(&input[run..end]);
                self.end_field(&input[field_start..end], data_start, !quoted);
                return Ok(Some(at + 1));
            }
            self.fields.data.extend_from_slice(&input[run..at]);
            if byte == delimiter {
                self.end_field(&input[field_start..at], data_start, !quoted);
                quoted = false;
                field_start = at + 1;
                run = at + 1;
                data_start = self.fields.data.len();
                continue;
            }
            // A quote: copy the quoted part up to its closing quote.
            quoted = true;
            run = at + 1;
            loop {
                let found = if escape == quote {
                    memchr(quote, &input[run..])
                } else {
                    memchr2(quote, escape, &input[run..])
                };
                let Some(offset) = found else {
                    if !at_end {
                        return Ok(None);
                    }
                    return Err(copy_error(
                        &self.table,
                        state::BAD_COPY_FORMAT,
                        "unterminated CSV quoted field".into(),
                        self.line,
                        Some(&String::from_utf8_lossy(input)),
                    ));
                };
                let at = run + offset;
                self.fields.data.extend_from_slice(&input[run..at]);
                let byte = input[at];
                let next = input.get(at + 1).copied();
                if byte == escape && next.is_none() && !at_end {
                    // The next message tells whether it escapes (or, doubled, is) a quote.
                    return Ok(None);
                }
                if byte == escape && (next == Some(quote) || next == Some(escape)) {
                    self.fields.data.push(input[at + 1]);
                    run = at + 2;
                } else if byte == quote {
                    run = at + 1;
                    break;
                } else {
                    // An escape character before anything else is itself.
                    self.fields.data.push(byte);
                    run = at + 1;
                }
            }
        }
    }

    /// Turns the batch's fields into typed columns.
    fn finish_batch(&mut self) -> Result<RecordBatch, DecodeError> {
        let columns = self.schema.fields().len();
        let checked = self.fields.checked_text();
        let arrays = self
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, field)| columns::build(&self.table, &self.fields, checked, columns, i, field))
            .collect::<Result<Vec<_>, _>>();
        self.fields.clear();
        RecordBatch::try_new(Arc::clone(&self.schema), arrays?).map_err(|e| {
            Box::new(errors::user_error(
                state::INTERNAL,
                format!("building a COPY batch: {e}"),
            ))
        })
    }
}

/// Whether `input` starts with the end-of-data marker `\.` alone on its line: `Some(Some(n))`
/// with its length, `Some(None)` when more input is needed to tell, `None` when it does not.
fn end_marker(input: &[u8], at_end: bool) -> Option<Option<usize>> {
    for marker in [&b"\\.\n"[..], b"\\.\r\n"] {
        if input.starts_with(marker) {
            return Some(Some(marker.len()));
        }
    }
    if at_end && (input == b"\\." || input == b"\\.\r") {
        return Some(Some(input.len()));
    }
    let prefix = input.len() < 4 && (b"\\.\r\n".starts_with(input) || b"\\.\n".starts_with(input));
    (prefix && !at_end).then_some(None)
}

/// The end of a line's last run, without the `\r` of a `\r\n` line ending (when the `\r` is in
/// the run, not produced by an escape).
fn strip_cr(input: &[u8], run: usize, end: usize) -> usize {
    if end > run && input[end - 1] == b'\r' {
        end - 1
    } else {
        end
    }
}

/// Undoes the text-format escape `\<escaped>` whose following bytes are `rest`, appending the
/// byte it stands for; returns how many bytes of `rest` it used (octal and `\x` hex digits).
fn unescape(escaped: u8, rest: &[u8], out: &mut Vec<u8>) -> usize {
    match escaped {
        b'b' => out.push(8),
        b'f' => out.push(12),
        b'n' => out.push(b'\n'),
        b'r' => out.push(b'\r'),
        b't' => out.push(b'\t'),
        b'v' => out.push(11),
        b'0'..=b'7' => {
            let digits = rest
                .iter()
                .take(2)
                .take_while(|d| (b'0'..=b'7').contains(*d))
                .count();
            let value = rest[..digits]
                .iter()
                .fold(u32::from(escaped - b'0'), |v, d| {
                    v * 8 + u32::from(d - b'0')
                });
            out.push(value as u8);
            return digits;
        }
        b'x' if rest.first().is_some_and(u8::is_ascii_hexdigit) => {
            let digits = rest
                .iter()
                .take(2)
                .take_while(|d| d.is_ascii_hexdigit())
                .count();
            let value = rest[..digits]
                .iter()
                .fold(0u32, |v, d| v * 16 + (*d as char).to_digit(16).unwrap_or(0));
            out.push(value as u8);
            return digits;
        }
        other => out.push(other),
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_engine::reexports::arrow::array::{Array, AsArray, Int64Array};
    use tally_engine::reexports::arrow::datatypes::{DataType, Field, Int64Type};

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

    #[test]
    fn a_character_split_over_two_fields_by_escapes_is_refused() {
        let two_texts = Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Utf8, true),
        ]);
        // 0xC3 0xA9 is "é": whole in one field, two invalid halves in two.
        let mut decoder = Decoder::new("t", &two_texts, &[], format(false)).unwrap();
        decoder.feed(b"\\xC3\\xA9\tx\n").unwrap();
        let batch = decoder.finish().unwrap().unwrap();
        assert_eq!(batch.column(0).as_string::<i32>().value(0), "\u{e9}");
        let mut decoder = Decoder::new("t", &two_texts, &[], format(false)).unwrap();
        decoder.feed(b"ok\tfine\n\\xC3\t\\xA9\n").unwrap();
        let err = decoder.finish().unwrap_err();
        assert_eq!(err.code, "22021");
        assert!(
            err.where_context
                .as_deref()
                .unwrap_or("")
                .contains("line 2"),
            "{:?}",
            err.where_context
        );
    }
}

#[cfg(test)]
mod round_trip {
    //! Any text (delimiters, quotes, backslashes, newlines, `\N`, non-ASCII) written by the
    //! COPY TO encoder comes back from the decoder as it was, NULL and empty string apart, in
    //! text and csv, whatever the message boundaries.

    use proptest::prelude::*;
    use tally_engine::reexports::arrow::array::{Array, AsArray, StringArray};
    use tally_engine::reexports::arrow::datatypes::{DataType, Field};

    use super::*;
    use crate::pg::copy::encode_rows;

    fn format(csv: bool) -> CopyFormat {
        CopyFormat {
            csv,
            binary: false,
            delimiter: if csv { b',' } else { b'\t' },
            null: if csv { String::new() } else { "\\N".into() },
            header: csv,
            quote: b'"',
            escape: b'"',
        }
    }

    fn value() -> impl Strategy<Value = Option<String>> {
        let piece = prop_oneof![
            Just(",".to_string()),
            Just("\t".to_string()),
            Just("\"".to_string()),
            Just("\\".to_string()),
            Just("\\N".to_string()),
            Just("\\.".to_string()),
            Just("\n".to_string()),
            Just("\r\n".to_string()),
            Just("é日".to_string()),
            "[a-z ]{0,4}",
        ];
        proptest::option::weighted(
            0.85,
            prop::collection::vec(piece, 0..5).prop_map(|p| p.concat()),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn encoded_rows_decode_to_the_same_values(
            rows in prop::collection::vec((value(), value()), 0..40),
            csv in any::<bool>(),
            chunk in 1usize..64,
        ) {
            let schema = Arc::new(Schema::new(vec![
                Field::new("a", DataType::Utf8, true),
                Field::new("b", DataType::Utf8, true),
            ]));
            let a: StringArray = rows.iter().map(|r| r.0.clone()).collect();
            let b: StringArray = rows.iter().map(|r| r.1.clone()).collect();
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(a), Arc::new(b)]).unwrap();
            let input = encode_rows(&[batch], &schema, &format(csv)).unwrap().concat();
            let mut decoder = Decoder::new("t", &schema, &[], format(csv)).unwrap();
            let mut batches = Vec::new();
            for piece in input.chunks(chunk) {
                batches.extend(decoder.feed(piece).unwrap());
            }
            batches.extend(decoder.finish().unwrap());
            let mut got = Vec::new();
            for batch in &batches {
                let (a, b) = (batch.column(0).as_string::<i32>(), batch.column(1).as_string::<i32>());
                for r in 0..batch.num_rows() {
                    got.push((a.is_valid(r).then(|| a.value(r).to_string()), b.is_valid(r).then(|| b.value(r).to_string())));
                }
            }
            prop_assert_eq!(got, rows);
        }
    }
}
