//! Prometheus metrics, in the text exposition format at `GET /metrics`:
//! plain atomics, cheap enough to leave on under load.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A histogram with fixed upper bounds.
pub struct Histogram {
    bounds: &'static [f64],
    counts: [AtomicU64; 16],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    const fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: [const { AtomicU64::new(0) }; 16],
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Counts `v` in the first bucket whose bound is at least `v` (one
    /// above every bound shows only in `+Inf`) and adds it to `_sum`,
    /// which keeps microseconds: finer fractions are dropped.
    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.sum_micros.fetch_add((v * 1e6) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cum += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        let n = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {n}");
    }
}

/// Append outcomes, as the HTTP error codes name them.
/// `other` stays last: unknown codes count there.
pub const OUTCOMES: [&str; 9] = [
    "ok",
    "bad_request",
    "unauthorized",
    "invalid_event",
    "too_large",
    "overloaded",
    "storage",
    "conflict",
    "other",
];

/// The server's counters and histograms; the gauges are read at render
/// time instead ([`Gauges`]). Updates are `Relaxed`: a scrape may see one
/// counter a step ahead of another, never a count lost.
pub struct Metrics {
    /// Append requests, indexed like [`OUTCOMES`].
    pub append_requests: [AtomicU64; OUTCOMES.len()],
    /// Events in append requests, indexed like [`OUTCOMES`].
    pub append_events: [AtomicU64; OUTCOMES.len()],
    /// Retried events answered with their original receipt.
    pub duplicates: AtomicU64,
    /// Events per committed batch.
    pub batch_events: Histogram,
    /// Seconds to write and fsync a batch.
    pub commit_seconds: Histogram,
    /// Inclusion proofs served.
    pub inclusion_proofs: AtomicU64,
    /// Consistency proofs served.
    pub consistency_proofs: AtomicU64,
    /// Tiles and entry bundles served.
    pub tiles: AtomicU64,
    /// Event queries answered.
    pub queries: AtomicU64,
    /// Commits the sequencer delayed to let a lagging index catch up.
    pub index_pauses: AtomicU64,
    /// Leaves the index follower could not read the rows of and indexed
    /// by leaf hash only.
    pub index_skipped: AtomicU64,
    /// Events a stream could not read (sent as unreadable) and streams
    /// ended by a store error.
    pub stream_errors: AtomicU64,
    /// Witness answers that gave no cosignature: unreachable, refused,
    /// garbled, or reporting a fork.
    pub witness_errors: AtomicU64,
    /// Witness answers saying the witness cosigned another tree of the
    /// same size: evidence of a split view, counted in `witness_errors`
    /// too.
    pub witness_forks: AtomicU64,
}

/// The process's one set of counters, rendered at `GET /metrics`.
pub static METRICS: Metrics = Metrics {
    append_requests: [const { AtomicU64::new(0) }; OUTCOMES.len()],
    append_events: [const { AtomicU64::new(0) }; OUTCOMES.len()],
    duplicates: AtomicU64::new(0),
    batch_events: Histogram::new(&[
        1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
    ]),
    commit_seconds: Histogram::new(&[
        0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ]),
    inclusion_proofs: AtomicU64::new(0),
    consistency_proofs: AtomicU64::new(0),
    tiles: AtomicU64::new(0),
    queries: AtomicU64::new(0),
    index_pauses: AtomicU64::new(0),
    index_skipped: AtomicU64::new(0),
    stream_errors: AtomicU64::new(0),
    witness_errors: AtomicU64::new(0),
    witness_forks: AtomicU64::new(0),
};

/// Counts an append request of `events` events by its outcome code.
pub fn append(outcome: &str, events: usize) {
    let i = OUTCOMES
        .iter()
        .position(|o| *o == outcome)
        .unwrap_or(OUTCOMES.len() - 1);
    METRICS.append_requests[i].fetch_add(1, Relaxed);
    METRICS.append_events[i].fetch_add(events as u64, Relaxed);
}

/// Gauges the caller reads at render time.
pub struct Gauges {
    /// Leaves under the latest checkpoint.
    pub tree_size: u64,
    /// Events waiting for the sequencer.
    pub queue_depth: u64,
    /// Leaves the lookup index covers.
    pub indexed: u64,
    /// Leaves the newest witnessed checkpoint is behind the latest, if
    /// witnesses are configured.
    pub witness_lag: Option<u64>,
}

/// The text exposition; `detections` writes the detection runner's
/// metrics (a layer above this one) in their place.
pub fn render(g: &Gauges, detections: impl FnOnce(&mut String)) -> String {
    let m = &METRICS;
    let mut out = String::new();
    let _ = writeln!(out, "# HELP sealog_append_requests_total Append requests by outcome.\n# TYPE sealog_append_requests_total counter");
    for (o, c) in OUTCOMES.iter().zip(&m.append_requests) {
        let _ = writeln!(
            out,
            "sealog_append_requests_total{{outcome=\"{o}\"}} {}",
            c.load(Relaxed)
        );
    }
    let _ = writeln!(out, "# HELP sealog_append_events_total Events in append requests by outcome.\n# TYPE sealog_append_events_total counter");
    for (o, c) in OUTCOMES.iter().zip(&m.append_events) {
        let _ = writeln!(
            out,
            "sealog_append_events_total{{outcome=\"{o}\"}} {}",
            c.load(Relaxed)
        );
    }
    let counters = [
        (
            "sealog_duplicate_events_total",
            "Retried events answered with their original receipt.",
            &m.duplicates,
        ),
        (
            "sealog_inclusion_proofs_total",
            "Inclusion proofs served.",
            &m.inclusion_proofs,
        ),
        (
            "sealog_consistency_proofs_total",
            "Consistency proofs served.",
            &m.consistency_proofs,
        ),
        (
            "sealog_tiles_total",
            "Tiles and entry bundles served.",
            &m.tiles,
        ),
        (
            "sealog_queries_total",
            "Event queries answered.",
            &m.queries,
        ),
        (
            "sealog_index_pauses_total",
            "Commits the sequencer delayed to let a lagging index catch up.",
            &m.index_pauses,
        ),
        (
            "sealog_index_skipped_leaves_total",
            "Leaves whose rows the index could not read, indexed by leaf hash only (logged).",
            &m.index_skipped,
        ),
        (
            "sealog_stream_errors_total",
            "Events a stream could not read (sent as unreadable) and streams ended by a store error.",
            &m.stream_errors,
        ),
        (
            "sealog_witness_errors_total",
            "Witness answers that gave no cosignature: unreachable, refused, garbled, or reporting a fork.",
            &m.witness_errors,
        ),
        (
            "sealog_witness_forks_total",
            "Witness answers saying the witness cosigned another tree of the same size: a fork.",
            &m.witness_forks,
        ),
    ];
    for (name, help, c) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            c.load(Relaxed)
        );
    }
    m.batch_events.render(
        &mut out,
        "sealog_batch_events",
        "Events per committed batch.",
    );
    m.commit_seconds.render(
        &mut out,
        "sealog_commit_seconds",
        "Time to write and fsync a batch.",
    );
    detections(&mut out);
    crate::sys::follow::FOLLOWERS.render(&mut out);
    let _ = writeln!(out, "# HELP sealog_tree_size Leaves under the latest checkpoint.\n# TYPE sealog_tree_size gauge\nsealog_tree_size {}", g.tree_size);
    let _ = writeln!(out, "# HELP sealog_queue_depth Events waiting for the sequencer.\n# TYPE sealog_queue_depth gauge\nsealog_queue_depth {}", g.queue_depth);
    let _ = writeln!(out, "# HELP sealog_indexed_size Leaves the lookup index covers (queries and lookups by leaf hash wait for it).\n# TYPE sealog_indexed_size gauge\nsealog_indexed_size {}", g.indexed);
    if let Some(lag) = g.witness_lag {
        let _ = writeln!(out, "# HELP sealog_witness_lag_leaves Leaves the newest witnessed checkpoint is behind.\n# TYPE sealog_witness_lag_leaves gauge\nsealog_witness_lag_leaves {lag}");
    }
    out
}
