//! A Bloom filter of every `metadata.uid` in the log, so that an append's
//! idempotency check can skip the index for a uid it has never seen.
//!
//! Asking the index is a B-tree search per new event on the sequencer's
//! serial path (10 % of its time for single appends at c=64). Most uids
//! are new; the filter says so from 2^27 bits (16 MiB, fixed).
//!
//! What must stay true: once `ready`, every uid in the log is in the
//! filter (no false negatives). The sequencer inserts each uid it appends
//! as it commits it; the follower, before it marks the filter ready,
//! inserts every uid the index holds and every uid of the log beyond
//! what the index covered (read after the index, so the two meet). Bits
//! are only ever set. A uid the filter holds may still be absent (false
//! positives: ~0.4 % at 10M uids, more beyond): then the index answers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Bits in the filter: 16 MiB.
const BITS: u64 = 1 << 27;
/// Bits set per uid.
const PROBES: u64 = 4;

/// The filter: 2^27 bits set by atomic OR, never cleared, so readers
/// need no lock; `ready` publishes that the log's every uid is in.
pub struct UidFilter {
    words: Box<[AtomicU64]>,
    ready: AtomicBool,
}

impl Default for UidFilter {
    fn default() -> Self {
        UidFilter {
            words: (0..BITS / 64).map(|_| AtomicU64::new(0)).collect(),
            ready: AtomicBool::new(false),
        }
    }
}

/// The probed bit positions of `key` (an `index_keys` key: already a
/// SHA-256 prefix, so its halves serve as two independent hashes).
fn probes(key: u64) -> impl Iterator<Item = u64> {
    let (h1, h2) = (key & 0xFFFF_FFFF, (key >> 32) | 1);
    (0..PROBES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % BITS)
}

impl UidFilter {
    /// Adds the uid with index key `key`.
    pub fn insert(&self, key: u64) {
        for bit in probes(key) {
            self.words[(bit / 64) as usize].fetch_or(1 << (bit % 64), Ordering::Relaxed);
        }
    }

    /// False only if the uid with key `key` is not in the log. Before
    /// `ready`, always true.
    pub fn may_hold(&self, key: u64) -> bool {
        !self.ready.load(Ordering::Acquire)
            || probes(key).all(|bit| {
                self.words[(bit / 64) as usize].load(Ordering::Relaxed) & (1 << (bit % 64)) != 0
            })
    }

    /// Declares every uid of the log inserted.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::index_keys::of_str;

    #[test]
    fn holds_what_it_was_given_and_rarely_more() {
        let f = UidFilter::default();
        assert!(f.may_hold(of_str("never")), "not ready: ask the index");
        for i in 0..100_000 {
            f.insert(of_str(&format!("in-{i}")));
        }
        f.set_ready();
        assert!((0..100_000).all(|i| f.may_hold(of_str(&format!("in-{i}")))));
        let false_positives = (0..100_000)
            .filter(|i| f.may_hold(of_str(&format!("out-{i}"))))
            .count();
        assert!(false_positives < 10, "{false_positives} in 100,000");
    }
}
