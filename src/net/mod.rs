//! Transport shared by the log's HTTP server and the witness server: the
//! accept loop with its connection limits, and TLS on both sides.

pub mod listener;
pub mod tls;
