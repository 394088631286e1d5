//! The log: one sequencer that batches appends into durable storage
//! transactions and signs checkpoints (`sequencer`), the cache of full
//! tiles in front of storage (`tile_cache`), the deduplication of producer
//! uids (`uids`), and the hand-off of committed events' signals to the
//! detections (`signal_feed`).

pub mod sequencer;
pub mod signal_feed;
pub mod tile_cache;
pub mod uids;
