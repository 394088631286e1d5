//! The lookup index in redb (`index.redb`): `store::IndexStore` and its
//! views. What is indexed, when, and how it is checked against the log is
//! `query::index`'s; this file is how the rows are laid out and read.
//!
//! The lookup tables are keyed by (the first 8 bytes of a SHA-256 of the
//! looked-up value, leaf index), not by the value: a fixed 16-byte key
//! packs ~200 rows in a page where a 32-byte hash or a 36-byte uid with
//! its value packed ~60, and each scattered insert dirties a page. Two
//! values may share a prefix, so every lookup checks its candidates
//! against the log (`query::index::View`).

use std::cell::OnceCell;
use std::path::{Path, PathBuf};

use redb::{
    Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, Table, TableDefinition,
    WriteTransaction,
};

use super::postings;
use super::tables::lazy;
use crate::store::index_keys::{self, Keys};
use crate::store::{
    be_u64, open_retrying, IndexKey, IndexRound, IndexScan, IndexStore, IndexView, StoreError,
};
use sealog_verify::tree::Hash;

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
/// at 10M; proofs at 10M ran as fast at 128, BENCHMARKS.md).
const CACHE_BYTES: usize = 128 << 20;

/// The index database.
pub struct RedbIndex {
    path: PathBuf,
    /// None only while `reopen` swaps it.
    db: std::sync::RwLock<Option<Database>>,
}

fn open_db(path: &Path) -> Result<Database, StoreError> {
    Ok(Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(path)?)
}

impl RedbIndex {
    /// Opens the index database at `path`; None if it holds another
    /// layout (`FORMAT`).
    pub fn open(path: &Path) -> Result<Option<Self>, StoreError> {
        let db = open_db(path)?;
        if stored_format(&db)? != FORMAT {
            return Ok(None);
        }
        Ok(Some(Self::with(path, db)))
    }

    /// Makes an empty index database of this layout at `path` (an empty
    /// file or none).
    pub fn create(path: &Path) -> Result<Self, StoreError> {
        let db = open_db(path)?;
        let tx = db.begin_write()?;
        Tables::open(&tx)?
            .meta
            .insert("format", FORMAT.to_be_bytes().as_slice())?;
        tx.commit()?;
        Ok(Self::with(path, db))
    }

    fn with(path: &Path, db: Database) -> Self {
        RedbIndex {
            path: path.to_path_buf(),
            db: std::sync::RwLock::new(Some(db)),
        }
    }

    fn begin_read(&self) -> Result<redb::ReadTransaction, StoreError> {
        let guard = self.db.read().expect("not poisoned");
        Ok(guard.as_ref().ok_or(StoreError::Closed)?.begin_read()?)
    }
}

impl IndexStore for RedbIndex {
    fn progress(&self) -> Result<(u64, Option<Vec<u8>>), StoreError> {
        let tx = self.begin_read()?;
        let meta = tx.open_table(META)?;
        let indexed = meta.get("indexed")?.map(|v| be_u64(v.value())).unwrap_or(0);
        let root = meta.get("root")?.map(|v| v.value().to_vec());
        Ok((indexed, root))
    }

    fn begin_round(&self, durable: bool) -> Result<Box<dyn IndexRound + '_>, StoreError> {
        let mut tx = {
            let guard = self.db.read().expect("not poisoned");
            guard.as_ref().ok_or(StoreError::Closed)?.begin_write()?
        };
        if durable {
            // A crash then reopens from this commit without a repair.
            tx.set_quick_repair(true);
        } else {
            tx.set_durability(Durability::None)?;
        }
        Ok(Box::new(Round::new(tx)?))
    }

    fn view(&self) -> Result<Box<dyn IndexView>, StoreError> {
        Ok(Box::new(View {
            tx: self.begin_read()?,
            leaves: OnceCell::new(),
            uids: OnceCell::new(),
            keys: OnceCell::new(),
        }))
    }

    /// Closes and opens the database again, as redb wants after an I/O
    /// error (disk full): readers still holding transactions keep the
    /// file open, so this retries for about a second.
    fn reopen(&self) -> Result<(), StoreError> {
        drop(self.db.write().expect("not poisoned").take());
        // The lock is not held while waiting for readers to let go.
        let db = open_retrying(|| open_db(&self.path))?;
        *self.db.write().expect("not poisoned") = Some(db);
        Ok(())
    }
}

/// The layout of an index database (absent before there were two).
fn stored_format(db: &Database) -> Result<u64, StoreError> {
    let tx = db.begin_read()?;
    let meta = tx.open_table(META)?;
    Ok(meta.get("format")?.map(|v| be_u64(v.value())).unwrap_or(1))
}

/// One round: a write transaction over the index's tables. The tables
/// borrow the transaction, so they are opened per call; a round makes a
/// few calls a part.
struct Round {
    tx: WriteTransaction,
}

impl Round {
    fn new(tx: WriteTransaction) -> Result<Self, StoreError> {
        Ok(Round { tx })
    }
}

impl IndexRound for Round {
    fn add_leaves(&mut self, rows: Vec<(u64, u64)>) -> Result<(), StoreError> {
        insert_sorted(&mut self.tx.open_table(LEAVES)?, rows.into_iter())
    }

    fn add_uids(&mut self, rows: Vec<(u64, u64)>) -> Result<(), StoreError> {
        insert_sorted(&mut self.tx.open_table(UIDS)?, rows.into_iter())
    }

    fn add_events(&mut self, keys: &[(u64, Keys)]) -> Result<(), StoreError> {
        let mut t = Tables::open(&self.tx)?;
        for (i, k) in keys {
            t.keys.insert(i, k.encode().as_slice())?;
        }
        t.add_all(keys)
    }

    fn remove_event(&mut self, leaf: u64) -> Result<(), StoreError> {
        let mut t = Tables::open(&self.tx)?;
        let old = t.keys.remove(leaf)?.map(|v| v.value().to_vec());
        if let Some(bytes) = old {
            t.remove(
                leaf,
                &Keys::decode(leaf, &bytes).map_err(StoreError::Corrupt)?,
            )?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>, indexed: u64, root: Hash) -> Result<(), StoreError> {
        {
            let mut meta = self.tx.open_table(META)?;
            meta.insert("indexed", indexed.to_be_bytes().as_slice())?;
            meta.insert("root", root.0.as_slice())?;
        }
        self.tx.commit()?;
        Ok(())
    }
}

/// The tables of one index transaction.
struct Tables<'tx> {
    keys: Table<'tx, u64, &'static [u8]>,
    by_user: Table<'tx, (u64, u64), &'static [u8]>,
    by_actor: Table<'tx, (u64, u64), &'static [u8]>,
    by_ip: Table<'tx, (u64, u64), &'static [u8]>,
    by_class: Table<'tx, (u32, u64), &'static [u8]>,
    by_time: Table<'tx, (u64, u64), ()>,
    meta: Table<'tx, &'static str, &'static [u8]>,
}

impl<'tx> Tables<'tx> {
    fn open(tx: &'tx WriteTransaction) -> Result<Self, StoreError> {
        // Every table exists from the first transaction on.
        tx.open_table(LEAVES)?;
        tx.open_table(UIDS)?;
        Ok(Tables {
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
    fn add_all(&mut self, keys: &[(u64, Keys)]) -> Result<(), StoreError> {
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
    fn remove(&mut self, n: u64, k: &Keys) -> Result<(), StoreError> {
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
) -> Result<(), StoreError>
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
fn remove_posting<K>(table: &mut Postings<'_, K>, k: K, n: u64) -> Result<(), StoreError>
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
) -> Result<(), StoreError> {
    let mut rows: Vec<K> = rows.collect();
    rows.sort_unstable();
    for row in rows {
        table.insert(row, ())?;
    }
    Ok(())
}

/// A read transaction over the index. Tables open on first use: the
/// sequencer's uid lookups need one, a lookup by leaf hash another.
struct View {
    tx: redb::ReadTransaction,
    leaves: OnceCell<ReadOnlyTable<(u64, u64), ()>>,
    uids: OnceCell<ReadOnlyTable<(u64, u64), ()>>,
    keys: OnceCell<ReadOnlyTable<u64, &'static [u8]>>,
}

impl IndexView for View {
    fn indexed(&self) -> Result<u64, StoreError> {
        let meta = self.tx.open_table(META)?;
        Ok(meta.get("indexed")?.map(|v| be_u64(v.value())).unwrap_or(0))
    }

    fn each_uid_key(&self, f: &mut dyn FnMut(u64)) -> Result<(), StoreError> {
        for row in lazy(&self.uids, &self.tx, UIDS)?.iter()? {
            f(row?.0.value().0);
        }
        Ok(())
    }

    fn uid_candidates(&self, key: u64) -> Result<Vec<u64>, StoreError> {
        candidates(lazy(&self.uids, &self.tx, UIDS)?, key)
    }

    fn leaf_candidates(&self, key: u64) -> Result<Vec<u64>, StoreError> {
        candidates(lazy(&self.leaves, &self.tx, LEAVES)?, key)
    }

    fn scan(
        &self,
        key: &IndexKey,
        newest_first: bool,
        after: Option<(u64, u64)>,
    ) -> Result<IndexScan<'_>, StoreError> {
        fn ordered<'a, I>(it: I, newest_first: bool) -> IndexScan<'a>
        where
            I: DoubleEndedIterator<Item = Result<(u64, u64), StoreError>> + 'a,
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
        ) -> Result<IndexScan<'a>, StoreError>
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
                let block = row.map_err(StoreError::from).and_then(
                    |(key, value): (redb::AccessGuard<(K, u64)>, redb::AccessGuard<&[u8]>)| {
                        postings::decode(key.value().1, value.value())
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
                let it = range.map(|r| r.map(|(k, _)| (0, k.value())).map_err(StoreError::from));
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
                let it = range.map(|r| r.map(|(k, _)| k.value()).map_err(StoreError::from));
                Ok(ordered(it, newest_first))
            }
        }
    }
}

/// The leaf indexes stored under `key`, lowest first.
fn candidates(t: &ReadOnlyTable<(u64, u64), ()>, key: u64) -> Result<Vec<u64>, StoreError> {
    t.range((key, 0)..=(key, u64::MAX))?
        .map(|r| Ok(r?.0.value().1))
        .collect()
}

/// For tests: drops the layout mark of the index at `path`, as an index
/// of the first layout (which had none).
#[cfg(test)]
pub(crate) fn forget_format(path: &Path) {
    let db = open_db(path).unwrap();
    let tx = db.begin_write().unwrap();
    tx.open_table(META).unwrap().remove("format").unwrap();
    tx.commit().unwrap();
}
