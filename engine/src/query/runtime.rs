//! The runtime that executes query plans, apart from the caller's.
//!
//! DataFusion runs a plan as CPU-bound tokio tasks that each process a batch before they yield.
//! On the caller's runtime (in the server, the one that also decodes COPY data and answers every
//! session), a burst of heavy queries queued every other task behind theirs: under 24 readers,
//! eight COPY writers got through a few COPYs a second. On a runtime of their own, the operating
//! system shares the cores between query threads and everything else.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

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
            // Plans execute here: evaluating a deep expression recurses as deep as it nests.
            .thread_stack_size(super::depth::THREAD_STACK)
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
        self.spawn(future).await?
    }

    /// Starts `future` on the query runtime. The task is aborted when the returned handle is
    /// dropped; awaiting the handle gives its output, or why it ended without one.
    pub(crate) fn spawn<F, T>(&self, future: F) -> AbortOnDrop<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        AbortOnDrop(self.handle.spawn(future))
    }

    /// Tasks alive on the runtime (for tests that check a query stopped).
    #[cfg(test)]
    pub(crate) fn alive_tasks(&self) -> usize {
        self.handle.metrics().num_alive_tasks()
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

/// A task on the query runtime, aborted when dropped so that a cancelled statement stops its
/// query. As a future: the task's output, [`Error::Closed`] if the runtime stopped it.
pub(crate) struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        Pin::new(&mut self.0).poll(cx).map(|ended| match ended {
            Ok(output) => Ok(output),
            Err(e) if e.is_cancelled() => Err(Error::Closed),
            Err(e) => Err(Error::Query(datafusion::error::DataFusionError::Execution(
                format!("the query failed unexpectedly (a bug in Tally): {e}"),
            ))),
        })
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
