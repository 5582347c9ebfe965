//! The engine's error type: every failure carries the context a person needs to act on it.

use std::path::PathBuf;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, with the table, column, row or file it concerns.
///
/// The server maps each variant to a Postgres SQLSTATE at one place (see [`Error::kind`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another process holds the data directory.
    #[error("data directory {path} is locked by another process (is another Tally running?)")]
    Locked {
        /// The data directory.
        path: PathBuf,
    },
    /// The data directory was written by a newer Tally.
    #[error(
        "data directory {path} has on-disk format version {found}; this build of Tally reads versions up to {supported}: upgrade Tally"
    )]
    FormatTooNew {
        /// The data directory.
        path: PathBuf,
        /// Format version found on disk.
        found: u32,
        /// Newest format version this build understands.
        supported: u32,
    },
    /// A file-system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the engine was doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// RocksDB reported an error.
    #[error("storage error while {context}: {source}")]
    Storage {
        /// What the engine was doing.
        context: String,
        /// The underlying error.
        source: rocksdb::Error,
    },
    /// Stored data could not be decoded: the directory is damaged or was written by a bug.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The named table does not exist.
    #[error("table \"{0}\" does not exist")]
    TableNotFound(String),
    /// A table with that name already exists.
    #[error("table \"{0}\" already exists")]
    TableExists(String),
    /// A column named in a statement or batch does not exist.
    #[error("column \"{column}\" of table \"{table}\" does not exist")]
    ColumnNotFound {
        /// The table.
        table: String,
        /// The unknown column.
        column: String,
    },
    /// A value violates the table's schema (type, NOT NULL, encoding).
    #[error("{}", describe_invalid(table, column, *row, reason))]
    InvalidData {
        /// The table being written.
        table: String,
        /// The offending column.
        column: String,
        /// Zero-based row within the statement's input, when known.
        row: Option<usize>,
        /// The data-error class, for the SQLSTATE.
        class: DataErrorClass,
        /// Why the value is rejected.
        reason: String,
    },
    /// A value in a statement (a literal, a cast, a parameter) is not valid for its type, for
    /// example text that is not a UUID or not JSON.
    #[error("{reason}")]
    InvalidValue {
        /// The data-error class, for the SQLSTATE.
        class: DataErrorClass,
        /// What is wrong, in PostgreSQL's words (`invalid input syntax for type uuid: "x"`).
        reason: String,
    },
    /// Other objects depend on the one being dropped.
    #[error("{0}")]
    DependentObjects(String),
    /// A table definition is invalid (unknown type, bad option …).
    #[error("invalid definition: {0}")]
    InvalidDefinition(String),
    /// The SQL is valid but Tally does not support it.
    #[error("{0}")]
    NotSupported(String),
    /// The SQL text could not be parsed.
    #[error("syntax error: {0}")]
    Syntax(String),
    /// The statement nests deeper than Tally runs (see [`crate::depth`]).
    #[error("{}", too_deep_message(*depth, *limit, *subqueries))]
    TooDeep {
        /// How deep it nests, as counted until the limit was passed.
        depth: usize,
        /// The limit.
        limit: usize,
        /// Whether the limit is the one on subqueries nested in expressions.
        subqueries: bool,
    },
    /// Planning or executing a query failed.
    #[error("{0}")]
    Query(#[from] datafusion::error::DataFusionError),
    /// Arrow failed to encode or decode data.
    #[error("arrow error while {context}: {source}")]
    Arrow {
        /// What the engine was doing.
        context: String,
        /// The underlying error.
        source: arrow::error::ArrowError,
    },
    /// Parquet failed to write or read a segment.
    #[error("parquet error while {context}: {source}")]
    Parquet {
        /// What the engine was doing.
        context: String,
        /// The underlying error.
        source: parquet::errors::ParquetError,
    },
    /// The database was closed.
    #[error("database is closed")]
    Closed,
    /// An argument is out of its valid range (a changefeed's `from` sequence ahead of the
    /// database).
    #[error("{0}")]
    InvalidArgument(String),
    /// The materialized view a [`Subscription`](crate::Subscription) follows was dropped.
    #[error("materialized view \"{0}\" was dropped; its subscription ended")]
    ViewDropped(String),
    /// A transaction has no savepoint of that name.
    #[error("savepoint \"{0}\" does not exist")]
    NoSuchSavepoint(String),
    /// A file named by the user (`COPY … FROM '/path'`) could not be opened or written.
    #[error("could not {action} file \"{}\": {source}", path.display())]
    UserFile {
        /// What was being done: "open", "read", "write".
        action: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file named by the user is not in the expected format.
    #[error("file \"{}\" is not a valid {format} file: {reason}", path.display())]
    BadUserFile {
        /// The file.
        path: std::path::PathBuf,
        /// The format it should be in.
        format: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Which family of data error an [`Error::InvalidData`] is, so the server can pick a SQLSTATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataErrorClass {
    /// A value of the wrong type or that cannot be parsed (22P02).
    InvalidText,
    /// A value out of range for its type (22003).
    OutOfRange,
    /// NULL in a NOT NULL column (23502).
    NotNull,
    /// Text that is not valid UTF-8 (22021).
    BadEncoding,
    /// A value whose type cannot be stored in the column (42804).
    WrongType,
    /// A string longer than its column's declared length (22001).
    TooLong,
}

/// A coarse classification of errors, used at the server edge to choose a SQLSTATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Undefined table.
    UndefinedTable,
    /// Duplicate table.
    DuplicateTable,
    /// Undefined column.
    UndefinedColumn,
    /// Invalid data of the given class.
    Data(DataErrorClass),
    /// Feature not supported.
    NotSupported,
    /// Syntax error.
    Syntax,
    /// A statement too deep to run (54001, as PostgreSQL's stack depth limit).
    TooDeep,
    /// Invalid definition.
    InvalidDefinition,
    /// Dependent objects still exist (2BP01).
    DependentObjects,
    /// No savepoint of that name (3B001).
    NoSuchSavepoint,
    /// A user-named file does not exist (58P01).
    UndefinedFile,
    /// A user-named file could not be read or written (58030).
    FileAccess,
    /// A user-named file is not in the format it should be (22P04).
    BadFile,
    /// An argument out of its valid range (22023).
    InvalidArgument,
    /// Planning or execution error from the query engine.
    Query,
    /// The disk holding the data directory is full (53100): nothing of the failed statement
    /// was written; free space and retry.
    DiskFull,
    /// Internal: storage, IO, corruption, lock, closed.
    Internal,
}

impl Error {
    /// The classification of this error.
    pub fn kind(&self) -> ErrorKind {
        if self.is_disk_full() {
            return ErrorKind::DiskFull;
        }
        match self {
            Error::TableNotFound(_) | Error::ViewDropped(_) => ErrorKind::UndefinedTable,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::TableExists(_) => ErrorKind::DuplicateTable,
            Error::ColumnNotFound { .. } => ErrorKind::UndefinedColumn,
            Error::InvalidData { class, .. } | Error::InvalidValue { class, .. } => {
                ErrorKind::Data(*class)
            }
            Error::NotSupported(_) => ErrorKind::NotSupported,
            Error::Syntax(_) => ErrorKind::Syntax,
            Error::TooDeep { .. } => ErrorKind::TooDeep,
            Error::InvalidDefinition(_) => ErrorKind::InvalidDefinition,
            Error::DependentObjects(_) => ErrorKind::DependentObjects,
            Error::NoSuchSavepoint(_) => ErrorKind::NoSuchSavepoint,
            Error::UserFile { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::UndefinedFile
            }
            Error::UserFile { .. } => ErrorKind::FileAccess,
            Error::BadUserFile { .. } => ErrorKind::BadFile,
            Error::Query(_) => ErrorKind::Query,
            _ => ErrorKind::Internal,
        }
    }

    /// Whether the error comes from a full disk (ENOSPC), however deep it was wrapped: RocksDB,
    /// Parquet and DataFusion keep only the message of the I/O error they met.
    fn is_disk_full(&self) -> bool {
        let io_full = |e: &std::io::Error| e.kind() == std::io::ErrorKind::StorageFull;
        match self {
            Error::Io { source, .. } | Error::UserFile { source, .. } if io_full(source) => true,
            Error::Io { .. }
            | Error::Storage { .. }
            | Error::Parquet { .. }
            | Error::Arrow { .. }
            | Error::Query(_)
            | Error::UserFile { .. } => self.to_string().contains("No space left on device"),
            _ => false,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn storage(context: impl Into<String>, source: rocksdb::Error) -> Self {
        Error::Storage {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn arrow(context: impl Into<String>, source: arrow::error::ArrowError) -> Self {
        Error::Arrow {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn parquet(
        context: impl Into<String>,
        source: parquet::errors::ParquetError,
    ) -> Self {
        Error::Parquet {
            context: context.into(),
            source,
        }
    }
}

fn describe_invalid(table: &str, column: &str, row: Option<usize>, reason: &str) -> String {
    match row {
        Some(row) => format!(
            "table \"{table}\", column \"{column}\", row {}: {reason}",
            row + 1
        ),
        None => format!("table \"{table}\", column \"{column}\": {reason}"),
    }
}

/// Converts an engine error into a DataFusion error so it can cross DataFusion's APIs
/// (for example an INSERT sink) and be recovered intact on the other side.
pub(crate) fn to_datafusion(err: Error) -> datafusion::error::DataFusionError {
    match err {
        Error::Query(e) => e,
        other => datafusion::error::DataFusionError::External(Box::new(other)),
    }
}

/// Recovers an engine error that crossed DataFusion (see [`to_datafusion`]).
pub(crate) fn from_datafusion(err: datafusion::error::DataFusionError) -> Error {
    use datafusion::error::DataFusionError;
    match err {
        DataFusionError::External(inner) => match inner.downcast::<Error>() {
            Ok(engine) => *engine,
            Err(other) => Error::Query(DataFusionError::External(other)),
        },
        DataFusionError::Context(ctx, inner) => match from_datafusion(*inner) {
            Error::Query(e) => Error::Query(DataFusionError::Context(ctx, Box::new(e))),
            engine => engine,
        },
        DataFusionError::Shared(shared) => Error::Query(DataFusionError::Shared(shared)),
        other => Error::Query(other),
    }
}

impl From<crate::depth::TooDeep> for Error {
    fn from(e: crate::depth::TooDeep) -> Self {
        Error::TooDeep {
            depth: e.depth,
            limit: e.limit,
            subqueries: e.subqueries,
        }
    }
}

fn too_deep_message(depth: usize, limit: usize, subqueries: bool) -> String {
    if subqueries {
        format!(
            "stack depth limit exceeded: subqueries nest at least {depth} deep in an expression, \
             more than the limit of {limit}"
        )
    } else {
        format!(
            "stack depth limit exceeded: the statement nests at least {depth} levels deep, more \
             than the limit of {limit}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_recognized_however_it_was_wrapped() {
        let enospc = || std::io::Error::from_raw_os_error(28);
        assert_eq!(
            Error::io("writing a segment", enospc()).kind(),
            ErrorKind::DiskFull
        );
        // Parquet (like RocksDB) keeps only the message of the I/O error.
        let parquet = parquet::errors::ParquetError::External(Box::new(enospc()));
        assert_eq!(
            Error::parquet("writing a spill", parquet).kind(),
            ErrorKind::DiskFull
        );
        let other = Error::io("reading", std::io::Error::from_raw_os_error(13));
        assert_eq!(other.kind(), ErrorKind::Internal);
        // A user's data mentioning the words is no disk error.
        let data = Error::InvalidData {
            table: "t".into(),
            column: "c".into(),
            row: Some(0),
            class: DataErrorClass::InvalidText,
            reason: "No space left on device".into(),
        };
        assert_eq!(data.kind(), ErrorKind::Data(DataErrorClass::InvalidText));
    }
}
