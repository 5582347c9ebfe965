//! Session settings: the ones a client may SET and SHOW, their defaults, which changes are
//! reported to the client (ParameterStatus), and how values are checked.

use std::collections::BTreeMap;
use std::time::Duration;

use pgwire::api::Type;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::error::PgWireResult;

use super::errors::{self, state};

/// The Postgres version Tally reports (drivers parse it to pick features).
pub const SERVER_VERSION: &str = "16.6";
/// The same as `server_version_num` spells it.
pub const SERVER_VERSION_NUM: &str = "160006";

/// A setting's default value (what `current_setting` reports; a connection's SET is not
/// seen there).
pub fn default_setting(name: &str) -> Option<String> {
    SETTINGS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, value)| value.to_string())
}

/// Settings a client may SET and SHOW: (lower-case name, display name, default).
pub(super) const SETTINGS: &[(&str, &str, &str)] = &[
    ("application_name", "application_name", ""),
    ("client_encoding", "client_encoding", "UTF8"),
    ("datestyle", "DateStyle", "ISO, MDY"),
    // The access method of every table (`pg_am`), so clients see no non-default one.
    (
        "default_table_access_method",
        "default_table_access_method",
        "tally",
    ),
    (
        "default_transaction_isolation",
        "default_transaction_isolation",
        "read committed",
    ),
    ("extra_float_digits", "extra_float_digits", "1"),
    ("integer_datetimes", "integer_datetimes", "on"),
    ("intervalstyle", "IntervalStyle", "postgres"),
    ("is_superuser", "is_superuser", "on"),
    ("lock_timeout", "lock_timeout", "0"),
    ("max_identifier_length", "max_identifier_length", "63"),
    ("search_path", "search_path", "\"$user\", public"),
    ("server_encoding", "server_encoding", "UTF8"),
    ("server_version", "server_version", SERVER_VERSION),
    (
        "server_version_num",
        "server_version_num",
        SERVER_VERSION_NUM,
    ),
    (
        "standard_conforming_strings",
        "standard_conforming_strings",
        "on",
    ),
    ("statement_timeout", "statement_timeout", "0"),
    ("synchronous_commit", "synchronous_commit", "on"),
    // Answer aggregate queries over a table from its materialized views where one can.
    ("tally.view_rewrite", "tally.view_rewrite", "on"),
    ("timezone", "TimeZone", "UTC"),
    (
        "transaction_isolation",
        "transaction_isolation",
        "read committed",
    ),
];

/// Settings whose changes Postgres reports to the client (ParameterStatus).
pub(super) const REPORTED: &[&str] = &[
    "application_name",
    "client_encoding",
    "datestyle",
    "intervalstyle",
    "standard_conforming_strings",
    "timezone",
];

/// Per-connection settings.
#[derive(Debug, Default)]
pub(super) struct Session {
    /// Values changed by SET (lower-case names).
    pub(super) changed: BTreeMap<String, String>,
    pub(super) statement_timeout: Option<Duration>,
}

impl Session {
    /// What the session's settings change in how the engine plans its statements.
    pub(super) fn engine_settings(&self) -> tally_engine::SessionSettings {
        tally_engine::SessionSettings {
            view_rewrite: self
                .changed
                .get("tally.view_rewrite")
                .and_then(|v| tally_engine::parse_bool_setting(v)),
        }
    }

    pub(super) fn get(&self, name: &str) -> Option<String> {
        self.changed.get(name).cloned().or_else(|| {
            SETTINGS
                .iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, _, d)| d.to_string())
        })
    }
}

pub(super) fn display_name(name: &str) -> String {
    SETTINGS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, d, _)| d.to_string())
        .unwrap_or_else(|| name.to_string())
}

/// Validates and normalizes a SET value.
pub(super) fn check_setting(
    name: &str,
    value: &str,
) -> PgWireResult<(String, Option<Option<Duration>>)> {
    let invalid = || {
        errors::pg(
            state::INVALID_PARAMETER,
            format!("invalid value for parameter \"{name}\": \"{value}\""),
        )
    };
    match name {
        "client_encoding" => {
            let v = value.to_ascii_lowercase().replace(['-', '_'], "");
            if v == "utf8" || v == "unicode" {
                Ok(("UTF8".into(), None))
            } else {
                Err(errors::pg(
                    state::NOT_SUPPORTED,
                    format!("client_encoding \"{value}\" is not supported: Tally speaks UTF8 only"),
                ))
            }
        }
        "datestyle" => {
            if value.to_ascii_lowercase().contains("iso") || value.eq_ignore_ascii_case("mdy") {
                Ok(("ISO, MDY".into(), None))
            } else {
                Err(errors::pg(
                    state::NOT_SUPPORTED,
                    format!("DateStyle \"{value}\" is not supported: Tally writes ISO dates"),
                ))
            }
        }
        "timezone" => {
            let ok = value.eq_ignore_ascii_case("utc")
                || value
                    .parse::<tally_engine::reexports::arrow::array::timezone::Tz>()
                    .is_ok();
            if ok {
                Ok((value.to_string(), None))
            } else {
                Err(invalid())
            }
        }
        "extra_float_digits" => match value.parse::<i32>() {
            Ok(v) if (-15..=3).contains(&v) => Ok((v.to_string(), None)),
            _ => Err(invalid()),
        },
        "tally.view_rewrite" => match tally_engine::parse_bool_setting(value) {
            Some(on) => Ok((if on { "on" } else { "off" }.into(), None)),
            None => Err(errors::pg(
                state::INVALID_PARAMETER,
                format!("parameter \"{name}\" requires a Boolean value, not \"{value}\""),
            )),
        },
        "statement_timeout" => {
            let d = parse_duration_ms(value).ok_or_else(invalid)?;
            let timeout = (d > 0).then(|| Duration::from_millis(d));
            Ok((value.to_string(), Some(timeout)))
        }
        _ => Ok((value.to_string(), None)),
    }
}

/// `5000`, `'5s'`, `100ms`, `2min`, `1h` → milliseconds.
pub(super) fn parse_duration_ms(value: &str) -> Option<u64> {
    let v = value.trim().to_ascii_lowercase();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let n: u64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1_000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

pub(super) fn show_fields(name: &str, binary: bool) -> Vec<FieldInfo> {
    let format = if binary {
        FieldFormat::Binary
    } else {
        FieldFormat::Text
    };
    let column = if name == "all" {
        return vec![
            FieldInfo::new("name".into(), None, None, Type::TEXT, format),
            FieldInfo::new("setting".into(), None, None, Type::TEXT, format),
        ];
    } else {
        display_name(name)
    };
    vec![FieldInfo::new(column, None, None, Type::TEXT, format)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_postgres() {
        assert_eq!(parse_duration_ms("5000"), Some(5000));
        assert_eq!(parse_duration_ms("5s"), Some(5000));
        assert_eq!(parse_duration_ms("2min"), Some(120_000));
        assert_eq!(parse_duration_ms("soon"), None);
    }
}
