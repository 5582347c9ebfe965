//! No code: this crate exists for its `Cargo.toml`. Its dependencies name, for every crate that
//! Tally's build commands would otherwise compile with different features, the union of those
//! features, so that `scripts/run.sh`, the benchmarks and the tests share one compiled copy.
//! Regenerate with `cargo hakari generate` after changing dependencies.
