//! The log's storage seam: the traits a storage driver implements, the
//! types they speak, and the contract every driver keeps.
//!
//! The layers above hold the log as an `Arc<dyn LogStore>` and read it
//! through a `Box<dyn Snapshot>`; they never name a database. One driver
//! today, redb (`redb/`: `sealog.redb`, the key file, the row encodings);
//! `store::engine` is the one place that picks it. Every driver runs the
//! same conformance suite (`store::conformance`). The contract, in full, is in
//! spec/storage.md ("Storage driver contract"); in short:
//!
//! - **One history.** A store has one writer. Opening a store another
//!   writer holds fails with [`StoreError::AlreadyOpen`]; a write names
//!   the state it extends and is refused if the store holds another. A
//!   driver that lets two writers append, or a write land on a stale
//!   state, lets the log sign two different trees of one size: a split
//!   view, which no checkpoint signature may ever cover. Whoever can make
//!   the driver do that can make the log fork.
//! - **A batch is atomic.** One [`LogStore::write`] is one transaction:
//!   the leaves, their stored hashes, the full tiles and bundles they
//!   complete, the event, facets and uid rows, redaction and token rows,
//!   and the new size and root. After an error or a crash either all of
//!   it is there or none of it.
//! - **Durable before the answer.** When `write` returns `Ok`, the batch
//!   survives a crash: the sequencer signs the new checkpoint and answers
//!   the clients only after that. A leaf's key is durable before its
//!   leaf; a redacted leaf's key is erased (durably) before `write`
//!   returns. A driver never acknowledges a write it can still lose.
//! - **Written once.** A stored hash, entry, full tile or bundle never
//!   changes once committed (a redaction erases the event's private rows
//!   and keeps the leaf), so the layers above cache them freely.
//! - **What may lag** is not here: the lookup index is derived from the
//!   log by a follower (`query::index`) and may fall behind; nothing a
//!   `LogStore` answers lags what it acknowledged.

pub mod engine;
pub mod hash_cache;
pub mod index_keys;
pub mod keys;
pub mod redb;

#[cfg(any(test, feature = "test-hooks"))]
pub mod conformance;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::events::{Committed, Facets};
use index_keys::Keys;
use sealog_verify::commitment::SALT_LEN;
use sealog_verify::tiles::TileRef;
use sealog_verify::tree::{self, Hash, HashReader};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O failure (disk full, a write error). The driver may refuse
    /// everything until [`LogStore::reopen`].
    #[error("storage: {0}")]
    Io(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Any other failure the storage engine reports.
    #[error("storage: {0}")]
    Engine(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Another writer holds the store (another process, or another open
    /// in this one): a store has one writer.
    #[error("storage: {0}")]
    AlreadyOpen(String),
    /// What the store holds contradicts itself (a row missing, a proof
    /// that does not hash to the stored root): never served as if true.
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    /// The store was made for another origin or verifier key: opening it
    /// would sign a second history under one name.
    #[error("store belongs to another log: {0}")]
    Identity(String),
    /// The store is closed between the two halves of a `reopen`: counts as
    /// I/O, so callers retry rather than report the store broken.
    #[error("the database is being reopened")]
    Closed,
    /// The lookup index failed an append's uid lookup: the log itself is
    /// fine (nothing to reopen).
    #[error("the lookup index: {0}")]
    Index(String),
}

impl StoreError {
    /// Whether this is an I/O failure (disk full, write error) after which
    /// the driver wants the store closed and opened again (`reopen`).
    pub fn is_io(&self) -> bool {
        matches!(self, StoreError::Io(_) | StoreError::Closed)
    }
}

/// The size and root of the stored tree.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TreeState {
    /// Leaves in the tree.
    pub size: u64,
    /// RFC 6962 root hash of those `size` leaves.
    pub root: Hash,
}

/// One change to the log, applied in order within a batch's transaction.
#[derive(Debug)]
pub enum Write {
    /// Append events; an event whose `metadata.uid` the log holds is not
    /// appended again.
    Append(Vec<Committed>),
    /// Delete leaf `index`'s event, salt and index entries, and append
    /// `record`, the event that puts the redaction on the record.
    Redact {
        /// Leaf whose event is erased (its leaf hash stays in the tree).
        index: u64,
        /// The redaction record, appended in the same transaction.
        record: Committed,
    },
    /// Store a token record and append its audit event. Refused if an
    /// unrevoked token has the same name.
    CreateToken {
        /// SHA-256 of the bearer secret: the secret itself is never stored.
        hash: [u8; 32],
        /// The token record (JSON), stored under `hash`.
        record: Vec<u8>,
        /// Unique among unrevoked tokens.
        name: String,
        /// The audit event that logs the creation.
        audit: Committed,
    },
    /// Mark the unrevoked token named `name` revoked; append its audit event.
    RevokeToken {
        /// The unrevoked token to revoke.
        name: String,
        /// The audit event that logs the revocation.
        audit: Committed,
    },
}

/// Where an appended event is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Placed {
    /// Appended now at this index.
    New(u64),
    /// Its `metadata.uid` was already at this index; nothing appended.
    Duplicate(u64),
}

/// What a `Write` did.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Where each event of an `Append` is, in the order given.
    Appended(Vec<Placed>),
    /// The event at the index of the write, and its record at `record`.
    Redacted {
        /// Leaf index of the redaction record.
        record: u64,
    },
    /// A token write and the index of its audit event.
    Token {
        /// Leaf index of the audit event.
        audit: u64,
    },
    /// Nothing done, and why.
    Refused(Refusal),
}

/// Why a write was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// A redaction named a leaf beyond the tree.
    #[error("no event at index {0}")]
    NoSuchEvent(u64),
    /// A redaction named an event already erased: one record per erasure.
    #[error("event {index} was already redacted by event {record}")]
    AlreadyRedacted {
        /// The leaf the redaction named.
        index: u64,
        /// Leaf index of the earlier redaction record.
        record: u64,
    },
    /// A token creation reused the name of an unrevoked token.
    #[error("an active token is already named {0:?}")]
    TokenExists(String),
    /// A revocation named no unrevoked token.
    #[error("no active token is named {0:?}")]
    NoSuchToken(String),
    /// An append reused a logged `metadata.uid` with other content: a
    /// retry must be byte-for-byte the same event to be idempotent.
    #[error("metadata.uid {uid:?} is event {index}, whose content differs")]
    UidConflict {
        /// The reused `metadata.uid`.
        uid: String,
        /// Leaf index of the event logged under it.
        index: u64,
    },
    /// The uid's event was redacted: whatever the content, the answer is
    /// this, so that a re-post confirms no guess of what was erased.
    #[error("metadata.uid {uid:?} is event {index}, redacted by event {record}")]
    UidRedacted {
        /// The reused `metadata.uid`.
        uid: String,
        /// Leaf index of the erased event.
        index: u64,
        /// Leaf index of its redaction record.
        record: u64,
    },
}

/// A private event as stored: its salt and canonical bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// The salt the leaf commits to with the event (spec/leaves.md).
    pub salt: [u8; SALT_LEN],
    /// The event's JCS (RFC 8785) bytes, as committed.
    pub jcs: Vec<u8>,
}

/// What the store says of leaf `index`'s event.
#[derive(Clone, Debug, PartialEq)]
pub enum EventRow {
    /// The event is held.
    Present(StoredEvent),
    /// Redacted by the event at this index.
    Redacted(u64),
    /// Beyond the tree.
    Absent,
}

/// What the log keeps of a logged event's content hash, to tell a retry
/// (the same content) from a reuse of its uid (other content).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Claim {
    /// The content hash itself: rows of events logged before keys.
    Content([u8; 32]),
    /// `keys::content_tag` of it under the leaf's key.
    Tag([u8; 32]),
    /// The event was redacted: nothing is kept.
    Redacted,
}

/// What the log keeps of a `metadata.uid`: SHA-256 of its UTF-8 bytes
/// (whose first 8 bytes are its index key, `index_keys::of_str`).
pub fn uid_hash(uid: &str) -> [u8; 32] {
    Sha256::digest(uid.as_bytes()).into()
}

/// Where an append looks up the `metadata.uid`s the log held before its
/// batch: the leaf index of the event with that uid, and what the log
/// keeps of its content.
pub trait KnownUids {
    /// The leaf index and content claim of the event logged under `uid`,
    /// if any; a lookup that cannot answer is an error, never `None`, or a
    /// retry would be appended twice.
    fn get(&self, uid: &str) -> Result<Option<(u64, Claim)>, StoreError>;
}

/// For writes whose events carry fresh uids only (the log's own records
/// while it is not serving).
pub struct NoKnownUids;

impl KnownUids for NoKnownUids {
    fn get(&self, _: &str) -> Result<Option<(u64, Claim)>, StoreError> {
        Ok(None)
    }
}

impl KnownUids for HashMap<String, (u64, Claim)> {
    fn get(&self, uid: &str) -> Result<Option<(u64, Claim)>, StoreError> {
        Ok(HashMap::get(self, uid).copied())
    }
}

/// A stored token: SHA-256 of the token, and its record (JSON).
pub type TokenRow = ([u8; 32], Vec<u8>);

/// The log's store: the one writer's side and the whole-store operations.
/// Its contract is the module's (and spec/storage.md's).
pub trait LogStore: Send + Sync {
    /// Binds the store to a log identity on first use and refuses a
    /// different one later (`StoreError::Identity`): a new key for an
    /// existing tree would be a new log claiming the old one's history.
    fn bind_identity(&self, origin: &str, vkey: &str) -> Result<(), StoreError>;

    /// The stored tree state, after checking that the stored hashes
    /// re-derive the stored root (`StoreError::Corrupt` if not): never a
    /// root the hashes behind it do not give.
    fn tree_state(&self) -> Result<TreeState, StoreError>;

    /// Applies `writes` in order after the tree `state`, in one
    /// transaction that is durable when this returns: all of it or, with
    /// an error, none of it. Refused (`Corrupt`) if the store does not
    /// hold exactly `state.size` leaves: no write lands on a stale state.
    /// `known` answers for the uids of leaves before the batch. Returns
    /// the new state, each write's outcome, and the writes themselves.
    fn write(
        &self,
        state: TreeState,
        writes: Vec<Write>,
        known: &dyn KnownUids,
    ) -> Result<(TreeState, Vec<Outcome>, Vec<Write>), StoreError>;

    /// Appends `events` after `state` in one durable transaction (a
    /// shorthand for one `Write::Append`).
    fn append(
        &self,
        state: TreeState,
        events: Vec<Committed>,
        known: &dyn KnownUids,
    ) -> Result<(TreeState, Vec<Placed>), StoreError> {
        let (state, mut outcomes, _) = self.write(state, vec![Write::Append(events)], known)?;
        match outcomes.pop() {
            Some(Outcome::Appended(placed)) => Ok((state, placed)),
            other => unreachable!("an append answers Appended, not {other:?}"),
        }
    }

    /// Encodes `e`'s stored rows now, on the caller's thread, so that the
    /// sequencer (the one step that cannot run in parallel) does not. A
    /// driver that encodes nothing ahead leaves `e` as it is.
    fn encode_ahead(&self, e: &mut Committed);

    /// A consistent read-only view of everything committed so far.
    fn snapshot(&self) -> Result<Box<dyn Snapshot>, StoreError>;

    /// Closes and opens the store again, after an I/O error.
    fn reopen(&self) -> Result<(), StoreError>;

    /// Writes a consistent snapshot of the log into a new backup file at
    /// `path` (which must not exist), while writes go on, with the keys of
    /// its unredacted events. Returns the snapshot's tree state.
    fn backup_to(&self, path: &Path) -> Result<TreeState, StoreError>;

    /// Why this store must not be appended to, if it must not: a log
    /// restored from a backup could sign, under the original key, sizes
    /// the original already signed with other roots.
    fn read_only(&self) -> Result<Option<String>, StoreError>;

    /// Marks the store read-only, with the reason (durably).
    fn set_read_only(&self, why: &str) -> Result<(), StoreError>;

    /// Why this log was made writable without evidence that it holds
    /// everything its key signed (`restore --i-accept-fork-risk`), if it was.
    fn fork_risk(&self) -> Result<Option<String>, StoreError>;

    /// Records that this log was made writable at a fork risk, and why.
    fn set_fork_risk(&self, why: &str) -> Result<(), StoreError>;

    /// The largest `metadata.logged_time` ever appended.
    fn last_logged_time(&self) -> Result<u64, StoreError>;

    /// Every token record with its hash (SHA-256 of the token).
    fn tokens(&self) -> Result<Vec<TokenRow>, StoreError>;

    /// Checks everything the store holds against everything else (the
    /// engine's own integrity check, every stored hash from the entries,
    /// every event against its commitment, the root, the tiles stored
    /// whole, the keys of redacted leaves). Slow: for `sealog check`, on
    /// a stopped log (a driver may refuse while snapshots are open).
    /// Calls `progress(done, size)`.
    fn verify_all(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<TreeState, StoreError>;
}

/// A read transaction over the log: one committed state, unchanged by
/// later writes (except that an event redacted since reads as redacted:
/// its key is gone). As a `HashReader` it returns exactly the hashes
/// asked for, or an error if any is not in its tree.
pub trait Snapshot: HashReader + Send {
    /// The data of tile `t` (tlog-tiles), which the tree must have.
    fn tile(&self, t: &TileRef) -> Result<Vec<u8>, StoreError>;

    /// The commitments of leaves `start..start + count`; an error if any
    /// is beyond the tree.
    fn commitments(&self, start: u64, count: u64) -> Result<Vec<Hash>, StoreError>;

    /// Leaf `index`'s event, or why there is none.
    fn event(&self, index: u64) -> Result<EventRow, StoreError>;

    /// Leaf `index`'s facets, unless redacted or absent.
    fn facets(&self, index: u64) -> Result<Option<Facets>, StoreError>;

    /// The (leaf index, what is kept of its content, SHA-256 of its
    /// metadata.uid) of the leaves in `range`, ascending.
    fn uid_rows(
        &self,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<(u64, Claim, [u8; 32])>, StoreError>;

    /// Calls `f` with the facets of each unredacted leaf in `range`, in
    /// ascending order.
    fn each_facets(
        &self,
        range: std::ops::Range<u64>,
        f: &mut dyn FnMut(u64, Facets),
    ) -> Result<(), StoreError>;

    /// The redactions whose record is a leaf in `range`, as (record index,
    /// redacted leaf index), ascending.
    fn redactions(&self, range: std::ops::Range<u64>) -> Result<Vec<(u64, u64)>, StoreError>;
}

impl dyn Snapshot + '_ {
    /// What `f` makes of the facets of each unredacted leaf in `range`
    /// (the index keeps only their keys, so a round of 131,072 leaves need
    /// not hold all their strings at once).
    pub fn facets_in<T>(
        &self,
        range: std::ops::Range<u64>,
        mut f: impl FnMut(Facets) -> T,
    ) -> Result<Vec<(u64, T)>, StoreError> {
        let mut out =
            Vec::with_capacity(range.end.saturating_sub(range.start).min(1 << 20) as usize);
        self.each_facets(range, &mut |i, facets| out.push((i, f(facets))))?;
        Ok(out)
    }
}

impl HashReader for Box<dyn Snapshot + '_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tree::Error> {
        (**self).read_hashes(indexes)
    }
}

impl HashReader for &(dyn Snapshot + '_) {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tree::Error> {
        (**self).read_hashes(indexes)
    }
}

/// A shared store is a store: `&arc` passes where a `&dyn LogStore` goes.
impl LogStore for Arc<dyn LogStore> {
    fn bind_identity(&self, origin: &str, vkey: &str) -> Result<(), StoreError> {
        (**self).bind_identity(origin, vkey)
    }
    fn tree_state(&self) -> Result<TreeState, StoreError> {
        (**self).tree_state()
    }
    fn write(
        &self,
        state: TreeState,
        writes: Vec<Write>,
        known: &dyn KnownUids,
    ) -> Result<(TreeState, Vec<Outcome>, Vec<Write>), StoreError> {
        (**self).write(state, writes, known)
    }
    fn encode_ahead(&self, e: &mut Committed) {
        (**self).encode_ahead(e)
    }
    fn snapshot(&self) -> Result<Box<dyn Snapshot>, StoreError> {
        (**self).snapshot()
    }
    fn reopen(&self) -> Result<(), StoreError> {
        (**self).reopen()
    }
    fn backup_to(&self, path: &Path) -> Result<TreeState, StoreError> {
        (**self).backup_to(path)
    }
    fn read_only(&self) -> Result<Option<String>, StoreError> {
        (**self).read_only()
    }
    fn set_read_only(&self, why: &str) -> Result<(), StoreError> {
        (**self).set_read_only(why)
    }
    fn fork_risk(&self) -> Result<Option<String>, StoreError> {
        (**self).fork_risk()
    }
    fn set_fork_risk(&self, why: &str) -> Result<(), StoreError> {
        (**self).set_fork_risk(why)
    }
    fn last_logged_time(&self) -> Result<u64, StoreError> {
        (**self).last_logged_time()
    }
    fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        (**self).tokens()
    }
    fn verify_all(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<TreeState, StoreError> {
        (**self).verify_all(progress)
    }
}

/// A boxed snapshot is a snapshot: `&boxed` passes where a `&dyn
/// Snapshot` goes.
impl Snapshot for Box<dyn Snapshot + '_> {
    fn tile(&self, t: &TileRef) -> Result<Vec<u8>, StoreError> {
        (**self).tile(t)
    }
    fn commitments(&self, start: u64, count: u64) -> Result<Vec<Hash>, StoreError> {
        (**self).commitments(start, count)
    }
    fn event(&self, index: u64) -> Result<EventRow, StoreError> {
        (**self).event(index)
    }
    fn facets(&self, index: u64) -> Result<Option<Facets>, StoreError> {
        (**self).facets(index)
    }
    fn uid_rows(
        &self,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<(u64, Claim, [u8; 32])>, StoreError> {
        (**self).uid_rows(range)
    }
    fn each_facets(
        &self,
        range: std::ops::Range<u64>,
        f: &mut dyn FnMut(u64, Facets),
    ) -> Result<(), StoreError> {
        (**self).each_facets(range, f)
    }
    fn redactions(&self, range: std::ops::Range<u64>) -> Result<Vec<(u64, u64)>, StoreError> {
        (**self).redactions(range)
    }
}

/// A witness's durable state: the latest checkpoint it cosigned for each
/// log origin (bytes the witness encodes). A witness cosigns only after
/// `set_latest` has returned, so `set_latest` is durable when it returns;
/// the witness serializes its check-and-update, the state need not.
pub trait WitnessState: Send + Sync {
    /// What was last stored for `origin`.
    fn latest(&self, origin: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Replaces what is stored for `origin`, durably.
    fn set_latest(&self, origin: &str, value: &[u8]) -> Result<(), StoreError>;
}

/// Which index a query walks.
#[derive(Clone, Debug, PartialEq)]
pub enum IndexKey {
    /// Events whose `user.uid` or `user.name` is this.
    User(String),
    /// Events whose `actor.user.uid` or `actor.user.name` is this.
    Actor(String),
    /// Events whose `src_endpoint.ip` is this.
    Ip(String),
    /// Events of this OCSF `class_uid`.
    Class(u32),
    /// Every event with time in the range, in time order.
    Time {
        /// First time included (ms since the epoch, as the event's `time`).
        from: u64,
        /// Last time included.
        to: u64,
    },
    /// Every unredacted event, in index order.
    All,
}

/// Leaf indexes an index scan yields: (time, index) for `IndexKey::Time`,
/// (0, index) otherwise.
pub type IndexScan<'a> = Box<dyn Iterator<Item = Result<(u64, u64), StoreError>> + 'a>;

/// The lookup index's storage (`query::index` decides what goes in it).
/// Unlike the log, it is derived: it may lag the log by any number of
/// leaves, and a driver may lose it (the index is then rebuilt from the
/// log). What it must keep: a round is atomic (its rows and its progress
/// commit together, or none of it), and a view is one committed state.
pub trait IndexStore: Send + Sync {
    /// Leaves below the first are indexed; the second is the log's root
    /// at that size, as the round that reached it stored it.
    fn progress(&self) -> Result<(u64, Option<Vec<u8>>), StoreError>;

    /// A round: one write transaction, durable at `finish` if `durable`.
    fn begin_round(&self, durable: bool) -> Result<Box<dyn IndexRound + '_>, StoreError>;

    /// A consistent read-only view of the index.
    fn view(&self) -> Result<Box<dyn IndexView>, StoreError>;

    /// Closes and opens the index again, after an I/O error.
    fn reopen(&self) -> Result<(), StoreError>;
}

/// One round of the index follower: rows in, then `finish`; dropped
/// without `finish`, nothing of it is kept.
pub trait IndexRound {
    /// (leaf hash key, leaf index) rows; a lookup takes the lowest index.
    fn add_leaves(&mut self, rows: Vec<(u64, u64)>) -> Result<(), StoreError>;
    /// (uid key, leaf index) rows; a lookup takes the lowest index.
    fn add_uids(&mut self, rows: Vec<(u64, u64)>) -> Result<(), StoreError>;
    /// Unredacted leaves and the keys each is indexed under, in leaf
    /// order, all above every leaf added before.
    fn add_events(&mut self, keys: &[(u64, Keys)]) -> Result<(), StoreError>;
    /// Removes what leaf `leaf` was indexed under (by `add_events`; its
    /// leaf hash and uid rows stay).
    fn remove_event(&mut self, leaf: u64) -> Result<(), StoreError>;
    /// Records the progress (`IndexStore::progress`) and commits.
    fn finish(self: Box<Self>, indexed: u64, root: Hash) -> Result<(), StoreError>;
}

/// A read transaction over the index.
pub trait IndexView: Send {
    /// Leaves below this are in this view.
    fn indexed(&self) -> Result<u64, StoreError>;
    /// Calls `f` with the key of every indexed uid.
    fn each_uid_key(&self, f: &mut dyn FnMut(u64)) -> Result<(), StoreError>;
    /// The leaves with a uid of key `key`, lowest first (candidates: the
    /// caller checks them against the log).
    fn uid_candidates(&self, key: u64) -> Result<Vec<u64>, StoreError>;
    /// The leaves with a leaf hash of key `key`, lowest first (candidates).
    fn leaf_candidates(&self, key: u64) -> Result<Vec<u64>, StoreError>;
    /// Leaf indexes under `key`, in (key, index) order or its reverse,
    /// starting after `after` (the last (time, index) or index seen).
    fn scan(
        &self,
        key: &IndexKey,
        newest_first: bool,
        after: Option<(u64, u64)>,
    ) -> Result<IndexScan<'_>, StoreError>;
}

/// A storage engine: how to open its stores and move a log through a
/// backup file. The conformance suite takes one.
pub trait Driver: Send + Sync {
    /// Opens (or creates) the log's store at `path`, as its one writer:
    /// `StoreError::AlreadyOpen` if another writer holds it.
    fn open(&self, path: &Path) -> Result<Arc<dyn LogStore>, StoreError>;

    /// Restores the log at `path` (which must not exist) from a backup
    /// file written by `LogStore::backup_to`, its events' keys included.
    fn restore(&self, backup: &Path, path: &Path) -> Result<(), StoreError>;

    /// Stores the named text files (the log's key files) in the backup
    /// file at `backup`, beside the log.
    fn put_backup_files(&self, backup: &Path, files: &[(&str, String)]) -> Result<(), StoreError>;

    /// The text files stored in the backup file at `backup`.
    fn backup_files(&self, backup: &Path) -> Result<Vec<(String, String)>, StoreError>;

    /// Opens (or creates) a witness's state at `path`.
    fn open_witness(&self, path: &Path) -> Result<Box<dyn WitnessState>, StoreError>;

    /// Opens the lookup index at `path`; None if it is an index of
    /// another layout (it is then rebuilt).
    fn open_index(&self, path: &Path) -> Result<Option<Box<dyn IndexStore>>, StoreError>;

    /// Makes an empty lookup index at `path` (a file that is empty or
    /// absent: the caller creates it private).
    fn create_index(&self, path: &Path) -> Result<Box<dyn IndexStore>, StoreError>;
}

/// Opens a store again after an I/O error: readers still holding
/// transactions keep the file open, so this tries for about a second.
pub(crate) fn open_retrying<T, E>(mut open: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let mut opened = open();
    for _ in 1..50 {
        if opened.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        opened = open();
    }
    opened
}

/// A big-endian u64 (0 if `b` is not 8 bytes).
pub(crate) fn be_u64(b: &[u8]) -> u64 {
    b.try_into().map(u64::from_be_bytes).unwrap_or(0)
}
