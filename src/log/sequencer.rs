//! The sequencer: the log's one writer.
//!
//! Lifecycle of an append: a request's events are queued; the sequencer
//! thread gathers the queue into a batch (group commit), writes the batch in
//! one redb transaction that is durable when `commit` returns (sequence and
//! integrate), then signs a checkpoint over the new (size, root) (publish),
//! then wakes every waiting request. Each request builds its own receipts
//! from a snapshot, off the sequencer thread.
//!
//! What must stay true:
//! - a checkpoint is signed only over a (size, root) already durable, so a
//!   crash can never make the log sign two different roots for one size;
//! - one thread writes, so sizes only grow and each is signed with one root;
//! - a request is never split across batches: its events are contiguous and
//!   appended all or none.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use crate::events::Committed;
use crate::log::signal_feed::SignalFeed;
use crate::log::uids::RecentUids;
use crate::query::index::Index;
use crate::store::{EventRow, LogStore, Outcome, Placed, Snapshot, StoreError, TreeState, Write};
use sealog_verify::note::LogSigner;
use sealog_verify::receipt::Receipt;
use sealog_verify::tree::{self, Hash, HashReader};

/// Batching and queueing limits.
#[derive(Clone, Debug)]
pub struct Config {
    /// Events at most in one batch (a single larger request is not split).
    pub max_batch: usize,
    /// How long a batch may wait for more events once it has some. The
    /// commit of the previous batch is the gathering window: under load
    /// every request that arrives during a commit joins the next one, and
    /// a wait only delays a lone request (BENCHMARKS.md, "Batches do not
    /// wait": 1 ms of wait halved the rate at concurrency 1 and cost 13 %
    /// at 64).
    pub max_wait: Duration,
    /// Events at most waiting for the sequencer; beyond, appends get 503.
    pub queue_capacity: usize,
    /// Leaves at most beyond the index (their uids are held in memory,
    /// ~40 bytes each); beyond, appends get 503 until the index catches
    /// up. Past a quarter of it the sequencer already slows down (`pause`):
    /// well above the lag of a follower that keeps up (with a round every
    /// 10 s, 60 s of 50,000 events/s left it 0.5-1M behind). A bound of 1M
    /// paused ~10 % of those commits even with 3 s rounds, and one of 2M
    /// ~40 % with 10 s rounds: 5-10 % fewer events/s (BENCHMARKS.md,
    /// "`max_unindexed` is 4M; the sequencer slows down from 1M behind").
    pub max_unindexed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_batch: 4096,
            max_wait: Duration::ZERO,
            queue_capacity: 100_000,
            max_unindexed: 4_000_000,
        }
    }
}

/// The latest signed tree head.
#[derive(Clone, Debug)]
pub struct Head {
    /// Leaves the checkpoint covers.
    pub size: u64,
    /// Root hash of those leaves, as signed.
    pub root: Hash,
    /// The signed checkpoint note.
    pub checkpoint: String,
}

/// Why an append was not done. None of these appended anything.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The queue holds `Config` allows: the client backs off (503) rather
    /// than the server buffering without bound.
    #[error("the append queue is full")]
    QueueFull,
    /// The sequencer has stopped taking writes (shutdown).
    #[error("the log is shutting down")]
    Stopped,
    /// The store failed the write or its checkpoint.
    #[error("storage failed: {0}")]
    Storage(String),
    /// A witness quorum is required and no checkpoint has met it: an answer
    /// now would carry a receipt no verifier with the policy accepts.
    #[error("no checkpoint has met the witness quorum yet")]
    Unwitnessed,
    /// The store refused the write.
    #[error("{0}")]
    Refused(crate::store::Refusal),
    /// The store must not be appended to (`LogStore::read_only`: a
    /// restored log could sign sizes the original signed with other
    /// roots), and why.
    #[error("the log is read-only: {0}")]
    ReadOnly(String),
    /// The lookup index is this many leaves behind the log, past its
    /// bound: appends wait so that uid lookups and queries stay current.
    #[error("the index is {0} leaves behind; retry shortly")]
    IndexBehind(u64),
}

struct Job {
    write: Write,
    reply: oneshot::Sender<Result<Sequenced, AppendError>>,
}

/// What a write did, the write itself, and the checkpoint that covers it.
pub struct Sequenced {
    /// What the store did.
    pub outcome: Outcome,
    /// The write as applied.
    pub write: Write,
    /// The first checkpoint that includes the write.
    pub head: Arc<Head>,
}

/// How many queue places a write takes.
fn weight(w: &Write) -> usize {
    match w {
        Write::Append(events) => events.len(),
        _ => 1,
    }
}

/// A handle to the sequencer thread.
pub struct Sequencer {
    jobs: Sender<Option<Job>>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
    head: Arc<RwLock<Arc<Head>>>,
    store: Arc<dyn LogStore>,
    /// The signed size, for followers (detections, streams).
    size: tokio::sync::watch::Receiver<u64>,
    /// The detection rules' signals of what each commit appended.
    signals: Arc<SignalFeed>,
}

impl Sequencer {
    /// Starts the sequencer thread on a store whose durable state is
    /// `state`, signing that state's checkpoint first. `index` is the
    /// lookup index (for uids) that a follower keeps.
    pub fn start(
        store: Arc<dyn LogStore>,
        index: Arc<Index>,
        signer: Arc<LogSigner>,
        state: TreeState,
        config: Config,
    ) -> (Self, JoinHandle<()>) {
        let uids = RecentUids::new(index, store.clone(), state.size);
        let head = Arc::new(RwLock::new(Arc::new(Head {
            size: state.size,
            root: state.root,
            checkpoint: signer.sign(state.size, state.root),
        })));
        let (tx, rx) = crossbeam_channel::unbounded();
        let queued = Arc::new(AtomicUsize::new(0));
        let (size_tx, size_rx) = tokio::sync::watch::channel(state.size);
        let signals = Arc::new(SignalFeed::default());
        let worker = Worker {
            signals: signals.clone(),
            store: store.clone(),
            signer,
            state,
            config: config.clone(),
            queued: queued.clone(),
            head: head.clone(),
            size: size_tx,
            halted: false,
            read_only: store.read_only().ok().flatten(),
            uids,
            last_commit: Duration::ZERO,
        };
        let thread = std::thread::Builder::new()
            .name("sequencer".into())
            .spawn(move || worker.run(rx))
            .expect("spawn sequencer thread");
        let seq = Sequencer {
            jobs: tx,
            queued,
            capacity: config.queue_capacity,
            head,
            store,
            size: size_rx,
            signals,
        };
        (seq, thread)
    }

    /// The latest signed tree head.
    pub fn head(&self) -> Arc<Head> {
        self.head.read().expect("not poisoned").clone()
    }

    /// Follows the signed tree size.
    pub fn watch_size(&self) -> tokio::sync::watch::Receiver<u64> {
        self.size.clone()
    }

    /// The signals of committed events, for the detection follower: each
    /// is there before the signed size covers it.
    pub fn signals(&self) -> &SignalFeed {
        &self.signals
    }

    /// Events waiting for the sequencer.
    pub fn queue_depth(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Asks the thread to finish what is queued and stop. Appends after
    /// this get `Stopped`.
    pub fn stop(&self) {
        let _ = self.jobs.send(None);
    }

    /// Queues `write` and waits until it is durable and under a signed
    /// checkpoint, or refused.
    pub async fn submit(&self, write: Write) -> Result<Sequenced, AppendError> {
        let n = weight(&write);
        let before = self.queued.fetch_add(n, Ordering::SeqCst);
        if before > 0 && before + n > self.capacity {
            self.queued.fetch_sub(n, Ordering::SeqCst);
            return Err(AppendError::QueueFull);
        }
        let (reply, done) = oneshot::channel();
        if self.jobs.send(Some(Job { write, reply })).is_err() {
            self.queued.fetch_sub(n, Ordering::SeqCst);
            return Err(AppendError::Stopped);
        }
        done.await.map_err(|_| AppendError::Stopped)?
    }

    /// Appends `events` and returns their receipts, in order. An event
    /// whose `metadata.uid` the log already holds is not appended again:
    /// its receipt is the original one, marked `duplicate`.
    pub async fn append(&self, events: Vec<Committed>) -> Result<Vec<Receipt>, AppendError> {
        let done = self.submit(Write::Append(events)).await?;
        let (placed, events) = match (done.outcome, done.write) {
            (Outcome::Appended(placed), Write::Append(events)) => (placed, events),
            (Outcome::Refused(r), _) => return Err(AppendError::Refused(r)),
            _ => unreachable!("an append answers Appended or Refused"),
        };
        let snap = self
            .store
            .snapshot()
            .map_err(|e| AppendError::Storage(e.to_string()))?;
        // Receipts of one request share most proof nodes: read each once,
        // and prove each shared subtree once.
        let reader = MemoHashes::new(&snap);
        let new: Vec<u64> = (placed.iter())
            .filter_map(|p| match p {
                Placed::New(index) => Some(*index),
                Placed::Duplicate(_) => None,
            })
            .collect();
        let mut proofs = tree::prove_inclusions(done.head.size, &new, &reader)
            .map_err(|err| {
                AppendError::Storage(format!("receipts at size {}: {err}", done.head.size))
            })?
            .into_iter();
        placed
            .into_iter()
            .zip(events)
            .map(|(p, e)| match p {
                Placed::New(index) => {
                    let proof = proofs.next().expect("a proof per new leaf");
                    Ok(new_receipt(index, e, &done.head, proof))
                }
                Placed::Duplicate(index) => {
                    let mut r = stored_receipt(&snap, &reader, index, &done.head)?;
                    r.duplicate = true;
                    Ok(r)
                }
            })
            .collect::<Result<Vec<_>, StoreError>>()
            .map_err(|e| AppendError::Storage(e.to_string()))
    }
}

/// The receipt of `e`, just appended at `index`, under `head`.
fn new_receipt(index: u64, e: Committed, head: &Head, proof: Vec<Hash>) -> Receipt {
    let event = String::from_utf8(e.jcs).expect("canonical JSON is UTF-8");
    Receipt {
        index,
        event: Some(RawValue::from_string(event).expect("canonical JSON is JSON")),
        salt: Some(e.salt.to_vec()),
        commitment: e.commitment,
        leaf_hash: tree::leaf_hash(&e.commitment.0),
        checkpoint: head.checkpoint.clone(),
        inclusion_proof: proof,
        duplicate: false,
        redacted_by: None,
    }
}

/// The receipt of the stored leaf `index` under `head` (whose size must
/// exceed `index`), with its event unless redacted.
pub fn stored_receipt(
    snap: &dyn Snapshot,
    r: &impl HashReader,
    index: u64,
    head: &Head,
) -> Result<Receipt, StoreError> {
    receipt_of(snap.event(index)?, snap, r, index, head)
}

/// The receipt of leaf `index`, whose event row the caller has read
/// (`row`), proven against `head`.
pub fn receipt_of(
    row: EventRow,
    snap: &dyn Snapshot,
    r: &impl HashReader,
    index: u64,
    head: &Head,
) -> Result<Receipt, StoreError> {
    let commitment = snap.commitments(index, 1)?[0];
    let proof = tree::prove_inclusion(head.size, index, r)
        .map_err(|err| StoreError::Corrupt(format!("proof of {index}: {err}")))?;
    let (event, salt, redacted_by) = match row {
        EventRow::Present(e) => {
            let text = String::from_utf8(e.jcs)
                .map_err(|_| StoreError::Corrupt(format!("event {index} is not UTF-8")))?;
            let raw = RawValue::from_string(text)
                .map_err(|_| StoreError::Corrupt(format!("event {index} is not JSON")))?;
            (Some(raw), Some(e.salt.to_vec()), None)
        }
        EventRow::Redacted(by) => (None, None, Some(by)),
        EventRow::Absent => {
            return Err(StoreError::Corrupt(format!(
                "event {index} has a leaf but no row"
            )))
        }
    };
    Ok(Receipt {
        index,
        event,
        salt,
        commitment,
        leaf_hash: tree::leaf_hash(&commitment.0),
        checkpoint: head.checkpoint.clone(),
        inclusion_proof: proof,
        duplicate: false,
        redacted_by,
    })
}

/// A hash reader that remembers what it read.
pub struct MemoHashes<'a, R: HashReader> {
    inner: &'a R,
    seen: std::cell::RefCell<crate::store::hash_cache::IndexMap<Hash>>,
}

impl<'a, R: HashReader> MemoHashes<'a, R> {
    /// Reads through `inner`, remembering nothing yet.
    pub fn new(inner: &'a R) -> Self {
        MemoHashes {
            inner,
            seen: Default::default(),
        }
    }
}

impl<R: HashReader> HashReader for MemoHashes<'_, R> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tree::Error> {
        let mut seen = self.seen.borrow_mut();
        let missing: Vec<u64> = indexes
            .iter()
            .copied()
            .filter(|i| !seen.contains_key(i))
            .collect();
        if !missing.is_empty() {
            for (i, h) in missing.iter().zip(self.inner.read_hashes(&missing)?) {
                seen.insert(*i, h);
            }
        }
        Ok(indexes.iter().map(|i| seen[i]).collect())
    }
}

/// Each event `write` appended, with its leaf index.
fn appended<'w>(write: &'w Write, outcome: &Outcome) -> Vec<(&'w Committed, u64)> {
    match (write, outcome) {
        (Write::Append(events), Outcome::Appended(placed)) => events
            .iter()
            .zip(placed)
            .filter_map(|(e, p)| match p {
                Placed::New(i) => Some((e, *i)),
                Placed::Duplicate(_) => None,
            })
            .collect(),
        (Write::Redact { record, .. }, Outcome::Redacted { record: i }) => vec![(record, *i)],
        (Write::CreateToken { audit, .. }, Outcome::Token { audit: i })
        | (Write::RevokeToken { audit, .. }, Outcome::Token { audit: i }) => vec![(audit, *i)],
        _ => Vec::new(),
    }
}

/// How long the sequencer rests before a commit while the index follower
/// is `behind` (of at most `max` leaves), given that the last commit took
/// `commit`. The follower runs at background priority, so a saturated
/// machine can starve it (a 10M-event fill got 503s beyond ~8M). From a
/// quarter of `max` on, the sequencer idles for a growing share of its
/// time, 90 % from half of `max`: clients wait for their answers, the
/// cores go to the follower, and the lag (whose uids are held in memory)
/// stays well below the point of refusing appends. Not from less: the
/// follower lets up to a chunk of leaves (131,072) gather before a round
/// (`index::PACE`), so a smaller lag is its normal pace.
fn pause(behind: u64, max: u64, commit: Duration) -> Duration {
    let (from, full) = (max / 4, max / 2);
    if behind <= from {
        return Duration::ZERO;
    }
    // The share of time spent resting: 0 at `from`, 0.9 from `full` on.
    let share = (0.9 * (behind - from) as f64 / (full - from).max(1) as f64).min(0.9);
    commit
        .mul_f64(share / (1.0 - share))
        .min(Duration::from_millis(250))
}

struct Worker {
    store: Arc<dyn LogStore>,
    signer: Arc<LogSigner>,
    state: TreeState,
    config: Config,
    queued: Arc<AtomicUsize>,
    head: Arc<RwLock<Arc<Head>>>,
    size: tokio::sync::watch::Sender<u64>,
    /// Set when the durable state is in doubt: no more writes or
    /// signatures until a restart.
    halted: bool,
    /// Set for a restored log (see `LogStore::read_only`).
    read_only: Option<String>,
    /// The uids beyond the index.
    uids: RecentUids,
    /// How long the last commit took.
    last_commit: Duration,
    signals: Arc<SignalFeed>,
}

impl Worker {
    /// After an I/O error: reopen the database. If it then shows a state
    /// other than the last one committed, the failed commit may sit in the
    /// page cache only: signing it could sign a root a power loss takes
    /// back. The sequencer halts instead (every write then 503s) and a
    /// restart reads what is durable.
    fn recover(&mut self) {
        let state = self.store.reopen().and_then(|()| self.store.tree_state());
        match state {
            Ok(state) if state == self.state => {
                tracing::info!(size = state.size, "database reopened after an I/O error");
            }
            Ok(state) => {
                tracing::error!(
                    size = state.size,
                    signed = self.state.size,
                    "a batch reported as failed is in the store; halting appends until a restart"
                );
                self.halted = true;
            }
            Err(e) => {
                tracing::error!(error = %e, "database not reopened; will retry on the next batch")
            }
        }
    }

    /// Signs `state`, which must be durable, and makes it the head.
    fn publish(&mut self, state: TreeState) -> Arc<Head> {
        let head = Arc::new(Head {
            size: state.size,
            root: state.root,
            checkpoint: self.signer.sign(state.size, state.root),
        });
        *self.head.write().expect("not poisoned") = head.clone();
        self.state = state;
        self.size.send_replace(state.size);
        head
    }

    fn run(mut self, jobs: Receiver<Option<Job>>) {
        loop {
            let (batch, stop) = self.gather(&jobs);
            if !batch.is_empty() {
                self.commit(batch);
            }
            if stop {
                tracing::info!(size = self.state.size, "sequencer stopped");
                return;
            }
        }
    }

    /// Waits for a job, then gathers more until the batch is full, the
    /// queue stays empty for `max_wait`, or a stop is asked.
    fn gather(&self, jobs: &Receiver<Option<Job>>) -> (Vec<Job>, bool) {
        let first = match jobs.recv() {
            Ok(Some(job)) => job,
            Ok(None) | Err(_) => return (Vec::new(), true),
        };
        let mut count = weight(&first.write);
        let mut batch = vec![first];
        let deadline = Instant::now() + self.config.max_wait;
        let mut stop = false;
        while count < self.config.max_batch {
            let next = match jobs.try_recv() {
                Ok(next) => next,
                Err(TryRecvError::Disconnected) => None,
                Err(TryRecvError::Empty) => match jobs.recv_deadline(deadline) {
                    Ok(next) => next,
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => None,
                },
            };
            match next {
                Some(job) => {
                    count += weight(&job.write);
                    batch.push(job);
                }
                None => {
                    stop = true;
                    break;
                }
            }
        }
        self.queued.fetch_sub(count, Ordering::SeqCst);
        (batch, stop)
    }

    fn commit(&mut self, batch: Vec<Job>) {
        let count: usize = batch.iter().map(|j| weight(&j.write)).sum();
        if let Some(why) = &self.read_only {
            for job in batch {
                let _ = job.reply.send(Err(AppendError::ReadOnly(why.clone())));
            }
            return;
        }
        if self.halted {
            for job in batch {
                let _ = job.reply.send(Err(AppendError::Storage(
                    "halted after a storage failure; restart the log".into(),
                )));
            }
            return;
        }
        // The uids beyond the index are held in memory: bound them.
        let behind = self.uids.behind(self.state.size);
        if behind > self.config.max_unindexed {
            for job in batch {
                let _ = job.reply.send(Err(AppendError::IndexBehind(behind)));
            }
            return;
        }
        let rest = pause(behind, self.config.max_unindexed, self.last_commit);
        if !rest.is_zero() {
            crate::sys::metrics::METRICS
                .index_pauses
                .fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(rest);
        }
        let started = Instant::now();
        let (writes, replies): (Vec<Write>, Vec<_>) =
            batch.into_iter().map(|j| (j.write, j.reply)).unzip();
        let written = self
            .uids
            .lookup()
            .and_then(|known| self.store.write(self.state, writes, &known));
        let (state, outcomes, writes) = match written {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, events = count, "batch not written");
                for reply in replies {
                    let _ = reply.send(Err(AppendError::Storage(e.to_string())));
                }
                if e.is_io() {
                    self.recover();
                }
                return;
            }
        };
        self.last_commit = started.elapsed();
        crate::sys::metrics::METRICS
            .commit_seconds
            .observe(self.last_commit.as_secs_f64());
        crate::sys::metrics::METRICS
            .batch_events
            .observe(count as f64);
        for (write, outcome) in writes.iter().zip(&outcomes) {
            let appended = appended(write, outcome);
            for &(e, index) in &appended {
                self.uids.add(&e.facets.uid, index);
            }
            let fed = appended
                .iter()
                .filter_map(|(e, i)| Some((*i, e.signals.clone()?)));
            self.signals.push(fed);
        }
        // Durable: now, and only now, the new root may be signed.
        let head = self.publish(state);
        tracing::debug!(
            size = state.size,
            events = count,
            micros = started.elapsed().as_micros() as u64,
            "batch committed"
        );
        for ((reply, outcome), write) in replies.into_iter().zip(outcomes).zip(writes) {
            let _ = reply.send(Ok(Sequenced {
                outcome,
                write,
                head: head.clone(),
            }));
        }
    }
}

/// A sequencer on a new log in `dir`, with its store and index (no
/// follower runs): for the tests of the sequencer and of its users.
#[cfg(test)]
pub(crate) fn started_for_tests(
    dir: &std::path::Path,
    config: Config,
) -> (Sequencer, JoinHandle<()>, Arc<dyn LogStore>, Arc<Index>) {
    let store = crate::store::engine::open(&dir.join("db")).unwrap();
    let index = Arc::new(Index::open(&dir.join("ix"), &store).unwrap());
    let (skey, _) = sealog_verify::note::generate_key("test").unwrap();
    let state = store.tree_state().unwrap();
    let (seq, thread) = Sequencer::start(
        store.clone(),
        index.clone(),
        Arc::new(sealog_verify::note::LogSigner::new(&skey).unwrap()),
        state,
        config,
    );
    (seq, thread, store, index)
}

#[cfg(test)]
mod tests {
    use super::started_for_tests as started;
    use super::*;
    use crate::events::signals::Signals;
    use crate::store::conformance::event;

    #[test]
    fn the_pause_grows_from_a_quarter_of_the_bound_to_nine_commits() {
        let ms = Duration::from_millis;
        assert_eq!(pause(0, 1000, ms(2)), Duration::ZERO);
        assert_eq!(pause(250, 1000, ms(2)), Duration::ZERO);
        let rests: Vec<Duration> = [260, 300, 400, 500]
            .iter()
            .map(|&b| pause(b, 1000, ms(2)))
            .collect();
        assert!(rests.windows(2).all(|w| w[0] < w[1]), "{rests:?}");
        // From half the bound the sequencer rests 90 % of its time.
        for behind in [500, 1000] {
            let rest = pause(behind, 1000, ms(2)).as_secs_f64();
            assert!((rest - 0.018).abs() < 1e-6, "{behind}: {rest}");
        }
        assert_eq!(pause(5000, 1000, ms(100)), ms(250), "capped");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_slow_then_stop_while_the_index_is_behind_and_resume_once_it_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            max_unindexed: 40,
            ..Config::default()
        };
        let (seq, thread, store, index) = started(dir.path(), config);
        let batch = |from: usize| (from..from + 10).map(event).collect::<Vec<_>>();
        let pauses = || {
            crate::sys::metrics::METRICS
                .index_pauses
                .load(Ordering::Relaxed)
        };
        // No follower runs: every batch leaves the index further behind.
        for from in [0, 10] {
            seq.append(batch(from)).await.unwrap();
        }
        let before = pauses();
        for from in [20, 30, 40] {
            seq.append(batch(from)).await.unwrap();
        }
        assert!(pauses() >= before + 3, "behind 20, 30 and 40 of 40: paused");
        match seq.append(batch(50)).await {
            Err(AppendError::IndexBehind(50)) => {}
            other => panic!("expected IndexBehind(50), got {other:?}"),
        }
        assert_eq!(seq.head().size, 50, "nothing appended");
        index.index_up_to(&store, 50, false).unwrap();
        let receipts = seq.append(batch(50)).await.unwrap();
        assert_eq!(receipts[0].index, 50);
        seq.stop();
        thread.join().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_feeds_the_signals_of_what_it_appended_before_publishing_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let (seq, thread, _, _) = started(dir.path(), Config::default());
        let prepared = |user: &str, time: u64| {
            let v = serde_json::json!({"class_uid": 3002, "activity_id": 1, "time": time,
                "severity_id": 1, "status_id": 2, "user": {"uid": user}, "service": {"name": "s"},
                "metadata": {"version": "1.8.0", "product": {"name": "p"}}});
            crate::events::prepare(v, 1, crate::events::Appender::Token("test")).unwrap()
        };
        let mut size = seq.watch_size();
        let fed = vec![prepared("a", 10), prepared("b", 11)];
        let expected: Vec<_> = fed.iter().map(|e| Signals::parse(&e.jcs)).collect();
        // An event without signals (made elsewhere than `prepare`) is not
        // fed: the follower reads it from the store.
        let unfed = event(7);
        let appended = seq.append([fed, vec![unfed]].concat()).await.unwrap();
        assert_eq!(appended.len(), 3);
        size.changed().await.unwrap();
        assert_eq!(*size.borrow(), 3);
        let feed = seq.signals();
        for (i, want) in expected.iter().enumerate() {
            assert_eq!(feed.take(i as u64).as_deref(), want.as_ref(), "leaf {i}");
        }
        assert!(feed.take(2).is_none());
        // A retry (same metadata.uid, same content) appends nothing and
        // feeds nothing.
        let with_uid = || {
            let v = serde_json::json!({"class_uid": 3002, "activity_id": 1, "time": 12,
                "severity_id": 1, "user": {"uid": "c"}, "service": {"name": "s"},
                "metadata": {"version": "1.8.0", "uid": "r-1", "product": {"name": "p"}}});
            crate::events::prepare(v, 1, crate::events::Appender::Token("test")).unwrap()
        };
        seq.append(vec![with_uid()]).await.unwrap();
        let retried = seq.append(vec![with_uid()]).await.unwrap();
        assert!(retried[0].duplicate);
        assert_eq!(feed.len(), 1, "only the first was fed");
        assert!(feed.take(3).is_some());
        seq.stop();
        thread.join().unwrap();
    }
}
