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
    Database, Durability, ReadOnlyTable, ReadableDatabase, Table, TableDefinition, WriteTransaction,
};

use crate::event::Facets;
use crate::store::{be_u64, lazy, open_retrying, Store, StoreError};
use crate::tree::{self, Hash};

const LEAVES: TableDefinition<[u8; 32], u64> = TableDefinition::new("leaves");
/// metadata.uid → leaf index (8 bytes) || content hash (32 bytes).
const UIDS: TableDefinition<&str, &[u8]> = TableDefinition::new("uids");
/// leaf index → the facets it was indexed under (to remove them again).
const KEYS: TableDefinition<u64, &[u8]> = TableDefinition::new("keys");
const BY_USER: TableDefinition<(&str, u64), ()> = TableDefinition::new("by_user");
const BY_ACTOR: TableDefinition<(&str, u64), ()> = TableDefinition::new("by_actor");
const BY_IP: TableDefinition<(&str, u64), ()> = TableDefinition::new("by_ip");
const BY_CLASS: TableDefinition<(u32, u64), ()> = TableDefinition::new("by_class");
const BY_TIME: TableDefinition<(u64, u64), ()> = TableDefinition::new("by_time");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// redb's page cache for the index.
const CACHE_BYTES: usize = 512 << 20;

/// Leaves indexed at most in one transaction.
const CHUNK: u64 = 131_072;

/// How often the follower makes its progress durable.
const DURABLE_EVERY: Duration = Duration::from_secs(1);

/// How long the follower lets the log grow between two rounds, unless a
/// reader is waiting: a round costs a commit whatever its size, so under a
/// stream of small batches it indexes several at once.
const PACE: Duration = Duration::from_millis(25);

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
}

impl Index {
    /// Opens the index at `path` for the log in `store`, dropping it when
    /// it is not an index of that log's tree.
    pub fn open(path: &Path, store: &Store) -> Result<Self, IndexError> {
        if path.exists() {
            match Self::open_matching(path, store) {
                Ok(Some(index)) => return Ok(index),
                Ok(None) => {
                    tracing::warn!(path = %path.display(), "the index is not of this log's tree; rebuilding it")
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
        Self::create(path)
    }

    fn create(path: &Path) -> Result<Self, IndexError> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)?;
        let tx = db.begin_write()?;
        open_tables(&tx)?;
        tx.commit()?;
        Ok(Index {
            path: path.to_path_buf(),
            db: std::sync::RwLock::new(Some(db)),
            indexed: tokio::sync::watch::channel(0).0,
            hurry: tokio::sync::Notify::new(),
        })
    }

    /// The index at `path` if its (indexed, root) is a state of `store`'s
    /// tree.
    fn open_matching(path: &Path, store: &Store) -> Result<Option<Self>, IndexError> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)?;
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
        Ok(Some(Index {
            path: path.to_path_buf(),
            db: std::sync::RwLock::new(Some(db)),
            indexed: tokio::sync::watch::channel(indexed).0,
            hurry: tokio::sync::Notify::new(),
        }))
    }

    /// Leaves below this are indexed.
    pub fn indexed(&self) -> u64 {
        *self.indexed.borrow()
    }

    /// Waits (at most `timeout`) until the leaves below `size` are indexed.
    pub async fn wait_for(&self, size: u64, timeout: Duration) -> Result<(), IndexError> {
        if self.indexed() >= size {
            return Ok(());
        }
        self.hurry.notify_one();
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
    /// most `CHUNK` of them) in one transaction, durable if `durable`.
    /// Returns the new `indexed`.
    pub fn index_up_to(&self, store: &Store, upto: u64, durable: bool) -> Result<u64, IndexError> {
        let from = self.indexed();
        let end = upto.min(from + CHUNK);
        if end <= from {
            return Ok(from);
        }
        let round = Round::read(store, from..end).map_err(IndexError::Log)?;
        let mut tx = self.begin_write()?;
        if durable {
            // A crash then reopens from this commit without a repair.
            tx.set_quick_repair(true);
        } else {
            tx.set_durability(Durability::None)?;
        }
        {
            let mut t = Tables::open(&tx)?;
            for (leaf, i) in round.leaves {
                // Leaf hashes are unique but for a SHA-256 collision; the
                // first index keeps its claim if one ever happened.
                let first = t.leaves.insert(leaf, i)?.map(|v| v.value());
                if let Some(first) = first {
                    t.leaves.insert(leaf, first)?;
                }
            }
            for (i, content, uid) in round.uids {
                // Appends refuse a known uid; if one slipped in, the first
                // index keeps it.
                let mut row = i.to_be_bytes().to_vec();
                row.extend_from_slice(&content);
                let first = t
                    .uids
                    .insert(uid.as_str(), row.as_slice())?
                    .map(|v| v.value().to_vec());
                if let Some(first) = first {
                    t.uids.insert(uid.as_str(), first.as_slice())?;
                }
            }
            for (i, bytes) in &round.facet_rows {
                t.keys.insert(i, bytes.as_slice())?;
            }
            t.add_all(&round.facets)?;
            for redacted in round.redacted {
                let old = t.keys.remove(redacted)?.map(|v| v.value().to_vec());
                if let Some(bytes) = old {
                    t.remove(redacted, &decode(redacted, &bytes)?)?;
                }
            }
            t.meta.insert("indexed", end.to_be_bytes().as_slice())?;
            t.meta.insert("root", round.root.0.as_slice())?;
        }
        tx.commit()?;
        self.indexed.send_replace(end);
        Ok(end)
    }

    /// Makes the progress so far durable.
    fn persist(&self) -> Result<(), IndexError> {
        let mut tx = self.begin_write()?;
        tx.set_quick_repair(true);
        tx.commit()?;
        Ok(())
    }
}

/// Follows the log's signed size for ever, indexing what it appends; call
/// on a thread of its own. Returns when the size stops being published
/// (the sequencer stopped), after making its progress durable.
pub fn follow(index: Arc<Index>, store: Arc<Store>, mut size: tokio::sync::watch::Receiver<u64>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
    let mut last_durable = Instant::now();
    let mut dirty = false;
    let mut logged = Instant::now();
    loop {
        let target = *size.borrow_and_update();
        while index.indexed() < target {
            let durable = last_durable.elapsed() >= DURABLE_EVERY;
            match index.index_up_to(&store, target, durable) {
                Ok(n) => {
                    dirty = !durable;
                    if durable {
                        last_durable = Instant::now();
                    }
                    if target - n > CHUNK && logged.elapsed() >= Duration::from_secs(5) {
                        tracing::info!(indexed = n, size = target, "index catching up");
                        logged = Instant::now();
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "index: not written; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                    if e.is_io() {
                        match index.reopen() {
                            Ok(()) => tracing::info!(indexed = index.indexed(), "index reopened"),
                            Err(e) => tracing::warn!(error = %e, "index: not reopened"),
                        }
                    }
                }
            }
            if size.has_changed().is_err() {
                // The sequencer stopped: keep what is done, and let the
                // next start go on (a rebuild must not hold up shutdown).
                let _ = index.persist();
                return;
            }
            if index.indexed() >= target {
                rt.block_on(async { tokio::time::timeout(PACE, index.hurry.notified()).await })
                    .ok();
            }
        }
        // Idle: wait for the log to grow; make the progress durable if it
        // stays quiet for a while, and before returning.
        let changed =
            rt.block_on(async { tokio::time::timeout(DURABLE_EVERY, size.changed()).await });
        if dirty && !matches!(changed, Ok(Ok(()))) && index.persist().is_ok() {
            dirty = false;
            last_durable = Instant::now();
        }
        if matches!(changed, Ok(Err(_))) {
            return;
        }
    }
}

/// What a round indexes, read from one snapshot of the log. Each table's
/// rows are sorted by key: a run of inserts then walks its B-tree once,
/// left to right, not once per row.
struct Round {
    /// (leaf hash, leaf index).
    leaves: Vec<([u8; 32], u64)>,
    /// (leaf index, content hash, uid), by uid.
    uids: Vec<(u64, [u8; 32], String)>,
    /// The facets rows as stored, and decoded.
    facet_rows: Vec<(u64, Vec<u8>)>,
    facets: Vec<(u64, Facets)>,
    /// Leaves whose redaction record lies in the round.
    redacted: Vec<u64>,
    /// The log's root at the round's end.
    root: Hash,
}

impl Round {
    fn read(store: &Store, range: std::ops::Range<u64>) -> Result<Self, StoreError> {
        let snap = store.snapshot()?;
        let (from, end) = (range.start, range.end);
        let mut leaves: Vec<([u8; 32], u64)> = range
            .clone()
            .zip(snap.commitments(from, end - from)?)
            .map(|(i, c)| (tree::leaf_hash(&c.0).0, i))
            .collect();
        leaves.sort_unstable();
        let mut uids = snap.uid_rows(range.clone())?;
        uids.sort_unstable_by(|a, b| (&a.2, a.0).cmp(&(&b.2, b.0)));
        let facet_rows = snap.facet_rows(range.clone())?;
        let facets = facet_rows
            .iter()
            .map(|(i, bytes)| Ok((*i, decode(*i, bytes)?)))
            .collect::<Result<_, StoreError>>()?;
        let redacted = snap.redactions(range)?.into_iter().map(|r| r.1).collect();
        let root = tree::root(end, &snap)
            .map_err(|e| StoreError::Corrupt(format!("root at {end}: {e}")))?;
        Ok(Round {
            leaves,
            uids,
            facet_rows,
            facets,
            redacted,
            root,
        })
    }
}

/// The (indexed, root) an index database holds.
fn stored_progress(db: &Database) -> Result<(u64, Option<Vec<u8>>), IndexError> {
    let tx = db.begin_read()?;
    let meta = tx.open_table(META)?;
    let indexed = meta.get("indexed")?.map(|v| be_u64(v.value())).unwrap_or(0);
    let root = meta.get("root")?.map(|v| v.value().to_vec());
    Ok((indexed, root))
}

fn decode(i: u64, bytes: &[u8]) -> Result<Facets, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("facets of {i}: {e}")))
}

fn open_tables(tx: &WriteTransaction) -> Result<(), IndexError> {
    Tables::open(tx).map(|_| ())
}

/// The tables of one index transaction.
struct Tables<'tx> {
    leaves: Table<'tx, [u8; 32], u64>,
    uids: Table<'tx, &'static str, &'static [u8]>,
    keys: Table<'tx, u64, &'static [u8]>,
    by_user: Table<'tx, (&'static str, u64), ()>,
    by_actor: Table<'tx, (&'static str, u64), ()>,
    by_ip: Table<'tx, (&'static str, u64), ()>,
    by_class: Table<'tx, (u32, u64), ()>,
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

    /// Indexes each (leaf index, facets), table by table in key order.
    fn add_all(&mut self, facets: &[(u64, Facets)]) -> Result<(), IndexError> {
        fn sorted<'a>(rows: impl Iterator<Item = (&'a str, u64)>) -> Vec<(&'a str, u64)> {
            let mut rows: Vec<_> = rows.collect();
            rows.sort_unstable();
            rows
        }
        let each = || facets.iter().map(|(n, f)| (*n, f));
        for key in sorted(each().flat_map(|(n, f)| f.users.iter().map(move |u| (u.as_str(), n)))) {
            self.by_user.insert(key, ())?;
        }
        for key in sorted(each().flat_map(|(n, f)| f.actors.iter().map(move |a| (a.as_str(), n)))) {
            self.by_actor.insert(key, ())?;
        }
        for key in sorted(each().filter_map(|(n, f)| Some((f.src_ip.as_deref()?, n)))) {
            self.by_ip.insert(key, ())?;
        }
        let mut classes: Vec<(u32, u64)> = each().map(|(n, f)| (f.class_uid, n)).collect();
        classes.sort_unstable();
        for key in classes {
            self.by_class.insert(key, ())?;
        }
        let mut times: Vec<(u64, u64)> = each().map(|(n, f)| (f.time, n)).collect();
        times.sort_unstable();
        for key in times {
            self.by_time.insert(key, ())?;
        }
        Ok(())
    }

    fn remove(&mut self, n: u64, f: &Facets) -> Result<(), IndexError> {
        for u in &f.users {
            self.by_user.remove((u.as_str(), n))?;
        }
        for a in &f.actors {
            self.by_actor.remove((a.as_str(), n))?;
        }
        if let Some(ip) = &f.src_ip {
            self.by_ip.remove((ip.as_str(), n))?;
        }
        self.by_class.remove((f.class_uid, n))?;
        self.by_time.remove((f.time, n))?;
        Ok(())
    }
}

type Scan<'a> = Box<dyn Iterator<Item = Result<(u64, u64), IndexError>> + 'a>;

/// A read transaction over the index.
/// A read transaction over the index. Tables open on first use: the
/// sequencer's uid lookups need one, a lookup by leaf hash another.
pub struct View {
    tx: redb::ReadTransaction,
    leaves: OnceCell<ReadOnlyTable<[u8; 32], u64>>,
    uids: OnceCell<ReadOnlyTable<&'static str, &'static [u8]>>,
    keys: OnceCell<ReadOnlyTable<u64, &'static [u8]>>,
}

impl View {
    /// Leaves below this are in this view.
    pub fn indexed(&self) -> Result<u64, IndexError> {
        let meta = self.tx.open_table(META)?;
        Ok(meta.get("indexed")?.map(|v| be_u64(v.value())).unwrap_or(0))
    }

    /// The (leaf index, content hash) of the event with `metadata.uid` =
    /// `uid`, if indexed.
    pub fn uid(&self, uid: &str) -> Result<Option<(u64, [u8; 32])>, IndexError> {
        let Some(v) = lazy(&self.uids, &self.tx, UIDS)?.get(uid)? else {
            return Ok(None);
        };
        let v = v.value();
        if v.len() != 40 {
            return Err(StoreError::Corrupt(format!("index row of uid {uid:?}")).into());
        }
        Ok(Some((
            be_u64(&v[..8]),
            v[8..].try_into().expect("32 bytes"),
        )))
    }

    /// The index of the leaf with hash `leaf`, if indexed.
    pub fn leaf_index(&self, leaf: Hash) -> Result<Option<u64>, IndexError> {
        let leaves = lazy(&self.leaves, &self.tx, LEAVES)?;
        Ok(leaves.get(leaf.0)?.map(|v| v.value()))
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
        fn by_str<'a>(
            t: ReadOnlyTable<(&'static str, u64), ()>,
            k: &str,
            newest_first: bool,
            after: Option<u64>,
        ) -> Result<Scan<'a>, IndexError> {
            let range = match (newest_first, after) {
                (false, Some(a)) => t.range((k, a.saturating_add(1))..=(k, u64::MAX))?,
                (true, Some(a)) => t.range((k, 0)..(k, a))?,
                (_, None) => t.range((k, 0)..=(k, u64::MAX))?,
            };
            let it = range.map(|r| r.map(|(k, _)| (0, k.value().1)).map_err(IndexError::from));
            Ok(ordered(it, newest_first))
        }
        let after_index = after.map(|a| a.1);
        match key {
            IndexKey::User(u) => by_str(self.tx.open_table(BY_USER)?, u, newest_first, after_index),
            IndexKey::Actor(a) => {
                by_str(self.tx.open_table(BY_ACTOR)?, a, newest_first, after_index)
            }
            IndexKey::Ip(ip) => by_str(self.tx.open_table(BY_IP)?, ip, newest_first, after_index),
            IndexKey::Class(c) => {
                let (t, c) = (self.tx.open_table(BY_CLASS)?, *c);
                let range = match (newest_first, after_index) {
                    (false, Some(a)) => t.range((c, a.saturating_add(1))..=(c, u64::MAX))?,
                    (true, Some(a)) => t.range((c, 0)..(c, a))?,
                    (_, None) => t.range((c, 0)..=(c, u64::MAX))?,
                };
                let it = range.map(|r| r.map(|(k, _)| (0, k.value().1)).map_err(IndexError::from));
                Ok(ordered(it, newest_first))
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

/// The index file beside the log's database.
pub fn path_for(db: &Path) -> PathBuf {
    db.with_file_name("index.redb")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{event, store_with};
    use crate::store::{NoKnownUids, Write};

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
        let leaf = tree::leaf_hash(&event(0).commitment.0);
        assert_eq!(view.leaf_index(leaf).unwrap(), None, "another salt");
        let snap = store.snapshot().unwrap();
        let c = snap.commitments(17, 1).unwrap()[0];
        assert_eq!(view.leaf_index(tree::leaf_hash(&c.0)).unwrap(), Some(17));
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
        let view = index.view().unwrap();
        assert_eq!(view.uid("uid-1").unwrap().map(|p| p.0), Some(1));
        assert_eq!(view.uid("uid-0").unwrap().map(|p| p.0), Some(0));
        assert_eq!(view.uid("uid-9").unwrap(), None);
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
        let c = store.snapshot().unwrap().commitments(3, 1).unwrap()[0];
        assert_eq!(
            view.leaf_index(tree::leaf_hash(&c.0)).unwrap(),
            Some(3),
            "its leaf stays in the tree, and provable by its hash"
        );
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
    }
}
