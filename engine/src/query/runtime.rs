//! The runtime that executes query plans, apart from the caller's.
//!
//! DataFusion runs a plan as CPU-bound tokio tasks that each process a batch before they yield.
//! On the caller's runtime (in the server, the one that also decodes COPY data and answers every
//! session), a burst of heavy queries queued every other task behind theirs: under 24 readers,
//! eight COPY writers got through a few COPYs a second. On a runtime of their own, the operating
//! system shares the cores between query threads and everything else.

use std::future::Future;
use std::sync::Mutex;

use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// A multi-threaded tokio runtime for query execution, shut down with the database.
#[derive(Debug)]
pub(crate) struct QueryRuntime {
    runtime: Mutex<Option<Runtime>>,
    handle: Handle,
}

impl QueryRuntime {
    /// Starts `threads` worker threads named `tally-query`.
    pub(crate) fn new(threads: usize) -> Result<QueryRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("tally-query")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the query runtime", e))?;
        Ok(QueryRuntime {
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
        })
    }

    /// Runs `future` on the query runtime and waits for it. Dropping the returned future (a
    /// statement timeout, a client gone) aborts the query.
    pub(crate) async fn run<F, T>(&self, future: F) -> Result<T>
    where
        F: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let mut task = AbortOnDrop(self.handle.spawn(future));
        match (&mut task.0).await {
            Ok(result) => result,
            Err(e) if e.is_cancelled() => Err(Error::Closed),
            Err(e) => Err(Error::Query(datafusion::error::DataFusionError::Execution(
                format!("the query failed unexpectedly (a bug in Tally): {e}"),
            ))),
        }
    }

    /// Stops the worker threads without waiting for running queries (they fail with
    /// [`Error::Closed`]). Safe inside an async context.
    pub(crate) fn shutdown(&self) {
        let runtime = self
            .runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(runtime) = runtime {
            runtime.shutdown_background();
        }
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which tokio forbids inside another runtime.
        self.shutdown();
    }
}

/// Aborts its task when dropped, so a cancelled statement stops its query.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
