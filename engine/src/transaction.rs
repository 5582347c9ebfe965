//! Transaction blocks: writes held until COMMIT, then committed together.
//!
//! Tally's tables are append-only, so a transaction has only appends to undo. Inside a
//! [`Transaction`], an `INSERT` is validated when it runs (bad rows fail the statement, not
//! the COMMIT) but its rows are held in memory, and a bulk load ([`Transaction::hold_bulk`])
//! keeps its spilled segment files unregistered. [`Transaction::commit`] commits every held
//! append in one atomic commit, views included; [`Transaction::rollback`], or dropping the
//! transaction, discards them. Savepoints mark a point in the list of held writes.
//!
//! Statements in a transaction read the committed data plus the transaction's own held rows
//! (its tables, not its materialized views, which change at COMMIT). DDL (`CREATE`/`DROP`)
//! takes effect at once, as if run outside the transaction.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;

use crate::bulk::BulkIngest;
use crate::commit::{Op, Outcome, Writer};
use crate::database::{Database, Prepared};
use crate::error::{Error, Result};
use crate::query::{self, StatementResult};
use crate::snapshot::{HotBatch, Snapshot};

/// Where an INSERT's rows go: committed at once, or held by a transaction.
#[derive(Clone)]
pub(crate) enum AppendTarget {
    /// Commit through the writer when the statement runs.
    Commit(Arc<Writer>),
    /// Hold in a transaction until it commits.
    Hold(Arc<Held>),
}

impl AppendTarget {
    /// What a statement with this target reads: `committed`, plus a transaction's held rows.
    pub(crate) fn reads(&self, committed: Arc<Snapshot>) -> Arc<Snapshot> {
        match self {
            AppendTarget::Commit(_) => committed,
            AppendTarget::Hold(held) => held.overlay(committed),
        }
    }

    /// Commits or holds an [`Op::Append`]; returns the rows it holds.
    pub(crate) async fn append(&self, op: Op, rows: u64) -> Result<u64> {
        match self {
            AppendTarget::Commit(writer) => match writer.commit(op).await? {
                Outcome::Appended { rows, .. } => Ok(rows),
                other => Err(Error::Corrupt(format!(
                    "unexpected commit outcome {other:?}"
                ))),
            },
            AppendTarget::Hold(held) => {
                held.push(HeldWrite::Append { op, rows });
                Ok(rows)
            }
        }
    }
}

impl fmt::Debug for AppendTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppendTarget::Commit(_) => f.write_str("Commit"),
            AppendTarget::Hold(held) => write!(f, "Hold({} writes)", held.len()),
        }
    }
}

/// One held write.
enum HeldWrite {
    /// An INSERT's validated rows.
    Append { op: Op, rows: u64 },
    /// A bulk load (COPY), its segment files written but not registered.
    Bulk(BulkIngest),
}

impl HeldWrite {
    fn rows(&self) -> u64 {
        match self {
            HeldWrite::Append { rows, .. } => *rows,
            HeldWrite::Bulk(bulk) => bulk.rows(),
        }
    }
}

/// The writes a transaction holds, in order.
#[derive(Default)]
pub(crate) struct Held {
    writes: Mutex<Vec<HeldWrite>>,
}

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<HeldWrite>> {
        self.writes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, write: HeldWrite) {
        self.lock().push(write);
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    /// `committed` with the held rows added to their tables: held INSERTs as hot batches, held
    /// bulk loads as their spilled (unregistered) segments and buffered batches.
    fn overlay(&self, committed: Arc<Snapshot>) -> Arc<Snapshot> {
        let writes = self.lock();
        if writes.is_empty() {
            return committed;
        }
        let mut snapshot = (*committed).clone();
        let now = Instant::now();
        for write in writes.iter() {
            let (table_id, batches, segments) = match write {
                HeldWrite::Append {
                    op:
                        Op::Append {
                            table_id, batches, ..
                        },
                    ..
                } => (
                    *table_id,
                    batches.iter().map(|(b, e)| (b.clone(), e.len())).collect(),
                    vec![],
                ),
                HeldWrite::Append { .. } => continue,
                HeldWrite::Bulk(bulk) => bulk.pending(),
            };
            // A table dropped since the write was held: the commit will fail; nothing to read.
            let Some(name) = snapshot.table_by_id(table_id).map(|t| t.def.name.clone()) else {
                continue;
            };
            let Some(state) = snapshot.tables.get_mut(&name) else {
                continue;
            };
            snapshot.held_tables.insert(table_id);
            let state = Arc::make_mut(state);
            state.hot.extend(batches.into_iter().map(|(batch, bytes)| {
                Arc::new(HotBatch {
                    seq: 0,
                    batch,
                    bytes,
                    since: now,
                })
            }));
            state.segments.extend(segments.into_iter().map(Arc::new));
        }
        Arc::new(snapshot)
    }
}

/// A transaction block over a [`Database`], from [`Database::begin`].
///
/// ```no_run
/// # async fn demo(db: tally_engine::Database) -> tally_engine::Result<()> {
/// let mut tx = db.begin();
/// tx.execute("INSERT INTO t VALUES ('2026-01-01 00:00:00', 1)").await?;
/// tx.savepoint("s1");
/// tx.execute("INSERT INTO t VALUES ('2026-01-01 00:00:01', 2)").await?;
/// tx.rollback_to("s1")?; // the second row is discarded
/// let rows = tx.commit().await?; // the first row is committed: 1
/// # Ok(()) }
/// ```
pub struct Transaction {
    db: Database,
    held: Arc<Held>,
    /// Savepoints by name, with the number of held writes when each was set.
    savepoints: Vec<(String, usize)>,
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("held_writes", &self.held.len())
            .field("held_rows", &self.held_rows())
            .field("savepoints", &self.savepoints)
            .finish()
    }
}

impl Transaction {
    pub(crate) fn new(db: Database) -> Transaction {
        Transaction {
            db,
            held: Arc::default(),
            savepoints: Vec::new(),
        }
    }

    fn target(&self) -> AppendTarget {
        AppendTarget::Hold(Arc::clone(&self.held))
    }

    /// Runs SQL statements like [`Database::execute`], holding the rows of every INSERT.
    pub async fn execute(&self, sql: &str) -> Result<Vec<StatementResult>> {
        let depth = query::statement_depth(sql)?;
        query::depth::on_big_stack(depth, async {
            let mut results = Vec::new();
            let mut settings = query::settings::SessionSettings::current();
            for statement in query::parse(sql)? {
                // `SET tally.view_rewrite` holds for the rest of the call.
                if let Some(value) = query::settings::view_rewrite_assignment(&statement) {
                    settings.view_rewrite = Some(value?);
                    results.push(StatementResult::command("SET", 0));
                    continue;
                }
                let target = self.target();
                let run = self.db.execute_statement(statement, vec![], &target, None);
                results.push(settings.scope(run).await?);
            }
            Ok(results)
        })
        .await
    }

    /// Runs a prepared statement like [`Database::execute_prepared`], holding an INSERT's rows.
    pub async fn execute_prepared(
        &self,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
    ) -> Result<StatementResult> {
        self.db
            .execute_prepared_into(prepared, params, &self.target())
            .await
    }

    /// Validates `batch` like [`Database::ingest`] and holds it; returns its rows.
    pub async fn ingest(&self, table: &str, batch: RecordBatch) -> Result<u64> {
        match self.db.append_op(table, &batch)? {
            Some((op, rows)) => self.target().append(op, rows).await,
            None => Ok(0),
        }
    }

    /// Holds a bulk load until the transaction commits; returns its rows.
    pub fn hold_bulk(&self, bulk: BulkIngest) -> u64 {
        let rows = bulk.rows();
        self.held.push(HeldWrite::Bulk(bulk));
        rows
    }

    /// Rows held so far.
    pub fn held_rows(&self) -> u64 {
        self.held.lock().iter().map(HeldWrite::rows).sum()
    }

    /// Sets a savepoint (a later one with the same name hides the earlier, as in PostgreSQL).
    pub fn savepoint(&mut self, name: &str) {
        let at = self.held.len();
        self.savepoints.push((name.to_string(), at));
    }

    fn find(&self, name: &str) -> Result<usize> {
        self.savepoints
            .iter()
            .rposition(|(n, _)| n == name)
            .ok_or_else(|| Error::NoSuchSavepoint(name.to_string()))
    }

    /// Forgets a savepoint and every savepoint set after it; the writes stay held.
    pub fn release(&mut self, name: &str) -> Result<()> {
        let i = self.find(name)?;
        self.savepoints.truncate(i);
        Ok(())
    }

    /// Discards the writes held since the savepoint, which stays set; later savepoints go.
    pub fn rollback_to(&mut self, name: &str) -> Result<()> {
        let i = self.find(name)?;
        let at = self.savepoints[i].1;
        self.savepoints.truncate(i + 1);
        // Dropped bulk loads delete their unregistered files.
        self.held.lock().truncate(at);
        Ok(())
    }

    /// Commits every held write in one atomic, durable commit; returns the rows written. On an
    /// error nothing is written.
    pub async fn commit(self) -> Result<u64> {
        let writes = std::mem::take(&mut *self.held.lock());
        if writes.is_empty() {
            return Ok(0);
        }
        let mut bulks = Vec::new();
        let mut ops = Vec::with_capacity(writes.len());
        for write in writes {
            match write {
                HeldWrite::Append { op, .. } => ops.push(op),
                HeldWrite::Bulk(mut bulk) => {
                    bulk.settle().await?;
                    ops.push(bulk.take_op()?);
                    bulks.push(bulk);
                }
            }
        }
        let outcome = self.db.writer().commit(Op::Transaction(ops)).await?;
        for bulk in &mut bulks {
            bulk.registered();
        }
        match outcome {
            Outcome::Appended { rows, .. } => Ok(rows),
            other => Err(Error::Corrupt(format!(
                "unexpected commit outcome {other:?}"
            ))),
        }
    }

    /// Discards every held write (dropping the transaction does the same).
    pub fn rollback(self) {}
}
