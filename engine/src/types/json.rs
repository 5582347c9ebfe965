//! JSON values: JSON and JSONB columns store the text they are given (Arrow `Utf8`), checked on
//! the way in to be exactly one JSON value (RFC 8259), so every stored value parses.
//!
//! The same scanner serves the accessors (`->`, `->>`, `#>>`, `json_extract_path_text`):
//! [`get`] finds one member or element of an object or array without building a tree, and
//! returns its text as written (numbers keep their spelling, as PostgreSQL's `json` does).

use std::borrow::Cow;

/// Nesting deeper than this is refused (PostgreSQL refuses it too, at its stack depth limit).
pub const MAX_DEPTH: usize = 1000;

/// PostgreSQL's message for text that is not JSON (the same for `json` and `jsonb`), with what
/// is wrong and where.
pub fn invalid_message(reason: &str) -> String {
    format!("invalid input syntax for type json: {reason}")
}

/// Checks that `text` is exactly one JSON value, with only whitespace around it; the error
/// says what is wrong and at which byte.
pub fn validate(text: &str) -> Result<(), String> {
    let mut scanner = Scanner::new(text);
    scanner.skip_ws();
    scanner.value(0)?;
    scanner.end()
}

/// One step into a JSON value: an object member by key, or an array element by position
/// (from the end when negative, as PostgreSQL's `->` counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// The member with this key (the last one, when the object repeats the key).
    Key(&'a str),
    /// The element at this zero-based index; `-1` is the last element.
    Index(i64),
}

/// The text of the value `step` leads to in `json` (trimmed of whitespace), or `None` when
/// `json` is not a container of the right kind or has no such member or element. An error
/// when `json` is not valid JSON.
pub fn get<'t>(json: &'t str, step: Step<'_>) -> Result<Option<&'t str>, String> {
    let mut scanner = Scanner::new(json);
    scanner.skip_ws();
    let found = match (scanner.peek(), step) {
        (Some(b'{'), Step::Key(key)) => scanner.find_member(key)?,
        (Some(b'['), Step::Index(index)) => scanner.find_element(index)?,
        _ => {
            scanner.value(0)?;
            None
        }
    };
    scanner.end()?;
    Ok(found.map(|(start, end)| &json[start..end]))
}

/// The text form of a JSON value, as `->>` returns it: a string without its quotes and with
/// its escapes resolved, `None` for `null`, and any other value as written.
pub fn as_text(value: &str) -> Result<Option<Cow<'_, str>>, String> {
    match value.as_bytes().first() {
        Some(b'"') if !value.contains('\\') => Ok(Some(Cow::Borrowed(&value[1..value.len() - 1]))),
        Some(b'"') => serde_json::from_str::<String>(value)
            .map(|s| Some(Cow::Owned(s)))
            .map_err(|e| e.to_string()),
        Some(b'n') if value == "null" => Ok(None),
        _ => Ok(Some(Cow::Borrowed(value))),
    }
}

/// A cursor over JSON text that checks the grammar as it skips values.
struct Scanner<'t> {
    text: &'t [u8],
    pos: usize,
}

impl<'t> Scanner<'t> {
    fn new(text: &'t str) -> Self {
        Scanner {
            text: text.as_bytes(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn error(&self, what: &str) -> String {
        match self.peek() {
            None => format!("{what}, found the end of the input"),
            Some(_) => format!("{what} at byte {}", self.pos + 1),
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Only whitespace may follow the value.
    fn end(&mut self) -> Result<(), String> {
        self.skip_ws();
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("unexpected text after the JSON value")),
        }
    }

    fn expect(&mut self, byte: u8, what: &str) -> Result<(), String> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    /// Skips one value starting at the cursor (no leading whitespace).
    fn value(&mut self, depth: usize) -> Result<(), String> {
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(|_| ()),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            _ => Err(self.error("expected a JSON value")),
        }
    }

    /// Enters a container: the opening bracket and whitespace after it; whether it is empty.
    fn open(&mut self, close: u8, depth: usize) -> Result<bool, String> {
        if depth >= MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(true);
        }
        Ok(false)
    }

    /// After a member or element: `,` (then whitespace; true) or the closing bracket (false).
    fn next(&mut self, close: u8) -> Result<bool, String> {
        self.skip_ws();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                self.skip_ws();
                Ok(true)
            }
            Some(b) if b == close => {
                self.pos += 1;
                Ok(false)
            }
            _ => Err(self.error(if close == b'}' {
                "expected \",\" or \"}\""
            } else {
                "expected \",\" or \"]\""
            })),
        }
    }

    fn object(&mut self, depth: usize) -> Result<(), String> {
        self.members(depth, |_, _| {})
    }

    /// Walks an object's members, calling `member(key, value span)` for each.
    fn members(
        &mut self,
        depth: usize,
        mut member: impl FnMut(&'t [u8], (usize, usize)),
    ) -> Result<(), String> {
        if self.open(b'}', depth)? {
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string as object key"));
            }
            let (start, end) = self.string()?;
            self.skip_ws();
            self.expect(b':', "expected \":\" after an object key")?;
            self.skip_ws();
            let value_start = self.pos;
            self.value(depth + 1)?;
            member(&self.text[start..end], (value_start, self.pos));
            if !self.next(b'}')? {
                return Ok(());
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), String> {
        self.elements(depth, |_| {})
    }

    /// Walks an array's elements, calling `element(span)` for each.
    fn elements(
        &mut self,
        depth: usize,
        mut element: impl FnMut((usize, usize)),
    ) -> Result<(), String> {
        if self.open(b']', depth)? {
            return Ok(());
        }
        loop {
            let start = self.pos;
            self.value(depth + 1)?;
            element((start, self.pos));
            if !self.next(b']')? {
                return Ok(());
            }
        }
    }

    /// The span of the last member named `key` of the object at the cursor.
    fn find_member(&mut self, key: &str) -> Result<Option<(usize, usize)>, String> {
        let mut found = None;
        let mut decode_error = None;
        self.members(0, |raw, span| {
            // `raw` is the key with its quotes; most keys have no escapes.
            let inner = &raw[1..raw.len() - 1];
            let matches = if inner.contains(&b'\\') {
                match std::str::from_utf8(raw)
                    .map_err(|e| e.to_string())
                    .and_then(|s| serde_json::from_str::<String>(s).map_err(|e| e.to_string()))
                {
                    Ok(decoded) => decoded == key,
                    Err(e) => {
                        decode_error.get_or_insert(e);
                        false
                    }
                }
            } else {
                inner == key.as_bytes()
            };
            if matches {
                found = Some(span);
            }
        })?;
        match decode_error {
            Some(e) => Err(e),
            None => Ok(found),
        }
    }

    /// The span of element `index` of the array at the cursor.
    fn find_element(&mut self, index: i64) -> Result<Option<(usize, usize)>, String> {
        let mut spans = Vec::new();
        self.elements(0, |span| spans.push(span))?;
        let at = if index < 0 {
            i64::try_from(spans.len())
                .ok()
                .and_then(|n| n.checked_add(index))
        } else {
            Some(index)
        };
        Ok(at
            .and_then(|at| usize::try_from(at).ok())
            .and_then(|at| spans.get(at).copied()))
    }

    /// Skips a string (the cursor is on its quote); its span, quotes included.
    fn string(&mut self) -> Result<(usize, usize), String> {
        let start = self.pos;
        self.pos += 1;
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok((start, self.pos));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1
                        }
                        Some(b'u') => {
                            let digits = self.text.get(self.pos + 1..self.pos + 5);
                            if !digits.is_some_and(|d| d.iter().all(u8::is_ascii_hexdigit)) {
                                return Err(
                                    self.error("\"\\u\" must be followed by four hex digits")
                                );
                            }
                            self.pos += 5;
                        }
                        _ => return Err(self.error("invalid escape in a string")),
                    }
                }
                Some(0..0x20) => return Err(self.error("control character in a string")),
                Some(_) => self.pos += 1,
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Result<(), String> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.error("expected a digit")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.error("expected a digit after the decimal point"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("expected a digit in the exponent"));
            }
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), String> {
        if self.text[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error("expected a JSON value"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_json() {
        for ok in [
            "1",
            " -0.5e+10 ",
            "\"a\\u00e9\\n\"",
            "null",
            "[]",
            "{}",
            "{\"a\": [1, {\"b\": null}], \"c\": true}",
            "1e400",
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\" 1}",
            "01",
            "1.",
            "tru",
            "\"\\x\"",
            "{a: 1}",
            "1 2",
            "[1]]",
            "\"\u{1}\"",
            "-",
            "NaN",
        ] {
            assert!(validate(bad).is_err(), "{bad}");
        }
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(validate(&deep).is_err());
    }

    #[test]
    fn members_and_elements_are_found_as_written() {
        let doc = r#"{"plan": "pro", "n": 1.50, "a": [1, "x", {"b": null}], "plan": "max", "k\u00e9": 2}"#;
        assert_eq!(get(doc, Step::Key("plan")), Ok(Some("\"max\"")));
        assert_eq!(get(doc, Step::Key("n")), Ok(Some("1.50")));
        assert_eq!(get(doc, Step::Key("ké")), Ok(Some("2")));
        assert_eq!(get(doc, Step::Key("missing")), Ok(None));
        assert_eq!(get(doc, Step::Index(0)), Ok(None));
        let a = get(doc, Step::Key("a")).unwrap().unwrap();
        assert_eq!(get(a, Step::Index(1)), Ok(Some("\"x\"")));
        assert_eq!(get(a, Step::Index(-1)), Ok(Some("{\"b\": null}")));
        assert_eq!(get(a, Step::Index(3)), Ok(None));
        assert_eq!(get(a, Step::Index(-4)), Ok(None));
        assert_eq!(get("3", Step::Key("a")), Ok(None));
        assert!(get("{\"a\": }", Step::Key("a")).is_err());
        assert_eq!(as_text("\"max\"").unwrap().as_deref(), Some("max"));
        assert_eq!(as_text("\"a\\\"b\"").unwrap().as_deref(), Some("a\"b"));
        assert_eq!(as_text("null").unwrap(), None);
        assert_eq!(as_text("[1, 2]").unwrap().as_deref(), Some("[1, 2]"));
    }
}
