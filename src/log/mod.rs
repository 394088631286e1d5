//! The log: one sequencer that batches appends into durable storage
//! transactions and signs checkpoints, the caches in front of storage, and
//! the deduplication of producer uids.

pub mod sequencer;
pub mod signal_feed;
pub mod tile_cache;
pub mod uids;
