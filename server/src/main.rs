//! The `tally` command line.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tally_engine::reexports::arrow::util::pretty::pretty_format_batches_with_schema;
use tally_engine::{Database, Options};

/// Tally: an embedded analytics storage engine.
#[derive(Parser)]
#[command(name = "tally", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TALLY_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Sql { data, command } => runtime.block_on(run_sql(data, command)),
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
