//! What every layer may use: the clock, randomness, LEB128 varints, the
//! data directory's files, the process's metrics counters, and the
//! follower that walks the log for the index, the detections, the streams
//! and witnessing. Imports
//! nothing of the crate.

pub mod clock;
pub mod datadir;
pub mod follow;
pub mod metrics;
pub mod random;
pub mod varint;
