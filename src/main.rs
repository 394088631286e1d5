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
use sealog::ops::audit::{Auditor, Finding};
use sealog::server;
use sealog::server::auth::Scope;
use sealog::server::config::ServeConfig;
use sealog::sys::datadir::DataDir;
use sealog_verify::policy::Policy;
use sealog_verify::receipt::Receipt;
use sealog_verify::verify;

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

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
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
        /// It must be its owner's only (mode 0600).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// An extra CA (PEM) to trust for an HTTPS log, besides the system's.
        #[arg(long)]
        ca_file: Option<PathBuf>,
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
        /// An extra CA (PEM) for a running log that serves HTTPS.
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
    /// Make a new data directory from a backup: read-only, unless evidence
    /// from outside the backup (a witness-cosigned checkpoint, or the live
    /// log's) shows the snapshot holds all the original ever signed.
    Restore {
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        data: PathBuf,
        /// The newest checkpoint the original log published, cosigned by
        /// the witness quorum of --policy.
        #[arg(long, requires = "policy", conflicts_with = "log")]
        checkpoint: Option<PathBuf>,
        /// A tlog-policy file (the log, its witnesses, a quorum) that
        /// --checkpoint must satisfy.
        #[arg(long, requires = "checkpoint")]
        policy: Option<PathBuf>,
        /// The live original log's URL: its newest checkpoint is the evidence.
        #[arg(long)]
        log: Option<String>,
        /// An extra CA (PEM) for an HTTPS --log.
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Make the restored log writable with no evidence that it holds
        /// everything its key signed: it may fork the log. Logged, and
        /// recorded in the log (each start warns).
        #[arg(long, conflicts_with_all = ["checkpoint", "log"])]
        i_accept_fork_risk: bool,
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
        /// An extra CA (PEM) to trust for an HTTPS --log.
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
}

fn read_text(p: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// The HTTP(S) client of the commands that call a log.
fn client_for(ca_file: Option<&std::path::Path>) -> Result<reqwest::Client, String> {
    sealog::net::tls::client(ca_file, Some(Duration::from_secs(60)))
}

/// `sealog restore`: gathers the outside evidence, then restores.
async fn restore(
    from: PathBuf,
    data: PathBuf,
    checkpoint: Option<PathBuf>,
    policy: Option<PathBuf>,
    log: Option<String>,
    ca_file: Option<PathBuf>,
    accept_fork_risk: bool,
) -> Result<(), String> {
    use sealog::ops::backup::Evidence;
    let evidence = match (checkpoint, policy, log) {
        (Some(cp), Some(p), None) => Some(Evidence::Cosigned {
            note: std::fs::read(&cp).map_err(|e| format!("{}: {e}", cp.display()))?,
            policy: read_text(&p).and_then(|t| Policy::parse(&t).map_err(|e| e.to_string()))?,
            source: cp.display().to_string(),
        }),
        (None, None, Some(url)) => {
            let url = url.trim_end_matches('/').to_string();
            // Over plain HTTP, someone on the path could answer with the
            // backup's own checkpoint (the log did sign it) and so make an
            // old backup writable.
            let parsed = reqwest::Url::parse(&url).map_err(|e| format!("--log {url}: {e}"))?;
            let host = parsed.host_str().unwrap_or_default();
            let loopback = host == "localhost"
                || host
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a.is_loopback());
            if parsed.scheme() != "https" && !loopback {
                return Err(format!(
                    "--log {url}: use https:// for a log that is not on this machine (over plain HTTP a checkpoint could be replayed by anyone on the path)"
                ));
            }
            // The newest the log signed, witnessed or not yet.
            let r = client_for(ca_file.as_deref())?
                .get(format!("{url}/checkpoint/latest"))
                .send()
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            if !r.status().is_success() {
                return Err(format!("{url}/checkpoint/latest: {}", r.status()));
            }
            let note = r.bytes().await.map_err(|e| e.to_string())?.to_vec();
            Some(Evidence::Live { note, url })
        }
        (None, None, None) => None,
        _ => return Err("give --checkpoint with --policy, or --log".into()),
    };
    if accept_fork_risk {
        tracing::warn!("--i-accept-fork-risk: the restored log will append with no evidence that it holds all its key signed; if the original signed more, this forks the log");
    }
    let r = sealog::ops::backup::restore(&from, &data, evidence, accept_fork_risk)?;
    println!(
        "restored size {} root {} into {} ({})",
        r.state.size,
        r.state.root,
        data.display(),
        if r.writable {
            "writable"
        } else {
            "read-only: no outside evidence it holds all the log signed"
        }
    );
    Ok(())
}

async fn audit(
    log: String,
    policy: Policy,
    state: PathBuf,
    replay: bool,
    token: Option<String>,
    interval: Option<u64>,
    ca_file: Option<PathBuf>,
) -> Result<bool, String> {
    let a = Auditor::new(&log, policy, &state, token)
        .map_err(|e| e.to_string())?
        .with_client(client_for(ca_file.as_deref())?);
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
    ca_file: Option<PathBuf>,
) -> Result<(), String> {
    let text = read_text(&receipt)?;
    let r = if text.starts_with(sealog_verify::receipt::TLOG_PROOF_HEADER) {
        Receipt::from_tlog_proof(&text).map_err(|e| e.to_string())?
    } else {
        serde_json::from_str(&text).map_err(|e| format!("receipt: {e}"))?
    };
    let cp = verify::verify_receipt(&r, &vkey).map_err(|e| e.to_string())?;
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
            let c = client_for(ca_file.as_deref())?;
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
            let p: sealog_verify::receipt::ConsistencyProof = serde_json::from_str(
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
            verify::verify_consistency(&p, a, b).map_err(|e| e.to_string())?;
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
        /// Serve HTTPS with this PEM certificate chain (reloaded on SIGHUP).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
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
        /// Scopes, comma-separated: append, read, admin, risk.
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

/// Whether this binary honours the test hooks (the clock skew, the no-op
/// benchmark route): only `sealog-test`, built with the `test-hooks`
/// feature for tests and benchmarks. The `sealog` binary never does, even
/// when a test build compiled the hooks into the library.
fn test_hooks() -> bool {
    cfg!(feature = "test-hooks") && env!("CARGO_BIN_NAME") == "sealog-test"
}

/// Turns on the test hooks asked for, loudly, or refuses them in a build
/// that has none.
fn start_hooks(bench_floor: bool) -> Result<(), String> {
    let skew_set = std::env::var_os(sealog::sys::clock::SKEW_ENV).is_some();
    if !test_hooks() {
        if skew_set {
            return Err(format!(
                "{} is a test hook that this build does not have: unset it",
                sealog::sys::clock::SKEW_ENV
            ));
        }
        if bench_floor {
            return Err(server::BENCH_FLOOR_REFUSED.into());
        }
        return Ok(());
    }
    #[cfg(feature = "test-hooks")]
    {
        let skew = sealog::sys::clock::enable_skew_hook()?;
        if skew != 0 || bench_floor {
            tracing::warn!(
                clock_skew_ms = skew,
                bench_floor,
                "TEST HOOKS ACTIVE: this is a test build (sealog-test); never run it in production"
            );
        }
    }
    Ok(())
}

fn serve(config: Option<PathBuf>, flags: ServeConfig) -> Result<(), String> {
    let file = match config {
        Some(p) => ServeConfig::load(&p)?,
        None if std::path::Path::new("sealog.toml").exists() => {
            // Loaded only because it is in the working directory: refused
            // unless it is the runner's and no one else could have put or
            // changed it there (a shared directory such as /tmp).
            let text = sealog::sys::datadir::read_trusted(std::path::Path::new("sealog.toml"))
                .map_err(|e| format!("./sealog.toml (loaded because it is there): {e}"))?;
            toml::from_str(&text).map_err(|e| format!("./sealog.toml: {e}"))?
        }
        None => ServeConfig::default(),
    };
    let cfg = flags.or(file);
    init_logs(cfg.json_logs()?);
    start_hooks(cfg.bench_floor == Some(true))?;
    cfg.tls()?;
    let opts = cfg.options();
    tokio::runtime::Runtime::new()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(server::serve(opts)).map_err(|e| e.to_string()))
}

/// Turns transparent huge pages off for this process, before it allocates
/// much: with them, each page the allocator takes fresh faults in as 2 MiB
/// zeroed at once, ~6 % of the server's CPU under batched appends (perf,
/// BENCHMARKS.md, "Transparent huge pages off, mimalloc"). Failing is
/// harmless: only slower.
fn no_huge_pages() {
    // SAFETY: prctl with PR_SET_THP_DISABLE reads no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

// pub: src/bin/sealog-test.rs runs the same program.
pub fn main() -> ExitCode {
    no_huge_pages();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        init_logs(false);
        if let Err(e) = start_hooks(false) {
            eprintln!("sealog: {e}");
            return ExitCode::FAILURE;
        }
    }
    let result = match cli.command {
        Command::Serve { config, opts } => serve(config, opts),
        Command::Token { command } => token_command(command),
        Command::Backup { data, out, ca_file } => tokio::runtime::Runtime::new()
            .map_err(|e| e.to_string())
            .and_then(|rt| {
                rt.block_on(sealog::ops::backup::backup(&data, &out, ca_file.as_deref()))
            })
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
            policy,
            log,
            ca_file,
            i_accept_fork_risk,
        } => tokio::runtime::Runtime::new()
            .map_err(|e| e.to_string())
            .and_then(|rt| {
                rt.block_on(restore(
                    from,
                    data,
                    checkpoint,
                    policy,
                    log,
                    ca_file,
                    i_accept_fork_risk,
                ))
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
            ca_file,
        } => {
            let policy = match (policy, vkey) {
                (Some(p), _) => {
                    read_text(&p).and_then(|t| Policy::parse(&t).map_err(|e| e.to_string()))
                }
                (None, Some(v)) => Policy::simple(&v, &[], 0).map_err(|e| e.to_string()),
                (None, None) => Err("give --vkey or --policy".into()),
            };
            // A token is a secret: its file is its owner's only, like admin.token.
            let token = token_file
                .map(|f| {
                    sealog::sys::datadir::read_secret(&f)
                        .map(|t| t.trim().to_string())
                        .map_err(|e| e.to_string())
                })
                .transpose();
            match (policy, token) {
                (Ok(policy), Ok(token)) => match tokio::runtime::Runtime::new()
                    .map_err(|e| e.to_string())
                    .and_then(|rt| {
                        rt.block_on(audit(
                            log,
                            policy,
                            state,
                            replay,
                            token,
                            interval_secs,
                            ca_file,
                        ))
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
            ca_file,
        } => tokio::runtime::Runtime::new()
            .map_err(|e| e.to_string())
            .and_then(|rt| rt.block_on(verify(receipt, vkey, witness, quorum, log, ca_file))),
        Command::Witness { command } => match command {
            WitnessCommand::Keygen { name, out } => {
                sealog::witness::server::keygen(&out, &name).map(|vkey| println!("{vkey}"))
            }
            WitnessCommand::Serve {
                data,
                listen,
                logs,
                name,
                tls_cert,
                tls_key,
                max_connections,
                header_timeout_ms,
                body_timeout_ms,
                idle_timeout_ms,
            } => {
                // The log server's limits and defaults (`sealog serve`).
                let opts = sealog::server::config::ServeConfig {
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
                        rt.block_on(sealog::witness::server::serve(
                            &data,
                            &listen,
                            &logs,
                            name.as_deref(),
                            tls_cert.as_deref().zip(tls_key.as_deref()),
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
