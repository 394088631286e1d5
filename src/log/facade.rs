//! The `Log` facade: the one place that owns the log for its callers.
//!
//! Everything a caller (the HTTP routes, the server's startup, the `token`
//! commands) does with the log goes through here: append (prepare events,
//! hand them to the sequencer, wait until they are durable and signed,
//! build their receipts), read (an event, a receipt, a page of a query),
//! prove (inclusion, consistency, tiles through the tile cache), redact,
//! record token changes, and follow (the signed size the followers wait
//! on). The domain's metrics are counted here, so every caller counts the
//! same way; callers authorize, parse, call one method, and serialize.
//!
//! What must stay true: every write goes through the sequencer (or, with
//! the log stopped, through `Offline`, which no running log shares), so
//! there is one writer; and a method answers only from what is durable
//! and under a signed checkpoint.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use serde::Serialize;
use serde_json::Value;

use crate::events::{self, records, Appender, Committed, EventError};
use crate::log::sequencer::{self, AppendError, Head, MemoHashes, Sequenced, Sequencer};
use crate::log::tile_cache::TileCache;
use crate::query::index::{Index, IndexError, View};
use crate::query::{Cursor, Query};
use crate::store::{
    EventRow, LogStore, NoKnownUids, Outcome, Refusal, Snapshot, StoreError, StoredEvent,
    TreeState, Write,
};
use crate::sys::clock;
use crate::sys::metrics::{self, METRICS};
use sealog_verify::note::LogSigner;
use sealog_verify::receipt::{ConsistencyProof, InclusionProof, Receipt};
use sealog_verify::tiles::TileRef;
use sealog_verify::tree::{self, Hash};

/// How long a read waits for the index to cover the size it answers for
/// (normally milliseconds; longer only while it catches up after a restart).
const INDEX_WAIT: Duration = Duration::from_secs(10);

/// Why the log did not do what it was asked. The HTTP server maps each
/// kind to one status code (`server::http::ApiError`); the command line
/// shows the message.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// No such event, leaf or tile in the tree the log answers for.
    #[error("{0}")]
    NotFound(String),
    /// The event was redacted by the record at `record`.
    #[error("event {index} was redacted by event {record}")]
    Redacted {
        /// The redacted event.
        index: u64,
        /// The log's record of the redaction.
        record: u64,
    },
    /// An argument out of what the log holds (a size beyond the latest
    /// checkpoint, an event that names no user): the caller's to fix.
    #[error("{message}")]
    BadArgument {
        /// The argument at fault, as the caller named it.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A token change the log's state refuses (a name already active).
    #[error("{0}")]
    Conflict(String),
    /// A write no one may make: redacting the log's own records.
    #[error("{0}")]
    Protected(String),
    /// A record the log builds itself is invalid (a bug, or a name the
    /// caller did not check).
    #[error("{0}")]
    Record(#[from] EventError),
    /// The sequencer did not append (full queue, stopping, read-only,
    /// a uid conflict, storage).
    #[error("{0}")]
    Append(#[from] AppendError),
    /// The store could not be read.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The lookup index could not answer.
    #[error("{0}")]
    Index(#[from] IndexError),
}

/// An event as stored, with the commitment its leaf hashes.
pub struct LoggedEvent {
    /// Its leaf index.
    pub index: u64,
    /// Its canonical form and salt.
    pub event: StoredEvent,
    /// SHA-256(salt || JCS(event)): what the leaf commits to.
    pub commitment: Hash,
}

/// One page of a query's answer.
pub struct EventPage {
    /// The events, in the query's order.
    pub events: Vec<LoggedEvent>,
    /// Where the next page starts, when there may be more.
    pub next: Option<Cursor>,
}

/// The checkpoint a receipt's proof reaches.
pub enum ReceiptAt {
    /// The latest checkpoint the log signed.
    Latest,
    /// The log's checkpoint at this size (signed now: a past size's root
    /// is fixed by hashes never rewritten, so this cannot fork the log).
    Size(u64),
    /// A checkpoint the caller holds (a witnessed one), when it covers
    /// the event (its size exceeds the index and is at most the latest
    /// size); else the latest.
    Checkpoint(Arc<Head>),
}

/// A redaction done: the record that puts it on the log and the
/// checkpoint covering that record.
pub struct Redaction {
    /// The index of the log's record of the redaction.
    pub record: u64,
    /// The signed head that covers the record.
    pub head: Arc<Head>,
}

/// A token change as the log records it: the stored record (opaque to
/// the log: the server's token table reads it) and who made the change.
pub struct NewToken<'a, S> {
    /// The token's name (already checked by the caller).
    pub name: &'a str,
    /// Its scopes, as the audit event names them.
    pub scopes: &'a [S],
    /// SHA-256 of the token: what the store keeps instead of the token.
    pub hash: [u8; 32],
    /// The token record as stored.
    pub record: Vec<u8>,
    /// Who creates it.
    pub by: &'a str,
}

/// The log of a running server: the sequencer, the store and index it
/// reads, the signer of past checkpoints, and the tile cache.
pub struct Log {
    store: Arc<dyn LogStore>,
    sequencer: Arc<Sequencer>,
    index: Arc<Index>,
    /// Signs checkpoints at past sizes (receipts against a checkpoint a
    /// client holds). Signing a past size's true root cannot fork the
    /// log: that root is fixed by hashes that are never rewritten.
    signer: Arc<LogSigner>,
    tiles: TileCache,
    max_future_skew_ms: u64,
}

impl Log {
    /// The log over a started sequencer. `max_future_skew_ms` is how far
    /// past the log's clock an appended event's `time` may lie.
    pub fn new(
        store: Arc<dyn LogStore>,
        sequencer: Arc<Sequencer>,
        index: Arc<Index>,
        signer: Arc<LogSigner>,
        max_future_skew_ms: u64,
    ) -> Self {
        Log {
            store,
            sequencer,
            index,
            signer,
            tiles: TileCache::default(),
            max_future_skew_ms,
        }
    }

    /// The latest signed tree head.
    pub fn head(&self) -> Arc<Head> {
        self.sequencer.head()
    }

    /// Follows the signed tree size: what every follower waits on.
    pub fn watch_size(&self) -> tokio::sync::watch::Receiver<u64> {
        self.sequencer.watch_size()
    }

    /// Events waiting for the sequencer.
    pub fn queue_depth(&self) -> usize {
        self.sequencer.queue_depth()
    }

    /// Leaves the lookup index covers.
    pub fn indexed(&self) -> u64 {
        self.index.indexed()
    }

    /// The sequencer, for the followers that are handed it.
    pub fn sequencer(&self) -> &Arc<Sequencer> {
        &self.sequencer
    }

    /// The store, for the followers and operations that read it whole.
    pub fn store(&self) -> &Arc<dyn LogStore> {
        &self.store
    }

    /// The lookup index.
    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// A new batch of events appended by `by`, logged at the log's clock
    /// now. Fill it with `Batch::push`, then `Log::append` it.
    pub fn batch<'a>(&'a self, by: Appender<'a>) -> Batch<'a> {
        Batch {
            log: self,
            by,
            logged_time: clock::now_ms(),
            events: Vec::new(),
        }
    }

    /// Appends `batch` and returns its events' receipts, in order, once
    /// they are durable and under a signed checkpoint. An event whose
    /// `metadata.uid` the log already holds is not appended again: its
    /// receipt is the original one, marked `duplicate`. Counts the
    /// request and its events by outcome (`sealog_append_*`), and the
    /// duplicates.
    pub async fn append(&self, batch: Batch<'_>) -> Result<Vec<Receipt>, LogError> {
        let n = batch.events.len();
        match self.sequencer.append(batch.events).await {
            Ok(receipts) => {
                let dups = receipts.iter().filter(|r| r.duplicate).count() as u64;
                METRICS.duplicates.fetch_add(dups, Relaxed);
                metrics::append("ok", n);
                Ok(receipts)
            }
            Err(e) => {
                let outcome = match &e {
                    AppendError::QueueFull | AppendError::IndexBehind(_) => "overloaded",
                    // A uid already logged with other content is the
                    // client's conflict, not a fault of the log's storage.
                    AppendError::Refused(_) => "conflict",
                    _ => "storage",
                };
                metrics::append(outcome, n);
                Err(e.into())
            }
        }
    }

    /// The stored event at `index` below the latest checkpoint.
    pub fn event(&self, index: u64) -> Result<LoggedEvent, LogError> {
        let size = self.head().size;
        let snap = self.store.snapshot()?;
        let event = stored_event(&snap, index, size)?;
        let commitment = snap.commitments(index, 1)?[0];
        Ok(LoggedEvent {
            index,
            event,
            commitment,
        })
    }

    /// The receipt of the event at `index` (below the latest checkpoint;
    /// a redacted one's receipt carries no event), proven against `at`.
    pub fn receipt(&self, index: u64, at: ReceiptAt) -> Result<Receipt, LogError> {
        let latest = self.head();
        let snap = self.store.snapshot()?;
        // Read once: its absence or redaction answers before `at` is
        // weighed, and the receipt is made of it.
        let event = stored_event(&snap, index, latest.size)?;
        let head = match at {
            ReceiptAt::Latest => latest,
            ReceiptAt::Checkpoint(h) => match h.size > index && h.size <= latest.size {
                true => h,
                false => latest,
            },
            ReceiptAt::Size(n) if n > index && n <= latest.size => {
                let root = tree::root(n, &snap)
                    .map_err(|e| StoreError::Corrupt(format!("root at {n}: {e}")))?;
                Arc::new(Head {
                    size: n,
                    root,
                    checkpoint: self.signer.sign(n, root),
                })
            }
            ReceiptAt::Size(_) => {
                return Err(LogError::BadArgument {
                    field: "size",
                    message: format!("size must be in {}..={}", index + 1, latest.size),
                })
            }
        };
        Ok(sequencer::receipt_of(
            EventRow::Present(event),
            &snap,
            &MemoHashes::new(&snap),
            index,
            &head,
        )?)
    }

    /// The events of `range` a stream sends, in index order, from one
    /// snapshot: redacted ones left out; those of class `class` and
    /// naming `user` (as user or actor) only, where given; one that
    /// cannot be read or parsed as `Err(why)`, logged and counted
    /// (`sealog_stream_errors_total`). An error: the store cannot be read
    /// at all (logged and counted too).
    pub fn stream_events(
        &self,
        range: std::ops::Range<u64>,
        class: Option<u64>,
        user: Option<&str>,
    ) -> Result<Vec<StreamedEvent>, StoreError> {
        fn stream_error(what: &str, error: &dyn std::fmt::Display) {
            tracing::error!(error = %error, "stream: {what}");
            METRICS.stream_errors.fetch_add(1, Relaxed);
        }
        let snap = self.store.snapshot().inspect_err(|e| {
            stream_error("cannot read the store; ending the stream", e);
        })?;
        let mut out = Vec::new();
        for i in range {
            let e = match snap.event(i) {
                Ok(EventRow::Present(e)) => e,
                // Redacted events are not streamed.
                Ok(EventRow::Redacted(_)) => continue,
                Ok(EventRow::Absent) => {
                    stream_error("an event is missing from the store", &i);
                    out.push((i, Err("missing from the store".into())));
                    continue;
                }
                Err(e) => {
                    stream_error("cannot read an event", &e);
                    out.push((i, Err("cannot be read".into())));
                    continue;
                }
            };
            let v = match serde_json::from_slice::<Value>(&e.jcs) {
                Ok(v) => v,
                Err(e) => {
                    stream_error("cannot parse a stored event", &e);
                    out.push((i, Err("cannot be parsed".into())));
                    continue;
                }
            };
            let class_ok = class.is_none_or(|c| v["class_uid"].as_u64() == Some(c));
            let user_ok = user.is_none_or(|u| match snap.facets(i) {
                Ok(f) => f.is_some_and(|f| {
                    f.users.iter().any(|x| x == u) || f.actors.iter().any(|x| x == u)
                }),
                Err(e) => {
                    stream_error("cannot read an event's users", &e);
                    false
                }
            });
            if class_ok && user_ok {
                out.push((i, Ok(v)));
            }
        }
        Ok(out)
    }

    /// The receipts of the events at `indexes` against one head, reading
    /// each proof node once.
    pub fn receipts(
        &self,
        snap: &dyn Snapshot,
        indexes: &[u64],
        head: &Head,
    ) -> Result<Vec<Receipt>, LogError> {
        let reader = MemoHashes::new(&snap);
        indexes
            .iter()
            .map(|&i| Ok(sequencer::stored_receipt(snap, &reader, i, head)?))
            .collect()
    }

    /// A view of the index covering the leaves below `size`, waiting for
    /// the index to get there, and a snapshot of the store taken after
    /// the wait (one held while waiting would pin pages the log could
    /// otherwise reuse).
    pub async fn view(&self, size: u64) -> Result<(View, Box<dyn Snapshot>), LogError> {
        let deadline = tokio::time::Instant::now() + INDEX_WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            self.index.wait_for(size, left).await?;
            let view = self.index.view()?;
            // An index reopened after an I/O error may have gone back to
            // its last durable round since the wait said yes.
            if view.indexed()? >= size {
                return Ok((view, self.store.snapshot()?));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// One page of `q`'s answer over the latest checkpoint. Counts the
    /// query (`sealog_queries_total`).
    pub async fn query(&self, q: &Query) -> Result<EventPage, LogError> {
        let size = self.head().size;
        let (view, snap) = self.view(size).await?;
        METRICS.queries.fetch_add(1, Relaxed);
        let page = q.run(&view, &snap, size)?;
        let mut events = Vec::with_capacity(page.events.len());
        for (index, event) in page.events {
            let commitment = snap.commitments(index, 1)?[0];
            events.push(LoggedEvent {
                index,
                event,
                commitment,
            });
        }
        Ok(EventPage {
            events,
            next: page.next,
        })
    }

    /// The index of the leaf whose hash is `leaf` in the tree of `size`.
    pub async fn leaf_index(&self, leaf: Hash, size: u64) -> Result<u64, LogError> {
        let (view, snap) = self.view(size).await?;
        match view.leaf_index(leaf, &snap)? {
            Some(i) if i < size => Ok(i),
            _ => Err(LogError::NotFound(format!(
                "no leaf with that hash in the tree of size {size}"
            ))),
        }
    }

    /// The inclusion proof of leaf `index` in the tree of `size` (RFC 9162
    /// §2.1.3); the caller checks `index < size <=` the latest size.
    /// Counts it (`sealog_inclusion_proofs_total`).
    pub fn prove_inclusion(&self, index: u64, size: u64) -> Result<InclusionProof, LogError> {
        let snap = self.store.snapshot()?;
        METRICS.inclusion_proofs.fetch_add(1, Relaxed);
        let hashes = tree::prove_inclusion(size, index, &snap)
            .map_err(|e| StoreError::Corrupt(format!("inclusion {index} in {size}: {e}")))?;
        Ok(InclusionProof {
            index,
            size,
            hashes,
        })
    }

    /// The consistency proof between the trees of `from` and `to` (RFC
    /// 9162 §2.1.4); the caller checks `1 <= from <= to <=` the latest
    /// size. Counts it (`sealog_consistency_proofs_total`).
    pub fn prove_consistency(&self, from: u64, to: u64) -> Result<ConsistencyProof, LogError> {
        let snap = self.store.snapshot()?;
        METRICS.consistency_proofs.fetch_add(1, Relaxed);
        let hashes = tree::prove_consistency(from, to, &snap)
            .map_err(|e| StoreError::Corrupt(format!("consistency {from}..{to}: {e}")))?;
        Ok(ConsistencyProof { from, to, hashes })
    }

    /// The data of tile `t` (C2SP tlog-tiles) in the latest tree; full
    /// tiles from the cache once read. Counts it (`sealog_tiles_total`).
    pub fn tile(&self, t: &TileRef) -> Result<Bytes, LogError> {
        let size = self.head().size;
        if !t.exists_in(size) {
            return Err(LogError::NotFound(format!(
                "{t} does not exist in the tree of size {size}"
            )));
        }
        METRICS.tiles.fetch_add(1, Relaxed);
        if let Some(data) = self.tiles.get(t) {
            return Ok(data);
        }
        let data = Bytes::from(self.store.snapshot()?.tile(t)?);
        self.tiles.put(t, data.clone());
        Ok(data)
    }

    /// Redacts the event at `index` for `reason`, by `by`: deletes its
    /// content and salt (its leaf stays) and appends the log's record of
    /// the redaction. The log's own records (token changes, redactions,
    /// findings) are the record of what admins did: they cannot be
    /// redacted.
    pub async fn redact(&self, index: u64, reason: &str, by: &str) -> Result<Redaction, LogError> {
        let size = self.head().size;
        if index >= size {
            return Err(LogError::NotFound(format!("no event at index {index}")));
        }
        if let EventRow::Present(e) = self.store.snapshot()?.event(index)? {
            let v: Value = serde_json::from_slice(&e.jcs)
                .map_err(|err| StoreError::Corrupt(format!("event {index}: {err}")))?;
            if records::is_own_record(&v) {
                return Err(LogError::Protected(format!(
                    "event {index} is the log's own record; it cannot be redacted"
                )));
            }
        }
        let now = clock::now_ms();
        let record = own_record(records::redaction(index, reason, by, now), now)?;
        let done = self
            .sequencer
            .submit(Write::Redact { index, record })
            .await?;
        match done.outcome {
            Outcome::Redacted { record } => {
                tracing::info!(index, record, by, "event redacted");
                Ok(Redaction {
                    record,
                    head: done.head,
                })
            }
            Outcome::Refused(Refusal::AlreadyRedacted { index, record }) => {
                Err(LogError::Redacted { index, record })
            }
            Outcome::Refused(r) => Err(LogError::NotFound(r.to_string())),
            other => Err(unexpected(other)),
        }
    }

    /// Stores a new token's record with the audit event of its creation,
    /// and returns the audit event's index. `Conflict` if an active token
    /// has the name.
    pub async fn create_token<S: Serialize>(&self, t: NewToken<'_, S>) -> Result<u64, LogError> {
        let done = self.sequencer.submit(token_created(t)?).await?;
        token_outcome(done.outcome, LogError::Conflict)
    }

    /// Marks the active token `name` revoked, with the audit event of its
    /// revocation by `by`, and returns the audit event's index.
    /// `NotFound` if no active token has the name.
    pub async fn revoke_token(&self, name: &str, by: &str) -> Result<u64, LogError> {
        let write = token_revoked(name, by)?;
        let Sequenced { outcome, .. } = self.sequencer.submit(write).await?;
        token_outcome(outcome, LogError::NotFound)
    }
}

/// A request's events, prepared as they are parsed (`Log::batch`).
pub struct Batch<'a> {
    log: &'a Log,
    by: Appender<'a>,
    logged_time: u64,
    events: Vec<Committed>,
}

impl Batch<'_> {
    /// Prepares `event` for the log (`events::prepare`: validated,
    /// `metadata` set, canonical form and commitment), refuses one whose
    /// `time` lies too far past the log's clock, and encodes its stored
    /// rows now, on the caller's thread rather than the sequencer's. The
    /// `Value` is consumed: a request holds one parsed event at a time.
    pub fn push(&mut self, event: Value) -> Result<(), EventError> {
        let mut e = events::prepare(event, self.logged_time, self.by)?;
        events::not_after(&e, self.logged_time, self.log.max_future_skew_ms)?;
        self.log.store.encode_ahead(&mut e);
        self.events.push(e);
        Ok(())
    }

    /// Events in the batch.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// The log of a stopped server (the server's startup before its
/// sequencer runs, the `token` commands): writes straight to the store.
/// What must stay true: no running log shares the store (the store's
/// lock sees to it), so the one-writer rule holds.
pub struct Offline<'a> {
    store: &'a dyn LogStore,
    state: TreeState,
}

impl<'a> Offline<'a> {
    /// The stopped log in `store`, whose durable state is `state`.
    pub fn new(store: &'a dyn LogStore, state: TreeState) -> Self {
        Offline { store, state }
    }

    /// The durable state after the writes made so far.
    pub fn state(&self) -> TreeState {
        self.state
    }

    /// As `Log::create_token`.
    pub fn create_token<S: Serialize>(&mut self, t: NewToken<'_, S>) -> Result<u64, LogError> {
        let outcome = self.write(token_created(t)?)?;
        token_outcome(outcome, LogError::Conflict)
    }

    /// As `Log::revoke_token`.
    pub fn revoke_token(&mut self, name: &str, by: &str) -> Result<u64, LogError> {
        let outcome = self.write(token_revoked(name, by)?)?;
        token_outcome(outcome, LogError::NotFound)
    }

    fn write(&mut self, write: Write) -> Result<Outcome, LogError> {
        let (state, mut outcomes, _) = self.store.write(self.state, vec![write], &NoKnownUids)?;
        self.state = state;
        Ok(outcomes.remove(0))
    }
}

/// The stored event at `index` in `snap` below `size`, or `NotFound` /
/// `Redacted`.
pub fn stored_event(snap: &dyn Snapshot, index: u64, size: u64) -> Result<StoredEvent, LogError> {
    if index >= size {
        return Err(LogError::NotFound(format!(
            "no event at index {index}; the log has {size}"
        )));
    }
    match snap.event(index)? {
        EventRow::Present(e) => Ok(e),
        EventRow::Redacted(record) => Err(LogError::Redacted { index, record }),
        EventRow::Absent => Err(StoreError::Corrupt(format!("event {index} missing")).into()),
    }
}

/// A leaf a stream sends: its event, or why it cannot be read.
pub type StreamedEvent = (u64, Result<Value, String>);

/// One of the log's own records, prepared at `now`.
fn own_record(event: Value, now: u64) -> Result<Committed, LogError> {
    Ok(events::prepare(event, now, Appender::Log)?)
}

/// The write that stores a new token and its audit event.
fn token_created<S: Serialize>(t: NewToken<'_, S>) -> Result<Write, LogError> {
    let now = clock::now_ms();
    let audit = own_record(records::token_created(t.name, t.scopes, t.by, now), now)?;
    Ok(Write::CreateToken {
        hash: t.hash,
        record: t.record,
        name: t.name.to_string(),
        audit,
    })
}

/// The write that revokes a token, with its audit event.
fn token_revoked(name: &str, by: &str) -> Result<Write, LogError> {
    let now = clock::now_ms();
    let audit = own_record(records::token_revoked(name, by, now), now)?;
    Ok(Write::RevokeToken {
        name: name.to_string(),
        audit,
    })
}

/// A token write's audit index, or its refusal as `refused` says.
fn token_outcome(outcome: Outcome, refused: fn(String) -> LogError) -> Result<u64, LogError> {
    match outcome {
        Outcome::Token { audit } => Ok(audit),
        Outcome::Refused(r) => Err(refused(r.to_string())),
        other => Err(unexpected(other)),
    }
}

/// A write answered with an outcome of another kind of write: the store
/// broke its contract.
fn unexpected(outcome: Outcome) -> LogError {
    StoreError::Corrupt(format!("a write answered {outcome:?}")).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_token<'a>(name: &'a str, hash: u8) -> NewToken<'a, &'static str> {
        NewToken {
            name,
            scopes: &["read"],
            hash: [hash; 32],
            // The token table's record: the store reads its name and state.
            record: serde_json::to_vec(
                &serde_json::json!({"name": name, "scopes": ["read"], "revoked": false}),
            )
            .unwrap(),
            by: "test",
        }
    }

    /// The refusals of token writes are the kinds the routes answer with
    /// (409 for a name in use, 404 for no such token), and each change is
    /// recorded by an audit event at the next index.
    #[test]
    fn offline_token_writes_record_audits_and_refuse_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::engine::open(&dir.path().join("db")).unwrap();
        let state = store.tree_state().unwrap();
        let mut log = Offline::new(&store, state);
        assert_eq!(log.create_token(new_token("ci", 1)).unwrap(), 0);
        assert!(matches!(
            log.create_token(new_token("ci", 2)),
            Err(LogError::Conflict(_))
        ));
        assert_eq!(log.revoke_token("ci", "test").unwrap(), 1);
        assert!(matches!(
            log.revoke_token("ci", "test"),
            Err(LogError::NotFound(_))
        ));
        assert_eq!(log.state().size, 2);
        assert_eq!(store.tree_state().unwrap().size, 2);
    }
}
