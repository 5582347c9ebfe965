//! Running SQL on a [`Database`]: statements parsed and run one after another, prepared
//! statements (with their kept plans) and the errors that name what an INSERT got wrong.

use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast;

use super::Database;
use crate::error::{DataErrorClass, Error, Result};
use crate::query::ddl::{self, Ddl};
use crate::query::depth;
use crate::query::settings::{self, SessionSettings};
use crate::query::{self, PlanCache, StatementResult};
use crate::snapshot::Snapshot;
use crate::transaction::AppendTarget;

impl Database {
    /// Runs one or more SQL statements (separated by `;`) in order, and returns the rows of
    /// the last one. Each statement sees the effects of those before it.
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        Ok(self
            .execute(sql)
            .await?
            .pop()
            .map(|r| r.batches)
            .unwrap_or_default())
    }

    /// Runs one or more SQL statements in order and returns each statement's result.
    /// Execution stops at the first error; statements before it stay committed.
    pub async fn execute(&self, sql: &str) -> Result<Vec<StatementResult>> {
        let depth = query::statement_depth(sql)?;
        depth::on_big_stack(depth, async {
            let mut results = Vec::new();
            let target = self.commit_target();
            let mut settings = SessionSettings::current();
            for statement in query::parse(sql)? {
                // `SET tally.view_rewrite` holds for the rest of the call.
                if let Some(value) = settings::view_rewrite_assignment(&statement) {
                    settings.view_rewrite = Some(value?);
                    results.push(StatementResult::command("SET", 0));
                    continue;
                }
                let run = self.execute_statement(statement, vec![], &target, None);
                results.push(settings.scope(run).await?);
            }
            Ok(results)
        })
        .await
    }

    /// Parses and plans one statement without running it: its parameter types (`$1`, `$2` …)
    /// and result schema, for a client's Describe. Run it with [`Database::execute_prepared`],
    /// against the data as of that moment: a query that reads only views keeps its physical
    /// plan per parameter values for the runs after; anything else is planned again.
    pub async fn prepare(&self, sql: &str) -> Result<Prepared> {
        self.inner.check_open()?;
        let depth = query::statement_depth(sql)?;
        depth::on_big_stack(depth, self.prepare_at_depth(sql, depth)).await
    }

    async fn prepare_at_depth(&self, sql: &str, depth: usize) -> Result<Prepared> {
        let mut statements = query::parse(sql)?;
        if statements.len() != 1 {
            return Err(Error::Syntax(format!(
                "a prepared statement must be exactly one SQL statement, not {}",
                statements.len()
            )));
        }
        let statement = statements.pop().expect("one statement");
        if let Some(ddl) = classify_statement(&statement)? {
            return Ok(Prepared {
                statement: Some(statement),
                depth,
                command: ddl.command().into(),
                param_types: vec![],
                schema: Arc::new(arrow::datatypes::Schema::empty()),
                plans: Arc::default(),
            });
        }
        let snapshot = self.inner.current.get();
        let mut planned = statement.clone();
        query::rewrite_for_planning(&mut planned, &snapshot);
        let state = self.inner.engine.state_at(snapshot, self.commit_target());
        let (plan, command) = self.inner.engine.plan(&state, planned).await?;
        let param_types = parameter_types(&plan)?;
        // An INSERT's plan yields its row count, which PostgreSQL reports in the command tag,
        // never as a row: a client's Describe must get no columns for it (NoData).
        let schema = if returns_rows(command) {
            Arc::new(described_columns(&state, &plan))
        } else {
            Arc::new(arrow::datatypes::Schema::empty())
        };
        Ok(Prepared {
            statement: Some(statement),
            depth,
            command: command.into(),
            param_types,
            schema,
            plans: Arc::default(),
        })
    }

    /// Runs a statement made by [`Database::prepare`] with values for its parameters.
    pub async fn execute_prepared(
        &self,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
    ) -> Result<StatementResult> {
        self.execute_prepared_into(prepared, params, &self.commit_target())
            .await
    }

    pub(crate) async fn execute_prepared_into(
        &self,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
        target: &AppendTarget,
    ) -> Result<StatementResult> {
        depth::on_big_stack(
            prepared.depth,
            self.execute_prepared_on_stack(prepared, params, target),
        )
        .await
    }

    async fn execute_prepared_on_stack(
        &self,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
        target: &AppendTarget,
    ) -> Result<StatementResult> {
        if params.len() != prepared.param_types.len() {
            return Err(Error::Syntax(format!(
                "the statement takes {} parameter(s) but {} were given",
                prepared.param_types.len(),
                params.len()
            )));
        }
        if prepared.command == "SELECT" {
            self.inner.check_open()?;
            let snapshot = target.reads(self.inner.current.get());
            if let Some(reused) = prepared.plans.get(&params, &snapshot) {
                return self.inner.engine.run_reused(reused, snapshot).await;
            }
        }
        self.execute_statement(
            prepared.statement().clone(),
            params,
            target,
            Some(&prepared.plans),
        )
        .await
    }

    pub(crate) async fn execute_statement(
        &self,
        mut statement: DfStatement,
        params: Vec<ScalarValue>,
        target: &AppendTarget,
        cache: Option<&PlanCache>,
    ) -> Result<StatementResult> {
        self.inner.check_open()?;
        if let Some(ddl) = classify_statement(&statement)? {
            return self.run_ddl(ddl).await;
        }
        let snapshot = target.reads(self.inner.current.get());
        query::rewrite_for_planning(&mut statement, &snapshot);
        let insert = match &statement {
            DfStatement::Statement(s) => match s.as_ref() {
                ast::Statement::Insert(insert) => Some(insert.clone()),
                _ => None,
            },
            _ => None,
        };
        let engine = &self.inner.engine;
        let state = engine.state_at(Arc::clone(&snapshot), target.clone());
        let result = async {
            let (plan, command) = engine.plan(&state, statement).await?;
            let cache = cache.map(|c| (c, params.clone()));
            let plan = if params.is_empty() {
                plan
            } else {
                plan.with_param_values(params).map_err(Error::Query)?
            };
            engine.run_plan(state, plan, command, cache).await
        }
        .await;
        result.map_err(|e| match &insert {
            Some(insert) => name_values_null_error(e, insert, &snapshot),
            None => e,
        })
    }
}

/// A planned statement with its parameter types and result schema, from [`Database::prepare`].
#[derive(Debug, Clone)]
pub struct Prepared {
    /// `None` only while it is dropped (see `Drop`).
    statement: Option<DfStatement>,
    /// How deep the statement nests ([`depth::bound`]): deep ones run and drop on a stack of
    /// their own.
    depth: usize,
    /// The command it runs (`SELECT`, `INSERT`, `CREATE TABLE` …).
    pub command: String,
    /// Types of `$1`, `$2` …, as inferred from their use (`None` where nothing constrains one).
    pub param_types: Vec<Option<DataType>>,
    /// Schema of the rows it returns (empty for commands that return none: INSERT, DDL …;
    /// see [`Prepared::returns_rows`]).
    pub schema: SchemaRef,
    /// Its physical plans by parameter values, run again while valid (shared by clones).
    plans: Arc<PlanCache>,
}

impl Prepared {
    fn statement(&self) -> &DfStatement {
        self.statement
            .as_ref()
            .expect("a prepared statement keeps its statement until dropped")
    }

    /// Whether running it returns rows (a query or EXPLAIN), so that a client's Describe gets
    /// a row description; every other command answers only with its command tag.
    pub fn returns_rows(&self) -> bool {
        returns_rows(&self.command)
    }

    /// How many physical plans the statement keeps for reuse (one per recent set of parameter
    /// values; only queries that read views or nothing, without `now()`-like functions, are
    /// kept: see `docs/architecture.md`, "Prepared plans").
    pub fn cached_plans(&self) -> usize {
        self.plans.len()
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        // Dropping a statement's tree recurses as deep as it nests.
        if let Some(statement) = self.statement.take() {
            depth::with_big_stack(self.depth, move || drop(statement));
        }
    }
}

/// Whether a statement with this command tag returns rows.
fn returns_rows(command: &str) -> bool {
    matches!(command, "SELECT" | "EXPLAIN")
}

/// Statements Tally runs itself (DDL), or refuses before planning.
fn classify_statement(statement: &DfStatement) -> Result<Option<Ddl>> {
    match statement {
        DfStatement::Statement(s) => ddl::classify(s),
        DfStatement::CreateExternalTable(_) => Err(Error::NotSupported(
            "CREATE EXTERNAL TABLE is not supported".into(),
        )),
        DfStatement::CopyTo(_) => Err(Error::NotSupported(
            "COPY … TO a file is not supported".into(),
        )),
        _ => Ok(None),
    }
}

/// Parameter types in position order (`$1` first).
fn parameter_types(plan: &datafusion::logical_expr::LogicalPlan) -> Result<Vec<Option<DataType>>> {
    let by_name = plan.get_parameter_types().map_err(Error::Query)?;
    let mut numbered = Vec::with_capacity(by_name.len());
    for (name, ty) in by_name {
        let position = name
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                Error::NotSupported(format!(
                    "parameter {name}: only positional parameters ($1, $2 …) are supported"
                ))
            })?;
        numbered.push((position, ty));
    }
    let count = numbered.iter().map(|(p, _)| *p).max().unwrap_or(0);
    let mut types = vec![None; count];
    for (position, ty) in numbered {
        types[position - 1] = ty;
    }
    // `$1::bigint`: DataFusion infers no type from a cast, PostgreSQL takes the cast's.
    if types.iter().any(Option::is_none) {
        for (name, ty) in cast_placeholder_types(plan) {
            if let Some(slot) = name
                .strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| types.get_mut(n.wrapping_sub(1)))
                && slot.is_none()
            {
                *slot = Some(ty);
            }
        }
    }
    Ok(types)
}

/// Placeholders that are the direct operand of a cast, with the cast's type.
fn cast_placeholder_types(plan: &datafusion::logical_expr::LogicalPlan) -> Vec<(String, DataType)> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{Cast, Expr, TryCast};
    let mut found = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                match e {
                    Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => {
                        if let Expr::Placeholder(p) = expr.as_ref() {
                            found.push((p.id.clone(), field.data_type().clone()));
                        }
                    }
                    _ => {}
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    found
}

/// DataFusion rejects a NULL for a NOT NULL column while it builds an INSERT's VALUES, naming
/// only the position (`column2`). Name the table and column instead, like every other NOT NULL
/// error.
fn name_values_null_error(err: Error, insert: &ast::Insert, snapshot: &Snapshot) -> Error {
    let Error::Query(inner) = &err else {
        return err;
    };
    let message = inner.to_string();
    let values_position = message
        .split("Column 'column")
        .nth(1)
        .and_then(|rest| rest.split_once("' is declared as non-nullable"))
        .and_then(|(n, _)| n.parse::<usize>().ok());
    // A column left out of the INSERT's column list is filled with NULL, then checked against
    // the table's schema by position.
    let table_position = message
        .split("Invalid batch column at '")
        .nth(1)
        .and_then(|rest| rest.split_once("' has null but schema specifies non-nullable"))
        .and_then(|(n, _)| n.parse::<usize>().ok());
    if values_position.is_none() && table_position.is_none() {
        return err;
    }
    let ast::TableObject::TableName(name) = &insert.table else {
        return err;
    };
    let Some(table) = ddl::object_name(name)
        .ok()
        .and_then(|t| snapshot.tables.get(&t))
    else {
        return err;
    };
    let (column, row) = match (values_position, table_position) {
        (Some(position), _) => {
            let column = match insert.columns.get(position.wrapping_sub(1)) {
                Some(c) => {
                    c.0.last()
                        .and_then(|p| p.as_ident())
                        .map(|i| i.value.to_lowercase())
                }
                None if insert.columns.is_empty() => table
                    .def
                    .columns
                    .get(position.wrapping_sub(1))
                    .map(|c| c.name.clone()),
                None => None,
            };
            (column, first_literal_null(insert, position.wrapping_sub(1)))
        }
        (None, Some(index)) => (table.def.columns.get(index).map(|c| c.name.clone()), None),
        (None, None) => (None, None),
    };
    match column {
        Some(column) => Error::InvalidData {
            table: table.def.name.clone(),
            column,
            row,
            class: DataErrorClass::NotNull,
            reason: "null value violates NOT NULL constraint".into(),
        },
        None => err,
    }
}

/// The first VALUES row whose value at `index` is a literal NULL.
fn first_literal_null(insert: &ast::Insert, index: usize) -> Option<usize> {
    let ast::SetExpr::Values(values) = insert.source.as_ref()?.body.as_ref() else {
        return None;
    };
    values.rows.iter().position(|row| {
        matches!(row.get(index), Some(ast::Expr::Value(v)) if matches!(v.value, ast::Value::Null))
    })
}

/// The columns a Describe announces for `plan`: those of the analyzed plan, which execution
/// yields (a JSON column cast to text is text only after analysis), or the plan's own when it
/// cannot be analyzed before its parameters are bound.
fn described_columns(state: &SessionState, plan: &LogicalPlan) -> arrow::datatypes::Schema {
    let analyzed =
        state
            .analyzer()
            .execute_and_check(plan.clone(), state.config_options(), |_, _| {});
    match analyzed {
        Ok(analyzed) => analyzed.schema().as_arrow().clone(),
        Err(_) => plan.schema().as_arrow().clone(),
    }
}
