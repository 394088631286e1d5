//! The detection rules' signals of newly committed events, handed from the
//! sequencer to the detection follower in memory.
//!
//! Why: reading each new event back from the store, decompressing it and
//! parsing its JSON for the few members the rules read costs the detection
//! thread three times the CPU (BENCHMARKS.md, "Detections take their
//! signals from memory"). The request handler already holds the event
//! parsed, so it takes the signals from there (`events::prepare`) and the
//! sequencer passes them on once their batch is durable.
//!
//! What must stay true:
//! - the feed only speeds the follower up: an index it does not hold (the
//!   feed was full, the event has no signals, a restart's replay) is read
//!   from the store, as before, so the rules see every event either way;
//! - entries are pushed in index order, once durable, before the size that
//!   covers them is published.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::events::signals::Signals;

/// Entries held at most (~200-300 bytes each); beyond, new ones are
/// dropped and the follower reads those events from the store.
pub const CAPACITY: usize = 65_536;

/// Signals by leaf index, oldest first.
pub struct SignalFeed {
    queue: Mutex<VecDeque<(u64, Arc<Signals>)>>,
    capacity: usize,
}

impl Default for SignalFeed {
    fn default() -> Self {
        SignalFeed::with_capacity(CAPACITY)
    }
}

impl SignalFeed {
    /// An empty feed holding at most `capacity` entries ([`CAPACITY`] by
    /// default).
    pub fn with_capacity(capacity: usize) -> Self {
        SignalFeed {
            queue: Mutex::new(VecDeque::new()),
            capacity,
        }
    }

    /// Adds `entries`, each above every index already pushed; what does
    /// not fit is dropped.
    pub fn push(&self, entries: impl Iterator<Item = (u64, Arc<Signals>)>) {
        let mut q = self.queue.lock().expect("not poisoned");
        for e in entries {
            if q.len() >= self.capacity {
                return;
            }
            debug_assert!(q.back().is_none_or(|b| b.0 < e.0), "pushed in index order");
            q.push_back(e);
        }
    }

    /// The signals of leaf `index`, if fed; forgets every entry below it
    /// (the follower asks in index order and never asks again).
    pub fn take(&self, index: u64) -> Option<Arc<Signals>> {
        let mut q = self.queue.lock().expect("not poisoned");
        while let Some(&(i, _)) = q.front() {
            if i > index {
                return None;
            }
            let (_, s) = q.pop_front().expect("front exists");
            if i == index {
                return Some(s);
            }
        }
        None
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.queue.lock().expect("not poisoned").len()
    }

    /// Whether no entry is held: the follower reads everything from the
    /// store until the sequencer pushes again.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signals(class_uid: u64) -> Arc<Signals> {
        let json = format!(r#"{{"class_uid":{class_uid},"time":1}}"#);
        Arc::new(Signals::parse(json.as_bytes()).unwrap())
    }

    fn class_of(s: Option<Arc<Signals>>) -> Option<u64> {
        s.map(|s| s.class_uid)
    }

    #[test]
    fn takes_in_index_order_and_skips_what_was_read_elsewhere() {
        let feed = SignalFeed::with_capacity(10);
        feed.push([(3, signals(1003)), (4, signals(1004)), (7, signals(1007))].into_iter());
        assert_eq!(
            class_of(feed.take(2)),
            None,
            "below the feed: from the store"
        );
        assert_eq!(class_of(feed.take(3)), Some(1003));
        // 4 was read from the store (say, after a restart): it is dropped.
        assert_eq!(class_of(feed.take(5)), None);
        assert_eq!(feed.len(), 1);
        assert_eq!(class_of(feed.take(6)), None, "not fed");
        assert_eq!(class_of(feed.take(7)), Some(1007));
        assert!(feed.is_empty());
        assert_eq!(class_of(feed.take(7)), None, "taken once");
    }

    #[test]
    fn a_full_feed_drops_new_entries_and_takes_them_again_once_drained() {
        let feed = SignalFeed::with_capacity(2);
        feed.push((0..5).map(|i| (i, signals(1000 + i))));
        assert_eq!(feed.len(), 2);
        assert_eq!(class_of(feed.take(0)), Some(1000));
        assert_eq!(class_of(feed.take(1)), Some(1001));
        assert_eq!(class_of(feed.take(2)), None, "dropped: read from the store");
        feed.push((5..7).map(|i| (i, signals(1000 + i))));
        assert_eq!(class_of(feed.take(5)), Some(1005));
    }
}
