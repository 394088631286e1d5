//! The `sealog` command.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sealog::auth::Scope;
use sealog::datadir::DataDir;
use sealog::http::Limits;
use sealog::{sequencer, server};

#[derive(Parser)]
#[command(
    name = "sealog",
    version,
    about = "A transparency log for tamper-evident audit events"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the log server (creates the log on first use).
    Serve {
        /// Data directory: key, admin token, database.
        #[arg(long, default_value = "./sealog-data")]
        data: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// The log's origin (and key name); only used when the key is created.
        #[arg(long)]
        origin: Option<String>,
        /// Largest request body, in bytes.
        #[arg(long, default_value_t = Limits::default().max_body_bytes)]
        max_body_bytes: usize,
        /// Most events in one request.
        #[arg(long, default_value_t = Limits::default().max_events)]
        max_events: usize,
        /// Most events in one batch (one transaction, one checkpoint).
        #[arg(long, default_value_t = sequencer::Config::default().max_batch)]
        batch_max: usize,
        /// Longest a batch waits for more events, in microseconds.
        #[arg(long, default_value_t = sequencer::Config::default().max_wait.as_micros() as u64)]
        batch_wait_us: u64,
        /// Most events waiting for the sequencer before appends get 503.
        #[arg(long, default_value_t = sequencer::Config::default().queue_capacity)]
        queue_capacity: usize,
    },
    /// Create a log key pair (log.key, log.vkey) for an operator who manages keys.
    Keygen {
        #[arg(long)]
        origin: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Manage bearer tokens of a stopped log (a running one: /v1/tokens).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it (the only time it is shown).
    Create {
        #[arg(long, default_value = "./sealog-data")]
        data: PathBuf,
        /// Scopes, comma-separated: append, read, admin.
        #[arg(long, value_delimiter = ',', required = true)]
        scope: Vec<String>,
        #[arg(long)]
        name: String,
    },
    /// List tokens: name, scopes, revoked.
    List {
        #[arg(long, default_value = "./sealog-data")]
        data: PathBuf,
    },
    /// Revoke the active token with this name.
    Revoke {
        #[arg(long, default_value = "./sealog-data")]
        data: PathBuf,
        #[arg(long)]
        name: String,
    },
}

fn token_command(c: TokenCommand) -> Result<(), String> {
    match c {
        TokenCommand::Create { data, scope, name } => {
            let scopes = scope
                .iter()
                .map(|s| {
                    serde_json::from_value(serde_json::Value::from(s.as_str()))
                        .map_err(|_| format!("unknown scope {s:?}; use append, read or admin"))
                })
                .collect::<Result<Vec<Scope>, _>>()?;
            let token = server::token_create(&data, &name, scopes).map_err(|e| e.to_string())?;
            println!("{token}");
        }
        TokenCommand::List { data } => {
            for t in server::token_list(&data).map_err(|e| e.to_string())? {
                let scopes = serde_json::to_string(&t.scopes).expect("scopes serialize");
                let state = if t.revoked { "revoked" } else { "active" };
                println!("{}\t{}\t{state}", t.name, scopes);
            }
        }
        TokenCommand::Revoke { data, name } => {
            server::token_revoke(&data, &name).map_err(|e| e.to_string())?
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = match Cli::parse().command {
        Command::Serve {
            data,
            listen,
            origin,
            max_body_bytes,
            max_events,
            batch_max,
            batch_wait_us,
            queue_capacity,
        } => {
            let opts = server::Options {
                data,
                listen,
                origin,
                limits: Limits {
                    max_body_bytes,
                    max_events,
                },
                sequencer: sequencer::Config {
                    max_batch: batch_max.max(1),
                    max_wait: Duration::from_micros(batch_wait_us),
                    queue_capacity: queue_capacity.max(1),
                },
            };
            tokio::runtime::Runtime::new()
                .map_err(|e| e.to_string())
                .and_then(|rt| rt.block_on(server::serve(opts)).map_err(|e| e.to_string()))
        }
        Command::Token { command } => token_command(command),
        Command::Keygen { origin, out } => server::keygen(&DataDir(out), &origin)
            .map(|vkey| println!("{vkey}"))
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sealog: {e}");
            ExitCode::FAILURE
        }
    }
}
