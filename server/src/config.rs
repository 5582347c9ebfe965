//! Server configuration: command-line flags, environment variables and a TOML file.
//!
//! Precedence: a flag or environment variable (clap merges those) beats the file, which beats
//! the defaults (`./tally-data`, `127.0.0.1:5433`).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default data directory.
pub const DEFAULT_DATA: &str = "./tally-data";
/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5433";

/// The resolved configuration of `tally serve`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory.
    pub data: PathBuf,
    /// Address to listen on, `host:port`.
    pub listen: String,
    /// Users with passwords; empty means `trust` (allowed on loopback only).
    pub users: Vec<User>,
}

/// A user from the config file.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Password.
    pub password: String,
}

/// The TOML file's shape; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Data directory.
    pub data: Option<PathBuf>,
    /// Listen address.
    pub listen: Option<String>,
    /// Users (`[[users]] name = "…" password = "…"`).
    #[serde(default)]
    pub users: Vec<User>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data: PathBuf::from(DEFAULT_DATA),
            listen: DEFAULT_LISTEN.into(),
            users: vec![],
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
        Ok(Config {
            data: data
                .or(from_file.data)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA)),
            listen: listen
                .or(from_file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.into()),
            users: from_file.users,
        })
    }

    /// Refuses configurations that are unsafe to start: a non-loopback listen address without
    /// authentication, or users with passwords (password authentication is not built yet).
    pub fn check(&self) -> Result<(), String> {
        if !self.users.is_empty() {
            return Err(
                "password authentication (users in the config file) is not supported yet; \
                 remove [[users]] and listen on a loopback address"
                    .into(),
            );
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
        if let Some(open) = addrs.iter().find(|a| !is_loopback(a.ip())) {
            return Err(format!(
                "refusing to listen on {open}: it is not a loopback address and no authentication \
                 is configured, so anyone who can reach it could read and write all data; \
                 listen on 127.0.0.1 or ::1"
            ));
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
