//! Analysis of `CREATE MATERIALIZED VIEW … AS SELECT`: the query is planned by DataFusion, its
//! shape checked once (with a precise error for anything that cannot be maintained
//! incrementally), and its expressions compiled to physical expressions evaluated per batch.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNode;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, Volatility};
use datafusion::physical_expr::PhysicalExpr;

use super::ViewDef;
use super::key::KeyKind;
use super::percentile;
use crate::error::{Error, Result};
use crate::query::depth;

/// The kind of an aggregate a view maintains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggKind {
    /// `count(*)`, `count(x)`.
    Count,
    /// `sum(x)`.
    Sum,
    /// `min(x)`.
    Min,
    /// `max(x)`.
    Max,
    /// `avg(x)`.
    Avg,
    /// `approx_count_distinct(x)` / `approx_distinct(x)`: a HyperLogLog sketch.
    ApproxDistinct,
    /// `count(DISTINCT x)`: an exact set.
    CountDistinct,
    /// `approx_percentile_cont` / `approx_median`: one t-digest per argument, shared by every
    /// percentile of it (each read through [`OutputSource::Percentile`]).
    Quantiles,
    /// `approx_top_k(x, k)`: a frequent items sketch, read as the JSON text of its `k` most
    /// frequent values (and as BYTEA in `<column>_sketch`).
    TopK(usize),
    /// `topk_sketch(x)`: a frequent items sketch, read as BYTEA.
    TopKSketch,
    /// `theta_sketch(x)`: a theta sketch, read as BYTEA.
    Theta,
}

impl AggKind {
    /// Whether the aggregate's column is an estimate whose sketch a hidden `<column>_sketch`
    /// BYTEA column exposes.
    pub(super) fn has_sketch_column(self) -> bool {
        matches!(self, AggKind::ApproxDistinct | AggKind::TopK(_))
    }
}

/// One maintained aggregate, compiled.
#[derive(Debug, Clone)]
pub(crate) struct CompiledAgg {
    pub kind: AggKind,
    /// The argument (`count(*)` counts a non-null literal).
    pub arg: Arc<dyn PhysicalExpr>,
    /// How argument values are held in the state.
    pub arg_kind: KeyKind,
    /// `FILTER (WHERE …)`.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// The type DataFusion gives the aggregate's result.
    pub output_type: DataType,
}

/// One group expression, compiled.
#[derive(Debug, Clone)]
pub(crate) struct CompiledGroup {
    pub expr: Arc<dyn PhysicalExpr>,
    pub kind: KeyKind,
    pub output_type: DataType,
}

/// Where a view's output column comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum OutputSource {
    /// The value of a group expression.
    Group(usize),
    /// The finalized value of an aggregate.
    Agg(usize),
    /// The serialized sketch of an `approx_count_distinct`, percentile or `approx_top_k` aggregate
    /// (`<column>_sketch`).
    Sketch(usize),
    /// The sum or the count an `avg` aggregate keeps (`<column>_sum`, `<column>_count`), for
    /// averages over coarser groups.
    AvgPart {
        /// The `avg` aggregate.
        agg: usize,
        /// Which of its two parts.
        part: AvgPart,
    },
    /// One percentile of the quantile sketch of an aggregate.
    Percentile {
        /// The aggregate holding the sketch.
        agg: usize,
        /// The fraction of values at or below the answer, in [0, 1].
        p: f64,
    },
}

/// The parts of an average a view exposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AvgPart {
    /// The sum of the values (DOUBLE PRECISION, NULL without values).
    Sum,
    /// The number of values (BIGINT).
    Count,
}

/// Suffix of the BYTEA column that exposes a sketch column's sketch (`approx_count_distinct`,
/// percentiles, `approx_top_k`).
pub const SKETCH_SUFFIX: &str = "_sketch";

/// A view ready to maintain and read.
#[derive(Debug, Clone)]
pub(crate) struct CompiledView {
    pub def: Arc<ViewDef>,
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    pub groups: Vec<CompiledGroup>,
    pub aggs: Vec<CompiledAgg>,
    pub outputs: Vec<OutputSource>,
    /// Output schema: the view's column names and DataFusion's types, all nullable.
    pub schema: SchemaRef,
    /// How deep its definition nests ([`depth::bound`]): its expressions are evaluated and
    /// dropped on a stack sized for that ([`depth::with_big_stack`]), whatever thread does it.
    pub depth: usize,
    /// Its definition as logical expressions, for answering queries over its table from it
    /// (`None`: never used for that).
    pub logical: Option<super::logical::LogicalView>,
}

impl Drop for CompiledView {
    fn drop(&mut self) {
        // Dropping an expression tree recurses as deep as it nests.
        let exprs = (
            self.filter.take(),
            std::mem::take(&mut self.groups),
            std::mem::take(&mut self.aggs),
            self.logical.take(),
        );
        depth::with_big_stack(self.depth, move || drop(exprs));
    }
}

impl CompiledView {
    /// Names of its hidden columns (`<column>_sketch`, an average's `<column>_sum` and
    /// `<column>_count`), in schema order: `*` leaves them out.
    pub(crate) fn hidden_columns(&self) -> Vec<String> {
        self.outputs
            .iter()
            .zip(self.schema.fields())
            .filter(|(source, _)| {
                matches!(
                    source,
                    OutputSource::Sketch(_) | OutputSource::AvgPart { .. }
                )
            })
            .map(|(_, field)| field.name().clone())
            .collect()
    }

    /// The key kinds of the group columns, in key order.
    pub(crate) fn group_kinds(&self) -> Vec<KeyKind> {
        self.groups.iter().map(|g| g.kind).collect()
    }
}

/// What analysis found, before it knows the view's id.
pub(crate) struct Analysis {
    /// Name of the aggregated table.
    pub table: String,
}

/// Finds the table a view query reads, checking the plan's shape.
pub(crate) fn analyze(plan: &LogicalPlan) -> Result<Analysis> {
    let shape = Shape::of(plan)?;
    Ok(Analysis { table: shape.table })
}

/// Compiles a planned view query for `def`.
pub(crate) fn compile(
    def: ViewDef,
    plan: &LogicalPlan,
    state: &SessionState,
) -> Result<CompiledView> {
    let shape = Shape::of(plan)?;
    let input_schema = shape.aggregate.input.schema();
    let physical = |expr: &Expr| {
        state
            .create_physical_expr(expr.clone(), input_schema)
            .map_err(Error::Query)
    };

    let filter = shape.filter.as_ref().map(&physical).transpose()?;
    let mut groups = Vec::new();
    for (i, expr) in shape.aggregate.group_expr.iter().enumerate() {
        let output_type = shape.aggregate.schema.field(i).data_type().clone();
        groups.push(CompiledGroup {
            expr: physical(expr)?,
            kind: key_kind(&output_type, expr)?,
            output_type,
        });
    }
    let group_count = groups.len();
    let mut aggs: Vec<CompiledAgg> = Vec::new();
    // Where each aggregate expression's value comes from: percentiles of one argument (and
    // filter) share one sketch, so that p50, p95 and p99 keep a single state.
    let mut sources = Vec::new();
    let mut sketches: Vec<(Expr, Option<Expr>, usize)> = Vec::new();
    for (i, expr) in shape.aggregate.aggr_expr.iter().enumerate() {
        let output_type = shape
            .aggregate
            .schema
            .field(group_count + i)
            .data_type()
            .clone();
        if let Some(percentile) = percentile::of(expr, input_schema)? {
            let existing = sketches
                .iter()
                .find(|(arg, filter, _)| *arg == percentile.arg && *filter == percentile.filter);
            let agg = match existing {
                Some((_, _, agg)) => *agg,
                None => {
                    aggs.push(CompiledAgg {
                        kind: AggKind::Quantiles,
                        arg: physical(&percentile.arg)?,
                        arg_kind: KeyKind::Float,
                        filter: percentile.filter.as_ref().map(&physical).transpose()?,
                        output_type: DataType::Float64,
                    });
                    sketches.push((percentile.arg, percentile.filter, aggs.len() - 1));
                    aggs.len() - 1
                }
            };
            sources.push(OutputSource::Percentile {
                agg,
                p: percentile.p,
            });
            continue;
        }
        aggs.push(compile_aggregate(
            expr,
            output_type,
            &physical,
            input_schema,
        )?);
        sources.push(OutputSource::Agg(aggs.len() - 1));
    }

    let projection = &shape.projection;
    let mut outputs = Vec::with_capacity(projection.len());
    let mut fields = Vec::with_capacity(projection.len());
    for (i, expr) in projection.iter().enumerate() {
        let Expr::Column(column) = unalias(expr) else {
            return Err(Error::NotSupported(format!(
                "view column {expr} computes on top of the aggregates; a materialized view's columns must be group expressions or aggregates (compute on top when you query the view)"
            )));
        };
        let index = shape
            .aggregate
            .schema
            .index_of_column(column)
            .map_err(Error::Query)?;
        outputs.push(if index < group_count {
            OutputSource::Group(index)
        } else {
            sources[index - group_count]
        });
        let field = plan.schema().field(i);
        // The metadata says which declared type a group column has (CHAR(n) …).
        fields.push(
            Field::new(field.name(), field.data_type().clone(), true)
                .with_metadata(field.metadata().clone()),
        );
    }
    super::hidden_columns::add(&aggs, &mut outputs, &mut fields)?;
    Ok(CompiledView {
        logical: super::logical::LogicalView::of(plan, state, &fields),
        depth: crate::query::statement_bound(&def.query),
        def: Arc::new(def),
        filter,
        groups,
        aggs,
        outputs,
        schema: Arc::new(Schema::new(fields)),
    })
}

fn compile_aggregate(
    expr: &Expr,
    output_type: DataType,
    physical: &impl Fn(&Expr) -> Result<Arc<dyn PhysicalExpr>>,
    input_schema: &datafusion::common::DFSchema,
) -> Result<CompiledAgg> {
    let Expr::AggregateFunction(function) = unalias(expr) else {
        return Err(Error::NotSupported(format!(
            "aggregate {expr} cannot be maintained"
        )));
    };
    let name = function.func.name().to_lowercase();
    let params = &function.params;
    if !params.order_by.is_empty() {
        return Err(Error::NotSupported(format!(
            "{name}(… ORDER BY …) cannot be maintained incrementally"
        )));
    }
    let kind = match (name.as_str(), params.distinct) {
        ("count", false) => AggKind::Count,
        ("count", true) => AggKind::CountDistinct,
        ("min" | "max", true) => {
            // DISTINCT does not change a minimum or maximum.
            if name == "min" {
                AggKind::Min
            } else {
                AggKind::Max
            }
        }
        (_, true) => {
            return Err(Error::NotSupported(format!(
                "{name}(DISTINCT …) cannot be maintained incrementally; count(DISTINCT …) can"
            )));
        }
        ("sum", _) => AggKind::Sum,
        ("min", _) => AggKind::Min,
        ("max", _) => AggKind::Max,
        ("avg" | "mean", _) => AggKind::Avg,
        ("approx_distinct" | "approx_count_distinct", _) => AggKind::ApproxDistinct,
        ("approx_top_k", _) => AggKind::TopK(top_k_of(&params.args)?),
        ("topk_sketch", _) => AggKind::TopKSketch,
        ("theta_sketch", _) => AggKind::Theta,
        (other, _) => {
            return Err(Error::NotSupported(format!(
                "aggregate {other} cannot be maintained incrementally; supported: count, sum, min, max, avg, approx_count_distinct, count(DISTINCT …), approx_percentile_cont, approx_median, approx_top_k, topk_sketch, theta_sketch"
            )));
        }
    };
    let args = match kind {
        AggKind::TopK(_) => &params.args[..1],
        _ => &params.args[..],
    };
    let [arg] = args else {
        return Err(Error::NotSupported(format!(
            "{name} with {} arguments cannot be maintained",
            params.args.len()
        )));
    };
    check_deterministic(arg)?;
    let arg_type = arg.get_type(input_schema).map_err(Error::Query)?;
    let mut arg_kind = key_kind(&arg_type, arg)?;
    let mut arg = arg.clone();
    if matches!(kind, AggKind::TopK(_) | AggKind::TopKSketch) {
        // A frequent items sketch counts values by their text form, as the ad-hoc function
        // does (see `sketch::TopK`).
        if arg_kind == KeyKind::Bytes && !arg_type.is_null() && !is_text(&arg_type) {
            return Err(Error::NotSupported(format!(
                "{name} of {arg_type} is not supported; count encode(x, 'hex') instead"
            )));
        }
        arg = Expr::Cast(datafusion::logical_expr::Cast::new(
            Box::new(arg),
            DataType::Utf8,
        ));
        arg_kind = KeyKind::Bytes;
    }
    let arg = &arg;
    let supported = match kind {
        AggKind::Count
        | AggKind::Min
        | AggKind::Max
        | AggKind::ApproxDistinct
        | AggKind::CountDistinct
        | AggKind::TopK(_)
        | AggKind::TopKSketch
        | AggKind::Theta => true,
        // Compiled by `percentile::of`, never here.
        AggKind::Quantiles => false,
        AggKind::Sum => {
            matches!(arg_kind, KeyKind::Int | KeyKind::Float | KeyKind::Decimal)
                && !arg_type.is_temporal()
        }
        AggKind::Avg => {
            matches!(arg_kind, KeyKind::Int | KeyKind::Float) && !arg_type.is_temporal()
        }
    };
    if !supported {
        return Err(Error::NotSupported(format!(
            "{name} of {arg_type} is not supported in materialized views"
        )));
    }
    let filter = params.filter.as_deref().map(|f| {
        check_deterministic(f)?;
        physical(f)
    });
    Ok(CompiledAgg {
        kind,
        arg: physical(arg)?,
        arg_kind,
        filter: filter.transpose()?,
        output_type,
    })
}

/// The `k` of `approx_top_k(x, k)`: a positive integer literal.
fn top_k_of(args: &[Expr]) -> Result<usize> {
    match args {
        [_, Expr::Literal(value, _)] => crate::functions::sketches::top_k_limit(value),
        [_, k] => Err(Error::NotSupported(format!(
            "approx_top_k(x, k) in a materialized view takes a constant k, not {k}"
        ))),
        _ => Err(Error::NotSupported(
            "approx_top_k takes two arguments: approx_top_k(x, k)".into(),
        )),
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// How values of a type are held in keys and states.
pub(crate) fn key_kind(data_type: &DataType, expr: &Expr) -> Result<KeyKind> {
    kind_of(data_type).ok_or_else(|| {
        Error::NotSupported(format!(
            "{expr} has type {data_type}, which a materialized view cannot group or aggregate"
        ))
    })
}

/// The canonical kind of a type's values, if Tally can hold them in keys and states.
pub(crate) fn kind_of(data_type: &DataType) -> Option<KeyKind> {
    use DataType::*;
    Some(match data_type {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | Date32 | Timestamp(_, _) => {
            KeyKind::Int
        }
        Float16 | Float32 | Float64 => KeyKind::Float,
        Decimal128(_, _) => KeyKind::Decimal,
        Boolean => KeyKind::Bool,
        Utf8 | LargeUtf8 | Utf8View | Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => {
            KeyKind::Bytes
        }
        Null => KeyKind::Int,
        _ => return None,
    })
}

pub(super) fn unalias(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(alias) => unalias(&alias.expr),
        other => other,
    }
}

/// Rejects subqueries and functions whose result can change between evaluations.
pub(super) fn check_deterministic(expr: &Expr) -> Result<()> {
    let mut problem = None;
    expr.apply(|e| {
        match e {
            Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_) => {
                problem = Some("subqueries cannot be maintained incrementally".to_string());
            }
            Expr::ScalarFunction(f) if f.func.signature().volatility != Volatility::Immutable => {
                problem = Some(format!(
                    "{}() is not deterministic, so a materialized view cannot use it",
                    f.func.name()
                ));
            }
            Expr::WindowFunction(_) => {
                problem = Some("window functions cannot be maintained incrementally".into())
            }
            _ => {}
        }
        Ok(if problem.is_some() {
            datafusion::common::tree_node::TreeNodeRecursion::Stop
        } else {
            datafusion::common::tree_node::TreeNodeRecursion::Continue
        })
    })
    .map_err(Error::Query)?;
    problem.map_or(Ok(()), |p| Err(Error::NotSupported(p)))
}

/// The one plan shape a view may have: Projection → Aggregate → [Filter] → [alias] → TableScan.
struct Shape<'a> {
    projection: Vec<Expr>,
    aggregate: &'a datafusion::logical_expr::Aggregate,
    filter: Option<Expr>,
    table: String,
}

impl<'a> Shape<'a> {
    fn of(plan: &'a LogicalPlan) -> Result<Shape<'a>> {
        let LogicalPlan::Projection(projection) = plan else {
            return Err(refuse(plan));
        };
        let LogicalPlan::Aggregate(aggregate) = projection.input.as_ref() else {
            return Err(match projection.input.as_ref() {
                LogicalPlan::Filter(f) if matches!(f.input.as_ref(), LogicalPlan::Aggregate(_)) => {
                    Error::NotSupported(
                        "HAVING cannot be maintained incrementally; filter when you query the view"
                            .into(),
                    )
                }
                LogicalPlan::TableScan(_) | LogicalPlan::Filter(_) => Error::NotSupported(
                    "a materialized view needs aggregates (count, sum, min, max, avg, approx_count_distinct) or GROUP BY"
                        .into(),
                ),
                other => refuse(other),
            });
        };
        for expr in aggregate.group_expr.iter().chain(&projection.expr) {
            check_deterministic(expr)?;
        }
        if aggregate
            .group_expr
            .iter()
            .any(|e| matches!(e, Expr::GroupingSet(_)))
        {
            return Err(Error::NotSupported(
                "GROUPING SETS, CUBE and ROLLUP are not supported in materialized views".into(),
            ));
        }
        let mut input = aggregate.input.as_ref();
        let mut filter = None;
        loop {
            match input {
                LogicalPlan::Filter(f) => {
                    check_deterministic(&f.predicate)?;
                    filter = Some(match filter {
                        None => f.predicate.clone(),
                        Some(other) => f.predicate.clone().and(other),
                    });
                    input = f.input.as_ref();
                }
                LogicalPlan::SubqueryAlias(alias)
                    if matches!(alias.input.as_ref(), LogicalPlan::TableScan(_)) =>
                {
                    input = alias.input.as_ref();
                }
                LogicalPlan::TableScan(scan) => {
                    return Ok(Shape {
                        projection: projection.expr.clone(),
                        aggregate,
                        filter,
                        table: scan.table_name.table().to_string(),
                    });
                }
                other => return Err(refuse(other)),
            }
        }
    }
}

/// The precise refusal for a plan node a view cannot have.
fn refuse(plan: &LogicalPlan) -> Error {
    let what = match plan {
        LogicalPlan::Join(_) => "joins",
        LogicalPlan::Window(_) => "window functions",
        LogicalPlan::Sort(_) => "ORDER BY",
        LogicalPlan::Limit(_) => "LIMIT",
        LogicalPlan::Distinct(_) => "SELECT DISTINCT",
        LogicalPlan::Union(_) => "UNION",
        LogicalPlan::Subquery(_) | LogicalPlan::SubqueryAlias(_) => "subqueries",
        LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => "a view without a table",
        LogicalPlan::Unnest(_) => "UNNEST",
        LogicalPlan::RecursiveQuery(_) => "recursive queries",
        _ => "this query shape",
    };
    Error::NotSupported(format!(
        "{what} cannot be maintained incrementally; a materialized view is SELECT <group expressions>, <aggregates> FROM <table> [WHERE …] [GROUP BY …]"
    ))
}

/// `query` compiled as view `id` over a table `t` of `schema`, planned by a plain DataFusion
/// session (for unit tests that need a view without a database).
#[cfg(test)]
pub(crate) fn compile_for_tests(query: &str, schema: &SchemaRef, id: u64) -> CompiledView {
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    let ctx = SessionContext::new();
    let table = MemTable::try_new(Arc::clone(schema), vec![vec![]]).expect("an empty table");
    ctx.register_table("t", Arc::new(table))
        .expect("registering t");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let plan = runtime
        .block_on(ctx.state().create_logical_plan(query))
        .expect("a plannable query");
    let def = ViewDef {
        v: crate::catalog::CATALOG_ENTRY_VERSION,
        id,
        name: "v".into(),
        table_id: 1,
        query: query.into(),
        status: super::ViewStatus::Ready,
        indexed: false,
    };
    compile(def, &plan, &ctx.state()).expect("a view query")
}
