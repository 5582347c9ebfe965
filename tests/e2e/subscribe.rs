//! The view changefeed (`Database::subscribe`): every change batch holds exactly the groups its
//! commit changed, with the values the view has after that commit; a subscriber resumes after a
//! sequence from the ring, and gets a fresh snapshot when the ring no longer covers it.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::RecordBatch;
use tally_engine::{ChangeBatch, ChangeKind, Database, ErrorKind, Options, Subscription};
use tally_tests::*;

const VIEW: &str = "CREATE MATERIALIZED VIEW per_page AS \
     SELECT page, count(*) AS n, sum(latency_ms) AS total FROM events GROUP BY page";

fn group_of(line: &str) -> String {
    line.split('|').next().unwrap_or_default().to_string()
}

/// The view as `SELECT * FROM per_page` returns it now, by group.
async fn view_now(db: &Database) -> BTreeMap<String, String> {
    query_lines(db, "SELECT * FROM per_page")
        .await
        .into_iter()
        .map(|l| (group_of(&l), l))
        .collect()
}

/// The groups (pages, NULL rendered empty) the rows of an events batch fall into.
fn pages_of(batch: &RecordBatch) -> BTreeSet<String> {
    let page = batch.column_by_name("page").expect("page column");
    let formatter =
        arrow::util::display::ArrayFormatter::try_new(page.as_ref(), &Default::default())
            .expect("formatter");
    (0..batch.num_rows())
        .map(|i| formatter.value(i).to_string())
        .collect()
}

/// Checks that `change` holds exactly the groups in `pages`, each as the view has it now.
async fn assert_change_matches(db: &Database, change: &ChangeBatch, pages: &BTreeSet<String>) {
    assert_eq!(change.kind, ChangeKind::Change);
    let view = view_now(db).await;
    let got: BTreeMap<String, String> = batch_lines(&change.rows)
        .into_iter()
        .map(|l| (group_of(&l), l))
        .collect();
    assert_eq!(got.len(), change.rows.num_rows(), "each group appears once");
    let expected: BTreeMap<String, String> = view
        .into_iter()
        .filter(|(g, _)| pages.contains(g))
        .collect();
    assert_eq!(
        got, expected,
        "change {} is the view's rows of its groups",
        change.seq
    );
}

async fn setup(options: Options) -> (tempfile::TempDir, Database) {
    let (dir, db) = temp_db(options);
    db.sql(EVENTS_DDL).await.unwrap();
    db.ingest("events", events_batch(0, 40, 2)).await.unwrap();
    db.sql(VIEW).await.unwrap();
    (dir, db)
}

async fn first_snapshot(db: &Database, sub: &mut Subscription) -> u64 {
    let snapshot = sub.next().await.unwrap();
    assert_eq!(snapshot.kind, ChangeKind::Snapshot);
    let rows: BTreeMap<String, String> = batch_lines(&snapshot.rows)
        .into_iter()
        .map(|l| (group_of(&l), l))
        .collect();
    assert_eq!(rows, view_now(db).await, "the snapshot is the whole view");
    snapshot.seq
}

#[tokio::test]
async fn each_commit_yields_its_changed_groups_with_their_new_values() {
    let (_dir, db) = setup(test_options()).await;
    let mut sub = db.subscribe("per_page", None).await.unwrap();
    assert_eq!(
        sub.schema(),
        db.sql("SELECT * FROM per_page").await.unwrap()[0].schema()
    );
    let mut seq = first_snapshot(&db, &mut sub).await;

    // Library ingests, of batches touching few or many groups.
    for (b, rows) in [(1, 3), (2, 60), (3, 1)] {
        let batch = events_batch(b, rows, 2);
        db.ingest("events", batch.clone()).await.unwrap();
        let change = sub.next().await.unwrap();
        assert_eq!(change.seq, seq + 1, "one sequence per single-batch commit");
        assert_change_matches(&db, &change, &pages_of(&batch)).await;
        seq = change.seq;
    }

    // A bulk ingest of several batches is one commit: one change covering all its groups.
    let mut bulk = db.bulk_ingest("events").unwrap();
    let mut pages = BTreeSet::new();
    for b in 10..13 {
        let batch = events_batch(b, 7 * b as usize, 2);
        pages.extend(pages_of(&batch));
        bulk.write(batch).await.unwrap();
    }
    bulk.commit().await.unwrap();
    let change = sub.next().await.unwrap();
    assert!(change.seq > seq);
    assert_change_matches(&db, &change, &pages).await;
    seq = change.seq;

    // A commit to another table changes nothing here: the next change is the next ingest's.
    db.sql("CREATE TABLE other (ts TIMESTAMP NOT NULL, x BIGINT)")
        .await
        .unwrap();
    db.sql("INSERT INTO other VALUES ('2026-01-01 00:00:00', 1)")
        .await
        .unwrap();
    let batch = events_batch(20, 5, 1);
    db.ingest("events", batch.clone()).await.unwrap();
    let change = sub.next().await.unwrap();
    assert_eq!(
        change.seq,
        seq + 2,
        "the insert into `other` took one sequence"
    );
    assert_change_matches(&db, &change, &pages_of(&batch)).await;
}

#[tokio::test]
async fn a_subscriber_resumes_after_the_last_sequence_it_applied() {
    let (_dir, db) = setup(test_options()).await;
    let mut sub = db.subscribe("per_page", None).await.unwrap();
    let snapshot = sub.next().await.unwrap();
    let mut state: BTreeMap<String, String> = batch_lines(&snapshot.rows)
        .into_iter()
        .map(|l| (group_of(&l), l))
        .collect();
    let mut seen = vec![];
    let mut committed = vec![];
    for b in 1..=3 {
        db.ingest("events", events_batch(b, 20, 2)).await.unwrap();
        committed.push(snapshot.seq + b as u64);
    }
    let change = sub.next().await.unwrap();
    seen.push(change.seq);
    state.extend(
        batch_lines(&change.rows)
            .into_iter()
            .map(|l| (group_of(&l), l)),
    );
    let applied = change.seq;
    drop(sub);

    for b in 4..=5 {
        db.ingest("events", events_batch(b, 20, 2)).await.unwrap();
        committed.push(snapshot.seq + b as u64);
    }
    let mut sub = db.subscribe("per_page", Some(applied)).await.unwrap();
    assert_eq!(sub.seq(), applied);
    while seen.len() < committed.len() {
        let change = sub.next().await.unwrap();
        assert_eq!(change.kind, ChangeKind::Change, "resumed from the ring");
        seen.push(change.seq);
        state.extend(
            batch_lines(&change.rows)
                .into_iter()
                .map(|l| (group_of(&l), l)),
        );
    }
    assert_eq!(seen, committed, "every commit exactly once, in order");
    assert_eq!(state, view_now(&db).await);
}

#[tokio::test]
async fn a_subscriber_behind_the_ring_gets_a_fresh_snapshot() {
    let options = Options {
        changefeed_ring_commits: 3,
        ..test_options()
    };
    let (_dir, db) = setup(options).await;
    let mut slow = db.subscribe("per_page", None).await.unwrap();
    let start = first_snapshot(&db, &mut slow).await;
    // A subscriber that keeps up proves that every change reached the ring.
    let mut fast = db.subscribe("per_page", None).await.unwrap();
    first_snapshot(&db, &mut fast).await;
    for b in 1..=6 {
        db.ingest("events", events_batch(b, 10, 2)).await.unwrap();
        assert_eq!(fast.next().await.unwrap().seq, start + b as u64);
    }
    let fresh = slow.next().await.unwrap();
    assert_eq!(fresh.kind, ChangeKind::Snapshot, "no gap: a new snapshot");
    assert_eq!(fresh.seq, start + 6);
    let rows: BTreeMap<String, String> = batch_lines(&fresh.rows)
        .into_iter()
        .map(|l| (group_of(&l), l))
        .collect();
    assert_eq!(rows, view_now(&db).await);

    // Resuming from a sequence older than the ring also starts with a snapshot, while one the
    // ring covers does not.
    let mut old = db.subscribe("per_page", Some(start)).await.unwrap();
    assert_eq!(old.next().await.unwrap().kind, ChangeKind::Snapshot);
    let mut recent = db.subscribe("per_page", Some(start + 4)).await.unwrap();
    let change = recent.next().await.unwrap();
    assert_eq!((change.kind, change.seq), (ChangeKind::Change, start + 5));
}

#[tokio::test]
async fn a_restart_answers_from_with_a_snapshot() {
    let (dir, db) = setup(test_options()).await;
    let mut sub = db.subscribe("per_page", None).await.unwrap();
    let seq = first_snapshot(&db, &mut sub).await;
    drop(sub);
    db.close().unwrap();
    let db = Database::open(dir.path().join("data"), test_options()).unwrap();
    let mut sub = db.subscribe("per_page", Some(seq)).await.unwrap();
    let first = sub.next().await.unwrap();
    assert_eq!((first.kind, first.seq), (ChangeKind::Snapshot, seq));
}

#[tokio::test]
async fn bad_subscriptions_are_refused_and_drop_or_close_end_them() {
    let (_dir, db) = setup(test_options()).await;
    let err = db.subscribe("nope", None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UndefinedTable, "{err}");
    let err = db.subscribe("events", None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotSupported, "{err}");
    assert!(err.to_string().contains("is a table"), "{err}");
    let err = db.subscribe("per_page", Some(1_000_000)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("1000000"), "{err}");

    let mut sub = db.subscribe("per_page", None).await.unwrap();
    first_snapshot(&db, &mut sub).await;
    db.sql("DROP MATERIALIZED VIEW per_page").await.unwrap();
    let err = sub.next().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UndefinedTable, "{err}");
    assert!(err.to_string().contains("was dropped"), "{err}");

    db.sql(VIEW).await.unwrap();
    let mut sub = db.subscribe("per_page", None).await.unwrap();
    first_snapshot(&db, &mut sub).await;
    let waiting = tokio::spawn(async move { sub.next().await });
    tokio::task::yield_now().await;
    db.close().unwrap();
    let err = waiting.await.unwrap().unwrap_err();
    assert!(matches!(err, tally_engine::Error::Closed), "{err}");
}

#[tokio::test]
async fn a_transaction_is_one_change_and_a_rollback_none() {
    let (_dir, db) = setup(test_options()).await;
    let mut sub = db.subscribe("per_page", None).await.unwrap();
    let start = first_snapshot(&db, &mut sub).await;

    let tx = db.begin();
    tx.ingest("events", events_batch(1, 5, 1)).await.unwrap();
    tx.rollback();
    let tx = db.begin();
    let mut pages = BTreeSet::new();
    for b in 2..5 {
        let batch = events_batch(b, 9, 1);
        pages.extend(pages_of(&batch));
        tx.ingest("events", batch).await.unwrap();
    }
    tx.commit().await.unwrap();
    let change = sub.next().await.unwrap();
    assert!(change.seq > start);
    assert_change_matches(&db, &change, &pages).await;
}

/// Concurrent writers (their commits grouped by the commit thread): the changes, applied by
/// group key in sequence order, rebuild the view exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_of_concurrent_writers_rebuild_the_view() {
    let (_dir, db) = setup(test_options()).await;
    let mut sub = db.subscribe("per_page", None).await.unwrap();
    let snapshot = sub.next().await.unwrap();
    let mut state: BTreeMap<String, String> = batch_lines(&snapshot.rows)
        .into_iter()
        .map(|l| (group_of(&l), l))
        .collect();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let db = db.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    db.ingest("events", events_batch(100 + w * 10 + i, 7, 1))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let last = query_i64(
        &db,
        "SELECT last_commit FROM tally_views WHERE name = 'per_page'",
    )
    .await as u64;
    let mut seq = snapshot.seq;
    while seq < last {
        let change = sub.next().await.unwrap();
        assert_eq!(change.kind, ChangeKind::Change);
        assert!(change.seq > seq, "sequences increase");
        seq = change.seq;
        state.extend(
            batch_lines(&change.rows)
                .into_iter()
                .map(|l| (group_of(&l), l)),
        );
    }
    assert_eq!(seq, last);
    assert_eq!(state, view_now(&db).await);
}
