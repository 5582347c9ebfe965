//! `COPY … TO STDOUT`: result rows in the text, csv and binary COPY formats.

use pgwire::error::PgWireResult;
use tally_engine::reexports::arrow::array::RecordBatch;
use tally_engine::reexports::arrow::datatypes::Schema;

use crate::pg::statement::CopyFormat;
use crate::pg::types;

/// Encodes result rows as COPY text or csv lines, one CopyData message per line, or in the
/// binary format.
pub fn encode_rows(
    batches: &[RecordBatch],
    schema: &Schema,
    format: &CopyFormat,
) -> PgWireResult<Vec<Vec<u8>>> {
    if format.binary {
        return super::binary::encode_rows(batches);
    }
    let mut lines = Vec::new();
    let delimiter = format.delimiter as char;
    if format.csv && format.header {
        let names: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| csv_quote(f.name(), format))
            .collect();
        lines.push(format!("{}\n", names.join(&delimiter.to_string())).into_bytes());
    }
    let mut value = String::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let mut line = String::new();
            for (i, column) in batch.columns().iter().enumerate() {
                if i > 0 {
                    line.push(delimiter);
                }
                if types::is_null(column.as_ref(), row) {
                    line.push_str(&format.null);
                    continue;
                }
                value.clear();
                types::write_text(column.as_ref(), row, &mut value)?;
                if format.csv {
                    line.push_str(&csv_quote(&value, format));
                } else {
                    escape_text(&value, delimiter, &mut line);
                }
            }
            line.push('\n');
            lines.push(line.into_bytes());
        }
    }
    Ok(lines)
}

fn escape_text(value: &str, delimiter: char, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == delimiter => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
}

fn csv_quote(value: &str, format: &CopyFormat) -> String {
    let (quote, escape, delimiter) = (
        format.quote as char,
        format.escape as char,
        format.delimiter as char,
    );
    let needs = value.is_empty() && format.null.is_empty()
        || value == format.null
        || value.contains([delimiter, quote, '\n', '\r'])
        || value.starts_with("\\.");
    if !needs {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push(quote);
    for c in value.chars() {
        if c == quote || c == escape {
            out.push(escape);
        }
        out.push(c);
    }
    out.push(quote);
    out
}
