//! COPY statements: `COPY … FROM STDIN`, `COPY … TO STDOUT` and the Parquet forms, their
//! options (PostgreSQL's spellings and refusals) and Tally's own `batch_id` option.

use tally_engine::reexports::datafusion::sql::sqlparser::ast::{
    self, CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget,
};
use tally_engine::reexports::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use tally_engine::reexports::datafusion::sql::sqlparser::parser::Parser;
use tally_engine::reexports::datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use super::{Statement, byte_offsets, ident, object_name, rewrite_functions};
use crate::pg::errors::{self, state};
use pgwire::error::PgWireResult;

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
    /// `batch_id '…'`: the id that makes a retry of this COPY write nothing twice.
    pub batch_id: Option<String>,
}

/// `COPY table|(query) TO STDOUT`.
#[derive(Debug, Clone)]
pub struct CopyOut {
    /// The query that produces the rows.
    pub query: String,
    /// Format.
    pub format: CopyFormat,
}

/// Parses any COPY statement.
pub(super) fn parse_copy(sql: &str) -> PgWireResult<Statement> {
    let dialect = PostgreSqlDialect {};
    let (sql, batch_id) = take_batch_id(sql)?;
    let statement = Parser::new(&dialect)
        .try_with_sql(&sql)
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
    if batch_id.is_some() && (to || parquet) {
        return Err(errors::pg(
            state::NOT_SUPPORTED,
            "COPY option batch_id applies to COPY … FROM STDIN only",
        ));
    }
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
                batch_id,
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

/// Takes Tally's `batch_id '…'` out of a COPY's option list (sqlparser knows only
/// PostgreSQL's options): returns the statement without it (an option list left empty goes too,
/// with its `WITH`) and the id. The option is spelled like PostgreSQL's own:
/// `COPY t FROM STDIN (FORMAT csv, batch_id 'load-42')`.
fn take_batch_id(sql: &str) -> PgWireResult<(String, Option<String>)> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| errors::pg(state::SYNTAX, format!("syntax error in COPY: {e}")))?;
    let offset = byte_offsets(sql);
    // Significant tokens with their byte ranges.
    let significant: Vec<(&Token, usize, usize)> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .map(|t| {
            let start = offset(t.span.start.line, t.span.start.column);
            let end = offset(t.span.end.line, t.span.end.column);
            (&t.token, start, end)
        })
        .collect();
    let is_option = |i: usize| {
        matches!(significant[i].0, Token::Word(w) if w.value.eq_ignore_ascii_case("batch_id"))
            && i > 0
            && matches!(significant[i - 1].0, Token::LParen | Token::Comma)
    };
    let Some(at) = (0..significant.len()).find(|&i| is_option(i)) else {
        return Ok((sql.to_string(), None));
    };
    let id = match significant.get(at + 1).map(|t| t.0) {
        Some(Token::SingleQuotedString(id)) => id.clone(),
        _ => {
            return Err(errors::pg(
                state::SYNTAX,
                "COPY option batch_id takes a string: batch_id 'your-id'",
            ));
        }
    };
    if id.is_empty() || id.len() > tally_engine::MAX_BATCH_ID_BYTES {
        return Err(errors::pg(
            state::INVALID_PARAMETER,
            format!(
                "COPY option batch_id must be 1 to {} bytes long",
                tally_engine::MAX_BATCH_ID_BYTES
            ),
        ));
    }
    if (at + 2..significant.len()).any(is_option) {
        return Err(errors::pg(
            state::SYNTAX,
            "conflicting or redundant options: batch_id given twice",
        ));
    }
    // Cut the option and one comma next to it; or, if it is alone, its whole `WITH ( … )`.
    let (mut from, mut to) = (significant[at].1, significant[at + 1].2);
    match (significant[at - 1].0, significant.get(at + 2).map(|t| t.0)) {
        (_, Some(Token::Comma)) => to = significant[at + 2].2,
        (Token::Comma, _) => from = significant[at - 1].1,
        (Token::LParen, Some(Token::RParen)) => {
            from = significant[at - 1].1;
            to = significant[at + 2].2;
            if at >= 2
                && matches!(significant[at - 2].0, Token::Word(w) if w.value.eq_ignore_ascii_case("with"))
            {
                from = significant[at - 2].1;
            }
        }
        _ => {}
    }
    Ok((format!("{}{}", &sql[..from], &sql[to..]), Some(id)))
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

#[cfg(test)]
mod copy_statements {
    use super::*;
    use crate::pg::statement::classify;

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

    #[test]
    fn batch_ids_are_taken_out_of_the_option_list() {
        let copy_in = |sql: &str| match classify(sql) {
            Ok(Statement::CopyIn(copy)) => copy,
            other => panic!("{sql}: {:?}", other.map(|_| ())),
        };
        let copy = copy_in("COPY t FROM STDIN (FORMAT csv, batch_id 'load-1', HEADER)");
        assert_eq!(copy.batch_id.as_deref(), Some("load-1"));
        assert!(copy.format.csv && copy.format.header);
        let copy = copy_in("copy t (a, b) from stdin with (BATCH_ID 'it''s', delimiter '|')");
        assert_eq!(copy.batch_id.as_deref(), Some("it's"));
        assert_eq!(copy.columns, ["a", "b"]);
        assert_eq!(copy.format.delimiter, b'|');
        let copy = copy_in("COPY t FROM STDIN WITH (batch_id 'x')");
        assert_eq!(copy.batch_id.as_deref(), Some("x"));
        assert!(!copy.format.csv);
        let copy = copy_in("COPY t FROM STDIN (FORMAT csv, batch_id 'é')");
        assert_eq!(copy.batch_id.as_deref(), Some("é"));
        assert_eq!(copy_in("COPY batch_id FROM STDIN").batch_id, None);
        assert_eq!(copy_in("COPY batch_id FROM STDIN").table, "batch_id");

        let code = |sql: &str| match classify(sql) {
            Err(pgwire::error::PgWireError::UserError(info)) => info.code.clone(),
            other => panic!("{sql}: {:?}", other.map(|_| ())),
        };
        assert_eq!(code("COPY t FROM STDIN (batch_id 42)"), "42601");
        assert_eq!(code("COPY t FROM STDIN (batch_id)"), "42601");
        assert_eq!(
            code("COPY t FROM STDIN (batch_id 'a', batch_id 'b')"),
            "42601"
        );
        assert_eq!(code("COPY t TO STDOUT (batch_id 'a')"), "0A000");
        assert_eq!(code("COPY t FROM STDIN (batch_id '')"), "22023");
        let long = format!("COPY t FROM STDIN (batch_id '{}')", "x".repeat(257));
        assert_eq!(code(&long), "22023");
        assert_eq!(
            code("COPY t FROM '/tmp/x.parquet' (FORMAT parquet, batch_id 'a')"),
            "0A000"
        );
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
