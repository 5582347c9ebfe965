//! SQL: parsing, routing DDL to the catalog, and running everything else through DataFusion
//! over a snapshot of the tables.

pub(crate) mod cast_names;
pub(crate) mod catalog;
pub(crate) mod ddl;
pub mod depth;
pub(crate) mod extension;
pub(crate) mod hidden;
pub(crate) mod intervals;
pub(crate) mod output_names;
pub(crate) mod plan_cache;
pub(crate) mod runtime;
pub mod settings;
pub(crate) mod stream;
pub(crate) mod system;
pub(crate) mod table;
pub(crate) mod typed_values;
pub(crate) mod view_match;

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Schema, SchemaRef, UInt64Type};
use datafusion::common::ScalarValue;
use datafusion::config::Dialect;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::{SessionConfig, SessionContext, SessionState};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{DdlStatement, DmlStatement, LogicalPlan, WriteOp};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::Tokenizer;

use crate::error::{Error, Result, from_datafusion};
use crate::options::Options;
use crate::snapshot::Snapshot;
use crate::transaction::AppendTarget;

pub(crate) use catalog::ReadSnapshot;
pub use catalog::{CATALOG, SCHEMA};
pub(crate) use plan_cache::PlanCache;
pub use stream::{BatchStream, StreamedResult};

/// The result of one SQL statement.
#[derive(Debug, Clone)]
pub struct StatementResult {
    /// The command, as in a Postgres command tag: `SELECT`, `INSERT`, `CREATE TABLE`, …
    pub command: String,
    /// Schema of the returned rows (empty for commands that return none).
    pub schema: SchemaRef,
    /// Returned rows.
    pub batches: Vec<RecordBatch>,
    /// Rows written by an INSERT; rows returned by a query.
    pub rows: u64,
    /// Things the user should know about the statement's effect (the server sends them as
    /// NOTICE messages).
    pub notices: Vec<String>,
}

impl StatementResult {
    pub(crate) fn command(command: &str, rows: u64) -> Self {
        StatementResult {
            command: command.into(),
            schema: Arc::new(Schema::empty()),
            batches: vec![],
            rows,
            notices: vec![],
        }
    }
}

/// Parses SQL text into statements (PostgreSQL dialect), after checking that it nests no
/// deeper than [`depth::MAX_DEPTH`]. Run it, and whatever holds its statements, on a stack
/// sized by [`statement_depth`] ([`depth::on_big_stack`]).
pub(crate) fn parse(sql: &str) -> Result<Vec<DfStatement>> {
    statement_depth(sql)?;
    DFParserBuilder::new(sql)
        .with_dialect(&PostgreSqlDialect {})
        // The depth check above is the limit that counts; sqlparser's own (50 levels by
        // default, about 15 nested subqueries) would refuse what PostgreSQL runs.
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .build()
        .and_then(|mut parser| parser.parse_statements())
        .map_err(parse_error)?
        .into_iter()
        .map(|mut statement| {
            intervals::drop_leading_precision(&mut statement)?;
            cast_names::name_sorted_casts(&mut statement);
            Ok(statement)
        })
        .collect()
}

/// sqlparser's recursion limit: several of its frames make one level of [`depth::bound`].
pub const PARSER_RECURSION_LIMIT: usize = 8 * depth::MAX_DEPTH;

/// How deep the statements in `sql` nest ([`depth::bound`]), or why they are too deep to run.
/// A string that does not tokenize counts as shallow: parsing it reports the syntax error.
pub fn statement_depth(sql: &str) -> Result<usize> {
    match Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() {
        Ok(tokens) => Ok(depth::check(&tokens)?),
        Err(_) => Ok(0),
    }
}

/// How deep the statements in `sql` nest ([`depth::bound`]), with no limit: for text that
/// passed [`statement_depth`] once (a stored view definition). 0 if it does not tokenize.
pub(crate) fn statement_bound(sql: &str) -> usize {
    Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .map_or(0, |tokens| depth::bound(&tokens))
}

fn parse_error(e: datafusion::error::DataFusionError) -> Error {
    match &e {
        datafusion::error::DataFusionError::SQL(p, _)
            if matches!(**p, ParserError::RecursionLimitExceeded) =>
        {
            Error::TooDeep {
                depth: PARSER_RECURSION_LIMIT,
                limit: PARSER_RECURSION_LIMIT,
                subqueries: false,
            }
        }
        _ => Error::Syntax(strip_prefix(e.to_string())),
    }
}

/// Leaves the sketch columns of the views in `snapshot` out of `statement`'s wildcards
/// (see [`hidden`]), and types an INSERT's UUID literals (see [`typed_values`]).
pub(crate) fn rewrite_for_planning(statement: &mut DfStatement, snapshot: &Snapshot) {
    hidden::hide_sketch_columns(statement, &|name| {
        snapshot.views.get(name).map(|v| v.view.hidden_columns())
    });
    typed_values::type_insert_literals(statement, snapshot);
}

fn strip_prefix(message: String) -> String {
    message
        .trim_start_matches("SQL error: ")
        .trim_start_matches("ParserError(\"")
        .trim_end_matches("\")")
        .to_string()
}

/// The DataFusion session configuration shared by all statements.
pub(crate) struct QueryEngine {
    base: SessionState,
    /// Progress of running view backfills (read by `tally_views`).
    pub(crate) backfills: Arc<crate::views::progress::BackfillProgress>,
    segments_dir: PathBuf,
    extensions: Vec<Arc<dyn extension::SessionExtension>>,
    /// Where plans execute (see [`runtime`]).
    runtime: runtime::QueryRuntime,
    /// [`Options::view_rewrite`]: whether view matching runs outside a
    /// [`settings::SessionSettings`] scope that says otherwise.
    view_rewrite: bool,
    /// The sketch functions a view rollup calls.
    sketch_functions: view_match::SketchFunctions,
}

impl QueryEngine {
    pub(crate) fn new(options: &Options, segments_dir: PathBuf) -> Result<Self> {
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema(CATALOG, SCHEMA)
            .with_create_default_catalog_and_schema(false);
        if let Some(n) = options.target_partitions {
            config = config.with_target_partitions(n.max(1));
        }
        let o = config.options_mut();
        o.sql_parser.dialect = Dialect::PostgreSQL;
        o.sql_parser.map_string_types_to_utf8view = false;
        o.execution.parquet.pushdown_filters = true;
        o.execution.parquet.reorder_filters = true;
        o.execution.parquet.schema_force_view_types = false;
        // `timestamptz` (casts, `now()`) is a UTC timestamp, as stored TIMESTAMPTZ columns are.
        o.execution.time_zone = Some("UTC".into());
        // DataFusion 55's min/max dynamic filter prunes rows while an accumulator is still NULL
        // (`min(x), max(ts)` skipped the rows holding x): a wrong answer, so it stays off.
        o.optimizer.enable_aggregate_dynamic_filter_pushdown = false;
        // A view scan's row count is an estimate (its plan may run at a later snapshot): let it
        // keep a small read in one partition instead of a round-robin repartition and a merge.
        o.execution
            .use_row_number_estimates_to_optimize_partitioning = true;
        let mut builder = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features();
        crate::functions::register(&mut builder);
        let mut base = builder.build();
        for extension in &options.session_extensions {
            extension.configure(&mut base).map_err(Error::Query)?;
        }
        let sketch_functions = view_match::SketchFunctions {
            hll_union: registered(base.aggregate_functions(), "hll_union_agg")?,
            hll_cardinality: registered(base.scalar_functions(), "hll_cardinality")?,
            theta_union: registered(base.aggregate_functions(), "theta_union_agg")?,
        };
        let threads = options.target_partitions.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
        });
        Ok(QueryEngine {
            base,
            backfills: Arc::default(),
            segments_dir,
            extensions: options.session_extensions.clone(),
            runtime: runtime::QueryRuntime::new(threads)?,
            view_rewrite: options.view_rewrite,
            sketch_functions,
        })
    }

    /// Plans and compiles a materialized view's query against the tables' definitions (no
    /// data is read). Fills in `def.table_id`.
    pub(crate) async fn compile_view(
        &self,
        tables: &std::collections::BTreeMap<String, Arc<crate::snapshot::TableState>>,
        mut def: crate::views::ViewDef,
    ) -> Result<crate::views::CompiledView> {
        use datafusion::catalog::{
            CatalogProvider, MemoryCatalogProvider, MemoryCatalogProviderList,
            MemorySchemaProvider, SchemaProvider,
        };
        use datafusion::datasource::empty::EmptyTable;
        let schema = Arc::new(MemorySchemaProvider::new());
        for (name, table) in tables {
            schema
                .register_table(
                    name.clone(),
                    Arc::new(EmptyTable::new(table.def.arrow_schema())),
                )
                .map_err(Error::Query)?;
        }
        let catalog = Arc::new(MemoryCatalogProvider::new());
        catalog
            .register_schema(SCHEMA, schema)
            .map_err(Error::Query)?;
        let list = Arc::new(MemoryCatalogProviderList::new());
        datafusion::catalog::CatalogProviderList::register_catalog(
            list.as_ref(),
            CATALOG.to_string(),
            catalog,
        );
        let mut state = self.base.clone();
        state.register_catalog_list(list);

        let mut statements = parse(&def.query)?;
        let (Some(statement), true) = (statements.pop(), statements.is_empty()) else {
            return Err(Error::InvalidDefinition(
                "a materialized view is defined by exactly one SELECT".into(),
            ));
        };
        let plan = state.statement_to_plan(statement).await.map_err(classify)?;
        let analysis = crate::views::definition::analyze(&plan)?;
        let table = tables
            .get(&analysis.table)
            .ok_or_else(|| Error::TableNotFound(analysis.table.clone()))?;
        def.table_id = table.def.id;
        crate::views::definition::compile(def, &plan, &state)
    }

    /// A session state whose catalog is `snapshot`, extended by the
    /// [`extension::SessionExtension`]s. An extension that fails is logged and skipped: the
    /// statement then runs without the names it would have added.
    pub(crate) fn state_at(&self, snapshot: Arc<Snapshot>, writer: AppendTarget) -> SessionState {
        let mut state = self.base.clone();
        // `now()` and its kin are the statement's start time, which planning folds in.
        state.mark_start_execution();
        state
            .config_mut()
            .set_extension(Arc::new(ReadSnapshot(Arc::clone(&snapshot))));
        state.register_catalog_list(Arc::new(catalog::SnapshotCatalogList::new(
            Arc::clone(&snapshot),
            self.segments_dir.clone(),
            writer,
            Arc::clone(&self.backfills),
        )));
        if !snapshot.views.is_empty() {
            // Queries over tables with views may be answered from them (see [`view_match`]).
            let enabled = settings::SessionSettings::current()
                .view_rewrite
                .unwrap_or(self.view_rewrite);
            let log = Arc::new(view_match::MatchLog::default());
            state.config_mut().set_extension(Arc::clone(&log));
            state.add_analyzer_rule(Arc::new(view_match::ViewMatch::new(
                Arc::clone(&snapshot),
                enabled,
                log,
                self.sketch_functions.clone(),
            )));
        }
        if !self.extensions.is_empty() {
            let catalog = extension::CatalogSnapshot::new(snapshot);
            for extension in &self.extensions {
                if let Err(e) = extension.extend(&mut state, &catalog) {
                    tracing::warn!("session extension {extension:?} failed: {e}");
                }
            }
        }
        state
    }

    /// Plans one statement that DataFusion handles (queries, INSERT, EXPLAIN …) and names its
    /// command, refusing what Tally does not support.
    pub(crate) async fn plan(
        &self,
        state: &SessionState,
        statement: DfStatement,
    ) -> Result<(LogicalPlan, &'static str)> {
        // A query is kept for a second planning (an INSERT's VALUES may be large).
        let retry = output_names::is_query(&statement).then(|| statement.clone());
        let plan = match (state.statement_to_plan(statement).await, retry) {
            (Ok(plan), _) => plan,
            // `SELECT a, a …`: PostgreSQL answers it, DataFusion needs distinct names.
            (Err(e), Some(retry)) if output_names::is_duplicate_names(&e) => {
                match output_names::plan(state, retry).await {
                    Some(plan) => plan,
                    None => return Err(classify(e)),
                }
            }
            (Err(e), _) => return Err(classify(e)),
        };
        let command = command_of(&plan)?;
        Ok((plan, command))
    }

    /// Stops the query runtime (at close).
    pub(crate) fn shutdown(&self) {
        self.runtime.shutdown();
    }

    /// Runs a plan made by [`QueryEngine::plan`] and collects its result, on the query
    /// runtime. Under a streaming entry point ([`stream`]) a query's batches are not
    /// collected: the plan starts, and its [`stream::BatchStream`] goes to the entry point.
    /// With `cache`, a query's physical plan is offered to it, under the parameter values
    /// that were bound.
    pub(crate) async fn run_plan(
        &self,
        mut state: SessionState,
        plan: LogicalPlan,
        command: &str,
        cache: Option<(&PlanCache, Vec<ScalarValue>)>,
    ) -> Result<StatementResult> {
        if command == "SELECT" {
            let slot = stream::claim();
            let streaming = slot.is_some();
            let (state, plan, physical, output) = self
                .runtime
                .run(async move {
                    // A query plan runs as DataFusion's `DataFrame` would run it, on this session
                    // state itself: going through a `SessionContext` copies the state (and its
                    // function registry) once more per statement.
                    let physical = state.create_physical_plan(&plan).await.map_err(classify)?;
                    let output =
                        execute(Arc::clone(&physical), state.task_ctx(), streaming).await?;
                    Ok((state, plan, physical, output))
                })
                .await?;
            // The columns as the query yields them, after analysis (a JSON column cast to text
            // is text there, while the plan as written still marks it JSON).
            let schema = physical.schema();
            if let Some((cache, params)) = cache {
                cache.insert(params, &plan, &physical, Arc::clone(&schema));
            }
            // The session (its snapshot) lives as long as the stream: a segment file is
            // deleted only once no snapshot holds it, and the scans open theirs as they go.
            return Ok(self.finish_query(schema, output, slot, state));
        }
        let scans = (command == "EXPLAIN").then(|| {
            let log = Arc::new(table::ScanLog::default());
            state.config_mut().set_extension(Arc::clone(&log));
            log
        });
        let matched = (command == "EXPLAIN")
            .then(|| state.config().get_extension::<view_match::MatchLog>())
            .flatten();
        let (schema, mut batches) = self
            .runtime
            .run(async move {
                let ctx = SessionContext::new_with_state(state);
                let frame = ctx.execute_logical_plan(plan).await.map_err(classify)?;
                let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
                let batches = frame.collect().await.map_err(classify)?;
                Ok((schema, batches))
            })
            .await?;
        if let Some(matched) = matched {
            batches.extend(explain_rows(&schema, "view matching", &matched.lines()));
        }
        if let Some(scans) = scans {
            batches.extend(explain_rows(&schema, "segment pruning", &scans.lines()));
        }
        let rows = if command == "INSERT" {
            batches
                .iter()
                .filter(|b| b.num_columns() == 1 && b.num_rows() > 0)
                .filter_map(|b| {
                    b.column(0)
                        .as_primitive_opt::<UInt64Type>()
                        .map(|c| c.value(0))
                })
                .sum()
        } else {
            batches.iter().map(|b| b.num_rows() as u64).sum()
        };
        Ok(StatementResult {
            command: command.into(),
            schema,
            batches,
            rows,
            notices: vec![],
        })
    }

    /// Runs a query plan kept by a [`PlanCache`] at `snapshot`, as [`QueryEngine::run_plan`]
    /// runs a fresh one.
    pub(crate) async fn run_reused(
        &self,
        reused: plan_cache::Reusable,
        snapshot: Arc<Snapshot>,
    ) -> Result<StatementResult> {
        let slot = stream::claim();
        let streaming = slot.is_some();
        let config = self
            .base
            .config()
            .clone()
            .with_extension(Arc::new(ReadSnapshot(snapshot)));
        let task = Arc::new(TaskContext::from(&self.base).with_session_config(config));
        let run = Arc::clone(&task);
        let output = self
            .runtime
            .run(async move { execute(reused.plan, run, streaming).await })
            .await?;
        Ok(self.finish_query(reused.schema, output, slot, task))
    }

    /// A query's result: its stream handed to the streaming entry point's `slot` (kept alive
    /// with `owner`), or its collected batches.
    fn finish_query<O: Send + 'static>(
        &self,
        schema: SchemaRef,
        output: Output,
        slot: Option<Arc<std::sync::Mutex<stream::Slot>>>,
        owner: O,
    ) -> StatementResult {
        match (output, slot) {
            (Output::Stream(batches), Some(slot)) => {
                let batches = stream::BatchStream::start(&self.runtime, schema, batches, owner);
                let result = StatementResult {
                    command: "SELECT".into(),
                    schema: batches.schema(),
                    batches: vec![],
                    rows: 0,
                    notices: vec![],
                };
                stream::fill(&slot, batches);
                result
            }
            (Output::Batches(batches), _) => StatementResult {
                command: "SELECT".into(),
                schema,
                rows: batches.iter().map(|b| b.num_rows() as u64).sum(),
                batches,
                notices: vec![],
            },
            (Output::Stream(_), None) => unreachable!("a stream is only made for a slot"),
        }
    }
}

/// What running a query plan gave: its stream, or its collected batches.
enum Output {
    Stream(SendableRecordBatchStream),
    Batches(Vec<RecordBatch>),
}

/// Starts a physical plan (`streaming`) or runs it to completion; on the query runtime.
async fn execute(
    plan: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
    streaming: bool,
) -> Result<Output> {
    use datafusion::physical_plan::{collect, execute_stream};
    Ok(if streaming {
        Output::Stream(execute_stream(plan, task).map_err(classify)?)
    } else {
        Output::Batches(collect(plan, task).await.map_err(classify)?)
    })
}

/// EXPLAIN's extra rows of one `kind`: `segment pruning | <table>: n of m segment(s) scanned
/// …`, one per table scan, and `view matching | <table>: answered from view …`, one per view
/// considered (none if the output is not EXPLAIN's two text columns).
fn explain_rows(schema: &SchemaRef, kind: &str, lines: &[String]) -> Option<RecordBatch> {
    let text = |i: usize| {
        schema
            .fields()
            .get(i)
            .is_some_and(|f| f.data_type() == &DataType::Utf8)
    };
    if lines.is_empty() || schema.fields().len() != 2 || !text(0) || !text(1) {
        return None;
    }
    let kinds = vec![kind; lines.len()];
    RecordBatch::try_new(
        Arc::clone(schema),
        vec![
            Arc::new(StringArray::from(kinds)),
            Arc::new(StringArray::from(lines.to_vec())),
        ],
    )
    .ok()
}

/// The function `name` of a registry, which Tally registers on every session.
fn registered<F>(
    functions: &std::collections::HashMap<String, Arc<F>>,
    name: &str,
) -> Result<Arc<F>> {
    functions.get(name).cloned().ok_or_else(|| {
        Error::Query(datafusion::error::DataFusionError::Internal(format!(
            "function {name} is not registered"
        )))
    })
}

/// The Postgres command tag of a plan, or why Tally refuses it.
fn command_of(plan: &LogicalPlan) -> Result<&'static str> {
    use datafusion::logical_expr::{Statement, TransactionConclusion};
    Ok(match plan {
        LogicalPlan::Ddl(ddl) => {
            return Err(Error::NotSupported(format!(
                "{} is not supported",
                ddl_name(ddl)
            )));
        }
        LogicalPlan::Copy(_) => {
            return Err(Error::NotSupported(
                "COPY … TO a file is not supported".into(),
            ));
        }
        LogicalPlan::Dml(DmlStatement {
            op: WriteOp::Insert(_),
            ..
        }) => "INSERT",
        LogicalPlan::Dml(DmlStatement { op, .. }) => {
            return Err(Error::NotSupported(format!(
                "{op} is not supported: tables are append-only"
            )));
        }
        LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => "EXPLAIN",
        LogicalPlan::Statement(statement) => match statement {
            Statement::TransactionStart(_) => "BEGIN",
            Statement::TransactionEnd(end) => match end.conclusion {
                TransactionConclusion::Commit => "COMMIT",
                TransactionConclusion::Rollback => "ROLLBACK",
            },
            Statement::SetVariable(_) => "SET",
            Statement::ResetVariable(_) => "RESET",
            Statement::Prepare(_) => "PREPARE",
            Statement::Execute(_) => "EXECUTE",
            Statement::Deallocate(_) => "DEALLOCATE",
        },
        _ => "SELECT",
    })
}

fn ddl_name(ddl: &DdlStatement) -> &'static str {
    match ddl {
        DdlStatement::CreateExternalTable(_) => "CREATE EXTERNAL TABLE",
        DdlStatement::CreateMemoryTable(_) => "CREATE TABLE … AS",
        DdlStatement::CreateView(_) => "CREATE VIEW",
        DdlStatement::CreateCatalogSchema(_) | DdlStatement::CreateCatalog(_) => "CREATE SCHEMA",
        DdlStatement::CreateIndex(_) => "CREATE INDEX",
        DdlStatement::DropTable(_) | DdlStatement::DropView(_) => "this DROP",
        DdlStatement::DropCatalogSchema(_) => "DROP SCHEMA",
        DdlStatement::CreateFunction(_) | DdlStatement::DropFunction(_) => "CREATE/DROP FUNCTION",
    }
}

/// Turns DataFusion errors into engine errors, recognizing the common user mistakes.
fn classify(err: datafusion::error::DataFusionError) -> Error {
    let engine = from_datafusion(err);
    let Error::Query(inner) = &engine else {
        return engine;
    };
    let message = inner.strip_backtrace();
    if let Some(rest) = message.strip_prefix("Error during planning: table '")
        && let Some(name) = rest.strip_suffix("' not found")
    {
        let table = name.rsplit('.').next().unwrap_or(name);
        return Error::TableNotFound(table.to_string());
    }
    if message.starts_with("SQL error: ParserError") {
        return Error::Syntax(strip_prefix(message));
    }
    engine
}
