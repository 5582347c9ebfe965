//! UUID and JSONB on the wire. A UUID's binary form is its 16 bytes and its text the canonical
//! `8-4-4-4-12` hex (written by [`super::write_text`] for `FixedSizeBinary(16)`, the type
//! Tally stores UUIDs as). JSON's binary form is its text; JSONB's is a version byte, 1, then
//! the text.

use pgwire::error::PgWireResult;
use tally_engine::reexports::datafusion::common::ScalarValue;
use tally_engine::types::uuid;

use crate::pg::errors::{self, state};

/// The version byte that starts a JSONB value in binary format.
pub(crate) const JSONB_VERSION: u8 = 1;

/// A UUID parameter sent as text.
pub(super) fn uuid_parameter(text: &str, index: usize) -> PgWireResult<ScalarValue> {
    match uuid::parse(text) {
        Some(bytes) => Ok(ScalarValue::FixedSizeBinary(16, Some(bytes.to_vec()))),
        None => Err(errors::pg(
            state::INVALID_TEXT,
            format!(
                "{} in parameter ${}",
                uuid::invalid_message(text),
                index + 1
            ),
        )),
    }
}

/// The text of a JSONB value in binary format (parameter `index`, zero-based).
pub(super) fn jsonb_text(bytes: &[u8], index: usize) -> PgWireResult<&str> {
    let text = jsonb_payload(bytes).map_err(|message| {
        errors::pg(
            state::BAD_BINARY,
            format!("{message} in parameter ${}", index + 1),
        )
    })?;
    std::str::from_utf8(text).map_err(|_| {
        errors::pg(
            state::BAD_ENCODING,
            format!("parameter ${} is not valid UTF-8", index + 1),
        )
    })
}

/// The text bytes of a JSONB value in binary format, or why it is not one.
pub(crate) fn jsonb_payload(bytes: &[u8]) -> Result<&[u8], String> {
    match bytes.split_first() {
        Some((&JSONB_VERSION, text)) => Ok(text),
        Some((version, _)) => Err(format!("unsupported jsonb version number {version}")),
        None => Err("incorrect binary data format: an empty jsonb value".into()),
    }
}
