//! Per-session planner settings: what a client's `SET` changes about how its statements are
//! planned. A [`SessionSettings`] applies to the statements run inside
//! [`SessionSettings::scope`]; outside one, the database's [`Options`](crate::Options) hold.

use std::future::Future;

tokio::task_local! {
    static CURRENT: SessionSettings;
}

/// Settings of one session (a server connection, or any caller of the library that wants
/// them), applied to every statement run within [`SessionSettings::scope`]: `Database::execute`,
/// `prepare`, `execute_prepared`, their streaming forms and a `Transaction`'s.
///
/// ```no_run
/// # async fn demo(db: tally_engine::Database) -> tally_engine::Result<()> {
/// use tally_engine::SessionSettings;
/// // The raw-table answer, even where a materialized view could give it.
/// let settings = SessionSettings { view_rewrite: Some(false) };
/// let raw = settings.scope(db.sql("SELECT page, count(*) FROM events GROUP BY page")).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionSettings {
    /// `tally.view_rewrite`: answer aggregate queries over a table from a materialized view of
    /// it where one can (see `docs/sql.md`, "Queries answered from views"). `None` keeps
    /// [`Options::view_rewrite`](crate::Options::view_rewrite).
    pub view_rewrite: Option<bool>,
}

impl SessionSettings {
    /// Runs `statement` (any future that runs statements) under these settings.
    pub async fn scope<F: Future>(self, statement: F) -> F::Output {
        CURRENT.scope(self, statement).await
    }

    /// The settings of the scope the caller runs in (the defaults outside one).
    pub(crate) fn current() -> SessionSettings {
        CURRENT.try_with(|s| *s).unwrap_or_default()
    }
}

/// The value of `SET tally.view_rewrite = …` (`on`/`off` …), or why it is not one; `None` for
/// any other statement. `Database::execute` applies it to the statements after it in the same
/// call, which are one session to the library.
pub(crate) fn view_rewrite_assignment(
    statement: &datafusion::sql::parser::Statement,
) -> Option<crate::error::Result<bool>> {
    use datafusion::sql::sqlparser::ast::{Set, Statement};
    let datafusion::sql::parser::Statement::Statement(statement) = statement else {
        return None;
    };
    let Statement::Set(Set::SingleAssignment {
        variable, values, ..
    }) = statement.as_ref()
    else {
        return None;
    };
    if !variable.to_string().eq_ignore_ascii_case(VIEW_REWRITE) {
        return None;
    }
    let text = match values.as_slice() {
        [value] => value.to_string(),
        _ => String::new(),
    };
    let text = text.trim_matches('\'');
    Some(parse_bool_setting(text).ok_or_else(|| {
        crate::error::Error::InvalidArgument(format!(
            "parameter \"{VIEW_REWRITE}\" requires a Boolean value, not \"{text}\""
        ))
    }))
}

/// The name of the view rewriting setting.
pub const VIEW_REWRITE: &str = "tally.view_rewrite";

/// Parses a boolean setting as PostgreSQL does: `on`/`off`, `true`/`false`, `yes`/`no`, `1`/`0`
/// (any case, unambiguous prefixes of the words are not accepted).
pub fn parse_bool_setting(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" | "t" | "y" => Some(true),
        "off" | "false" | "no" | "0" | "f" | "n" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_scope_sets_what_current_reads() {
        assert_eq!(SessionSettings::current(), SessionSettings::default());
        let off = SessionSettings {
            view_rewrite: Some(false),
        };
        assert_eq!(off.scope(async { SessionSettings::current() }).await, off);
    }

    #[test]
    fn booleans_parse_like_postgres() {
        assert_eq!(parse_bool_setting("OFF"), Some(false));
        assert_eq!(parse_bool_setting("on"), Some(true));
        assert_eq!(parse_bool_setting("0"), Some(false));
        assert_eq!(parse_bool_setting("maybe"), None);
    }
}
