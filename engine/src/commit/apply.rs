//! How one request changes the commit group's working snapshot and `WriteBatch`: appends (rows,
//! their views' delta parts, spilled segments), DDL, view segment swaps and segment
//! registration. Validation happens here, before any of a request's writes enter the batch, so
//! that a request fails alone.

use super::*;

impl Committer {
    /// Writes a checked append into the batch and the working snapshot (nothing here can fail).
    fn write_append(
        &mut self,
        store: &Store,
        prepared: PreparedAppend<'_>,
        working: &mut Snapshot,
        batch: &mut WriteBatch,
    ) -> Outcome {
        let PreparedAppend {
            name,
            batches,
            segments,
            stored_next_segment,
            view_deltas,
        } = prepared;
        for (view_id, part) in view_deltas.iter() {
            self.add_part(store, working, batch, *view_id, part);
        }
        let mut last_seq = working.last_seq;
        let state = working
            .tables
            .get_mut(&name)
            .expect("checked by prepare_append");
        // Copies the table's state once per group; later appends in the group reuse it.
        let state = Arc::make_mut(state);
        let table_id = state.def.id;
        let mut rows = 0u64;
        let now = Instant::now();
        for (rb, encoded) in batches {
            last_seq += 1;
            batch.put_cf(store.cf(CF_HOT), keys::hot_key(table_id, last_seq), encoded);
            rows += rb.num_rows() as u64;
            state.hot.push(Arc::new(HotBatch {
                seq: last_seq,
                batch: rb.clone(),
                bytes: encoded.len(),
                since: now,
            }));
        }
        // Several bulk appends in one group: the counter must end past all of their segments.
        let stored_next = stored_next_segment.max(self.group_next_segment);
        rows += register_segments(store, batch, state, segments, stored_next);
        if let Some(max_id) = segments.iter().map(|s| s.id).max() {
            self.group_next_segment = stored_next.max(max_id + 1);
        }
        working.last_seq = last_seq;
        batch.put_cf(
            store.cf(CF_META),
            keys::META_LAST_SEQ,
            last_seq.to_be_bytes(),
        );
        Outcome::Appended {
            rows,
            duplicate: false,
        }
    }

    /// Writes a delta part of a view and adds it to the working snapshot (empty parts are
    /// skipped; a view that no longer exists was checked for by the caller).
    fn add_part(
        &mut self,
        store: &Store,
        working: &mut Snapshot,
        batch: &mut WriteBatch,
        view_id: u64,
        part: &DeltaPart,
    ) {
        if part.is_empty() {
            return;
        }
        let Some(entry) = working
            .views
            .values_mut()
            .find(|v| v.view.def.id == view_id)
        else {
            return;
        };
        let id = self.next_part_id;
        self.next_part_id += 1;
        batch.put_cf(
            store.cf(CF_VIEW_PARTS),
            keys::part_key(view_id, id),
            part.encode(),
        );
        let part = part.with_id(id);
        self.feed.collect(view_id, &part.keys);
        let entry = Arc::make_mut(entry);
        entry.data.parts.push(part);
        if entry.data.parts.len() >= COMPACT_AT_PARTS {
            self.compaction.notify();
        }
    }

    /// Takes the next table/view id and records the counter in the same commit.
    fn allocate_id(&mut self, batch: &mut WriteBatch) -> u64 {
        let id = self.next_table_id.max(1);
        self.next_table_id = id + 1;
        batch.put_cf(
            self.store.cf(CF_META),
            keys::META_NEXT_TABLE_ID,
            self.next_table_id.to_be_bytes(),
        );
        id
    }

    pub(super) fn apply(
        &mut self,
        op: &Op,
        working: &mut Snapshot,
        batch: &mut WriteBatch,
        dropped: &mut Dropped,
    ) -> Result<Outcome> {
        // A handle of our own, so `self` stays free for `allocate_id`.
        let store_handle = Arc::clone(&self.store);
        let store: &Store = &store_handle;
        match op {
            Op::Append {
                table_id, batch_id, ..
            } => {
                if let Some(id) = batch_id
                    && let Some(earlier) = self.batch_ids.find(*table_id, id)
                {
                    return Ok(Outcome::Appended {
                        rows: earlier.rows,
                        duplicate: true,
                    });
                }
                let prepared = prepare_append(store, op, working)?;
                let outcome = self.write_append(store, prepared, working, batch);
                if let (Some(id), Outcome::Appended { rows, .. }) = (batch_id, &outcome) {
                    let recorded = Recorded {
                        seq: working.last_seq,
                        rows: *rows,
                        at_ms: batch_ids::now_ms(),
                    };
                    self.batch_ids.record(store, batch, *table_id, id, recorded);
                }
                Ok(outcome)
            }
            Op::Transaction(appends) => {
                if appends.iter().any(|a| {
                    matches!(
                        a,
                        Op::Append {
                            batch_id: Some(_),
                            ..
                        }
                    )
                }) {
                    return Err(Error::NotSupported(
                        "a batch id cannot be given inside a transaction block".into(),
                    ));
                }
                // Every part is checked before any of them writes: all or nothing.
                let prepared = appends
                    .iter()
                    .map(|op| prepare_append(store, op, working))
                    .collect::<Result<Vec<_>>>()?;
                let mut rows = 0;
                for part in prepared {
                    if let Outcome::Appended { rows: n, .. } =
                        self.write_append(store, part, working, batch)
                    {
                        rows += n;
                    }
                }
                Ok(Outcome::Appended {
                    rows,
                    duplicate: false,
                })
            }
            Op::CreateTable { def, if_not_exists } => {
                if working.tables.contains_key(&def.name) {
                    return if *if_not_exists {
                        Ok(Outcome::Created)
                    } else {
                        Err(Error::TableExists(def.name.clone()))
                    };
                }
                def.validate()?;
                let id = self.allocate_id(batch);
                let def = TableDef {
                    v: CATALOG_ENTRY_VERSION,
                    id,
                    ..def.clone()
                };
                batch.put_cf(
                    store.cf(CF_CATALOG),
                    keys::table_key(id),
                    catalog::encode(&def),
                );
                working
                    .tables
                    .insert(def.name.clone(), Arc::new(TableState::new(def)));
                Ok(Outcome::Created)
            }
            Op::DropTables {
                names,
                if_exists,
                cascade,
            } => {
                let mut dropped_ids = Vec::new();
                for name in names {
                    match working.tables.get(name) {
                        Some(state) => dropped_ids.push(state.def.id),
                        None if *if_exists => {}
                        None => return Err(Error::TableNotFound(name.clone())),
                    }
                }
                let dependent: Vec<String> = working
                    .views
                    .values()
                    .filter(|v| dropped_ids.contains(&v.view.def.table_id))
                    .map(|v| v.view.def.name.clone())
                    .collect();
                if !dependent.is_empty() && !*cascade {
                    return Err(Error::DependentObjects(format!(
                        "cannot drop table because materialized view(s) {} depend on it; use DROP TABLE … CASCADE to drop them too",
                        dependent.join(", ")
                    )));
                }
                for name in &dependent {
                    drop_view(store, working, batch, dropped, &self.views_dir, name);
                }
                for id in &dropped_ids {
                    let id = *id;
                    batch.delete_cf(store.cf(CF_CATALOG), keys::table_key(id));
                    dropped.delete_range(
                        store,
                        batch,
                        CF_CATALOG,
                        keys::segment_prefix(id),
                        keys::segment_prefix(id + 1),
                    );
                    dropped.delete_range(
                        store,
                        batch,
                        CF_HOT,
                        keys::hot_key(id, 0),
                        keys::hot_key(id + 1, 0),
                    );
                    batch.delete_range_cf(
                        store.cf(CF_META),
                        keys::batch_id_prefix(id),
                        keys::batch_id_prefix(id + 1),
                    );
                    dropped.tables.push(id);
                    working.tables.retain(|_, t| t.def.id != id);
                    dropped
                        .dirs
                        .push(segment::table_dir(&self.segments_dir, id));
                }
                Ok(Outcome::Dropped)
            }
            Op::CreateView {
                view,
                if_not_exists,
            } => {
                let name = &view.def.name;
                if working.views.contains_key(name) {
                    return if *if_not_exists {
                        Ok(Outcome::ViewCreated(None))
                    } else {
                        Err(Error::TableExists(name.clone()))
                    };
                }
                if working.tables.contains_key(name) {
                    return Err(Error::TableExists(name.clone()));
                }
                if working.table_by_id(view.def.table_id).is_none() {
                    return Err(Error::TableNotFound(format!("(id {})", view.def.table_id)));
                }
                let id = self.allocate_id(batch);
                let def = ViewDef {
                    v: CATALOG_ENTRY_VERSION,
                    id,
                    status: ViewStatus::Backfilling,
                    ..ViewDef::clone(&view.def)
                };
                batch.put_cf(
                    store.cf(CF_CATALOG),
                    keys::view_key(id),
                    catalog::encode(&def),
                );
                let mut compiled = CompiledView::clone(view);
                compiled.def = Arc::new(def);
                working.views.insert(
                    name.clone(),
                    Arc::new(ViewEntry {
                        view: Arc::new(compiled),
                        status: ViewStatus::Backfilling,
                        data: ViewData::default(),
                    }),
                );
                // The published snapshot is filled in once the commit is durable.
                Ok(Outcome::ViewCreated(Some((
                    id,
                    Arc::new(Snapshot::default()),
                ))))
            }
            Op::Backfill { view_id, part } => {
                if !working.views.values().any(|v| v.view.def.id == *view_id) {
                    return Err(Error::TableNotFound(format!("(view id {view_id})")));
                }
                self.add_part(store, working, batch, *view_id, part);
                Ok(Outcome::ViewChanged)
            }
            Op::CompactView {
                view_id,
                segment,
                segments,
                parts,
            } => {
                let Some(entry) = working
                    .views
                    .values_mut()
                    .find(|v| v.view.def.id == *view_id)
                else {
                    return Ok(Outcome::Compacted(false));
                };
                let data = &entry.data;
                let missing_segment = segments
                    .iter()
                    .any(|id| !data.segments.iter().any(|s| s.meta.id == *id));
                let missing_part = parts
                    .iter()
                    .any(|id| !data.parts.iter().any(|p| p.id == *id));
                if missing_segment || missing_part {
                    return Err(Error::Corrupt(format!(
                        "compaction of view {view_id} replaces segments or parts that are gone"
                    )));
                }
                // Every fallible step comes before the first write enters the shared batch.
                let stored_next = store.meta_u64(keys::META_NEXT_SEGMENT_ID)?;
                batch.put_cf(
                    store.cf(CF_CATALOG),
                    keys::view_segment_key(*view_id, segment.meta.id),
                    catalog::encode(&segment.meta),
                );
                for id in segments {
                    batch.delete_cf(store.cf(CF_CATALOG), keys::view_segment_key(*view_id, *id));
                }
                for id in parts {
                    batch.delete_cf(store.cf(CF_VIEW_PARTS), keys::part_key(*view_id, *id));
                }
                let next = stored_next
                    .max(segment.meta.id + 1)
                    .max(self.group_next_segment);
                self.group_next_segment = next;
                batch.put_cf(
                    store.cf(CF_META),
                    keys::META_NEXT_SEGMENT_ID,
                    next.to_be_bytes(),
                );
                let entry = Arc::make_mut(entry);
                entry
                    .data
                    .segments
                    .retain(|s| !segments.contains(&s.meta.id));
                entry.data.parts.retain(|p| !parts.contains(&p.id));
                entry.data.segments.push(Arc::clone(segment));
                Ok(Outcome::Compacted(true))
            }
            Op::ViewReady { view_id } => {
                let entry = working
                    .views
                    .values_mut()
                    .find(|v| v.view.def.id == *view_id)
                    .ok_or_else(|| Error::TableNotFound(format!("(view id {view_id})")))?;
                let def = ViewDef {
                    status: ViewStatus::Ready,
                    ..ViewDef::clone(&entry.view.def)
                };
                batch.put_cf(
                    store.cf(CF_CATALOG),
                    keys::view_key(*view_id),
                    catalog::encode(&def),
                );
                let entry = Arc::make_mut(entry);
                let mut compiled = CompiledView::clone(&entry.view);
                compiled.def = Arc::new(def);
                entry.view = Arc::new(compiled);
                entry.status = ViewStatus::Ready;
                Ok(Outcome::ViewChanged)
            }
            Op::DropViews { names, if_exists } => {
                for name in names {
                    if !working.views.contains_key(name) && !*if_exists {
                        return Err(Error::TableNotFound(name.clone()));
                    }
                }
                for name in names {
                    drop_view(store, working, batch, dropped, &self.views_dir, name);
                }
                Ok(Outcome::ViewChanged)
            }
            Op::SetRetention { table, seconds } => {
                let state = working
                    .tables
                    .get(table)
                    .ok_or_else(|| Error::TableNotFound(table.clone()))?;
                let def = TableDef {
                    retention_seconds: *seconds,
                    ..TableDef::clone(&state.def)
                };
                def.validate()?;
                batch.put_cf(
                    store.cf(CF_CATALOG),
                    keys::table_key(def.id),
                    catalog::encode(&def),
                );
                let mut state = TableState::clone(state);
                state.def = Arc::new(def);
                working.tables.insert(table.clone(), Arc::new(state));
                Ok(Outcome::Altered)
            }
            Op::DropSegments {
                table_id,
                segment_ids,
            } => {
                let Some(state) = working.table_by_id(*table_id) else {
                    // Dropped meanwhile: its files went with it.
                    return Ok(Outcome::SegmentsDropped(vec![]));
                };
                let mut state = TableState::clone(state);
                let (gone, kept): (Vec<_>, Vec<_>) = state
                    .segments
                    .into_iter()
                    .partition(|s| segment_ids.contains(&s.id));
                state.segments = kept;
                if !gone.is_empty() && !state.def.rows_removed {
                    // Its views keep the aggregates of the removed rows: say so durably, so
                    // that no view answers queries over the table any more.
                    let def = TableDef {
                        rows_removed: true,
                        ..TableDef::clone(&state.def)
                    };
                    batch.put_cf(
                        store.cf(CF_CATALOG),
                        keys::table_key(def.id),
                        catalog::encode(&def),
                    );
                    state.def = Arc::new(def);
                }
                for segment in &gone {
                    batch.delete_cf(
                        store.cf(CF_CATALOG),
                        keys::segment_key(*table_id, segment.id),
                    );
                }
                working
                    .tables
                    .insert(state.def.name.clone(), Arc::new(state));
                Ok(Outcome::SegmentsDropped(gone))
            }
            Op::RegisterSegments {
                table_id,
                segments,
                flushed,
            } => {
                let state = working
                    .table_by_id(*table_id)
                    .ok_or_else(|| Error::TableNotFound(format!("(id {table_id})")))?;
                let mut state = TableState::clone(state);
                // Every fallible step comes before the first write enters the shared batch.
                let stored_next = store.meta_u64(keys::META_NEXT_SEGMENT_ID)?;
                register_segments(store, batch, &mut state, segments, stored_next);
                for seq in flushed {
                    batch.delete_cf(store.cf(CF_HOT), keys::hot_key(*table_id, *seq));
                }
                let flushed: HashSet<u64> = flushed.iter().copied().collect();
                state.hot.retain(|h| !flushed.contains(&h.seq));
                working
                    .tables
                    .insert(state.def.name.clone(), Arc::new(state));
                Ok(Outcome::Registered)
            }
        }
    }
}

/// Deletes a view's definition and states (no-op if it does not exist).
fn drop_view(
    store: &Store,
    working: &mut Snapshot,
    batch: &mut WriteBatch,
    dropped: &mut Dropped,
    views_dir: &std::path::Path,
    name: &str,
) {
    if let Some(entry) = working.views.remove(name) {
        let id = entry.view.def.id;
        batch.delete_cf(store.cf(CF_CATALOG), keys::view_key(id));
        dropped.delete_range(
            store,
            batch,
            CF_CATALOG,
            keys::view_segment_prefix(id),
            keys::view_segment_prefix(id + 1),
        );
        dropped.delete_range(
            store,
            batch,
            CF_VIEW_PARTS,
            id.to_be_bytes(),
            (id + 1).to_be_bytes(),
        );
        dropped
            .dirs
            .push(crate::views::compact::view_dir(views_dir, id));
    }
}

/// An [`Op::Append`] checked against the working snapshot, with its view deltas computed.
struct PreparedAppend<'a> {
    /// The table's current name.
    name: String,
    batches: &'a [(RecordBatch, Vec<u8>)],
    segments: &'a [SegmentMeta],
    stored_next_segment: u64,
    view_deltas: Cow<'a, [(u64, DeltaPart)]>,
}

/// Checks an append (its table still exists, its views did not change under a bulk load) and
/// computes its view deltas. Everything that can fail about an append fails here, before any
/// write enters the batch.
fn prepare_append<'a>(store: &Store, op: &'a Op, working: &Snapshot) -> Result<PreparedAppend<'a>> {
    let Op::Append {
        table_id,
        table,
        batches,
        segments,
        view_deltas: precomputed,
        ..
    } = op
    else {
        return Err(Error::Corrupt("a transaction may hold only appends".into()));
    };
    let name = working
        .table_by_id(*table_id)
        .map(|t| t.def.name.clone())
        .ok_or_else(|| Error::TableNotFound(table.clone()))?;
    let stored_next_segment = if segments.is_empty() {
        0
    } else {
        store.meta_u64(keys::META_NEXT_SEGMENT_ID)?
    };
    // Every view over the table gets its delta part in this same commit.
    let view_deltas = match precomputed {
        Some((covered, parts)) => {
            let mut current: Vec<u64> =
                working.views_of(*table_id).map(|v| v.view.def.id).collect();
            current.sort_unstable();
            if &current != covered {
                return Err(Error::NotSupported(format!(
                    "the materialized views of table \"{table}\" changed while this bulk load ran; run it again"
                )));
            }
            Cow::Borrowed(parts.as_slice())
        }
        None => {
            let mut computed = Vec::new();
            for entry in working.views_of(*table_id) {
                let part =
                    views::maintain::delta_part(&entry.view, batches.iter().map(|(rb, _)| rb))?;
                computed.push((entry.view.def.id, part));
            }
            Cow::Owned(computed)
        }
    };
    Ok(PreparedAppend {
        name,
        batches,
        segments,
        stored_next_segment,
        view_deltas,
    })
}

/// Writes the catalog entries of new segments and advances the stored segment-id counter past
/// them (never backwards from `stored_next`). Returns the rows they hold.
fn register_segments(
    store: &Store,
    batch: &mut WriteBatch,
    state: &mut TableState,
    segments: &[SegmentMeta],
    stored_next: u64,
) -> u64 {
    let table_id = state.def.id;
    for seg in segments {
        batch.put_cf(
            store.cf(CF_CATALOG),
            keys::segment_key(table_id, seg.id),
            catalog::encode(seg),
        );
        state.segments.push(Arc::new(seg.clone()));
    }
    if let Some(max_id) = segments.iter().map(|s| s.id).max() {
        let next = stored_next.max(max_id + 1);
        batch.put_cf(
            store.cf(CF_META),
            keys::META_NEXT_SEGMENT_ID,
            next.to_be_bytes(),
        );
    }
    segments.iter().map(|s| s.rows).sum()
}
