//! The redb driver: the log in one redb database (`sealog.redb`), one
//! write transaction per batch, and the events' keys in the key file
//! beside it (`store::keys`). The only code that names redb.
//!
//! Tables (layouts in spec/storage.md):
//! - `hashes`:   stored-hash index → 32-byte node hash (`sealog_verify::tree` layout)
//! - `entries`:  leaf index → 32-byte commitment (the public leaf data)
//! - `tiles`, `bundles`: full level-0 hash tiles and entry bundles, whole
//!   (`tile_rows`)
//! - `events_z`: leaf index → 2 || the row sealed under the event's key
//!   (`store::keys`), the row being codec || salt (32 bytes) ||
//!   JCS(event), compressed with the log's dictionary (`event_codec`;
//!   private). Rows of codec 0 and 1 unsealed, written before keys, are
//!   still read.
//! - `events`:   leaf index → salt || JCS(event), uncompressed, in logs
//!   begun before `events_z` (read, never written)
//! - `uid_hashes`: leaf index → kind || SHA-256(metadata.uid) || what is
//!   kept of the content hash (`Claim`), never deleted (the index
//!   follower builds the uid lookup from it); no uid is stored in clear
//! - `facets`:   leaf index → 2 || the event's facets (`facets_row`)
//!   sealed under its key, for query filters
//! - `redacted`: leaf index → index of the redaction event
//! - `redactions`: index of the redaction event → leaf index (in log
//!   order, for the index follower)
//! - `meta`:     "size", "root", "origin", "vkey", "logged_time", "dict",
//!   "read_only", "fork_risk"
//! - `tokens`:   SHA-256(token) → token record (JSON)
//!
//! The lookup indexes (leaf hash, metadata.uid, user, actor, IP, class,
//! time) are kept apart, by a follower of the log: see `query::index`.
//! Every row written here per event is keyed by its leaf index, so a
//! batch writes a few pages at the right edge of each table. An append
//! asks a `KnownUids` (the sequencer's: the index and the uids appended
//! since it last caught up) whether a uid is already in the log.
//!
//! Each event's key is in the key file, never in redb: a redaction
//! overwrites it with zeros, which erases the event from every page and
//! copy of the database that still holds its sealed rows.
//!
//! How this driver keeps the contract of `store` (spec/storage.md,
//! "Storage driver contract"): `meta.size` and `meta.root` change only in
//! the transaction that writes the leaves and hashes they describe, so a
//! durable (size, root) always has every hash behind it; the event, uid,
//! facets and redaction rows change in that same transaction, committed
//! with fsync (redb's default durability) before `write` returns; a
//! leaf's key is durable before that transaction commits, and a redacted
//! leaf's key is zeros on disk before its redaction is acknowledged.
//! redb's file lock makes a second open of the database fail
//! (`StoreError::AlreadyOpen`): one writer.

pub mod event_codec;
pub mod facets_row;
pub mod index;
pub mod postings;
pub mod tables;
pub mod tile_rows;
pub mod witness;

use std::cell::OnceCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use redb::{
    Database, ReadOnlyTable, ReadableDatabase, ReadableTable, Table, TableDefinition, TableHandle,
    WriteTransaction,
};

use crate::events::{Committed, Facets};
use crate::store::keys::{self, EventKey, KeyFile, Sealed};
use crate::store::{
    be_u64, open_retrying, uid_hash, Claim, Driver, EventRow, IndexStore, KnownUids, LogStore,
    Outcome, Placed, Refusal, Snapshot, StoreError, StoredEvent, TreeState, WitnessState, Write,
};
use event_codec::Dictionary;
use sealog_verify::commitment::SALT_LEN;
use sealog_verify::tiles::{TileRef, FULL_WIDTH};
use sealog_verify::tree::{self, Hash, HashReader, HASH_SIZE};
use tables::lazy;
use tile_rows::{BUNDLES, TILES};

/// Copies each table of the read transaction `$tx` into the database
/// `$out`, 50,000 rows a transaction (an empty table is created too).
macro_rules! copy_tables {
    ($tx:expr, $out:expr, $($t:ident),* $(,)?) => {$({
        let src = $tx.open_table($t)?;
        let mut rows = src.iter()?.peekable();
        while rows.peek().is_some() {
            let w = $out.begin_write()?;
            {
                let mut dst = w.open_table($t)?;
                for row in rows.by_ref().take(50_000) {
                    let (k, v) = row?;
                    dst.insert(k.value(), v.value())?;
                }
            }
            w.commit()?;
        }
        let w = $out.begin_write()?;
        w.open_table($t)?;
        w.commit()?;
    })*};
}

const HASHES: TableDefinition<u64, [u8; 32]> = TableDefinition::new("hashes");
const ENTRIES: TableDefinition<u64, [u8; 32]> = TableDefinition::new("entries");
/// The events of logs begun before `events_z` (salt || JCS): read, and
/// deleted by redactions, never written.
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const EVENTS_Z: TableDefinition<u64, &[u8]> = TableDefinition::new("events_z");
/// Before `uid_hashes`: content hash || metadata.uid in clear. Upgraded
/// to `uid_hashes` and dropped when the log opens.
const UID_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("uid_log");
const UID_HASHES: TableDefinition<u64, &[u8]> = TableDefinition::new("uid_hashes");
const FACETS: TableDefinition<u64, &[u8]> = TableDefinition::new("facets");
const REDACTED: TableDefinition<u64, u64> = TableDefinition::new("redacted");
const REDACTIONS: TableDefinition<u64, u64> = TableDefinition::new("redactions");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const TOKENS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("tokens");
/// In a backup file only: the keys of its unredacted events, by leaf.
const BACKUP_KEYS: TableDefinition<u64, [u8; 32]> = TableDefinition::new("event_keys");

/// The first byte of a sealed `events_z` row (its codec) and of a sealed
/// `facets` row (its layout): the rest is the row of codec 0 or 1 (layout
/// 1) sealed under the event's key.
const SEALED: u8 = 2;

/// `uid_hashes` rows: kind (1) || SHA-256(uid) (32) || claim (32).
const UID_ROW_LEN: usize = 65;
/// The claim is the plain content hash: rows upgraded from `uid_log`.
const UID_CONTENT: u8 = 0;
/// The claim is `keys::content_tag` under the leaf's key.
const UID_TAGGED: u8 = 1;
/// The leaf was redacted; the claim is zeros.
const UID_REDACTED: u8 = 2;

/// redb's page cache for the log's database. With the index's it bounds
/// the server's memory under any load; the log's file is larger than this
/// before 1M events, so memory stays nearly flat beyond (spec/storage.md).
const CACHE_BYTES: usize = 512 << 20;

/// The log's database.
pub struct RedbStore {
    path: std::path::PathBuf,
    /// None only while `reopen` swaps it.
    db: std::sync::RwLock<Option<Database>>,
    /// Upper-level stored hashes read from committed snapshots.
    hash_cache: std::sync::Arc<crate::store::hash_cache::HashCache>,
    /// The events' compression dictionary, once it is in the database.
    dict: std::sync::OnceLock<std::sync::Arc<Dictionary>>,
    /// The tree size at which to try training it next.
    train_at: std::sync::atomic::AtomicU64,
    /// The events' keys (`store::keys`).
    keys: std::sync::Arc<KeyFile>,
    /// Leaves whose key this process erased, and their redaction records:
    /// a snapshot from before the redaction still sees the sealed rows,
    /// and answers from here that they are redacted.
    erased: std::sync::Arc<std::sync::Mutex<HashMap<u64, u64>>>,
}

impl RedbStore {
    /// The text under `key` in the meta table (the store's flags).
    fn meta_text(&self, key: &str) -> Result<Option<String>, StoreError> {
        let tx = self.begin_read()?;
        let meta = tx.open_table(META)?;
        Ok(meta
            .get(key)?
            .map(|v| String::from_utf8_lossy(v.value()).into_owned()))
    }

    /// Sets `key` of the meta table to `value`, durably.
    fn set_meta_text(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let tx = self.begin_write()?;
        tx.open_table(META)?.insert(key, value.as_bytes())?;
        tx.commit()?;
        Ok(())
    }

    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Self::open_db(path)?;
        let keys = KeyFile::open(&keys::path_of(path)).map_err(io_err)?;
        finish_erasures(&db, &keys)?;
        let dict = std::sync::OnceLock::new();
        if let Some(bytes) = db.begin_read()?.open_table(META)?.get("dict")? {
            let _ = dict.set(std::sync::Arc::new(Dictionary::new(bytes.value())));
        }
        Ok(RedbStore {
            path: path.to_path_buf(),
            db: std::sync::RwLock::new(Some(db)),
            hash_cache: Default::default(),
            dict,
            train_at: event_codec::TRAIN_AT.into(),
            keys: std::sync::Arc::new(keys),
            erased: Default::default(),
        })
    }

    fn open_db(path: &Path) -> Result<Database, StoreError> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)?;
        let mut tx = db.begin_write()?;
        tx.set_quick_repair(true);
        tx.open_table(HASHES)?;
        tx.open_table(ENTRIES)?;
        tx.open_table(EVENTS)?;
        tx.open_table(EVENTS_Z)?;
        tx.open_table(UID_HASHES)?;
        tx.open_table(FACETS)?;
        tx.open_table(REDACTED)?;
        tx.open_table(REDACTIONS)?;
        tx.open_table(META)?;
        tx.open_table(TOKENS)?;
        tx.open_table(TILES)?;
        tx.open_table(BUNDLES)?;
        upgrade(&tx)?;
        tx.commit()?;
        backfill_tiles(&db)?;
        Ok(db)
    }

    /// A write transaction with quick repair: each commit also records
    /// redb's allocator state (and commits in two phases), so that opening
    /// after a crash takes milliseconds instead of a walk of the whole file
    /// (58 s at 10M events, BENCHMARKS.md).
    fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        let guard = self.db.read().expect("not poisoned");
        let mut tx = guard.as_ref().ok_or(StoreError::Closed)?.begin_write()?;
        tx.set_quick_repair(true);
        Ok(tx)
    }

    fn begin_read(&self) -> Result<redb::ReadTransaction, StoreError> {
        let guard = self.db.read().expect("not poisoned");
        Ok(guard.as_ref().ok_or(StoreError::Closed)?.begin_read()?)
    }

    fn tree_state_in(&self, tx: &redb::ReadTransaction) -> Result<TreeState, StoreError> {
        let snap = TableHashes(&tx.open_table(HASHES)?);
        let meta = tx.open_table(META)?;
        let size = stored_size(&meta)?;
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

    /// Applies `writes` in `tx`: the new state, each write's outcome, the
    /// stored hashes written, the keys of the leaves appended (in order)
    /// and the (leaf, record) of each redaction.
    #[allow(clippy::type_complexity)]
    fn build(
        &self,
        tx: &WriteTransaction,
        state: TreeState,
        writes: &[Write],
        known: &dyn KnownUids,
    ) -> Result<
        (
            TreeState,
            Vec<Outcome>,
            Vec<(u64, Hash)>,
            Vec<EventKey>,
            Vec<(u64, u64)>,
        ),
        StoreError,
    > {
        {
            let mut t = Tables::open(
                tx,
                state.size,
                known,
                self.dict.get().map(|d| &**d),
                &self.keys,
            )?;
            let outcomes = writes
                .iter()
                .map(|w| t.apply(w))
                .collect::<Result<Vec<_>, _>>()?;
            let size = t.size;
            tile_rows::write_completed(
                &mut t.tiles,
                &mut t.bundles,
                &t.hashes,
                &t.entries,
                state.size,
                size,
            )?;
            let root = tree::root(size, &TableHashes(&t.hashes))
                .map_err(|err| StoreError::Corrupt(format!("root at {size}: {err}")))?;
            t.meta.insert("size", size.to_be_bytes().as_slice())?;
            t.meta.insert("root", root.0.as_slice())?;
            let last = t
                .meta
                .get("logged_time")?
                .map(|v| be_u64(v.value()))
                .unwrap_or(0);
            if t.logged_time > last {
                t.meta
                    .insert("logged_time", t.logged_time.to_be_bytes().as_slice())?;
            }
            Ok((
                TreeState { size, root },
                outcomes,
                std::mem::take(&mut t.fresh),
                std::mem::take(&mut t.appended),
                std::mem::take(&mut t.erasing),
            ))
        }
    }

    /// Trains the events' dictionary once the log holds enough of them
    /// (`event_codec`). A failure costs compression only, never a
    /// write: it is logged and tried again at twice the size, on the
    /// events before that size.
    fn train_if_due(&self, size: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.dict.get().is_some() || size < self.train_at.load(Relaxed) {
            return;
        }
        self.train_at.store(size.saturating_mul(2), Relaxed);
        let started = std::time::Instant::now();
        match self.train(size) {
            Ok(bytes) => tracing::info!(
                size,
                dictionary_bytes = bytes,
                ms = started.elapsed().as_millis() as u64,
                "events are compressed from here on"
            ),
            Err(e) => tracing::warn!(size, error = %e, "no events dictionary yet"),
        }
    }

    /// Trains on the last `TRAIN_AT` events below `size` (their shape
    /// only: `event_codec::Samples`).
    fn train(&self, size: u64) -> Result<usize, StoreError> {
        let snap = self.snap()?;
        let mut samples = event_codec::Samples::default();
        for i in size.saturating_sub(event_codec::TRAIN_AT)..size {
            if let EventRow::Present(e) = snap.event(i)? {
                if !samples.add(&e.jcs) {
                    break;
                }
            }
        }
        drop(snap);
        let bytes = samples.train().map_err(StoreError::Corrupt)?;
        let tx = self.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            if meta.get("dict")?.is_some() {
                return Err(StoreError::Corrupt("meta.dict is set already".into()));
            }
            meta.insert("dict", bytes.as_slice())?;
        }
        tx.commit()?;
        // Only now, with the dictionary durable, may rows use it.
        let _ = self.dict.set(std::sync::Arc::new(Dictionary::new(&bytes)));
        Ok(bytes.len())
    }

    /// A consistent read-only view of everything committed so far.
    fn snap(&self) -> Result<RedbSnapshot, StoreError> {
        let tx = self.begin_read()?;
        Ok(RedbSnapshot {
            hashes: tx.open_table(HASHES)?,
            hash_cache: self.hash_cache.clone(),
            dict: self.dict.get().cloned(),
            entries: Default::default(),
            events: Default::default(),
            events_z: Default::default(),
            facets: Default::default(),
            redacted: Default::default(),
            tiles: Default::default(),
            bundles: Default::default(),
            keys: self.keys.clone(),
            erased: self.erased.clone(),
            tx,
        })
    }
}

impl LogStore for RedbStore {
    /// Binds the store to a log identity on first use and refuses a
    /// different one later: a new key for an existing tree would be a new
    /// log claiming the old one's history.
    fn bind_identity(&self, origin: &str, vkey: &str) -> Result<(), StoreError> {
        let tx = self.begin_write()?;
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
    fn tree_state(&self) -> Result<TreeState, StoreError> {
        let tx = self.begin_read()?;
        self.tree_state_in(&tx)
    }

    /// Applies `writes` in order after the tree `state`, in one
    /// transaction that is durable when this returns. Returns the new
    /// state, each write's outcome, and the writes themselves.
    fn write(
        &self,
        state: TreeState,
        writes: Vec<Write>,
        known: &dyn KnownUids,
    ) -> Result<(TreeState, Vec<Outcome>, Vec<Write>), StoreError> {
        let tx = self.begin_write()?;
        let before = state.size;
        // The key slots from `before` on are overwritten below: they must
        // be of no committed leaf.
        let stored = stored_size(&tx.open_table(META)?)?;
        if stored != before {
            return Err(StoreError::Corrupt(format!(
                "a write after size {before}, but the log holds {stored} leaves"
            )));
        }
        // Every leaf's key is durable before the commit that adds the
        // leaf. The slots are written and synced on another thread while
        // the transaction is built, with the keys the leaves get if every
        // event here is appended (the usual case); if some are not
        // (retries, refusals), the slots are written again before the
        // commit. Slots past the size hold keys of no leaf: the next
        // append overwrites them before its own commit.
        let planned: Vec<EventKey> = writes.iter().flat_map(appendable).map(|e| e.key).collect();
        let (built, synced) = std::thread::scope(|s| {
            let sync = (!planned.is_empty()).then(|| {
                s.spawn(|| {
                    self.keys.put(before, &planned)?;
                    self.keys.sync()
                })
            });
            let built = self.build(&tx, state, &writes, known);
            let synced = sync.map_or(Ok(()), |h| h.join().expect("the key sync does not panic"));
            (built, synced)
        });
        let (state, outcomes, fresh, appended, erasing) = built?;
        synced.map_err(io_err)?;
        if planned.get(..appended.len()) != Some(&appended[..]) {
            self.keys.put(before, &appended).map_err(io_err)?;
            self.keys.sync().map_err(io_err)?;
        }
        tx.commit()?;
        // Committed hashes never change: the cache may hold them now.
        for (i, h) in fresh {
            self.hash_cache.put(i, h);
        }
        if !erasing.is_empty() {
            // The redactions are committed: their keys go, durably, before
            // they are acknowledged (a crash before this is finished by
            // the next open).
            self.erased
                .lock()
                .expect("not poisoned")
                .extend(erasing.iter().copied());
            for &(index, _) in &erasing {
                self.keys.erase(index).map_err(io_err)?;
            }
            self.keys.sync().map_err(io_err)?;
        }
        self.train_if_due(state.size);
        Ok((state, outcomes, writes))
    }

    /// Encodes `e`'s stored rows now, on the caller's thread: compressing
    /// was ~1/5 of the sequencer's time per event, and the sequencer is
    /// the one step that cannot run in parallel. An event encoded before
    /// the dictionary existed is encoded again when it is written.
    fn encode_ahead(&self, e: &mut Committed) {
        e.rows = Some(rows(e, self.dict.get().map(|d| &**d)));
    }

    /// Closes and opens the database again: after an I/O error (disk
    /// full) redb refuses every operation until then. Readers still
    /// holding transactions keep the file open, so this retries briefly.
    fn reopen(&self) -> Result<(), StoreError> {
        let mut guard = self.db.write().expect("not poisoned");
        drop(guard.take());
        let db = open_retrying(|| Self::open_db(&self.path))?;
        // A redaction whose key could not be erased (the I/O error) is
        // finished now.
        finish_erasures(&db, &self.keys)?;
        *guard = Some(db);
        Ok(())
    }

    /// Copies a consistent snapshot of every table into a new database at
    /// `path`, while appends go on (redb readers see one committed state).
    /// Returns the snapshot's tree state.
    ///
    /// The events' keys go into the backup's table `event_keys` (the
    /// keys of unredacted events only): a backup opens only what was not
    /// redacted when it was taken. A redaction committed while the
    /// backup is written may have erased a key the snapshot's rows need:
    /// the backup then holds that event as redacted, without its rows.
    fn backup_to(&self, path: &Path) -> Result<TreeState, StoreError> {
        let tx = self.begin_read()?;
        let state = self.tree_state_in(&tx)?;
        let out = create_private(path)?;
        copy_tables!(
            tx, out, HASHES, ENTRIES, EVENTS, EVENTS_Z, UID_HASHES, FACETS, REDACTED, REDACTIONS,
            META, TOKENS
        );
        // The keys, read after the snapshot: every leaf in it has its key
        // (durable before its commit) unless redacted since.
        let events_z = tx.open_table(EVENTS_Z)?;
        let mut gone = Vec::new();
        let mut start = 0;
        while start < state.size {
            let n = (state.size - start).min(50_000);
            let keys = self.keys.get_range(start, n).map_err(io_err)?;
            let w = out.begin_write()?;
            {
                let mut dst = w.open_table(BACKUP_KEYS)?;
                for (i, key) in (start..).zip(keys) {
                    match key {
                        Some(key) => {
                            dst.insert(i, key)?;
                        }
                        None => {
                            let sealed =
                                events_z.get(i)?.map(|v| v.value().first() == Some(&SEALED));
                            if sealed == Some(true) {
                                gone.push(i);
                            }
                        }
                    }
                }
            }
            w.commit()?;
            start += n;
        }
        let w = out.begin_write()?;
        {
            w.open_table(BACKUP_KEYS)?;
            let live = self.begin_read()?;
            let live = live.open_table(REDACTED)?;
            let (mut ez, mut fa) = (w.open_table(EVENTS_Z)?, w.open_table(FACETS)?);
            let (mut uids, mut red) = (w.open_table(UID_HASHES)?, w.open_table(REDACTED)?);
            for i in gone {
                let record = live.get(i)?.map(|r| r.value()).ok_or_else(|| {
                    StoreError::Corrupt(format!("event {i} is sealed and its key is missing"))
                })?;
                ez.remove(i)?;
                fa.remove(i)?;
                let row = uids.get(i)?.map(|v| v.value().to_vec());
                if let Some(mut row) = row {
                    row[0] = UID_REDACTED;
                    row[33..].fill(0);
                    uids.insert(i, row.as_slice())?;
                }
                red.insert(i, record)?;
            }
        }
        w.commit()?;
        Ok(state)
    }

    /// Why this store must not be appended to, if it must not: a log
    /// restored from a backup could sign, under the original key, sizes the
    /// original already signed with other roots.
    fn read_only(&self) -> Result<Option<String>, StoreError> {
        self.meta_text("read_only")
    }

    /// Marks the store read-only, with the reason.
    fn set_read_only(&self, why: &str) -> Result<(), StoreError> {
        self.set_meta_text("read_only", why)
    }

    /// Why this log was made writable without evidence that it holds
    /// everything its key signed (`restore --i-accept-fork-risk`), if it was.
    fn fork_risk(&self) -> Result<Option<String>, StoreError> {
        self.meta_text("fork_risk")
    }

    /// Records that this log was made writable at a fork risk, and why.
    fn set_fork_risk(&self, why: &str) -> Result<(), StoreError> {
        self.set_meta_text("fork_risk", why)
    }

    /// The largest `metadata.logged_time` ever appended.
    fn last_logged_time(&self) -> Result<u64, StoreError> {
        let tx = self.begin_read()?;
        let meta = tx.open_table(META)?;
        Ok(meta
            .get("logged_time")?
            .map(|v| be_u64(v.value()))
            .unwrap_or(0))
    }

    /// Every token record with its hash.
    fn tokens(&self) -> Result<Vec<crate::store::TokenRow>, StoreError> {
        let tx = self.begin_read()?;
        let t = tx.open_table(TOKENS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Checks everything the store holds against everything else: redb's
    /// own integrity check; every stored hash re-derived from the entries
    /// (leaf by leaf, each from hashes already checked); every event
    /// against its commitment; the root against `meta`; the tiles stored
    /// whole against the tree. Slow (reads it
    /// all): for `sealog check`, not startup. Calls `progress(done, size)`.
    fn verify_all(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<TreeState, StoreError> {
        {
            let mut guard = self.db.write().expect("not poisoned");
            let db = guard.as_mut().ok_or(StoreError::Closed)?;
            if !db
                .check_integrity()
                .map_err(|e| StoreError::Corrupt(format!("redb integrity check: {e}")))?
            {
                return Err(StoreError::Corrupt(
                    "redb's integrity check repaired the file".into(),
                ));
            }
        }
        let state = self.tree_state()?;
        let snap = self.snap()?;
        for row in snap.redacted()?.iter()? {
            let i = row?.0.value();
            if self.keys.get(i).map_err(io_err)?.is_some() {
                return Err(StoreError::Corrupt(format!(
                    "event {i} is redacted and its key is still in the key file"
                )));
            }
        }
        for n in 0..state.size {
            let commitment = snap.commitments(n, 1)?[0];
            let want = tree::stored_hashes(n, tree::leaf_hash(&commitment.0), &snap)
                .map_err(|e| StoreError::Corrupt(format!("leaf {n}: {e}")))?;
            let first = tree::stored_hash_index(0, n);
            let idx: Vec<u64> = (first..first + want.len() as u64).collect();
            let have = snap
                .read_hashes(&idx)
                .map_err(|e| StoreError::Corrupt(format!("leaf {n}: {e}")))?;
            if let Some(i) = (0..want.len()).find(|&i| want[i] != have[i]) {
                return Err(StoreError::Corrupt(format!(
                    "stored hash {} (appended with leaf {n}) is not what the entries give",
                    idx[i]
                )));
            }
            if let EventRow::Present(e) = snap.event(n)? {
                if sealog_verify::commitment::commitment(&e.salt, &e.jcs) != commitment {
                    return Err(StoreError::Corrupt(format!(
                        "event {n} does not match its commitment"
                    )));
                }
            }
            if n % 100_000 == 0 {
                progress(n, state.size);
            }
        }
        // The hashes and entries are checked: the tiles stored whole must
        // be what they give.
        let stored = [
            ("tile", lazy(&snap.tiles, &snap.tx, TILES)?),
            ("bundle", lazy(&snap.bundles, &snap.tx, BUNDLES)?),
        ];
        for index in 0..state.size / u64::from(FULL_WIDTH) {
            let built = [
                tile_rows::build_tile(&snap.hashes, index, FULL_WIDTH)?,
                tile_rows::build_bundle(snap.entries()?, index, FULL_WIDTH)?,
            ];
            for ((name, table), want) in stored.iter().zip(built) {
                if tile_rows::get(*table, index)? != Some(want) {
                    return Err(StoreError::Corrupt(format!(
                        "the stored {name} {index} is not what the tree gives"
                    )));
                }
            }
        }
        progress(state.size, state.size);
        Ok(state)
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot>, StoreError> {
        Ok(Box::new(self.snap()?))
    }
}

/// Restores the log database `db` (which must not exist) from the backup
/// file `backup` (`RedbStore::backup_to`): its tables are copied row by row
/// into a fresh file, and its events' keys into the key file beside it.
/// A copy of the file itself would keep the keys in a redb table, where a
/// later redaction could not erase them.
pub fn restore_into(backup: &Path, db: &Path) -> Result<(), StoreError> {
    let src = redb::ReadOnlyDatabase::open(backup)?;
    let tx = src.begin_read()?;
    let keys_path = keys::path_of(db);
    if keys_path.exists() {
        return Err(StoreError::Corrupt(format!(
            "{} exists: restore into a new directory",
            keys_path.display()
        )));
    }
    let out = create_private(db)?;
    // A backup from before `uid_hashes` holds `uid_log`: copied as it is,
    // it is upgraded when the log opens.
    let names: Vec<String> = tx.list_tables()?.map(|t| t.name().to_string()).collect();
    let has = |name: &str| names.iter().any(|n| n == name);
    copy_tables!(
        tx, out, HASHES, ENTRIES, EVENTS, EVENTS_Z, FACETS, REDACTED, REDACTIONS, META, TOKENS
    );
    if has("uid_log") {
        copy_tables!(tx, out, UID_LOG);
    }
    if has("uid_hashes") {
        copy_tables!(tx, out, UID_HASHES);
    }
    drop(out);
    let keys = KeyFile::open(&keys_path).map_err(io_err)?;
    if has("event_keys") {
        // Runs of consecutive leaves are written at once.
        let mut run: (u64, Vec<EventKey>) = (0, Vec::new());
        for row in tx.open_table(BACKUP_KEYS)?.iter()? {
            let (i, key) = row?;
            let i = i.value();
            if run.0 + run.1.len() as u64 != i {
                keys.put(run.0, &run.1).map_err(io_err)?;
                run = (i, Vec::new());
            }
            run.1.push(key.value());
        }
        keys.put(run.0, &run.1).map_err(io_err)?;
    }
    keys.sync().map_err(io_err)?;
    Ok(())
}

/// A new redb database at `path`, private from its first byte: it will
/// hold every event (sealed) or their keys.
fn create_private(path: &Path) -> Result<Database, StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))?;
    Ok(Database::create(path)?)
}

/// The tables of one write transaction, and the tree size as it grows.
struct Tables<'tx, 'k> {
    known: &'k dyn KnownUids,
    dict: Option<&'k Dictionary>,
    keys: &'k KeyFile,
    size: u64,
    hashes: Table<'tx, u64, [u8; 32]>,
    entries: Table<'tx, u64, [u8; 32]>,
    events: Table<'tx, u64, &'static [u8]>,
    events_z: Table<'tx, u64, &'static [u8]>,
    uid_hashes: Table<'tx, u64, &'static [u8]>,
    facets: Table<'tx, u64, &'static [u8]>,
    redacted: Table<'tx, u64, u64>,
    redactions: Table<'tx, u64, u64>,
    meta: Table<'tx, &'static str, &'static [u8]>,
    tokens: Table<'tx, [u8; 32], &'static [u8]>,
    tiles: Table<'tx, u64, &'static [u8]>,
    bundles: Table<'tx, u64, &'static [u8]>,
    /// The keys of the leaves appended, in order.
    appended: Vec<EventKey>,
    /// (leaf, record) of each redaction: their keys go once committed.
    erasing: Vec<(u64, u64)>,
    /// uids appended in this transaction, for in-batch retries.
    batch_uids: HashMap<String, (u64, [u8; 32])>,
    /// The largest logged_time appended in this transaction.
    logged_time: u64,
    /// The stored hashes this transaction wrote, by stored-hash index:
    /// once committed they go to the hash cache, where the receipts of
    /// this very batch read them (redb reads were ~4 % of a batch's CPU).
    fresh: Vec<(u64, Hash)>,
}

impl<'tx, 'k> Tables<'tx, 'k> {
    fn open(
        tx: &'tx WriteTransaction,
        size: u64,
        known: &'k dyn KnownUids,
        dict: Option<&'k Dictionary>,
        keys: &'k KeyFile,
    ) -> Result<Self, StoreError> {
        Ok(Tables {
            known,
            dict,
            keys,
            size,
            hashes: tx.open_table(HASHES)?,
            entries: tx.open_table(ENTRIES)?,
            events: tx.open_table(EVENTS)?,
            events_z: tx.open_table(EVENTS_Z)?,
            uid_hashes: tx.open_table(UID_HASHES)?,
            facets: tx.open_table(FACETS)?,
            redacted: tx.open_table(REDACTED)?,
            redactions: tx.open_table(REDACTIONS)?,
            meta: tx.open_table(META)?,
            tokens: tx.open_table(TOKENS)?,
            tiles: tx.open_table(TILES)?,
            bundles: tx.open_table(BUNDLES)?,
            appended: Vec::new(),
            erasing: Vec::new(),
            batch_uids: HashMap::new(),
            logged_time: 0,
            fresh: Vec::new(),
        })
    }

    fn apply(&mut self, w: &Write) -> Result<Outcome, StoreError> {
        Ok(match w {
            Write::Append(events) => {
                // A uid reused for other content refuses the whole request.
                let mut mine: HashMap<&str, &[u8; 32]> = HashMap::new();
                // Each uid is looked up once: the lookup may search the index.
                let mut logged = Vec::with_capacity(events.len());
                for e in events {
                    let f = &e.facets;
                    let found = self.known_uid(&f.uid)?;
                    let known = found.or_else(|| {
                        mine.get(f.uid.as_str())
                            .map(|c| (u64::MAX, Claim::Content(**c)))
                    });
                    if let Some((index, claim)) = known {
                        // A redacted event's uid answers the same whatever
                        // the content: comparing would confirm a guess of
                        // what was erased.
                        if let Some(record) = self.redacted_by(index, claim)? {
                            return Ok(Outcome::Refused(Refusal::UidRedacted {
                                uid: f.uid.clone(),
                                index,
                                record,
                            }));
                        }
                        if !self.same_content(index, claim, &f.content)? {
                            return Ok(Outcome::Refused(Refusal::UidConflict {
                                uid: f.uid.clone(),
                                index,
                            }));
                        }
                    }
                    mine.insert(&f.uid, &f.content);
                    logged.push(found.map(|(index, _)| index));
                }
                let mut placed = Vec::with_capacity(events.len());
                for (e, logged) in events.iter().zip(logged) {
                    // An earlier event of this request may have the uid.
                    let earlier = self.batch_uids.get(&e.facets.uid).map(|p| p.0);
                    placed.push(match logged.or(earlier) {
                        Some(index) => Placed::Duplicate(index),
                        None => Placed::New(self.append(e)?),
                    });
                }
                Outcome::Appended(placed)
            }
            Write::Redact { index, record } => {
                if *index >= self.size {
                    return Ok(Outcome::Refused(Refusal::NoSuchEvent(*index)));
                }
                if let Some(r) = self.redacted.get(index)? {
                    return Ok(Outcome::Refused(Refusal::AlreadyRedacted {
                        index: *index,
                        record: r.value(),
                    }));
                }
                self.facets.remove(index)?;
                self.events.remove(index)?;
                self.events_z.remove(index)?;
                // The uid stays (as its hash), its content claim goes.
                let uid_row = self.uid_hashes.get(index)?.map(|v| v.value().to_vec());
                if let Some(mut row) = uid_row {
                    row[0] = UID_REDACTED;
                    row[33..].fill(0);
                    self.uid_hashes.insert(index, row.as_slice())?;
                }
                let record_index = self.append(record)?;
                self.redacted.insert(index, record_index)?;
                self.redactions.insert(record_index, index)?;
                self.erasing.push((*index, record_index));
                Outcome::Redacted {
                    record: record_index,
                }
            }
            Write::CreateToken {
                hash,
                record,
                name,
                audit,
            } => {
                if self.active_token(name)?.is_some() {
                    return Ok(Outcome::Refused(Refusal::TokenExists(name.clone())));
                }
                self.tokens.insert(hash, record.as_slice())?;
                Outcome::Token {
                    audit: self.append(audit)?,
                }
            }
            Write::RevokeToken { name, audit } => {
                let Some((hash, mut record)) = self.active_token(name)? else {
                    return Ok(Outcome::Refused(Refusal::NoSuchToken(name.clone())));
                };
                record["revoked"] = serde_json::Value::Bool(true);
                let bytes = serde_json::to_vec(&record).expect("JSON serializes");
                self.tokens.insert(hash, bytes.as_slice())?;
                Outcome::Token {
                    audit: self.append(audit)?,
                }
            }
        })
    }

    /// The unrevoked token named `name`, as (hash, record).
    fn active_token(
        &self,
        name: &str,
    ) -> Result<Option<([u8; 32], serde_json::Value)>, StoreError> {
        for row in self.tokens.iter()? {
            let (k, v) = row?;
            let record: serde_json::Value = serde_json::from_slice(v.value())
                .map_err(|e| StoreError::Corrupt(format!("token record: {e}")))?;
            if record["name"] == name && record["revoked"] != true {
                return Ok(Some((k.value(), record)));
            }
        }
        Ok(None)
    }

    /// The index of the event with `uid`, if logged, and what the log
    /// keeps of its content.
    fn known_uid(&self, uid: &str) -> Result<Option<(u64, Claim)>, StoreError> {
        if let Some(&(i, content)) = self.batch_uids.get(uid) {
            return Ok(Some((i, Claim::Content(content))));
        }
        self.known.get(uid)
    }

    /// The redaction record of leaf `index`, if it is redacted (`index`
    /// is `u64::MAX` for an event earlier in the same request).
    fn redacted_by(&self, index: u64, claim: Claim) -> Result<Option<u64>, StoreError> {
        if index == u64::MAX {
            return Ok(None);
        }
        match (self.redacted.get(index)?, claim) {
            (Some(r), _) => Ok(Some(r.value())),
            (None, Claim::Redacted) => Err(StoreError::Corrupt(format!(
                "the uid row of leaf {index} says redacted, the log does not"
            ))),
            (None, _) => Ok(None),
        }
    }

    /// Whether leaf `index`, whose uid row keeps `claim`, has the content
    /// hash `content`.
    fn same_content(
        &self,
        index: u64,
        claim: Claim,
        content: &[u8; 32],
    ) -> Result<bool, StoreError> {
        match claim {
            Claim::Content(c) => Ok(&c == content),
            Claim::Tag(tag) => {
                let key = self.keys.get(index).map_err(io_err)?.ok_or_else(|| {
                    StoreError::Corrupt(format!("leaf {index} is not redacted but has no key"))
                })?;
                Ok(keys::content_tag(&key, content) == tag)
            }
            Claim::Redacted => Ok(false),
        }
    }

    /// Appends `e` as the next leaf with its private row and indexes.
    fn append(&mut self, e: &Committed) -> Result<u64, StoreError> {
        let n = self.size;
        let leaf = tree::leaf_hash(&e.commitment.0);
        let new = tree::stored_hashes(n, leaf, &TableHashes(&self.hashes))
            .map_err(|err| StoreError::Corrupt(format!("appending leaf {n}: {err}")))?;
        let first = tree::stored_hash_index(0, n);
        for (i, h) in new.iter().enumerate() {
            self.hashes.insert(first + i as u64, h.0)?;
            self.fresh.push((first + i as u64, *h));
        }
        self.entries.insert(n, e.commitment.0)?;
        let fresh;
        let r = match &e.rows {
            Some(r) if r.with_dictionary == self.dict.is_some() => r,
            _ => {
                fresh = rows(e, self.dict);
                &fresh
            }
        };
        self.events_z.insert(n, r.event.as_slice())?;
        self.facets.insert(n, r.facets.as_slice())?;
        self.uid_hashes.insert(n, r.uid.as_slice())?;
        self.appended.push(e.key);
        let f = &e.facets;
        self.batch_uids.insert(f.uid.clone(), (n, f.content));
        self.logged_time = self.logged_time.max(f.logged_time);
        self.size += 1;
        Ok(n)
    }
}

/// `e`'s stored rows: the event (compressed with `dict` when there is
/// one) and its facets, both sealed under its key, and its uid row.
fn rows(e: &Committed, dict: Option<&Dictionary>) -> crate::events::Rows {
    let mut plain = Vec::new();
    event_codec::encode(&e.salt, &e.jcs, dict, &mut plain);
    let mut event = Vec::with_capacity(1 + plain.len() + keys::OVERHEAD);
    event.push(SEALED);
    keys::seal(&e.key, Sealed::Event, &plain, &mut event);
    let mut facets = vec![SEALED];
    keys::seal(
        &e.key,
        Sealed::Facets,
        &facets_row::encode(&e.facets),
        &mut facets,
    );
    let mut uid = Vec::with_capacity(UID_ROW_LEN);
    uid.push(UID_TAGGED);
    uid.extend_from_slice(&uid_hash(&e.facets.uid));
    uid.extend_from_slice(&keys::content_tag(&e.key, &e.facets.content));
    crate::events::Rows {
        with_dictionary: dict.is_some(),
        event,
        facets,
        uid,
    }
}

/// The events of `w` that each become a leaf if it is applied in full.
fn appendable(w: &Write) -> Box<dyn Iterator<Item = &Committed> + '_> {
    match w {
        Write::Append(events) => Box::new(events.iter()),
        Write::Redact { record, .. } => Box::new(std::iter::once(record)),
        Write::CreateToken { audit, .. } | Write::RevokeToken { audit, .. } => {
            Box::new(std::iter::once(audit))
        }
    }
}

/// A key file failure: an I/O error of the log's storage.
fn io_err(e: std::io::Error) -> StoreError {
    redb::Error::Io(e).into()
}

/// redb's failures as the seam's: I/O ones want a reopen, a second open
/// of a held file is `AlreadyOpen`.
impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        match e {
            e @ (redb::Error::Io(_) | redb::Error::PreviousIo) => StoreError::Io(Box::new(e)),
            // A read of a snapshot whose database `reopen` has closed: the
            // store is being reopened, not damaged (try again).
            redb::Error::DatabaseClosed => StoreError::Closed,
            e @ redb::Error::DatabaseAlreadyOpen => StoreError::AlreadyOpen(e.to_string()),
            e => StoreError::Engine(Box::new(e)),
        }
    }
}

macro_rules! redb_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { redb::Error::from(e).into() }
        }
    )*};
}
redb_from!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// Zeroes the key of every redacted leaf that still has one: a crash
/// between a redaction's commit and the erasure of its key.
fn finish_erasures(db: &Database, keys: &KeyFile) -> Result<(), StoreError> {
    let tx = db.begin_read()?;
    let mut erased = 0u64;
    for row in tx.open_table(REDACTED)?.iter()? {
        let i = row?.0.value();
        if keys.get(i).map_err(io_err)?.is_some() {
            keys.erase(i).map_err(io_err)?;
            erased += 1;
        }
    }
    if erased > 0 {
        keys.sync().map_err(io_err)?;
        tracing::info!(erased, "keys of redacted events erased");
    }
    Ok(())
}

/// The tree size `meta` records (0 before the first leaf).
fn stored_size(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<u64, StoreError> {
    match meta.get("size")? {
        None => Ok(0),
        Some(v) => v
            .value()
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| StoreError::Corrupt("meta.size is not 8 bytes".into())),
    }
}

/// Full tiles stored per transaction when filling in those a log lacks.
const BACKFILL_STEP: u64 = 2048;

/// Stores the full tiles and bundles a log lacks: one written before
/// `tiles` existed, or restored from a backup (which leaves them out: they
/// are built from the tree). A no-op for a log that has them all.
fn backfill_tiles(db: &Database) -> Result<(), StoreError> {
    loop {
        let mut tx = db.begin_write()?;
        tx.set_quick_repair(true);
        {
            let want = stored_size(&tx.open_table(META)?)? / u64::from(FULL_WIDTH);
            let mut tiles = tx.open_table(TILES)?;
            let have = tile_rows::stored_count(&tiles)?;
            if have >= want {
                return Ok(());
            }
            let to = want.min(have + BACKFILL_STEP);
            let full = u64::from(FULL_WIDTH);
            tile_rows::write_completed(
                &mut tiles,
                &mut tx.open_table(BUNDLES)?,
                &tx.open_table(HASHES)?,
                &tx.open_table(ENTRIES)?,
                have * full,
                to * full,
            )?;
            tracing::info!(tiles = to, of = want, "storing full tiles whole");
        }
        tx.commit()?;
    }
}

/// The uid table of the format before the lookup indexes moved to
/// `index.redb`: metadata.uid → leaf index (8 bytes) || content hash.
const OLD_UIDS: TableDefinition<&str, &[u8]> = TableDefinition::new("uids");
/// That format's other lookup tables, now the index's.
const OLD_INDEX_TABLES: [&str; 6] = [
    "leaves", "by_user", "by_actor", "by_ip", "by_class", "by_time",
];

/// Brings a store of the earlier format to this one, in the opening
/// transaction: `uid_log` from `uids` (so retries of old events stay
/// idempotent), `redactions` from `redacted`, and the lookup tables
/// dropped (the index follower rebuilds them in `index.redb`).
fn upgrade(tx: &WriteTransaction) -> Result<(), StoreError> {
    let names: Vec<String> = tx.list_tables()?.map(|t| t.name().to_string()).collect();
    if names.iter().any(|n| n == "uids") {
        let mut rows = 0u64;
        {
            let old = tx.open_table(OLD_UIDS)?;
            let mut log = tx.open_table(UID_LOG)?;
            for row in old.iter()? {
                let (uid, v) = row?;
                let v = v.value();
                if v.len() != 40 {
                    return Err(StoreError::Corrupt(
                        "an old uids row is not 40 bytes".into(),
                    ));
                }
                let mut new = v[8..].to_vec();
                new.extend_from_slice(uid.value().as_bytes());
                log.insert(be_u64(&v[..8]), new.as_slice())?;
                rows += 1;
            }
            let redacted = tx.open_table(REDACTED)?;
            let mut redactions = tx.open_table(REDACTIONS)?;
            for row in redacted.iter()? {
                let (index, record) = row?;
                redactions.insert(record.value(), index.value())?;
            }
        }
        tx.delete_table(OLD_UIDS)?;
        tracing::info!(
            uids = rows,
            "store upgraded: uid_log and redactions written"
        );
    }
    for t in tx.list_tables()?.collect::<Vec<_>>() {
        if OLD_INDEX_TABLES.contains(&t.name()) {
            tx.delete_table(t)?;
        }
    }
    if tx.list_tables()?.any(|t| t.name() == "uid_log") {
        // The uids in clear go: each row keeps the uid's hash and the
        // plain content hash (these events have no key to tag it with).
        let mut rows = 0u64;
        {
            let old = tx.open_table(UID_LOG)?;
            let redacted = tx.open_table(REDACTED)?;
            let mut new = tx.open_table(UID_HASHES)?;
            for row in old.iter()? {
                let (i, v) = row?;
                let (i, v) = (i.value(), v.value());
                let bad = || StoreError::Corrupt(format!("uid_log row {i}"));
                if v.len() <= 32 {
                    return Err(bad());
                }
                let uid = std::str::from_utf8(&v[32..]).map_err(|_| bad())?;
                let mut out = Vec::with_capacity(UID_ROW_LEN);
                if redacted.get(i)?.is_some() {
                    out.push(UID_REDACTED);
                    out.extend_from_slice(&uid_hash(uid));
                    out.extend_from_slice(&[0; 32]);
                } else {
                    out.push(UID_CONTENT);
                    out.extend_from_slice(&uid_hash(uid));
                    out.extend_from_slice(&v[..32]);
                }
                new.insert(i, out.as_slice())?;
                rows += 1;
            }
        }
        tx.delete_table(UID_LOG)?;
        tracing::info!(rows, "store upgraded: uid_log is now uid_hashes");
    }
    Ok(())
}

/// A `uid_hashes` row: (SHA-256 of the uid, what is kept of the content).
fn decode_uid_row(i: u64, v: &[u8]) -> Result<([u8; 32], Claim), StoreError> {
    let bad = || StoreError::Corrupt(format!("uid_hashes row {i}"));
    if v.len() != UID_ROW_LEN {
        return Err(bad());
    }
    let hash = v[1..33].try_into().expect("32 bytes");
    let claim: [u8; 32] = v[33..].try_into().expect("32 bytes");
    let claim = match v[0] {
        UID_CONTENT => Claim::Content(claim),
        UID_TAGGED => Claim::Tag(claim),
        UID_REDACTED => Claim::Redacted,
        _ => return Err(bad()),
    };
    Ok((hash, claim))
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

/// A read transaction over the log's tables. Tables other than the
/// hashes open on first use: most reads need one or two.
pub struct RedbSnapshot {
    tx: redb::ReadTransaction,
    hashes: ReadOnlyTable<u64, [u8; 32]>,
    hash_cache: std::sync::Arc<crate::store::hash_cache::HashCache>,
    dict: Option<std::sync::Arc<Dictionary>>,
    entries: OnceCell<ReadOnlyTable<u64, [u8; 32]>>,
    events: OnceCell<ReadOnlyTable<u64, &'static [u8]>>,
    events_z: OnceCell<ReadOnlyTable<u64, &'static [u8]>>,
    facets: OnceCell<ReadOnlyTable<u64, &'static [u8]>>,
    redacted: OnceCell<ReadOnlyTable<u64, u64>>,
    tiles: OnceCell<ReadOnlyTable<u64, &'static [u8]>>,
    bundles: OnceCell<ReadOnlyTable<u64, &'static [u8]>>,
    keys: std::sync::Arc<KeyFile>,
    erased: std::sync::Arc<std::sync::Mutex<HashMap<u64, u64>>>,
}

impl HashReader for RedbSnapshot {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tree::Error> {
        let mut hashes = Vec::with_capacity(indexes.len());
        // (stored index, place in `hashes`) of the hashes the cache lacks.
        let mut missing = Vec::new();
        for (k, &i) in indexes.iter().enumerate() {
            hashes.push(self.hash_cache.get(i).unwrap_or_else(|| {
                missing.push((i, k));
                Hash([0; HASH_SIZE])
            }));
        }
        missing.sort_unstable();
        for run in missing.chunk_by(|a, b| b.0 - a.0 <= NEARBY) {
            self.read_run(run, &mut hashes)?;
        }
        Ok(hashes)
    }
}

/// Stored indexes this close are read by one range scan rather than a
/// lookup each: a proof's lowest siblings around its leaf, and those at
/// the tree's edge, lie near each other (a complete subtree of 16 leaves
/// stores its 31 hashes in a row). A scan costs about one lookup plus a
/// little a row; runs up to 32 apart measured no better than 8
/// (BENCHMARKS.md, "The hash cache: upper levels by position, lower levels
/// direct-mapped").
const NEARBY: u64 = 8;

impl RedbSnapshot {
    /// Reads `run`'s hashes (stored index, place in `hashes`; ascending,
    /// each within `NEARBY` of the one before) into `hashes` and the cache.
    fn read_run(&self, run: &[(u64, usize)], hashes: &mut [Hash]) -> Result<(), tree::Error> {
        let (first, last) = (run[0].0, run.last().expect("a run is never empty").0);
        let mut want = run.iter().peekable();
        let rows = self
            .hashes
            .range(first..=last)
            .map_err(|_| tree::Error::IndexesNotInTree)?;
        for row in rows {
            let (i, h) = row.map_err(|_| tree::Error::IndexesNotInTree)?;
            let i = i.value();
            while let Some(&&(want_i, k)) = want.peek() {
                if want_i != i {
                    break;
                }
                hashes[k] = Hash(h.value());
                self.hash_cache.put(i, hashes[k]);
                want.next();
            }
        }
        match want.next() {
            None => Ok(()),
            Some(_) => Err(tree::Error::IndexesNotInTree),
        }
    }
}

impl RedbSnapshot {
    fn entries(&self) -> Result<&ReadOnlyTable<u64, [u8; 32]>, StoreError> {
        lazy(&self.entries, &self.tx, ENTRIES)
    }

    fn events(&self) -> Result<&ReadOnlyTable<u64, &'static [u8]>, StoreError> {
        lazy(&self.events, &self.tx, EVENTS)
    }

    fn events_z(&self) -> Result<&ReadOnlyTable<u64, &'static [u8]>, StoreError> {
        lazy(&self.events_z, &self.tx, EVENTS_Z)
    }

    fn facet_table(&self) -> Result<&ReadOnlyTable<u64, &'static [u8]>, StoreError> {
        lazy(&self.facets, &self.tx, FACETS)
    }

    fn redacted(&self) -> Result<&ReadOnlyTable<u64, u64>, StoreError> {
        lazy(&self.redacted, &self.tx, REDACTED)
    }

    /// `t` as stored in `def`: only full tiles are.
    fn stored_tile(
        &self,
        cell: &OnceCell<ReadOnlyTable<u64, &'static [u8]>>,
        def: TableDefinition<u64, &'static [u8]>,
        t: &TileRef,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if t.width != FULL_WIDTH {
            return Ok(None);
        }
        tile_rows::get(lazy(cell, &self.tx, def)?, t.index)
    }

    /// The record of the redaction that erased leaf `index`'s key after
    /// this snapshot was taken (it still sees the sealed rows); an error
    /// if no redaction did: the key is missing.
    fn erased_since(&self, index: u64) -> Result<u64, StoreError> {
        let erased = self.erased.lock().expect("not poisoned");
        erased.get(&index).copied().ok_or_else(|| {
            StoreError::Corrupt(format!("event {index} is sealed and its key is missing"))
        })
    }

    /// The facets of a `facets` row `v` of leaf `index` whose key is
    /// `key` (read only for a sealed row); None once redacted.
    fn open_facets(
        &self,
        index: u64,
        v: &[u8],
        key: impl FnOnce() -> Result<Option<EventKey>, StoreError>,
    ) -> Result<Option<Facets>, StoreError> {
        if v.first() != Some(&SEALED) {
            return facets_row::decode(index, v).map(Some);
        }
        let Some(key) = key()? else {
            return self.erased_since(index).map(|_| None);
        };
        let row = keys::open(&key, Sealed::Facets, &v[1..]).ok_or_else(|| {
            StoreError::Corrupt(format!("facets {index} do not open with their key"))
        })?;
        facets_row::decode(index, &row).map(Some)
    }
}

impl Snapshot for RedbSnapshot {
    /// The data of tile `t`, which the tree must have: a full level-0 tile
    /// or bundle as stored, any other built from the tree's tables.
    fn tile(&self, t: &TileRef) -> Result<Vec<u8>, StoreError> {
        match t.level {
            None => {
                let commitments = match self.stored_tile(&self.bundles, BUNDLES, t)? {
                    Some(c) => c,
                    None => tile_rows::build_bundle(self.entries()?, t.index, t.width)?,
                };
                Ok(sealog_verify::tiles::entry_bundle(
                    commitments.chunks(HASH_SIZE),
                ))
            }
            Some(0) => match self.stored_tile(&self.tiles, TILES, t)? {
                Some(data) => Ok(data),
                None => tile_rows::build_tile(&self.hashes, t.index, t.width),
            },
            Some(level) => {
                tlog_tiles::Tile::new(sealog_verify::tiles::HEIGHT, level, t.index, t.width, false)
                    .read_data(self)
                    .map_err(|e| StoreError::Corrupt(format!("{t}: {e}")))
            }
        }
    }

    /// The commitments of leaves `start..start + count`.
    fn commitments(&self, start: u64, count: u64) -> Result<Vec<Hash>, StoreError> {
        tile_rows::commitments_in(self.entries()?, start, count)
    }

    /// Leaf `index`'s event, or why there is none.
    fn event(&self, index: u64) -> Result<EventRow, StoreError> {
        if let Some(v) = self.events_z()?.get(index)? {
            let v = v.value();
            let opened;
            let row = if v.first() == Some(&SEALED) {
                let Some(key) = self.keys.get(index).map_err(io_err)? else {
                    return self.erased_since(index).map(EventRow::Redacted);
                };
                opened = keys::open(&key, Sealed::Event, &v[1..]).ok_or_else(|| {
                    StoreError::Corrupt(format!("event {index} does not open with its key"))
                })?;
                &opened[..]
            } else {
                v
            };
            let (salt, jcs) = event_codec::decode(index, row, self.dict.as_deref())?;
            return Ok(EventRow::Present(StoredEvent { salt, jcs }));
        }
        if let Some(v) = self.events()?.get(index)? {
            let v = v.value();
            if v.len() < SALT_LEN {
                return Err(StoreError::Corrupt(format!(
                    "event {index} is shorter than its salt"
                )));
            }
            let (salt, jcs) = v.split_at(SALT_LEN);
            return Ok(EventRow::Present(StoredEvent {
                salt: salt.try_into().expect("split at SALT_LEN"),
                jcs: jcs.to_vec(),
            }));
        }
        Ok(match self.redacted()?.get(index)? {
            Some(r) => EventRow::Redacted(r.value()),
            None => EventRow::Absent,
        })
    }

    /// Leaf `index`'s facets, unless redacted or absent.
    fn facets(&self, index: u64) -> Result<Option<Facets>, StoreError> {
        match self.facet_table()?.get(index)? {
            None => Ok(None),
            Some(v) => self.open_facets(index, v.value(), || self.keys.get(index).map_err(io_err)),
        }
    }

    /// The (leaf index, what is kept of its content, SHA-256 of its
    /// metadata.uid) of the leaves in `range`.
    fn uid_rows(
        &self,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<(u64, Claim, [u8; 32])>, StoreError> {
        let t = self.tx.open_table(UID_HASHES)?;
        let mut out = Vec::new();
        for row in t.range(range)? {
            let (k, v) = row?;
            let (hash, claim) = decode_uid_row(k.value(), v.value())?;
            out.push((k.value(), claim, hash));
        }
        Ok(out)
    }

    fn each_facets(
        &self,
        range: std::ops::Range<u64>,
        f: &mut dyn FnMut(u64, Facets),
    ) -> Result<(), StoreError> {
        // The keys are read a window of slots at a time, not one by one.
        const WINDOW: u64 = 4096;
        let mut window: (u64, Vec<Option<EventKey>>) = (0, Vec::new());
        for row in self.facet_table()?.range(range.clone())? {
            let (k, v) = row?;
            let i = k.value();
            let key = || {
                if !(window.0..window.0 + window.1.len() as u64).contains(&i) {
                    let n = WINDOW.min(range.end - i);
                    window = (i, self.keys.get_range(i, n).map_err(io_err)?);
                }
                Ok(window.1[(i - window.0) as usize])
            };
            if let Some(facets) = self.open_facets(i, v.value(), key)? {
                f(i, facets);
            }
        }
        Ok(())
    }

    /// The redactions whose record is a leaf in `range`, as (record index,
    /// redacted leaf index).
    fn redactions(&self, range: std::ops::Range<u64>) -> Result<Vec<(u64, u64)>, StoreError> {
        let t = self.tx.open_table(REDACTIONS)?;
        let mut out = Vec::new();
        for row in t.range(range)? {
            let (k, v) = row?;
            out.push((k.value(), v.value()));
        }
        Ok(out)
    }
}

/// The redb driver (`store::Driver`).
pub struct Redb;

/// In a backup file only: the log's key files by name (`log.key`,
/// `log.vkey`, `admin.token`), as text.
const BACKUP_FILES: TableDefinition<&str, &str> = TableDefinition::new("backup");

impl Driver for Redb {
    fn open(&self, path: &Path) -> Result<Arc<dyn LogStore>, StoreError> {
        Ok(Arc::new(RedbStore::open(path)?))
    }

    fn restore(&self, backup: &Path, path: &Path) -> Result<(), StoreError> {
        restore_into(backup, path)
    }

    fn put_backup_files(&self, backup: &Path, files: &[(&str, String)]) -> Result<(), StoreError> {
        let db = Database::open(backup)?;
        let tx = db.begin_write()?;
        {
            let mut t = tx.open_table(BACKUP_FILES)?;
            for (name, text) in files {
                t.insert(*name, text.as_str())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn backup_files(&self, backup: &Path) -> Result<Vec<(String, String)>, StoreError> {
        let db = redb::ReadOnlyDatabase::open(backup)?;
        let tx = db.begin_read()?;
        let t = match tx.open_table(BACKUP_FILES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_string(), v.value().to_string()));
        }
        Ok(out)
    }

    fn open_witness(&self, path: &Path) -> Result<Box<dyn WitnessState>, StoreError> {
        Ok(Box::new(witness::RedbWitness::open(path)?))
    }

    fn open_index(&self, path: &Path) -> Result<Option<Box<dyn IndexStore>>, StoreError> {
        Ok(index::RedbIndex::open(path)?.map(|i| Box::new(i) as Box<dyn IndexStore>))
    }

    fn create_index(&self, path: &Path) -> Result<Box<dyn IndexStore>, StoreError> {
        Ok(Box::new(index::RedbIndex::create(path)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::conformance::{event, events, redact};
    use crate::store::NoKnownUids;
    use sha2::{Digest, Sha256};

    /// A store at `dir/name` holding test events `0..n`, and its state.
    fn store_with(dir: &Path, name: &str, n: usize) -> (RedbStore, TreeState) {
        let store = RedbStore::open(&dir.join(name)).unwrap();
        let (state, _) = store
            .append(store.tree_state().unwrap(), events(0..n), &NoKnownUids)
            .unwrap();
        (store, state)
    }

    #[test]
    fn a_cold_snapshot_reads_hashes_from_the_table_and_agrees_with_memory() {
        let dir = tempfile::tempdir().unwrap();
        drop(store_with(dir.path(), "log", 300));
        // Reopened: the cache is empty, so every hash below comes from
        // the table at first.
        let store = RedbStore::open(&dir.path().join("log")).unwrap();
        let snap = store.snapshot().unwrap();
        let mut mem = tree::MemoryHashes::default();
        for c in snap.commitments(0, 300).unwrap() {
            mem.append(tree::leaf_hash(&c.0));
        }
        for (size, leaf) in [
            (300, 0),
            (300, 137),
            (300, 299),
            (257, 256),
            (200, 31),
            (17, 16),
        ]
        .into_iter()
        .chain(
            (1..=300)
                .step_by(7)
                .flat_map(|n| (0..n).step_by(11).map(move |i| (n, i))),
        ) {
            assert_eq!(
                tree::prove_inclusion(size, leaf, &snap).unwrap(),
                tree::prove_inclusion(size, leaf, &mem).unwrap(),
                "leaf {leaf} in {size}"
            );
        }
        // Unsorted, repeated, near and far apart, some cached by now.
        let want = [40, 3, 41, 3, 595, 70, 44, 0, 590, 41];
        assert_eq!(
            snap.read_hashes(&want).unwrap(),
            mem.read_hashes(&want).unwrap()
        );
        let beyond = tree::stored_hash_count(300);
        assert!(snap.read_hashes(&[5, beyond, 6]).is_err(), "index {beyond}");
        // Reopened, so that the cache holds none of these.
        drop((snap, store));
        let store = RedbStore::open(&dir.path().join("log")).unwrap();
        let snap = store.snapshot().unwrap();
        assert!(
            snap.read_hashes(&[beyond - 2, beyond]).is_err(),
            "a run that reads past the tree's last stored hash"
        );
        assert_eq!(
            snap.read_hashes(&[beyond - 1, beyond - 3]).unwrap(),
            mem.read_hashes(&[beyond - 1, beyond - 3]).unwrap(),
            "and one that ends at it"
        );
    }

    /// Tile `t` of the tree in `mem`, as tlog-tiles defines it.
    fn tile_from(mem: &tree::MemoryHashes, commitments: &[Hash], t: &TileRef) -> Vec<u8> {
        match t.level {
            None => {
                let first = t.first_entry() as usize;
                let entries = &commitments[first..first + t.width as usize];
                sealog_verify::tiles::entry_bundle(entries.iter().map(|c| &c.0[..]))
            }
            Some(l) => {
                tlog_tiles::Tile::new(sealog_verify::tiles::HEIGHT, l, t.index, t.width, false)
                    .read_data(mem)
                    .unwrap()
            }
        }
    }

    /// The full tiles and bundles `store` holds whole, by index.
    fn stored_tiles(store: &RedbStore) -> (Vec<u64>, Vec<u64>) {
        let tx = store.begin_read().unwrap();
        let keys = |def| -> Vec<u64> {
            let t = tx.open_table(def).unwrap();
            let rows = t.iter().unwrap().map(|r| r.unwrap().0.value() >> 2);
            let mut tiles: Vec<u64> = rows.collect();
            tiles.dedup();
            assert!(tiles
                .iter()
                .all(|&i| tile_rows::get(&t, i).unwrap().is_some()));
            tiles
        };
        (keys(TILES), keys(BUNDLES))
    }

    #[test]
    fn tiles_are_stored_whole_when_complete_and_served_as_the_tree_gives_them() {
        let dir = tempfile::tempdir().unwrap();
        let (store, state) = store_with(dir.path(), "log", 300);
        assert_eq!(stored_tiles(&store), (vec![0], vec![0]));
        // Tile 1 completes across two transactions; tile 2 is partial.
        let (store, state) = {
            let (s, _) = store.append(state, events(300..500), &NoKnownUids).unwrap();
            (store, s)
        };
        store.append(state, events(500..600), &NoKnownUids).unwrap();
        assert_eq!(stored_tiles(&store), (vec![0, 1], vec![0, 1]));
        drop(store);

        let store = RedbStore::open(&dir.path().join("log")).unwrap();
        let snap = store.snapshot().unwrap();
        let commitments = snap.commitments(0, 600).unwrap();
        let mut mem = tree::MemoryHashes::default();
        for c in &commitments {
            mem.append(tree::leaf_hash(&c.0));
        }
        let tile = |level, index, width| TileRef {
            level,
            index,
            width,
        };
        for t in [
            tile(Some(0), 0, 256),
            tile(Some(0), 1, 256),
            tile(Some(0), 1, 3),
            tile(Some(0), 2, 88),
            tile(Some(1), 0, 2),
            tile(None, 1, 256),
            tile(None, 2, 88),
            tile(None, 0, 1),
        ] {
            assert_eq!(
                snap.tile(&t).unwrap(),
                tile_from(&mem, &commitments, &t),
                "{t}"
            );
        }
        let leaf = tree::stored_hash_index(0, 530);
        assert_eq!(store.hash_cache.get(leaf), None, "a tile's leaf hash");
        assert!(snap.tile(&tile(Some(0), 2, 89)).is_err(), "beyond the tree");
        assert!(snap.tile(&tile(None, 2, 89)).is_err(), "beyond the entries");
    }

    #[test]
    fn check_finds_a_stored_tile_the_tree_does_not_give() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with(dir.path(), "log", 600);
        assert!(store.verify_all(&mut |_, _| {}).is_ok());
        // Tile 1's third part (its last 6 hashes), then its second part
        // gone (the tile is short).
        let (third, second) = (1 << 2 | 2, 1 << 2 | 1);
        for (def, name) in [(TILES, "tile"), (BUNDLES, "bundle")] {
            let saved = |row| {
                let tx = store.begin_read().unwrap();
                let t = tx.open_table(def).unwrap();
                t.get(row).unwrap().unwrap().value().to_vec()
            };
            let (good3, good2) = (saved(third), saved(second));
            let tx = store.begin_write().unwrap();
            let mut bad = good3.clone();
            bad[100] ^= 1;
            tx.open_table(def)
                .unwrap()
                .insert(third, bad.as_slice())
                .unwrap();
            tx.commit().unwrap();
            let err = store.verify_all(&mut |_, _| {}).unwrap_err().to_string();
            assert!(err.contains(&format!("the stored {name} 1 ")), "{err}");

            let tx = store.begin_write().unwrap();
            {
                let mut t = tx.open_table(def).unwrap();
                t.insert(third, good3.as_slice()).unwrap();
                t.remove(second).unwrap();
            }
            tx.commit().unwrap();
            let err = store.verify_all(&mut |_, _| {}).unwrap_err().to_string();
            assert!(err.contains("stored tile 1 has 4192 bytes"), "{err}");

            let tx = store.begin_write().unwrap();
            tx.open_table(def)
                .unwrap()
                .insert(second, good2.as_slice())
                .unwrap();
            tx.commit().unwrap();
        }
        assert!(store.verify_all(&mut |_, _| {}).is_ok());
    }

    #[test]
    fn a_log_without_its_tiles_gets_them_on_opening() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with(dir.path(), "log", 1100);
        let rows = |store: &RedbStore| {
            let tx = store.begin_read().unwrap();
            let (tiles, bundles) = (
                tx.open_table(TILES).unwrap(),
                tx.open_table(BUNDLES).unwrap(),
            );
            (0..5)
                .map(|i| {
                    (
                        tile_rows::get(&tiles, i).unwrap(),
                        tile_rows::get(&bundles, i).unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        };
        let want = rows(&store);
        assert!(want[..4].iter().all(|(t, b)| t.is_some() && b.is_some()));
        assert_eq!(want[4], (None, None), "tile 4 is partial");
        // As a log written before the tables existed, or a backup.
        let tx = store.begin_write().unwrap();
        tx.delete_table(TILES).unwrap();
        tx.delete_table(BUNDLES).unwrap();
        tx.commit().unwrap();
        drop(store);

        let store = RedbStore::open(&dir.path().join("log")).unwrap();
        assert_eq!(rows(&store), want);
        assert!(store.verify_all(&mut |_, _| {}).is_ok());
    }

    #[test]
    fn a_commit_leaves_the_hashes_it_wrote_in_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (store, state) = store_with(dir.path(), "log", 100);
        let (_, _) = store.append(state, events(100..300), &NoKnownUids).unwrap();
        let tx = store.begin_read().unwrap();
        let table = tx.open_table(HASHES).unwrap();
        let (first, end) = (
            tree::stored_hash_index(0, 100),
            tree::stored_hash_index(0, 300),
        );
        for i in first..end {
            let stored = Hash(table.get(i).unwrap().unwrap().value());
            // The cache keeps the upper levels only while there is room,
            // and it has plenty here.
            assert_eq!(store.hash_cache.get(i), Some(stored), "stored hash {i}");
        }
    }

    /// An event shaped like a producer's: a template with a few fields
    /// that vary.
    fn realistic(i: usize) -> Committed {
        let jcs = format!(
            r#"{{"activity_id":1,"category_uid":3,"class_uid":3002,"metadata":{{"logged_time":{},"product":{{"name":"idp","vendor_name":"Example"}},"uid":"evt-{i:08}","version":"1.8.0"}},"severity_id":1,"src_endpoint":{{"ip":"10.{}.{}.{}"}},"status_id":{},"time":{},"type_uid":300201,"user":{{"name":"user{}@example.com","uid":"u-{}"}}}}"#,
            1_700_000_000_000u64 + i as u64,
            i % 7,
            i % 13,
            i % 251,
            1 + i % 2,
            1_700_000_000_000u64 + i as u64,
            i % 500,
            i % 500
        );
        let mut c = event(i);
        c.jcs = jcs.into_bytes();
        c.commitment = sealog_verify::commitment::commitment(&c.salt, &c.jcs);
        c
    }

    /// Leaf `i`'s `events_z` row as it was sealed (codec 0 or 1).
    fn opened_row(store: &RedbStore, i: u64) -> Vec<u8> {
        let tx = store.begin_read().unwrap();
        let t = tx.open_table(EVENTS_Z).unwrap();
        let row = t.get(i).unwrap().unwrap().value().to_vec();
        assert_eq!(row[0], SEALED, "leaf {i} sealed");
        let key = store.keys.get(i).unwrap().unwrap();
        keys::open(&key, Sealed::Event, &row[1..]).unwrap()
    }

    #[test]
    fn events_are_compressed_once_the_dictionary_is_trained() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let n = event_codec::TRAIN_AT as usize + 1000;
        let evs: Vec<Committed> = (0..n).map(realistic).collect();
        let stored_size = |store: &RedbStore, i: u64| {
            let row = opened_row(store, i);
            (row[0], row.len())
        };
        {
            let store = RedbStore::open(&path).unwrap();
            let mut state = store.tree_state().unwrap();
            for chunk in evs.chunks(1000) {
                state = store.append(state, chunk.to_vec(), &NoKnownUids).unwrap().0;
            }
            assert!(
                store.dict.get().is_some(),
                "trained at {}",
                event_codec::TRAIN_AT
            );
            let (codec, first) = stored_size(&store, 0);
            assert_eq!(codec, 0, "before the dictionary: as is");
            assert_eq!(first, 1 + 32 + evs[0].jcs.len());
            let (codec, last) = stored_size(&store, n as u64 - 1);
            assert_eq!(codec, 1);
            assert!(last * 2 < first, "{last} vs {first}");
            store
                .write(
                    state,
                    vec![Write::Redact {
                        index: n as u64 - 2,
                        record: event(n + 1),
                    }],
                    &NoKnownUids,
                )
                .unwrap();
        }
        let store = RedbStore::open(&path).unwrap();
        let snap = store.snapshot().unwrap();
        for (i, e) in evs.iter().enumerate() {
            match snap.event(i as u64).unwrap() {
                EventRow::Present(got) => {
                    assert_eq!((got.salt, &got.jcs), (e.salt, &e.jcs), "event {i}")
                }
                EventRow::Redacted(_) => assert_eq!(i, n - 2),
                EventRow::Absent => panic!("{i} absent"),
            }
        }
        let copy = dir.path().join("copy");
        store.backup_to(&copy).unwrap();
        restore_into(&copy, &dir.path().join("restored")).unwrap();
        let copy = RedbStore::open(&dir.path().join("restored")).unwrap();
        let EventRow::Present(got) = copy.snapshot().unwrap().event(n as u64 - 1).unwrap() else {
            panic!("backed up")
        };
        assert_eq!(got.jcs, evs[n - 1].jcs, "the backup holds the dictionary");
    }

    #[test]
    fn rows_encoded_ahead_are_stored_compressed_once_the_dictionary_exists() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("db")).unwrap();
        let n = event_codec::TRAIN_AT as usize + 1000;
        let ahead = |range: std::ops::Range<usize>| {
            let mut evs: Vec<Committed> = range.map(realistic).collect();
            for e in &mut evs {
                store.encode_ahead(e);
            }
            evs
        };
        // Encoded before the dictionary: raw, to be encoded again.
        let early = ahead(n..n + 10);
        assert!(early
            .iter()
            .all(|e| !e.rows.as_ref().unwrap().with_dictionary));
        let mut state = store.tree_state().unwrap();
        for chunk in ahead(0..n).chunks(1000) {
            state = store.append(state, chunk.to_vec(), &NoKnownUids).unwrap().0;
        }
        assert!(store.dict.get().is_some());
        let late = ahead(n + 10..n + 20);
        assert!(late
            .iter()
            .all(|e| e.rows.as_ref().unwrap().with_dictionary));
        let both: Vec<Committed> = early.into_iter().chain(late).collect();
        store.append(state, both.clone(), &NoKnownUids).unwrap();

        let snap = store.snapshot().unwrap();
        let facets = snap.facets_in(n as u64..n as u64 + 20, |f| f).unwrap();
        for (k, e) in both.iter().enumerate() {
            let i = (n + k) as u64;
            let row = opened_row(&store, i);
            assert_eq!(row[0], 1, "leaf {i} compressed");
            let EventRow::Present(got) = snap.event(i).unwrap() else {
                panic!("leaf {i} present")
            };
            assert_eq!((got.salt, &got.jcs), (e.salt, &e.jcs), "leaf {i}");
            // The facets row leaves the uid to `uid_log`.
            let mut want = e.facets.clone();
            want.uid.clear();
            assert_eq!(facets[k], (i, want));
        }
        // The first events were encoded ahead too, before any dictionary.
        let EventRow::Present(first) = snap.event(0).unwrap() else {
            panic!("leaf 0 present")
        };
        assert_eq!(first.jcs, realistic(0).jcs);
    }

    #[test]
    fn a_store_of_the_earlier_format_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            // The earlier format's uid and lookup tables, as it wrote them.
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut uids = tx.open_table(OLD_UIDS).unwrap();
                let mut row = 7u64.to_be_bytes().to_vec();
                row.extend_from_slice(&[5; 32]);
                uids.insert("evt-7", row.as_slice()).unwrap();
                let leaves: TableDefinition<[u8; 32], u64> = TableDefinition::new("leaves");
                tx.open_table(leaves).unwrap().insert([1; 32], 7).unwrap();
                tx.open_table(REDACTED).unwrap().insert(3, 9).unwrap();
                // Events as salt || JCS, without a codec byte.
                let mut row = vec![4u8; SALT_LEN];
                row.extend_from_slice(b"{\"i\":7}");
                tx.open_table(EVENTS)
                    .unwrap()
                    .insert(7, row.as_slice())
                    .unwrap();
            }
            tx.commit().unwrap();
        }
        let store = RedbStore::open(&path).unwrap();
        let snap = store.snapshot().unwrap();
        assert_eq!(
            snap.event(7).unwrap(),
            EventRow::Present(StoredEvent {
                salt: [4; SALT_LEN],
                jcs: b"{\"i\":7}".to_vec()
            })
        );
        assert_eq!(
            snap.uid_rows(0..10).unwrap(),
            [(7, Claim::Content([5; 32]), uid_hash("evt-7"))]
        );
        assert_eq!(snap.redactions(0..10).unwrap(), [(9, 3)]);
        let tx = store.begin_read().unwrap();
        let names: Vec<String> = tx
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_string())
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n == "uids" || n == "leaves" || n == "uid_log"),
            "{names:?}"
        );
        drop((tx, snap, store));
        RedbStore::open(&path).unwrap(); // and opening again changes nothing
    }

    const MARKER: &str = "zq-erase-marker-41c7";

    /// An event carrying `MARKER` in its body, user, IP and uid.
    fn marked(tag: &str) -> Committed {
        let facets = Facets {
            class_uid: 3002,
            uid: format!("{MARKER}-uid"),
            users: vec![format!("{MARKER}-user")],
            src_ip: Some(format!("{MARKER}-ip")),
            time: 1000,
            content: Sha256::digest(tag.as_bytes()).into(),
            ..Default::default()
        };
        let jcs = format!(r#"{{"message":"{MARKER} {tag}","user":{{"name":"{MARKER}-user"}}}}"#);
        Committed::new(jcs.into_bytes(), facets)
    }

    /// The bytes of every file under `dir`, recursively.
    fn every_byte(dir: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                out.extend(every_byte(&p));
            } else {
                out.extend(std::fs::read(&p).unwrap());
            }
        }
        out
    }

    fn holds(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn a_redaction_leaves_no_byte_of_the_event_its_salt_or_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log").join("db");
        std::fs::create_dir(path.parent().unwrap()).unwrap();
        let store = RedbStore::open(&path).unwrap();
        let e = marked("original");
        let (s, _) = store
            .append(
                store.tree_state().unwrap(),
                vec![event(0), e.clone(), event(2)],
                &NoKnownUids,
            )
            .unwrap();
        let key = store.keys.get(1).unwrap().unwrap();
        assert_eq!(key, e.key);
        // Control: before, the event is in the directory, readable with
        // its key, which is there too.
        let files = every_byte(path.parent().unwrap());
        assert!(holds(&files, &key), "the key is on disk");
        assert!(!holds(&files, MARKER.as_bytes()), "sealed: never in clear");
        assert!(!holds(&files, &e.salt), "the salt is sealed too");
        let EventRow::Present(got) = store.snapshot().unwrap().event(1).unwrap() else {
            panic!("present")
        };
        assert!(holds(&got.jcs, MARKER.as_bytes()));
        let stale = store.snapshot().unwrap();

        let (s2, out, _) = redact(&store, s, 1, 100);
        assert_eq!(out, [Outcome::Redacted { record: 3 }]);
        let files = every_byte(path.parent().unwrap());
        for (what, bytes) in [
            ("marker", MARKER.as_bytes()),
            ("salt", &e.salt),
            ("key", &key),
        ] {
            assert!(!holds(&files, bytes), "the {what} is gone");
        }
        let slots = std::fs::read(keys::path_of(&path)).unwrap();
        assert_eq!(&slots[32..64], &[0; 32], "zeros in place");
        // A snapshot from before sees the sealed rows, and that they are
        // redacted.
        assert_eq!(stale.event(1).unwrap(), EventRow::Redacted(3));
        assert_eq!(stale.facets(1).unwrap(), None);
        assert_eq!(stale.facets_in(0..3, |f| f).unwrap().len(), 2);
        drop(stale);

        // A backup taken after holds nothing of it either, and restores.
        let backup = dir.path().join("backup");
        store.backup_to(&backup).unwrap();
        let copy = std::fs::read(&backup).unwrap();
        for bytes in [MARKER.as_bytes(), &e.salt, &key] {
            assert!(!holds(&copy, bytes));
        }
        let restored = dir.path().join("restored");
        std::fs::create_dir(&restored).unwrap();
        restore_into(&backup, &restored.join("db")).unwrap();
        let r = RedbStore::open(&restored.join("db")).unwrap();
        assert_eq!(r.verify_all(&mut |_, _| ()).unwrap(), s2);
        let snap = r.snapshot().unwrap();
        assert_eq!(snap.event(1).unwrap(), EventRow::Redacted(3));
        for i in [0, 2, 3] {
            assert!(
                matches!(snap.event(i).unwrap(), EventRow::Present(_)),
                "{i}"
            );
        }
        drop((snap, r));
        assert!(!holds(&every_byte(&restored), MARKER.as_bytes()));

        // Reopened: still redacted, and a re-post answers the same
        // whatever its content.
        drop(store);
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(store.verify_all(&mut |_, _| ()).unwrap(), s2);
        let (_, claim, _) = store.snapshot().unwrap().uid_rows(1..2).unwrap()[0];
        assert_eq!(claim, Claim::Redacted);
        let known: HashMap<String, (u64, Claim)> =
            [(e.facets.uid.clone(), (1, claim))].into_iter().collect();
        let mut other = marked("another body");
        other.facets.uid = e.facets.uid.clone();
        for again in [e.clone(), other] {
            let (s3, out, _) = store
                .write(s2, vec![Write::Append(vec![again])], &known)
                .unwrap();
            assert_eq!(
                out,
                [Outcome::Refused(Refusal::UidRedacted {
                    uid: e.facets.uid.clone(),
                    index: 1,
                    record: 3
                })]
            );
            assert_eq!(s3, s2);
        }
        assert!(!holds(
            &every_byte(path.parent().unwrap()),
            MARKER.as_bytes()
        ));
    }

    #[test]
    fn a_leaf_commits_only_with_its_key_durable_in_its_slot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut store = RedbStore::open(&path).unwrap();
        let evs = [event(0), event(1), event(2)];
        // A retry in the batch: the leaves are not where the keys were
        // first written, and are written again before the commit.
        let (s, placed) = store
            .append(
                store.tree_state().unwrap(),
                vec![
                    evs[0].clone(),
                    evs[1].clone(),
                    evs[0].clone(),
                    evs[2].clone(),
                ],
                &NoKnownUids,
            )
            .unwrap();
        assert_eq!(placed[3], Placed::New(2));
        let file = KeyFile::open(&keys::path_of(&path)).unwrap();
        for (i, e) in evs.iter().enumerate() {
            assert_eq!(file.get(i as u64).unwrap(), Some(e.key), "slot {i}");
        }
        // The same uid's content claim is keyed: a retry is told from a
        // reuse only with the key.
        let (_, claim, hash) = store.snapshot().unwrap().uid_rows(1..2).unwrap()[0];
        assert_eq!(hash, uid_hash("uid-1"));
        let Claim::Tag(tag) = claim else {
            panic!("{claim:?}")
        };
        assert_ne!(tag, evs[1].facets.content);
        assert_eq!(tag, keys::content_tag(&evs[1].key, &evs[1].facets.content));

        // Keys that cannot be written: nothing commits.
        store.keys = std::sync::Arc::new(KeyFile::read_only(&keys::path_of(&path)).unwrap());
        let err = store.append(s, vec![event(3)], &NoKnownUids).unwrap_err();
        assert!(err.is_io(), "{err}");
        drop(store);
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(store.tree_state().unwrap(), s, "no leaf without its key");

        // A crash after a redaction's commit, before its key was erased:
        // opening erases it.
        let (_, out, _) = redact(&store, s, 1, 9);
        assert_eq!(out, [Outcome::Redacted { record: 3 }]);
        drop(store);
        let file = KeyFile::open(&keys::path_of(&path)).unwrap();
        file.put(1, &[evs[1].key]).unwrap();
        drop(file);
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(store.keys.get(1).unwrap(), None);
        assert!(store.verify_all(&mut |_, _| ()).is_ok());
    }

    #[test]
    fn rows_written_before_keys_are_read_and_their_uids_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let e = event(0);
        {
            // As the format before keys wrote a leaf: unsealed codec 0
            // row, binary facets, the uid in clear.
            drop(store_with(dir.path(), "db", 0));
            let scratch = KeyFile::open(&dir.path().join("x")).unwrap();
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut tables = Tables::open(&tx, 0, &NoKnownUids, None, &scratch).unwrap();
                tables.append(&e).unwrap();
                let mut row = Vec::new();
                event_codec::encode(&e.salt, &e.jcs, None, &mut row);
                tables.events_z.insert(0, row.as_slice()).unwrap();
                tables
                    .facets
                    .insert(0, facets_row::encode(&e.facets).as_slice())
                    .unwrap();
                tables.uid_hashes.remove(0).unwrap();
                let root = tree::root(1, &TableHashes(&tables.hashes)).unwrap();
                tables
                    .meta
                    .insert("size", 1u64.to_be_bytes().as_slice())
                    .unwrap();
                tables.meta.insert("root", root.0.as_slice()).unwrap();
            }
            let mut old = e.facets.content.to_vec();
            old.extend_from_slice(e.facets.uid.as_bytes());
            tx.open_table(UID_LOG)
                .unwrap()
                .insert(0, old.as_slice())
                .unwrap();
            tx.commit().unwrap();
        }
        std::fs::remove_file(keys::path_of(&path)).unwrap();
        let store = RedbStore::open(&path).unwrap();
        let s = store.verify_all(&mut |_, _| ()).unwrap();
        let snap = store.snapshot().unwrap();
        assert_eq!(
            snap.event(0).unwrap(),
            EventRow::Present(StoredEvent {
                salt: e.salt,
                jcs: e.jcs.clone()
            })
        );
        let mut want = e.facets.clone();
        want.uid.clear();
        assert_eq!(snap.facets(0).unwrap(), Some(want));
        let (_, claim, hash) = snap.uid_rows(0..1).unwrap()[0];
        assert_eq!(
            (claim, hash),
            (Claim::Content(e.facets.content), uid_hash("uid-0"))
        );
        // A retry of it is a duplicate, another body a conflict.
        let known: HashMap<String, (u64, Claim)> =
            [(e.facets.uid.clone(), (0, claim))].into_iter().collect();
        let (_, placed) = store.append(s, vec![e.clone()], &known).unwrap();
        assert_eq!(placed, [Placed::Duplicate(0)]);
        let mut other = event(5);
        other.facets.uid = e.facets.uid.clone();
        other.facets.content = [9; 32];
        let (_, out, _) = store
            .write(s, vec![Write::Append(vec![other])], &known)
            .unwrap();
        assert!(matches!(
            out[0],
            Outcome::Refused(Refusal::UidConflict { .. })
        ));
        // Redacted, it answers as a sealed one does.
        let (s2, _, _) = redact(&store, s, 0, 9);
        let (_, out, _) = store
            .write(s2, vec![Write::Append(vec![e.clone()])], &known)
            .unwrap();
        assert!(matches!(
            out[0],
            Outcome::Refused(Refusal::UidRedacted {
                index: 0,
                record: 1,
                ..
            })
        ));
    }
}
