//! A data directory on a small tmpfs fills up: the COPY that meets the full disk fails with
//! SQLSTATE 53100 and leaves nothing behind, acknowledged rows stay readable, and once space is
//! freed and the server restarted, ingest resumes and views are exact.
//!
//! Mounting needs root (CAP_SYS_ADMIN); elsewhere the test says it is skipped and passes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tokio_postgres::error::SqlState;

use crate::harness::Tally;
use crate::workload::{self, Ledger};

/// Segments and spills are written as the disk fills, not only RocksDB's log.
const CONFIG: &str = "[storage]\nflush_rows = 20000\n";

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, megabytes: u64) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }

    fn resize(&self, megabytes: u64) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={megabytes}m")])
            .arg(&self.dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "remount the tmpfs");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_copy_with_53100_and_ingest_resumes_after_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let disk = match Tmpfs::mount(&dir.path().join("disk"), 40) {
        Ok(disk) => disk,
        Err(e) => {
            eprintln!("skipped: cannot mount a tmpfs to fill ({e}); run the tests as root");
            return;
        }
    };
    let data = disk.dir.join("data");
    let server = Tally::start(&data, CONFIG).await;
    let client = server.client().await;
    workload::create_schema(&client).await;

    // COPYs of 40 batches (about 12,000 rows) until the disk is full.
    let ledger = Ledger::default();
    let mut failure = None;
    for _ in 0..5_000 {
        if let Err(e) = workload::copy_batches(&client, &ledger, 40).await {
            failure = Some(e);
            break;
        }
    }
    let failure = failure.expect("the disk never filled up");
    let db_error = failure
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {failure:?}\n{}", server.log_text()));
    assert_eq!(
        db_error.code(),
        &SqlState::DISK_FULL,
        "{db_error:?}\n{}",
        server.log_text()
    );
    assert!(
        db_error.message().contains("No space left on device"),
        "{}",
        db_error.message()
    );
    eprintln!(
        "disk full after {} acknowledged rows: {}",
        ledger.acked_rows(),
        db_error.message()
    );

    // Still full: the next COPY fails the same way; what was acknowledged stays readable.
    let again = workload::copy_batches(&client, &ledger, 40)
        .await
        .unwrap_err();
    assert_eq!(again.code(), Some(&SqlState::DISK_FULL), "{again:?}");
    let stored = stored_rows(&client).await;
    assert_eq!(
        stored,
        ledger.acked_rows(),
        "a failed COPY left rows behind"
    );
    workload::check(&client, &ledger).await;

    // Free space, restart: everything acknowledged is there, ingest resumes, views are exact.
    disk.resize(256);
    drop(client);
    stop_or_kill(server).await;
    let server = Tally::start(&data, CONFIG).await;
    let client = server.client().await;
    workload::check(&client, &ledger).await;
    assert_eq!(stored_rows(&client).await, ledger.acked_rows());
    for _ in 0..5 {
        workload::copy_batches(&client, &ledger, 40)
            .await
            .expect("ingest resumes once space is freed");
    }
    workload::check(&client, &ledger).await;
    assert_eq!(stored_rows(&client).await, ledger.acked_rows());
    drop(client);
    server.stop().await;
}

async fn stored_rows(client: &tokio_postgres::Client) -> u64 {
    workload::rows(client, "SELECT count(*) FROM events").await[0]
        .parse()
        .unwrap()
}

/// SIGTERM; a server whose storage refused writes may fail its final flush, and exits either
/// way. SIGKILL if it does not exit within 30 s.
async fn stop_or_kill(mut server: Tally) {
    server.signal("TERM");
    match server.wait_exit(Duration::from_secs(30)).await {
        Some(status) => eprintln!("stopped after the full disk with {status}"),
        None => {
            eprintln!(
                "no exit 30 s after SIGTERM; killing:\n{}",
                server.log_text()
            );
            server.kill_9();
        }
    }
}
