//! The `tally` binary driven as a user drives it: started as a child process on a free port,
//! talked to through a Postgres driver, stopped with signals or killed with SIGKILL.
//!
//! - `signals`: SIGTERM and SIGINT under load stop the server in time and keep every
//!   acknowledged COPY; a connected `SUBSCRIBE` does not hold shutdown past the grace period;
//! - `crash_loop`: kill -9 at random moments of concurrent COPYs and flushes, then check;
//! - `load`: 8 writers and 24 readers at once, RSS sampled;
//! - `disk_full`: a data directory on a small tmpfs fills up (skipped where mounting is not
//!   permitted);
//! - `metrics`: `--metrics` serves Prometheus text that parses and counts what was done.

mod crash_loop;
mod disk_full;
mod harness;
mod load;
mod metrics;
mod signals;
mod workload;
