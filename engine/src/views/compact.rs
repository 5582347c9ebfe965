//! The compactor: merges materialized views' delta parts into state segments, and small
//! segments into larger ones, in the background (`tally-compact` thread).
//!
//! Policy: whenever a view has delta parts, they are merged into one new segment. Segments sit
//! in levels by the log10 of their group count; a level holding [`FAN_IN`] segments has up to
//! [`MAX_MERGE`] of them merged into one (which lands a level up), so each group is rewritten
//! O(log groups) times. Once a view has had no new part for [`QUIET_PASSES`] passes (ingest
//! paused), all its segments are merged into one, so that reads see a single sorted run.
//! Order of durability, as for table flushes: the segment file is written
//! and fsynced first, then one commit registers it and deletes the parts and segments it
//! replaces; a crash in between leaves a file the catalog does not name, deleted at the next
//! open. Readers hold segments in memory, so replaced files are deleted right after the commit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::array::{Array, BinaryBuilder};
use tokio::sync::oneshot;

use super::assemble::Assembly;
use super::merge::{Candidates, Run, Step, merge};
use super::segment::{self, StateSegment, ViewSegmentMeta};
use super::state;
use crate::catalog::CATALOG_ENTRY_VERSION;
use crate::commit::{Op, Outcome, Writer};
use crate::error::{Error, Result};
use crate::snapshot::{Current, ViewEntry};

/// Segments of one level merged together once there are this many.
pub(crate) const FAN_IN: usize = 4;
/// Most segments merged at once.
pub(crate) const MAX_MERGE: usize = 12;

/// The directory of one view's state segments.
pub(crate) fn view_dir(views_dir: &Path, view_id: u64) -> PathBuf {
    views_dir.join(view_id.to_string())
}

enum Message {
    /// Parts piled up somewhere: run the policy now.
    Wake,
    /// Merge every view down to one segment and reply.
    CompactAll(oneshot::Sender<Result<()>>),
    Shutdown,
}

/// Wakes the compactor (held by the commit thread, which starts before the compactor).
#[derive(Debug, Default)]
pub(crate) struct Wake(Mutex<Option<Sender<Message>>>);

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Message::Wake => "Wake",
            Message::CompactAll(_) => "CompactAll",
            Message::Shutdown => "Shutdown",
        })
    }
}

impl Wake {
    /// Asks the compactor to run its policy soon (a no-op before it starts or after it
    /// stopped).
    pub(crate) fn notify(&self) {
        if let Some(tx) = self.0.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = tx.send(Message::Wake);
        }
    }

    fn send(&self, message: Message) -> Result<()> {
        match self.0.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(tx) => tx.send(message).map_err(|_| Error::Closed),
            None => Err(Error::Closed),
        }
    }
}

/// Handle to the compactor thread.
pub(crate) struct Compactor {
    wake: Arc<Wake>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What the compactor works with.
pub(crate) struct CompactorSetup {
    pub current: Arc<Current>,
    pub writer: Arc<Writer>,
    pub views_dir: PathBuf,
    /// Segment ids (shared with table flushes).
    pub segment_ids: Arc<AtomicU64>,
    /// Run the policy on this period (and on wake-ups) when `background` is set.
    pub interval: Duration,
    pub background: bool,
}

impl Compactor {
    /// Starts the compactor thread; `wake` starts delivering to it.
    pub(crate) fn start(setup: CompactorSetup, wake: Arc<Wake>) -> Result<Compactor> {
        let (tx, rx) = mpsc::channel();
        *wake.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        let interval = setup.interval;
        let background = setup.background;
        let mut worker = Worker {
            setup,
            quiet: HashMap::new(),
        };
        let thread = std::thread::Builder::new()
            .name("tally-compact".into())
            .spawn(move || {
                loop {
                    let message = rx.recv_timeout(interval);
                    let result = match message {
                        Ok(Message::CompactAll(reply)) => {
                            let _ = reply.send(worker.compact(true));
                            continue;
                        }
                        Ok(Message::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                        Ok(Message::Wake) | Err(RecvTimeoutError::Timeout) => {
                            if !background {
                                continue;
                            }
                            worker.compact(false)
                        }
                    };
                    if let Err(e) = result {
                        if matches!(e, Error::Closed) {
                            break;
                        }
                        tracing::warn!("view compaction failed (retried later): {e}");
                        std::thread::sleep(interval);
                    }
                }
            })
            .map_err(|e| Error::io("starting the compaction thread", e))?;
        Ok(Compactor {
            wake,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Merges every view's parts and segments into one segment per view, and waits.
    pub(crate) async fn compact_all(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.wake.send(Message::CompactAll(reply))?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Stops the thread (a compaction in progress finishes or is abandoned with its file).
    pub(crate) fn shutdown(&self) {
        let _ = self.wake.send(Message::Shutdown);
        if let Some(handle) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = handle.join();
        }
        *self.wake.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// What one compaction merges.
struct Plan {
    segments: Vec<u64>,
    parts: Vec<u64>,
}

/// The level of a segment: log10 of its group count.
fn level(groups: u64) -> u32 {
    groups.max(1).ilog10()
}

/// The next compaction of a view, if any: its delta parts, else a full level of segments (or,
/// with `full`, everything it has when that is more than one segment).
fn plan(entry: &ViewEntry, full: bool) -> Option<Plan> {
    let data = &entry.data;
    if full {
        if data.parts.is_empty() && data.segments.len() <= 1 {
            return None;
        }
        return Some(Plan {
            segments: data.segments.iter().map(|s| s.meta.id).collect(),
            parts: data.parts.iter().map(|p| p.id).collect(),
        });
    }
    if !data.parts.is_empty() {
        return Some(Plan {
            segments: vec![],
            parts: data.parts.iter().map(|p| p.id).collect(),
        });
    }
    let mut by_size: Vec<(u32, u64, u64)> = data
        .segments
        .iter()
        .map(|s| (level(s.meta.groups), s.meta.groups, s.meta.id))
        .collect();
    by_size.sort_unstable();
    let mut start = 0;
    while start < by_size.len() {
        let lvl = by_size[start].0;
        let end = start + by_size[start..].iter().take_while(|s| s.0 == lvl).count();
        if end - start >= FAN_IN {
            let segments = by_size[start..end.min(start + MAX_MERGE)]
                .iter()
                .map(|s| s.2)
                .collect();
            return Some(Plan {
                segments,
                parts: vec![],
            });
        }
        start = end;
    }
    None
}

struct Worker {
    setup: CompactorSetup,
    /// Per view id: background passes in a row that found no delta part.
    quiet: HashMap<u64, u32>,
}

/// Background passes without new delta parts (about a second at the default interval) after
/// which a view's segments are merged into one: once ingest pauses, reads see one sorted run
/// instead of overlapping segments whose shared groups each need a merge.
const QUIET_PASSES: u32 = 2;

impl Worker {
    /// Runs the policy (or, with `full`, merges everything) over every view until nothing is
    /// left to do.
    fn compact(&mut self, full: bool) -> Result<()> {
        let snapshot = self.setup.current.get();
        let ids: Vec<u64> = snapshot.views.values().map(|v| v.view.def.id).collect();
        for entry in snapshot.views.values() {
            let quiet = self.quiet.entry(entry.view.def.id).or_insert(0);
            *quiet = if entry.data.parts.is_empty() {
                quiet.saturating_add(1)
            } else {
                0
            };
        }
        self.quiet.retain(|id, _| ids.contains(id));
        drop(snapshot);
        for id in ids {
            let settled = !full && self.quiet.get(&id).is_some_and(|&q| q == QUIET_PASSES);
            // Each step changes the view's runs: re-read them from the latest snapshot.
            for _ in 0..64 {
                let snapshot = self.setup.current.get();
                let Some(entry) = snapshot.views.values().find(|v| v.view.def.id == id) else {
                    break;
                };
                let next = match plan(entry, full) {
                    None if settled => plan(entry, true),
                    next => next,
                };
                let Some(plan) = next else {
                    break;
                };
                let entry = Arc::clone(entry);
                drop(snapshot);
                self.run(&entry, plan)?;
            }
        }
        Ok(())
    }

    /// Merges the runs of `plan`, writes the segment, and swaps it in.
    fn run(&self, entry: &ViewEntry, plan: Plan) -> Result<()> {
        let started = Instant::now();
        let view = &entry.view;
        let segments: Vec<&StateSegment> = entry
            .data
            .segments
            .iter()
            .filter(|s| plan.segments.contains(&s.meta.id))
            .map(|s| s.as_ref())
            .collect();
        let parts: Vec<_> = entry
            .data
            .parts
            .iter()
            .filter(|p| plan.parts.contains(&p.id))
            .collect();
        let mut runs: Vec<Run<'_>> = Vec::with_capacity(segments.len() + parts.len());
        for s in &segments {
            runs.push(Run {
                keys: &s.keys,
                states: &s.states,
                rows: Candidates::Range(0..s.len()),
                finalized: true,
            });
        }
        for p in &parts {
            runs.push(Run {
                keys: &p.keys,
                states: &p.states,
                rows: Candidates::Range(0..p.len()),
                finalized: false,
            });
        }
        let groups_in: usize = runs.iter().map(|r| r.keys.len()).sum();
        let mut keys = BinaryBuilder::with_capacity(groups_in, groups_in * 16);
        let mut states = BinaryBuilder::with_capacity(groups_in, groups_in * 32);
        // Groups copied from one segment keep its finalized values; only merged groups and
        // those from delta parts are finalized again.
        let stored = segment::stored_outputs(view);
        let mut outputs = Assembly::new(view, Some(&stored));
        merge(&runs, |step| {
            match step {
                Step::Rows { run, positions } => {
                    let r = &runs[run];
                    for p in positions.clone() {
                        let row = r.rows.row(p);
                        keys.append_value(r.keys.value(row));
                        states.append_value(r.states.value(row));
                    }
                    outputs.copy(run, positions);
                }
                Step::Group { key, states: all } => {
                    keys.append_value(key);
                    let merged;
                    let state = match all.as_slice() {
                        [one] => *one,
                        [first, rest @ ..] => {
                            merged = state::merge_values(first, rest.iter().copied())?;
                            merged.as_slice()
                        }
                        [] => unreachable!("a merged group has at least one state"),
                    };
                    states.append_value(state);
                    outputs.push(key, state)?;
                }
            }
            Ok(())
        })?;
        let (keys, states) = (keys.finish(), states.finish());
        let rows: Vec<&Candidates> = runs.iter().map(|r| &r.rows).collect();
        let (_, outputs, _) = outputs.finish(&segments, &rows)?;
        let id = self.setup.segment_ids.fetch_add(1, Ordering::Relaxed);
        let meta = ViewSegmentMeta {
            v: CATALOG_ENTRY_VERSION,
            id,
            view_id: view.def.id,
            file_name: crate::storage::segment::file_name(id),
            groups: keys.len() as u64,
            bytes: 0,
            created_ms: crate::batch_ids::now_ms(),
        };
        let mut segment = StateSegment::with_outputs(view, meta, keys, states, outputs)?;
        let dir = view_dir(&self.setup.views_dir, view.def.id);
        if !dir.exists() {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            crate::storage::segment::sync_dir(&self.setup.views_dir)?;
        }
        let path = dir.join(&segment.meta.file_name);
        segment.meta.bytes = match segment.write(view, &dir) {
            Ok(bytes) => bytes,
            Err(e) => {
                remove_quietly(&path);
                return Err(e);
            }
        };
        let outcome = self.setup.writer.commit_blocking(Op::CompactView {
            view_id: view.def.id,
            segment: Arc::new(segment),
            segments: plan.segments.clone(),
            parts: plan.parts.clone(),
        });
        match outcome {
            Ok(Outcome::Compacted(true)) => {
                for s in &segments {
                    remove_quietly(&dir.join(&s.meta.file_name));
                }
                tracing::debug!(
                    "compacted view \"{}\": {} segment(s) and {} part(s), {groups_in} group entries, in {:?}",
                    view.def.name,
                    plan.segments.len(),
                    plan.parts.len(),
                    started.elapsed()
                );
                Ok(())
            }
            Ok(_) => {
                remove_quietly(&path);
                Ok(())
            }
            Err(e) => {
                remove_quietly(&path);
                Err(e)
            }
        }
    }
}

fn remove_quietly(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("could not remove {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_decades_of_groups() {
        assert_eq!(level(0), 0);
        assert_eq!(level(9), 0);
        assert_eq!(level(10), 1);
        assert_eq!(level(331_000), 5);
    }
}
