//! The `tally` command line.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tally_engine::reexports::arrow::util::pretty::pretty_format_batches_with_schema;
use tally_engine::{Database, Options};
use tally_server::{Config, Server};

/// Tally: an embedded analytics storage engine.
#[derive(Parser)]
#[command(name = "tally", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the data directory over the Postgres wire protocol (psql, drivers, COPY).
    Serve {
        /// Data directory (created if missing) [default: ./tally-data].
        #[arg(long, env = "TALLY_DATA")]
        data: Option<PathBuf>,
        /// Address to listen on [default: 127.0.0.1:5433].
        #[arg(long, env = "TALLY_LISTEN")]
        listen: Option<String>,
        /// TOML config file: `data`, `listen`, `max_connections`, `metrics`, `[auth]` users, `[tls]`,
        /// `[storage]` flush thresholds (flags and environment win).
        #[arg(long, env = "TALLY_CONFIG")]
        config: Option<PathBuf>,
        /// TLS certificate chain (PEM); enables TLS together with --tls-key.
        #[arg(long, env = "TALLY_TLS_CERT")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM).
        #[arg(long, env = "TALLY_TLS_KEY")]
        tls_key: Option<PathBuf>,
        /// Sessions served at once; more are refused with SQLSTATE 53300 [default: 100].
        #[arg(long, env = "TALLY_MAX_CONNECTIONS")]
        max_connections: Option<usize>,
        /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9187 [default: off].
        #[arg(long, env = "TALLY_METRICS", value_name = "ADDR")]
        metrics: Option<String>,
    },
    /// Run SQL against a data directory: from `-c`, or statement by statement from standard
    /// input (an interactive prompt on a terminal).
    Sql {
        /// Data directory (created if missing).
        #[arg(long, env = "TALLY_DATA", default_value = "./tally-data")]
        data: PathBuf,
        /// SQL to run; several statements may be separated by `;`.
        #[arg(short = 'c', long)]
        command: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server logs where it listens by default; the SQL shell stays quiet.
    let default_log = match cli.command {
        Command::Serve { .. } => "info",
        Command::Sql { .. } => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TALLY_LOG")
                .unwrap_or_else(|_| default_log.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Sessions parse, rewrite and plan statements on these threads: deep ones recurse deeply.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(tally_engine::depth::THREAD_STACK)
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Sql { data, command } => runtime.block_on(run_sql(data, command)),
        Command::Serve {
            data,
            listen,
            config,
            tls_cert,
            tls_key,
            max_connections,
            metrics,
        } => runtime.block_on(serve(
            Config::resolve(data, listen, config.as_deref())
                .and_then(|c| c.with_tls_files(tls_cert, tls_key))
                .map(|c| c.with_max_connections(max_connections))
                .map(|c| c.with_metrics(metrics)),
        )),
    }
}

async fn serve(config: Result<Config, String>) -> ExitCode {
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = config.storage.apply(Options::default());
    let server = match Server::bind(&config, options).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = server
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| config.listen.clone());
    tracing::info!(
        "Tally {} listening on {addr} (data in {}, auth {}, TLS {}); connect with: psql -h {} -p {}",
        env!("CARGO_PKG_VERSION"),
        server.database().path().display(),
        config.auth.method,
        match &config.tls {
            Some(tls) if tls.require => "required",
            Some(_) => "on",
            None => "off",
        },
        addr.rsplit_once(':').map(|(h, _)| h).unwrap_or("127.0.0.1"),
        addr.rsplit_once(':').map(|(_, p)| p).unwrap_or("5433"),
    );
    if let Some(metrics) = server.metrics_addr() {
        tracing::info!("serving Prometheus metrics at http://{metrics}/metrics");
    }
    match server.run(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot listen for SIGTERM: {e}");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

async fn run_sql(data: PathBuf, command: Option<String>) -> ExitCode {
    let db = match Database::open(&data, Options::default()) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ok = match command {
        Some(sql) => run_and_print(&db, &sql).await,
        None => repl(&db).await,
    };
    if let Err(e) = db.close() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Reads statements from stdin, running each one once a line ends with `;`.
async fn repl(db: &Database) -> bool {
    let interactive = std::io::stdin().is_terminal();
    let mut ok = true;
    let mut buffer = String::new();
    let prompt = |continuation: bool| {
        if interactive {
            print!("{}", if continuation { "tally-> " } else { "tally=> " });
            let _ = std::io::stdout().flush();
        }
    };
    prompt(false);
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        buffer.push_str(&line);
        buffer.push('\n');
        if line.trim_end().ends_with(';') {
            ok &= run_and_print(db, &buffer).await;
            buffer.clear();
        }
        prompt(!buffer.trim().is_empty());
    }
    if !buffer.trim().is_empty() {
        ok &= run_and_print(db, &buffer).await;
    }
    ok
}

async fn run_and_print(db: &Database, sql: &str) -> bool {
    match db.execute(sql).await {
        Ok(results) => {
            for result in results {
                if result.schema.fields().is_empty() {
                    println!("{}", result.command);
                } else if result.command == "INSERT" {
                    println!("INSERT 0 {}", result.rows);
                } else {
                    match pretty_format_batches_with_schema(result.schema.clone(), &result.batches)
                    {
                        Ok(table) => {
                            let plural = if result.rows == 1 { "" } else { "s" };
                            println!("{table}\n({} row{plural})", result.rows)
                        }
                        Err(e) => eprintln!("error: cannot format the result: {e}"),
                    }
                }
            }
            true
        }
        Err(e) => {
            eprintln!("ERROR: {e}");
            false
        }
    }
}
