//! The view changefeed behind [`Database::subscribe`](crate::Database::subscribe): each commit's
//! changed groups of a materialized view, with their new values and the commit's sequence.
//!
//! The commit thread does almost nothing for it. At the start of a group it asks the [`Hub`]
//! which views are followed ([`Hub::begin_group`]: one uncontended lock, and nothing else when
//! no view is); while applying the group it keeps the state keys of those views' deltas; after
//! the group is durable and published it hands them, with the published [`Snapshot`], to the
//! `tally-changefeed` thread ([`Hub::group_published`]). That thread reads the changed groups'
//! states from the snapshot's RocksDB view, finalizes them like a view scan, appends one
//! [`ChangeBatch`] per view to that view's in-memory ring, and drops the snapshot: rings hold
//! finished rows, never snapshots, so a subscriber between changes pins nothing.
//!
//! A view stays followed while it has subscribers and for [`Options::changefeed_linger`]
//! after the last one left, so that a client that reconnects with `FROM seq` resumes from the
//! ring. Each ring keeps the last [`Options::changefeed_ring_commits`] changes of its view (and
//! at most [`RING_BYTES`]); a subscriber whose next change was evicted, or whose `from` is
//! older than the ring, receives a fresh snapshot of the whole view instead of a gap.
//!
//! [`Options::changefeed_linger`]: crate::Options::changefeed_linger
//! [`Options::changefeed_ring_commits`]: crate::Options::changefeed_ring_commits

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::snapshot::{Current, Snapshot};
use crate::views::ViewStatus;
use crate::views::provider::ViewTable;
use crate::views::scan::{self, Selection};

/// Most bytes of finished rows one view's ring keeps.
pub const RING_BYTES: usize = 64 << 20;

/// Whether a [`ChangeBatch`] replaces the subscriber's state or updates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Every group of the view as of `seq` (the start of a subscription, or a subscriber that
    /// fell behind the ring). Groups are never removed from a view, so applying its rows as
    /// upserts by group key yields the view.
    Snapshot,
    /// The groups the commit with this `seq` changed, with their values after it.
    Change,
}

/// One step of a view's changefeed, from [`Subscription::next`].
#[derive(Debug, Clone)]
pub struct ChangeBatch {
    /// The database sequence after the commit (for a snapshot: the sequence it was read at).
    /// Every row a subscriber receives is as of this sequence; a change with a sequence at or
    /// below one already applied can be skipped.
    pub seq: u64,
    /// Snapshot or change.
    pub kind: ChangeKind,
    /// Rows in the view's columns (those of `SELECT * FROM view`), one per group.
    pub rows: RecordBatch,
}

/// The commit group being applied, as the changefeed sees it ([`Hub::begin_group`]).
#[derive(Debug, Default)]
pub(crate) struct GroupFeed {
    generation: u64,
    /// Ids of the followed views; empty: nothing to collect.
    views: Vec<u64>,
    /// `(view id, group key)` of every delta of a followed view.
    changed: Vec<(u64, Vec<u8>)>,
    /// The group dropped a table or view (a followed view may be gone).
    dropped: bool,
}

impl GroupFeed {
    /// Keeps the group keys of a delta part when its view is followed.
    pub(crate) fn collect(&mut self, view_id: u64, keys: &arrow::array::BinaryArray) {
        if !self.views.contains(&view_id) {
            return;
        }
        for key in keys.iter().flatten() {
            self.changed.push((view_id, key.to_vec()));
        }
    }

    /// Notes that the group drops tables or views.
    pub(crate) fn note_drop(&mut self) {
        self.dropped = true;
    }
}

/// What the commit thread hands to the changefeed thread after a group.
struct Record {
    seq: u64,
    snapshot: Arc<Snapshot>,
    views: Vec<u64>,
    changed: Vec<(u64, Vec<u8>)>,
}

/// The changefeed of one followed view.
struct Feed {
    subscribers: usize,
    /// When the last subscriber left (the feed is removed [`Options::changefeed_linger`]
    /// later).
    idle_since: Option<Instant>,
    /// Every change with a sequence above this is in `ring` or on its way; `u64::MAX` until
    /// the first subscriber has read its snapshot.
    covered_from: u64,
    ring: VecDeque<ChangeBatch>,
    bytes: usize,
    /// Set when the view was dropped, or its changes could not be read.
    ended: Option<End>,
    /// Bumped at every change of the feed; subscribers wait on it.
    notify: watch::Sender<u64>,
}

#[derive(Clone)]
enum End {
    Dropped,
    Failed(String),
}

struct HubState {
    /// Generation of the last commit group started.
    started: u64,
    feeds: HashMap<u64, Feed>,
    closed: bool,
}

/// The changefeed shared by the commit thread, the changefeed thread and subscriptions.
pub(crate) struct Hub {
    state: Mutex<HubState>,
    /// Generation of the last commit group published (or failed).
    published: watch::Sender<u64>,
    tx: Mutex<Option<mpsc::Sender<Record>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    ring_commits: usize,
    linger: Duration,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("changefeed::Hub")
    }
}

impl Hub {
    /// Starts the `tally-changefeed` thread.
    pub(crate) fn start(ring_commits: usize, linger: Duration) -> Result<Arc<Hub>> {
        let (tx, rx) = mpsc::channel();
        let hub = Arc::new(Hub {
            state: Mutex::new(HubState {
                started: 0,
                feeds: HashMap::new(),
                closed: false,
            }),
            published: watch::Sender::new(0),
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(None),
            ring_commits: ring_commits.max(1),
            linger,
        });
        // Weak: the hub owns the sender, so a strong reference here would keep both alive
        // forever if the database failed to open after this point.
        let worker = Arc::downgrade(&hub);
        let thread = std::thread::Builder::new()
            .name("tally-changefeed".into())
            .spawn(move || run(&worker, rx))
            .map_err(|e| Error::io("starting the changefeed thread", e))?;
        *hub.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
        Ok(hub)
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called by the commit thread before it applies a group: which views to collect keys for.
    pub(crate) fn begin_group(&self) -> GroupFeed {
        let mut state = self.lock();
        state.started += 1;
        let generation = state.started;
        if state.feeds.is_empty() {
            return GroupFeed {
                generation,
                ..GroupFeed::default()
            };
        }
        let linger = self.linger;
        state
            .feeds
            .retain(|_, f| f.subscribers > 0 || f.idle_since.is_none_or(|t| t.elapsed() < linger));
        let views = state
            .feeds
            .iter()
            .filter(|(_, f)| f.ended.is_none())
            .map(|(id, _)| *id)
            .collect();
        GroupFeed {
            generation,
            views,
            ..GroupFeed::default()
        }
    }

    /// Called by the commit thread once the group is durable and `published` is current
    /// (`None`: the group failed and changed nothing).
    pub(crate) fn group_published(&self, group: GroupFeed, published: Option<&Arc<Snapshot>>) {
        if let Some(snapshot) = published
            && !group.views.is_empty()
            && (!group.changed.is_empty() || group.dropped)
            && let Some(tx) = self.tx.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
        {
            let _ = tx.send(Record {
                seq: snapshot.last_seq,
                snapshot: Arc::clone(snapshot),
                views: group.views,
                changed: group.changed,
            });
        }
        self.published.send_replace(group.generation);
    }

    /// Turns one record into change batches.
    fn process(&self, record: Record) {
        let Record {
            seq,
            snapshot,
            views,
            mut changed,
        } = record;
        changed.sort_unstable();
        changed.dedup();
        for id in views {
            let keys: Vec<Vec<u8>> = changed
                .iter()
                .filter(|(v, _)| *v == id)
                .map(|(_, k)| k.clone())
                .collect();
            let outcome = match snapshot.views.values().find(|v| v.view.def.id == id) {
                None => Err(End::Dropped),
                Some(_) if keys.is_empty() => continue,
                Some(_) => read_groups(&snapshot, id, &keys).map_err(|e| {
                    tracing::error!("changefeed of view id {id}: {e}");
                    End::Failed(e.to_string())
                }),
            };
            self.push(id, seq, outcome);
        }
    }

    /// Appends a change (or the end of its feed) to a view's ring and wakes its subscribers.
    fn push(&self, id: u64, seq: u64, outcome: std::result::Result<RecordBatch, End>) {
        let mut state = self.lock();
        let Some(feed) = state.feeds.get_mut(&id) else {
            return;
        };
        match outcome {
            Ok(rows) => {
                feed.bytes += rows.get_array_memory_size();
                feed.ring.push_back(ChangeBatch {
                    seq,
                    kind: ChangeKind::Change,
                    rows,
                });
                while feed.ring.len() > self.ring_commits
                    || (feed.bytes > RING_BYTES && feed.ring.len() > 1)
                {
                    let Some(old) = feed.ring.pop_front() else {
                        break;
                    };
                    feed.bytes = feed.bytes.saturating_sub(old.rows.get_array_memory_size());
                    feed.covered_from = if feed.covered_from == u64::MAX {
                        old.seq
                    } else {
                        feed.covered_from.max(old.seq)
                    };
                }
            }
            Err(end) => feed.ended = Some(end),
        }
        feed.notify.send_modify(|n| *n += 1);
    }

    /// Stops the changefeed thread (after the commit thread stopped) and ends every
    /// subscription with [`Error::Closed`].
    pub(crate) fn shutdown(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
        let mut state = self.lock();
        state.closed = true;
        for feed in state.feeds.values() {
            feed.notify.send_modify(|n| *n += 1);
        }
        // Wakes subscribers waiting for a group that will never come.
        self.published.send_modify(|g| *g = u64::MAX);
    }
}

/// The `tally-changefeed` thread: ends when the hub (and with it the sender) is gone or shut
/// down.
fn run(hub: &std::sync::Weak<Hub>, rx: mpsc::Receiver<Record>) {
    while let Ok(record) = rx.recv() {
        match hub.upgrade() {
            Some(hub) => hub.process(record),
            None => break,
        }
    }
}

/// The rows of the groups with these keys (sorted), as of `snapshot`.
fn read_groups(snapshot: &Snapshot, view_id: u64, keys: &[Vec<u8>]) -> Result<RecordBatch> {
    let entry = snapshot
        .views
        .values()
        .find(|v| v.view.def.id == view_id)
        .ok_or_else(|| Error::TableNotFound(format!("(view id {view_id})")))?;
    scan::read(&entry.view, &entry.data, Selection::Keys(keys), None)
}

/// A running subscription to one view's changes, from
/// [`Database::subscribe`](crate::Database::subscribe). It holds no snapshot between calls to
/// [`Subscription::next`]; dropping it ends the subscription.
pub struct Subscription {
    hub: Arc<Hub>,
    current: Arc<Current>,
    view_id: u64,
    name: String,
    schema: SchemaRef,
    /// Sequence of the last batch returned (or the `from` resumed after).
    cursor: u64,
    /// A snapshot read but not yet returned.
    pending: Option<ChangeBatch>,
    notify: watch::Receiver<u64>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("view", &self.name)
            .field("seq", &self.cursor)
            .finish()
    }
}

impl Subscription {
    /// Starts following `view` (see [`Database::subscribe`](crate::Database::subscribe)).
    pub(crate) async fn start(
        hub: Arc<Hub>,
        current: Arc<Current>,
        view: &str,
        from: Option<u64>,
    ) -> Result<Subscription> {
        let snapshot = current.get();
        let Some(entry) = snapshot.views.get(view) else {
            return Err(if snapshot.tables.contains_key(view) {
                Error::NotSupported(format!(
                    "\"{view}\" is a table; SUBSCRIBE follows materialized views only"
                ))
            } else {
                Error::TableNotFound(view.to_string())
            });
        };
        if entry.status != ViewStatus::Ready {
            return Err(Error::NotSupported(format!(
                "materialized view \"{view}\" is still being backfilled; subscribe once it is complete"
            )));
        }
        if let Some(from) = from
            && from > snapshot.last_seq
        {
            return Err(Error::InvalidArgument(format!(
                "cannot subscribe to \"{view}\" from sequence {from}: the last committed sequence is {}",
                snapshot.last_seq
            )));
        }
        let view_id = entry.view.def.id;
        let schema = Arc::clone(&entry.view.schema);
        drop(snapshot);
        let (notify, generation, resumable) = {
            let mut state = hub.lock();
            if state.closed {
                return Err(Error::Closed);
            }
            let generation = state.started;
            let feed = state.feeds.entry(view_id).or_insert_with(|| Feed {
                subscribers: 0,
                idle_since: None,
                covered_from: u64::MAX,
                ring: VecDeque::new(),
                bytes: 0,
                ended: None,
                notify: watch::Sender::new(0),
            });
            feed.subscribers += 1;
            feed.idle_since = None;
            let resumable = from.is_some_and(|from| feed.covered_from <= from);
            (feed.notify.subscribe(), generation, resumable)
        };
        let mut subscription = Subscription {
            hub,
            current,
            view_id,
            name: view.to_string(),
            schema,
            cursor: from.unwrap_or(0),
            pending: None,
            notify,
        };
        if !resumable {
            // Groups started from now on collect this view's keys; the snapshot must include
            // every group that started before.
            let mut published = subscription.hub.published.subscribe();
            published
                .wait_for(|g| *g >= generation)
                .await
                .map_err(|_| Error::Closed)?;
            subscription.take_snapshot()?;
        }
        Ok(subscription)
    }

    /// The view's columns: the schema of every [`ChangeBatch::rows`].
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// The sequence of the last batch returned (or the `from` it resumed after).
    pub fn seq(&self) -> u64 {
        self.cursor
    }

    /// Reads the whole view at the current snapshot into `pending`.
    fn take_snapshot(&mut self) -> Result<()> {
        let snapshot = self.current.get();
        let entry = snapshot
            .views
            .values()
            .find(|v| v.view.def.id == self.view_id)
            .ok_or_else(|| Error::ViewDropped(self.name.clone()))?;
        let rows = ViewTable::new(Arc::clone(entry)).read(&[], None)?;
        let seq = snapshot.last_seq;
        drop(snapshot);
        let mut state = self.hub.lock();
        if let Some(feed) = state.feeds.get_mut(&self.view_id)
            && feed.covered_from == u64::MAX
        {
            feed.covered_from = seq;
        }
        drop(state);
        self.cursor = seq;
        self.pending = Some(ChangeBatch {
            seq,
            kind: ChangeKind::Snapshot,
            rows,
        });
        Ok(())
    }

    /// Waits for the next batch: first the snapshot (unless resumed), then each commit that
    /// changed the view, in sequence order. Fails when the view is dropped
    /// ([`Error::ViewDropped`]) or the database closes ([`Error::Closed`]).
    pub async fn next(&mut self) -> Result<ChangeBatch> {
        loop {
            if let Some(batch) = self.pending.take() {
                return Ok(batch);
            }
            self.notify.borrow_and_update();
            let lagging = {
                let state = self.hub.lock();
                if state.closed {
                    return Err(Error::Closed);
                }
                let feed = state
                    .feeds
                    .get(&self.view_id)
                    .ok_or_else(|| Error::ViewDropped(self.name.clone()))?;
                match &feed.ended {
                    Some(End::Dropped) => return Err(Error::ViewDropped(self.name.clone())),
                    Some(End::Failed(message)) => {
                        return Err(Error::Corrupt(format!(
                            "changefeed of materialized view \"{}\": {message}",
                            self.name
                        )));
                    }
                    None => {}
                }
                if feed.covered_from > self.cursor {
                    true
                } else {
                    let at = feed.ring.partition_point(|c| c.seq <= self.cursor);
                    if let Some(change) = feed.ring.get(at) {
                        self.cursor = change.seq;
                        return Ok(change.clone());
                    }
                    false
                }
            };
            if lagging {
                // The changes after our cursor were evicted: start over from a snapshot.
                self.take_snapshot()?;
                continue;
            }
            if self.notify.changed().await.is_err() {
                return Err(Error::Closed);
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut state = self.hub.lock();
        if let Some(feed) = state.feeds.get_mut(&self.view_id) {
            feed.subscribers = feed.subscribers.saturating_sub(1);
            if feed.subscribers == 0 {
                feed.idle_since = Some(Instant::now());
            }
        }
    }
}
