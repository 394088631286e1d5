//! The log's lookup indexes (leaf hash, metadata.uid, user, actor, source
//! IP, class, time), kept in a database of their own by a follower of the log rather
//! than in each append's transaction.
//!
//! Why: these rows are keyed by values spread all over their B-trees, and
//! in redb each lands on a page of its own that the commit must copy,
//! checksum and write: about 18 µs a row against ~1.5 µs for a row keyed
//! by leaf index (BENCHMARKS.md, "redb row cost by key shape"). Six of
//! them made the append transaction ~4x slower than its sequential rows.
//! The follower indexes everything the log appended since it last looked
//! in one transaction, so under load its batches grow and share pages, and
//! it works beside the sequencer instead of in front of every receipt.
//!
//! What must stay true:
//! - `meta.indexed` changes only in the transaction that writes the rows
//!   of every leaf below it, and no commit needs to be durable: after a
//!   crash the index resumes from the last state that reached the disk;
//! - readers wait until `indexed` covers the tree size they answer for
//!   (`wait_for`), so a query or a lookup by leaf hash never misses a
//!   leaf under the checkpoint it is answered against;
//! - the index is derived from the log: when it does not match the log's
//!   tree (`meta.root`), it is dropped and rebuilt from the log;
//! - a redaction removes the event's rows: the follower reads the log's
//!   `redactions` table and deletes what it had indexed for that event.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::store::engine::driver;
use crate::store::index_keys::{self, Keys};
pub use crate::store::IndexKey;
use crate::store::{uid_hash, Claim, IndexStore, IndexView, LogStore, Snapshot, StoreError};
use crate::sys::follow::{Follower, Follows, Role};
use sealog_verify::tree::{self, Hash};

/// Leaves indexed at most in one transaction.
const CHUNK: u64 = 524_288;

/// Leaves a round reads and holds in memory at once: rounds of `CHUNK`
/// read whole peaked at 1,247-1,261 MiB of RSS over 60 s of batches, in
/// parts at 1,100-1,104 (a 10M fill: 1,347 against 1,302).
/// The unit tests' logs are small: there a part is a few leaves, so that
/// their rounds span many parts (postings, redactions and roots across
/// parts).
#[cfg(not(test))]
const PART: u64 = 131_072;
#[cfg(test)]
const PART: u64 = 7;

/// How long the follower lets the log grow from the start of one round to
/// the next, unless a reader is waiting or a `CHUNK` of leaves is. A round
/// costs the pages it rewrites much more than its rows: the lookup keys
/// are scattered, so once the log has a few million leaves a round dirties
/// nearly every page of those tables whatever its size, and the bigger the
/// round, the less each leaf pays. Started back to back, rounds shrank to
/// what arrived during the last and took the cores from the appends: with
/// 1 s here, 100-event batches held 41,000-43,700 events/s over 60 s;
/// with 3 s, 43,100-47,700. With 10 s (and a
/// `CHUNK` that holds 10 s of them) the follower took ~25 % less CPU, its
/// rounds' bursts of writes delayed the log's commits less, and 60 s of
/// batches ran 4-6 % faster, p99 78 -> 54-59 ms, and peak RSS over them
/// rose 55 MiB (rounds read whole: ~210). Readers hurry the follower
/// (`wait_for`): queries made during those batches waited about as long
/// as with 3 s (p50 0.7-1.0 s). BENCHMARKS.md, "Index rounds: every 10 s,
/// up to 524,288 leaves, one table per key", has today's figures.
const PACE: Duration = Duration::from_millis(10000);

/// Why an index read was not answered.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The index has not reached the size the read needs: answering from
    /// it would miss events the log already holds.
    #[error("the index covers {indexed} leaves, not yet {want}; retry shortly")]
    Lagging {
        /// Leaves the index covers.
        indexed: u64,
        /// Leaves the read needs covered.
        want: u64,
    },
    /// The index database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading the log failed (not the index's own fault).
    #[error("reading the log: {0}")]
    Log(StoreError),
}

impl IndexError {
    /// Whether this is an I/O failure of the index database, after which
    /// it must be reopened.
    pub fn is_io(&self) -> bool {
        matches!(self, IndexError::Store(e) if e.is_io())
    }
}

/// An opened index and what it has indexed.
type Opened = (Arc<dyn IndexStore>, u64);

/// The index database and how far it has got.
pub struct Index {
    path: PathBuf,
    /// None until opened (`unopened`, `open_now`).
    db: std::sync::RwLock<Option<Arc<dyn IndexStore>>>,
    indexed: tokio::sync::watch::Sender<u64>,
    /// Signalled by a reader waiting for leaves not yet indexed.
    hurry: tokio::sync::Notify,
    /// Whether opening is over (`unopened`, `open_now`), for `wait_open`.
    opened: std::sync::Mutex<bool>,
    opened_cv: std::sync::Condvar,
    /// Every uid of the log, once the follower has filled it.
    pub uid_filter: crate::query::uid_filter::UidFilter,
}

impl Index {
    fn new(path: &Path, db: Option<Arc<dyn IndexStore>>, indexed: u64) -> Self {
        Index {
            path: path.to_path_buf(),
            opened: std::sync::Mutex::new(db.is_some()),
            db: std::sync::RwLock::new(db),
            indexed: tokio::sync::watch::channel(indexed).0,
            hurry: tokio::sync::Notify::new(),
            opened_cv: std::sync::Condvar::new(),
            uid_filter: Default::default(),
        }
    }

    /// Opens the index at `path` for the log in `store`, dropping it when
    /// it is not an index of that log's tree.
    pub fn open(path: &Path, store: &dyn LogStore) -> Result<Self, IndexError> {
        let (db, indexed) = Self::open_db(path, store)?;
        Ok(Self::new(path, Some(db), indexed))
    }

    /// The index at `path`, to be opened by `open_now` (the follower's
    /// first step). Opening after a crash can take a second at 10M events
    /// (redb recovering the file); meanwhile the log serves what needs no
    /// index, readers of the index wait for it like for any lagging leaf
    /// (`wait_for`: it covers none yet), and appends wait (`wait_open`).
    pub fn unopened(path: &Path) -> Self {
        Self::new(path, None, 0)
    }

    /// Opens an `unopened` index as `open` does.
    pub fn open_now(&self, store: &dyn LogStore) -> Result<(), IndexError> {
        let (db, indexed) = Self::open_db(&self.path, store)?;
        *self.db.write().expect("not poisoned") = Some(db);
        self.indexed.send_replace(indexed);
        self.end_opening();
        Ok(())
    }

    /// The index at `path` and what it has indexed, rebuilt from
    /// nothing when it is not an index of `store`'s tree.
    fn open_db(path: &Path, store: &dyn LogStore) -> Result<Opened, IndexError> {
        if path.exists() {
            match Self::open_matching(path, store) {
                Ok(Some(opened)) => return Ok(opened),
                Ok(None) => {
                    tracing::warn!(path = %path.display(), "the index is not of this log's tree, or of an older layout; rebuilding it")
                }
                // The log's failure says nothing about the index: keep it.
                Err(e @ IndexError::Log(_)) => return Err(e),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "the index is unreadable; rebuilding it")
                }
            }
            std::fs::remove_file(path)
                .map_err(|e| StoreError::Corrupt(format!("removing {}: {e}", path.display())))?;
        }
        // It holds event fields: private (0600) from its creation, not
        // left to the driver and the umask.
        crate::sys::datadir::create_secret(path)
            .map_err(|e| StoreError::Corrupt(format!("creating {}: {e}", path.display())))?;
        Ok((driver().create_index(path)?.into(), 0))
    }

    /// The index at `path` and what it has indexed, if its (indexed,
    /// root) is a state of `store`'s tree.
    fn open_matching(path: &Path, store: &dyn LogStore) -> Result<Option<Opened>, IndexError> {
        let Some(db) = driver().open_index(path)? else {
            return Ok(None);
        };
        let (indexed, root) = db.progress()?;
        let snap = store.snapshot().map_err(IndexError::Log)?;
        let size = store.tree_state().map_err(IndexError::Log)?.size;
        if indexed > size {
            return Ok(None);
        }
        if indexed > 0 {
            let want = tree::root(indexed, &snap).map_err(|e| {
                IndexError::Log(StoreError::Corrupt(format!("root at {indexed}: {e}")))
            })?;
            if root.as_deref() != Some(&want.0[..]) {
                return Ok(None);
            }
        }
        Ok(Some((db.into(), indexed)))
    }

    /// Wakes `wait_open`: the index is open, or will not be.
    fn end_opening(&self) {
        *self.opened.lock().expect("not poisoned") = true;
        self.opened_cv.notify_all();
    }

    /// Blocks until opening is over.
    pub fn wait_open(&self) {
        let mut opened = self.opened.lock().expect("not poisoned");
        while !*opened {
            opened = self.opened_cv.wait(opened).expect("not poisoned");
        }
    }

    /// Leaves below this are indexed.
    pub fn indexed(&self) -> u64 {
        *self.indexed.borrow()
    }

    /// Puts every uid of the log into `uid_filter`, then marks it ready:
    /// the uids this index holds, then those of the log beyond what it
    /// covers (read from a log snapshot taken after the index's, so it
    /// holds every leaf the view indexes). The sequencer adds the uids it
    /// appends meanwhile itself. Returns the uids read.
    pub fn fill_uid_filter(&self, store: &dyn LogStore) -> Result<u64, IndexError> {
        let view = self.view()?;
        let indexed = view.indexed()?;
        let mut n = 0;
        view.inner.each_uid_key(&mut |key| {
            self.uid_filter.insert(key);
            n += 1;
        })?;
        let log = store.snapshot().map_err(IndexError::Log)?;
        let mut from = indexed;
        loop {
            let rows = log.uid_rows(from..from + PART).map_err(IndexError::Log)?;
            if rows.is_empty() {
                break;
            }
            for (_, _, uid) in &rows {
                self.uid_filter.insert(index_keys::of_hash(uid));
            }
            n += rows.len() as u64;
            from += PART;
        }
        self.uid_filter.set_ready();
        Ok(n)
    }

    /// Wakes the follower from its pause between rounds: for a round now,
    /// or, once the sequencer has stopped, to see that and return.
    pub fn hurry(&self) {
        self.hurry.notify_one();
    }

    /// Waits (at most `timeout`) until the leaves below `size` are indexed.
    pub async fn wait_for(&self, size: u64, timeout: Duration) -> Result<(), IndexError> {
        if self.indexed() >= size {
            return Ok(());
        }
        self.hurry();
        let mut rx = self.indexed.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|&n| n >= size)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(IndexError::Lagging {
                indexed: self.indexed(),
                want: size,
            }),
        }
    }

    /// The index's storage, once open.
    fn db(&self) -> Result<Arc<dyn IndexStore>, IndexError> {
        let guard = self.db.read().expect("not poisoned");
        Ok(guard.clone().ok_or(StoreError::Closed)?)
    }

    /// Closes and opens the database again, as the driver wants after an
    /// I/O error (disk full), and goes on from what it holds: the last
    /// durable round, which may be behind the rounds since (they are
    /// redone, and the sequencer reloads the uids it had forgotten:
    /// `log::uids`).
    fn reopen(&self) -> Result<(), IndexError> {
        let db = self.db()?;
        db.reopen()?;
        self.indexed.send_replace(db.progress()?.0);
        Ok(())
    }

    /// A consistent view of the index.
    pub fn view(&self) -> Result<View, IndexError> {
        Ok(View {
            inner: self.db()?.view()?,
        })
    }

    /// Indexes the log's leaves from `indexed` up to at most `upto` (at
    /// most `CHUNK` of them) in one transaction, durable if `durable`, a
    /// `PART` of them at a time.
    /// Returns the new `indexed`.
    pub fn index_up_to(
        &self,
        store: &dyn LogStore,
        upto: u64,
        durable: bool,
    ) -> Result<u64, IndexError> {
        let from = self.indexed();
        let end = upto.min(from + CHUNK);
        if end <= from {
            return Ok(from);
        }
        let db = self.db()?;
        let mut round = db.begin_round(durable)?;
        let mut start = from;
        while start < end {
            // One commit for the whole round (its pages are what it
            // costs), read and inserted a `PART` at a time (its rows are
            // what it holds in memory).
            let range = start..end.min(start + PART);
            let part = Part::read_or_skip(store, range.clone()).map_err(IndexError::Log)?;
            // Lookups take the lowest matching index: a leaf hash or uid
            // that ever repeated keeps its first claim.
            round.add_leaves(part.leaves)?;
            round.add_uids(part.uids)?;
            round.add_events(&part.keys)?;
            // A redaction's record comes after the leaf it redacts, so
            // that leaf's keys are in the index by now.
            for redacted in part.redacted {
                round.remove_event(redacted)?;
            }
            start = range.end;
        }
        let root = tree::root(end, &store.snapshot().map_err(IndexError::Log)?)
            .map_err(|e| StoreError::Corrupt(format!("root at {end}: {e}")))?;
        round.finish(end, root)?;
        self.indexed.send_replace(end);
        Ok(end)
    }
}

/// Follows the log's signed size for ever, indexing what it appends; call
/// on a thread of its own. Returns when the size stops being published
/// (the sequencer stopped); every round it commits is durable.
///
/// A `Follower` (`sys::follow`) resumes from what the index holds and
/// hands out a `CHUNK` of leaves a round; a round that fails (the index
/// database, or reading the log) is its transient failure, counted and
/// retried from the same leaf after its backoff. A leaf whose rows cannot
/// be decoded is not a failure: the round indexes it by leaf hash only
/// (`Part::read_or_skip`).
pub fn follow(
    index: Arc<Index>,
    store: Arc<dyn LogStore>,
    size: tokio::sync::watch::Receiver<u64>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
    let started = Instant::now();
    while !*index.opened.lock().expect("not poisoned") {
        match index.open_now(&store) {
            Ok(()) => tracing::info!(
                indexed = index.indexed(),
                ms = started.elapsed().as_millis() as u64,
                "index opened"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "index: not opened; retrying");
                std::thread::sleep(Duration::from_secs(1));
                if size.has_changed().is_err() {
                    index.end_opening();
                    return;
                }
            }
        }
    }
    let filling = Instant::now();
    match index.fill_uid_filter(&store) {
        Ok(n) => tracing::info!(
            uids = n,
            ms = filling.elapsed().as_millis() as u64,
            "uid filter filled"
        ),
        // Appends then ask the index for every uid, as without a filter.
        Err(e) => tracing::warn!(error = %e, "uid filter not filled"),
    }
    let follows = Follows::Leaves { chunk: CHUNK };
    let mut follower = Follower::new(Role::Index, follows, index.indexed(), size);
    let mut logged = Instant::now();
    while let Some(range) = rt.block_on(follower.next()) {
        let round = Instant::now();
        // Every round durable, with quick repair: a crash then reopens
        // the index in milliseconds. After non-durable rounds redb had
        // to walk the whole file (~1 s at 10M events); durable rounds
        // at this pace cost no measurable throughput (BENCHMARKS.md,
        // "Quick repair on every commit").
        match index.index_up_to(&store, range.end, true) {
            Ok(n) => {
                follower.advance_to(n);
                if follower.lag() > CHUNK && logged.elapsed() >= Duration::from_secs(5) {
                    tracing::info!(
                        indexed = n,
                        size = follower.published(),
                        "index catching up"
                    );
                    logged = Instant::now();
                }
            }
            Err(e) => {
                let wait = follower.failed();
                tracing::warn!(error = %e, retry_ms = wait.as_millis() as u64, "index: not written; retrying");
                if e.is_io() {
                    match index.reopen() {
                        Ok(()) => tracing::info!(indexed = index.indexed(), "index reopened"),
                        Err(e) => tracing::warn!(error = %e, "index: not reopened"),
                    }
                    follower.resume_at(index.indexed());
                }
            }
        }
        if follower.stopped() {
            // The sequencer stopped: what is done is durable, and the
            // next start goes on (a rebuild must not hold up shutdown).
            return;
        }
        let rest = rest_after(round.elapsed(), follower.lag());
        if !rest.is_zero() {
            rt.block_on(async { tokio::time::timeout(rest, index.hurry.notified()).await })
                .ok();
        }
    }
}

/// How long the follower rests after a round that took `took`, with
/// `waiting` leaves not yet indexed: until `PACE` has passed since the
/// round began, unless a whole chunk already waits.
fn rest_after(took: Duration, waiting: u64) -> Duration {
    if waiting >= CHUNK {
        return Duration::ZERO;
    }
    PACE.saturating_sub(took)
}

/// What a part of a round indexes, read from one snapshot of the log.
#[derive(Default)]
struct Part {
    /// (leaf hash key, leaf index).
    leaves: Vec<(u64, u64)>,
    /// (uid key, leaf index).
    uids: Vec<(u64, u64)>,
    /// The keys of each unredacted leaf, in leaf order.
    keys: Vec<(u64, Keys)>,
    /// Leaves whose redaction record lies in the part.
    redacted: Vec<u64>,
}

impl Part {
    /// `read`, except that a leaf whose rows cannot be decoded (damage, not
    /// an I/O failure, which is the caller's to retry) is indexed by its
    /// leaf hash only, logged and counted: retrying could never succeed,
    /// and an index that stops holds up every query and, past
    /// `max_unindexed`, the log's appends.
    fn read_or_skip(store: &dyn LogStore, range: std::ops::Range<u64>) -> Result<Self, StoreError> {
        match Self::read(store, range.clone()) {
            Err(e) if !e.is_io() => {
                tracing::warn!(error = %e, from = range.start, to = range.end, "index: rows unreadable; reading leaf by leaf");
            }
            r => return r,
        }
        let mut part = Part::default();
        for i in range {
            match Self::read(store, i..i + 1) {
                Ok(p) => part.extend(p),
                Err(e) if !e.is_io() => {
                    tracing::error!(error = %e, leaf = i, "index: leaf skipped (its rows are unreadable); it is found by leaf hash only");
                    crate::sys::metrics::METRICS
                        .index_skipped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let c = store.snapshot()?.commitments(i, 1)?[0];
                    part.leaves
                        .push((index_keys::of_leaf(&tree::leaf_hash(&c.0)), i));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(part)
    }

    fn extend(&mut self, p: Part) {
        self.leaves.extend(p.leaves);
        self.uids.extend(p.uids);
        self.keys.extend(p.keys);
        self.redacted.extend(p.redacted);
    }

    fn read(store: &dyn LogStore, range: std::ops::Range<u64>) -> Result<Self, StoreError> {
        let snap = store.snapshot()?;
        let (from, end) = (range.start, range.end);
        let leaves = range
            .clone()
            .zip(snap.commitments(from, end - from)?)
            .map(|(i, c)| (index_keys::of_leaf(&tree::leaf_hash(&c.0)), i))
            .collect();
        let uids = (snap.uid_rows(range.clone())?.into_iter())
            .map(|(i, _, uid)| (index_keys::of_hash(&uid), i))
            .collect();
        let keys = snap.facets_in(range.clone(), |f| Keys::of(&f))?;
        let redacted = snap.redactions(range)?.into_iter().map(|r| r.1).collect();
        Ok(Part {
            leaves,
            uids,
            keys,
            redacted,
        })
    }
}

type Scan<'a> = Box<dyn Iterator<Item = Result<(u64, u64), IndexError>> + 'a>;

/// A read transaction over the index.
pub struct View {
    inner: Box<dyn IndexView>,
}

impl View {
    /// Leaves below this are in this view.
    pub fn indexed(&self) -> Result<u64, IndexError> {
        Ok(self.inner.indexed()?)
    }

    /// The (leaf index, what the log keeps of its content) of the event
    /// with `metadata.uid` =
    /// `uid`, whose key is `key` (`index_keys::of_str`, which the caller
    /// has already computed for the uid filter), if indexed; `log` is a
    /// snapshot of the log at least as new as this view, to check the
    /// candidates against.
    pub fn uid(
        &self,
        uid: &str,
        key: u64,
        log: &dyn Snapshot,
    ) -> Result<Option<(u64, Claim)>, IndexError> {
        let hash = uid_hash(uid);
        for i in self.inner.uid_candidates(key)? {
            let row = log.uid_rows(i..i + 1).map_err(IndexError::Log)?;
            match row.first() {
                Some((_, claim, logged)) if *logged == hash => return Ok(Some((i, *claim))),
                Some(_) => {}
                None => return Err(StoreError::Corrupt(format!("indexed uid row {i}")).into()),
            }
        }
        Ok(None)
    }

    /// The first index of the leaf with hash `leaf`, if indexed (checked
    /// against `log`, as for `uid`).
    pub fn leaf_index(&self, leaf: Hash, log: &dyn Snapshot) -> Result<Option<u64>, IndexError> {
        for i in self.inner.leaf_candidates(index_keys::of_leaf(&leaf))? {
            let c = log.commitments(i, 1).map_err(IndexError::Log)?[0];
            if tree::leaf_hash(&c.0) == leaf {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// Leaf indexes under `key`, in (key, index) order or its reverse,
    /// starting after `after` (the last (time, index) or index seen). Each
    /// item is (time, index) for `Time`, (0, index) otherwise.
    pub fn scan(
        &self,
        key: &IndexKey,
        newest_first: bool,
        after: Option<(u64, u64)>,
    ) -> Result<Scan<'_>, IndexError> {
        let it = self.inner.scan(key, newest_first, after)?;
        Ok(Box::new(it.map(|r| r.map_err(IndexError::from))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Facets;
    use crate::store::conformance::{event, redact, store_with};
    use crate::store::{NoKnownUids, Write};

    /// `View::uid` for a uid whose key the test does not have at hand.
    fn uid_in(view: &View, uid: &str, log: &dyn Snapshot) -> Option<(u64, Claim)> {
        view.uid(uid, index_keys::of_str(uid), log).unwrap()
    }

    fn scan(view: &View, k: IndexKey, newest: bool, after: Option<(u64, u64)>) -> Vec<u64> {
        view.scan(&k, newest, after)
            .unwrap()
            .map(|r| r.unwrap().1)
            .collect()
    }

    fn catch_up(index: &Index, store: &dyn LogStore) {
        let size = store.tree_state().unwrap().size;
        while index.indexed() < size {
            index.index_up_to(store, size, false).unwrap();
        }
    }

    #[test]
    fn follows_the_log_and_pages_in_both_orders() {
        let dir = tempfile::tempdir().unwrap();
        let (store, s) = store_with(dir.path(), "db", 20);
        let index = Index::open(&dir.path().join("index"), &store).unwrap();
        assert_eq!(index.indexed(), 0);
        assert_eq!(index.index_up_to(&store, 12, false).unwrap(), 12);
        let view = index.view().unwrap();
        assert_eq!(
            scan(&view, IndexKey::User("user1".into()), false, None),
            [1, 4, 7, 10]
        );
        drop(view);
        store
            .append(s, (20..30).map(event).collect(), &NoKnownUids)
            .unwrap();
        catch_up(&index, &store);
        assert_eq!(index.indexed(), 30);
        let view = index.view().unwrap();
        let all: Vec<u64> = (0..30).filter(|i| i % 3 == 1).collect();
        assert_eq!(
            scan(&view, IndexKey::User("user1".into()), false, None),
            all
        );
        assert_eq!(
            scan(&view, IndexKey::User("user1".into()), false, Some((0, 10))),
            [13, 16, 19, 22, 25, 28]
        );
        assert_eq!(
            scan(&view, IndexKey::User("user1".into()), true, Some((0, 10))),
            [7, 4, 1]
        );
        let t = IndexKey::Time {
            from: 1005,
            to: 1009,
        };
        assert_eq!(scan(&view, t.clone(), false, None), [5, 6, 7, 8, 9]);
        assert_eq!(scan(&view, t, true, Some((1008, 8))), [7, 6, 5]);
        assert_eq!(scan(&view, IndexKey::Class(3002), true, None).len(), 30);
        assert!(scan(&view, IndexKey::Class(3001), true, None).is_empty());
        assert_eq!(scan(&view, IndexKey::All, true, Some((0, 3))), [2, 1, 0]);
        let snap = store.snapshot().unwrap();
        let leaf = tree::leaf_hash(&event(0).commitment.0);
        assert_eq!(view.leaf_index(leaf, &snap).unwrap(), None, "another salt");
        let c = snap.commitments(17, 1).unwrap()[0];
        assert_eq!(
            view.leaf_index(tree::leaf_hash(&c.0), &snap).unwrap(),
            Some(17)
        );
    }

    #[test]
    fn a_uid_logged_twice_keeps_its_first_index() {
        let dir = tempfile::tempdir().unwrap();
        let (store, s) = store_with(dir.path(), "db", 2);
        // Without a uid lookup the store cannot refuse the second copy.
        store.append(s, vec![event(1)], &NoKnownUids).unwrap();
        let index = Index::open(&dir.path().join("index"), &store).unwrap();
        index.index_up_to(&store, 2, false).unwrap();
        index.index_up_to(&store, 3, false).unwrap();
        let (view, snap) = (index.view().unwrap(), store.snapshot().unwrap());
        assert_eq!(uid_in(&view, "uid-1", &snap).map(|p| p.0), Some(1));
        assert_eq!(uid_in(&view, "uid-0", &snap).map(|p| p.0), Some(0));
        assert_eq!(uid_in(&view, "uid-9", &snap), None);
    }

    #[test]
    fn keys_shared_by_other_values_are_told_apart_by_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with(dir.path(), "db", 20);
        let index = Index::open(&dir.path().join("index"), &store).unwrap();
        catch_up(&index, &store);
        let snap = store.snapshot().unwrap();
        let leaf17 = tree::leaf_hash(&snap.commitments(17, 1).unwrap()[0].0);
        // As if another leaf's hash and another uid had the same 8-byte
        // prefix as leaf 17's and uid-12's, at lower indexes.
        let db = index.db().unwrap();
        let (indexed, _) = db.progress().unwrap();
        let mut round = db.begin_round(false).unwrap();
        round
            .add_leaves(vec![(index_keys::of_leaf(&leaf17), 3)])
            .unwrap();
        round
            .add_uids(vec![
                (index_keys::of_str("uid-12"), 4),
                (index_keys::of_str("uid-99"), 5),
            ])
            .unwrap();
        round
            .finish(indexed, tree::root(indexed, &snap).unwrap())
            .unwrap();
        let view = index.view().unwrap();
        assert_eq!(view.leaf_index(leaf17, &snap).unwrap(), Some(17));
        let (i, content) = uid_in(&view, "uid-12", &snap).unwrap();
        assert_eq!((i, content), (12, snap.uid_rows(12..13).unwrap()[0].1));
        assert_eq!(uid_in(&view, "uid-99", &snap), None, "leaf 5 is uid-5");
    }

    #[test]
    fn a_redaction_removes_the_events_rows() {
        let dir = tempfile::tempdir().unwrap();
        let (store, s) = store_with(dir.path(), "db", 6);
        let index = Index::open(&dir.path().join("index"), &store).unwrap();
        catch_up(&index, &store);
        let user0 = || {
            scan(
                &index.view().unwrap(),
                IndexKey::User("user0".into()),
                false,
                None,
            )
        };
        assert_eq!(user0(), [0, 3]);
        redact(&*store, s, 3, 100);
        catch_up(&index, &store);
        assert_eq!(user0(), [0], "3 is gone from the index");
        let view = index.view().unwrap();
        assert!(!scan(&view, IndexKey::All, false, None).contains(&3));
        let snap = store.snapshot().unwrap();
        let c = snap.commitments(3, 1).unwrap()[0];
        assert_eq!(
            view.leaf_index(tree::leaf_hash(&c.0), &snap).unwrap(),
            Some(3),
            "its leaf stays in the tree, and provable by its hash"
        );
    }

    #[test]
    fn posting_blocks_page_and_redact_as_rows_did() {
        let dir = tempfile::tempdir().unwrap();
        let (store, s) = store_with(dir.path(), "db", 600);
        let index = Index::open(&dir.path().join("index"), &store).unwrap();
        // Two rounds; class 3002 (every event) then fills blocks of
        // 256, 44, 256 and 44 leaves, user1 one block a round.
        index.index_up_to(&store, 300, false).unwrap();
        index.index_up_to(&store, 600, false).unwrap();
        // Leaves 0, 256 and 299 start or end a block, 100 lies inside one.
        let mut state = s;
        for (n, leaf) in [0u64, 100, 256, 299, 301].into_iter().enumerate() {
            let record = event(1000 + n);
            let redact = vec![Write::Redact {
                index: leaf,
                record,
            }];
            state = store.write(state, redact, &NoKnownUids).unwrap().0;
        }
        catch_up(&index, &store);
        // What rows would have answered: the log's own facets (a redacted
        // leaf has none).
        let (view, snap) = (index.view().unwrap(), store.snapshot().unwrap());
        let facets: Vec<_> = (0..state.size).map(|i| snap.facets(i).unwrap()).collect();
        assert_eq!(facets.iter().filter(|f| f.is_none()).count(), 5);
        let holding = |f: &dyn Fn(&Facets) -> bool| -> Vec<u64> {
            (0..state.size)
                .filter(|&i| facets[i as usize].as_ref().is_some_and(f))
                .collect()
        };
        for (key, all) in [
            (IndexKey::Class(3002), holding(&|f| f.class_uid == 3002)),
            (
                IndexKey::User("user1".into()),
                holding(&|f| f.users == ["user1"]),
            ),
        ] {
            for after in [
                None,
                Some(0),
                Some(1),
                Some(255),
                Some(256),
                Some(257),
                Some(300),
                Some(604),
            ] {
                let newer: Vec<u64> = all
                    .iter()
                    .copied()
                    .filter(|i| after.is_none_or(|a| *i > a))
                    .collect();
                let older: Vec<u64> = all
                    .iter()
                    .rev()
                    .copied()
                    .filter(|i| after.is_none_or(|a| *i < a))
                    .collect();
                let a = after.map(|a| (0, a));
                assert_eq!(
                    scan(&view, key.clone(), false, a),
                    newer,
                    "{key:?} after {after:?}"
                );
                assert_eq!(
                    scan(&view, key.clone(), true, a),
                    older,
                    "{key:?} before {after:?}"
                );
            }
        }
    }

    #[test]
    fn rounds_start_a_pace_apart_unless_a_chunk_waits() {
        let s = Duration::from_secs;
        assert_eq!(rest_after(s(1), 10), PACE - s(1));
        assert_eq!(rest_after(Duration::ZERO, CHUNK - 1), PACE);
        assert_eq!(rest_after(PACE + s(1), 10), Duration::ZERO, "a long round");
        assert_eq!(
            rest_after(Duration::ZERO, CHUNK),
            Duration::ZERO,
            "a chunk waits"
        );
    }

    #[test]
    fn an_unopened_index_covers_nothing_until_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let (store, _) = store_with(dir.path(), "db", 8);
        {
            let index = Index::open(&path, &store).unwrap();
            catch_up(&index, &store);
        }
        let index = Arc::new(Index::unopened(&path));
        assert_eq!(index.indexed(), 0);
        assert!(index.view().is_err(), "no database yet");
        let waiter = {
            let index = index.clone();
            std::thread::spawn(move || index.wait_open())
        };
        index.open_now(&store).unwrap();
        waiter.join().unwrap();
        assert_eq!(index.indexed(), 8, "what it held");
        assert_eq!(index.view().unwrap().indexed().unwrap(), 8);
    }

    #[test]
    fn an_index_of_another_tree_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        {
            let (other, _) = store_with(dir.path(), "other", 5);
            let index = Index::open(&path, &other).unwrap();
            catch_up(&index, &other);
            assert_eq!(index.indexed(), 5);
        }
        let (store, _) = store_with(dir.path(), "db", 8);
        let index = Index::open(&path, &store).unwrap();
        assert_eq!(index.indexed(), 0, "same size range, other roots: dropped");
        catch_up(&index, &store);
        drop(index);
        let index = Index::open(&path, &store).unwrap();
        assert_eq!(index.indexed(), 8, "its own index is kept");
        drop(index);
        crate::store::redb::index::forget_format(&path);
        let index = Index::open(&path, &store).unwrap();
        assert_eq!(index.indexed(), 0, "an index of the first layout: dropped");
    }
}
