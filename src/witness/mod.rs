//! Witnessing on both sides: the witness server (c2sp.org/tlog-witness)
//! and the log's client that asks witnesses to cosign its checkpoints.

pub mod server;
pub mod witnessing;
