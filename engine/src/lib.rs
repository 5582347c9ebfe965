//! # Tally engine
//!
//! An embeddable analytics storage engine: tables of events stored durably in RocksDB (recent
//! batches) and Parquet (flushed segments), queried with SQL through Apache DataFusion.
//!
//! Start with [`Database::open`], then [`Database::sql`] and [`Database::ingest`]. The
//! architecture is described in `docs/architecture.md`, the on-disk format in `docs/format.md`.

mod batch_ids;
mod bulk;
mod catalog;
mod changefeed;
mod commit;
mod database;
mod error;
mod files;
mod flush;
mod functions;
/// Entry points for the cargo-fuzz targets in `fuzz/` only; not a supported API.
#[doc(hidden)]
pub mod fuzzing;
mod ingest;
/// Internals exposed for Tally's own benchmarks; not a stable API.
#[doc(hidden)]
pub mod internals;
pub mod metrics;
mod options;
mod query;
mod retention;
mod sketch;
mod snapshot;
mod storage;
mod transaction;
pub mod types;
mod views;

pub use batch_ids::MAX_BATCH_ID_BYTES;
pub use bulk::{BulkIngest, Receipt};
pub use catalog::{ColumnDef, SegmentMeta, TableDef};
pub use changefeed::{ChangeBatch, ChangeKind, RING_BYTES, Subscription};
pub use database::{Database, Prepared, TableStats};
pub use error::{DataErrorClass, Error, ErrorKind, Result};
pub use metrics::Metrics;
pub use options::Options;
pub use query::depth;
pub use query::extension::{CatalogSnapshot, SessionExtension, TableInfo, ViewInfo};
pub use query::settings::{SessionSettings, parse_bool_setting};
pub use query::{BatchStream, CATALOG, SCHEMA, StatementResult, StreamedResult};
pub use retention::{RetentionReport, format_period};
pub use transaction::Transaction;
pub use types::ColumnType;
pub use views::{ViewDef, ViewStatus};

/// Re-exports of the Arrow and DataFusion versions Tally is built with, so embedders use the
/// same types.
pub mod reexports {
    pub use arrow;
    pub use datafusion;
    pub use parquet;
}
