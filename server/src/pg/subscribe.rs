//! Answers `SUBSCRIBE` (and `COPY (SUBSCRIBE …) TO STDOUT`): the view's changefeed as a COPY OUT
//! stream. Each row is `seq`, `kind` (`snapshot` or `change`), then the view's columns, in the
//! COPY text or csv encoding. The stream never completes on its own: it ends with an
//! ErrorResponse when the view is dropped, the statement is canceled or the server closes the
//! database, or when the client goes away (noticed at the next write).

use std::fmt::Debug;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Sink, SinkExt};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyOutResponse};
use tally_engine::reexports::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use tally_engine::reexports::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use tally_engine::{ChangeBatch, ChangeKind, Database};

use crate::metrics::{Direction, ServerMetrics};
use crate::pg::copy;
use crate::pg::errors::{self, state};
use crate::pg::statement::Subscribe;

/// Streams the changefeed of `request.view` to `client` until it fails; returns why it ended.
pub async fn stream<C>(
    client: &mut C,
    db: &Database,
    request: &Subscribe,
    metrics: &ServerMetrics,
) -> PgWireError
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    match run(client, db, request, metrics).await {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

async fn run<C>(
    client: &mut C,
    db: &Database,
    request: &Subscribe,
    metrics: &ServerMetrics,
) -> PgWireResult<std::convert::Infallible>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let mut subscription = db
        .subscribe(&request.view, request.from)
        .await
        .map_err(|e| errors::engine(&e))?;
    let schema = output_schema(&subscription.schema());
    let columns = schema.fields().len();
    client
        .send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
            0,
            columns as i16,
            vec![0; columns],
        )))
        .await?;
    let mut format = request.format.clone();
    if format.csv && format.header {
        send_lines(client, copy::encode_rows(&[], &schema, &format)?).await?;
        format.header = false;
    }
    loop {
        let change = subscription.next().await.map_err(|e| errors::engine(&e))?;
        let rows = change.rows.num_rows();
        if rows == 0 {
            continue;
        }
        let batch = with_seq_and_kind(&schema, &change)?;
        send_lines(client, copy::encode_rows(&[batch], &schema, &format)?).await?;
        metrics.copy_rows(Direction::Out, rows as u64);
    }
}

/// `seq`, `kind`, then the view's columns.
fn output_schema(view: &SchemaRef) -> SchemaRef {
    let mut fields = vec![
        Field::new("seq", DataType::Int64, false),
        Field::new("kind", DataType::Utf8, false),
    ];
    fields.extend(view.fields().iter().map(|f| f.as_ref().clone()));
    Arc::new(Schema::new(fields))
}

fn with_seq_and_kind(schema: &SchemaRef, change: &ChangeBatch) -> PgWireResult<RecordBatch> {
    let rows = change.rows.num_rows();
    let kind = match change.kind {
        ChangeKind::Snapshot => "snapshot",
        ChangeKind::Change => "change",
    };
    let seq = i64::try_from(change.seq).unwrap_or(i64::MAX);
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![seq; rows])),
        Arc::new(StringArray::from(vec![kind; rows])),
    ];
    columns.extend(change.rows.columns().iter().cloned());
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| {
        errors::pg(
            state::INTERNAL,
            format!("encoding a change of the subscription: {e}"),
        )
    })
}

/// Sends COPY lines and flushes them: a change must reach the subscriber now, not when a
/// buffer fills.
async fn send_lines<C>(client: &mut C, lines: Vec<Vec<u8>>) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for line in lines {
        client
            .feed(PgWireBackendMessage::CopyData(CopyData::new(Bytes::from(
                line,
            ))))
            .await?;
    }
    client.flush().await?;
    Ok(())
}
