//! Streamed query results: a query's batches handed to the caller as the plan produces them,
//! instead of collected into a `Vec` first.
//!
//! [`Database::execute_streaming`] (and the prepared and transaction variants) run one
//! statement as [`Database::execute`] does, with a slot set in a task-local: when the
//! statement turns out to be a plain query (command `SELECT`: not EXPLAIN, INSERT or DDL),
//! [`super::QueryEngine::run_plan`] plans it, starts DataFusion's `execute_stream` on the query
//! runtime, and leaves a [`BatchStream`] in the slot instead of collecting. A task on the query
//! runtime pulls the plan's batches into a bounded channel, so a slow reader holds the query
//! back (at most [`CHANNEL_BATCHES`] batches wait), and dropping the stream aborts the task
//! and with it the plan.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::runtime::{AbortOnDrop, QueryRuntime};
use super::{StatementResult, classify};
use crate::database::{Database, Prepared};
use crate::error::Result;
use crate::transaction::Transaction;

/// Batches that may wait in the channel between the query and its reader.
pub(crate) const CHANNEL_BATCHES: usize = 2;

/// The result of a statement run by [`Database::execute_streaming`] and its variants.
#[derive(Debug)]
pub enum StreamedResult {
    /// A query's rows, read as the plan produces them.
    Rows(BatchStream),
    /// Any other statement's whole result (and a query that was run with others, which is
    /// collected as [`Database::execute`] collects it).
    Done(StatementResult),
}

/// A query's record batches as the plan produces them: a [`Stream`] of
/// [`Result<RecordBatch>`](RecordBatch), `Send` and `'static`. An error ends it (the error is
/// its last item). Dropping it stops the query.
pub struct BatchStream {
    schema: SchemaRef,
    batches: mpsc::Receiver<Result<RecordBatch>>,
    /// The task that pulls the plan's batches into `batches`; `None` once it has ended.
    task: Option<AbortOnDrop<()>>,
}

impl fmt::Debug for BatchStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchStream")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl BatchStream {
    /// Starts pulling `stream` (a plan already executing on `runtime`, whose rows have
    /// `schema`) on the query runtime, keeping `session` (what the plan reads) until it ends.
    pub(crate) fn start<S: Send + 'static>(
        runtime: &QueryRuntime,
        schema: SchemaRef,
        mut stream: SendableRecordBatchStream,
        session: S,
    ) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let task = runtime.spawn(async move {
            let _session = session;
            while let Some(item) = stream.next().await {
                let item = item.map_err(classify);
                let failed = item.is_err();
                // A closed channel: the reader is gone, so the query stops.
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        BatchStream {
            schema,
            batches: rx,
            task: Some(task),
        }
    }

    /// The schema of the rows.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// Reads every remaining batch.
    pub async fn collect_all(mut self) -> Result<Vec<RecordBatch>> {
        let mut batches = Vec::new();
        while let Some(batch) = self.next().await {
            batches.push(batch?);
        }
        Ok(batches)
    }
}

impl Stream for BatchStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.batches.poll_recv(cx) {
            Poll::Ready(Some(item)) => Poll::Ready(Some(item)),
            Poll::Pending => Poll::Pending,
            // Every batch is read and the task has let go of the channel: it ends the stream
            // only if the task ended normally. One that panicked or was stopped (the database
            // closed) must not pass for the end of the rows.
            Poll::Ready(None) => {
                let Some(task) = this.task.as_mut() else {
                    return Poll::Ready(None);
                };
                match Pin::new(task).poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(ended) => {
                        this.task = None;
                        Poll::Ready(ended.err().map(Err))
                    }
                }
            }
        }
    }
}

tokio::task_local! {
    /// Set while a streaming entry point runs its statement: where
    /// [`super::QueryEngine::run_plan`] leaves a query's [`BatchStream`].
    static SLOT: Arc<Mutex<Slot>>;
}

/// A streaming entry point's request to [`super::QueryEngine::run_plan`].
#[derive(Default)]
pub(crate) enum Slot {
    /// A query run now should stream.
    #[default]
    Wanted,
    /// A query streams into this.
    Filled(BatchStream),
    /// Taken (no other statement run inside the same call streams).
    Taken,
}

/// Whether the statement running now is to stream: a one-time claim.
pub(crate) fn claim() -> Option<Arc<Mutex<Slot>>> {
    SLOT.try_with(|slot| {
        let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
        match *guard {
            Slot::Wanted => {
                *guard = Slot::Taken;
                Some(Arc::clone(slot))
            }
            _ => None,
        }
    })
    .ok()
    .flatten()
}

/// Hands a claimed slot its stream.
pub(crate) fn fill(slot: &Mutex<Slot>, stream: BatchStream) {
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Slot::Filled(stream);
}

/// Runs `statement` (through the usual path) with a slot for a query's stream. The entry
/// points box the statement's future: planning is deep, and in a debug build every layer that
/// holds the future by value adds its size to the stack of the task that polls it.
async fn capture<T>(
    statement: impl Future<Output = Result<T>>,
) -> Result<(T, Option<BatchStream>)> {
    let slot = Arc::new(Mutex::new(Slot::Wanted));
    let result = SLOT.scope(Arc::clone(&slot), statement).await?;
    let filled = std::mem::take(&mut *slot.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(match filled {
        Slot::Filled(stream) => (result, Some(stream)),
        _ => (result, None),
    })
}

/// Runs one prepared statement, streamed if it is a query.
async fn run_prepared(
    statement: impl Future<Output = Result<StatementResult>>,
) -> Result<StreamedResult> {
    Ok(match capture(statement).await? {
        (_, Some(stream)) => StreamedResult::Rows(stream),
        (result, None) => StreamedResult::Done(result),
    })
}

/// Runs `sql` with `execute`: a lone statement streamed if it is a query; several as
/// `execute` runs them, none streamed. The last statement's result (none for an empty string).
async fn run_sql<Fut>(sql: &str, execute: impl FnOnce() -> Fut) -> Result<Option<StreamedResult>>
where
    Fut: Future<Output = Result<Vec<StatementResult>>>,
{
    let (mut results, stream) = if super::parse(sql)?.len() == 1 {
        capture(execute()).await?
    } else {
        (execute().await?, None)
    };
    Ok(match stream {
        Some(stream) => Some(StreamedResult::Rows(stream)),
        None => results.pop().map(StreamedResult::Done),
    })
}

impl Database {
    /// Runs SQL like [`Database::execute`] and returns the last statement's result, with a
    /// query's rows as a [`BatchStream`] that the plan fills as the caller reads it, so the
    /// first rows are out before the last are read and only a few batches are held at once.
    /// Only a lone statement streams: with several, each runs to completion before the next
    /// (as with [`Database::execute`]). EXPLAIN, INSERT and DDL come back whole. `None` for a
    /// string without statements.
    pub async fn execute_streaming(&self, sql: &str) -> Result<Option<StreamedResult>> {
        run_sql(sql, || Box::pin(self.execute(sql))).await
    }

    /// Runs a prepared statement like [`Database::execute_prepared`], a query's rows streamed
    /// as by [`Database::execute_streaming`].
    pub async fn execute_prepared_streaming(
        &self,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
    ) -> Result<StreamedResult> {
        run_prepared(Box::pin(self.execute_prepared(prepared, params))).await
    }
}

impl Transaction {
    /// [`Database::execute_streaming`] in the transaction: it reads the transaction's held
    /// rows, and holds an INSERT's rows.
    pub async fn execute_streaming(&self, sql: &str) -> Result<Option<StreamedResult>> {
        run_sql(sql, || Box::pin(self.execute(sql))).await
    }

    /// [`Database::execute_prepared_streaming`] in the transaction.
    pub async fn execute_prepared_streaming(
        &self,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
    ) -> Result<StreamedResult> {
        run_prepared(Box::pin(self.execute_prepared(prepared, params))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use datafusion::execution::context::SessionContext;

    /// A stream over `sql` run on `runtime`, as `run_plan` starts one.
    async fn start(runtime: &QueryRuntime, sql: &str) -> BatchStream {
        let sql = sql.to_string();
        let (ctx, schema, batches) = runtime
            .run(async move {
                let ctx = SessionContext::new();
                let frame = ctx.sql(&sql).await.map_err(classify)?;
                let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
                let batches = frame.execute_stream().await.map_err(classify)?;
                Ok((ctx, schema, batches))
            })
            .await
            .unwrap();
        BatchStream::start(runtime, schema, batches, ctx)
    }

    async fn wait_for_no_tasks(runtime: &QueryRuntime) {
        for _ in 0..500 {
            if runtime.alive_tasks() == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("{} task(s) still alive", runtime.alive_tasks());
    }

    #[tokio::test]
    async fn a_stream_gives_every_batch_then_ends() {
        let runtime = QueryRuntime::new(2).unwrap();
        let batches = start(&runtime, "SELECT value FROM generate_series(1, 100000)")
            .await
            .collect_all()
            .await
            .unwrap();
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 100_000);
        assert!(
            batches.len() > CHANNEL_BATCHES,
            "several batches went through"
        );
        wait_for_no_tasks(&runtime).await;
    }

    #[tokio::test]
    async fn dropping_a_stream_stops_its_query() {
        let runtime = QueryRuntime::new(2).unwrap();
        // Billions of rows: only a stopped query lets the runtime go idle.
        let mut stream = start(
            &runtime,
            "SELECT value FROM generate_series(1, 10000000000)",
        )
        .await;
        let first = stream.next().await.unwrap().unwrap();
        assert!(first.num_rows() > 0);
        assert!(runtime.alive_tasks() > 0);
        drop(stream);
        wait_for_no_tasks(&runtime).await;
    }

    #[tokio::test]
    async fn an_error_ends_the_stream_after_the_batches_before_it() {
        let runtime = QueryRuntime::new(2).unwrap();
        let mut stream = start(
            &runtime,
            "SELECT 10 / (value - 90000) FROM generate_series(1, 100000)",
        )
        .await;
        let mut rows = 0;
        let error = loop {
            match stream.next().await {
                Some(Ok(batch)) => rows += batch.num_rows(),
                Some(Err(e)) => break e,
                None => panic!("no error after {rows} rows"),
            }
        };
        assert!(rows > 0, "batches before the failing one arrive");
        assert!(error.to_string().contains("Divide by zero"), "{error}");
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn a_stopped_runtime_is_an_error_not_the_end() {
        let runtime = QueryRuntime::new(1).unwrap();
        let mut stream = start(
            &runtime,
            "SELECT value FROM generate_series(1, 10000000000)",
        )
        .await;
        stream.next().await.unwrap().unwrap();
        runtime.shutdown();
        let mut last = None;
        while let Some(item) = stream.next().await {
            last = Some(item);
        }
        assert!(matches!(last, Some(Err(Error::Closed))), "{last:?}");
    }
}
