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

use crate::index::{Index, View};
use crate::index_keys;
use crate::store::{KnownUids, Snapshot, Store, StoreError};
use crate::uid_filter::UidFilter;

/// A uid's leaf index and content hash.
type Place = (u64, [u8; 32]);

/// The uids appended beyond the index.
pub struct RecentUids {
    index: Arc<Index>,
    store: Arc<Store>,
    /// Memory holds the uid of every leaf from here on.
    from: u64,
    by_uid: HashMap<Arc<str>, Place>,
    /// (leaf index, uid) in log order, to forget them as the index grows;
    /// the uid's bytes are shared with `by_uid`.
    order: VecDeque<(u64, Arc<str>)>,
}

impl RecentUids {
    /// Memory for the uids of a log of `size`. Nothing is read now: the
    /// first `lookup` (the sequencer's first batch, on its own thread)
    /// loads the uids from the index's `indexed` up to `size`, so a
    /// restart after a crash serves reads at once (loading 179k uids from
    /// a cold log took 1 s at 10M events). The sequencer asks for no
    /// lookup while the index is more than its `max_unindexed` behind
    /// (`behind`): memory then never holds more than that many.
    pub fn new(index: Arc<Index>, store: Arc<Store>, size: u64) -> Self {
        RecentUids {
            index,
            store,
            from: size,
            by_uid: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Leaves of a log of `size` the index does not cover yet, once it
    /// is open (this waits for that).
    pub fn behind(&self, size: u64) -> u64 {
        self.index.wait_open();
        size.saturating_sub(self.index.indexed())
    }

    /// Takes in the uids of leaves `from..self.from`, from the log.
    fn reload(&mut self, from: u64) -> Result<(), StoreError> {
        if from >= self.from {
            return Ok(());
        }
        let rows = self.store.snapshot()?.uid_rows(from..self.from)?;
        tracing::info!(
            from,
            to = self.from,
            "uids beyond the index loaded from the log"
        );
        for (i, content, uid) in rows.into_iter().rev() {
            let uid: Arc<str> = uid.into();
            self.by_uid.insert(uid.clone(), (i, content));
            self.order.push_front((i, uid));
        }
        self.from = from;
        Ok(())
    }

    /// Remembers that leaf `index` has `uid`, here and in the index's uid
    /// filter (before any later lookup: both are the sequencer's).
    pub fn add(&mut self, uid: &str, index: u64, content: [u8; 32]) {
        self.index.uid_filter.insert(index_keys::of_str(uid));
        let uid: Arc<str> = uid.into();
        self.by_uid.entry(uid.clone()).or_insert((index, content));
        self.order.push_back((index, uid));
    }

    /// Uids held in memory.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// A lookup over the whole log: a fresh index view, and memory for
    /// what lies beyond it (forgetting what the view now covers).
    pub fn lookup(&mut self) -> Result<Lookup<'_>, StoreError> {
        let view = self.index.view().map_err(index_err)?;
        let indexed = view.indexed().map_err(index_err)?;
        self.reload(indexed)?;
        while let Some((i, _)) = self.order.front() {
            if *i >= indexed {
                break;
            }
            let (i, uid) = self.order.pop_front().expect("front exists");
            if self.by_uid.get(&uid).is_some_and(|p| p.0 == i) {
                self.by_uid.remove(&uid);
            }
        }
        self.from = self.from.max(indexed);
        Ok(Lookup {
            // Newer than the view: it holds every leaf the view indexes.
            log: self.store.snapshot()?,
            view,
            recent: &self.by_uid,
            filter: &self.index.uid_filter,
        })
    }
}

/// The index's failures are not the log's: the sequencer must not reopen
/// the log for them.
fn index_err(e: crate::index::IndexError) -> StoreError {
    StoreError::Index(e.to_string())
}

/// The whole log's uids, for one batch.
pub struct Lookup<'a> {
    view: View,
    log: Snapshot,
    recent: &'a HashMap<Arc<str>, Place>,
    filter: &'a UidFilter,
}

impl KnownUids for Lookup<'_> {
    fn get(&self, uid: &str) -> Result<Option<Place>, StoreError> {
        if let Some(p) = self.recent.get(uid) {
            return Ok(Some(*p));
        }
        // A uid never seen needs no search of the index.
        let key = index_keys::of_str(uid);
        if !self.filter.may_hold(key) {
            return Ok(None);
        }
        self.view.uid(uid, key, &self.log).map_err(index_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{event, store_with};
    use crate::store::{Placed, TreeState};

    /// A log of `n` test events and an empty index of it.
    fn log_and_index(n: usize) -> (tempfile::TempDir, Arc<Store>, TreeState, Arc<Index>) {
        let dir = tempfile::tempdir().unwrap();
        let (store, s) = store_with(dir.path(), "db", n);
        let store = Arc::new(store);
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
            Arc::new(crate::index::Index::open(&dir.path().join("ix2"), &store).unwrap());
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
                recent.add(&event(i).facets.uid, at, event(i).facets.content);
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
