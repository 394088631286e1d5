//! Runs the detection rules (`detect`) beside the sequencer: follows the
//! signed tree size, takes each new event's signals in index order from
//! what the sequencer fed (`signal_feed`) or else from the store,
//! and appends the findings as Detection Finding events, which then have
//! receipts and proofs like any other event.
//!
//! Rule state is rebuilt from the log at startup by replaying its last
//! `REPLAY` events; a finding re-derived then carries the same
//! `metadata.uid` as before, so the idempotent append does not log it twice.
//!
//! What must stay true: the runner never stops while the log runs, and
//! never waits on one event or finding for ever. Whatever is unexpected
//! (an unreadable event, a finding the log refuses, a uid another event
//! holds, a panic in a rule) is logged, counted in `METRICS` (`/metrics`)
//! and skipped or resolved; only a log that is shutting down ends it. A
//! finding that could not be appended is derived again at the next start
//! (the replay), so skipping it now loses it only if it is older than the
//! replay by then.

use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::detect::engine::{Engine, Finding};
use crate::events::signals::Signals;
use crate::events::{self, Committed, EventError};
use crate::log::sequencer::{AppendError, Sequencer};
use crate::log::signal_feed::SignalFeed;
use crate::store::{EventRow, LogStore, Refusal, Snapshot, StoreError};
use crate::sys::follow::{Backoff, Follower, Follows, Role, FOLLOWERS};
use sealog_verify::receipt::Receipt;

/// Events replayed at startup to rebuild rule state (covers every window
/// at up to ~1 event/s per user for 14 days with room to spare).
pub const REPLAY: u64 = 1_000_000;

/// Events observed per lock of the engine (and per append of findings).
const CHUNK: u64 = 1000;

/// How long an append of findings is retried while the log is busy
/// (queue full, index behind, a storage error) before they are dropped.
pub const APPEND_RETRY_FOR: Duration = Duration::from_secs(30);

/// The runner's counters, rendered on `/metrics` by `render`.
pub struct Metrics {
    /// Events the rules have observed.
    pub events: AtomicU64,
    /// Findings by outcome, as `FINDING_OUTCOMES` names them.
    pub findings: [AtomicU64; 6],
    /// Errors by kind, as `ERROR_KINDS` names them.
    pub errors: [AtomicU64; 4],
    /// Copies of the engine's `Stats` (the engine is the only writer).
    pub evictions: [AtomicU64; 6],
    /// Events dated past the clock plus `max_future_skew_ms`, observed as
    /// dated at that bound.
    pub future_events: AtomicU64,
    /// Users the rules hold state for (a gauge).
    pub users: AtomicU64,
    /// Source IPs the rules hold state for (a gauge).
    pub ips: AtomicU64,
}

/// `appended`: new in the log; `already_recorded`: the log held it (a
/// restart's replay); `uid_taken`: another event held its uid, so it was
/// appended under the alternate uid; `dropped`: not appended (refused, or
/// the log stayed busy or read-only); `invalid`: the finding's event was
/// refused by `events::prepare`; `stopped`: the log shut down first.
pub const FINDING_OUTCOMES: [&str; 6] = [
    "appended",
    "already_recorded",
    "uid_taken",
    "dropped",
    "invalid",
    "stopped",
];
const APPENDED: usize = 0;
const ALREADY: usize = 1;
const UID_TAKEN: usize = 2;
const DROPPED: usize = 3;
const INVALID: usize = 4;
const STOPPED: usize = 5;

/// `store`: a snapshot could not be opened (retried); `unreadable_event`:
/// an event could not be read or its signals parsed (skipped);
/// `append_retry`: an append of findings retried; `panic`: a rule
/// panicked on an event (skipped).
pub const ERROR_KINDS: [&str; 4] = ["store", "unreadable_event", "append_retry", "panic"];
const E_STORE: usize = 0;
const E_UNREADABLE: usize = 1;
const E_RETRY: usize = 2;
const E_PANIC: usize = 3;

/// The state kinds the engine evicts from, in `Metrics::evictions` order.
pub const EVICTED: [&str; 6] = [
    "users",
    "ips",
    "window_events",
    "devices",
    "findings",
    "name_uids",
];

/// The process's one set of runner counters: `/metrics` reads them
/// while the runner's thread writes.
pub static METRICS: Metrics = Metrics {
    events: AtomicU64::new(0),
    findings: [const { AtomicU64::new(0) }; 6],
    errors: [const { AtomicU64::new(0) }; 4],
    evictions: [const { AtomicU64::new(0) }; 6],
    future_events: AtomicU64::new(0),
    users: AtomicU64::new(0),
    ips: AtomicU64::new(0),
};

fn count_finding(outcome: usize) {
    METRICS.findings[outcome].fetch_add(1, Relaxed);
}

fn count_error(kind: usize) {
    METRICS.errors[kind].fetch_add(1, Relaxed);
}

/// Copies the engine's counts to `METRICS`.
fn publish(engine: &Engine) {
    let s = engine.stats();
    let evicted = [
        s.evicted_users,
        s.evicted_ips,
        s.evicted_window_events,
        s.evicted_devices,
        s.evicted_findings,
        s.evicted_name_uids,
    ];
    for (m, v) in METRICS.evictions.iter().zip(evicted) {
        m.store(v, Relaxed);
    }
    METRICS.future_events.store(s.future_events, Relaxed);
    METRICS.users.store(s.users, Relaxed);
    METRICS.ips.store(s.ips, Relaxed);
}

/// The runner's metrics in the Prometheus text format.
pub fn render(out: &mut String) {
    let m = &METRICS;
    let labelled =
        |out: &mut String, name: &str, help: &str, label: &str, names: &[&str], v: &[AtomicU64]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (n, c) in names.iter().zip(v) {
                let _ = writeln!(out, "{name}{{{label}=\"{n}\"}} {}", c.load(Relaxed));
            }
        };
    let _ = writeln!(out, "# HELP sealog_detection_events_total Events the detection rules observed.\n# TYPE sealog_detection_events_total counter\nsealog_detection_events_total {}", m.events.load(Relaxed));
    labelled(
        out,
        "sealog_detection_findings_total",
        "Findings by what became of them.",
        "outcome",
        &FINDING_OUTCOMES,
        &m.findings,
    );
    labelled(
        out,
        "sealog_detection_errors_total",
        "Unexpected conditions the detection runner met, logged and skipped or retried.",
        "kind",
        &ERROR_KINDS,
        &m.errors,
    );
    labelled(
        out,
        "sealog_detection_evictions_total",
        "Detection state evicted at its cap (least recently seen first).",
        "state",
        &EVICTED,
        &m.evictions,
    );
    let _ = writeln!(out, "# HELP sealog_detection_future_events_total Events dated past the clock plus max_future_skew_ms, observed as dated at that bound.\n# TYPE sealog_detection_future_events_total counter\nsealog_detection_future_events_total {}", m.future_events.load(Relaxed));
    let _ = writeln!(out, "# HELP sealog_detection_state Users and source IPs the detection rules hold state for.\n# TYPE sealog_detection_state gauge\nsealog_detection_state{{kind=\"users\"}} {}\nsealog_detection_state{{kind=\"ips\"}} {}", m.users.load(Relaxed), m.ips.load(Relaxed));
    let _ = writeln!(out, "# HELP sealog_detection_lag_events Committed events the detection rules have not observed yet.\n# TYPE sealog_detection_lag_events gauge\nsealog_detection_lag_events {}", FOLLOWERS.lag(Role::Detections).unwrap_or(0));
}

/// An event's index and signals.
type Fed = (u64, Arc<Signals>);

/// The signals of the events at `range`: those the sequencer fed, the
/// others read from the store (a snapshot opened only then); and the
/// first index not read, with the error, if a snapshot could not be
/// opened there. Read outside the engine's lock, so that `/v1/risk` does
/// not wait on the store.
fn read_signals(
    feed: &SignalFeed,
    store: &dyn LogStore,
    range: std::ops::Range<u64>,
) -> (Vec<Fed>, Option<(u64, StoreError)>) {
    let mut snap = None;
    let mut out = Vec::with_capacity((range.end - range.start) as usize);
    for i in range {
        if let Some(s) = feed.take(i) {
            out.push((i, s));
            continue;
        }
        if snap.is_none() {
            match store.snapshot() {
                Ok(opened) => snap = Some(opened),
                Err(e) => return (out, Some((i, e))),
            }
        }
        if let Some(s) = stored_signals(snap.as_ref().expect("opened above"), i) {
            out.push((i, s));
        }
    }
    (out, None)
}

/// The signals of the event at `index` as stored; none if it is redacted
/// (skipped: it no longer stands) or, counted and logged, if it is
/// absent or unreadable or a member the rules read has the wrong type.
fn stored_signals(snap: &dyn Snapshot, index: u64) -> Option<Arc<Signals>> {
    let why = match snap.event(index) {
        Ok(EventRow::Present(e)) => match Signals::parse(&e.jcs) {
            Some(s) => return Some(Arc::new(s)),
            None => "its signals do not parse".to_string(),
        },
        Ok(EventRow::Redacted(_)) => return None,
        Ok(EventRow::Absent) => "absent".to_string(),
        Err(e) => e.to_string(),
    };
    count_error(E_UNREADABLE);
    tracing::warn!(index, why = %why, "detections: event skipped");
    None
}

/// Runs the rules over `signals`, in order. A rule that panics on an event
/// is counted and the event skipped: the state it left is bounded like
/// any other, and the engine's lock is not poisoned (the panic is caught
/// inside it).
fn observe(engine: &Mutex<Engine>, signals: &[Fed]) -> Vec<Finding> {
    let mut engine = engine.lock().unwrap_or_else(PoisonError::into_inner);
    let mut findings = Vec::new();
    for (i, s) in signals {
        match std::panic::catch_unwind(AssertUnwindSafe(|| engine.observe_signals(*i, s))) {
            Ok(f) => findings.extend(f),
            Err(_) => {
                count_error(E_PANIC);
                tracing::error!(index = i, "detections: a rule panicked; event skipped");
            }
        }
    }
    METRICS.events.fetch_add(signals.len() as u64, Relaxed);
    publish(&engine);
    findings
}

/// Follows the log for ever; call from a spawned task. Ends only when the
/// log shuts down.
///
/// A `Follower` (`sys::follow`) walks the log from `from` a `CHUNK` at a
/// time and waits for each new signed size; a snapshot that cannot be
/// opened is its transient failure (counted, retried after its backoff
/// from the first event not read); an event that cannot be read is
/// skipped here (`stored_signals`).
pub async fn run(
    engine: Arc<Mutex<Engine>>,
    sequencer: Arc<Sequencer>,
    store: Arc<dyn LogStore>,
    from: u64,
) {
    let follows = Follows::Leaves { chunk: CHUNK };
    let mut follower = Follower::new(Role::Detections, follows, from, sequencer.watch_size());
    while let Some(range) = follower.next().await {
        let (signals, failed) = read_signals(sequencer.signals(), &store, range.clone());
        let findings = observe(&engine, &signals);
        if !findings.is_empty() && !record(&sequencer, &store, &findings).await {
            return;
        }
        // The rules keep what they saw: the next round starts at the
        // first event not read, and sees no event twice. The position
        // moves only once the round's findings are in the log, so that a
        // lag of 0 (`/metrics`) means they are.
        follower.advance_to(failed.as_ref().map_or(range.end, |(i, _)| *i));
        if let Some((i, e)) = failed {
            // The store as a whole, not one event: wait and retry.
            count_error(E_STORE);
            tracing::warn!(index = i, error = %e, "detections: store unreadable; retrying");
            follower.failed();
        }
    }
}

/// The finding's event ready for the log, under its `attempt`-th uid
/// (`Finding::event_as`). The one place the runner prepares an event.
fn prepare(f: &Finding, attempt: u32) -> Result<Committed, EventError> {
    events::prepare(
        f.event_as(attempt),
        crate::sys::clock::now_ms(),
        events::Appender::Log,
    )
}

/// Appends `findings`; false only if the log is shutting down. Each
/// finding ends appended, already recorded, or counted and skipped.
async fn record(sequencer: &Sequencer, store: &dyn LogStore, findings: &[Finding]) -> bool {
    let mut ready = Vec::new();
    for f in findings {
        tracing::info!(rule = f.rule, subject = %f.subject, evidence = ?f.evidence, "detection");
        match prepare(f, 0) {
            Ok(c) => ready.push((f, c)),
            Err(e) => {
                count_finding(INVALID);
                tracing::error!(rule = f.rule, subject = %f.subject, error = %e, "detections: the finding's event is invalid; not recorded");
            }
        }
    }
    if ready.is_empty() {
        return true;
    }
    let batch = ready.iter().map(|(_, c)| c.clone()).collect();
    match append(sequencer, batch).await {
        Ok(receipts) => {
            count_receipts(&receipts);
            true
        }
        // One of them was refused (its uid is another event's): the batch
        // is atomic, so each on its own.
        Err(AppendError::Refused(_)) => {
            for (f, c) in ready {
                if !record_one(sequencer, store, f, c).await {
                    return false;
                }
            }
            true
        }
        Err(e) => dropped(e, ready.len()),
    }
}

/// Appends one finding; when its uid is taken by an event that is not its
/// record, under the alternate uid; false only if the log is stopping.
async fn record_one(
    sequencer: &Sequencer,
    store: &dyn LogStore,
    f: &Finding,
    c: Committed,
) -> bool {
    let (uid, index) = match append(sequencer, vec![c]).await {
        Ok(receipts) => {
            count_receipts(&receipts);
            return true;
        }
        Err(AppendError::Refused(Refusal::UidConflict { uid, index })) => (uid, index),
        Err(e) => return dropped(e, 1),
    };
    if recorded_at(store, index, f) {
        // Our own record in another form (written by another version).
        count_finding(ALREADY);
        return true;
    }
    count_finding(UID_TAKEN);
    tracing::warn!(%uid, index, rule = f.rule, subject = %f.subject, "detections: another event holds the finding's uid; appending it under the alternate uid");
    let c = match prepare(f, 1) {
        Ok(c) => c,
        Err(e) => {
            count_finding(INVALID);
            tracing::error!(error = %e, "detections: the finding's event is invalid; not recorded");
            return true;
        }
    };
    match append(sequencer, vec![c]).await {
        Ok(receipts) => {
            count_receipts(&receipts);
            true
        }
        Err(e) => dropped(e, 1),
    }
}

/// Whether the event at `index` is the log's record of `f`.
fn recorded_at(store: &dyn LogStore, index: u64, f: &Finding) -> bool {
    let Ok(snap) = store.snapshot() else {
        return false;
    };
    match snap.event(index) {
        Ok(EventRow::Present(e)) => serde_json::from_slice(&e.jcs)
            .map(|v| f.is_recorded_by(&v))
            .unwrap_or(false),
        _ => false,
    }
}

fn count_receipts(receipts: &[Receipt]) {
    for r in receipts {
        count_finding(if r.duplicate { ALREADY } else { APPENDED });
    }
}

/// Counts `n` findings not appended for `e`; false if the log is stopping.
fn dropped(e: AppendError, n: usize) -> bool {
    let stopping = matches!(e, AppendError::Stopped);
    let outcome = if stopping { STOPPED } else { DROPPED };
    METRICS.findings[outcome].fetch_add(n as u64, Relaxed);
    if stopping {
        tracing::info!(
            findings = n,
            "detections: the log is stopping; findings are derived again at the next start"
        );
    } else {
        tracing::error!(error = %e, findings = n, "detections: findings not appended; skipped");
    }
    !stopping
}

/// Appends, retrying while the log is busy for at most `APPEND_RETRY_FOR`;
/// a refusal, a read-only log or a shutdown is answered at once.
async fn append(
    sequencer: &Sequencer,
    events: Vec<Committed>,
) -> Result<Vec<Receipt>, AppendError> {
    let deadline = tokio::time::Instant::now() + APPEND_RETRY_FOR;
    let mut backoff = Backoff::default();
    loop {
        let e = match sequencer.append(events.clone()).await {
            Ok(r) => return Ok(r),
            Err(
                e @ (AppendError::Refused(_) | AppendError::Stopped | AppendError::ReadOnly(_)),
            ) => return Err(e),
            Err(e) => e,
        };
        let wait = backoff.next_wait();
        if tokio::time::Instant::now() + wait > deadline {
            return Err(e);
        }
        count_error(E_RETRY);
        tracing::warn!(error = %e, "detections: findings not appended yet; retrying");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::engine::Identity;
    use serde_json::json;

    /// A sequencer on a new log in `dir`, and its store.
    fn started(
        dir: &std::path::Path,
    ) -> (Sequencer, std::thread::JoinHandle<()>, Arc<dyn LogStore>) {
        let (seq, thread, store, _) =
            crate::log::sequencer::started_for_tests(dir, Default::default());
        (seq, thread, store)
    }

    fn brute_force(user: &str, evidence: Vec<u64>) -> Finding {
        Finding {
            rule: "brute_force",
            subject: user.into(),
            identity: Some(Identity::Uid(user.into())),
            evidence,
            risk_level_id: 3,
            risk_score: 70,
            time: 1_763_800_000_000,
        }
    }

    /// The stored event at `index`.
    fn stored(store: &dyn LogStore, index: u64) -> serde_json::Value {
        match store.snapshot().unwrap().event(index).unwrap() {
            EventRow::Present(e) => serde_json::from_slice(&e.jcs).unwrap(),
            _ => panic!("no event at {index}"),
        }
    }

    fn findings(outcome: usize) -> u64 {
        METRICS.findings[outcome].load(Relaxed)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_findings_uid_held_by_another_event_is_resolved_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        let (seq, thread, store) = started(dir.path());
        let taken = brute_force("u-1", vec![1, 2, 3]);
        let free = brute_force("u-2", vec![4, 5, 6]);
        // Another event holds the first finding's uid (as a producer's
        // could in a log written before such uids were reserved).
        let mut squatter = json!({
            "class_uid": 3002, "activity_id": 1, "severity_id": 1, "status_id": 1,
            "time": 1_763_800_000_000u64, "user": {"uid": "mallory"},
            "dst_endpoint": {"hostname": "sso.example.com"},
            "metadata": {"version": "1.8.0", "product": {"name": "Example IdP"}},
        });
        squatter["metadata"]["uid"] = taken.event()["metadata"]["uid"].clone();
        seq.append(vec![
            events::prepare(squatter, 1, events::Appender::Log).unwrap()
        ])
        .await
        .unwrap();
        let before = (findings(APPENDED), findings(UID_TAKEN), findings(ALREADY));
        // Both in one batch: the batch is refused, each is then appended
        // on its own, the first under its alternate uid.
        assert!(record(&seq, &store, &[taken.clone(), free.clone()]).await);
        assert_eq!(seq.head().size, 3);
        assert!(taken.is_recorded_by(&stored(&store, 1)));
        assert_eq!(
            stored(&store, 1)["metadata"]["uid"],
            taken.event_as(1)["metadata"]["uid"]
        );
        assert!(free.is_recorded_by(&stored(&store, 2)));
        assert!(findings(APPENDED) >= before.0 + 2);
        assert!(findings(UID_TAKEN) > before.1);
        // Derived again (a restart's replay): recognised, not appended.
        assert!(record(&seq, &store, &[taken.clone(), free]).await);
        assert_eq!(seq.head().size, 3);
        assert!(findings(ALREADY) >= before.2 + 2);
        seq.stop();
        thread.join().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_finding_whose_event_is_invalid_is_counted_and_the_others_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let (seq, thread, store) = started(dir.path());
        let mut bad = brute_force("u-3", vec![1]);
        bad.risk_level_id = 1000; // severity_id 1001: not an OCSF severity
        assert!(prepare(&bad, 0).is_err());
        let invalid = findings(INVALID);
        assert!(record(&seq, &store, &[bad, brute_force("u-4", vec![2])]).await);
        assert!(findings(INVALID) > invalid);
        assert_eq!(seq.head().size, 1, "the valid one is appended");
        // A log that is stopping ends the runner; nothing else does.
        seq.stop();
        thread.join().unwrap();
        assert!(!record(&seq, &store, &[brute_force("u-5", vec![3])]).await);
    }
}
