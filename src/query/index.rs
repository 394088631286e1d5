//! The log's lookup indexes (leaf hash, metadata.uid, user, actor, source
//! IP, class, time), kept in a database of their own by a follower of the log rather
//! than in each append's transaction.
//!
//! Why: these rows are keyed by values spread all over their B-trees, and
//! in redb each lands on a page of its own that the commit must copy,
//! checksum and write: about 18 µs a row against ~1.5 µs for a row keyed
//! by leaf index (BENCHMARKS.md, `cargo bench --bench rowcost`). Six of
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

use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{
    Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, Table, TableDefinition,
    WriteTransaction,
};

use crate::query::index_keys::{self, Keys};
use crate::query::postings;
use crate::store::{be_u64, lazy, open_retrying, uid_hash, Claim, Snapshot, Store, StoreError};
use crate::sys::follow::{Follower, Follows, Role};
use sealog_verify::tree::{self, Hash};

// The lookup tables are keyed by (the first 8 bytes of a SHA-256 of the
// looked-up value, leaf index), not by the value: a fixed 16-byte key packs
// ~200 rows in a page where a 32-byte hash or a 36-byte uid with its value
// packed ~60, and each scattered insert dirties a page. Two values may
// share a prefix, so every lookup checks its candidates against the log
// (`View::leaf_index`, `View::uid`, and queries re-check each event's
// facets).

/// (leaf hash prefix, leaf index).
const LEAVES: TableDefinition<(u64, u64), ()> = TableDefinition::new("leaves");
/// (key of metadata.uid, leaf index).
const UIDS: TableDefinition<(u64, u64), ()> = TableDefinition::new("uids");
/// leaf index → the keys it was indexed under (`Keys`), to remove them again.
const KEYS: TableDefinition<u64, &[u8]> = TableDefinition::new("keys");
/// (key of user.uid or user.name, first leaf index) → a posting block of
/// the key's leaves (`postings`); the same for the actor's user,
/// src_endpoint.ip and class_uid.
const BY_USER: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("by_user");
const BY_ACTOR: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("by_actor");
const BY_IP: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("by_ip");
const BY_CLASS: TableDefinition<(u32, u64), &[u8]> = TableDefinition::new("by_class");
/// (event time, leaf index).
const BY_TIME: TableDefinition<(u64, u64), ()> = TableDefinition::new("by_time");
/// "indexed", "root", "format".
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The layout above; an index of another layout is rebuilt (format 2
/// had a row per leaf where `by_user`, `by_actor`, `by_ip` and `by_class`
/// now have posting blocks).
const FORMAT: u64 = 3;

/// redb's page cache for the index: full by ~1M events, so that memory
/// stays nearly flat beyond (512 MiB took RSS from 1.26 GiB at 1M to 1.93
/// at 10M; proofs at 10M ran as fast at 128, BENCHMARKS.md session 5).
const CACHE_BYTES: usize = 128 << 20;

/// Leaves indexed at most in one transaction.
const CHUNK: u64 = 524_288;

/// Leaves a round reads and holds in memory at once: rounds of `CHUNK`
/// read whole peaked at 1,247-1,261 MiB of RSS over 60 s of batches, in
/// parts at 1,100-1,104 (a 10M fill: 1,347 against 1,302; session 12).
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
/// with 3 s, 43,100-47,700 (BENCHMARKS.md, session 7). With 10 s (and a
/// `CHUNK` that holds 10 s of them) the follower took ~25 % less CPU, its
/// rounds' bursts of writes delayed the log's commits less, and 60 s of
/// batches ran 4-6 % faster, p99 78 -> 54-59 ms, and peak RSS over them
/// rose 55 MiB (rounds read whole: ~210; session 12). Readers hurry the follower (`wait_for`): queries made
/// during those batches waited about as long as with 3 s (p50 0.7-1.0 s).
const PACE: Duration = Duration::from_millis(10000);

/// Which index a query walks.
#[derive(Clone, Debug, PartialEq)]
pub enum IndexKey {
    User(String),
    Actor(String),
    Ip(String),
    Class(u32),
    /// Every event with time in the range, in time order.
    Time {
        from: u64,
        to: u64,
    },
    /// Every unredacted event, in index order.
    All,
}

/// Why an index read was not answered.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("the index covers {indexed} leaves, not yet {want}; retry shortly")]
    Lagging { indexed: u64, want: u64 },
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

impl From<redb::Error> for IndexError {
    fn from(e: redb::Error) -> Self {
        IndexError::Store(StoreError::Redb(e))
    }
}

macro_rules! redb_into {
    ($($t:ty),*) => {$(
        impl From<$t> for IndexError {
            fn from(e: $t) -> Self { IndexError::Store(StoreError::Redb(e.into())) }
        }
    )*};
}
redb_into!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// The index database and how far it has got.
pub struct Index {
    path: PathBuf,
    /// None only while `reopen` swaps it.
    db: std::sync::RwLock<Option<Database>>,
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
    fn new(path: &Path, db: Option<Database>, indexed: u64) -> Self {
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
    pub fn open(path: &Path, store: &Store) -> Result<Self, IndexError> {
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
    pub fn open_now(&self, store: &Store) -> Result<(), IndexError> {
        let (db, indexed) = Self::open_db(&self.path, store)?;
        *self.db.write().expect("not poisoned") = Some(db);
        self.indexed.send_replace(indexed);
        self.end_opening();
        Ok(())
    }

    /// The database at `path` and what it has indexed, rebuilt from
    /// nothing when it is not an index of `store`'s tree.
    fn open_db(path: &Path, store: &Store) -> Result<(Database, u64), IndexError> {
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
        // left to redb and the umask.
        crate::sys::datadir::create_secret(path)
            .map_err(|e| StoreError::Corrupt(format!("creating {}: {e}", path.display())))?;
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)?;
        let tx = db.begin_write()?;
        Tables::open(&tx)?
            .meta
            .insert("format", FORMAT.to_be_bytes().as_slice())?;
        tx.commit()?;
        Ok((db, 0))
    }

    /// The database at `path` and what it has indexed, if its (indexed,
    /// root) is a state of `store`'s tree.
    fn open_matching(path: &Path, store: &Store) -> Result<Option<(Database, u64)>, IndexError> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)?;
        if stored_format(&db)? != FORMAT {
            return Ok(None);
        }
        let (indexed, root) = stored_progress(&db)?;
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
        Ok(Some((db, indexed)))
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
    pub fn fill_uid_filter(&self, store: &Store) -> Result<u64, IndexError> {
        let view = self.view()?;
        let indexed = view.indexed()?;
        let mut n = 0;
        for row in lazy(&view.uids, &view.tx, UIDS)?.iter()? {
            self.uid_filter.insert(row?.0.value().0);
            n += 1;
        }
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

    fn begin_read(&self) -> Result<redb::ReadTransaction, IndexError> {
        let guard = self.db.read().expect("not poisoned");
        Ok(guard.as_ref().ok_or(StoreError::Closed)?.begin_read()?)
    }

    fn begin_write(&self) -> Result<WriteTransaction, IndexError> {
        let guard = self.db.read().expect("not poisoned");
        Ok(guard.as_ref().ok_or(StoreError::Closed)?.begin_write()?)
    }

    /// Closes and opens the database again, as redb wants after an I/O
    /// error (disk full), and goes on from what it holds: the last durable
    /// round, which may be behind the rounds since (they are redone, and
    /// the sequencer reloads the uids it had forgotten: `uids.rs`).
    fn reopen(&self) -> Result<(), IndexError> {
        drop(self.db.write().expect("not poisoned").take());
        // The lock is not held while waiting for readers to let go.
        let (indexed, db) = open_retrying(|| {
            let db = Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create(&self.path)?;
            Ok::<_, IndexError>((stored_progress(&db)?.0, db))
        })?;
        *self.db.write().expect("not poisoned") = Some(db);
        self.indexed.send_replace(indexed);
        Ok(())
    }

    /// A consistent view of the index.
    pub fn view(&self) -> Result<View, IndexError> {
        Ok(View {
            tx: self.begin_read()?,
            leaves: OnceCell::new(),
            uids: OnceCell::new(),
            keys: OnceCell::new(),
        })
    }

    /// Indexes the log's leaves from `indexed` up to at most `upto` (at
    /// most `CHUNK` of them) in one transaction, durable if `durable`, a
    /// `PART` of them at a time.
    /// Returns the new `indexed`.
    pub fn index_up_to(&self, store: &Store, upto: u64, durable: bool) -> Result<u64, IndexError> {
        let from = self.indexed();
        let end = upto.min(from + CHUNK);
        if end <= from {
            return Ok(from);
        }
        let mut tx = self.begin_write()?;
        if durable {
            // A crash then reopens from this commit without a repair.
            tx.set_quick_repair(true);
        } else {
            tx.set_durability(Durability::None)?;
        }
        {
            let mut t = Tables::open(&tx)?;
            let mut start = from;
            while start < end {
                // One commit for the whole round (its pages are what it
                // costs), read and inserted a `PART` at a time (its rows
                // are what it holds in memory).
                let range = start..end.min(start + PART);
                let part = Part::read_or_skip(store, range.clone()).map_err(IndexError::Log)?;
                // Lookups take the lowest matching index: a leaf hash or
                // uid that ever repeated keeps its first claim.
                insert_sorted(&mut t.leaves, part.leaves.into_iter())?;
                insert_sorted(&mut t.uids, part.uids.into_iter())?;
                for (i, keys) in &part.keys {
                    t.keys.insert(i, keys.encode().as_slice())?;
                }
                t.add_all(&part.keys)?;
                // A redaction's record comes after the leaf it redacts, so
                // that leaf's keys are in `keys` by now.
                for redacted in part.redacted {
                    let old = t.keys.remove(redacted)?.map(|v| v.value().to_vec());
                    if let Some(bytes) = old {
                        t.remove(redacted, &Keys::decode(redacted, &bytes)?)?;
                    }
                }
                start = range.end;
            }
            let root = tree::root(end, &store.snapshot().map_err(IndexError::Log)?)
                .map_err(|e| StoreError::Corrupt(format!("root at {end}: {e}")))?;
            t.meta.insert("indexed", end.to_be_bytes().as_slice())?;
            t.meta.insert("root", root.0.as_slice())?;
        }
        tx.commit()?;
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
pub fn follow(index: Arc<Index>, store: Arc<Store>, size: tokio::sync::watch::Receiver<u64>) {
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
        // at this pace cost no measurable throughput (BENCHMARKS.md).
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
    fn read_or_skip(store: &Store, range: std::ops::Range<u64>) -> Result<Self, StoreError> {
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

    fn read(store: &Store, range: std::ops::Range<u64>) -> Result<Self, StoreError> {
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

/// The layout of an index database (absent before there were two).
fn stored_format(db: &Database) -> Result<u64, IndexError> {
    let tx = db.begin_read()?;
    let meta = tx.open_table(META)?;
    Ok(meta.get("format")?.map(|v| be_u64(v.value())).unwrap_or(1))
}

/// The (indexed, root) an index database holds.
fn stored_progress(db: &Database) -> Result<(u64, Option<Vec<u8>>), IndexError> {
    let tx = db.begin_read()?;
    let meta = tx.open_table(META)?;
    let indexed = meta.get("indexed")?.map(|v| be_u64(v.value())).unwrap_or(0);
    let root = meta.get("root")?.map(|v| v.value().to_vec());
    Ok((indexed, root))
}

/// The tables of one index transaction.
struct Tables<'tx> {
    leaves: Table<'tx, (u64, u64), ()>,
    uids: Table<'tx, (u64, u64), ()>,
    keys: Table<'tx, u64, &'static [u8]>,
    by_user: Table<'tx, (u64, u64), &'static [u8]>,
    by_actor: Table<'tx, (u64, u64), &'static [u8]>,
    by_ip: Table<'tx, (u64, u64), &'static [u8]>,
    by_class: Table<'tx, (u32, u64), &'static [u8]>,
    by_time: Table<'tx, (u64, u64), ()>,
    meta: Table<'tx, &'static str, &'static [u8]>,
}

impl<'tx> Tables<'tx> {
    fn open(tx: &'tx WriteTransaction) -> Result<Self, IndexError> {
        Ok(Tables {
            leaves: tx.open_table(LEAVES)?,
            uids: tx.open_table(UIDS)?,
            keys: tx.open_table(KEYS)?,
            by_user: tx.open_table(BY_USER)?,
            by_actor: tx.open_table(BY_ACTOR)?,
            by_ip: tx.open_table(BY_IP)?,
            by_class: tx.open_table(BY_CLASS)?,
            by_time: tx.open_table(BY_TIME)?,
            meta: tx.open_table(META)?,
        })
    }

    /// Indexes each (leaf index, keys), table by table in key order.
    fn add_all(&mut self, keys: &[(u64, Keys)]) -> Result<(), IndexError> {
        let each = || keys.iter().map(|(n, k)| (*n, k));
        insert_blocks(
            &mut self.by_user,
            each().flat_map(|(n, k)| k.users.iter().map(move |u| (*u, n))),
        )?;
        insert_blocks(
            &mut self.by_actor,
            each().flat_map(|(n, k)| k.actors.iter().map(move |a| (*a, n))),
        )?;
        insert_blocks(
            &mut self.by_ip,
            each().filter_map(|(n, k)| Some((k.ip?, n))),
        )?;
        insert_blocks(&mut self.by_class, each().map(|(n, k)| (k.class_uid, n)))?;
        insert_sorted(&mut self.by_time, each().map(|(n, k)| (k.time, n)))?;
        Ok(())
    }

    /// Removes leaf `n`, indexed under `k`.
    fn remove(&mut self, n: u64, k: &Keys) -> Result<(), IndexError> {
        for u in &k.users {
            remove_posting(&mut self.by_user, *u, n)?;
        }
        for a in &k.actors {
            remove_posting(&mut self.by_actor, *a, n)?;
        }
        if let Some(ip) = k.ip {
            remove_posting(&mut self.by_ip, ip, n)?;
        }
        remove_posting(&mut self.by_class, k.class_uid, n)?;
        self.by_time.remove((k.time, n))?;
        Ok(())
    }
}

/// A (key, first leaf index) → posting block table.
type Postings<'tx, K> = Table<'tx, (K, u64), &'static [u8]>;

/// Inserts `rows` (key, leaf index), all above the table's leaves, as
/// posting blocks in key order.
fn insert_blocks<K>(
    table: &mut Postings<'_, K>,
    rows: impl Iterator<Item = (K, u64)>,
) -> Result<(), IndexError>
where
    K: Ord + Copy + redb::Key + 'static + for<'a> redb::Value<SelfType<'a> = K>,
{
    for (k, first, rest) in postings::blocks(rows.collect()) {
        table.insert((k, first), rest.as_slice())?;
    }
    Ok(())
}

/// Removes leaf `n` from `k`'s postings: from the block it lies in (the
/// last that starts at or below it), which moves under its next leaf when
/// `n` was its first.
fn remove_posting<K>(table: &mut Postings<'_, K>, k: K, n: u64) -> Result<(), IndexError>
where
    K: Copy + redb::Key + 'static + for<'a> redb::Value<SelfType<'a> = K>,
{
    let (first, mut leaves) = {
        let Some(row) = table.range((k, 0)..=(k, n))?.next_back() else {
            return Ok(());
        };
        let (key, value) = row?;
        let first = key.value().1;
        (first, postings::decode(first, value.value())?)
    };
    let Some(at) = leaves.iter().position(|&i| i == n) else {
        return Ok(());
    };
    leaves.remove(at);
    table.remove((k, first))?;
    if let Some((&first, rest)) = leaves.split_first() {
        let value = postings::encode(first, rest.iter().copied());
        table.insert((k, first), value.as_slice())?;
    }
    Ok(())
}

/// Inserts `rows` in key order: a run of inserts then walks the B-tree
/// once, left to right, not once per row.
fn insert_sorted<K: Ord + Copy + redb::Key + for<'a> redb::Value<SelfType<'a> = K>>(
    table: &mut Table<'_, K, ()>,
    rows: impl Iterator<Item = K>,
) -> Result<(), IndexError> {
    let mut rows: Vec<K> = rows.collect();
    rows.sort_unstable();
    for row in rows {
        table.insert(row, ())?;
    }
    Ok(())
}

type Scan<'a> = Box<dyn Iterator<Item = Result<(u64, u64), IndexError>> + 'a>;

/// A read transaction over the index. Tables open on first use: the
/// sequencer's uid lookups need one, a lookup by leaf hash another.
pub struct View {
    tx: redb::ReadTransaction,
    leaves: OnceCell<ReadOnlyTable<(u64, u64), ()>>,
    uids: OnceCell<ReadOnlyTable<(u64, u64), ()>>,
    keys: OnceCell<ReadOnlyTable<u64, &'static [u8]>>,
}

impl View {
    /// Leaves below this are in this view.
    pub fn indexed(&self) -> Result<u64, IndexError> {
        let meta = self.tx.open_table(META)?;
        Ok(meta.get("indexed")?.map(|v| be_u64(v.value())).unwrap_or(0))
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
        log: &Snapshot,
    ) -> Result<Option<(u64, Claim)>, IndexError> {
        let uids = lazy(&self.uids, &self.tx, UIDS)?;
        let hash = uid_hash(uid);
        for i in candidates(uids, key)? {
            let i = i?;
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
    pub fn leaf_index(&self, leaf: Hash, log: &Snapshot) -> Result<Option<u64>, IndexError> {
        let leaves = lazy(&self.leaves, &self.tx, LEAVES)?;
        for i in candidates(leaves, index_keys::of_leaf(&leaf))? {
            let i = i?;
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
        fn ordered<'a, I>(it: I, newest_first: bool) -> Scan<'a>
        where
            I: DoubleEndedIterator<Item = Result<(u64, u64), IndexError>> + 'a,
        {
            if newest_first {
                Box::new(it.rev())
            } else {
                Box::new(it)
            }
        }
        /// The leaf indexes in `k`'s posting blocks, in index order or its
        /// reverse, beyond `after`.
        fn postings<'a, K>(
            t: ReadOnlyTable<(K, u64), &'static [u8]>,
            k: K,
            newest_first: bool,
            after: Option<u64>,
        ) -> Result<Scan<'a>, IndexError>
        where
            K: redb::Key + Copy + 'static + for<'b> redb::Value<SelfType<'b> = K>,
        {
            let blocks = match (newest_first, after) {
                // From the block holding `a`, if any: the last that starts
                // at or below it.
                (false, Some(a)) => {
                    let start = match t.range((k, 0)..=(k, a))?.next_back() {
                        Some(row) => row?.0.value().1,
                        None => a,
                    };
                    t.range((k, start)..=(k, u64::MAX))?
                }
                (true, Some(a)) => t.range((k, 0)..(k, a))?,
                (_, None) => t.range((k, 0)..=(k, u64::MAX))?,
            };
            let keep = move |i: &u64| match after {
                None => true,
                Some(a) if newest_first => *i < a,
                Some(a) => *i > a,
            };
            // A block's leaves, in the order asked, beyond `after`.
            let leaves = move |row: Result<_, redb::StorageError>| {
                let block = row.map_err(IndexError::from).and_then(
                    |(key, value): (redb::AccessGuard<(K, u64)>, redb::AccessGuard<&[u8]>)| {
                        Ok(postings::decode(key.value().1, value.value())?)
                    },
                );
                match block {
                    Ok(mut leaves) => {
                        if newest_first {
                            leaves.reverse();
                        }
                        leaves
                            .into_iter()
                            .filter(keep)
                            .map(|i| Ok((0, i)))
                            .collect()
                    }
                    Err(e) => vec![Err(e)],
                }
            };
            Ok(if newest_first {
                Box::new(blocks.rev().flat_map(leaves))
            } else {
                Box::new(blocks.flat_map(leaves))
            })
        }
        let after_index = after.map(|a| a.1);
        // Another value with the same key is filtered out by the query,
        // which checks each candidate's facets.
        let by_str = |def, value: &str| {
            postings(
                self.tx.open_table(def)?,
                index_keys::of_str(value),
                newest_first,
                after_index,
            )
        };
        match key {
            IndexKey::User(u) => by_str(BY_USER, u),
            IndexKey::Actor(a) => by_str(BY_ACTOR, a),
            IndexKey::Ip(ip) => by_str(BY_IP, ip),
            IndexKey::Class(c) => {
                postings(self.tx.open_table(BY_CLASS)?, *c, newest_first, after_index)
            }
            IndexKey::All => {
                let keys = lazy(&self.keys, &self.tx, KEYS)?;
                let range = match (newest_first, after_index) {
                    (false, Some(a)) => keys.range(a.saturating_add(1)..)?,
                    (true, Some(a)) => keys.range(..a)?,
                    (_, None) => keys.range(0..)?,
                };
                let it = range.map(|r| r.map(|(k, _)| (0, k.value())).map_err(IndexError::from));
                Ok(ordered(it, newest_first))
            }
            IndexKey::Time { from, to } => {
                let t = self.tx.open_table(BY_TIME)?;
                let (lo, hi) = ((*from, 0u64), (*to, u64::MAX));
                let range = match (newest_first, after) {
                    (false, Some(a)) if a >= lo => t.range((a.0, a.1.saturating_add(1))..=hi)?,
                    (true, Some(a)) if a <= hi => t.range(lo..a)?,
                    _ => t.range(lo..=hi)?,
                };
                let it = range.map(|r| r.map(|(k, _)| k.value()).map_err(IndexError::from));
                Ok(ordered(it, newest_first))
            }
        }
    }
}

/// The leaf indexes stored under `key`, lowest first.
fn candidates(
    t: &ReadOnlyTable<(u64, u64), ()>,
    key: u64,
) -> Result<impl Iterator<Item = Result<u64, IndexError>> + '_, IndexError> {
    Ok(t.range((key, 0)..=(key, u64::MAX))?
        .map(|r| Ok(r?.0.value().1)))
}

/// The index file beside the log's database.
pub fn path_for(db: &Path) -> PathBuf {
    db.with_file_name("index.redb")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Facets;
    use crate::store::tests::{event, store_with};
    use crate::store::{NoKnownUids, Write};

    /// `View::uid` for a uid whose key the test does not have at hand.
    fn uid_in(view: &View, uid: &str, log: &Snapshot) -> Option<(u64, Claim)> {
        view.uid(uid, index_keys::of_str(uid), log).unwrap()
    }

    fn scan(view: &View, k: IndexKey, newest: bool, after: Option<(u64, u64)>) -> Vec<u64> {
        view.scan(&k, newest, after)
            .unwrap()
            .map(|r| r.unwrap().1)
            .collect()
    }

    fn catch_up(index: &Index, store: &Store) {
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
        let tx = index.begin_write().unwrap();
        {
            let mut t = Tables::open(&tx).unwrap();
            t.leaves
                .insert((index_keys::of_leaf(&leaf17), 3), ())
                .unwrap();
            t.uids
                .insert((index_keys::of_str("uid-12"), 4), ())
                .unwrap();
            t.uids
                .insert((index_keys::of_str("uid-99"), 5), ())
                .unwrap();
        }
        tx.commit().unwrap();
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
        store
            .write(
                s,
                vec![Write::Redact {
                    index: 3,
                    record: event(100),
                }],
                &NoKnownUids,
            )
            .unwrap();
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
        let tx = index.begin_write().unwrap();
        tx.open_table(META).unwrap().remove("format").unwrap();
        tx.commit().unwrap();
        drop(index);
        let index = Index::open(&path, &store).unwrap();
        assert_eq!(index.indexed(), 0, "an index of the first layout: dropped");
    }
}
