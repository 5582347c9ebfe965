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
