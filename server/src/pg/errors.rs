//! The one place where errors become Postgres ErrorResponses with a SQLSTATE.

use pgwire::error::{ErrorInfo, PgWireError, SEVERITY_ERROR};
use tally_engine::{DataErrorClass, Error, ErrorKind};

/// SQLSTATEs the server itself raises (outside the engine).
pub mod state {
    /// Syntax error.
    pub const SYNTAX: &str = "42601";
    /// Feature not supported.
    pub const NOT_SUPPORTED: &str = "0A000";
    /// Undefined column.
    pub const UNDEFINED_COLUMN: &str = "42703";
    /// Undefined object (an unknown setting).
    pub const UNDEFINED_OBJECT: &str = "42704";
    /// Invalid parameter value.
    pub const INVALID_PARAMETER: &str = "22023";
    /// Invalid text representation.
    pub const INVALID_TEXT: &str = "22P02";
    /// String data right truncation: a value longer than its column's declared length.
    pub const TOO_LONG: &str = "22001";
    /// Numeric value out of range.
    pub const OUT_OF_RANGE: &str = "22003";
    /// NOT NULL violation.
    pub const NOT_NULL: &str = "23502";
    /// Bad COPY file format (missing or extra columns).
    pub const BAD_COPY_FORMAT: &str = "22P04";
    /// A binary COPY value of the wrong size or form (invalid_binary_representation).
    pub const BAD_BINARY: &str = "22P03";
    /// Character not in repertoire (invalid UTF-8).
    pub const BAD_ENCODING: &str = "22021";
    /// Query cancelled (also statement timeout, and COPY aborted by the client).
    pub const QUERY_CANCELED: &str = "57014";
    /// Protocol violation.
    pub const PROTOCOL: &str = "08P01";
    /// Internal error.
    pub const INTERNAL: &str = "XX000";
    /// A statement in a transaction block that an earlier error aborted.
    pub const IN_FAILED_TRANSACTION: &str = "25P02";
    /// A transaction command outside a transaction block.
    pub const NO_ACTIVE_TRANSACTION: &str = "25P01";
    /// BEGIN inside a transaction block.
    pub const ACTIVE_TRANSACTION: &str = "25001";
    /// A statement nested too deep (PostgreSQL's stack depth limit).
    pub const TOO_DEEP: &str = "54001";
}

/// The SQLSTATE of an engine error: the single mapping from [`ErrorKind`] to Postgres codes.
pub fn sqlstate(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::UndefinedTable => "42P01",
        ErrorKind::DuplicateTable => "42P07",
        ErrorKind::UndefinedColumn => state::UNDEFINED_COLUMN,
        ErrorKind::Data(DataErrorClass::InvalidText) => state::INVALID_TEXT,
        ErrorKind::Data(DataErrorClass::OutOfRange) => state::OUT_OF_RANGE,
        ErrorKind::Data(DataErrorClass::NotNull) => state::NOT_NULL,
        ErrorKind::Data(DataErrorClass::BadEncoding) => state::BAD_ENCODING,
        ErrorKind::Data(DataErrorClass::WrongType) => "42804",
        ErrorKind::Data(DataErrorClass::TooLong) => state::TOO_LONG,
        ErrorKind::NotSupported => state::NOT_SUPPORTED,
        ErrorKind::Syntax => state::SYNTAX,
        ErrorKind::TooDeep => state::TOO_DEEP,
        ErrorKind::InvalidDefinition => "42P16",
        ErrorKind::DependentObjects => "2BP01",
        ErrorKind::NoSuchSavepoint => "3B001",
        ErrorKind::UndefinedFile => "58P01",
        ErrorKind::FileAccess => "58030",
        ErrorKind::BadFile => state::BAD_COPY_FORMAT,
        ErrorKind::InvalidArgument => state::INVALID_PARAMETER,
        ErrorKind::Query => "42000",
        ErrorKind::DiskFull => "53100",
        ErrorKind::Internal => state::INTERNAL,
    }
}

/// An engine error as an ErrorResponse.
pub fn engine_error(err: &Error) -> ErrorInfo {
    let kind = err.kind();
    let mut code = sqlstate(kind);
    let message = err.to_string();
    if kind == ErrorKind::Query {
        code = refine_query_error(&message);
    }
    let mut info = ErrorInfo::new(SEVERITY_ERROR.into(), code.into(), clean(&message));
    if kind == ErrorKind::TooDeep {
        info.hint = Some(
            "Simplify the statement: split long chains of operators (a list of OR'ed equalities \
             can be one IN list), or nest fewer subqueries and parentheses."
                .into(),
        );
    }
    if kind == ErrorKind::DiskFull {
        info.hint = Some(
            "Free space on the data directory's disk; nothing of this statement was kept. \
             Tally may need a restart before it accepts writes again."
                .into(),
        );
    }
    info
}

/// DataFusion reports planning and execution problems as one kind; recognize the common ones
/// by their message so the client sees a precise SQLSTATE.
fn refine_query_error(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("no field named") || m.contains("schema error: no field") {
        state::UNDEFINED_COLUMN
    } else if m.contains("table '") && m.contains("not found") {
        "42P01"
    } else if m.contains("invalid function") || m.contains("no function matches") {
        "42883"
    } else if m.contains("divide by zero") || m.contains("division by zero") {
        "22012"
    } else if m.contains("overflow") || m.contains("out of range") {
        state::OUT_OF_RANGE
    } else if m.contains("cannot cast") || m.contains("cast error") || m.contains("parse") {
        state::INVALID_TEXT
    } else if m.contains("not implemented") || m.contains("unsupported") {
        state::NOT_SUPPORTED
    } else if m.contains("sql error: parsererror") {
        state::SYNTAX
    } else if m.contains("error during planning") {
        "42000"
    } else {
        state::INTERNAL
    }
}

/// Drops DataFusion's backtrace noise from a message.
fn clean(message: &str) -> String {
    message
        .split("\n\nbacktrace")
        .next()
        .unwrap_or(message)
        .trim()
        .to_string()
}

/// A server-raised error with a SQLSTATE.
pub fn user_error(code: &str, message: impl Into<String>) -> ErrorInfo {
    ErrorInfo::new(SEVERITY_ERROR.into(), code.into(), message.into())
}

/// Wraps an ErrorResponse as a pgwire error.
pub fn into_pgwire(info: ErrorInfo) -> PgWireError {
    PgWireError::UserError(Box::new(info))
}

/// An engine error as a pgwire error.
pub fn engine(err: &Error) -> PgWireError {
    into_pgwire(engine_error(err))
}

/// A server-raised error as a pgwire error.
pub fn pg(code: &str, message: impl Into<String>) -> PgWireError {
    into_pgwire(user_error(code, message))
}
