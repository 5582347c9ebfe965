//! What every connection is doing, for the system table `tally_sessions` (PostgreSQL's
//! `pg_stat_activity`): who is connected from where, the statement running or last run, its
//! state, and the progress of a running COPY.
//!
//! Each connection holds a [`Registration`] (removed from the registry when the connection
//! ends) and updates its [`Activity`] as statements start and end; `tally_sessions` copies the
//! registry when a query scans it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use tally_engine::reexports::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use tally_engine::reexports::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use tally_engine::reexports::datafusion;
use tally_engine::{CATALOG, CatalogSnapshot, SCHEMA, SessionExtension};

use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

/// Name of the system table.
pub const TALLY_SESSIONS: &str = "tally_sessions";

/// The live sessions of a server.
#[derive(Debug, Default)]
pub struct Sessions {
    next_id: AtomicU64,
    live: Mutex<BTreeMap<u64, Arc<Activity>>>,
}

/// Who a session's client is, as its startup packet and socket tell.
#[derive(Debug, Clone, Default)]
pub struct Client {
    /// `user` of the startup packet.
    pub user: Option<String>,
    /// `database` of the startup packet.
    pub database: Option<String>,
    /// `application_name` of the startup packet (or a later SET).
    pub application_name: Option<String>,
    /// The peer address.
    pub address: Option<String>,
}

/// What a session is doing now.
#[derive(Debug, Clone)]
struct Current {
    state: &'static str,
    query: String,
    query_start: Option<SystemTime>,
    state_change: SystemTime,
}

/// One session's activity, updated by its connection.
#[derive(Debug)]
pub struct Activity {
    id: u64,
    started: SystemTime,
    client: Mutex<Client>,
    current: Mutex<Current>,
    copy_rows: AtomicU64,
    copy_bytes: AtomicU64,
}

impl Activity {
    /// The session's id (`pid` in `tally_sessions`).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Records the client's identity (kept from the first call that knows it).
    pub fn identify(&self, client: impl FnOnce() -> Client) {
        let mut known = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if known.user.is_none() {
            *known = client();
        }
    }

    /// Sets the application name (a `SET application_name`).
    pub fn set_application_name(&self, name: Option<String>) {
        self.client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .application_name = name;
    }

    /// A statement starts.
    pub fn start(&self, query: &str) {
        let now = SystemTime::now();
        self.copy_rows.store(0, Ordering::Relaxed);
        self.copy_bytes.store(0, Ordering::Relaxed);
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Current {
            state: "active",
            query: query.trim().to_string(),
            query_start: Some(now),
            state_change: now,
        };
    }

    /// The statement ended; the session waits, in or out of a transaction block.
    pub fn idle(&self, in_block: bool, block_failed: bool) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.state = match (in_block, block_failed) {
            (_, true) => "idle in transaction (aborted)",
            (true, false) => "idle in transaction",
            (false, false) => "idle",
        };
        current.state_change = SystemTime::now();
    }

    /// A running COPY FROM STDIN received `bytes` more and has decoded `rows` rows in all.
    pub fn copy_progress(&self, bytes: u64, rows: u64) {
        self.copy_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.copy_rows.store(rows, Ordering::Relaxed);
    }
}

/// A session's place in the registry; dropping it removes the session.
#[derive(Debug)]
pub struct Registration {
    activity: Arc<Activity>,
    sessions: Arc<Sessions>,
}

impl Registration {
    /// The session's activity.
    pub fn activity(&self) -> &Activity {
        &self.activity
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.sessions
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.activity.id);
    }
}

impl Sessions {
    /// Registers a new session (idle until its first statement).
    pub fn register(self: &Arc<Self>) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let now = SystemTime::now();
        let activity = Arc::new(Activity {
            id,
            started: now,
            client: Mutex::default(),
            current: Mutex::new(Current {
                state: "idle",
                query: String::new(),
                query_start: None,
                state_change: now,
            }),
            copy_rows: AtomicU64::new(0),
            copy_bytes: AtomicU64::new(0),
        });
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Arc::clone(&activity));
        Registration {
            activity,
            sessions: Arc::clone(self),
        }
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The columns of `tally_sessions`.
    fn schema() -> SchemaRef {
        let time = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        Arc::new(Schema::new(vec![
            Field::new("pid", DataType::Int64, false),
            Field::new("usename", DataType::Utf8, true),
            Field::new("datname", DataType::Utf8, true),
            Field::new("application_name", DataType::Utf8, true),
            Field::new("client_addr", DataType::Utf8, true),
            Field::new("backend_start", time.clone(), false),
            Field::new("state", DataType::Utf8, false),
            Field::new("query", DataType::Utf8, false),
            Field::new("query_start", time.clone(), true),
            Field::new("state_change", time, false),
            Field::new("copy_rows", DataType::Int64, false),
            Field::new("copy_bytes", DataType::Int64, false),
        ]))
    }

    /// The registry as one batch of `tally_sessions` rows.
    fn rows(&self) -> DfResult<RecordBatch> {
        let live: Vec<Arc<Activity>> = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let micros = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_micros() as i64)
                .unwrap_or(0)
        };
        let mut columns: (Vec<i64>, Vec<Option<String>>, Vec<Option<String>>) = Default::default();
        let (mut apps, mut addrs, mut starts) = (Vec::new(), Vec::new(), Vec::new());
        let (mut states, mut queries, mut query_starts, mut changes) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut copy_rows, mut copy_bytes) = (Vec::new(), Vec::new());
        for activity in &live {
            let client = activity
                .client
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let current = activity
                .current
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            columns.0.push(activity.id as i64);
            columns.1.push(client.user);
            columns.2.push(client.database);
            apps.push(client.application_name);
            addrs.push(client.address);
            starts.push(micros(activity.started));
            states.push(current.state);
            queries.push(current.query);
            query_starts.push(current.query_start.map(micros));
            changes.push(micros(current.state_change));
            copy_rows.push(activity.copy_rows.load(Ordering::Relaxed) as i64);
            copy_bytes.push(activity.copy_bytes.load(Ordering::Relaxed) as i64);
        }
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(columns.0)),
            Arc::new(StringArray::from(columns.1)),
            Arc::new(StringArray::from(columns.2)),
            Arc::new(StringArray::from(apps)),
            Arc::new(StringArray::from(addrs)),
            Arc::new(TimestampMicrosecondArray::from(starts).with_timezone("UTC")),
            Arc::new(StringArray::from(states)),
            Arc::new(StringArray::from(queries)),
            Arc::new(TimestampMicrosecondArray::from(query_starts).with_timezone("UTC")),
            Arc::new(TimestampMicrosecondArray::from(changes).with_timezone("UTC")),
            Arc::new(Int64Array::from(copy_rows)),
            Arc::new(Int64Array::from(copy_bytes)),
        ];
        RecordBatch::try_new(Sessions::schema(), arrays).map_err(DataFusionError::from)
    }
}

/// `tally_sessions`: the registry, read when a query scans it.
#[derive(Debug)]
struct SessionsTable {
    sessions: Arc<Sessions>,
}

#[async_trait]
impl TableProvider for SessionsTable {
    fn schema(&self) -> SchemaRef {
        Sessions::schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let rows = self.sessions.rows()?;
        MemTable::try_new(Sessions::schema(), vec![vec![rows]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// The session extension that adds `tally_sessions` to every statement's `public` schema.
#[derive(Debug)]
pub struct SessionsExtension(pub Arc<Sessions>);

impl SessionExtension for SessionsExtension {
    fn extend(&self, state: &mut SessionState, _catalog: &CatalogSnapshot) -> DfResult<()> {
        let schema = state
            .catalog_list()
            .catalog(CATALOG)
            .and_then(|c| c.schema(SCHEMA))
            .ok_or_else(|| DataFusionError::Internal(format!("schema {SCHEMA} is missing")))?;
        schema.register_table(
            TALLY_SESSIONS.to_string(),
            Arc::new(SessionsTable {
                sessions: Arc::clone(&self.0),
            }),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_leave_the_registry_when_their_registration_drops() {
        let sessions = Arc::new(Sessions::default());
        let a = sessions.register();
        let b = sessions.register();
        assert_ne!(a.activity().id(), b.activity().id());
        a.activity().start("COPY events FROM STDIN");
        a.activity().copy_progress(100, 7);
        a.activity().copy_progress(50, 9);
        b.activity().idle(true, false);
        let rows = sessions.rows().unwrap();
        assert_eq!(rows.num_rows(), 2);
        let state = rows.column_by_name("state").unwrap();
        let state = state.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(state.value(0), "active");
        assert_eq!(state.value(1), "idle in transaction");
        let copied = rows.column_by_name("copy_bytes").unwrap();
        let copied = copied.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(copied.value(0), 150);
        drop(a);
        assert_eq!(sessions.len(), 1);
    }
}
