//! A `COPY … FROM STDIN` in progress, as a two-stage pipeline: the connection's task decodes
//! CopyData into batches while a writer task validates them, accumulates the views' deltas and
//! spills to Parquet ([`BulkIngest::write`]), so decoding and ingest work overlap on two cores.
//!
//! At most [`IN_FLIGHT`] decoded batches wait between the stages, which bounds memory and slows
//! the client (through TCP) when ingest is the slower stage.

use std::time::Instant;

use pgwire::error::{PgWireError, PgWireResult};
use tally_engine::BulkIngest;
use tally_engine::reexports::arrow::array::RecordBatch;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Decoder;
use crate::pg::errors::{self, state};

/// Decoded batches that may wait for the writer.
const IN_FLIGHT: usize = 2;

/// What the writer task gives back: the bulk ingest and the first error it met.
type Written = (BulkIngest, tally_engine::Result<()>);

/// One COPY FROM STDIN: the decoder, and the writer task that owns the bulk ingest.
pub struct CopyIn {
    decoder: Decoder,
    batches: Option<mpsc::Sender<RecordBatch>>,
    writer: Option<JoinHandle<Written>>,
    /// Rows decoded so far.
    rows: u64,
    /// When the COPY began, for its latency.
    started: Instant,
}

impl CopyIn {
    /// Starts the writer task for `bulk`; input goes through `decoder`.
    pub fn start(bulk: BulkIngest, decoder: Decoder) -> CopyIn {
        let (sender, mut receiver) = mpsc::channel::<RecordBatch>(IN_FLIGHT);
        let writer = tokio::spawn(async move {
            let mut bulk = bulk;
            while let Some(batch) = receiver.recv().await {
                if let Err(e) = bulk.write(batch).await {
                    return (bulk, Err(e));
                }
            }
            (bulk, Ok(()))
        });
        CopyIn {
            decoder,
            batches: Some(sender),
            writer: Some(writer),
            rows: 0,
            started: Instant::now(),
        }
    }

    /// Rows decoded so far (for progress reports).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// When the COPY began.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Number of columns the input provides.
    pub fn columns(&self) -> usize {
        self.decoder.columns()
    }

    /// Decodes a chunk of input and hands the batches it completes to the writer. An error of
    /// either stage ends the COPY (the caller drops it, which discards everything).
    pub async fn feed(&mut self, chunk: &[u8]) -> PgWireResult<()> {
        let batches = self.decoder.feed(chunk).map_err(PgWireError::UserError)?;
        for batch in batches {
            self.send(batch).await?;
        }
        Ok(())
    }

    /// Ends the input and waits for the writer; returns the bulk ingest holding every row,
    /// ready to commit.
    pub async fn finish(mut self) -> PgWireResult<BulkIngest> {
        if let Some(batch) = self.decoder.finish().map_err(PgWireError::UserError)? {
            self.send(batch).await?;
        }
        self.batches = None;
        let (bulk, result) = self.join().await?;
        result.map_err(|e| errors::engine(&e))?;
        Ok(bulk)
    }

    async fn send(&mut self, batch: RecordBatch) -> PgWireResult<()> {
        self.rows += batch.num_rows() as u64;
        let sent = match &self.batches {
            Some(sender) => sender.send(batch).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The writer stopped: it met an error.
        self.batches = None;
        let (_bulk, result) = self.join().await?;
        Err(match result {
            Err(e) => errors::engine(&e),
            Ok(()) => errors::pg(state::INTERNAL, "the COPY writer stopped"),
        })
    }

    async fn join(&mut self) -> PgWireResult<Written> {
        let writer = self
            .writer
            .take()
            .ok_or_else(|| errors::pg(state::INTERNAL, "the COPY writer already ended"))?;
        writer
            .await
            .map_err(|e| errors::pg(state::INTERNAL, format!("the COPY writer failed: {e}")))
    }
}
