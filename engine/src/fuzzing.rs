//! Entry points for the cargo-fuzz targets in `fuzz/` only: thin wrappers over the crate-private
//! decoders of stored data (catalog entries, view states, group keys), so the targets feed them
//! arbitrary bytes as a damaged or hostile data directory would, and over the statement path
//! (depth bound, parser, planner) for arbitrary SQL text. Not a supported API.

mod sketches;

pub use sketches::{check_theta_state, check_top_k_state};

use crate::catalog::{self, SegmentMeta, TableDef};
use crate::error::Result;
use crate::query::depth;
use crate::views::ViewDef;
use crate::views::key::{self, KeyKind, KeyValue};
use crate::views::state;

/// Decodes a table definition as `Database::open` reads it from the catalog.
pub fn decode_table_def(bytes: &[u8]) -> Result<TableDef> {
    catalog::decode("table definition", bytes)
}

/// Decodes a segment entry as `Database::open` reads it from the catalog.
pub fn decode_segment(bytes: &[u8]) -> Result<SegmentMeta> {
    catalog::decode("segment", bytes)
}

/// Decodes a materialized view's entry as `Database::open` reads it from the catalog.
pub fn decode_view_def(bytes: &[u8]) -> Result<ViewDef> {
    catalog::decode("view definition", bytes)
}

/// Encodes a table definition as the catalog stores it.
pub fn encode_table_def(def: &TableDef) -> Vec<u8> {
    catalog::encode(def)
}

/// Encodes a segment entry as the catalog stores it.
pub fn encode_segment(segment: &SegmentMeta) -> Vec<u8> {
    catalog::encode(segment)
}

/// Encodes a materialized view's entry as the catalog stores it.
pub fn encode_view_def(def: &ViewDef) -> Vec<u8> {
    catalog::encode(def)
}

/// Walks an encoded group value as view reads do (borrowed states, sketches left serialized);
/// returns the number of states.
pub fn visit_view_state(bytes: &[u8]) -> Result<usize> {
    let mut states = 0;
    state::visit(bytes, |_, _| {
        states += 1;
        Ok(())
    })?;
    Ok(states)
}

/// Decodes one encoded group-key value of `kind` as view reads do: a part of a key split by
/// [`crate::internals::split_key`], presence byte included.
pub fn decode_key_value(encoded: &[u8], kind: KeyKind) -> Result<KeyValue> {
    let mut scratch = Vec::new();
    Ok(key::decode_one(encoded, kind, &mut scratch)?.to_value())
}

/// Orders two values of the same kind as the views' `min` and `max` do.
pub fn compare_values(a: &KeyValue, b: &KeyValue) -> std::cmp::Ordering {
    state::compare(a, b)
}

/// Decodes a view's delta part as `Database::open` reads it from `view_parts`, then walks each
/// group's states as view reads do; returns its number of groups.
pub fn decode_delta_part(bytes: &[u8]) -> Result<usize> {
    let part = crate::views::part::DeltaPart::decode(1, bytes)?;
    for i in 0..part.len() {
        state::visit(part.states.value(i), |_, _| Ok(()))?;
    }
    Ok(part.len())
}

/// Checks how deep `sql` nests and parses it, as every entry point of Tally does, then plans,
/// optimizes and physically plans each statement with a plain DataFusion session over a table
/// `t (x BIGINT, s TEXT, b BOOLEAN)`, all on the stack Tally gives a statement of that depth
/// ([`depth::with_big_stack`]; a shallow one runs on the caller's). Returns the statement's
/// depth bound; errors are the statement's own (too deep, syntax, planning).
pub fn plan_sql(sql: &str) -> Result<usize> {
    let depth = crate::query::statement_depth(sql)?;
    depth::with_big_stack(depth, || {
        let statements = crate::query::parse(sql)?;
        let state = plain_session().state();
        for statement in statements {
            let plan = futures::executor::block_on(state.statement_to_plan(statement))?;
            let physical = futures::executor::block_on(state.create_physical_plan(&plan))?;
            drop((plan, physical));
        }
        Ok(depth)
    })
}

/// One DataFusion session with the table of [`plan_sql`], shared by every call.
fn plain_session() -> &'static datafusion::execution::context::SessionContext {
    use std::sync::{Arc, OnceLock};

    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::execution::context::SessionContext;

    static SESSION: OnceLock<SessionContext> = OnceLock::new();
    SESSION.get_or_init(|| {
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("b", DataType::Boolean, true),
        ]));
        let table = MemTable::try_new(schema, vec![vec![]]).expect("an empty table");
        let ctx = SessionContext::new();
        ctx.register_table("t", Arc::new(table))
            .expect("registering a table in a new session");
        ctx
    })
}

/// Reads `a` and `b` as quantile sketches (the BYTEA of `quantile_sketch`, the payload of view
/// state tag 10) the way views and `sketch_quantile` do, and checks what a damaged sketch must
/// never do: panic, answer outside [min, max] or a rank outside [0, 1], or write bytes that do
/// not read back as a sketch of the same count. Returns how many of the two were read.
pub fn check_quantile_sketches(a: &[u8], b: &[u8]) -> usize {
    use crate::sketch::Quantiles;

    let read: Vec<Quantiles> = [a, b]
        .into_iter()
        .filter_map(|bytes| Quantiles::from_bytes(bytes).ok())
        .collect();
    for sketch in &read {
        let mut sketch = sketch.clone();
        let (lo, hi) = (sketch.quantile(0.0), sketch.quantile(1.0));
        for p in [0.0, 0.01, 0.5, 0.95, 0.99, 1.0] {
            let q = sketch.quantile(p).expect("p is in [0, 1]");
            if let (Some(q), Ok(Some(lo)), Ok(Some(hi))) = (q, &lo, &hi) {
                assert!(*lo <= q && q <= *hi, "p{p} = {q} outside [{lo}, {hi}]");
            }
        }
        assert!(sketch.quantile(1.5).is_err() && sketch.quantile(f64::NAN).is_err());
        for x in [f64::NEG_INFINITY, -1.0, 0.0, 1e9, f64::NAN] {
            if let Some(r) = sketch.rank(x) {
                assert!((0.0..=1.0).contains(&r), "rank {r} of {x}");
            }
        }
        let again = Quantiles::from_bytes(&sketch.to_bytes()).expect("written bytes read back");
        assert_eq!(
            again.count(),
            sketch.count(),
            "a round trip changes the count"
        );
    }
    if let [x, y] = read.as_slice() {
        let mut merged = x.clone();
        if merged.merge(y).is_ok() {
            assert_eq!(merged.count(), x.count() + y.count());
            let union = Quantiles::union_all([x, y]).expect("the weights add up, as in the merge");
            assert_eq!(union.count(), merged.count());
            Quantiles::from_bytes(&union.to_bytes()).expect("a union reads back");
        }
    }
    read.len()
}
