//! What every layer may use: the clock, randomness, LEB128 varints, the
//! data directory's files and the process's metrics counters. Imports
//! nothing of the crate.

pub mod clock;
pub mod datadir;
pub mod metrics;
pub mod random;
pub mod varint;
