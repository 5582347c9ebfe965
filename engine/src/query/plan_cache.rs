//! Physical plans of a prepared query, kept per parameter values and run again at later
//! snapshots, so that a dashboard's repeated statement skips SQL planning, the optimizers and
//! physical planning (most of a point read's cost).
//!
//! A plan is kept only when nothing in it depends on the snapshot or the moment it was planned
//! at:
//! - every relation it reads is a materialized view, whose scan ([`ViewScanExec`]) reads when
//!   it runs, from the snapshot of its task context; plans that read nothing (`SELECT 1`)
//!   qualify too. Table scans list their segment files at planning, and the optimizer answers
//!   some aggregates of a table from its statistics, so a plan that reads a table is not kept;
//! - it calls no stable function (`now()`, `current_date` …), which the optimizer folds into a
//!   constant at planning;
//! - no operator consumes a dynamic filter that another produces (DataFusion's
//!   [`reset_plan_states`] cannot make such a plan run twice).
//!
//! A kept plan is used while every view it reads has the id it had: a view dropped and created
//! again under the same name is planned afresh. Each run starts from a copy with its operators'
//! state reset ([`reset_plan_states`]), so runs may overlap.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use datafusion::catalog::default_table_source::source_as_provider;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::physical_expr::expressions::DynamicFilterPhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::placeholder_row::PlaceholderRowExec;

use crate::snapshot::Snapshot;
use crate::views::provider::{ViewScanExec, ViewTable};

/// Plans kept per prepared statement: enough for a dashboard panel's parameter values (a
/// least-recently-used list cycled by more values than it holds would never hit). A plan is a
/// few KiB.
const CAPACITY: usize = 64;

/// Parameters larger than this (bytes, all together) are not worth a cache entry.
const MAX_PARAMS_BYTES: usize = 4096;

/// The kept plans of one prepared statement, most recently used first.
#[derive(Debug, Default)]
pub(crate) struct PlanCache {
    entries: Mutex<VecDeque<CachedPlan>>,
}

#[derive(Debug)]
struct CachedPlan {
    params: Vec<ScalarValue>,
    plan: Arc<dyn ExecutionPlan>,
    /// The logical plan's schema: what the statement reports as its columns.
    schema: SchemaRef,
    /// The views it reads, by name and id.
    views: Vec<(String, u64)>,
}

/// A kept plan, ready to run once.
pub(crate) struct Reusable {
    /// A copy of the kept plan with its operators' state reset.
    pub plan: Arc<dyn ExecutionPlan>,
    /// Schema of its rows.
    pub schema: SchemaRef,
}

impl PlanCache {
    /// The plan kept for `params`, if it is still valid at `snapshot`; an entry that is not is
    /// dropped.
    pub(crate) fn get(&self, params: &[ScalarValue], snapshot: &Snapshot) -> Option<Reusable> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let at = entries.iter().position(|e| e.params == params)?;
        let entry = entries.remove(at)?;
        let valid = entry.views.iter().all(|(name, id)| {
            snapshot
                .views
                .get(name)
                .is_some_and(|v| v.view.def.id == *id)
        });
        if !valid {
            return None;
        }
        let reusable = reset_plan_states(Arc::clone(&entry.plan))
            .ok()
            .map(|plan| Reusable {
                plan,
                schema: Arc::clone(&entry.schema),
            });
        entries.push_front(entry);
        reusable
    }

    /// Keeps `plan` (made from `logical` with `params` bound) if it can run again at a later
    /// snapshot; see the module documentation.
    pub(crate) fn insert(
        &self,
        params: Vec<ScalarValue>,
        logical: &LogicalPlan,
        plan: &Arc<dyn ExecutionPlan>,
        schema: SchemaRef,
    ) {
        let bytes: usize = params.iter().map(ScalarValue::size).sum();
        if bytes > MAX_PARAMS_BYTES || !reads_only_views(logical) || calls_stable_functions(logical)
        {
            return;
        }
        let Some(views) = rerunnable_views(plan) else {
            return;
        };
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|e| e.params != params);
        entries.push_front(CachedPlan {
            params,
            plan: Arc::clone(plan),
            schema,
            views,
        });
        entries.truncate(CAPACITY);
    }

    /// How many plans are kept.
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Whether every relation the plan (or a subquery in it) scans is a materialized view. The
/// physical plan alone cannot tell: the optimizer answers `count(*)` of a table from the
/// statistics of the snapshot it plans at, leaving no scan behind.
fn reads_only_views(plan: &LogicalPlan) -> bool {
    let mut only_views = true;
    let visit = plan.apply_with_subqueries(|node| {
        only_views &= match node {
            LogicalPlan::TableScan(scan) => source_as_provider(&scan.source)
                .is_ok_and(|provider| provider.downcast_ref::<ViewTable>().is_some()),
            LogicalPlan::Extension(_) => false,
            _ => true,
        };
        Ok(if only_views {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    only_views && visit.is_ok()
}

/// Whether the plan (or a subquery in it) calls a function whose result is fixed for a
/// statement but not across statements (`now()`): planning folds those into constants.
pub(crate) fn calls_stable_functions(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let visit = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::ScalarFunction(f) = e
                    && f.func.signature().volatility == Volatility::Stable
                {
                    found = true;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    // A failed walk cannot vouch for the plan.
    found || visit.is_err()
}

/// The views a physical plan reads, when it can run again at another snapshot: every leaf is a
/// view scan or reads nothing, and no operator consumes a dynamic filter.
fn rerunnable_views(plan: &Arc<dyn ExecutionPlan>) -> Option<Vec<(String, u64)>> {
    let mut views = Vec::new();
    let mut rerunnable = true;
    let walk = plan.apply(|node| {
        if node.children().is_empty() {
            if let Some(scan) = node.downcast_ref::<ViewScanExec>() {
                let (name, id) = scan.view();
                views.push((name.to_string(), id));
            } else if node.downcast_ref::<PlaceholderRowExec>().is_none()
                && node.downcast_ref::<EmptyExec>().is_none()
            {
                rerunnable = false;
            }
        }
        if consumes_dynamic_filters(node.as_ref())? {
            rerunnable = false;
        }
        Ok(if rerunnable {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    (walk.is_ok() && rerunnable).then_some(views)
}

/// Whether an operator's expressions hold a dynamic filter it did not produce.
fn consumes_dynamic_filters(node: &dyn ExecutionPlan) -> DfResult<bool> {
    let produced: Vec<*const ()> = node
        .dynamic_expressions_produced()
        .iter()
        .map(|e| Arc::as_ptr(e).cast::<()>())
        .collect();
    let mut consumed = false;
    node.apply_expressions(&mut |root| {
        root.apply(|e| {
            if e.downcast_ref::<DynamicFilterPhysicalExpr>().is_some()
                && !produced.contains(&Arc::as_ptr(e).cast::<()>())
            {
                consumed = true;
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })
    })?;
    Ok(consumed)
}
