//! The random events of the view property tests (`views::property`, `view_match::property`):
//! a few minutes' worth of rows with small, often NULL, group and value columns.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use proptest::prelude::*;
use tally_tests::JAN_1_2026_US;

/// One event: `ts` (minutes after 2026-01-01), two group columns, two values.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub minutes: i64,
    pub k1: Option<i32>,
    pub k2: Option<&'static str>,
    pub x: Option<i64>,
    /// `y` is stored as a multiple of 0.25 (see [`batch`]).
    pub y: Option<i32>,
}

/// A random [`Row`].
pub(crate) fn row() -> impl Strategy<Value = Row> {
    (
        0i64..600,
        prop::option::of(0i32..4),
        prop::option::of(prop::sample::select(vec!["a", "B", "b", "c"])),
        prop::option::of(-50i64..50),
        prop::option::of(-40i32..40),
    )
        .prop_map(|(minutes, k1, k2, x, y)| Row {
            minutes,
            k1,
            k2,
            x,
            y,
        })
}

/// `rows` as a batch of the tests' table `(ts TIMESTAMP NOT NULL, k1 INT, k2 TEXT, x BIGINT,
/// y DOUBLE PRECISION)`.
pub(crate) fn batch(rows: &[Row]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("k1", DataType::Int32, true),
        Field::new("k2", DataType::Utf8, true),
        Field::new("x", DataType::Int64, true),
        Field::new("y", DataType::Float64, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from_iter_values(
            rows.iter().map(|r| JAN_1_2026_US + r.minutes * 60_000_000),
        )),
        Arc::new(Int32Array::from_iter(rows.iter().map(|r| r.k1))),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.k2))),
        Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.x))),
        // Multiples of 0.25: float sums are exact in any order, so sums and averages of
        // views, rollups and recomputes are equal.
        Arc::new(Float64Array::from_iter(
            rows.iter().map(|r| r.y.map(|y| f64::from(y) * 0.25)),
        )),
    ];
    RecordBatch::try_new(schema, columns).unwrap()
}
