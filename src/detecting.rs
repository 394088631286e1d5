//! Runs the detection rules (`detect`) beside the sequencer: follows the
//! signed tree size, takes each new event's signals in index order from
//! what the sequencer fed (`signal_feed`) or else from the store,
//! and appends the findings as Detection Finding events, which then have
//! receipts and proofs like any other event.
//!
//! Rule state is rebuilt from the log at startup by replaying its last
//! `REPLAY` events; a finding re-derived then carries the same
//! `metadata.uid` as before, so the idempotent append does not log it twice.

use std::sync::{Arc, Mutex};

use crate::detect::{Engine, Finding, Signals};
use crate::event;
use crate::sequencer::Sequencer;
use crate::signal_feed::SignalFeed;
use crate::store::{EventRow, Snapshot, Store, StoreError};

/// Events replayed at startup to rebuild rule state (covers every window
/// at up to ~1 event/s per user for 14 days with room to spare).
pub const REPLAY: u64 = 1_000_000;

/// What `observe` saw of a range of events.
struct Observed {
    findings: Vec<Finding>,
    /// The first event not observed: the range's end, or the event the
    /// store could not be read for (`failed`). The rules keep what they
    /// saw before it, so the next call starts there and sees no event twice.
    next: u64,
    failed: Option<StoreError>,
}

/// Runs the rules over the events at `range`: on the signals the
/// sequencer fed, or, for an event it did not, on the event read back
/// from the store (a snapshot opened only then). A redacted event is
/// skipped when read; one redacted after it was fed was seen while it
/// stood, as a follower that kept up would have seen it.
fn observe(
    engine: &Mutex<Engine>,
    feed: &SignalFeed,
    store: &Store,
    range: std::ops::Range<u64>,
) -> Observed {
    let mut snap = None;
    let mut findings = Vec::new();
    let mut engine = engine.lock().expect("not poisoned");
    for i in range.clone() {
        let signals = match feed.take(i) {
            Some(s) => Some(s),
            None => {
                if snap.is_none() {
                    match store.snapshot() {
                        Ok(opened) => snap = Some(opened),
                        Err(e) => {
                            return Observed {
                                findings,
                                next: i,
                                failed: Some(e),
                            }
                        }
                    }
                }
                stored_signals(snap.as_ref().expect("opened above"), i)
            }
        };
        if let Some(v) = signals {
            findings.extend(engine.observe_signals(i, &v));
        }
    }
    Observed {
        findings,
        next: range.end,
        failed: None,
    }
}

/// The signals of the event at `index` as stored; none if it is redacted,
/// absent or unreadable, or if a member the rules read has the wrong type.
fn stored_signals(snap: &Snapshot, index: u64) -> Option<Arc<Signals>> {
    match snap.event(index) {
        Ok(EventRow::Present(e)) => Signals::parse(&e.jcs).map(Arc::new),
        _ => None,
    }
}

/// Follows the log for ever; call from a spawned task.
pub async fn run(
    engine: Arc<Mutex<Engine>>,
    sequencer: Arc<Sequencer>,
    store: Arc<Store>,
    from: u64,
) {
    let mut size = sequencer.watch_size();
    let mut next = from;
    loop {
        let target = *size.borrow_and_update();
        while next < target {
            let end = target.min(next + 1000);
            let seen = observe(&engine, sequencer.signals(), &store, next..end);
            next = seen.next;
            if let Some(e) = seen.failed {
                tracing::warn!(error = %e, "detections: store unreadable; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            let findings = seen.findings;
            if findings.is_empty() {
                continue;
            }
            let events: Vec<_> = findings
                .iter()
                .filter_map(|f| {
                    event::prepare(f.event(), crate::clock::now_ms(), event::Appender::Log).ok()
                })
                .collect();
            for f in &findings {
                tracing::info!(rule = f.rule, subject = %f.subject, evidence = ?f.evidence, "detection");
            }
            // Findings must not be lost to a busy queue: retry until taken.
            loop {
                match sequencer.append(events.clone()).await {
                    Ok(_) => break,
                    Err(
                        crate::sequencer::AppendError::Stopped
                        | crate::sequencer::AppendError::ReadOnly(_),
                    ) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "detections: finding not appended; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                }
            }
        }
        if size.changed().await.is_err() {
            return;
        }
    }
}
