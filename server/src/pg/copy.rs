//! COPY: decoders of `COPY … FROM STDIN` input into Arrow batches (text and csv in [`text`],
//! PostgreSQL's binary format in [`binary`]) and the encoders of `COPY … TO STDOUT`
//! ([`encode`]).
//!
//! A decoder keeps only the unfinished last record and up to [`BATCH_ROWS`] decoded rows; full
//! batches go to the engine's `BulkIngest`, which bounds memory on its side.

use std::fmt::Debug;
use std::sync::Arc;

use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::results::{CopyResponse, Tag};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyDone, CopyOutResponse};
use tally_engine::reexports::arrow::array::RecordBatch;
use tally_engine::reexports::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::errors::{self, state};
use super::statement::CopyFormat;
use super::types;

pub mod binary;
mod columns;
pub mod encode;
mod pipeline;
pub mod text;

pub use encode::encode_rows;
pub use pipeline::CopyIn;

/// Sends the answer to a `COPY … TO STDOUT`: CopyOutResponse, its CopyData messages, CopyDone
/// and `COPY rows`. pgwire's own sender counts messages for the tag, which a CSV header or the
/// one message of an empty binary COPY (header and trailer) would add to.
pub async fn send_out<C>(client: &mut C, response: CopyResponse, rows: u64) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let formats = response.column_formats();
    client
        .send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
            response.format,
            response.columns as i16,
            formats,
        )))
        .await?;
    let mut data_stream = response.data_stream;
    while let Some(data) = data_stream.next().await {
        client.feed(PgWireBackendMessage::CopyData(data?)).await?;
    }
    client
        .feed(PgWireBackendMessage::CopyDone(CopyDone::new()))
        .await?;
    client
        .feed(PgWireBackendMessage::CommandComplete(
            Tag::new("COPY").with_rows(rows as usize).into(),
        ))
        .await?;
    Ok(())
}

/// Rows per batch handed to the engine.
pub const BATCH_ROWS: usize = 8192;

/// A decoding error: the ErrorResponse to send.
pub type DecodeError = Box<ErrorInfo>;

/// Decodes the input of one `COPY … FROM STDIN` in its format.
pub enum Decoder {
    /// Text or csv.
    Text(text::Decoder),
    /// PostgreSQL's binary COPY format.
    Binary(binary::Decoder),
}

impl Decoder {
    /// A decoder for `columns` (empty = all) of a table with `table_schema`.
    pub fn new(
        table: &str,
        table_schema: &Schema,
        columns: &[String],
        format: CopyFormat,
    ) -> Result<Decoder, DecodeError> {
        if format.binary {
            binary::Decoder::new(table, table_schema, columns).map(Decoder::Binary)
        } else {
            text::Decoder::new(table, table_schema, columns, format).map(Decoder::Text)
        }
    }

    /// Number of columns the input provides.
    pub fn columns(&self) -> usize {
        match self {
            Decoder::Text(d) => d.columns(),
            Decoder::Binary(d) => d.columns(),
        }
    }

    /// Takes a chunk of input; returns the batches completed by it.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<RecordBatch>, DecodeError> {
        match self {
            Decoder::Text(d) => d.feed(chunk),
            Decoder::Binary(d) => d.feed(chunk),
        }
    }

    /// Ends the input and returns the last batch, if any rows are left.
    pub fn finish(&mut self) -> Result<Option<RecordBatch>, DecodeError> {
        match self {
            Decoder::Text(d) => d.finish(),
            Decoder::Binary(d) => d.finish(),
        }
    }
}

/// The fields the input provides: `columns` of the table (all of them when empty), checked for
/// duplicates, unknown names and NOT NULL columns left out.
fn input_schema(
    table: &str,
    table_schema: &Schema,
    columns: &[String],
) -> Result<SchemaRef, DecodeError> {
    let fields: Vec<Field> = if columns.is_empty() {
        table_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect()
    } else {
        let mut fields = Vec::with_capacity(columns.len());
        for (i, name) in columns.iter().enumerate() {
            if columns[..i].contains(name) {
                return Err(Box::new(errors::user_error(
                    "42701",
                    format!("column \"{name}\" specified more than once"),
                )));
            }
            let field = table_schema.field_with_name(name).map_err(|_| {
                Box::new(errors::user_error(
                    state::UNDEFINED_COLUMN,
                    format!("column \"{name}\" of relation \"{table}\" does not exist"),
                ))
            })?;
            fields.push(field.clone());
        }
        for field in table_schema.fields() {
            if !field.is_nullable() && !columns.contains(field.name()) {
                return Err(Box::new(errors::user_error(
                    state::NOT_NULL,
                    not_null_message(field.name(), table),
                )));
            }
        }
        fields
    };
    Ok(Arc::new(Schema::new(fields)))
}

/// PostgreSQL's message for a NULL in a NOT NULL column.
fn not_null_message(column: &str, table: &str) -> String {
    format!(
        "null value in column \"{column}\" of relation \"{table}\" violates not-null constraint"
    )
}

/// An error at input line (or binary tuple) `line`, with PostgreSQL's CONTEXT line
/// (`COPY t, line 3: "…"`).
fn copy_error(
    table: &str,
    code: &str,
    message: String,
    line: u64,
    raw: Option<&str>,
) -> DecodeError {
    let mut info = errors::user_error(code, message);
    info.where_context = Some(match raw {
        Some(raw) => format!("COPY {table}, line {line}: \"{}\"", truncate(raw)),
        None => format!("COPY {table}, line {line}"),
    });
    Box::new(info)
}

trait WithColumn {
    fn with_column(self, column: &str, value: &str) -> Self;
}

impl WithColumn for DecodeError {
    fn with_column(mut self, column: &str, value: &str) -> Self {
        if let Some(context) = &self.where_context {
            self.where_context = Some(format!(
                "{context}, column {column}: \"{}\"",
                truncate(value)
            ));
        }
        self.column = Some(column.to_string());
        self
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 100 {
        format!("{}...", s.chars().take(100).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Why a value does not fit its column: out of range for numbers that parse, else bad syntax.
fn invalid_value(value: &str, target: &DataType) -> (&'static str, String) {
    let name = sql_type_name(target);
    let numeric = matches!(
        target,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(..)
            | DataType::Decimal256(..)
    );
    if numeric && value.trim().parse::<f64>().is_ok_and(|v| v.is_finite()) {
        let integer = matches!(
            target,
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64
        );
        if integer && value.trim().parse::<i128>().is_err() {
            return (
                state::INVALID_TEXT,
                format!("invalid input syntax for type {name}: \"{value}\""),
            );
        }
        (
            state::OUT_OF_RANGE,
            format!("value \"{value}\" is out of range for type {name}"),
        )
    } else {
        (
            state::INVALID_TEXT,
            format!("invalid input syntax for type {name}: \"{value}\""),
        )
    }
}

/// The SQL name of an Arrow type, as Postgres spells it in messages.
pub fn sql_type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::Int16 => "smallint".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("numeric({p},{s})"),
        DataType::Utf8 => "text".into(),
        DataType::Binary => "bytea".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(TimeUnit::Microsecond, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone".into(),
        other => types::pg_type(other).name().to_string(),
    }
}
