//! Splitting a query string into statements and deciding who answers each one: the session
//! (SET/SHOW/RESET, transaction control), COPY, or the engine.

use tally_engine::reexports::datafusion::sql::sqlparser::ast::{
    self, CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Expr,
    SelectItem, Value, VisitMut, VisitorMut,
};
use tally_engine::reexports::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use tally_engine::reexports::datafusion::sql::sqlparser::parser::Parser;
use tally_engine::reexports::datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use super::catalog;
use super::errors::{self, state};
use pgwire::error::PgWireResult;

/// One statement and how it is answered.
#[derive(Debug, Clone)]
pub enum Statement {
    /// SQL for the engine.
    Engine(String),
    /// `SET name = value` (`None` = `RESET`/`DEFAULT`).
    Set { name: String, value: Option<String> },
    /// `RESET ALL`.
    ResetAll,
    /// `SHOW name` or `SHOW ALL`.
    Show(String),
    /// `BEGIN` / `START TRANSACTION`, with the tag to answer.
    Begin(&'static str),
    /// `COMMIT` / `END`.
    Commit,
    /// `ROLLBACK` / `ABORT`.
    Rollback,
    /// `SAVEPOINT name`.
    Savepoint(String),
    /// `RELEASE [SAVEPOINT] name`.
    Release(String),
    /// `ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name`.
    RollbackTo(String),
    /// `COPY … FROM STDIN`.
    CopyIn(CopyIn),
    /// `COPY … TO STDOUT`.
    CopyOut(CopyOut),
    /// `COPY table FROM '/path/file.parquet' (FORMAT parquet)`: the table and the path as given.
    CopyFromParquet {
        /// Table name (folded).
        table: String,
        /// The file, as written in the statement.
        path: String,
    },
    /// `COPY table|(query) TO '/path/file.parquet' (FORMAT parquet)`.
    CopyToParquet {
        /// The query that produces the rows.
        query: String,
        /// The file, as written in the statement.
        path: String,
    },
    /// A statement the server accepts and ignores (`DISCARD ALL`, `DEALLOCATE`, …), with its tag.
    Noop(&'static str),
    /// `CREATE INDEX` (checked against the table, then a no-op: Tally keeps no secondary
    /// indexes) or `DROP INDEX` (`table` is `None`).
    Index {
        /// Command tag.
        tag: &'static str,
        /// The indexed table (folded).
        table: Option<String>,
        /// The indexed columns (folded; expressions are not checked).
        columns: Vec<String>,
    },
}

/// Text or csv, with their options.
#[derive(Debug, Clone)]
pub struct CopyFormat {
    /// CSV (else text, unless `binary`).
    pub csv: bool,
    /// PostgreSQL's binary COPY format; the other options do not apply.
    pub binary: bool,
    /// Field delimiter.
    pub delimiter: u8,
    /// The string that means NULL.
    pub null: String,
    /// First line is a header.
    pub header: bool,
    /// CSV quote.
    pub quote: u8,
    /// CSV escape.
    pub escape: u8,
}

impl CopyFormat {
    /// The format code of CopyInResponse and CopyOutResponse: 1 for binary, 0 for text/csv.
    pub fn wire_code(&self) -> i8 {
        i8::from(self.binary)
    }
}

/// `COPY table [(columns)] FROM STDIN`.
#[derive(Debug, Clone)]
pub struct CopyIn {
    /// Table name (folded).
    pub table: String,
    /// Column list (folded); empty = all.
    pub columns: Vec<String>,
    /// Format.
    pub format: CopyFormat,
}

/// `COPY table|(query) TO STDOUT`.
#[derive(Debug, Clone)]
pub struct CopyOut {
    /// The query that produces the rows.
    pub query: String,
    /// Format.
    pub format: CopyFormat,
}

/// Splits SQL text at top-level semicolons (string literals and comments respected).
pub fn split(sql: &str) -> PgWireResult<Vec<String>> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| errors::pg(state::SYNTAX, format!("syntax error: {e}")))?;
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let offset = |line: u64, column: u64| -> usize {
        let start = line_starts
            .get((line as usize).saturating_sub(1))
            .copied()
            .unwrap_or(sql.len());
        sql[start..]
            .char_indices()
            .nth((column as usize).saturating_sub(1))
            .map(|(i, _)| start + i)
            .unwrap_or(sql.len())
    };
    let mut pieces = Vec::new();
    let mut begin = 0;
    for token in &tokens {
        if token.token == Token::SemiColon {
            let at = offset(token.span.start.line, token.span.start.column);
            pieces.push(sql[begin..at].to_string());
            begin = (at + 1).min(sql.len());
            // COPY … FROM STDIN takes the rest of the string as its data (none here).
            let last = pieces.last().map(|p| p.trim_start().to_ascii_lowercase());
            if last.is_some_and(|p| p.starts_with("copy") && p.contains("stdin")) {
                begin = sql.len();
                break;
            }
        }
    }
    pieces.push(sql[begin..].to_string());
    Ok(pieces.into_iter().filter(|p| !is_blank(p)).collect())
}

/// The highest `$n` placeholder in `sql` (0 if none).
pub fn placeholders(sql: &str) -> usize {
    let dialect = PostgreSqlDialect {};
    Tokenizer::new(&dialect, sql)
        .tokenize()
        .map(|tokens| {
            tokens
                .iter()
                .filter_map(|t| match t {
                    Token::Placeholder(p) => p.strip_prefix('$')?.parse::<usize>().ok(),
                    _ => None,
                })
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Whitespace and comments only.
fn is_blank(sql: &str) -> bool {
    let dialect = PostgreSqlDialect {};
    match Tokenizer::new(&dialect, sql).tokenize() {
        Ok(tokens) => tokens.iter().all(|t| matches!(t, Token::Whitespace(_))),
        Err(_) => sql.trim().is_empty(),
    }
}

/// Lower-cased words of a statement (for recognizing session commands).
fn words(sql: &str) -> Vec<String> {
    sql.split(|c: char| c.is_whitespace() || c == ';')
        .filter(|w| !w.is_empty())
        .map(|w| w.to_ascii_lowercase())
        .collect()
}

/// Classifies one statement.
pub fn classify(sql: &str) -> PgWireResult<Statement> {
    let w = words(sql);
    let first = w.first().map(String::as_str).unwrap_or("");
    let second = w.get(1).map(String::as_str).unwrap_or("");
    Ok(match first {
        "begin" => Statement::Begin("BEGIN"),
        "start" => Statement::Begin("START TRANSACTION"),
        "commit" | "end" => Statement::Commit,
        "rollback" | "abort" if w.iter().any(|w| w == "to") => {
            Statement::RollbackTo(savepoint_name(sql, "to")?)
        }
        "rollback" | "abort" => Statement::Rollback,
        "savepoint" => Statement::Savepoint(savepoint_name(sql, "savepoint")?),
        "release" => Statement::Release(savepoint_name(sql, "release")?),
        // Every transaction reads the latest committed data: isolation and access modes are
        // accepted and change nothing (see docs/server.md).
        "set"
            if second == "transaction"
                || second == "session" && w.get(2).is_some_and(|w| w == "characteristics") =>
        {
            Statement::Noop("SET")
        }
        "set" => parse_set(sql)?,
        "reset" if second == "all" => Statement::ResetAll,
        "reset" => Statement::Set {
            name: canonical(second),
            value: None,
        },
        "show" if second == "transaction" => Statement::Show("transaction_isolation".into()),
        "show" if second == "time" => Statement::Show("timezone".into()),
        "show" => Statement::Show(canonical(second.trim_matches('"'))),
        "discard" => Statement::Noop("DISCARD ALL"),
        "deallocate" => Statement::Noop("DEALLOCATE"),
        "copy" => parse_copy(sql)?,
        "create"
            if second == "index"
                || (second == "unique" && w.get(2).is_some_and(|w| w == "index")) =>
        {
            parse_create_index(sql)?
        }
        "drop" if second == "index" => Statement::Index {
            tag: "DROP INDEX",
            table: None,
            columns: vec![],
        },
        _ => Statement::Engine(rewrite_functions(sql)),
    })
}

/// The savepoint named after the keyword `after` (and an optional `SAVEPOINT`), folded like an
/// identifier: `ROLLBACK TO SAVEPOINT "S1"` → `S1`, `release sp` → `sp`.
fn savepoint_name(sql: &str, after: &str) -> PgWireResult<String> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize()
        .map_err(|e| errors::pg(state::SYNTAX, format!("syntax error: {e}")))?;
    let mut words = tokens.iter().filter_map(|t| match t {
        Token::Word(w) => Some(w),
        _ => None,
    });
    let missing = || {
        errors::pg(
            state::SYNTAX,
            format!(
                "syntax error: a savepoint name is missing in \"{}\"",
                sql.trim()
            ),
        )
    };
    words
        .by_ref()
        .find(|w| w.value.eq_ignore_ascii_case(after))
        .ok_or_else(missing)?;
    let mut name = words.next().ok_or_else(missing)?;
    if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("savepoint") {
        name = words.next().ok_or_else(missing)?;
    }
    Ok(match name.quote_style {
        Some(_) => name.value.clone(),
        None => name.value.to_lowercase(),
    })
}

/// The canonical (lower-case) name of a setting.
pub fn canonical(name: &str) -> String {
    name.trim_matches('"').to_ascii_lowercase()
}

fn parse_set(sql: &str) -> PgWireResult<Statement> {
    let bad = || {
        errors::pg(
            state::SYNTAX,
            format!("syntax error in SET: {}", sql.trim()),
        )
    };
    let rest = sql.trim().trim_end_matches(';').trim();
    let rest = rest.get(3..).ok_or_else(bad)?.trim_start();
    let lower = rest.to_ascii_lowercase();
    let rest = if lower.starts_with("session ") && !lower.starts_with("session authorization") {
        rest[8..].trim_start()
    } else if lower.starts_with("local ") {
        rest[6..].trim_start()
    } else {
        rest
    };
    let lower = rest.to_ascii_lowercase();
    if let Some(value) = lower.strip_prefix("time zone") {
        let value = rest[rest.len() - value.len()..].trim();
        return Ok(Statement::Set {
            name: "timezone".into(),
            value: setting_value(value),
        });
    }
    if lower.starts_with("names ") {
        return Ok(Statement::Set {
            name: "client_encoding".into(),
            value: setting_value(rest[6..].trim()),
        });
    }
    if lower.starts_with("session authorization") || lower.starts_with("role") {
        return Ok(Statement::Noop("SET"));
    }
    let split_at = rest
        .find(|c: char| c == '=' || c.is_whitespace())
        .ok_or_else(bad)?;
    let name = canonical(&rest[..split_at]);
    let mut value = rest[split_at..].trim_start();
    if let Some(v) = value.strip_prefix('=') {
        value = v.trim_start();
    } else if let Some(rest) = value
        .get(..2)
        .filter(|p| p.eq_ignore_ascii_case("to"))
        .and_then(|_| value.get(2..))
    {
        value = rest.trim_start();
    } else {
        return Err(bad());
    }
    if name.is_empty() || value.is_empty() {
        return Err(bad());
    }
    Ok(Statement::Set {
        name,
        value: setting_value(value),
    })
}

/// A SET value: quotes removed, lists kept as written; `DEFAULT`/`LOCAL` mean reset.
fn setting_value(value: &str) -> Option<String> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("default") || value.eq_ignore_ascii_case("local") {
        return None;
    }
    let parts: Vec<String> = value
        .split(',')
        .map(|p| {
            let p = p.trim();
            if p.len() >= 2 && p.starts_with('\'') && p.ends_with('\'') {
                p[1..p.len() - 1].replace("''", "'")
            } else {
                p.trim_matches('"').to_string()
            }
        })
        .collect();
    Some(parts.join(", "))
}

fn parse_copy(sql: &str) -> PgWireResult<Statement> {
    let dialect = PostgreSqlDialect {};
    let statement = Parser::new(&dialect)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statement())
        .map_err(|e| errors::pg(state::SYNTAX, format!("syntax error in COPY: {e}")))?;
    let ast::Statement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        ..
    } = statement
    else {
        return Err(errors::pg(state::SYNTAX, "syntax error in COPY"));
    };
    let parquet = options
        .iter()
        .any(|o| matches!(o, CopyOption::Format(f) if f.value.eq_ignore_ascii_case("parquet")));
    if parquet {
        return parquet_copy(source, to, target, &options, &legacy_options);
    }
    let format = copy_format(&options, &legacy_options)?;
    match (to, target) {
        (false, CopyTarget::Stdin) => match source {
            CopySource::Table {
                table_name,
                columns,
            } => Ok(Statement::CopyIn(CopyIn {
                table: object_name(&table_name),
                columns: columns.iter().map(ident).collect(),
                format,
            })),
            CopySource::Query(_) => {
                Err(errors::pg(state::SYNTAX, "COPY (query) FROM is not valid"))
            }
        },
        (true, CopyTarget::Stdout) => Ok(Statement::CopyOut(CopyOut {
            query: copy_query(source),
            format,
        })),
        _ => Err(errors::pg(
            state::NOT_SUPPORTED,
            "COPY to or from a server file takes FORMAT parquet only, and programs are not supported; \
             for text, csv and binary use COPY … FROM STDIN or TO STDOUT (psql: \\copy)",
        )),
    }
}

/// The query a `COPY … TO` reads: the table's columns, or the query as written.
fn copy_query(source: CopySource) -> String {
    match source {
        CopySource::Table {
            table_name,
            columns,
        } => {
            let list = if columns.is_empty() {
                "*".to_string()
            } else {
                columns
                    .iter()
                    .map(|c| format!("\"{}\"", ident(c).replace('"', "\"\"")))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!("SELECT {list} FROM {table_name}")
        }
        CopySource::Query(query) => rewrite_functions(&query.to_string()),
    }
}

/// `COPY … FROM|TO '/path' (FORMAT parquet)`: a server file, no other option, and (for FROM)
/// no column list: the file's columns are matched to the table's by name.
fn parquet_copy(
    source: CopySource,
    to: bool,
    target: CopyTarget,
    options: &[CopyOption],
    legacy: &[CopyLegacyOption],
) -> PgWireResult<Statement> {
    let CopyTarget::File { filename: path } = target else {
        return Err(errors::pg(
            state::NOT_SUPPORTED,
            "FORMAT parquet reads and writes server files: COPY t FROM '/path/file.parquet' (FORMAT parquet)",
        ));
    };
    if let Some(other) = options.iter().find(|o| !matches!(o, CopyOption::Format(_))) {
        return Err(errors::pg(
            state::SYNTAX,
            format!("COPY option {other} cannot be used with FORMAT parquet"),
        ));
    }
    if !legacy.is_empty() {
        return Err(errors::pg(
            state::SYNTAX,
            "COPY options cannot be used with FORMAT parquet",
        ));
    }
    if to {
        return Ok(Statement::CopyToParquet {
            query: copy_query(source),
            path,
        });
    }
    match source {
        CopySource::Table {
            table_name,
            columns,
        } if columns.is_empty() => Ok(Statement::CopyFromParquet {
            table: object_name(&table_name),
            path,
        }),
        CopySource::Table { .. } => Err(errors::pg(
            state::NOT_SUPPORTED,
            "COPY … FROM a parquet file takes no column list: columns are matched by name",
        )),
        CopySource::Query(_) => Err(errors::pg(state::SYNTAX, "COPY (query) FROM is not valid")),
    }
}

fn parse_create_index(sql: &str) -> PgWireResult<Statement> {
    let statement = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statement())
        .map_err(|e| errors::pg(state::SYNTAX, format!("syntax error in CREATE INDEX: {e}")))?;
    let ast::Statement::CreateIndex(index) = statement else {
        return Err(errors::pg(state::SYNTAX, "syntax error in CREATE INDEX"));
    };
    let columns = index
        .columns
        .iter()
        .filter_map(|c| match &c.column.expr {
            Expr::Identifier(i) => Some(ident(i)),
            _ => None,
        })
        .collect();
    Ok(Statement::Index {
        tag: "CREATE INDEX",
        table: Some(object_name(&index.table_name)),
        columns,
    })
}

fn ident(i: &ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

fn object_name(name: &ast::ObjectName) -> String {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(ident)
        .unwrap_or_default()
}

fn copy_format(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> PgWireResult<CopyFormat> {
    let mut csv = false;
    let mut binary = false;
    // Options that have no meaning in binary mode, by name, as given.
    let mut textual: Vec<&str> = Vec::new();
    let mut delimiter = None;
    let mut null = None;
    let mut header = false;
    let mut quote = b'"';
    let mut escape = None;
    let byte = |c: char, what: &str| -> PgWireResult<u8> {
        if c.is_ascii() {
            Ok(c as u8)
        } else {
            Err(errors::pg(
                state::NOT_SUPPORTED,
                format!("COPY {what} must be a single one-byte character"),
            ))
        }
    };
    for option in options {
        match option {
            CopyOption::Format(f) => match f.value.to_ascii_lowercase().as_str() {
                "csv" => (csv, binary) = (true, false),
                "text" => (csv, binary) = (false, false),
                "binary" => (csv, binary) = (false, true),
                other => {
                    return Err(errors::pg(
                        state::INVALID_PARAMETER,
                        format!("COPY format \"{other}\" not recognized"),
                    ));
                }
            },
            CopyOption::Delimiter(c) => {
                textual.push("DELIMITER");
                delimiter = Some(byte(*c, "delimiter")?)
            }
            CopyOption::Null(s) => {
                textual.push("NULL");
                null = Some(s.clone())
            }
            CopyOption::Header(h) => {
                textual.push("HEADER");
                header = *h
            }
            CopyOption::Quote(c) => {
                textual.push("QUOTE");
                quote = byte(*c, "quote")?
            }
            CopyOption::Escape(c) => {
                textual.push("ESCAPE");
                escape = Some(byte(*c, "escape")?)
            }
            CopyOption::Encoding(e) => {
                let e = e.to_ascii_lowercase().replace(['-', '_'], "");
                if e != "utf8" && e != "unicode" {
                    return Err(errors::pg(
                        state::NOT_SUPPORTED,
                        format!("COPY ENCODING {e}: only UTF8 is supported"),
                    ));
                }
            }
            CopyOption::Freeze(_) => {}
            other => {
                return Err(errors::pg(
                    state::NOT_SUPPORTED,
                    format!("COPY option {other} is not supported"),
                ));
            }
        }
    }
    for option in legacy {
        match option {
            CopyLegacyOption::Csv(csv_options) => {
                csv = true;
                for o in csv_options {
                    match o {
                        CopyLegacyCsvOption::Header => header = true,
                        CopyLegacyCsvOption::Quote(c) => quote = byte(*c, "quote")?,
                        CopyLegacyCsvOption::Escape(c) => escape = Some(byte(*c, "escape")?),
                        other => {
                            return Err(errors::pg(
                                state::NOT_SUPPORTED,
                                format!("COPY option {other} is not supported"),
                            ));
                        }
                    }
                }
            }
            CopyLegacyOption::Delimiter(c) => {
                textual.push("DELIMITER");
                delimiter = Some(byte(*c, "delimiter")?)
            }
            CopyLegacyOption::Null(s) => {
                textual.push("NULL");
                null = Some(s.clone())
            }
            CopyLegacyOption::Header => {
                textual.push("HEADER");
                header = true
            }
            CopyLegacyOption::Binary => binary = true,
            other => {
                return Err(errors::pg(
                    state::NOT_SUPPORTED,
                    format!("COPY option {other} is not supported"),
                ));
            }
        }
    }
    if binary {
        if let Some(option) = textual.first() {
            return Err(errors::pg(
                state::SYNTAX,
                format!("cannot specify {option} in BINARY mode"),
            ));
        }
        if csv {
            return Err(errors::pg(
                state::SYNTAX,
                "cannot specify CSV in BINARY mode",
            ));
        }
    }
    if header && !csv {
        return Err(errors::pg(
            state::NOT_SUPPORTED,
            "COPY HEADER is available only in CSV mode",
        ));
    }
    let delimiter = delimiter.unwrap_or(if csv { b',' } else { b'\t' });
    if delimiter == b'\n' || delimiter == b'\r' || (!csv && delimiter == b'\\') {
        return Err(errors::pg(
            state::INVALID_PARAMETER,
            "COPY delimiter cannot be newline, carriage return or backslash",
        ));
    }
    let null = null.unwrap_or_else(|| if csv { String::new() } else { "\\N".into() });
    check_unambiguous(csv, delimiter, &null, quote)?;
    Ok(CopyFormat {
        csv,
        binary,
        delimiter,
        null,
        header,
        quote,
        escape: escape.unwrap_or(quote),
    })
}

/// PostgreSQL's checks that COPY output reads back as written: in text, a delimiter written
/// after a backslash must not read as an escape (`\x41`, `\101`, `\.`); in csv, the delimiter
/// must not be the quote; a NULL string must not hold a line end, the delimiter or the quote.
fn check_unambiguous(csv: bool, delimiter: u8, null: &str, quote: u8) -> PgWireResult<()> {
    if !csv && b".abcdefghijklmnopqrstuvwxyz0123456789".contains(&delimiter) {
        return Err(errors::pg(
            state::INVALID_PARAMETER,
            format!("COPY delimiter cannot be \"{}\"", char::from(delimiter)),
        ));
    }
    if csv && delimiter == quote {
        return Err(errors::pg(
            state::INVALID_PARAMETER,
            "COPY delimiter and quote must be different",
        ));
    }
    if null.contains(['\n', '\r']) {
        return Err(errors::pg(
            state::INVALID_PARAMETER,
            "COPY null representation cannot use newline or carriage return",
        ));
    }
    if null.as_bytes().contains(&delimiter) {
        return Err(errors::pg(
            state::NOT_SUPPORTED,
            "COPY delimiter must not appear in the NULL specification",
        ));
    }
    if csv && null.as_bytes().contains(&quote) {
        return Err(errors::pg(
            state::NOT_SUPPORTED,
            "CSV quote character must not appear in the NULL specification",
        ));
    }
    Ok(())
}

/// Session information functions DataFusion lacks, answered by the server.
const SESSION_FUNCTIONS: [&str; 7] = [
    "user",
    "version",
    "current_database",
    "current_schema",
    "current_user",
    "session_user",
    "current_catalog",
];

/// Replaces `version()`, `current_database()`, `current_schema()` and `current_user` with
/// literals (keeping the column names Postgres gives them). Leaves the SQL untouched when it
/// does not mention them or cannot be parsed (the engine then reports the error).
///
/// Catalog queries are rewritten too, in the same pass: see [`catalog::rewrite`].
pub fn rewrite_functions(sql: &str) -> String {
    let lower = sql.to_ascii_lowercase();
    let session = SESSION_FUNCTIONS.iter().any(|f| mentions_word(&lower, f));
    let catalog = catalog::rewrite::might_apply(sql);
    if !session && !catalog {
        return sql.to_string();
    }
    let dialect = PostgreSqlDialect {};
    let Ok(mut statements) = Parser::parse_sql(&dialect, sql) else {
        return sql.to_string();
    };
    if statements.len() != 1 {
        return sql.to_string();
    }
    let mut statement = statements.remove(0);
    if catalog {
        catalog::rewrite::rewrite(&mut statement);
    }
    if !session {
        return statement.to_string();
    }
    // Name the output columns as Postgres does before the calls become literals.
    if let ast::Statement::Query(query) = &mut statement
        && let ast::SetExpr::Select(select) = query.body.as_mut()
    {
        for item in select.projection.iter_mut() {
            if let SelectItem::UnnamedExpr(expr) = item
                && let Some(name) = session_function(expr)
            {
                *item = SelectItem::ExprWithAlias {
                    expr: expr.clone(),
                    alias: ast::Ident::with_quote('"', name),
                };
            }
        }
    }
    struct Rewriter;
    impl VisitorMut for Rewriter {
        type Break = ();
        fn post_visit_expr(&mut self, expr: &mut Expr) -> std::ops::ControlFlow<()> {
            if let Some(name) = session_function(expr) {
                *expr = Expr::value(Value::SingleQuotedString(session_value(name)));
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Rewriter);
    statement.to_string()
}

/// Whether `word` occurs in `text` as a whole word (`user`, not `user_id`).
fn mentions_word(text: &str, word: &str) -> bool {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

fn session_function(expr: &Expr) -> Option<&'static str> {
    let name = match expr {
        Expr::Function(f) => f.name.0.last()?.as_ident()?.value.to_ascii_lowercase(),
        Expr::Identifier(i) if i.quote_style.is_none() => i.value.to_ascii_lowercase(),
        _ => return None,
    };
    let known = SESSION_FUNCTIONS.iter().find(|f| **f == name)?;
    // `version` etc. as bare identifiers could be column names; only the SQL-standard
    // keywords are valid without parentheses.
    if matches!(expr, Expr::Identifier(_))
        && !matches!(
            *known,
            "user" | "current_user" | "session_user" | "current_catalog" | "current_schema"
        )
    {
        return None;
    }
    Some(known)
}

fn session_value(name: &str) -> String {
    match name {
        "version" => format!(
            "PostgreSQL {} (Tally {}) on x86_64-pc-linux-gnu, compiled by rustc, 64-bit",
            super::SERVER_VERSION,
            env!("CARGO_PKG_VERSION")
        ),
        "current_database" | "current_catalog" => "tally".into(),
        "current_schema" => "public".into(),
        _ => "tally".into(),
    }
}

#[cfg(test)]
mod copy_statements {
    use super::*;

    #[test]
    fn binary_and_parquet_copies_parse_with_postgres_spellings() {
        for sql in [
            "COPY t FROM STDIN (FORMAT binary)",
            "COPY t FROM STDIN BINARY",
        ] {
            match classify(sql).unwrap() {
                Statement::CopyIn(copy) => assert!(copy.format.binary, "{sql}"),
                _ => panic!("{sql}: not a COPY FROM STDIN"),
            }
        }
        match classify("COPY (SELECT 1) TO STDOUT WITH (FORMAT binary)").unwrap() {
            Statement::CopyOut(copy) => assert_eq!(copy.format.wire_code(), 1),
            _ => panic!("not a COPY TO STDOUT"),
        }
        match classify("COPY t FROM 'dir/f.parquet' (FORMAT parquet)").unwrap() {
            Statement::CopyFromParquet { table, path } => {
                assert_eq!((table.as_str(), path.as_str()), ("t", "dir/f.parquet"))
            }
            _ => panic!("not a parquet COPY"),
        }
        let code = |sql: &str| match classify(sql) {
            Err(pgwire::error::PgWireError::UserError(info)) => info.code.clone(),
            other => panic!("{sql}: {:?}", other.map(|_| ())),
        };
        assert_eq!(code("COPY t FROM STDIN (FORMAT binary, NULL 'x')"), "42601");
        assert_eq!(
            code("COPY t FROM STDIN WITH (FORMAT binary, HEADER)"),
            "42601"
        );
        assert_eq!(code("COPY t TO '/tmp/x.csv' (FORMAT csv)"), "0A000");
    }

    /// Found by fuzzing (fuzz/fuzz_targets/copy_text.rs and copy_csv.rs): these options made
    /// COPY TO output that COPY FROM with the same options read as other rows, or refused.
    /// They are refused as PostgreSQL refuses them.
    #[test]
    fn options_whose_output_would_not_read_back_are_refused() {
        let code = |sql: &str| match classify(sql) {
            Err(pgwire::error::PgWireError::UserError(info)) => info.code.clone(),
            other => panic!("{sql}: {:?}", other.map(|_| ())),
        };
        // DELIMITER 'x' wrote the bytea text `\x2d…` as `\\\x2d…`, read back as `\` and 0x2d.
        for delimiter in ["x", "0", "7", "n", ".", "a"] {
            let sql = format!("COPY t FROM STDIN (DELIMITER '{delimiter}')");
            assert_eq!(code(&sql), "22023", "{sql}");
        }
        assert_eq!(
            code("COPY t TO STDOUT (FORMAT csv, DELIMITER '|', QUOTE '|')"),
            "22023"
        );
        assert_eq!(
            code("COPY t FROM STDIN (FORMAT csv, DELIMITER '\"')"),
            "22023"
        );
        assert_eq!(code("COPY t FROM STDIN (NULL 'a\nb')"), "22023");
        assert_eq!(code("COPY t FROM STDIN (FORMAT csv, NULL 'a,b')"), "0A000");
        assert_eq!(code("COPY t FROM STDIN (DELIMITER '|', NULL '|')"), "0A000");
        assert_eq!(code("COPY t FROM STDIN (FORMAT csv, NULL '\"')"), "0A000");
        // Still accepted: the usual spellings, and letters as csv delimiters.
        for sql in [
            "COPY t FROM STDIN",
            "COPY t FROM STDIN (FORMAT csv, HEADER, DELIMITER ';', NULL 'NULL')",
            "COPY t FROM STDIN (DELIMITER '|', NULL '')",
            "COPY t FROM STDIN (FORMAT csv, DELIMITER 'x', QUOTE '''')",
            "COPY t TO STDOUT (FORMAT binary)",
        ] {
            assert!(classify(sql).is_ok(), "{sql}");
        }
    }
}
