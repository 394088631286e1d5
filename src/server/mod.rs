//! Assembles a log from its data directory and runs it: keys, store,
//! tokens, sequencer, HTTP, and a graceful stop on SIGTERM or SIGINT.

pub mod auth;
pub mod config;
pub mod http;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::events::EventError;
use crate::log::sequencer::{self, Sequencer};
use crate::log::{Log, LogError, Offline};
use crate::query::index::{Index, IndexError};
use crate::server::auth::{Minted, Scope, TokenRecord, Tokens};
use crate::store::{LogStore, StoreError, TreeState};
use crate::sys::clock;
use crate::sys::datadir::{self, DataDir};
use crate::witness::witnessing::Witnessing;
use http::{AppState, Limits};
use sealog_verify::note::{self, LogSigner};
use sealog_verify::policy::Policy;

/// The origin of a log created with no `--origin`.
pub const DEFAULT_ORIGIN: &str = "localhost/sealog";

/// Why a release build will not serve the no-op benchmark route.
pub const BENCH_FLOOR_REFUSED: &str = "--bench-floor / bench_floor is a benchmark hook (an unauthenticated route) that this build does not have; \
     remove it from the flags and the config file, or run the `sealog-test` binary (cargo build --release --features test-hooks)";

/// How to run a log.
#[derive(Clone, Debug)]
pub struct Options {
    /// The data directory: signing key, log and index (private to the
    /// server's user, or the log refuses to start).
    pub data: PathBuf,
    /// Address to listen on (`host:port`).
    pub listen: String,
    /// The log's name in its checkpoints: names the key a new log creates,
    /// and must match an existing key's (one key, one origin).
    pub origin: Option<String>,
    /// Request size and rate limits.
    pub limits: Limits,
    /// Batching and queueing of appends.
    pub sequencer: sequencer::Config,
    /// A tlog-policy file of witnesses (with URLs) and the quorum.
    pub witnesses: Option<PathBuf>,
    /// Most often a checkpoint is sent to the witnesses.
    pub witness_interval: std::time::Duration,
    /// Connection limits of the listener.
    pub net: crate::net::listener::NetLimits,
    /// Serve the unauthenticated no-op benchmark route; refused unless the
    /// build has the `test-hooks` feature ([`BENCH_FLOOR_REFUSED`]).
    pub bench_floor: bool,
    /// Detection thresholds (`[detections]`).
    pub rules: crate::detect::engine::Rules,
    /// Serve HTTPS with this certificate chain and key (PEM files,
    /// reloaded on SIGHUP).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// An extra CA (PEM) the log trusts when it calls its witnesses.
    pub ca_file: Option<PathBuf>,
}

/// Why the log could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A file or socket operation failed.
    #[error("{what}: {err}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The failure.
        err: io::Error,
    },
    /// The signing key could not be made or read.
    #[error("{0}")]
    Key(#[from] note::NoteError),
    /// The log's store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The lookup index failed.
    #[error("index: {0}")]
    Index(#[from] IndexError),
    /// The configuration or data directory is one the log will not run
    /// with (a key missing beside an existing tree, an origin that differs
    /// from the key's): starting anyway could fork the log's identity.
    #[error("{0}")]
    Refused(String),
    /// An event the log writes about itself failed validation.
    #[error("the log's own record is invalid: {0}")]
    Record(#[from] EventError),
}

impl From<LogError> for ServeError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Record(e) => ServeError::Record(e),
            LogError::Store(e) => ServeError::Store(e),
            LogError::Index(e) => ServeError::Index(e),
            e => ServeError::Refused(e.to_string()),
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ServeError {
    let what = what.into();
    move |err| ServeError::Io { what, err }
}

/// Creates a key pair in `dir`: `log.key` (0600) and `log.vkey`.
pub fn keygen(dir: &DataDir, origin: &str) -> Result<String, ServeError> {
    let (skey, vkey) = note::generate_key(origin)?;
    dir.create()
        .map_err(io_err(format!("creating {}", dir.0.display())))?;
    datadir::write_secret(&dir.key(), &format!("{skey}\n"))
        .map_err(io_err(format!("writing {}", dir.key().display())))?;
    datadir::write_public(&dir.vkey(), &format!("{vkey}\n"))
        .map_err(io_err(format!("writing {}", dir.vkey().display())))?;
    Ok(vkey)
}

/// Opens (creating on first use) the log in `opts.data` and starts its
/// sequencer.
pub fn open(opts: &Options) -> Result<(Arc<AppState>, Threads), ServeError> {
    if opts.bench_floor && !cfg!(feature = "test-hooks") {
        return Err(ServeError::Refused(BENCH_FLOOR_REFUSED.into()));
    }
    let dir = DataDir(opts.data.clone());
    dir.create()
        .map_err(io_err(format!("creating {}", dir.0.display())))?;
    datadir::check_private(&dir).map_err(|e| ServeError::Refused(e.to_string()))?;
    if !dir.key().exists() {
        if dir.db().exists() {
            // A new key for an existing tree would be a new log identity
            // claiming the old history.
            return Err(ServeError::Refused(format!(
                "{} is missing but {} exists; restore the key",
                dir.key().display(),
                dir.db().display()
            )));
        }
        let origin = opts.origin.as_deref().unwrap_or(DEFAULT_ORIGIN);
        keygen(&dir, origin)?;
        tracing::info!(key = %dir.key().display(), "created the log's signing key");
    }
    let skey = datadir::read_secret(&dir.key())
        .map_err(io_err(format!("reading {}", dir.key().display())))?;
    let signer = LogSigner::new(&skey)?;
    if let Some(origin) = &opts.origin {
        if origin != signer.origin() {
            return Err(ServeError::Refused(format!(
                "--origin {origin:?} differs from the key's name {:?}",
                signer.origin()
            )));
        }
    }
    let vkey = signer.vkey();
    // redb creates its files with the process's umask: make them here
    // first, 0600, so they are never readable by others, not even briefly.
    // (The index makes its own file: `Index::open_db`.)
    for db in [dir.db()] {
        if let Err(e) = datadir::create_secret(&db) {
            if e.kind() != io::ErrorKind::AlreadyExists {
                return Err(io_err(format!("creating {}", db.display()))(e));
            }
        }
    }
    let store = crate::store::engine::open(&dir.db())?;
    store.bind_identity(signer.origin(), &vkey)?;
    if let Some(why) = store.fork_risk()? {
        tracing::warn!(%why, "FORK RISK: this log appends without evidence that it holds all its key signed");
    }
    let tokens = Tokens::load(&store)?;
    let mut state = store.tree_state()?;
    clock::advance_to(store.last_logged_time()?);
    if tokens.list().is_empty() {
        // A new log: its first event records the admin token's creation.
        let (token, s) = create_token(
            &store,
            &tokens,
            state,
            "admin",
            vec![Scope::Admin],
            "sealog",
        )?;
        state = s;
        datadir::replace_secret(&dir.admin_token(), &format!("{token}\n"))
            .map_err(io_err(format!("writing {}", dir.admin_token().display())))?;
    }
    if !dir.vkey().exists() {
        datadir::write_public(&dir.vkey(), &format!("{vkey}\n"))
            .map_err(io_err(format!("writing {}", dir.vkey().display())))?;
    }
    tracing::info!(
        origin = signer.origin(),
        vkey = %vkey,
        admin_token = %dir.admin_token().display(),
        size = state.size,
        root = %state.root,
        "log opened"
    );
    let witnessing = match &opts.witnesses {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(io_err(format!("reading {}", path.display())))?;
            let policy = Policy::parse(&text)
                .map_err(|e| ServeError::Refused(format!("{}: {e}", path.display())))?;
            tracing::info!(witnesses = policy.witnesses.len(), "witnessing configured");
            let client = crate::net::tls::client(
                opts.ca_file.as_deref(),
                Some(std::time::Duration::from_secs(5)),
            )
            .map_err(ServeError::Refused)?;
            Some(Arc::new(Witnessing::new(
                policy,
                opts.witness_interval,
                client,
            )))
        }
    };
    let signer = Arc::new(signer);
    // Opened by its follower thread: the log serves meanwhile.
    let index = Arc::new(Index::unopened(&dir.index()));
    let (sequencer, thread) = Sequencer::start(
        store.clone(),
        index.clone(),
        signer.clone(),
        state,
        opts.sequencer.clone(),
    );
    let start = state.size.saturating_sub(crate::detect::runner::REPLAY);
    let mut engine = crate::detect::engine::Engine::new(opts.rules);
    engine.max_future_skew_ms = opts.limits.max_future_skew_ms;
    let engine = Arc::new(std::sync::Mutex::new(engine));
    let index_thread = {
        let (index, store, size) = (index.clone(), store.clone(), sequencer.watch_size());
        std::thread::Builder::new()
            .name("index".into())
            .spawn(move || {
                background_priority();
                crate::query::index::follow(index, store, size)
            })
            .map_err(io_err("spawning the index thread"))?
    };
    let log = Log::new(
        store,
        Arc::new(sequencer),
        index,
        signer,
        opts.limits.max_future_skew_ms,
    );
    let app = Arc::new(AppState {
        log: Arc::new(log),
        engine,
        replay_from: start,
        bench_floor: opts.bench_floor,
        data: opts.data.clone(),
        witnessing,
        tokens,
        limits: opts.limits.clone(),
        streams: Default::default(),
    });
    Ok((
        app,
        Threads {
            sequencer: thread,
            index: index_thread,
        },
    ))
}

/// The log's own threads: the sequencer, and the index follower (which
/// ends once the sequencer has).
pub struct Threads {
    /// The only writer of the log.
    pub sequencer: std::thread::JoinHandle<()>,
    /// Join after `sequencer`: it catches up to the last commit, then ends.
    pub index: std::thread::JoinHandle<()>,
}

/// Runs the log until SIGTERM or SIGINT, then drains the queue and stops.
pub async fn serve(opts: Options) -> Result<(), ServeError> {
    let (app, threads) = open(&opts)?;
    let tls = match &opts.tls {
        None => None,
        Some((cert, key)) => {
            let t = crate::net::tls::ServerTls::load(cert, key).map_err(ServeError::Refused)?;
            t.clone().reload_on_sighup().map_err(ServeError::Refused)?;
            Some(t.acceptor())
        }
    };
    let listener = tokio::net::TcpListener::bind(&opts.listen)
        .await
        .map_err(io_err(format!("listening on {}", opts.listen)))?;
    let addr = listener.local_addr().map_err(io_err("local address"))?;
    // Where local tools (sealog backup) find the running log.
    // It decides where `sealog backup` sends the admin token: 0600, and
    // a file or link someone put there is replaced, never written through.
    let addr_file = opts.data.join("serve.addr");
    let scheme = if tls.is_some() { "https" } else { "http" };
    datadir::replace_secret(&addr_file, &format!("{scheme}://{addr}\n"))
        .map_err(io_err(format!("writing {}", addr_file.display())))?;
    if let Some(w) = &app.witnessing {
        tokio::spawn(
            w.clone()
                .run(app.log.sequencer().clone(), app.log.store().clone()),
        );
    }
    // Detections are background work like the index: a thread of their
    // own, at its priority, so that under load they take the gaps rather
    // than a share of the request handlers' cores.
    let detections = crate::detect::runner::run(
        app.engine.clone(),
        app.log.sequencer().clone(),
        app.log.store().clone(),
        app.replay_from,
    );
    std::thread::Builder::new()
        .name("detections".into())
        .spawn(move || {
            background_priority();
            match tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            {
                Ok(rt) => rt.block_on(detections),
                Err(e) => tracing::error!(error = %e, "detections not started"),
            }
        })
        .map_err(io_err("spawning the detections thread"))?;
    let stop = crate::net::listener::shutdown_signal();
    if tls.is_some() {
        tracing::info!("TLS on: the listener speaks HTTPS only");
    }
    // Tests and scripts read the address from this line's end.
    tracing::info!(%addr, "serving");
    crate::net::listener::serve(
        listener,
        http::router(app.clone()),
        opts.net.clone(),
        tls,
        stop,
    )
    .await;
    let _ = std::fs::remove_file(&addr_file);
    tracing::info!("stopping: draining the append queue");
    app.log.sequencer().stop();
    threads
        .sequencer
        .join()
        .map_err(|_| ServeError::Refused("the sequencer thread panicked".into()))?;
    // The index closes cleanly: the next start needs no repair of its
    // file. Woken, it need not finish its pause between rounds.
    app.log.index().hurry();
    threads
        .index
        .join()
        .map_err(|_| ServeError::Refused("the index thread panicked".into()))?;
    Ok(())
}

/// Creates a token straight in the store (the server must not be
/// running), with its audit event, and returns the token.
pub fn create_token(
    store: &dyn LogStore,
    tokens: &Tokens,
    state: TreeState,
    name: &str,
    scopes: Vec<Scope>,
    by: &str,
) -> Result<(String, TreeState), ServeError> {
    let new = Minted::new(name, scopes);
    let mut log = Offline::new(store, state);
    log.create_token(new.stored(by))?;
    tokens.insert(new.hash, new.record);
    Ok((new.token, log.state()))
}

/// Opens the store of a stopped log for the `token` commands.
fn open_offline(
    data: &std::path::Path,
) -> Result<(Arc<dyn LogStore>, Tokens, TreeState), ServeError> {
    let dir = DataDir(data.to_path_buf());
    if !dir.db().exists() {
        return Err(ServeError::Refused(format!("no log in {}", data.display())));
    }
    let store = crate::store::engine::open(&dir.db()).map_err(|e| match e {
        StoreError::AlreadyOpen(_) => ServeError::Refused(
            "the log is running; stop it, or use the admin API (POST /v1/tokens)".into(),
        ),
        e => e.into(),
    })?;
    let tokens = Tokens::load(&store)?;
    let state = store.tree_state()?;
    Ok((store, tokens, state))
}

/// `sealog token create`: prints the new token once.
pub fn token_create(
    data: &std::path::Path,
    name: &str,
    scopes: Vec<Scope>,
) -> Result<String, ServeError> {
    if !crate::server::auth::valid_name(name) {
        return Err(ServeError::Refused(
            "a token name is 1 to 128 of A-Z a-z 0-9 . _ - @".into(),
        ));
    }
    let (store, tokens, state) = open_offline(data)?;
    Ok(create_token(&store, &tokens, state, name, scopes, "sealog-cli")?.0)
}

/// `sealog token list`: every token's name, scopes and state.
pub fn token_list(data: &std::path::Path) -> Result<Vec<TokenRecord>, ServeError> {
    Ok(open_offline(data)?.1.list())
}

/// `sealog token revoke`: revokes the active token named `name`.
pub fn token_revoke(data: &std::path::Path, name: &str) -> Result<(), ServeError> {
    if !crate::server::auth::valid_name(name) {
        return Err(ServeError::Refused(
            "a token name is 1 to 128 of A-Z a-z 0-9 . _ - @".into(),
        ));
    }
    let (store, _, state) = open_offline(data)?;
    Offline::new(&store, state).revoke_token(name, "sealog-cli")?;
    Ok(())
}

/// `sealog check`: verifies a stopped log's whole store (see
/// `LogStore::verify_all`), printing progress.
pub fn check(data: &std::path::Path) -> Result<TreeState, ServeError> {
    let (store, _, _) = open_offline(data)?;
    Ok(store.verify_all(&mut |done, size| eprintln!("check: {done}/{size} leaves"))?)
}

/// Lowers the calling thread's priority by 10 nice levels. The index
/// follower is background work: under load, appends (whose commits are
/// the log's one serial step) get the cores first and the follower catches
/// up in the gaps; should it fall far behind, the sequencer gives way
/// (`sequencer::pause`). A/B on the 2-core machine:
/// batched appends +14 %, single appends' p99 15.5 → 11.5 ms
/// (BENCHMARKS.md, "The index follower and detections run 10 nice levels
/// down"). Failing is harmless: only slower.
fn background_priority() {
    // SAFETY: these calls read and write no memory of ours.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, (now + 10).min(19));
    }
}
