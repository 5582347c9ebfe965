//! Splitting a query string into statements and deciding who answers each one: the session
//! (SET/SHOW/RESET, transaction control), COPY, or the engine.

use tally_engine::reexports::datafusion::sql::sqlparser::ast::{
    self, Expr, SelectItem, Value, VisitMut, VisitorMut,
};
use tally_engine::reexports::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use tally_engine::reexports::datafusion::sql::sqlparser::parser::Parser;
use tally_engine::reexports::datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

mod copy;
mod subscribe;

pub use copy::{CopyFormat, CopyIn, CopyOut};
pub use subscribe::Subscribe;

use tally_engine::depth;

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
    /// `SUBSCRIBE [TO] view [FROM seq]` or `COPY (SUBSCRIBE …) TO STDOUT`: the view's
    /// changefeed as a COPY OUT stream that ends only with the client, a cancel or an error.
    Subscribe(Subscribe),
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

/// SQL text split into statements.
#[derive(Debug, Clone, Default)]
pub struct Split {
    /// The statements, without their semicolons (blank ones left out).
    pub pieces: Vec<String>,
    /// How deep the deepest of them nests ([`depth::bound`]): handle them on a stack sized
    /// for it ([`depth::on_big_stack`]).
    pub depth: usize,
}

/// Splits SQL text at top-level semicolons (string literals and comments respected), and
/// refuses text that nests deeper than Tally runs (54001) before anything parses it.
pub fn split(sql: &str) -> PgWireResult<Split> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| errors::pg(state::SYNTAX, format!("syntax error: {e}")))?;
    let plain: Vec<Token> = tokens.iter().map(|t| t.token.clone()).collect();
    let depth = depth::check(&plain).map_err(|e| errors::engine(&e.into()))?;
    drop(plain);
    let offset = byte_offsets(sql);
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
    Ok(Split {
        pieces: pieces.into_iter().filter(|p| !is_blank(p)).collect(),
        depth,
    })
}

/// Converts the tokenizer's 1-based (line, column in characters) locations into byte offsets
/// of `sql`.
fn byte_offsets(sql: &str) -> impl Fn(u64, u64) -> usize + '_ {
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    move |line: u64, column: u64| -> usize {
        let start = line_starts
            .get((line as usize).saturating_sub(1))
            .copied()
            .unwrap_or(sql.len());
        sql[start..]
            .char_indices()
            .nth((column as usize).saturating_sub(1))
            .map(|(i, _)| start + i)
            .unwrap_or(sql.len())
    }
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
        "copy" => match subscribe::parse_copy_subscribe(sql)? {
            Some(statement) => statement,
            None => copy::parse_copy(sql)?,
        },
        "subscribe" => subscribe::parse_subscribe(sql)?,
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
