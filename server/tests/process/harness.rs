//! Starting, signalling and killing a `tally serve` child process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

/// How long a server may take to accept its first connection (a debug build opening a data
/// directory that holds a few hundred thousand rows).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `tally serve` child. Killed (SIGKILL) when dropped, if still running.
pub struct Tally {
    child: Child,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    log: PathBuf,
}

impl Tally {
    /// Starts `tally serve` on `data` with the TOML `config` text, on a free port, and waits
    /// until it answers a query.
    pub async fn start(data: &Path, config: &str) -> Tally {
        Tally::start_with_args(data, config, &[]).await
    }

    /// [`Tally::start`] with more command-line arguments for `tally serve`.
    pub async fn start_with_args(data: &Path, config: &str, args: &[&str]) -> Tally {
        let parent = data.parent().expect("data directory has a parent");
        let config_file = parent.join("tally.toml");
        std::fs::write(&config_file, config).expect("write the config file");
        for attempt in 0.. {
            let port = free_port();
            let log = parent.join(format!("tally-{port}.log"));
            let child = Command::new(env!("CARGO_BIN_EXE_tally"))
                .arg("serve")
                .arg("--data")
                .arg(data)
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--config")
                .arg(&config_file)
                .args(args)
                .env("TALLY_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("create the server log"))
                .spawn()
                .expect("spawn the tally binary");
            let mut server = Tally { child, port, log };
            match server.wait_until_ready().await {
                Ok(()) => return server,
                // Another process took the port between our probe and the bind: try another.
                Err(log) if log.contains("cannot listen") && attempt < 5 => continue,
                Err(log) => panic!("tally serve did not start:\n{log}"),
            }
        }
        unreachable!()
    }

    async fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}: {}", self.log_text()));
            }
            if let Ok(client) = self.try_client().await
                && client.simple_query("SELECT 1").await.is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Err(format!(
                    "no answer within {START_TIMEOUT:?}: {}",
                    self.log_text()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A new session.
    pub async fn client(&self) -> Client {
        self.try_client()
            .await
            .unwrap_or_else(|e| panic!("connect to tally on port {}: {e}", self.port))
    }

    async fn try_client(&self) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={} user=tally dbname=tally", self.port),
            NoTls,
        )
        .await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// The operating-system process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `INT`) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {name} failed");
    }

    /// SIGKILL, then reaps the process (after checking that nothing in it panicked).
    pub fn kill_9(&mut self) {
        self.assert_no_panic();
        self.child.kill().expect("SIGKILL tally");
        self.child.wait().expect("reap tally");
    }

    /// Panics with the log if the server logged a panic (a task that panicked is caught by
    /// tokio and would otherwise go unnoticed).
    pub fn assert_no_panic(&self) {
        let log = self.log_text();
        assert!(!log.contains("panicked"), "the server panicked:\n{log}");
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM and a clean exit within 30 s (panics otherwise, with the log).
    pub async fn stop(mut self) {
        self.signal("TERM");
        match self.wait_exit(Duration::from_secs(30)).await {
            Some(status) if status.success() => self.assert_no_panic(),
            other => panic!(
                "tally did not stop cleanly ({other:?}):\n{}",
                self.log_text()
            ),
        }
    }

    /// Resident and peak resident memory in KiB (`VmRSS`, `VmHWM` of /proc), if readable.
    pub fn memory_kib(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// What the server wrote to its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("probe a free port")
        .port()
}
