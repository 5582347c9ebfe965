//! Parquet files in and out: [`Database::copy_from_parquet`] loads a file into a table in one
//! atomic commit (views included), [`Database::copy_to_parquet`] writes a query's result to a
//! file. The server's `COPY … FROM '/path' (FORMAT parquet)` and `COPY (query) TO '/path'
//! (FORMAT parquet)` come here.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use tokio::sync::mpsc;

use crate::bulk::BulkIngest;
use crate::database::Database;
use crate::error::{Error, Result};

/// Rows per batch read from a file.
const READ_BATCH_ROWS: usize = 8192;

impl Database {
    /// Loads every row of the Parquet file at `path` into `table`, as one atomic commit that
    /// also updates the table's views; returns the number of rows. Columns are matched by name
    /// and conformed as [`Database::ingest`] does; a bad value rejects the whole file. Reading
    /// (on a blocking thread) overlaps with validation and view maintenance, and large files
    /// spill to segment files as a `COPY` does, so memory stays bounded.
    pub async fn copy_from_parquet(&self, table: &str, path: impl AsRef<Path>) -> Result<u64> {
        let rows = self
            .read_parquet(table, path.as_ref())
            .await?
            .commit()
            .await?;
        tracing::info!(table, path = %path.as_ref().display(), rows, "loaded a parquet file");
        Ok(rows)
    }

    /// Reads the Parquet file at `path` into a [`BulkIngest`] for `table`, not yet committed:
    /// commit it, or hold it in a [`Transaction`](crate::Transaction) with `hold_bulk`.
    pub async fn read_parquet(&self, table: &str, path: impl AsRef<Path>) -> Result<BulkIngest> {
        let path = path.as_ref().to_path_buf();
        let mut bulk = self.bulk_ingest(table)?;
        let (sender, mut batches) = mpsc::channel::<Result<RecordBatch>>(2);
        let reader = tokio::task::spawn_blocking(move || {
            let rows = match open_parquet(&path) {
                Ok(rows) => rows,
                Err(e) => {
                    let _ = sender.blocking_send(Err(e));
                    return;
                }
            };
            for batch in rows {
                let batch = batch.map_err(|e| bad_parquet(&path, e.to_string()));
                let failed = batch.is_err();
                if sender.blocking_send(batch).is_err() || failed {
                    return;
                }
            }
        });
        while let Some(batch) = batches.recv().await {
            bulk.write(batch?).await?;
        }
        reader
            .await
            .map_err(|e| Error::io("reading a parquet file", std::io::Error::other(e)))?;
        Ok(bulk)
    }

    /// Runs `sql` (one query) and writes its rows to a new Parquet file at `path` (zstd, the
    /// result's schema), replacing it atomically: the file appears whole or not at all. Returns
    /// the number of rows.
    pub async fn copy_to_parquet(&self, sql: &str, path: impl AsRef<Path>) -> Result<u64> {
        let path = path.as_ref().to_path_buf();
        let mut results = self.execute(sql).await?;
        let result = match (results.pop(), results.is_empty()) {
            (Some(result), true) => result,
            _ => {
                return Err(Error::NotSupported(
                    "COPY … TO a parquet file takes exactly one query".into(),
                ));
            }
        };
        let rows = result.batches.iter().map(|b| b.num_rows() as u64).sum();
        tokio::task::spawn_blocking(move || write_parquet(&path, &result.schema, &result.batches))
            .await
            .map_err(|e| Error::io("writing a parquet file", std::io::Error::other(e)))??;
        Ok(rows)
    }
}

fn open_parquet(path: &Path) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader> {
    let file = File::open(path).map_err(|source| Error::UserFile {
        action: "open",
        path: path.to_path_buf(),
        source,
    })?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|builder| builder.with_batch_size(READ_BATCH_ROWS).build())
        .map_err(|e| bad_parquet(path, e.to_string()))
}

fn bad_parquet(path: &Path, reason: String) -> Error {
    Error::BadUserFile {
        path: path.to_path_buf(),
        format: "parquet",
        reason,
    }
}

fn write_parquet(
    path: &Path,
    schema: &arrow::datatypes::SchemaRef,
    batches: &[RecordBatch],
) -> Result<()> {
    let user_file = |action: &'static str, path: &Path| {
        let path: PathBuf = path.to_path_buf();
        move |source: std::io::Error| Error::UserFile {
            action,
            path,
            source,
        }
    };
    let partial = path.with_extension("parquet.partial");
    let file = File::create(&partial).map_err(user_file("write", path))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let written = (|| {
        let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props))?;
        for batch in batches {
            writer.write(batch)?;
        }
        writer.into_inner()?.sync_all()?;
        Ok::<_, parquet::errors::ParquetError>(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(Error::parquet(format!("writing {}", path.display()), e));
    }
    std::fs::rename(&partial, path).map_err(user_file("write", path))
}
