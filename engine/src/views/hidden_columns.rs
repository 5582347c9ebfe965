//! The hidden columns a view has after its declared ones, for reading its states beyond their
//! finalized values: each sketch as BYTEA (`<column>_sketch`, to union sketches), and each
//! average's sum and count (`<column>_sum`, `<column>_count`, to average over coarser groups).
//! `*` leaves them out ([`crate::query::hidden`]); naming them reads them.

use arrow::datatypes::{DataType, Field};

use super::definition::{AggKind, AvgPart, CompiledAgg, OutputSource, SKETCH_SUFFIX};
use crate::error::{Error, Result};

/// Suffix of the hidden DOUBLE PRECISION column holding an average's sum.
pub const SUM_SUFFIX: &str = "_sum";
/// Suffix of the hidden BIGINT column holding an average's count.
pub const COUNT_SUFFIX: &str = "_count";

/// Appends the hidden columns of the declared `outputs` (named by `fields`).
pub(super) fn add(
    aggs: &[CompiledAgg],
    outputs: &mut Vec<OutputSource>,
    fields: &mut Vec<Field>,
) -> Result<()> {
    let declared = outputs.len();
    for i in 0..declared {
        let agg = match outputs[i] {
            OutputSource::Agg(agg) if aggs[agg].kind.has_sketch_column() => agg,
            OutputSource::Percentile { agg, .. } => agg,
            _ => continue,
        };
        let name = format!("{}{SKETCH_SUFFIX}", fields[i].name());
        if fields.iter().any(|f| f.name() == &name) {
            return Err(Error::InvalidDefinition(format!(
                "column \"{name}\" would hold the sketch of column \"{}\"; rename one of them",
                fields[i].name()
            )));
        }
        outputs.push(OutputSource::Sketch(agg));
        fields.push(Field::new(name, DataType::Binary, true));
    }
    // Views defined before these columns existed may use their names: such an average keeps
    // only its value (and is not averaged over coarser groups).
    for i in 0..declared {
        let OutputSource::Agg(agg) = outputs[i] else {
            continue;
        };
        if aggs[agg].kind != AggKind::Avg {
            continue;
        }
        let sum = format!("{}{SUM_SUFFIX}", fields[i].name());
        let count = format!("{}{COUNT_SUFFIX}", fields[i].name());
        if fields
            .iter()
            .any(|f| f.name() == &sum || f.name() == &count)
        {
            continue;
        }
        outputs.push(OutputSource::AvgPart {
            agg,
            part: AvgPart::Sum,
        });
        fields.push(Field::new(sum, DataType::Float64, true));
        outputs.push(OutputSource::AvgPart {
            agg,
            part: AvgPart::Count,
        });
        fields.push(Field::new(count, DataType::Int64, true));
    }
    Ok(())
}
