//! Helpers shared by the fuzz targets in `fuzz_targets/`: the fuzz input picks a small table
//! schema, a COPY format and how the data is split into CopyData messages, so every target
//! explores schemas and message boundaries as well as the bytes themselves.
//!
//! Layout of a COPY target's input (every field taken from the front, missing bytes read as 0):
//! one byte of column count, two bytes per column (type, nullability), format bytes (text and
//! csv only: delimiter, NULL string, and for csv header, quote and escape), four chunk-size
//! bytes, then the COPY data itself.

use tally_engine::reexports::arrow::array::RecordBatch;
use tally_engine::reexports::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use tally_server::pg::copy::{DecodeError, Decoder};
use tally_server::pg::statement::{CopyFormat, Statement};

/// Reads the fuzz input from the front; past its end every byte is 0.
pub struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    /// The whole fuzz input.
    pub fn new(bytes: &'a [u8]) -> Input<'a> {
        Input { bytes }
    }

    /// The next byte (0 once the input is used up).
    pub fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&b, rest)) => {
                self.bytes = rest;
                b
            }
            None => 0,
        }
    }

    /// The rest of the input.
    pub fn rest(self) -> &'a [u8] {
        self.bytes
    }
}

/// The column types a Tally table can have (`ColumnType::arrow_type`), by index.
fn column_type(b: u8) -> DataType {
    match b % 13 {
        0 => DataType::Boolean,
        1 => DataType::Int16,
        2 => DataType::Int32,
        3 => DataType::Int64,
        4 => DataType::Float32,
        5 => DataType::Float64,
        6 => DataType::Decimal128(12, 3),
        7 => DataType::Decimal128(38, 0),
        8 => DataType::Utf8,
        9 => DataType::Binary,
        10 => DataType::Date32,
        11 => DataType::Timestamp(TimeUnit::Microsecond, None),
        _ => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    }
}

/// A table of one to four columns named `c0`… of types chosen by the input.
pub fn schema(input: &mut Input) -> Schema {
    let columns = usize::from(input.byte() % 4) + 1;
    let fields: Vec<Field> = (0..columns)
        .map(|i| {
            let data_type = column_type(input.byte());
            let nullable = input.byte() % 4 != 0;
            Field::new(format!("c{i}"), data_type, nullable)
        })
        .collect();
    Schema::new(fields)
}

/// A text or csv format chosen by the input, as the server's own parser of `COPY … FROM STDIN
/// (options)` makes it; `None` when the server refuses those options.
pub fn text_format(input: &mut Input, csv: bool) -> Option<CopyFormat> {
    // A common choice, or any ASCII character.
    let pick = |b: u8, common: &[u8]| -> u8 {
        if b < 192 {
            common[usize::from(b) % common.len()]
        } else {
            b & 0x7f
        }
    };
    let literal = |b: u8| format!("'{}'", (b as char).to_string().replace('\'', "''"));
    let mut options = vec![format!("FORMAT {}", if csv { "csv" } else { "text" })];
    let delimiter = pick(input.byte(), if csv { b",;|\t" } else { b"\t,|;" });
    options.push(format!("DELIMITER {}", literal(delimiter)));
    match input.byte() % 5 {
        0 => {}
        1 => options.push("NULL 'NULL'".into()),
        2 => options.push("NULL ''".into()),
        3 => options.push("NULL '\\N'".into()),
        _ => options.push(format!("NULL {}", literal(input.byte() & 0x7f))),
    }
    if csv {
        if input.byte() % 2 == 1 {
            options.push("HEADER".into());
        }
        let quote = pick(input.byte(), b"\"'");
        options.push(format!("QUOTE {}", literal(quote)));
        let escape = pick(input.byte(), &[quote, b'\\']);
        options.push(format!("ESCAPE {}", literal(escape)));
    }
    let sql = format!("COPY t FROM STDIN ({})", options.join(", "));
    match tally_server::pg::statement::classify(&sql) {
        Ok(Statement::CopyIn(copy)) => Some(copy.format),
        _ => None,
    }
}

/// Whether no value can be written as the NULL string. In text format PostgreSQL (and Tally)
/// write a value that equals the NULL string as is, so it reads back as NULL (`NULL '0'` and
/// the integer 0): the user's choice, which the round trip cannot check. A NULL string that is
/// a backslash and a character no escape uses cannot collide; csv quotes such values.
fn null_is_unambiguous(format: &CopyFormat) -> bool {
    if format.csv || format.binary {
        return true;
    }
    let bytes = format.null.as_bytes();
    bytes.first() == Some(&b'\\')
        && bytes
            .get(1)
            .is_some_and(|c| !b"\\tnrbfv".contains(c) && *c != format.delimiter)
}

/// The binary COPY format.
pub fn binary_format() -> CopyFormat {
    CopyFormat {
        csv: false,
        binary: true,
        delimiter: b'\t',
        null: "\\N".to_string(),
        header: false,
        quote: b'"',
        escape: b'"',
    }
}

/// Chunk sizes (1 to 256 bytes, cycled) read from four input bytes; a 0 byte means "the rest
/// in one message".
pub fn chunk_sizes(input: &mut Input) -> [usize; 4] {
    [(); 4].map(|_| usize::from(input.byte()))
}

/// The rows of a decoding, or the error's SQLSTATE and message.
pub type Outcome = Result<Vec<RecordBatch>, (String, String)>;

/// Decodes `data` split into messages of `sizes` (cycled; 0 = all the rest).
pub fn decode(schema: &Schema, format: &CopyFormat, data: &[u8], sizes: &[usize]) -> Outcome {
    let error = |e: DecodeError| (e.code.clone(), e.message.clone());
    let mut decoder = Decoder::new("t", schema, &[], format.clone()).map_err(error)?;
    let mut batches = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let size = match sizes[i % sizes.len()] {
            0 => rest.len(),
            n => n.min(rest.len()),
        };
        let (chunk, tail) = rest.split_at(size);
        batches.extend(decoder.feed(chunk).map_err(error)?);
        rest = tail;
        i += 1;
    }
    batches.extend(decoder.finish().map_err(error)?);
    for batch in &batches {
        assert_eq!(
            batch.schema().fields().len(),
            schema.fields().len(),
            "a batch has the table's columns"
        );
        for (column, field) in batch.columns().iter().zip(schema.fields()) {
            assert_eq!(
                column.data_type(),
                field.data_type(),
                "column {}",
                field.name()
            );
            if !field.is_nullable() {
                assert_eq!(column.null_count(), 0, "NULL in NOT NULL {}", field.name());
            }
        }
    }
    Ok(batches)
}

/// The decoded rows as comparable text (NaN equals itself, unlike `RecordBatch`'s `==`).
pub fn rows_text(batches: &[RecordBatch], schema: &Schema) -> Vec<u8> {
    let format = CopyFormat {
        csv: true,
        binary: false,
        delimiter: b',',
        null: "<NULL>".into(),
        header: false,
        quote: b'"',
        escape: b'"',
    };
    tally_server::pg::copy::encode_rows(batches, schema, &format)
        .expect("decoded rows encode")
        .concat()
}

/// The number of rows of `batches`.
pub fn row_count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// Checks one text or csv input: decoding in the input's messages and in one message agree,
/// and what decodes, encoded again with `COPY TO`'s encoder, decodes to the same rows.
pub fn check_text(data: &[u8], csv: bool) {
    let mut input = Input::new(data);
    let schema = schema(&mut input);
    if let Some(format) = text_format(&mut input, csv) {
        check(input, schema, format);
    }
}

/// Checks one binary input as [`check_text`] does.
pub fn check_binary(data: &[u8]) {
    let mut input = Input::new(data);
    let schema = schema(&mut input);
    check(input, schema, binary_format());
}

fn check(mut input: Input, schema: Schema, format: CopyFormat) {
    let sizes = chunk_sizes(&mut input);
    let data = input.rest();
    let split = decode(&schema, &format, data, &sizes);
    let whole = decode(&schema, &format, data, &[0]);
    match (&split, &whole) {
        (Ok(a), Ok(b)) => assert_eq!(
            rows_text(a, &schema),
            rows_text(b, &schema),
            "message boundaries change the rows"
        ),
        (Err(a), Err(b)) => assert_eq!(a, b, "message boundaries change the error"),
        _ => panic!("message boundaries change the outcome: {split:?} vs {whole:?}"),
    }
    let Ok(batches) = whole else { return };
    if !null_is_unambiguous(&format) {
        return;
    }
    let encoded = tally_server::pg::copy::encode_rows(&batches, &schema, &format)
        .expect("decoded rows encode")
        .concat();
    match decode(&schema, &format, &encoded, &[0]) {
        Ok(again) => assert_eq!(
            String::from_utf8_lossy(&rows_text(&again, &schema)),
            String::from_utf8_lossy(&rows_text(&batches, &schema)),
            "COPY TO output decodes to other rows ({format:?}):\n{}",
            String::from_utf8_lossy(&encoded)
        ),
        Err(e) => panic!(
            "COPY TO output is refused by COPY FROM ({format:?}): {e:?}\n{}",
            String::from_utf8_lossy(&encoded)
        ),
    }
}
