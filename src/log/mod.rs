//! The log: the `Log` facade its callers go through (append, read, prove,
//! redact, token records, follow), the one sequencer that batches appends
//! into durable storage transactions and signs checkpoints, the caches in
//! front of storage, and the deduplication of producer uids.

pub mod facade;
pub mod sequencer;
pub mod signal_feed;
pub mod tile_cache;
pub mod uids;

pub use facade::{
    stored_event, Batch, EventPage, Log, LogError, LoggedEvent, NewToken, Offline, ReceiptAt,
    Redaction,
};
