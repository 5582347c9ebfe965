//! `SUBSCRIBE [TO] view [FROM seq]` and `COPY (SUBSCRIBE …) TO STDOUT [(FORMAT text|csv, …)]`:
//! the view changefeed as a COPY OUT stream (see docs/server.md).

use tally_engine::reexports::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use tally_engine::reexports::datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use super::{CopyFormat, Statement, byte_offsets, copy};
use crate::pg::errors::{self, state};
use pgwire::error::PgWireResult;

/// A changefeed request.
#[derive(Debug, Clone)]
pub struct Subscribe {
    /// The materialized view (folded).
    pub view: String,
    /// Resume after this sequence (the last one the client applied).
    pub from: Option<u64>,
    /// The COPY format of the stream (text unless `COPY (SUBSCRIBE …) TO STDOUT (FORMAT csv)`).
    pub format: CopyFormat,
}

/// Significant tokens of `sql` with their byte ranges.
fn tokens(sql: &str) -> PgWireResult<Vec<(Token, usize, usize)>> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| errors::pg(state::SYNTAX, format!("syntax error: {e}")))?;
    let offset = byte_offsets(sql);
    Ok(tokens
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::SemiColon))
        .map(|t| {
            let start = offset(t.span.start.line, t.span.start.column);
            let end = offset(t.span.end.line, t.span.end.column);
            (t.token, start, end)
        })
        .collect())
}

fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

fn syntax(message: impl Into<String>) -> pgwire::error::PgWireError {
    errors::pg(state::SYNTAX, message)
}

const USAGE: &str = "SUBSCRIBE [TO] view [FROM sequence]";

/// Parses `SUBSCRIBE [TO] view [FROM seq]`, answered in the COPY text format.
pub(super) fn parse_subscribe(sql: &str) -> PgWireResult<Statement> {
    let format = match copy::parse_copy("COPY (SELECT 1) TO STDOUT")? {
        Statement::CopyOut(out) => out.format,
        _ => unreachable!("a COPY TO STDOUT parses as CopyOut"),
    };
    parse_with_format(sql, format).map(Statement::Subscribe)
}

fn parse_with_format(sql: &str, format: CopyFormat) -> PgWireResult<Subscribe> {
    let tokens = tokens(sql)?;
    let mut at = 0;
    let mut next = || {
        let token = tokens.get(at).map(|t| &t.0);
        at += 1;
        token
    };
    if !next().is_some_and(|t| is_word(t, "subscribe")) {
        return Err(syntax(format!("syntax error: expected {USAGE}")));
    }
    let mut token = next();
    if token.is_some_and(|t| is_word(t, "to")) {
        token = next();
    }
    // A name, possibly qualified by the schema `public` (and the catalog `tally`).
    let mut parts = Vec::new();
    loop {
        match token {
            Some(Token::Word(w)) => parts.push(match w.quote_style {
                Some(_) => w.value.clone(),
                None => w.value.to_lowercase(),
            }),
            _ => {
                return Err(syntax(format!(
                    "syntax error: SUBSCRIBE needs a materialized view name: {USAGE}"
                )));
            }
        }
        token = next();
        if matches!(token, Some(Token::Period)) {
            token = next();
        } else {
            break;
        }
    }
    let view = parts.pop().expect("at least one part");
    match parts.as_slice() {
        [] => {}
        [schema] | [_, schema] if schema == "public" => {}
        _ => {
            return Err(errors::pg(
                "3F000",
                format!(
                    "schema \"{}\" does not exist: Tally's views are in schema public",
                    parts.join(".")
                ),
            ));
        }
    }
    let mut from = None;
    if token.is_some_and(|t| is_word(t, "from")) {
        from = match next() {
            Some(Token::Number(n, _)) => Some(n.parse::<u64>().map_err(|_| {
                syntax(format!(
                    "syntax error: FROM takes a commit sequence (a non-negative integer), not {n}"
                ))
            })?),
            other => {
                return Err(syntax(format!(
                    "syntax error: FROM takes a commit sequence (a non-negative integer){}",
                    other.map(|t| format!(", not {t}")).unwrap_or_default()
                )));
            }
        };
        token = next();
    }
    if let Some(extra) = token {
        return Err(syntax(format!(
            "syntax error at or near \"{extra}\": expected {USAGE}"
        )));
    }
    Ok(Subscribe { view, from, format })
}

/// `COPY (SUBSCRIBE …) TO STDOUT [options]`, or `None` if `sql` is another COPY.
pub(super) fn parse_copy_subscribe(sql: &str) -> PgWireResult<Option<Statement>> {
    let tokens = tokens(sql)?;
    let starts = tokens.len() > 2
        && is_word(&tokens[0].0, "copy")
        && tokens[1].0 == Token::LParen
        && is_word(&tokens[2].0, "subscribe");
    if !starts {
        return Ok(None);
    }
    let mut depth = 0usize;
    let mut close = None;
    for (i, (token, _, _)) in tokens.iter().enumerate().skip(1) {
        match token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            _ => {}
        }
    }
    let close = close.ok_or_else(|| syntax("syntax error: unbalanced parentheses in COPY"))?;
    let inner = &sql[tokens[2].1..tokens[close].1];
    // The options are PostgreSQL's own: let the COPY parser read them around a stand-in query.
    let rest = format!("COPY (SELECT 1) {}", &sql[tokens[close].2..]);
    let format = match copy::parse_copy(&rest)? {
        Statement::CopyOut(out) => out.format,
        _ => {
            return Err(errors::pg(
                state::NOT_SUPPORTED,
                "COPY (SUBSCRIBE …) streams TO STDOUT only",
            ));
        }
    };
    if format.binary {
        return Err(errors::pg(
            state::NOT_SUPPORTED,
            "COPY (SUBSCRIBE …) streams in the text and csv formats only",
        ));
    }
    parse_with_format(inner, format)
        .map(Statement::Subscribe)
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::statement::classify;

    fn subscribe(sql: &str) -> Subscribe {
        match classify(sql) {
            Ok(Statement::Subscribe(s)) => s,
            other => panic!("{sql}: {other:?}"),
        }
    }

    fn code(sql: &str) -> String {
        match classify(sql) {
            Err(pgwire::error::PgWireError::UserError(e)) => e.code.clone(),
            other => panic!("{sql}: expected an error, got {other:?}"),
        }
    }

    #[test]
    fn subscribe_forms() {
        let s = subscribe("SUBSCRIBE TO Per_Page");
        assert_eq!((s.view.as_str(), s.from), ("per_page", None));
        assert!(!s.format.csv);
        let s = subscribe("subscribe public.\"Per Page\" FROM 42;");
        assert_eq!((s.view.as_str(), s.from), ("Per Page", Some(42)));
        let s = subscribe("COPY (SUBSCRIBE TO v FROM 7) TO STDOUT (FORMAT csv, HEADER)");
        assert_eq!((s.view.as_str(), s.from), ("v", Some(7)));
        assert!(s.format.csv && s.format.header);
        let s = subscribe("copy ( subscribe v ) to stdout");
        assert_eq!((s.view.as_str(), s.from), ("v", None));
    }

    #[test]
    fn subscribe_refusals() {
        assert_eq!(code("SUBSCRIBE"), state::SYNTAX);
        assert_eq!(code("SUBSCRIBE TO"), state::SYNTAX);
        assert_eq!(code("SUBSCRIBE TO v FROM"), state::SYNTAX);
        assert_eq!(code("SUBSCRIBE TO v FROM -1"), state::SYNTAX);
        assert_eq!(code("SUBSCRIBE TO v FROM 'x'"), state::SYNTAX);
        assert_eq!(code("SUBSCRIBE TO v WHERE x = 1"), state::SYNTAX);
        assert_eq!(code("SUBSCRIBE TO other.v"), "3F000");
        assert_eq!(code("COPY (SUBSCRIBE TO v TO STDOUT"), state::SYNTAX);
        assert_eq!(
            code("COPY (SUBSCRIBE TO v) TO STDOUT (FORMAT binary)"),
            state::NOT_SUPPORTED
        );
        assert_eq!(
            code("COPY (SUBSCRIBE TO v) TO '/tmp/x'"),
            state::NOT_SUPPORTED
        );
    }
}
