//! Runs the detection rules (`detect`) beside the sequencer: follows the
//! signed tree size, reads each new event from the store in index order,
//! and appends the findings as Detection Finding events, which then have
//! receipts and proofs like any other event.
//!
//! Rule state is rebuilt from the log at startup by replaying its last
//! `REPLAY` events; a finding re-derived then carries the same
//! `metadata.uid` as before, so the idempotent append does not log it twice.

use std::sync::{Arc, Mutex};

use crate::detect::{Engine, Signals};
use crate::event;
use crate::sequencer::Sequencer;
use crate::store::{EventRow, Store};

/// Events replayed at startup to rebuild rule state (covers every window
/// at up to ~1 event/s per user for 14 days with room to spare).
pub const REPLAY: u64 = 1_000_000;

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
            let mut findings = Vec::new();
            match store.snapshot() {
                Ok(snap) => {
                    let mut engine = engine.lock().expect("not poisoned");
                    for i in next..end {
                        if let Ok(EventRow::Present(e)) = snap.event(i) {
                            if let Some(v) = Signals::parse(&e.jcs) {
                                findings.extend(engine.observe_signals(i, &v));
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "detections: store unreadable; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
            }
            next = end;
            if findings.is_empty() {
                continue;
            }
            let events: Vec<_> = findings
                .iter()
                .filter_map(|f| event::prepare(f.event(), crate::clock::now_ms()).ok())
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
