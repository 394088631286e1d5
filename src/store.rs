//! The log's storage: one redb database, one write transaction per batch.
//!
//! Tables (layouts in spec/storage.md):
//! - `hashes`:  stored-hash index → 32-byte node hash (tree.rs layout)
//! - `entries`: leaf index → 32-byte commitment (the public leaf data)
//! - `events`:  leaf index → salt (32 bytes) || JCS(event) (private)
//! - `leaves`:  leaf hash → leaf index (for proofs by leaf hash)
//! - `meta`:    "size", "root", "origin", "vkey"
//! - `tokens`:  SHA-256(token) → token record (JSON)
//!
//! What must stay true: `meta.size` and `meta.root` change only in the
//! transaction that writes the leaves and hashes they describe, so a
//! durable (size, root) always has every hash behind it.

use std::path::Path;

use redb::{Database, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition};

use crate::event::{Committed, SALT_LEN};
use crate::tree::{self, Hash, HashReader};

const HASHES: TableDefinition<u64, [u8; 32]> = TableDefinition::new("hashes");
const ENTRIES: TableDefinition<u64, [u8; 32]> = TableDefinition::new("entries");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const LEAVES: TableDefinition<[u8; 32], u64> = TableDefinition::new("leaves");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const TOKENS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("tokens");

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Redb(#[from] redb::Error),
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    #[error("store belongs to another log: {0}")]
    Identity(String),
}

macro_rules! redb_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Redb(e.into()) }
        }
    )*};
}
redb_from!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The size and root of the stored tree.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TreeState {
    pub size: u64,
    pub root: Hash,
}

/// The log's database.
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(HASHES)?;
        tx.open_table(ENTRIES)?;
        tx.open_table(EVENTS)?;
        tx.open_table(LEAVES)?;
        tx.open_table(META)?;
        tx.open_table(TOKENS)?;
        tx.commit()?;
        Ok(Store { db })
    }

    /// Binds the store to a log identity on first use and refuses a
    /// different one later: a new key for an existing tree would be a new
    /// log claiming the old one's history.
    pub fn bind_identity(&self, origin: &str, vkey: &str) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            for (k, want) in [("origin", origin), ("vkey", vkey)] {
                let have = meta.get(k)?.map(|v| v.value().to_vec());
                match have {
                    None => {
                        meta.insert(k, want.as_bytes())?;
                    }
                    Some(have) if have == want.as_bytes() => {}
                    Some(have) => {
                        return Err(StoreError::Identity(format!(
                            "{k} is {:?}, not {want:?}",
                            String::from_utf8_lossy(&have)
                        )))
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The stored tree state, after checking that the stored hashes
    /// re-derive the stored root (log₂ n reads, not a rebuild).
    pub fn tree_state(&self) -> Result<TreeState, StoreError> {
        let snap = self.snapshot()?;
        let meta = snap.tx.open_table(META)?;
        let size = match meta.get("size")? {
            None => 0,
            Some(v) => u64::from_be_bytes(
                v.value()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("meta.size is not 8 bytes".into()))?,
            ),
        };
        let stored_root = match meta.get("root")? {
            None => tree::root(0, &snap).expect("the empty root needs no reads"),
            Some(v) => Hash(
                v.value()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("meta.root is not 32 bytes".into()))?,
            ),
        };
        let root = tree::root(size, &snap)
            .map_err(|e| StoreError::Corrupt(format!("tree of size {size}: {e}")))?;
        if root != stored_root {
            return Err(StoreError::Corrupt(format!(
                "stored hashes give root {root} at size {size}, meta says {stored_root}"
            )));
        }
        Ok(TreeState { size, root })
    }

    /// Appends `events` after the tree `state` in one durable transaction
    /// and returns the new state. Nothing is visible, and nothing may be
    /// signed, until this returns.
    pub fn append<'a>(
        &self,
        state: TreeState,
        events: impl IntoIterator<Item = &'a Committed>,
    ) -> Result<TreeState, StoreError> {
        let tx = self.db.begin_write()?;
        let new_state = {
            let mut hashes = tx.open_table(HASHES)?;
            let mut entries = tx.open_table(ENTRIES)?;
            let mut bodies = tx.open_table(EVENTS)?;
            let mut leaves = tx.open_table(LEAVES)?;
            let mut meta = tx.open_table(META)?;
            let mut n = state.size;
            let mut body = Vec::new();
            for e in events {
                let leaf = tree::leaf_hash(&e.commitment.0);
                let new = tree::stored_hashes(n, leaf, &TableHashes(&hashes))
                    .map_err(|err| StoreError::Corrupt(format!("appending leaf {n}: {err}")))?;
                let first = tree::stored_hash_index(0, n);
                for (i, h) in new.iter().enumerate() {
                    hashes.insert(first + i as u64, h.0)?;
                }
                entries.insert(n, e.commitment.0)?;
                body.clear();
                body.extend_from_slice(&e.salt);
                body.extend_from_slice(&e.jcs);
                bodies.insert(n, body.as_slice())?;
                // Leaf hashes are unique but for a SHA-256 collision; the
                // first index keeps its claim if one ever happened.
                if leaves.get(leaf.0)?.is_none() {
                    leaves.insert(leaf.0, n)?;
                }
                n += 1;
            }
            let root = tree::root(n, &TableHashes(&hashes))
                .map_err(|err| StoreError::Corrupt(format!("root at {n}: {err}")))?;
            meta.insert("size", n.to_be_bytes().as_slice())?;
            meta.insert("root", root.0.as_slice())?;
            TreeState { size: n, root }
        };
        tx.commit()?;
        Ok(new_state)
    }

    /// A consistent read-only view of everything committed so far.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let tx = self.db.begin_read()?;
        Ok(Snapshot {
            hashes: tx.open_table(HASHES)?,
            entries: tx.open_table(ENTRIES)?,
            events: tx.open_table(EVENTS)?,
            leaves: tx.open_table(LEAVES)?,
            tx,
        })
    }

    /// Stores a token record under the token's hash.
    pub fn put_token(&self, hash: [u8; 32], record: &[u8]) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        tx.open_table(TOKENS)?.insert(hash, record)?;
        tx.commit()?;
        Ok(())
    }

    /// Every token record with its hash.
    pub fn tokens(&self) -> Result<Vec<([u8; 32], Vec<u8>)>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(TOKENS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }
}

/// Reads hashes from a hash table, in a read or a write transaction.
struct TableHashes<'a, T: ReadableTable<u64, [u8; 32]>>(&'a T);

impl<T: ReadableTable<u64, [u8; 32]>> HashReader for TableHashes<'_, T> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tree::Error> {
        indexes
            .iter()
            .map(|&i| match self.0.get(i) {
                Ok(Some(h)) => Ok(Hash(h.value())),
                _ => Err(tree::Error::IndexesNotInTree),
            })
            .collect()
    }
}

/// A read transaction over the log's tables.
pub struct Snapshot {
    tx: redb::ReadTransaction,
    hashes: ReadOnlyTable<u64, [u8; 32]>,
    entries: ReadOnlyTable<u64, [u8; 32]>,
    events: ReadOnlyTable<u64, &'static [u8]>,
    leaves: ReadOnlyTable<[u8; 32], u64>,
}

impl HashReader for Snapshot {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tree::Error> {
        TableHashes(&self.hashes).read_hashes(indexes)
    }
}

impl Snapshot {
    /// The commitments of leaves `start..start + count`.
    pub fn commitments(&self, start: u64, count: u64) -> Result<Vec<Hash>, StoreError> {
        let mut out = Vec::with_capacity(count as usize);
        for row in self.entries.range(start..start.saturating_add(count))? {
            out.push(Hash(row?.1.value()));
        }
        if out.len() as u64 != count {
            return Err(StoreError::Corrupt(format!(
                "entries {start}..{}: found {}",
                start + count,
                out.len()
            )));
        }
        Ok(out)
    }

    /// The index of the leaf with hash `leaf`, if the log has it.
    pub fn leaf_index(&self, leaf: Hash) -> Result<Option<u64>, StoreError> {
        Ok(self.leaves.get(leaf.0)?.map(|v| v.value()))
    }

    /// The salt and canonical event of leaf `index`, unless never stored.
    pub fn event(&self, index: u64) -> Result<Option<([u8; SALT_LEN], Vec<u8>)>, StoreError> {
        let Some(v) = self.events.get(index)? else {
            return Ok(None);
        };
        let v = v.value();
        if v.len() < SALT_LEN {
            return Err(StoreError::Corrupt(format!(
                "event {index} is shorter than its salt"
            )));
        }
        let (salt, jcs) = v.split_at(SALT_LEN);
        Ok(Some((
            salt.try_into().expect("split at SALT_LEN"),
            jcs.to_vec(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(n: usize) -> Vec<Committed> {
        (0..n)
            .map(|i| Committed::new(format!("{{\"i\":{i}}}").into_bytes()))
            .collect()
    }

    #[test]
    fn batches_extend_the_tree_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut mem = tree::MemoryHashes::default();
        let evs = events(700);
        let mut state = {
            let store = Store::open(&path).unwrap();
            let mut state = store.tree_state().unwrap();
            assert_eq!(state.size, 0);
            for chunk in evs[..500].chunks(37) {
                state = store.append(state, chunk).unwrap();
            }
            state
        };
        for e in &evs[..500] {
            mem.append(tree::leaf_hash(&e.commitment.0));
        }
        assert_eq!(state.root, tree::root(500, &mem).unwrap());

        let store = Store::open(&path).unwrap();
        assert_eq!(store.tree_state().unwrap(), state);
        state = store.append(state, &evs[500..]).unwrap();
        for e in &evs[500..] {
            mem.append(tree::leaf_hash(&e.commitment.0));
        }
        assert_eq!(state.root, tree::root(700, &mem).unwrap());

        let snap = store.snapshot().unwrap();
        for size in [1, 255, 256, 257, 700] {
            assert_eq!(
                tree::root(size, &snap).unwrap(),
                tree::root(size, &mem).unwrap()
            );
        }
        let c = snap.commitments(256, 3).unwrap();
        assert_eq!(c[1], evs[257].commitment);
        let leaf = tree::leaf_hash(&evs[600].commitment.0);
        assert_eq!(snap.leaf_index(leaf).unwrap(), Some(600));
        let (salt, jcs) = snap.event(600).unwrap().unwrap();
        assert_eq!((salt, jcs), (evs[600].salt, evs[600].jcs.clone()));
        assert!(snap.commitments(699, 2).is_err());
    }

    #[test]
    fn another_identity_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        store.bind_identity("a/log", "a/log+1+x").unwrap();
        store.bind_identity("a/log", "a/log+1+x").unwrap();
        assert!(matches!(
            store.bind_identity("a/log", "a/log+2+y"),
            Err(StoreError::Identity(_))
        ));
    }
}
