//! The `sealog` command.

// The server allocates many small, short-lived buffers per request (JSON,
// receipts, B-tree pages); glibc's malloc took ~17% of append CPU in perf.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sealog::audit::{Auditor, Finding};
use sealog::auth::Scope;
use sealog::client;
use sealog::config::ServeConfig;
use sealog::datadir::DataDir;
use sealog::policy::Policy;
use sealog::receipt::Receipt;
use sealog::server;

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
        /// A TOML file of these options [./sealog.toml if present]; flags
        /// override it.
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        opts: ServeConfig,
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
    /// Run or set up a witness (C2SP tlog-witness).
    Witness {
        #[command(subcommand)]
        command: WitnessCommand,
    },
    /// Follow a log: check each checkpoint's signatures and its consistency
    /// with the last one stored; exit 2 with an evidence file on a fork.
    Audit {
        /// The log's URL.
        #[arg(long)]
        log: String,
        /// The log's verifier key (or a tlog-policy file with --policy).
        #[arg(long, required_unless_present = "policy")]
        vkey: Option<String>,
        /// A tlog-policy file: the log, witnesses and quorum.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Where the auditor keeps its checkpoint, replay state and evidence.
        #[arg(long, default_value = "./sealog-audit")]
        state: PathBuf,
        /// Rebuild the whole tree from entry bundles and compare every tile.
        #[arg(long)]
        replay: bool,
        /// A file holding a `read` token: replay also checks every event.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Keep following, checking every this many seconds.
        #[arg(long)]
        interval_secs: Option<u64>,
    },
    /// Take a consistent snapshot of a log (running or stopped) with its
    /// key files, into FILE (0600: it holds the signing key).
    Backup {
        #[arg(long, default_value = "./sealog-data")]
        data: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a new data directory from a backup: read-only unless
    /// --checkpoint shows the snapshot holds all the original ever signed.
    Restore {
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        data: PathBuf,
        /// The newest checkpoint the original log published.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
    /// Check a stopped log's whole store: redb integrity, every stored hash
    /// re-derived from the entries, every event against its commitment.
    Check {
        #[arg(long, default_value = "./sealog-data")]
        data: PathBuf,
    },
    /// Check a receipt offline (JSON or tlog-proof), optionally its
    /// witnesses, and with --log its consistency with the log's checkpoint.
    Verify {
        receipt: PathBuf,
        #[arg(long)]
        vkey: String,
        /// A witness's cosignature vkey; repeat for each.
        #[arg(long)]
        witness: Vec<String>,
        /// How many of the witnesses must have cosigned.
        #[arg(long, default_value_t = 0)]
        quorum: usize,
        /// The log's URL: also prove the receipt's checkpoint consistent
        /// with the log's current one (which then carries the quorum).
        #[arg(long)]
        log: Option<String>,
    },
}

fn read_text(p: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
}

async fn audit(
    log: String,
    policy: Policy,
    state: PathBuf,
    replay: bool,
    token: Option<String>,
    interval: Option<u64>,
) -> Result<bool, String> {
    let a = Auditor::new(&log, policy, &state, token).map_err(|e| e.to_string())?;
    loop {
        match a.step(replay).await.map_err(|e| e.to_string())? {
            Finding::Consistent { size, replayed } => {
                println!("consistent: size {size}");
                if let Some(r) = replayed {
                    println!(
                        "replayed {} new leaves, {} tiles, {} events checked, {} redacted",
                        r.leaves, r.tiles, r.events_checked, r.events_redacted
                    );
                }
            }
            Finding::Misbehaviour { evidence, reason } => {
                eprintln!("MISBEHAVIOUR: {reason}\nevidence: {}", evidence.display());
                return Ok(false);
            }
        }
        match interval {
            Some(secs) => tokio::time::sleep(Duration::from_secs(secs.max(1))).await,
            None => return Ok(true),
        }
    }
}

async fn verify(
    receipt: PathBuf,
    vkey: String,
    witnesses: Vec<String>,
    quorum: usize,
    log: Option<String>,
) -> Result<(), String> {
    let text = read_text(&receipt)?;
    let r = if text.starts_with(sealog::receipt::TLOG_PROOF_HEADER) {
        Receipt::from_tlog_proof(&text).map_err(|e| e.to_string())?
    } else {
        serde_json::from_str(&text).map_err(|e| format!("receipt: {e}"))?
    };
    let cp = client::verify_receipt(&r, &vkey).map_err(|e| e.to_string())?;
    let policy = Policy::simple(&vkey, &witnesses, quorum).map_err(|e| e.to_string())?;
    match log {
        None => {
            let (_, who) = policy
                .check(r.checkpoint.as_bytes())
                .map_err(|e| e.to_string())?;
            println!(
                "OK: event {} is in {} at size {}; cosigned by {who:?}",
                r.index, cp.origin, cp.size
            );
        }
        Some(url) => {
            let url = url.trim_end_matches('/');
            let c = reqwest::Client::new();
            let note = c
                .get(format!("{url}/checkpoint"))
                .send()
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            let (latest, who) = policy
                .check(note.as_bytes())
                .map_err(|e| format!("the log's checkpoint: {e}"))?;
            let (a, b) = if cp.size <= latest.size {
                (&cp, &latest)
            } else {
                (&latest, &cp)
            };
            let p: sealog::receipt::ConsistencyProof = serde_json::from_str(
                &c.get(format!(
                    "{url}/v1/proof/consistency?from={}&to={}",
                    a.size, b.size
                ))
                .send()
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?,
            )
            .map_err(|e| format!("consistency proof: {e}"))?;
            client::verify_consistency(&p, a, b).map_err(|e| e.to_string())?;
            println!(
                "OK: event {} is in {} at size {}, consistent with the log's checkpoint of size {} cosigned by {who:?}",
                r.index, cp.origin, cp.size, latest.size
            );
        }
    }
    Ok(())
}

#[derive(Subcommand)]
enum WitnessCommand {
    /// Create a witness key pair (witness.key, witness.vkey).
    Keygen {
        #[arg(long)]
        name: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Serve POST /add-checkpoint for the logs in FILE (`log <vkey>` lines).
    Serve {
        #[arg(long, default_value = "./sealog-witness")]
        data: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: String,
        #[arg(long)]
        logs: PathBuf,
        /// The witness's key name, when creating its key on first start.
        #[arg(long)]
        name: Option<String>,
        /// Connections served at once [1024].
        #[arg(long)]
        max_connections: Option<usize>,
        /// Time to send a request's headers, ms [10000].
        #[arg(long)]
        header_timeout_ms: Option<u64>,
        /// Time to send a request's body, ms [30000].
        #[arg(long)]
        body_timeout_ms: Option<u64>,
        /// Time an idle keep-alive connection stays open, ms [30000].
        #[arg(long)]
        idle_timeout_ms: Option<u64>,
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

fn init_logs(json: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

fn serve(config: Option<PathBuf>, flags: ServeConfig) -> Result<(), String> {
    let file = match config {
        Some(p) => ServeConfig::load(&p)?,
        None if std::path::Path::new("sealog.toml").exists() => {
            ServeConfig::load(std::path::Path::new("sealog.toml"))?
        }
        None => ServeConfig::default(),
    };
    let cfg = flags.or(file);
    init_logs(cfg.json_logs()?);
    let opts = cfg.options();
    tokio::runtime::Runtime::new()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(server::serve(opts)).map_err(|e| e.to_string()))
}

/// Turns transparent huge pages off for this process, before it allocates
/// much: with them, each page the allocator takes fresh faults in as 2 MiB
/// zeroed at once, ~6 % of the server's CPU under batched appends (perf,
/// BENCHMARKS.md session 4). Failing is harmless: only slower.
fn no_huge_pages() {
    // SAFETY: prctl with PR_SET_THP_DISABLE reads no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    no_huge_pages();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        init_logs(false);
    }
    let result = match cli.command {
        Command::Serve { config, opts } => serve(config, opts),
        Command::Token { command } => token_command(command),
        Command::Backup { data, out } => tokio::runtime::Runtime::new()
            .map_err(|e| e.to_string())
            .and_then(|rt| rt.block_on(sealog::backup::backup(&data, &out)))
            .map(|s| {
                println!(
                    "backup of size {} root {} in {}",
                    s.size,
                    s.root,
                    out.display()
                )
            }),
        Command::Restore {
            from,
            data,
            checkpoint,
        } => sealog::backup::restore(&from, &data, checkpoint.as_deref()).map(|s| {
            println!(
                "restored size {} root {} into {}",
                s.size,
                s.root,
                data.display()
            )
        }),
        Command::Check { data } => server::check(&data)
            .map(|s| println!("ok: {} leaves, root {}", s.size, s.root))
            .map_err(|e| e.to_string()),
        Command::Audit {
            log,
            vkey,
            policy,
            state,
            replay,
            token_file,
            interval_secs,
        } => {
            let policy = match (policy, vkey) {
                (Some(p), _) => {
                    read_text(&p).and_then(|t| Policy::parse(&t).map_err(|e| e.to_string()))
                }
                (None, Some(v)) => Policy::simple(&v, &[], 0).map_err(|e| e.to_string()),
                (None, None) => Err("give --vkey or --policy".into()),
            };
            let token = token_file
                .map(|f| read_text(&f).map(|t| t.trim().to_string()))
                .transpose();
            match (policy, token) {
                (Ok(policy), Ok(token)) => match tokio::runtime::Runtime::new()
                    .map_err(|e| e.to_string())
                    .and_then(|rt| {
                        rt.block_on(audit(log, policy, state, replay, token, interval_secs))
                    }) {
                    Ok(true) => Ok(()),
                    Ok(false) => return ExitCode::from(2),
                    Err(e) => Err(e),
                },
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        }
        Command::Verify {
            receipt,
            vkey,
            witness,
            quorum,
            log,
        } => tokio::runtime::Runtime::new()
            .map_err(|e| e.to_string())
            .and_then(|rt| rt.block_on(verify(receipt, vkey, witness, quorum, log))),
        Command::Witness { command } => match command {
            WitnessCommand::Keygen { name, out } => {
                sealog::witness::keygen(&out, &name).map(|vkey| println!("{vkey}"))
            }
            WitnessCommand::Serve {
                data,
                listen,
                logs,
                name,
                max_connections,
                header_timeout_ms,
                body_timeout_ms,
                idle_timeout_ms,
            } => {
                // The log server's limits and defaults (`sealog serve`).
                let opts = sealog::config::ServeConfig {
                    max_connections,
                    header_timeout_ms,
                    body_timeout_ms,
                    idle_timeout_ms,
                    ..Default::default()
                }
                .options();
                tokio::runtime::Runtime::new()
                    .map_err(|e| e.to_string())
                    .and_then(|rt| {
                        rt.block_on(sealog::witness::serve(
                            &data,
                            &listen,
                            &logs,
                            name.as_deref(),
                            opts.net,
                            opts.limits.body_timeout,
                        ))
                    })
            }
        },
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
