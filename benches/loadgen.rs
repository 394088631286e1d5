//! A load generator for a running `sealog serve`, over loopback.
//!
//!   cargo bench --bench loadgen -- --url http://127.0.0.1:8080 \
//!       --token-file ./sealog-data/admin.token --scenario append --batch 1 \
//!       --concurrency 64 --seconds 20
//!
//! Scenarios: `append` (events per request = --batch), `noop` (the same
//! bodies to `POST /v1/bench/noop`, served by `sealog-test` (a build with
//! `--features test-hooks`) with `--bench-floor true`: the
//! floor), `inclusion` (proofs by index at random past sizes), `leaf`
//! (proofs by leaf hash at random past sizes), `tiles` (random full hash
//! tiles and entry bundles), `read-floor` (`GET /checkpoint/latest`, the
//! cheapest read: the floor for the read scenarios), `query` (newest 20
//! events of a random user,
//! needs a `read` token), `fill` (append --events events in
//! 1000-event batches as fast as possible). Every run is bounded by
//! --seconds and --requests and stops by itself. Reports requests/s,
//! events/s and latency percentiles; with --data DIR also the log's and index's
//! bytes per event.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

mod args;
mod events;

use args::parse_args;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let a = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let size_before = current_size(&client, &a.url).await;
    let cpu_before = a.server_pid.map(cpu_seconds);
    let own_cpu_before = cpu_seconds(std::process::id());
    // For proofs by leaf hash: the leaf hashes of the first 256 leaves.
    let leaf_hashes: Option<Arc<Vec<String>>> = if a.scenario == "leaf" {
        let tile = client
            .get(format!("{}/tile/0/000", a.url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        use base64::Engine;
        Some(Arc::new(
            tile.chunks(32)
                .map(|h| {
                    base64::prelude::BASE64_STANDARD
                        .encode(h)
                        .replace('+', "%2B")
                        .replace('/', "%2F")
                        .replace('=', "%3D")
                })
                .collect(),
        ))
    } else {
        None
    };
    let db_before = a.data.as_ref().map(|d| db_bytes(d));

    let (concurrency, batch, limit_requests, seconds) = match a.scenario.as_str() {
        "fill" => (4, 1000, a.events.div_ceil(1000), 3600 * 6),
        _ => (a.concurrency, a.batch, a.requests, a.seconds),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let counter = Arc::new(AtomicU64::new(0));
    // Numbers this run's events apart from every earlier run's on the log.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (url, token, scenario) = (a.url.clone(), a.token.clone(), a.scenario.clone());
        let (stop, sent, errors, counter) =
            (stop.clone(), sent.clone(), errors.clone(), counter.clone());
        let leaf_hashes = leaf_hashes.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(&url);
            let mut hist = Histogram::<u64>::new(3).unwrap();
            let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ w as u64;
            loop {
                if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                    break;
                }
                if sent.fetch_add(1, Ordering::Relaxed) >= limit_requests {
                    break;
                }
                let t0 = Instant::now();
                let ok = match scenario.as_str() {
                    "append" | "fill" => {
                        let body = events::request_body(
                            run,
                            counter.fetch_add(batch as u64, Ordering::Relaxed),
                            batch,
                        );
                        let mut r = conn
                            .request("POST", "/v1/events", Some(&token), &body)
                            .await;
                        // A fill is a producer that must get its events in:
                        // on 503 it waits as Retry-After says and resends
                        // (the same uids: idempotent).
                        while scenario == "fill"
                            && matches!(&r, Ok((503, _)))
                            && !stop.load(Ordering::Relaxed)
                        {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            r = conn
                                .request("POST", "/v1/events", Some(&token), &body)
                                .await;
                        }
                        match r {
                            Ok((200, _)) => true,
                            Ok((status, text)) => {
                                if errors.load(Ordering::Relaxed) == 0 {
                                    eprintln!(
                                        "first error: {status} {}",
                                        String::from_utf8_lossy(&text)
                                    );
                                }
                                false
                            }
                            Err(e) => {
                                if errors.load(Ordering::Relaxed) == 0 {
                                    eprintln!("first error: {e}");
                                }
                                false
                            }
                        }
                    }
                    "noop" => {
                        let body = events::request_body(
                            run,
                            counter.fetch_add(batch as u64, Ordering::Relaxed),
                            batch,
                        );
                        ok(conn.request("POST", "/v1/bench/noop", None, &body).await)
                    }
                    "leaf" => {
                        next(&mut rng);
                        let leaves = leaf_hashes.as_ref().expect("leaf hashes fetched");
                        let i = rng % leaves.len() as u64;
                        let s = i + 1 + (rng >> 20) % (size_before - i);
                        let path = format!(
                            "/v1/proof/inclusion?leaf_hash={}&size={s}",
                            leaves[i as usize]
                        );
                        ok(conn.request("GET", &path, None, b"").await)
                    }
                    "tiles" => {
                        next(&mut rng);
                        let full = size_before / 256;
                        let n = rng % full.max(1);
                        // Not `rng & 1`: with an even number of full tiles
                        // it is `n`'s parity, and each kind would only be
                        // asked at half the indexes.
                        let path = if rng >> 63 == 0 {
                            format!("/tile/0/{}", tile_index(n))
                        } else {
                            format!("/tile/entries/{}", tile_index(n))
                        };
                        ok(conn.request("GET", &path, None, b"").await)
                    }
                    "read-floor" => {
                        // The cheapest read: the latest checkpoint, from memory.
                        ok(conn.request("GET", "/checkpoint/latest", None, b"").await)
                    }
                    "risk" => {
                        next(&mut rng);
                        let path = format!("/v1/risk?user=u-{:06}", rng % 5000);
                        ok(conn.request("GET", &path, Some(&token), b"").await)
                    }
                    "query" => {
                        next(&mut rng);
                        let user = rng % 5000;
                        let path = format!("/v1/events?user=u-{user:06}&limit=20");
                        ok(conn.request("GET", &path, Some(&token), b"").await)
                    }
                    "inclusion" => {
                        next(&mut rng);
                        let size = size_before.max(1);
                        let s = 1 + rng % size;
                        let i = (rng >> 20) % s;
                        let path = format!("/v1/proof/inclusion?index={i}&size={s}");
                        ok(conn.request("GET", &path, None, b"").await)
                    }
                    other => unreachable!("parse_args checked the scenario, not {other}"),
                };
                if ok {
                    hist.record(t0.elapsed().as_micros() as u64).unwrap();
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            hist
        }));
    }
    let mut hist = Histogram::<u64>::new(3).unwrap();
    for t in tasks {
        hist.add(t.await.unwrap()).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    let ok = hist.len();
    if let (Some(pid), Some(before)) = (a.server_pid, cpu_before) {
        let cpu = cpu_seconds(pid) - before;
        println!(
            "server CPU {:.1} s over {:.1} s ({:.2} cores); peak RSS {} MiB",
            cpu,
            secs,
            cpu / secs,
            peak_rss_kib(pid) / 1024
        );
    }
    let own = cpu_seconds(std::process::id()) - own_cpu_before;
    println!("load generator CPU {:.1} s ({:.2} cores)", own, own / secs);
    let events = if matches!(
        a.scenario.as_str(),
        "inclusion" | "query" | "leaf" | "tiles"
    ) {
        0
    } else {
        ok * batch as u64
    };
    println!(
        "scenario={} batch={} concurrency={} seconds={:.1} ok={} errors={} req/s={:.0} events/s={:.0} p50={:.2}ms p99={:.2}ms p999={:.2}ms",
        a.scenario,
        batch,
        concurrency,
        secs,
        ok,
        errors.load(Ordering::Relaxed),
        ok as f64 / secs,
        events as f64 / secs,
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.value_at_quantile(0.999) as f64 / 1000.0,
    );
    if let (Some(d), Some(before)) = (&a.data, db_before) {
        let size_after = current_size(&client, &a.url).await;
        let after = db_bytes(d);
        println!(
            "tree size {size_after}; log and index {after} bytes; {:.0} bytes/event overall; {:.0} bytes/event for this run",
            after as f64 / size_after.max(1) as f64,
            (after.saturating_sub(before)) as f64 / (size_after - size_before).max(1) as f64
        );
    }
}

/// Steps the xorshift generator that picks sizes, leaves, tiles and users.
fn next(rng: &mut u64) {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
}

fn ok(r: std::io::Result<(u16, Vec<u8>)>) -> bool {
    matches!(r, Ok((200, _)))
}

/// One keep-alive HTTP/1.1 connection per worker, as wrk keeps: a general
/// client (reqwest) cost ~27 µs of the two shared cores per request, more
/// than the server's no-op endpoint (~19 µs), so the floor measured the
/// load generator. This speaks only what the scenarios need: a request
/// with a body, and an answer with Content-Length or chunked.
struct Conn {
    addr: String,
    stream: Option<tokio::io::BufReader<tokio::net::TcpStream>>,
    out: Vec<u8>,
}

impl Conn {
    fn new(url: &str) -> Self {
        let addr = url.trim_start_matches("http://").trim_end_matches('/');
        Conn {
            addr: addr.to_string(),
            stream: None,
            out: Vec::new(),
        }
    }

    /// Sends one request and reads its answer: (status, body). An I/O
    /// error drops the connection; the next request opens a new one.
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        use std::io::Write;
        self.out.clear();
        write!(
            self.out,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n",
            self.addr
        )?;
        if let Some(t) = token {
            write!(self.out, "Authorization: Bearer {t}\r\n")?;
        }
        if !body.is_empty() {
            write!(
                self.out,
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            )?;
        }
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(body);
        let r = self.exchange().await;
        if r.is_err() {
            self.stream = None;
        }
        r
    }

    /// Writes the request in `out` and reads the answer.
    async fn exchange(&mut self) -> std::io::Result<(u16, Vec<u8>)> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        if self.stream.is_none() {
            let s = tokio::net::TcpStream::connect(&self.addr).await?;
            s.set_nodelay(true)?;
            self.stream = Some(tokio::io::BufReader::with_capacity(64 << 10, s));
        }
        let stream = self.stream.as_mut().expect("connected");
        stream.get_mut().write_all(&self.out).await?;

        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let mut line = String::new();
        stream.read_line(&mut line).await?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("status line"))?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        loop {
            line.clear();
            if stream.read_line(&mut line).await? == 0 {
                return Err(bad("headers cut"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (name, value) = l.split_once(':').ok_or_else(|| bad("header"))?;
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse::<usize>().ok(),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                stream.read_line(&mut line).await?;
                let n = usize::from_str_radix(line.trim_end(), 16).map_err(|_| bad("chunk"))?;
                let at = body.len();
                body.resize(at + n + 2, 0);
                stream.read_exact(&mut body[at..]).await?;
                body.truncate(at + n);
                if n == 0 {
                    break;
                }
            }
        } else {
            body.resize(length.ok_or_else(|| bad("no length"))?, 0);
            stream.read_exact(&mut body).await?;
        }
        if close {
            self.stream = None;
        }
        Ok((status, body))
    }
}

/// A tile index in the `x001/x234/067` encoding.
fn tile_index(n: u64) -> String {
    let mut parts = vec![format!("{:03}", n % 1000)];
    let mut n = n / 1000;
    while n > 0 {
        parts.push(format!("x{:03}", n % 1000));
        n /= 1000;
    }
    parts.reverse();
    parts.join("/")
}

/// User + system CPU seconds of a process (Linux /proc).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0
}

/// Peak resident set size of a process, KiB (VmHWM).
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

async fn current_size(client: &reqwest::Client, url: &str) -> u64 {
    let text = client
        .get(format!("{url}/checkpoint"))
        .send()
        .await
        .expect("server reachable")
        .text()
        .await
        .unwrap();
    text.lines().nth(1).unwrap().parse().unwrap()
}

/// Bytes on disk of the log and its index together (the disk target
/// counts both).
fn db_bytes(dir: &str) -> u64 {
    ["sealog.redb", "index.redb"]
        .iter()
        .map(|f| {
            std::fs::metadata(std::path::Path::new(dir).join(f))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum()
}
