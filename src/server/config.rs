//! `sealog serve`'s options: from flags, else from a TOML config file
//! (`--config FILE`, or `./sealog.toml` when it exists), else defaults.
//! Every option is documented in the README's Configuration section.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::log::sequencer;
use crate::net::listener::NetLimits;
use crate::server::http::Limits;
use crate::server::Options;

/// The options, each optional: one layer (flags, or the file).
#[derive(Clone, Debug, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Data directory: key, admin token, database [default: ./sealog-data].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<String>,
    /// The log's origin and key name, used when the key is created
    /// [default: localhost/sealog].
    #[arg(long)]
    pub origin: Option<String>,
    /// Largest request body, bytes [default: 4194304].
    #[arg(long)]
    pub max_body_bytes: Option<usize>,
    /// Most events in one request [default: 1000].
    #[arg(long)]
    pub max_events: Option<usize>,
    /// Most events in one batch: one transaction, one checkpoint [default: 4096].
    #[arg(long)]
    pub batch_max: Option<usize>,
    /// Longest a batch waits for more events, µs [default: 0].
    #[arg(long)]
    pub batch_wait_us: Option<u64>,
    /// Most events waiting for the sequencer; beyond, 503 [default: 100000].
    #[arg(long)]
    pub queue_capacity: Option<usize>,
    /// A tlog-policy file of witnesses (with URLs) and the quorum.
    #[arg(long)]
    pub witnesses: Option<PathBuf>,
    /// Most often a new checkpoint goes to the witnesses, ms [default: 1000].
    #[arg(long)]
    pub witness_interval_ms: Option<u64>,
    /// Connections served at once [default: 1024].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Time to send a request's headers, ms [default: 10000].
    #[arg(long)]
    pub header_timeout_ms: Option<u64>,
    /// Time to send a request's body, ms [default: 30000].
    #[arg(long)]
    pub body_timeout_ms: Option<u64>,
    /// Bytes of request line and headers [default: 65536].
    #[arg(long)]
    pub max_header_bytes: Option<usize>,
    /// Time an idle keep-alive connection stays open, ms [default: 30000].
    #[arg(long)]
    pub idle_timeout_ms: Option<u64>,
    /// Open `GET /v1/stream` responses at once, at most half of
    /// max_connections; beyond, 503 [default: 128].
    #[arg(long)]
    pub max_streams: Option<usize>,
    /// Open streams per token; beyond, 429 [default: 8].
    #[arg(long)]
    pub max_streams_per_token: Option<usize>,
    /// Time a stream's client may read nothing before it is closed, ms [default: 60000].
    #[arg(long)]
    pub stream_idle_timeout_ms: Option<u64>,
    /// How far past the log's clock an event's time may lie, ms; later
    /// events are refused (422, field `time`) [default: 86400000].
    #[arg(long)]
    pub max_future_skew_ms: Option<u64>,
    /// Log format: text or json [default: text].
    #[arg(long)]
    pub log_format: Option<String>,
    /// Serve POST /v1/bench/noop, the benchmarks' floor [default: false]; only the
    /// sealog-test build (feature test-hooks) has it: `sealog` refuses it.
    #[arg(long)]
    pub bench_floor: Option<bool>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key);
    /// reloaded on SIGHUP.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// An extra CA (PEM) to trust when calling witnesses over HTTPS,
    /// besides the system's roots.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Detection thresholds (file only: a `[detections]` table).
    #[arg(skip)]
    pub detections: Option<crate::detect::engine::Rules>,
}

impl ServeConfig {
    /// Reads a TOML config file.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Each option from `self` (flags) when set, else from `file`.
    pub fn or(self, file: ServeConfig) -> ServeConfig {
        macro_rules! pick {
            ($($f:ident),*) => { ServeConfig { $($f: self.$f.or(file.$f)),* } };
        }
        pick!(
            data,
            listen,
            origin,
            max_body_bytes,
            max_events,
            batch_max,
            batch_wait_us,
            queue_capacity,
            witnesses,
            witness_interval_ms,
            max_connections,
            header_timeout_ms,
            body_timeout_ms,
            max_header_bytes,
            idle_timeout_ms,
            max_streams,
            max_streams_per_token,
            stream_idle_timeout_ms,
            log_format,
            max_future_skew_ms,
            bench_floor,
            tls_cert,
            tls_key,
            ca_file,
            detections
        )
    }

    /// Whether logs should be JSON.
    pub fn json_logs(&self) -> Result<bool, String> {
        match self.log_format.as_deref() {
            None | Some("text") => Ok(false),
            Some("json") => Ok(true),
            Some(other) => Err(format!("log_format {other:?} is not text or json")),
        }
    }

    /// The TLS certificate and key, both or neither.
    pub fn tls(&self) -> Result<Option<(PathBuf, PathBuf)>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => Ok(None),
            (Some(c), Some(k)) => Ok(Some((c.clone(), k.clone()))),
            _ => Err("tls_cert and tls_key go together: give both or neither".into()),
        }
    }

    /// The server options, defaults filled in.
    pub fn options(self) -> Options {
        let tls = self.tls().ok().flatten();
        let limits = Limits::default();
        let seq = sequencer::Config::default();
        let net = NetLimits::default();
        let max_connections = self.max_connections.unwrap_or(net.max_connections).max(1);
        Options {
            data: self.data.unwrap_or_else(|| "./sealog-data".into()),
            listen: self.listen.unwrap_or_else(|| "127.0.0.1:8080".into()),
            origin: self.origin,
            limits: Limits {
                max_body_bytes: self.max_body_bytes.unwrap_or(limits.max_body_bytes),
                max_events: self.max_events.unwrap_or(limits.max_events).max(1),
                body_timeout: self
                    .body_timeout_ms
                    .map(Duration::from_millis)
                    .unwrap_or(limits.body_timeout),
                max_header_bytes: self.max_header_bytes.unwrap_or(limits.max_header_bytes),
                // Streams hold their connections: keep at least half of the
                // connection slots for everything else (/healthz, appends).
                max_streams: self
                    .max_streams
                    .unwrap_or(limits.max_streams)
                    .min(max_connections / 2)
                    .max(1),
                max_streams_per_token: self
                    .max_streams_per_token
                    .unwrap_or(limits.max_streams_per_token)
                    .max(1),
                stream_idle_timeout: self
                    .stream_idle_timeout_ms
                    .map(Duration::from_millis)
                    .unwrap_or(limits.stream_idle_timeout),
                max_future_skew_ms: self.max_future_skew_ms.unwrap_or(limits.max_future_skew_ms),
            },
            sequencer: sequencer::Config {
                max_batch: self.batch_max.unwrap_or(seq.max_batch).max(1),
                max_wait: self
                    .batch_wait_us
                    .map(Duration::from_micros)
                    .unwrap_or(seq.max_wait),
                queue_capacity: self.queue_capacity.unwrap_or(seq.queue_capacity).max(1),
                ..seq
            },
            witnesses: self.witnesses,
            bench_floor: self.bench_floor.unwrap_or(false),
            rules: self.detections.unwrap_or_default(),
            tls,
            ca_file: self.ca_file,
            witness_interval: Duration::from_millis(
                self.witness_interval_ms.unwrap_or(1000).max(10),
            ),
            net: NetLimits {
                max_connections,
                idle_timeout: self
                    .idle_timeout_ms
                    .map(Duration::from_millis)
                    .unwrap_or(net.idle_timeout),
                header_timeout: self
                    .header_timeout_ms
                    .map(Duration::from_millis)
                    .unwrap_or(net.header_timeout),
                // hyper's buffer holds the head and some body: leave room.
                max_header_bytes: 2 * self.max_header_bytes.unwrap_or(net.max_header_bytes),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_unknown_keys_are_refused() {
        let file: ServeConfig =
            toml::from_str("listen = \"0.0.0.0:9\"\nmax_events = 5\nlog_format = \"json\"\n")
                .unwrap();
        let flags = ServeConfig {
            max_events: Some(7),
            ..Default::default()
        };
        let o = flags.or(file.clone()).options();
        assert_eq!((o.listen.as_str(), o.limits.max_events), ("0.0.0.0:9", 7));
        assert!(file.json_logs().unwrap());
        assert!(toml::from_str::<ServeConfig>("listn = \"x\"").is_err());
        let d = ServeConfig::default().options();
        assert_eq!(
            (d.listen.as_str(), d.limits.max_body_bytes),
            ("127.0.0.1:8080", 4 << 20)
        );
    }
}
