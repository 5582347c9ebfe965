//! Everything that touches the disk: RocksDB column families, the hot tier's Arrow IPC
//! encoding and the Parquet segment files. No other module talks to RocksDB or the file system.

pub(crate) mod hot;
pub(crate) mod keys;
pub(crate) mod reclaim;
pub(crate) mod segment;
pub(crate) mod store;
