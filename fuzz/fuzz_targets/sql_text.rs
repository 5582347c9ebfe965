//! Arbitrary SQL text through the statement path, as every entry point of Tally takes it: the
//! token-level depth bound (`tally_engine::depth`), then for what passes its check, parsing,
//! planning, optimizing and physical planning on the stack Tally gives a statement of that depth
//! (`tally_engine::fuzzing::plan_sql`, over a table `t (x BIGINT, s TEXT, b BOOLEAN)`). Errors are
//! fine; a stack overflow, a panic or a hang is a crash. The bound must agree with the check: the
//! check passes with the same number, or fails past its limit.
//!
//! The seeds in `fuzz/corpus/sql_text/` are deep shapes (chains of operators, nested parentheses,
//! CASE and subqueries, near and past the limits), the dictionary `fuzz/dict/sql_text.dict` their
//! tokens.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_engine::depth;
use tally_engine::reexports::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use tally_engine::reexports::datafusion::sql::sqlparser::tokenizer::Tokenizer;

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() {
        let bound = depth::bound(&tokens);
        match depth::check(&tokens) {
            Ok(checked) => assert_eq!(checked, bound, "check and bound disagree"),
            Err(e) => {
                assert!(e.depth > e.limit, "refused within the limit: {e:?}");
                if !e.subqueries {
                    assert!(bound >= e.depth, "bound {bound} below the refusal {e:?}");
                }
            }
        }
    }
    let _ = tally_engine::fuzzing::plan_sql(sql);
});
