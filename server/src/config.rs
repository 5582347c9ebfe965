//! Server configuration: command-line flags, environment variables and a TOML file.
//!
//! Precedence: a flag or environment variable (clap merges those) beats the file, which beats
//! the defaults (`./tally-data`, `127.0.0.1:5433`, `trust`, no TLS).
//!
//! ```toml
//! data = "/var/lib/tally"
//! listen = "0.0.0.0:5433"
//! max_connections = 100           # sessions at once; more are refused with SQLSTATE 53300
//! metrics = "127.0.0.1:9187"      # serve Prometheus metrics at http://ADDR/metrics (off by default)
//!
//! [auth]
//! method = "scram-sha-256"        # or "md5", "password" (cleartext), "trust"
//! [[auth.users]]
//! name = "app"
//! password = "…"
//!
//! [tls]
//! cert = "/etc/tally/server.crt"  # PEM certificate chain
//! key = "/etc/tally/server.key"   # PEM private key (PKCS#8, PKCS#1 or SEC1)
//! require = false                 # true: refuse connections without TLS
//!
//! [storage]                       # when the hot tier becomes a Parquet segment
//! flush_rows = 1000000            # rows of a table kept hot at most
//! flush_bytes = 67108864          # … or bytes of them
//! flush_age_seconds = 60          # … or age of the oldest hot row
//! ```

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tally_engine::Options;

/// Default data directory.
pub const DEFAULT_DATA: &str = "./tally-data";
/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5433";
/// Default limit of concurrent sessions (PostgreSQL's default too).
pub const DEFAULT_MAX_CONNECTIONS: usize = 100;

/// The resolved configuration of `tally serve`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory.
    pub data: PathBuf,
    /// Address to listen on, `host:port`.
    pub listen: String,
    /// How clients authenticate.
    pub auth: AuthConfig,
    /// TLS certificate and key; `None` serves plaintext only.
    pub tls: Option<TlsConfig>,
    /// Sessions served at once; a connection beyond them is refused with PostgreSQL's
    /// `53300 sorry, too many clients already`.
    pub max_connections: usize,
    /// When tables' hot rows are flushed to Parquet segments (`[storage]`).
    pub storage: StorageConfig,
    /// Address (`host:port`) of the Prometheus metrics endpoint; `None` serves none.
    pub metrics: Option<String>,
}

/// Flush thresholds of the storage engine (`[storage]`); unset keys keep the engine's defaults
/// ([`Options::default`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Flush a table's hot rows to a Parquet segment once there are this many.
    pub flush_rows: Option<usize>,
    /// … or once they take this many bytes.
    pub flush_bytes: Option<usize>,
    /// … or once the oldest of them is this many seconds old.
    pub flush_age_seconds: Option<u64>,
}

impl StorageConfig {
    /// The engine options these settings give, starting from `base`.
    pub fn apply(&self, mut base: Options) -> Options {
        if let Some(rows) = self.flush_rows {
            base.flush_rows = rows;
        }
        if let Some(bytes) = self.flush_bytes {
            base.flush_bytes = bytes;
        }
        if let Some(seconds) = self.flush_age_seconds {
            base.flush_age = std::time::Duration::from_secs(seconds);
        }
        base
    }

    fn check(&self) -> Result<(), String> {
        for (key, value) in [
            ("flush_rows", self.flush_rows),
            ("flush_bytes", self.flush_bytes),
        ] {
            if value == Some(0) {
                return Err(format!("[storage] {key} must be at least 1"));
            }
        }
        Ok(())
    }
}

/// How clients authenticate (`[auth]`).
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// The method every connection uses.
    pub method: AuthMethod,
    /// Users with passwords; required by every method but `trust`.
    pub users: Vec<User>,
}

/// An authentication method, named as in PostgreSQL's `pg_hba.conf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMethod {
    /// Any user name, no password: loopback addresses only (the default without users).
    #[default]
    Trust,
    /// SCRAM-SHA-256, with channel binding (SCRAM-SHA-256-PLUS) over TLS (the default with
    /// users).
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// MD5 challenge-response (legacy clients).
    Md5,
    /// Cleartext password; use it only over TLS.
    Password,
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthMethod::Trust => "trust",
            AuthMethod::ScramSha256 => "scram-sha-256",
            AuthMethod::Md5 => "md5",
            AuthMethod::Password => "password",
        })
    }
}

/// A user from the config file (`[[auth.users]]`). Its `Debug` form hides the password.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Password.
    pub password: String,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// TLS settings (`[tls]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the server certificate, followed by any intermediates.
    pub cert: PathBuf,
    /// PEM file with the private key.
    pub key: PathBuf,
    /// Refuse connections that do not negotiate TLS.
    #[serde(default)]
    pub require: bool,
}

/// The TOML file's shape; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Data directory.
    pub data: Option<PathBuf>,
    /// Listen address.
    pub listen: Option<String>,
    /// Sessions served at once.
    pub max_connections: Option<usize>,
    /// Metrics endpoint address.
    pub metrics: Option<String>,
    /// `[auth]`.
    #[serde(default)]
    pub auth: FileAuth,
    /// `[tls]`.
    pub tls: Option<TlsConfig>,
    /// `[storage]`.
    #[serde(default)]
    pub storage: StorageConfig,
}

/// The `[auth]` table of the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAuth {
    /// Method; defaults to `scram-sha-256` when users are given, else `trust`.
    pub method: Option<AuthMethod>,
    /// `[[auth.users]] name = "…" password = "…"`.
    #[serde(default)]
    pub users: Vec<User>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data: PathBuf::from(DEFAULT_DATA),
            listen: DEFAULT_LISTEN.into(),
            auth: AuthConfig::default(),
            tls: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            storage: StorageConfig::default(),
            metrics: None,
        }
    }
}

impl Config {
    /// Merges flags/environment (`Some` where given), the optional file and the defaults.
    pub fn resolve(
        data: Option<PathBuf>,
        listen: Option<String>,
        file: Option<&Path>,
    ) -> Result<Config, String> {
        let from_file = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| format!("invalid config file {}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let users = from_file.auth.users;
        let method = from_file.auth.method.unwrap_or(if users.is_empty() {
            AuthMethod::Trust
        } else {
            AuthMethod::ScramSha256
        });
        Ok(Config {
            data: data
                .or(from_file.data)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA)),
            listen: listen
                .or(from_file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.into()),
            auth: AuthConfig { method, users },
            tls: from_file.tls,
            max_connections: from_file.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            storage: from_file.storage,
            metrics: from_file.metrics,
        })
    }

    /// Applies `--metrics` (or `TALLY_METRICS`) over the file's `metrics`.
    pub fn with_metrics(mut self, metrics: Option<String>) -> Config {
        if metrics.is_some() {
            self.metrics = metrics;
        }
        self
    }

    /// Applies `--max-connections` (or `TALLY_MAX_CONNECTIONS`) over the file's value.
    pub fn with_max_connections(mut self, max_connections: Option<usize>) -> Config {
        if let Some(max) = max_connections {
            self.max_connections = max;
        }
        self
    }

    /// Applies `--tls-cert`/`--tls-key` (or their environment variables) over the file's
    /// `[tls]`; a flag alone is completed by the file, and both are needed in the end.
    pub fn with_tls_files(
        mut self,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Config, String> {
        if cert.is_none() && key.is_none() {
            return Ok(self);
        }
        let (file_cert, file_key, require) = match self.tls.take() {
            Some(tls) => (Some(tls.cert), Some(tls.key), tls.require),
            None => (None, None, false),
        };
        match (cert.or(file_cert), key.or(file_key)) {
            (Some(cert), Some(key)) => {
                self.tls = Some(TlsConfig { cert, key, require });
                Ok(self)
            }
            _ => Err(
                "TLS needs both a certificate and a key: give --tls-cert and --tls-key \
                      (TALLY_TLS_CERT, TALLY_TLS_KEY) or [tls] cert and key in the config file"
                    .into(),
            ),
        }
    }

    /// Refuses configurations that are unsafe or cannot work: a non-loopback listen address
    /// with `trust`, a password method without users, users that `trust` would ignore.
    pub fn check(&self) -> Result<(), String> {
        self.check_users()?;
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        self.storage.check()?;
        if let Some(metrics) = &self.metrics {
            let resolves = metrics
                .to_socket_addrs()
                .map_err(|e| format!("invalid metrics address {metrics:?}: {e}"))?
                .next()
                .is_some();
            if !resolves {
                return Err(format!("metrics address {metrics:?} resolves to nothing"));
            }
        }
        let addrs: Vec<SocketAddr> = self
            .listen
            .to_socket_addrs()
            .map_err(|e| format!("invalid listen address {:?}: {e}", self.listen))?
            .collect();
        if addrs.is_empty() {
            return Err(format!(
                "listen address {:?} resolves to nothing",
                self.listen
            ));
        }
        if self.auth.method == AuthMethod::Trust
            && let Some(open) = addrs.iter().find(|a| !is_loopback(a.ip()))
        {
            return Err(format!(
                "refusing to listen on {open}: it is not a loopback address and no authentication \
                 is configured, so anyone who can reach it could read and write all data; \
                 listen on 127.0.0.1 or ::1, or add users with passwords to the config file \
                 ([[auth.users]] name = \"…\" password = \"…\")"
            ));
        }
        Ok(())
    }

    /// Whether the listen address is a loopback one (a failed lookup counts as not loopback).
    pub fn listens_on_loopback(&self) -> bool {
        self.listen
            .to_socket_addrs()
            .map(|mut addrs| addrs.all(|a| is_loopback(a.ip())))
            .unwrap_or(false)
    }

    fn check_users(&self) -> Result<(), String> {
        let method = self.auth.method;
        let users = &self.auth.users;
        if method == AuthMethod::Trust && !users.is_empty() {
            return Err(
                "[auth] method = \"trust\" lets anyone in without a password, but [[auth.users]] \
                 lists passwords: remove the users or choose \"scram-sha-256\""
                    .into(),
            );
        }
        if method != AuthMethod::Trust && users.is_empty() {
            return Err(format!(
                "[auth] method = \"{method}\" needs at least one user: add \
                 [[auth.users]] name = \"…\" password = \"…\" to the config file"
            ));
        }
        let mut names = HashSet::new();
        for user in users {
            if user.name.is_empty() {
                return Err("[[auth.users]]: a user has an empty name".into());
            }
            if user.password.is_empty() {
                return Err(format!(
                    "[[auth.users]]: user {:?} has an empty password",
                    user.name
                ));
            }
            if !names.insert(user.name.as_str()) {
                return Err(format!(
                    "[[auth.users]]: user {:?} is listed twice",
                    user.name
                ));
            }
        }
        Ok(())
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_file(text: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tally.toml");
        std::fs::write(&file, text).unwrap();
        Config::resolve(None, None, Some(&file))
    }

    #[test]
    fn storage_thresholds_come_from_the_file_and_default_to_the_engine() {
        let config =
            from_file("[storage]\nflush_rows = 5000\nflush_age_seconds = 2\n").expect("valid");
        let options = config.storage.apply(Options::default());
        assert_eq!(options.flush_rows, 5000);
        assert_eq!(options.flush_age, std::time::Duration::from_secs(2));
        assert_eq!(options.flush_bytes, Options::default().flush_bytes);
        let plain = Config::default().storage.apply(Options::default());
        assert_eq!(plain.flush_rows, Options::default().flush_rows);
    }

    #[test]
    fn the_metrics_address_comes_from_the_flag_then_the_file_and_is_off_by_default() {
        assert_eq!(Config::default().metrics, None);
        let none = from_file("listen = \"127.0.0.1:5433\"\n").expect("valid");
        assert_eq!(none.metrics, None);
        let file = from_file("metrics = \"127.0.0.1:9187\"\n").expect("valid");
        assert_eq!(file.metrics.as_deref(), Some("127.0.0.1:9187"));
        file.check().expect("a valid metrics address");
        let flag = file.clone().with_metrics(Some("[::1]:9999".into()));
        assert_eq!(flag.metrics.as_deref(), Some("[::1]:9999"));
        let kept = file.with_metrics(None);
        assert_eq!(kept.metrics.as_deref(), Some("127.0.0.1:9187"));
        let bad = Config::default().with_metrics(Some("no-port-here".into()));
        let error = bad.check().unwrap_err();
        assert!(
            error.contains("metrics address") && error.contains("no-port-here"),
            "{error}"
        );
        let wrong_type = from_file("metrics = 9187\n").unwrap_err();
        assert!(wrong_type.contains("metrics"), "{wrong_type}");
    }

    #[test]
    fn bad_storage_settings_are_refused_with_their_key() {
        let zero = from_file("[storage]\nflush_rows = 0\n").expect("parses");
        assert!(zero.check().unwrap_err().contains("flush_rows"));
        let unknown = from_file("[storage]\nflush_rowz = 10\n").unwrap_err();
        assert!(unknown.contains("flush_rowz"), "{unknown}");
        let negative = from_file("[storage]\nflush_bytes = -1\n").unwrap_err();
        assert!(negative.contains("flush_bytes"), "{negative}");
    }
}
