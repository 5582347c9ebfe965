//! UUID values: 16 bytes, stored as Arrow `FixedSizeBinary(16)`, written in PostgreSQL's
//! canonical text form (lowercase `8-4-4-4-12` hex digits).
//!
//! [`parse`] accepts what PostgreSQL's `uuid_in` accepts: upper- or lowercase hex digits,
//! optionally in braces, with or without a hyphen after any group of four digits
//! (`A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11`, `{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}`,
//! `a0eebc999c0b4ef8bb6d6bb9bd380a11`).

/// The width of a UUID in bytes (the `FixedSizeBinary` width of a UUID column).
pub const UUID_BYTES: i32 = 16;

/// The bytes of a UUID's text form, or `None` when the text is not one.
pub fn parse(text: &str) -> Option<[u8; 16]> {
    let mut src = text.as_bytes();
    let braces = src.first() == Some(&b'{');
    if braces {
        src = &src[1..];
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        let (&[high, low], rest) = src.split_first_chunk::<2>()?;
        *byte = hex_value(high)? << 4 | hex_value(low)?;
        src = rest;
        // A hyphen may follow every second byte (four digits), except the last.
        if i % 2 == 1 && i < 15 && src.first() == Some(&b'-') {
            src = &src[1..];
        }
    }
    if braces {
        src = src.strip_prefix(b"}")?;
    }
    src.is_empty().then_some(out)
}

/// Appends the canonical text form of a UUID (lowercase, hyphenated `8-4-4-4-12`).
pub fn write(bytes: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

/// The canonical text form of a UUID.
pub fn format(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(36);
    write(bytes, &mut out);
    out
}

/// PostgreSQL's message for text that is not a UUID.
pub fn invalid_message(text: &str) -> String {
    format!("invalid input syntax for type uuid: \"{text}\"")
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_spellings_postgres_accepts() {
        let canonical = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        let bytes = parse(canonical).unwrap();
        assert_eq!(format(&bytes), canonical);
        for spelling in [
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
            "{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}",
        ] {
            assert_eq!(parse(spelling), Some(bytes), "{spelling}");
        }
        for bad in [
            "",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-",
            "-a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc9-99c0b-4ef8-bb6d-6bb9bd380a11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11",
            "urn:uuid:a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
