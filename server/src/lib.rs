//! Tally's Postgres wire server: `tally serve` as a library, so tests and embedders can start it
//! in-process.
//!
//! [`Server::bind`] opens the data directory and binds the listener; [`Server::run`] accepts
//! connections until a shutdown signal, then closes the database. The protocol handlers live in
//! [`pg`] (authentication in [`pg::auth`]); TLS in [`tls`]; the configuration (flags,
//! environment, TOML file) in [`config`]; the Prometheus endpoint in [`metrics`].

pub mod config;
pub mod metrics;
pub mod pg;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pgwire::tokio::TlsAcceptor;
use tally_engine::{Database, Options};
use tokio::net::TcpListener;

use config::AuthMethod;
pub use config::Config;

/// Connections past `max_connections` answered with an error at the same time; more are closed
/// without one.
const REFUSALS_AT_ONCE: usize = 64;

/// A bound, not yet running, Postgres wire server over one open [`Database`].
pub struct Server {
    listener: TcpListener,
    db: Database,
    shared: Arc<pg::Shared>,
    tls: Option<TlsAcceptor>,
    grace: Duration,
    max_connections: usize,
    /// The Prometheus endpoint, when `--metrics` is given.
    metrics: Option<metrics::Endpoint>,
}

impl Server {
    /// Checks the configuration, loads the TLS certificate, derives the users' secrets, binds
    /// the listen address (and the metrics address, if any) and opens the database.
    ///
    /// The server adds its `pg_catalog` emulation ([`pg::catalog::PgCatalog`]) to `options`.
    pub async fn bind(config: &Config, mut options: Options) -> Result<Server, String> {
        config.check()?;
        let tls = config.tls.as_ref().map(tls::Tls::load).transpose()?;
        warn_if_unencrypted(config);
        let login = pg::auth::Login::new(
            &config.auth,
            tls.as_ref().map(|t| t.cert_pem.as_slice()),
            config.tls.as_ref().is_some_and(|t| t.require),
        );
        options
            .session_extensions
            .push(Arc::new(pg::catalog::PgCatalog));
        let sessions = Arc::new(pg::sessions::Sessions::default());
        options
            .session_extensions
            .push(Arc::new(pg::sessions::SessionsExtension(Arc::clone(
                &sessions,
            ))));
        let listener = TcpListener::bind(&config.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        // Bound before the database opens, so a taken port fails fast and leaves it closed.
        let metrics_listener = match &config.metrics {
            Some(addr) => Some(metrics::Endpoint::bind_listener(addr).await?),
            None => None,
        };
        let data = config.data.clone();
        let db = tokio::task::spawn_blocking(move || Database::open(&data, options))
            .await
            .map_err(|e| format!("opening the database failed: {e}"))?
            .map_err(|e| format!("cannot open {}: {e}", config.data.display()))?;
        let shared = Arc::new(pg::Shared::new(db.clone(), login, sessions));
        let metrics = metrics_listener
            .map(|listener| metrics::Endpoint::new(listener, Arc::clone(shared.metrics())));
        Ok(Server {
            listener,
            db,
            shared,
            tls: tls.map(|t| t.acceptor),
            grace: Duration::from_secs(5),
            max_connections: config.max_connections,
            metrics,
        })
    }

    /// How long shutdown waits for open connections to finish before closing them (5 s by
    /// default).
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Server {
        self.grace = grace;
        self
    }

    /// The address the server listens on (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address the metrics endpoint listens on, when there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|m| m.local_addr().ok())
    }

    /// The open database.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Accepts connections until `shutdown` completes; then stops accepting, gives running
    /// connections a moment to finish, and closes the database (flush, release the directory).
    ///
    /// Past `max_connections` sessions, a new connection gets PostgreSQL's error 53300 once it
    /// has sent its startup packet (a few of those refusals run at once; beyond them the
    /// connection is closed at once).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), String> {
        // Scrapes are answered until the database is closed; dropping the set ends the task.
        let mut endpoint = tokio::task::JoinSet::new();
        if let Some(metrics) = self.metrics {
            endpoint.spawn(metrics.serve());
        }
        let mut connections = tokio::task::JoinSet::new();
        let mut refusals = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((socket, peer)) if connections.len() >= self.max_connections => {
                        self.shared.metrics().connection_refused();
                        tracing::warn!(
                            "refusing {peer}: {} sessions already (max_connections)",
                            connections.len()
                        );
                        if refusals.len() < REFUSALS_AT_ONCE {
                            refusals.spawn(pg::refuse::too_many_clients(socket));
                        }
                    }
                    Ok((socket, peer)) => {
                        let _ = socket.set_nodelay(true);
                        let handlers = pg::ConnectionHandlers::new(Arc::clone(&self.shared));
                        let tls = self.tls.clone();
                        let session = self.shared.metrics().session();
                        connections.spawn(async move {
                            let _session = session;
                            if let Err(e) = pg::connection::serve(socket, tls, handlers).await {
                                tracing::debug!("connection from {peer} ended: {e}");
                            }
                        });
                    }
                    Err(e) => tracing::warn!("accept failed: {e}"),
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                Some(_) = refusals.join_next(), if !refusals.is_empty() => {}
            }
        }
        drop(self.listener);
        refusals.abort_all();
        tracing::info!(
            "shutting down: waiting up to {:?} for {} connection(s)",
            self.grace,
            connections.len()
        );
        let drain = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(self.grace, drain).await.is_err() {
            connections.abort_all();
            while connections.join_next().await.is_some() {}
        }
        drop(self.shared);
        let db = self.db;
        tokio::task::spawn_blocking(move || db.close())
            .await
            .map_err(|e| format!("closing the database failed: {e}"))?
            .map_err(|e| format!("closing the database failed: {e}"))?;
        tracing::info!("database closed");
        Ok(())
    }
}

/// Passwords or data that cross a network unencrypted deserve a warning (not a refusal: a private
/// network may be trusted).
fn warn_if_unencrypted(config: &Config) {
    if config.auth.method == AuthMethod::Password && config.tls.is_none() {
        tracing::warn!(
            "[auth] method = \"password\" without [tls]: clients send passwords unencrypted"
        );
    }
    if config.auth.method != AuthMethod::Trust
        && config.tls.is_none()
        && !config.listens_on_loopback()
    {
        tracing::warn!(
            "listening on {} without TLS: queries and results cross the network unencrypted",
            config.listen
        );
    }
}
