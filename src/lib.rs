//! sealog: a transparency-log server for tamper-evident audit logs.
//!
//! Data flows one way: `http` (request) → `event` (validate, canonicalize,
//! commit) → `sequencer` (batch, durable `store` transaction, checkpoint
//! signature from `note`) → `receipt`s. `tree`, `note`, `tiles`,
//! `receipt` and `client` are the verification side and depend on
//! nothing server-side.

pub mod assurance;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod clock;
pub mod config;
pub mod datadir;
pub mod detect;
pub mod detecting;
pub mod event;
pub mod event_codec;
pub mod event_keys;
pub mod facets_row;
pub mod hash_cache;
pub mod http;
pub mod index;
pub mod index_keys;
pub mod json;
pub mod listener;
pub mod metrics;
pub mod ocsf;
pub mod postings;
pub mod query;
pub mod random;
pub mod records;
pub mod sequencer;
pub mod server;
pub mod signal_feed;
pub mod store;
pub mod tile_cache;
pub mod tile_rows;
pub mod tls;
pub mod uid_filter;
pub mod uids;
pub mod witness;
pub mod witnessing;
