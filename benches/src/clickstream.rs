//! The clickstream workload's data: a deterministic, seeded generator of N events, as Arrow
//! batches, a CSV file with a header and a Parquet file (the same rows in the same order).
//!
//! - ts: uniform over 7 days from 2026-01-01, sorted, then 1% of rows moved up to 6 hours
//!   earlier (late data; they keep their place in the file);
//! - user_id: Zipf(1.3) mod 1,000,000; session_id: user_id * 1000 + (half-hour slot mod 1000);
//! - page: `/p/<k>` with k Zipf(1.2) mod 2000; country: 50 ISO codes, Zipf(1.5);
//! - device: desktop 45%, mobile 50%, tablet 5%; status: 200 90%, 301 4%, 404 4%, 500 1.5%,
//!   503 0.5%;
//! - latency_ms: lognormal(3.5, 0.8) rounded to 3 decimals; bytes: uniform 200..200,000.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Zipf};
use tally_engine::reexports::parquet;

/// The table every engine loads.
pub const EVENTS_DDL: &str = "CREATE TABLE events (ts TIMESTAMP NOT NULL, user_id BIGINT, \
    session_id BIGINT, page TEXT, country TEXT, device TEXT, status INT, \
    latency_ms DOUBLE PRECISION, bytes BIGINT)";

/// The workload's three materialized views: `(name, defining query)`.
pub const VIEWS: [(&str, &str); 3] = [
    (
        "page_hourly",
        "SELECT date_trunc('hour', ts) AS hour, page, count(*) AS views, sum(bytes) AS bytes, \
         avg(latency_ms) AS avg_latency, max(latency_ms) AS max_latency, \
         approx_count_distinct(user_id) AS users FROM events GROUP BY 1, 2",
    ),
    (
        "country_daily",
        "SELECT date_trunc('day', ts) AS day, country, device, count(*) AS views, \
         approx_count_distinct(user_id) AS users, approx_count_distinct(session_id) AS sessions \
         FROM events GROUP BY 1, 2, 3",
    ),
    (
        "errors_minute",
        "SELECT date_trunc('minute', ts) AS minute, status, count(*) AS n FROM events \
         WHERE status >= 400 GROUP BY 1, 2",
    ),
];

/// 2026-01-01 00:00:00 UTC in microseconds.
const START_US: i64 = 1_767_225_600_000_000;
const SPAN_US: i64 = 7 * 86_400_000_000;
const LATE_US: i64 = 6 * 3_600_000_000;
const HALF_HOUR_US: i64 = 1_800_000_000;

const COUNTRIES: [&str; 50] = [
    "US", "IN", "BR", "DE", "GB", "FR", "JP", "ID", "MX", "IT", "ES", "CA", "KR", "RU", "TR", "NL",
    "PL", "AU", "VN", "PH", "TH", "AR", "CO", "EG", "NG", "PK", "BD", "SA", "ZA", "SE", "CH", "BE",
    "AT", "NO", "DK", "FI", "IE", "PT", "GR", "CZ", "RO", "HU", "IL", "AE", "SG", "MY", "CL", "PE",
    "NZ", "UA",
];

/// The events' Arrow schema.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("user_id", DataType::Int64, true),
        Field::new("session_id", DataType::Int64, true),
        Field::new("page", DataType::Utf8, true),
        Field::new("country", DataType::Utf8, true),
        Field::new("device", DataType::Utf8, true),
        Field::new("status", DataType::Int32, true),
        Field::new("latency_ms", DataType::Float64, true),
        Field::new("bytes", DataType::Int64, true),
    ]))
}

/// Generates `rows` events (seed `seed`) in batches of `batch_rows`.
pub fn generate(rows: usize, batch_rows: usize, seed: u64) -> Vec<RecordBatch> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut ts: Vec<i64> = (0..rows)
        .map(|_| START_US + rng.random_range(0..SPAN_US))
        .collect();
    ts.sort_unstable();
    for t in ts.iter_mut() {
        if rng.random_range(0..100) == 0 {
            *t -= rng.random_range(0..=LATE_US);
        }
    }
    // Zipf over a large domain, then folded with `mod` as the workload says.
    let users = Zipf::<f64>::new(1e12, 1.3).expect("valid Zipf");
    let pages = Zipf::<f64>::new(1e12, 1.2).expect("valid Zipf");
    let countries = Zipf::<f64>::new(COUNTRIES.len() as f64, 1.5).expect("valid Zipf");
    let latency = LogNormal::<f64>::new(3.5, 0.8).expect("valid lognormal");

    let mut out = Vec::with_capacity(rows.div_ceil(batch_rows.max(1)));
    for chunk in ts.chunks(batch_rows.max(1)) {
        let n = chunk.len();
        let mut user_id = Vec::with_capacity(n);
        let mut session_id = Vec::with_capacity(n);
        let mut page = Vec::with_capacity(n);
        let mut country = Vec::with_capacity(n);
        let mut device = Vec::with_capacity(n);
        let mut status = Vec::with_capacity(n);
        let mut latency_ms = Vec::with_capacity(n);
        let mut bytes = Vec::with_capacity(n);
        for &t in chunk {
            let user = (users.sample(&mut rng) as u64 % 1_000_000) as i64;
            user_id.push(user);
            session_id.push(user * 1000 + (t / HALF_HOUR_US) % 1000);
            page.push(format!("/p/{}", pages.sample(&mut rng) as u64 % 2000));
            country.push(COUNTRIES[countries.sample(&mut rng) as usize - 1]);
            device.push(match rng.random_range(0..100) {
                0..45 => "desktop",
                45..95 => "mobile",
                _ => "tablet",
            });
            status.push(match rng.random_range(0..1000) {
                0..900 => 200,
                900..940 => 301,
                940..980 => 404,
                980..995 => 500,
                _ => 503,
            });
            latency_ms.push((latency.sample(&mut rng) * 1000.0).round() / 1000.0);
            bytes.push(rng.random_range(200..200_000i64));
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampMicrosecondArray::from(chunk.to_vec())),
            Arc::new(Int64Array::from(user_id)),
            Arc::new(Int64Array::from(session_id)),
            Arc::new(StringArray::from(page)),
            Arc::new(StringArray::from(country)),
            Arc::new(StringArray::from(device)),
            Arc::new(Int32Array::from(status)),
            Arc::new(Float64Array::from(latency_ms)),
            Arc::new(Int64Array::from(bytes)),
        ];
        out.push(RecordBatch::try_new(schema(), columns).expect("valid batch"));
    }
    out
}

/// Writes the batches as `events.csv` (with a header) and `events.parquet` into `dir`.
pub fn write_files(dir: &Path, batches: &[RecordBatch]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let csv = BufWriter::with_capacity(1 << 20, File::create(dir.join("events.csv"))?);
    let mut writer = arrow::csv::WriterBuilder::new()
        .with_header(true)
        .with_timestamp_format("%Y-%m-%d %H:%M:%S%.6f".into())
        .build(csv);
    for batch in batches {
        writer.write(batch).map_err(std::io::Error::other)?;
    }
    drop(writer);

    let file = File::create(dir.join("events.parquet"))?;
    let properties = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema(), Some(properties))
        .map_err(std::io::Error::other)?;
    for batch in batches {
        writer.write(batch).map_err(std::io::Error::other)?;
    }
    writer.close().map_err(std::io::Error::other)?;
    Ok(())
}
