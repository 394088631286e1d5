//! Which `metadata.uid`s the log holds, for the sequencer's idempotent
//! appends: the index's uid table for the leaves it covers, and the uids
//! appended since, kept in memory.
//!
//! What must stay true: every uid in the log is found. The index view
//! covers the leaves below its `indexed`; the memory covers every leaf
//! from `from` on. Only the sequencer forgets, and only uids below the
//! view it is about to use; and if a view ever shows less than memory
//! covers (the index reopened after an I/O error and went back to its
//! last durable round), memory reloads the gap from the log's `uid_log`
//! first. So the two always meet.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::query::index::{Index, View};
use crate::query::uid_filter::UidFilter;
use crate::store::hash_cache::IndexMap;
use crate::store::index_keys;
use crate::store::{uid_hash, Claim, KnownUids, LogStore, Snapshot, StoreError};

/// A uid's leaf index and what the log keeps of its content.
type Place = (u64, Claim);

/// The uids appended beyond the index, by key (`index_keys::of_str`).
///
/// Why keys, not the uids: memory holds every uid the index lags behind,
/// up to `max_unindexed` (four million), and a map of `Arc<str>` took ~150
/// bytes a uid: ~60 MiB of RSS that grew with the lag between 1.5M and 4M
/// events of a fill (BENCHMARKS.md, "A Bloom filter of uids, and the
/// recent uids by key"). A key and a leaf index take ~40. A hit is checked
/// against the log's `uid_log` row, which also gives the content hash;
/// hits are retried appends, rare.
pub struct RecentUids {
    index: Arc<Index>,
    store: Arc<dyn LogStore>,
    /// Memory holds the uid of every leaf from here on.
    from: u64,
    /// Key → the first leaf in memory whose uid has that key.
    by_key: IndexMap<u64>,
    /// Uids appended while another leaf in memory held their key: another
    /// uid with the same key (~n²/2^65 of them), or the same uid appended
    /// without a lookup. By the uid's SHA-256 (`store::uid_hash`: the log
    /// keeps no uid in clear), to their first leaf.
    shared: HashMap<[u8; 32], u64>,
    /// (leaf index, key) in log order, to forget them as the index grows.
    order: VecDeque<(u64, u64)>,
}

impl RecentUids {
    /// Memory for the uids of a log of `size`. Nothing is read now: the
    /// first `lookup` (the sequencer's first batch, on its own thread)
    /// loads the uids from the index's `indexed` up to `size`, so a
    /// restart after a crash serves reads at once (loading 179k uids from
    /// a cold log took 1 s at 10M events). The sequencer asks for no
    /// lookup while the index is more than its `max_unindexed` behind
    /// (`behind`): memory then never holds more than that many.
    pub fn new(index: Arc<Index>, store: Arc<dyn LogStore>, size: u64) -> Self {
        RecentUids {
            index,
            store,
            from: size,
            by_key: IndexMap::default(),
            shared: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Leaves of a log of `size` the index does not cover yet, once it
    /// is open (this waits for that).
    pub fn behind(&self, size: u64) -> u64 {
        self.index.wait_open();
        size.saturating_sub(self.index.indexed())
    }

    /// Takes in the uids of leaves `from..self.from`, from the log: memory
    /// is read again from `from` on, in log order, so that each key keeps
    /// its first leaf.
    fn reload(&mut self, from: u64) -> Result<(), StoreError> {
        if from >= self.from {
            return Ok(());
        }
        let to = self.order.back().map_or(self.from, |&(i, _)| i + 1);
        let rows = self.store.snapshot()?.uid_rows(from..to)?;
        tracing::info!(from, to, "uids beyond the index loaded from the log");
        self.by_key.clear();
        self.shared.clear();
        self.order.clear();
        for (i, _, hash) in rows {
            self.remember(index_keys::of_hash(&hash), || hash, i);
        }
        self.from = from;
        Ok(())
    }

    /// Remembers that leaf `index` has `uid`, here and in the index's uid
    /// filter (before any later lookup: both are the sequencer's).
    pub fn add(&mut self, uid: &str, index: u64) {
        let key = index_keys::of_str(uid);
        self.index.uid_filter.insert(key);
        self.remember(key, || uid_hash(uid), index);
    }

    /// Remembers that leaf `index` has the uid whose key is `key` and
    /// whose hash `hash` gives.
    fn remember(&mut self, key: u64, hash: impl FnOnce() -> [u8; 32], index: u64) {
        if *self.by_key.entry(key).or_insert(index) != index {
            self.shared.entry(hash()).or_insert(index);
        }
        self.order.push_back((index, key));
    }

    /// Uids held in memory.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether memory holds no uid (as before the first `lookup` loads
    /// any).
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// A lookup over the whole log: a fresh index view, and memory for
    /// what lies beyond it (forgetting what the view now covers).
    pub fn lookup(&mut self) -> Result<Lookup<'_>, StoreError> {
        let view = self.index.view().map_err(index_err)?;
        let indexed = view.indexed().map_err(index_err)?;
        self.reload(indexed)?;
        while let Some(&(i, key)) = self.order.front() {
            if i >= indexed {
                break;
            }
            self.order.pop_front();
            if self.by_key.get(&key) == Some(&i) {
                self.by_key.remove(&key);
            }
        }
        if !self.shared.is_empty() {
            self.shared.retain(|_, i| *i >= indexed);
        }
        self.from = self.from.max(indexed);
        Ok(Lookup {
            // Newer than the view and than every leaf in memory: it holds
            // every leaf either names.
            log: self.store.snapshot()?,
            view,
            recent: self,
        })
    }
}

/// The index's failures are not the log's: the sequencer must not reopen
/// the log for them.
fn index_err(e: crate::query::index::IndexError) -> StoreError {
    StoreError::Index(e.to_string())
}

/// The whole log's uids, for one batch.
pub struct Lookup<'a> {
    view: View,
    log: Box<dyn Snapshot>,
    recent: &'a RecentUids,
}

impl Lookup<'_> {
    /// Where `uid`, whose key is `key`, was first logged, if it was.
    fn find(&self, uid: &str, key: u64) -> Result<Option<Place>, StoreError> {
        if let Some(&i) = self.recent.by_key.get(&key) {
            if let Some(place) = self.logged(i, uid)? {
                return Ok(Some(place));
            }
        }
        // A uid never seen needs no search of the index.
        let filter: &UidFilter = &self.recent.index.uid_filter;
        if filter.may_hold(key) {
            if let Some(place) = self.view.uid(uid, key, &self.log).map_err(index_err)? {
                return Ok(Some(place));
            }
        }
        if self.recent.shared.is_empty() {
            return Ok(None);
        }
        match self.recent.shared.get(&uid_hash(uid)) {
            Some(&i) => self.logged(i, uid),
            None => Ok(None),
        }
    }

    /// Leaf `i`'s place, if its uid is `uid`.
    fn logged(&self, i: u64, uid: &str) -> Result<Option<Place>, StoreError> {
        match self.log.uid_rows(i..i + 1)?.pop() {
            Some((_, claim, logged)) if logged == uid_hash(uid) => Ok(Some((i, claim))),
            Some(_) => Ok(None),
            None => Err(StoreError::Corrupt(format!(
                "no uid row for leaf {i} in memory"
            ))),
        }
    }
}

impl KnownUids for Lookup<'_> {
    fn get(&self, uid: &str) -> Result<Option<Place>, StoreError> {
        self.find(uid, index_keys::of_str(uid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{event, store_with};
    use crate::store::{Placed, TreeState};

    /// A log of `n` test events and an empty index of it.
    fn log_and_index(n: usize) -> (tempfile::TempDir, Arc<dyn LogStore>, TreeState, Arc<Index>) {
        let dir = tempfile::tempdir().unwrap();
        let (store, s) = store_with(dir.path(), "db", n);
        let index = Arc::new(Index::open(&dir.path().join("ix"), &store).unwrap());
        (dir, store, s, index)
    }

    #[test]
    fn a_uid_is_found_before_during_and_after_indexing() {
        let (dir, store, s, index) = log_and_index(10);
        index.index_up_to(&store, 4, false).unwrap();
        // As after a restart: leaves 4..10 only in the log, not the index.
        let mut recent = RecentUids::new(index.clone(), store.clone(), s.size);
        assert!(recent.is_empty(), "nothing read before the first lookup");
        drop(recent.lookup().unwrap());
        assert_eq!(recent.len(), 6);
        let retry = |recent: &mut RecentUids, i: usize| {
            let known = recent.lookup().unwrap();
            let (_, placed) = store.append(s, vec![event(i)], &known).unwrap();
            placed[0]
        };
        assert_eq!(
            retry(&mut recent, 2),
            Placed::Duplicate(2),
            "from the index"
        );
        assert_eq!(retry(&mut recent, 7), Placed::Duplicate(7), "from memory");
        index.index_up_to(&store, 10, false).unwrap();
        assert_eq!(
            retry(&mut recent, 7),
            Placed::Duplicate(7),
            "from the index"
        );
        assert!(recent.is_empty(), "memory forgot what the index covers");
        // An index that went back (reopened at its last durable round):
        // memory reloads what it had forgotten.
        recent.index =
            Arc::new(crate::query::index::Index::open(&dir.path().join("ix2"), &store).unwrap());
        assert_eq!(retry(&mut recent, 2), Placed::Duplicate(2), "reloaded");
        assert_eq!(recent.len(), 10);
        assert_eq!(retry(&mut recent, 11), Placed::New(10));
    }

    #[test]
    fn the_uid_filter_holds_the_index_the_log_beyond_it_and_each_append() {
        let (_dir, store, s, index) = log_and_index(50);
        index.index_up_to(&store, 20, false).unwrap();
        let mut recent = RecentUids::new(index.clone(), store.clone(), s.size);
        index.fill_uid_filter(&store).unwrap();
        let mut state = s;
        let mut retry = |recent: &mut RecentUids, i: usize| {
            let known = recent.lookup().unwrap();
            let (next, placed) = store.append(state, vec![event(i)], &known).unwrap();
            drop(known);
            state = next;
            if let Placed::New(at) = placed[0] {
                // As the sequencer does for what it appends.
                recent.add(&event(i).facets.uid, at);
            }
            placed[0]
        };
        assert_eq!(retry(&mut recent, 5), Placed::Duplicate(5), "indexed");
        assert_eq!(retry(&mut recent, 35), Placed::Duplicate(35), "in memory");
        assert_eq!(retry(&mut recent, 60), Placed::New(50), "never seen");
        // Now memory forgets 20..51: only the index can answer, and only
        // if the filter let the lookup through to it.
        index.index_up_to(&store, 51, false).unwrap();
        assert_eq!(retry(&mut recent, 35), Placed::Duplicate(35));
        assert_eq!(retry(&mut recent, 60), Placed::Duplicate(50));
        assert_eq!(recent.len(), 0);
        let filter = &index.uid_filter;
        assert!((0..50)
            .chain([60])
            .all(|i| filter.may_hold(index_keys::of_str(&format!("uid-{i}")))));
        assert!(!filter.may_hold(index_keys::of_str("uid-61")));
    }

    #[test]
    fn uids_sharing_a_key_are_told_apart_by_the_log() {
        let (_dir, store, _, index) = log_and_index(10);
        // Memory from leaf 0, the index empty.
        let mut recent = RecentUids::new(index.clone(), store.clone(), 0);
        // As if uid-3 and uid-5 had the same key.
        recent.remember(42, || uid_hash("uid-3"), 3);
        recent.remember(42, || uid_hash("uid-5"), 5);
        let known = recent.lookup().unwrap();
        let content = |i: u64| store.snapshot().unwrap().uid_rows(i..i + 1).unwrap()[0].1;
        assert_eq!(known.find("uid-3", 42).unwrap(), Some((3, content(3))));
        assert_eq!(known.find("uid-5", 42).unwrap(), Some((5, content(5))));
        assert_eq!(known.find("uid-7", 42).unwrap(), None, "not under this key");
        drop(known);
        // Once the index covers leaf 3, memory forgets it but keeps 5.
        index.index_up_to(&store, 4, false).unwrap();
        let known = recent.lookup().unwrap();
        assert_eq!(known.find("uid-5", 42).unwrap(), Some((5, content(5))));
        assert_eq!(known.recent.len(), 1);
    }

    #[test]
    fn far_behind_the_index_nothing_is_loaded_until_it_comes_within_reach() {
        let (_dir, store, s, index) = log_and_index(50);
        // As after a restore: the index starts from nothing.
        let mut recent = RecentUids::new(index.clone(), store.clone(), s.size);
        assert!(recent.is_empty());
        assert_eq!(
            recent.behind(s.size),
            50,
            "the sequencer asks for no lookup yet"
        );
        index.index_up_to(&store, 35, false).unwrap();
        assert_eq!(recent.behind(s.size), 15);
        let known = recent.lookup().unwrap();
        let (_, placed) = store.append(s, vec![event(40), event(3)], &known).unwrap();
        assert_eq!(placed, [Placed::Duplicate(40), Placed::Duplicate(3)]);
        assert_eq!(recent.len(), 15, "only the gap was loaded");
    }
}
