//! End-to-end tests of Tally through its public interfaces (one test binary, many modules).

mod batch_ids;
mod bulk;
mod concurrency;
mod crash;
mod errors;
mod lifecycle;
mod metrics;
mod pg;
mod pg_auth;
mod pg_clients;
mod pg_copy;
mod pg_copy_binary;
mod pg_psycopg;
mod pg_robustness;
mod pg_stream;
mod pg_tools;
mod pg_transactions;
mod pg_views;
mod prepared_plans;
mod psql;
mod retention;
mod sql;
mod subscribe;
mod system_tables;
mod transactions;
mod views;
