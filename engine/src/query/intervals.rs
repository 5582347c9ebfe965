//! Interval literals with a leading field precision, `INTERVAL '90' DAY (3)` (SQL standard,
//! written so in TPC-H Q1): DataFusion plans no precision, so the statement is rewritten before
//! planning. The precision only bounds how many digits the leading field may have; a value
//! within it means the same interval without it, and one beyond it is refused, as the standard
//! asks.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Expr, Value, VisitMut, VisitorMut};

use crate::error::{Error, Result};

/// Checks the leading field precision of every interval literal in `statement` and removes it.
pub(crate) fn drop_leading_precision(statement: &mut DfStatement) -> Result<()> {
    match statement {
        DfStatement::Statement(statement) => match statement.visit(&mut Precision) {
            ControlFlow::Break(err) => Err(err),
            ControlFlow::Continue(()) => Ok(()),
        },
        DfStatement::Explain(explain) => drop_leading_precision(&mut explain.statement),
        _ => Ok(()),
    }
}

struct Precision;

impl VisitorMut for Precision {
    type Break = Error;

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Error> {
        let Expr::Interval(interval) = expr else {
            return ControlFlow::Continue(());
        };
        let Some(precision) = interval.leading_precision.take() else {
            return ControlFlow::Continue(());
        };
        // A parameter or another expression as the value is checked by nothing but its type.
        if let Expr::Value(v) = interval.value.as_ref()
            && let Value::SingleQuotedString(text) = &v.value
        {
            let digits = leading_digits(text);
            if digits as u64 > precision {
                let field = interval
                    .leading_field
                    .as_ref()
                    .map(|f| format!(" {f}"))
                    .unwrap_or_default();
                return ControlFlow::Break(Error::InvalidArgument(format!(
                    "interval field value out of range: '{text}' has {digits} digits in its \
                     leading field, more than INTERVAL{field} ({precision}) allows"
                )));
            }
        }
        ControlFlow::Continue(())
    }
}

/// How many digits the leading field of an interval string has (`' -090 '` has 3: leading
/// zeros count, as written).
fn leading_digits(text: &str) -> usize {
    let text = text.trim_start();
    let text = text.strip_prefix(['-', '+']).unwrap_or(text);
    text.chars().take_while(char::is_ascii_digit).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(sql: &str) -> Result<String> {
        let mut statements = crate::query::parse(sql)?;
        Ok(statements.remove(0).to_string())
    }

    #[test]
    fn a_precision_the_value_fits_is_dropped() {
        assert_eq!(
            rewrite("SELECT DATE '1998-12-01' - INTERVAL '90' DAY (3)").unwrap(),
            "SELECT DATE '1998-12-01' - INTERVAL '90' DAY"
        );
        assert_eq!(
            rewrite("EXPLAIN SELECT INTERVAL '-7' MONTH (1)").unwrap(),
            "EXPLAIN SELECT INTERVAL '-7' MONTH"
        );
    }

    #[test]
    fn a_value_longer_than_the_precision_is_refused() {
        let err = rewrite("SELECT INTERVAL '1000' DAY (3)").unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.contains("'1000' has 4 digits")),
            "{err:?}"
        );
    }
}
