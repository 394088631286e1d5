//! sealog: a transparency-log server for tamper-evident audit logs.
//!
//! Data flows one way (spec/architecture.md): `server::http` (request) →
//! `events` (validate, canonicalize, commit) → `log::sequencer` (batch,
//! one durable `store` transaction, checkpoint signature) → receipts; then
//! the followers of the log: `query::index`, `detect::runner`, the stream
//! and `witness::witnessing`. What clients, witnesses and auditors run to
//! verify is the `sealog-verify` crate, which depends on nothing here.
//!
//! Layers, lowest first; a module imports only from its own layer or
//! below (tests/layers.rs checks it): `sys` → `net` → `events` → `store`
//! → `query` → `log` → `detect`, `witness` → `ops` → `server`.

#![warn(missing_docs)]

pub mod detect;
pub mod events;
pub mod log;
pub mod net;
pub mod ops;
pub mod query;
pub mod server;
pub mod store;
pub mod sys;
pub mod witness;
