//! Criterion micro-benchmarks of Tally's hot inner pieces: merging view states (per aggregate
//! kind, in memory and encoded as RocksDB's merge operator sees them), HyperLogLog sketches,
//! the COPY csv decoder beside arrow-csv, and group-key encoding.
//!
//! `cargo bench -p tally-bench --bench micro`; the figures are in `docs/benchmarks.md`.

#[allow(dead_code)] // The bench uses the generator only, not the workload's files and views.
#[path = "../src/clickstream.rs"]
mod clickstream;

use std::hint::black_box;
use std::io::Cursor;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tally_engine::internals::{
    self, AggState, DistinctSet, Hll, KeyKind, KeyValue, decode_key, encode_key_value, split_key,
};
use tally_server::pg::copy::Decoder;
use tally_server::pg::statement::CopyFormat;

/// Rows of clickstream CSV decoded per iteration.
const CSV_ROWS: usize = 100_000;
/// Group keys encoded or decoded per iteration.
const KEYS: usize = 1024;
/// The workload's seed (`tally-bench generate`).
const SEED: u64 = 20260101;
const HOUR_US: i64 = 3_600_000_000;
const DAY_US: i64 = 24 * HOUR_US;

/// A sketch of the integers in `values`, inserted as views do (canonical bytes of each value).
fn hll(values: impl IntoIterator<Item = i64>) -> Hll {
    let mut hll = Hll::new();
    for v in values {
        hll.insert(&KeyValue::Int(v));
    }
    hll
}

/// An exact set of the integers in `values`.
fn distinct(values: impl Iterator<Item = i64>) -> DistinctSet {
    let mut set = DistinctSet::default();
    for v in values {
        set.insert(&KeyValue::Int(v));
    }
    set
}

/// Merging one delta state into an accumulated one, per aggregate kind.
fn state_merge(c: &mut Criterion) {
    let mut group = c.benchmark_group("state_merge");
    group.throughput(Throughput::Elements(1));
    let cases = [
        ("count", AggState::Count(1_000_000), AggState::Count(17)),
        (
            "sum_int",
            AggState::SumInt(Some(123_456_789)),
            AggState::SumInt(Some(4096)),
        ),
        (
            "sum_float",
            AggState::SumFloat(Some(12_345.678)),
            AggState::SumFloat(Some(33.1)),
        ),
        (
            "min",
            AggState::Min(Some(KeyValue::Float(12.5))),
            AggState::Min(Some(KeyValue::Float(3.25))),
        ),
        (
            "max",
            AggState::Max(Some(KeyValue::Float(812.5))),
            AggState::Max(Some(KeyValue::Float(1033.25))),
        ),
        (
            "avg",
            AggState::Avg {
                sum: 33_000.5,
                count: 1000,
            },
            AggState::Avg {
                sum: 330.25,
                count: 10,
            },
        ),
        // A few users per (hour, page) group: list/set mode on both sides.
        (
            "hll_sparse",
            AggState::Hll(hll(0..200)),
            AggState::Hll(hll(1000..1010)),
        ),
        // Two dense sketches of 50k users each.
        (
            "hll_dense",
            AggState::Hll(hll(0..50_000)),
            AggState::Hll(hll(25_000..75_000)),
        ),
        (
            "distinct_int",
            AggState::Distinct(distinct((0..50_000).map(|v| v * 7))),
            AggState::Distinct(distinct((0..1000).map(|v| v * 13))),
        ),
    ];
    for (name, acc, delta) in cases {
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || acc.clone(),
                |acc| internals::merge_state(acc, black_box(&delta)).expect("same kinds"),
                BatchSize::SmallInput,
            )
        });
    }

    // Two encoded values of a group, merged as the `views` merge operator does.
    let page_hourly = |users: std::ops::Range<i64>, n: i64| {
        internals::encode_states(&[
            AggState::Count(n),
            AggState::SumInt(Some(n * 1000)),
            AggState::Avg {
                sum: n as f64 * 33.0,
                count: n,
            },
            AggState::Max(Some(KeyValue::Float(n as f64))),
            AggState::Hll(hll(users)),
        ])
    };
    let country_daily = |users: std::ops::Range<i64>| {
        let sessions = users.clone().map(|user| user * 1000 + 17);
        internals::encode_states(&[
            AggState::Count(users.end - users.start),
            AggState::Hll(hll(users)),
            AggState::Hll(hll(sessions)),
        ])
    };
    let encoded = [
        (
            "encoded_page_hourly",
            page_hourly(0..200, 500),
            page_hourly(1000..1010, 12),
        ),
        (
            "encoded_country_daily",
            country_daily(0..50_000),
            country_daily(25_000..75_000),
        ),
    ];
    for (name, existing, operand) in encoded {
        group.bench_function(name, |b| {
            b.iter(|| {
                internals::merge_encoded_values(black_box(&existing), &[black_box(&operand)])
                    .expect("valid values")
            })
        });
    }
    group.finish();
}

/// HyperLogLog sketches on their own: building, merging, estimating, (de)serializing.
fn hll_sketch(c: &mut Criterion) {
    let dense = hll(0..50_000);
    let dense_other = hll(25_000..75_000);
    let sparse = hll(100_000..101_000);
    let tiny = hll(0..10);

    let mut group = c.benchmark_group("hll");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(1_000_000));
    group.bench_function("update", |b| {
        b.iter(|| {
            let mut sketch = Hll::new();
            for v in 0..1_000_000i64 {
                sketch.insert(&KeyValue::Int(black_box(v)));
            }
            sketch
        })
    });
    group.sample_size(100);
    // Enough for 100 samples of a dense serialization (about 0.5 ms each).
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    let merges = [
        ("merge/dense_dense", &dense, &dense_other),
        ("merge/sparse_into_dense", &dense, &sparse),
        ("merge/dense_into_sparse", &sparse, &dense),
        ("merge/sparse_sparse", &sparse, &tiny),
    ];
    for (name, acc, delta) in merges {
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || acc.clone(),
                |acc| acc.merge(black_box(delta)),
                BatchSize::SmallInput,
            )
        });
    }
    for (kind, sketch) in [("dense", &dense), ("sparse", &sparse)] {
        group.bench_function(format!("estimate/{kind}"), |b| {
            b.iter(|| black_box(sketch).estimate())
        });
        group.bench_function(format!("serialize/{kind}"), |b| {
            b.iter(|| black_box(sketch).to_bytes())
        });
        let bytes = sketch.to_bytes();
        group.bench_function(format!("deserialize/{kind}"), |b| {
            b.iter(|| Hll::from_bytes(black_box(&bytes)).expect("valid sketch"))
        });
    }
    group.finish();
}

/// The workload at `rows` events as CSV, written as `tally-bench generate` writes `events.csv`.
fn clickstream_csv(rows: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut writer = arrow::csv::WriterBuilder::new()
        .with_header(true)
        .with_timestamp_format("%Y-%m-%d %H:%M:%S%.6f".into())
        .build(&mut out);
    for batch in clickstream::generate(rows, 10_000, SEED) {
        writer.write(&batch).expect("writing to a Vec");
    }
    drop(writer);
    out
}

/// COPY … FROM STDIN (FORMAT csv, HEADER) decoding into Arrow batches, beside arrow-csv.
fn csv_decode(c: &mut Criterion) {
    let csv = clickstream_csv(CSV_ROWS);
    let schema = clickstream::schema();
    let rows = |batches: &[RecordBatch]| batches.iter().map(|b| b.num_rows()).sum::<usize>();

    let mut group = c.benchmark_group("csv_decode");
    group.sample_size(10);
    // 10 samples of 1 to 10 iterations of up to ~150 ms.
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(CSV_ROWS as u64));
    group.bench_function("tally_copy", |b| {
        b.iter(|| {
            let format = CopyFormat {
                csv: true,
                binary: false,
                delimiter: b',',
                null: String::new(),
                header: true,
                quote: b'"',
                escape: b'"',
            };
            let mut decoder = Decoder::new("events", &schema, &[], format).expect("valid schema");
            let mut batches = Vec::new();
            // 64 KiB, a typical CopyData message from a client streaming a file.
            for chunk in csv.chunks(64 * 1024) {
                batches.extend(decoder.feed(chunk).expect("valid csv"));
            }
            batches.extend(decoder.finish().expect("valid csv"));
            assert_eq!(rows(&batches), CSV_ROWS);
            batches
        })
    });
    // The same rows in PostgreSQL's binary COPY format (as asyncpg and psycopg send them).
    let binary_format = CopyFormat {
        csv: false,
        binary: true,
        delimiter: b'\t',
        null: String::new(),
        header: false,
        quote: b'"',
        escape: b'"',
    };
    let generated = clickstream::generate(CSV_ROWS, 10_000, SEED);
    let binary = tally_server::pg::copy::encode_rows(&generated, &schema, &binary_format)
        .expect("encodable rows")
        .concat();
    group.bench_function("tally_copy_binary", |b| {
        b.iter(|| {
            let mut decoder =
                Decoder::new("events", &schema, &[], binary_format.clone()).expect("valid schema");
            let mut batches = Vec::new();
            for chunk in binary.chunks(64 * 1024) {
                batches.extend(decoder.feed(chunk).expect("valid input"));
            }
            batches.extend(decoder.finish().expect("valid input"));
            assert_eq!(rows(&batches), CSV_ROWS);
            batches
        })
    });
    group.bench_function("arrow_csv", |b| {
        b.iter(|| {
            let reader = arrow::csv::ReaderBuilder::new(schema.clone())
                .with_header(true)
                .with_batch_size(8192)
                .build(Cursor::new(&csv))
                .expect("valid reader");
            let batches: Vec<RecordBatch> = reader.map(|b| b.expect("valid csv")).collect();
            assert_eq!(rows(&batches), CSV_ROWS);
            batches
        })
    });
    group.finish();
}

/// Group keys of the workload's views: `page_hourly` (hour, page) and `country_daily`
/// (day, country, device).
fn keys(c: &mut Criterion) {
    let batch = &clickstream::generate(KEYS, KEYS, SEED)[0];
    let ts = batch.column(0).as_primitive::<TimestampMicrosecondType>();
    let text = |i: usize, row: usize| {
        KeyValue::Bytes(
            batch
                .column(i)
                .as_string::<i32>()
                .value(row)
                .as_bytes()
                .to_vec(),
        )
    };
    let hour_page: Vec<Vec<KeyValue>> = (0..KEYS)
        .map(|r| {
            let t = ts.value(r);
            vec![KeyValue::Int(t - t.rem_euclid(HOUR_US)), text(3, r)]
        })
        .collect();
    let day_country_device: Vec<Vec<KeyValue>> = (0..KEYS)
        .map(|r| {
            let t = ts.value(r);
            vec![
                KeyValue::Int(t - t.rem_euclid(DAY_US)),
                text(4, r),
                text(5, r),
            ]
        })
        .collect();
    let cases = [
        ("hour_page", hour_page, vec![KeyKind::Int, KeyKind::Bytes]),
        (
            "day_country_device",
            day_country_device,
            vec![KeyKind::Int, KeyKind::Bytes, KeyKind::Bytes],
        ),
    ];

    let encoded: Vec<Vec<Vec<u8>>> = cases
        .iter()
        .map(|(_, values, _)| {
            values
                .iter()
                .map(|key| {
                    let mut out = Vec::new();
                    key.iter().for_each(|v| encode_key_value(&mut out, v));
                    out
                })
                .collect()
        })
        .collect();

    let mut group = c.benchmark_group("key_encode");
    group.throughput(Throughput::Elements(KEYS as u64));
    for (name, values, _) in &cases {
        group.bench_function(*name, |b| {
            let mut out = Vec::with_capacity(64);
            b.iter(|| {
                for key in black_box(values) {
                    out.clear();
                    key.iter().for_each(|v| encode_key_value(&mut out, v));
                    black_box(&out);
                }
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("key_decode");
    group.throughput(Throughput::Elements(KEYS as u64));
    for ((name, _, kinds), keys) in cases.iter().zip(&encoded) {
        group.bench_function(*name, |b| {
            b.iter(|| {
                for key in black_box(keys) {
                    black_box(decode_key(key, kinds).expect("valid key"));
                }
            })
        });
    }
    group.finish();

    // What a view read does to filter groups on the key bytes before decoding them.
    let mut group = c.benchmark_group("key_split");
    group.throughput(Throughput::Elements(KEYS as u64));
    for ((name, _, kinds), keys) in cases.iter().zip(&encoded) {
        group.bench_function(*name, |b| {
            b.iter(|| {
                for key in black_box(keys) {
                    black_box(split_key(key, kinds).expect("valid key"));
                }
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = micro;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = state_merge, hll_sketch, csv_decode, keys
}
criterion_main!(micro);
