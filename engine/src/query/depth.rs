//! How deeply a statement nests, bounded from its tokens before anything recursive sees it.
//!
//! Parsing, planning, optimizing, evaluating and dropping a statement all recurse over its
//! tree. sqlparser's own recursion limit does not see chains of infix operators
//! (`1+1+…+1`, `a AND b AND …`), which it builds in a loop into a tree as deep as the chain is
//! long; a deep enough one used to overflow a thread's stack and abort the whole server. The
//! bound here is computed from the tokens alone, in one pass with no recursion, so that a
//! statement too deep for the rest of the pipeline is refused (SQLSTATE 54001) before any tree
//! exists, and one within the bound runs on a stack large enough for it ([`on_big_stack`]).
//!
//! The bound is conservative: for every element between commas at every parenthesis level it
//! counts the operators and keywords that can add a level to the tree, plus the deepest group
//! nested in it, so the real tree is never deeper than the bound.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::Token;

/// The deepest statement Tally runs, as counted by [`bound`]. PostgreSQL's default
/// `max_stack_depth` (2 MB) evaluates a chain of about 4,000 `+` and 1,000 nested subqueries;
/// Tally takes at least as much.
pub const MAX_DEPTH: usize = 5_000;

/// The deepest nesting of subqueries in expressions (`(SELECT …)`, `IN (SELECT …)`,
/// `EXISTS (…)`). DataFusion 55's planner checks every subquery's invariants again for each
/// level around it, so its time doubles about every level: 12 levels plan in half a second,
/// 20 in a minute and a half (debug build). Subqueries in FROM do not count.
pub const MAX_SUBQUERY_DEPTH: usize = 12;

/// Statements at most this deep run on the caller's stack; deeper ones on a stack of their own.
/// At [`STACK_PER_LEVEL`] a shallow statement needs at most 1 MiB, which fits the 2 MiB of a
/// default Rust or tokio thread with room for the caller's frames (30 subqueries nested in FROM
/// overflow 2 MiB in a debug build; the property test in this module found it).
const SHALLOW: usize = 16;

/// Stack bytes reserved per level of a deep statement. A level of a nested subquery costs the
/// most: DataFusion plans, optimizes and drops it through many frames (measured in a debug
/// build, where frames are largest).
const STACK_PER_LEVEL: usize = 64 * 1024;

/// Smallest stack given to a deep statement.
const MIN_DEEP_STACK: usize = 16 * 1024 * 1024;

/// Threads that run statements (the query runtime, the server's runtime, the commit thread)
/// are started with this much stack, so that plan execution and expression evaluation of a
/// statement within [`MAX_DEPTH`] fit. Only the pages a thread touches are ever committed.
pub const THREAD_STACK: usize = 256 * 1024 * 1024;

/// The error for a statement deeper than [`MAX_DEPTH`], or with subqueries nested deeper
/// than [`MAX_SUBQUERY_DEPTH`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep {
    /// The statement's bound, as counted so far (the count stops at the limit).
    pub depth: usize,
    /// The limit it exceeded.
    pub limit: usize,
    /// Whether the limit is the one on nested subqueries.
    pub subqueries: bool,
}

/// An upper bound on the nesting depth of the tree that `tokens` parse into (0 for none).
pub fn bound(tokens: &[Token]) -> usize {
    let mut counter = Counter::default();
    for token in tokens {
        counter.push(token);
    }
    counter.finish()
}

/// Checks that `tokens` nest no deeper than [`MAX_DEPTH`]; returns their bound.
pub fn check(tokens: &[Token]) -> Result<usize, TooDeep> {
    let mut counter = Counter::default();
    for token in tokens {
        counter.push(token);
        // The running bound only grows within a statement: stop at the first token past it.
        if counter.running() > MAX_DEPTH {
            return Err(TooDeep {
                depth: counter.running(),
                limit: MAX_DEPTH,
                subqueries: false,
            });
        }
        if counter.subqueries > MAX_SUBQUERY_DEPTH {
            return Err(TooDeep {
                depth: counter.subqueries,
                limit: MAX_SUBQUERY_DEPTH,
                subqueries: true,
            });
        }
    }
    Ok(counter.finish())
}

/// One level of parentheses (or brackets, or `CASE … END`) being counted.
#[derive(Debug, Default, Clone, Copy)]
struct Level {
    /// Operators in the current element (between commas).
    operators: usize,
    /// The deepest group closed inside the current element.
    deepest_child: usize,
    /// The deepest element of this level so far.
    deepest: usize,
    /// The depth of the open elements below this level, when it was opened.
    below: usize,
    /// Whether the level is a subquery in an expression.
    subquery: bool,
}

impl Level {
    /// The depth of the current element.
    fn element(&self) -> usize {
        self.operators + self.deepest_child + 1
    }

    fn end_element(&mut self) {
        self.deepest = self.deepest.max(self.element());
        self.operators = 0;
        self.deepest_child = 0;
    }
}

/// Counts one statement after another; a statement's top level is the bottom of `levels`.
#[derive(Debug, Default)]
struct Counter {
    levels: Vec<Level>,
    /// The deepest statement finished so far (statements end at `;`).
    deepest: usize,
    /// Open subqueries in expressions.
    subqueries: usize,
    /// The last token that was not whitespace.
    previous: Option<Token>,
    /// The token before the last `(`, until the token after it is seen.
    before_paren: Option<Option<Token>>,
}

impl Counter {
    fn top(&mut self) -> &mut Level {
        if self.levels.is_empty() {
            self.levels.push(Level::default());
        }
        self.levels.last_mut().expect("a level was just pushed")
    }

    /// A bound of the tree so far: the open elements stacked on one another.
    fn running(&self) -> usize {
        self.levels
            .last()
            .map_or(0, |l| l.below + l.deepest.max(l.element()))
    }

    fn push(&mut self, token: &Token) {
        if matches!(token, Token::Whitespace(_)) {
            return;
        }
        if let Some(before) = self.before_paren.take()
            && starts_a_query(token)
            && !names_a_relation(before.as_ref())
            && self.levels.len() > 1
        {
            self.top().subquery = true;
            self.subqueries += 1;
        }
        if matches!(token, Token::LParen) {
            self.before_paren = Some(self.previous.take());
        }
        self.previous = Some(token.clone());
        match token {
            Token::LParen | Token::LBracket | Token::LBrace => self.open(),
            Token::Word(w) if w.keyword == Keyword::CASE => self.open(),
            Token::RParen | Token::RBracket | Token::RBrace => self.close(),
            Token::Word(w) if w.keyword == Keyword::END => self.close(),
            Token::Comma => self.top().end_element(),
            Token::SemiColon => {
                let depth = self.finish_statement();
                self.deepest = self.deepest.max(depth);
            }
            t if adds_a_level(t) => self.top().operators += 1,
            _ => {}
        }
    }

    fn open(&mut self) {
        let parent = self.top();
        let below = parent.below + parent.element();
        self.levels.push(Level {
            below,
            ..Level::default()
        });
    }

    fn close(&mut self) {
        if self.levels.len() < 2 {
            // An unbalanced `)` or `END` (a syntax error, or END of a transaction): nothing to
            // close; the parser reports what is wrong.
            return;
        }
        let mut level = self.levels.pop().expect("two levels");
        if level.subquery {
            self.subqueries -= 1;
        }
        level.end_element();
        let parent = self.top();
        parent.deepest_child = parent.deepest_child.max(level.deepest);
    }

    /// Closes every open level (an unterminated group counts as closed at the end) and returns
    /// the statement's bound.
    fn finish_statement(&mut self) -> usize {
        while self.levels.len() > 1 {
            self.close();
        }
        self.subqueries = 0;
        self.levels.pop().map_or(0, |mut l| {
            l.end_element();
            l.deepest
        })
    }

    fn finish(mut self) -> usize {
        let last = self.finish_statement();
        self.deepest.max(last)
    }
}

/// Whether a token begins a query (after a `(`).
fn starts_a_query(token: &Token) -> bool {
    matches!(token, Token::Word(w) if matches!(w.keyword, Keyword::SELECT | Keyword::WITH | Keyword::VALUES))
}

/// Whether a `(` after this token opens a relation (a subquery in FROM), not an expression.
fn names_a_relation(before: Option<&Token>) -> bool {
    matches!(before, Some(Token::Word(w)) if matches!(w.keyword, Keyword::FROM | Keyword::JOIN | Keyword::LATERAL | Keyword::AS))
        || before.is_none()
}

/// Whether a token can be an operator that sits one level above its operands.
fn adds_a_level(token: &Token) -> bool {
    match token {
        Token::Word(w) => matches!(
            w.keyword,
            Keyword::AND
                | Keyword::OR
                | Keyword::NOT
                | Keyword::XOR
                | Keyword::IS
                | Keyword::IN
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::SIMILAR
                | Keyword::BETWEEN
                | Keyword::COLLATE
                | Keyword::AT
                | Keyword::WHEN
                | Keyword::THEN
                | Keyword::ELSE
                | Keyword::SELECT
                | Keyword::UNION
                | Keyword::EXCEPT
                | Keyword::INTERSECT
                | Keyword::OVERLAPS
                | Keyword::ANY
                | Keyword::ALL
                | Keyword::SOME
                | Keyword::EXISTS
                | Keyword::DIV
        ),
        Token::Number(..)
        | Token::Char(_)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::NationalStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::HexStringLiteral(_)
        | Token::Placeholder(_)
        | Token::Comma
        | Token::SemiColon
        | Token::Whitespace(_)
        | Token::EOF
        | Token::LParen
        | Token::RParen
        | Token::LBracket
        | Token::RBracket
        | Token::LBrace
        | Token::RBrace
        | Token::Colon
        | Token::Period => false,
        // Every other symbol (`+ - * / % || = <> < > :: -> ->> #>> ~ ^ & |` …) is an operator.
        _ => true,
    }
}

/// Runs `future` with every poll on a stack of its own, sized for a statement of `depth`
/// (see [`bound`]); a shallow statement runs as it is.
pub fn on_big_stack<F: Future>(depth: usize, future: F) -> OnBigStack<F> {
    OnBigStack {
        future: Some(Box::pin(future)),
        stack: stack_for(depth),
    }
}

/// Runs `f` on a stack sized for a statement of `depth`, or on the caller's if it is shallow
/// (dropping a deep tree recurses as deep as the tree).
pub fn with_big_stack<T>(depth: usize, f: impl FnOnce() -> T) -> T {
    match stack_for(depth) {
        Some(size) => stacker::grow(size, f),
        None => f(),
    }
}

fn stack_for(depth: usize) -> Option<usize> {
    (depth > SHALLOW).then(|| (depth * STACK_PER_LEVEL).max(MIN_DEEP_STACK))
}

/// The future of [`on_big_stack`].
pub struct OnBigStack<F> {
    /// `None` only while it is being dropped.
    future: Option<Pin<Box<F>>>,
    stack: Option<usize>,
}

impl<F: Future> Future for OnBigStack<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let future = this
            .future
            .as_mut()
            .expect("the future is there until dropped");
        match this.stack {
            None => future.as_mut().poll(cx),
            Some(size) => stacker::grow(size, || future.as_mut().poll(cx)),
        }
    }
}

impl<F> Drop for OnBigStack<F> {
    fn drop(&mut self) {
        // The future may hold the statement's tree (when dropped before it finished).
        if let (Some(size), Some(future)) = (self.stack, self.future.take()) {
            stacker::grow(size, move || drop(future));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    fn depth(sql: &str) -> usize {
        bound(
            &Tokenizer::new(&PostgreSqlDialect {}, sql)
                .tokenize()
                .unwrap(),
        )
    }

    #[test]
    fn chains_count_their_operators_and_lists_do_not() {
        assert!(depth("SELECT 1") <= 3);
        let plus = format!("SELECT {}", vec!["1"; 1000].join("+"));
        assert!(depth(&plus) >= 1000);
        let list = format!(
            "SELECT 5 IN ({})",
            (0..100_000)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(depth(&list) < 10, "{}", depth(&list));
    }

    #[test]
    fn nesting_adds_up() {
        let parens = format!("SELECT {}1{}", "(".repeat(300), ")".repeat(300));
        assert!(depth(&parens) >= 300);
        let subqueries = format!("SELECT {}1{}", "(SELECT ".repeat(200), ")".repeat(200));
        assert!(depth(&subqueries) >= 400);
        let derived = format!(
            "SELECT * FROM {}(SELECT 1) t{}",
            "(SELECT * FROM ".repeat(100),
            ") t".repeat(100)
        );
        assert!(depth(&derived) >= 100);
        let case = format!(
            "SELECT {}1{}",
            "CASE WHEN true THEN ".repeat(100),
            " END".repeat(100)
        );
        assert!(depth(&case) >= 100);
        // A chain inside a group stacks on the chain around it.
        let inner = vec!["1"; 100].join("+");
        let outer = format!("SELECT {}+({inner})", vec!["1"; 100].join("+"));
        assert!(depth(&outer) >= 200);
    }

    #[test]
    fn the_deepest_statement_counts() {
        let deep = format!("SELECT {}", vec!["1"; 600].join("+"));
        assert!(depth(&format!("SELECT 1; {deep}; SELECT 2")) >= 600);
    }

    #[test]
    fn check_stops_at_the_limit() {
        let sql = format!("SELECT {}", vec!["1"; MAX_DEPTH + 10].join("+"));
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, &sql)
            .tokenize()
            .unwrap();
        let err = check(&tokens).unwrap_err();
        assert_eq!(err.limit, MAX_DEPTH);
        assert!(err.depth > MAX_DEPTH);
        assert!(!err.subqueries);
        // Unbalanced input is counted, not a panic.
        assert!(
            check(
                &Tokenizer::new(&PostgreSqlDialect {}, ")) END (( CASE")
                    .tokenize()
                    .unwrap()
            )
            .is_ok()
        );
    }

    #[test]
    fn subqueries_in_expressions_are_limited_and_those_in_from_are_not() {
        let check_sql = |sql: &str| {
            check(
                &Tokenizer::new(&PostgreSqlDialect {}, sql)
                    .tokenize()
                    .unwrap(),
            )
        };
        let n = MAX_SUBQUERY_DEPTH;
        let scalar = |n: usize| format!("SELECT {}1{}", "(SELECT ".repeat(n), ")".repeat(n));
        assert!(check_sql(&scalar(n)).is_ok());
        let err = check_sql(&scalar(n + 1)).unwrap_err();
        assert!(err.subqueries && err.limit == n);
        let exists = format!(
            "SELECT 1 WHERE {}true{}",
            "EXISTS (SELECT 1 WHERE ".repeat(n + 1),
            ")".repeat(n + 1)
        );
        assert!(check_sql(&exists).unwrap_err().subqueries);
        let derived = format!(
            "SELECT * FROM {}(SELECT 1) t{}",
            "(SELECT * FROM ".repeat(50),
            ") t".repeat(50)
        );
        assert!(check_sql(&derived).is_ok());
        // Siblings do not nest.
        let siblings = vec!["(SELECT 1)"; 100].join(" + ");
        assert!(check_sql(&format!("SELECT {siblings}")).is_ok());
    }
}

/// Random statements of random shapes and depths: the bound is never below the depth of the
/// tree they parse into, and a statement that passes [`check`] parses and plans on the stack
/// Tally gives it without overflowing (an overflow aborts the test process).
#[cfg(test)]
mod properties {
    use datafusion::sql::sqlparser::ast::{Expr, Query, Visit, Visitor};
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;
    use proptest::prelude::*;
    use std::ops::ControlFlow;

    /// Integer expressions over the column `x` of `crate::fuzzing::plan_sql`'s table `t`.
    fn int_expr() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![Just("1".to_string()), Just("x".to_string())];
        leaf.prop_recursive(6, 400, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 2..40).prop_map(|v| v.join(" + ")),
                prop::collection::vec(inner.clone(), 2..10).prop_map(|v| v.join(" * ")),
                (inner.clone(), 1..300usize).prop_map(|(e, n)| format!(
                    "{}{e}{}",
                    "(".repeat(n),
                    ")".repeat(n)
                )),
                (inner.clone(), 1..200usize).prop_map(|(e, n)| format!("{e}{}", " + 1".repeat(n))),
                (bool_leaf(), inner.clone(), inner.clone())
                    .prop_map(|(c, a, b)| format!("CASE WHEN {c} THEN {a} ELSE {b} END")),
                (inner.clone(), 1..60usize).prop_map(|(e, n)| format!(
                    "{}{e}{}",
                    "CASE WHEN x > 0 THEN ".repeat(n),
                    " END".repeat(n)
                )),
                inner.clone().prop_map(|e| format!("(SELECT {e})")),
                inner.clone().prop_map(|e| format!("abs({e})")),
                inner.clone().prop_map(|e| format!("-({e})")),
                inner.clone().prop_map(|e| format!("CAST({e} AS BIGINT)")),
                inner.clone().prop_map(|e| format!("({e})::BIGINT")),
            ]
        })
    }

    fn bool_leaf() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("true".to_string()),
            Just("x = 1".to_string()),
            Just("b".to_string()),
            Just("s LIKE 'a%'".to_string()),
        ]
    }

    /// Boolean expressions, built from integer ones.
    fn bool_expr() -> impl Strategy<Value = String> {
        bool_leaf().prop_recursive(5, 300, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 2..60).prop_map(|v| v.join(" AND ")),
                prop::collection::vec(inner.clone(), 2..60).prop_map(|v| v.join(" OR ")),
                inner.clone().prop_map(|e| format!("NOT ({e})")),
                inner.clone().prop_map(|e| format!("({e}) IS NULL")),
                (int_expr(), 1..50usize).prop_map(|(e, n)| {
                    let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
                    format!("{e} IN ({})", items.join(", "))
                }),
                (int_expr(), int_expr()).prop_map(|(a, b)| format!("{a} BETWEEN {b} AND 10")),
                (int_expr(), int_expr()).prop_map(|(a, b)| format!("{a} < {b}")),
                inner
                    .clone()
                    .prop_map(|e| format!("EXISTS (SELECT 1 WHERE {e})")),
                int_expr().prop_map(|e| format!("x IN (SELECT {e})")),
            ]
        })
    }

    /// Whole statements: expressions in the select list and WHERE, under subqueries in FROM.
    fn statement() -> impl Strategy<Value = String> {
        (int_expr(), bool_expr(), 0..40usize).prop_map(|(select, filter, from)| {
            format!(
                "SELECT {select} AS v FROM {}t{} WHERE {filter}",
                "(SELECT * FROM ".repeat(from),
                ") q".repeat(from)
            )
        })
    }

    /// The deepest nesting of expressions and queries in a parsed statement.
    #[derive(Default)]
    struct TreeDepth {
        current: usize,
        deepest: usize,
    }

    impl TreeDepth {
        fn enter(&mut self) {
            self.current += 1;
            self.deepest = self.deepest.max(self.current);
        }
    }

    impl Visitor for TreeDepth {
        type Break = ();

        fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
            self.enter();
            ControlFlow::Continue(())
        }

        fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
            self.current -= 1;
            ControlFlow::Continue(())
        }

        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.enter();
            ControlFlow::Continue(())
        }

        fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.current -= 1;
            ControlFlow::Continue(())
        }
    }

    /// The depth of the tree `sql` parses into, parsed as sqlparser builds it (before Tally
    /// rewrites anything), on a stack large enough for any statement here.
    fn tree_depth(sql: &str) -> usize {
        super::with_big_stack(super::MAX_DEPTH, || {
            let statements = Parser::new(&PostgreSqlDialect {})
                .with_recursion_limit(crate::query::PARSER_RECURSION_LIMIT)
                .try_with_sql(sql)
                .and_then(|mut p| p.parse_statements())
                .expect("generated statements parse");
            let mut depth = TreeDepth::default();
            let _ = statements.visit(&mut depth);
            depth.deepest
        })
    }

    /// Runs `f` on a thread with the 2 MiB stack of a default Rust or tokio worker thread,
    /// the smallest a statement may arrive on.
    fn on_small_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(f)
            .expect("a thread")
            .join()
            .expect("the statement thread did not panic")
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn the_bound_is_never_below_the_tree_and_checked_statements_plan(sql in statement()) {
            let tokens = Tokenizer::new(&PostgreSqlDialect {}, &sql).tokenize().unwrap();
            let bound = super::bound(&tokens);
            let tree = tree_depth(&sql);
            prop_assert!(bound >= tree, "bound {bound} < tree depth {tree}: {sql}");
            if super::check(&tokens).is_ok() {
                let outcome = on_small_thread(move || crate::fuzzing::plan_sql(&sql).map_err(|e| e.to_string()));
                // Planning may refuse a statement (a type error): what matters is that it returns.
                if let Err(e) = outcome {
                    prop_assert!(!e.contains("stack"), "{e}");
                }
            }
        }
    }
}
