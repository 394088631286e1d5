//! A harness that runs the real `sealog` binary on a temporary data
//! directory and talks to it over HTTP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sealog_verify::receipt::Receipt;

pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub dir: PathBuf,
    pub token: String,
    pub vkey: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// The binary: `sealog`, or `sealog-test` (test hooks honoured).
    bin: &'static str,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts a server on a fresh data directory with extra `args`.
    pub fn start(args: &[&str]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let mut s = Server {
            child: None,
            url: String::new(),
            dir,
            token: String::new(),
            vkey: String::new(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            bin: env!("CARGO_BIN_EXE_sealog"),
            _tmp: Some(tmp),
        };
        s.spawn();
        s
    }

    /// Starts a server on the data directory `dir`.
    pub fn start_in(dir: &Path, args: &[&str]) -> Server {
        let mut s = Server {
            child: None,
            url: String::new(),
            dir: dir.to_path_buf(),
            token: String::new(),
            vkey: String::new(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            bin: env!("CARGO_BIN_EXE_sealog"),
            _tmp: None,
        };
        s.spawn();
        s
    }

    /// Runs `sealog-test` from the next start on: the build whose test
    /// hooks (SEALOG_CLOCK_SKEW_MS, --bench-floor) work.
    pub fn use_test_hooks(&mut self) {
        self.bin = env!("CARGO_BIN_EXE_sealog-test");
    }

    /// Sets an environment variable for the next start.
    pub fn set_env(&mut self, k: &str, v: &str) {
        self.env.push((k.to_string(), v.to_string()));
    }

    fn spawn(&mut self) {
        if let Err(e) = self.try_spawn() {
            panic!("server did not start: {e}");
        }
    }

    fn try_spawn(&mut self) -> Result<(), String> {
        let mut child = Command::new(self.bin)
            .arg("serve")
            .arg("--data")
            .arg(&self.dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start sealog");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut printed = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("serving addr=").nth(1) {
                    let _ = tx.send(Ok(addr.trim().to_string()));
                }
                if std::env::var_os("SEALOG_TEST_LOG").is_some() {
                    eprintln!("server: {line}");
                }
                printed.push_str(&line);
                printed.push('\n');
            }
            let _ = tx.send(Err(printed));
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(addr)) => addr,
            Ok(Err(printed)) => {
                let _ = child.wait();
                return Err(printed);
            }
            Err(e) => {
                let _ = child.kill();
                return Err(format!("no address: {e}"));
            }
        };
        self.url = format!("http://{addr}");
        self.token = read_trimmed(&self.dir.join("admin.token"));
        self.vkey = read_trimmed(&self.dir.join("log.vkey"));
        self.child = Some(child);
        Ok(())
    }

    /// Stops the server with SIGTERM and waits for it (PATIENCE at most);
    /// returns its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        send_signal(child.id(), "TERM");
        exit_within(&mut child, PATIENCE).code()
    }

    /// Stops and starts the server on the same data directory.
    pub fn restart(&mut self) {
        assert_eq!(self.stop(), Some(0), "graceful stop exits 0");
        self.spawn();
    }

    /// Kills the server with SIGKILL: no chance to drain or flush.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            send_signal(child.id(), "KILL");
            let _ = child.wait();
        }
    }

    /// Starts the server again after `stop`.
    pub fn restart_after_stop(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        self.spawn();
    }

    /// The running server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    pub fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
    }

    /// Appends a JSON body with the admin token; panics unless 200.
    pub async fn append(&self, c: &reqwest::Client, body: serde_json::Value) -> String {
        let r = c
            .post(format!("{}/v1/events", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v = r.text().await.unwrap();
        assert_eq!(status, 200, "{v}");
        v
    }

    /// The latest checkpoint (`/checkpoint`), verified.
    pub async fn checkpoint(&self, c: &reqwest::Client) -> sealog_verify::note::Checkpoint {
        let text = self.get_text(c, "/checkpoint").await;
        sealog_verify::note::verify_checkpoint(text.as_bytes(), &self.vkey)
            .expect("checkpoint verifies")
    }

    /// Fetches the consistency proof from `old` to `new` and checks it.
    pub async fn assert_consistent(
        &self,
        c: &reqwest::Client,
        old: &sealog_verify::note::Checkpoint,
        new: &sealog_verify::note::Checkpoint,
    ) {
        if old.size == 0 {
            return;
        }
        let path = format!("/v1/proof/consistency?from={}&to={}", old.size, new.size);
        let p: sealog_verify::receipt::ConsistencyProof = self.get_json(c, &path).await;
        sealog_verify::verify::verify_consistency(&p, old, new)
            .expect("checkpoints are consistent");
    }

    pub async fn get_text(&self, c: &reqwest::Client, path: &str) -> String {
        let r = c.get(format!("{}{path}", self.url)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.text().await.unwrap()
    }

    /// GET with the admin token; panics unless 200.
    pub async fn get_json_auth<T: serde::de::DeserializeOwned>(
        &self,
        c: &reqwest::Client,
        path: &str,
    ) -> T {
        let r = c
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 200, "{path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        c: &reqwest::Client,
        path: &str,
    ) -> T {
        let r = c.get(format!("{}{path}", self.url)).send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 200, "{path}: {text}");
        serde_json::from_str(&text).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits for `child` to exit; kills it and panics if it is still running
/// after `within` (a server that ignores SIGTERM fails the test rather
/// than hanging it).
pub fn exit_within(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pid {} still running after {within:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn send_signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{sig} {pid}");
}

fn read_trimmed(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

/// Receipts from an append answer (one object or an array).
pub fn receipts(body: &str) -> Vec<Receipt> {
    if body.trim_start().starts_with('[') {
        serde_json::from_str(body).unwrap()
    } else {
        vec![serde_json::from_str(body).unwrap()]
    }
}

/// A valid OCSF Authentication (3002) event for user `u-{user}`, with
/// `tag` under `unmapped` so tests can tell events apart.
pub fn auth_event(user: u64, tag: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "class_uid": 3002, "activity_id": 1, "severity_id": 1,
        "time": 1_763_800_000_000u64 + user, "status_id": 1,
        "user": {"uid": format!("u-{user}"), "name": format!("user{user}@example.com")},
        "dst_endpoint": {"hostname": "sso.example.com"},
        "src_endpoint": {"ip": format!("10.0.0.{}", user % 250)},
        "metadata": {"version": "1.8.0", "product": {"name": "Example IdP"}},
        "unmapped": {"tag": tag}
    })
}

/// Runs `sealog ARGS` until it logs `serving addr=…`; returns the child
/// and its base URL. The caller kills it (or drops a guard that does).
pub fn spawn_serving(args: &[&str]) -> (Child, String) {
    spawn_serving_in(Path::new("."), args)
}

/// `spawn_serving` with the working directory `cwd`.
pub fn spawn_serving_in(cwd: &Path, args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sealog"))
        .current_dir(cwd)
        .args(args)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start sealog");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("serving addr=").nth(1) {
                let _ = tx.send(addr.trim().to_string());
            }
            if std::env::var_os("SEALOG_TEST_LOG").is_some() {
                eprintln!("child: {line}");
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("no serving address");
    (child, format!("http://{addr}"))
}

/// Kills the child when dropped.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Stops a child with SIGTERM and returns its exit code.
pub fn terminate(mut k: Kill) -> Option<i32> {
    send_signal(k.0.id(), "TERM");
    let code = exit_within(&mut k.0, PATIENCE).code();
    std::mem::forget(k);
    code
}

/// Starts `sealog serve` on `data` if it will start: Err with what it
/// printed when it exits instead.
pub fn try_start(data: &str) -> Result<Server, String> {
    let mut s = Server {
        child: None,
        url: String::new(),
        dir: Path::new(data).to_path_buf(),
        token: String::new(),
        vkey: String::new(),
        args: Vec::new(),
        env: Vec::new(),
        bin: env!("CARGO_BIN_EXE_sealog"),
        _tmp: None,
    };
    s.try_spawn()?;
    Ok(s)
}

/// How long a test waits for what the server does in the background
/// (index, detections, witnessing, a restart): far beyond what a healthy
/// server needs even on a loaded 2-core machine, so that only a broken one
/// reaches it.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `check` until it returns `Ok`, and returns that; panics after
/// `within` with `what` and the last `Err` (what was seen instead). Polls
/// every 10 ms at first, backing off to every 250 ms, so a struggling
/// server is not hammered. Every wait on the server's background work goes
/// through here: a slow machine only waits longer, a broken server fails
/// the test instead of hanging it.
pub async fn eventually<T>(
    within: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(10);
    loop {
        match check().await {
            Ok(v) => return v,
            Err(seen) if Instant::now() >= deadline => {
                panic!("{what}: not within {within:?}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(pause).await,
        }
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// `eventually` for threads outside a runtime.
pub fn eventually_blocking<T>(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(10);
    loop {
        match check() {
            Ok(v) => return v,
            Err(seen) if Instant::now() >= deadline => {
                panic!("{what}: not within {within:?}; last seen: {seen}")
            }
            Err(_) => std::thread::sleep(pause),
        }
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Milliseconds since the Unix epoch, by the wall clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Runs the `sealog` CLI with `args` to the end.
pub fn sealog(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sealog"))
        .args(args)
        .output()
        .unwrap()
}

/// `host:port` of a base URL.
pub fn host(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

/// Sends `request` on a new connection and reads until the server closes
/// (10 s at most).
pub fn raw(addr: &str, request: &[u8]) -> String {
    let mut t = TcpStream::connect(addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    t.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = t.read_to_end(&mut out);
    String::from_utf8_lossy(&out).to_string()
}

/// The status and JSON body of a raw HTTP/1.1 answer; panics unless the
/// body is declared and parses as JSON.
pub fn status_and_json(answer: &str) -> (u16, serde_json::Value) {
    let status = answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status: {answer:?}"));
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head: {answer:?}"));
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{answer}"
    );
    let v = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer:?}"));
    (status, v)
}

/// The sample of `series` (the whole text before the value, labels
/// included) in `url`'s `/metrics`; None when absent.
pub async fn metric_at(c: &reqwest::Client, url: &str, series: &str) -> Option<f64> {
    let text = c
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

impl Server {
    /// The sample of `series` in `/metrics`; panics when absent.
    pub async fn metric(&self, c: &reqwest::Client, series: &str) -> u64 {
        metric_at(c, &self.url, series)
            .await
            .unwrap_or_else(|| panic!("no {series} in /metrics")) as u64
    }

    /// The size of the latest checkpoint, verified.
    pub async fn size(&self, c: &reqwest::Client) -> u64 {
        self.checkpoint(c).await.size
    }

    /// Creates a token `name` with `scopes` with the admin token.
    pub async fn new_token(&self, c: &reqwest::Client, name: &str, scopes: &[&str]) -> String {
        let r = c
            .post(format!("{}/v1/tokens", self.url))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({"name": name, "scopes": scopes}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "create token {name}");
        r.json::<serde_json::Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// GET `path` with `token` (none: no Authorization); status and body.
    pub async fn get_as(
        &self,
        c: &reqwest::Client,
        path: &str,
        token: Option<&str>,
    ) -> (u16, String) {
        let mut r = c.get(format!("{}{path}", self.url));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// POST the JSON `body` to `path` with `token` (none: no
    /// Authorization); status and JSON body (null when not JSON).
    pub async fn post_as(
        &self,
        c: &reqwest::Client,
        path: &str,
        token: Option<&str>,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let mut r = c.post(format!("{}{path}", self.url)).json(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Waits until the lookup index covers the latest checkpoint
    /// (`sealog_indexed_size`): queries then answer at once, never 503
    /// `index_catching_up`.
    pub async fn index_caught_up(&self, c: &reqwest::Client) {
        let size = self.size(c).await;
        eventually(PATIENCE, "the index covers the log", async || {
            let indexed = self.metric(c, "sealog_indexed_size").await;
            (indexed >= size)
                .then_some(())
                .ok_or(format!("indexed {indexed} of {size}"))
        })
        .await
    }

    /// Waits until the detection rules have observed every event under
    /// the latest checkpoint and recorded what they found: after this, a
    /// finding that has not appeared will not. The runner counts what it
    /// observed since start (`sealog_detection_events_total`; it replays
    /// from index 0 on a log shorter than its replay window) and sets its
    /// lag to 0 only once the findings of what it read are appended.
    /// Redacted events are not observed: not for logs with redactions.
    pub async fn detections_caught_up(&self, c: &reqwest::Client) {
        let size = self.size(c).await;
        eventually(PATIENCE, "detections observe the log", async || {
            let seen = self.metric(c, "sealog_detection_events_total").await;
            let lag = self.metric(c, "sealog_detection_lag_events").await;
            if seen >= size && lag == 0 {
                Ok(())
            } else {
                Err(format!("observed {seen} of {size}, lag {lag}"))
            }
        })
        .await
    }
}

/// Opens `GET /v1/stream` with `token`.
pub async fn open_stream(c: &reqwest::Client, s: &Server, token: &str) -> reqwest::Response {
    c.get(format!("{}/v1/stream", s.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Reads `r` until it ends (cleanly or by a closed connection); panics if
/// it is still open at `deadline`.
pub async fn until_ended(r: &mut reqwest::Response, deadline: Instant, what: &str) {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, r.chunk()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) | Ok(Err(_)) => return,
            Err(_) => panic!("{what}: the stream is still open"),
        }
    }
}

/// One server-sent event: its `event:` name (None for plain data), `id`
/// and `data` parsed as JSON.
#[derive(Debug)]
pub struct Sse {
    pub name: Option<String>,
    pub id: Option<u64>,
    pub data: serde_json::Value,
}

/// Reads the SSE stream `r` until `done` holds for what was read, then
/// drops nothing else: the caller keeps `r`. Keep-alive comments are
/// skipped. Panics if the stream ends first or `within` passes.
pub async fn read_sse_until(
    r: &mut reqwest::Response,
    buf: &mut String,
    within: Duration,
    mut done: impl FnMut(&[Sse]) -> bool,
) -> Vec<Sse> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    loop {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let field = |k: &str| block.lines().find_map(|l| l.strip_prefix(k));
            if let Some(data) = field("data: ") {
                out.push(Sse {
                    name: field("event: ").map(str::to_string),
                    id: field("id: ").map(|i| i.parse().expect("a decimal id")),
                    data: serde_json::from_str(data).expect("JSON data"),
                });
            }
        }
        if done(&out) {
            return out;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, r.chunk()).await {
            Ok(Ok(Some(chunk))) => buf.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(other) => panic!("the stream ended ({other:?}) after {out:?}"),
            Err(_) => panic!("not within {within:?}; read {out:?}"),
        }
    }
}

/// Runs `sealog ARGS` in `cwd`, which must exit with a failure within
/// PATIENCE (a server that starts instead is killed and fails the test);
/// what it printed on stderr.
pub fn refused_in(cwd: &Path, args: &[&str]) -> String {
    refused_with(env!("CARGO_BIN_EXE_sealog"), cwd, args, &[])
}

/// `refused_in` for the program `bin` with `env` added to its environment.
pub fn refused_with(bin: &str, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut child = Command::new(bin)
        .current_dir(cwd)
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually_blocking(PATIENCE, "sealog exits", || {
            child.try_wait().unwrap().ok_or("running".to_string())
        })
    }));
    let status = exited.unwrap_or_else(|_| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("sealog {args:?} ran instead of refusing");
    });
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success(), "sealog {args:?} exited 0: {err}");
    err
}

/// A port that was free a moment ago (for a server told to listen there).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The indices of the events of a query page (`{"events": [...]}`), in
/// the page's order.
pub fn indices(page: &serde_json::Value) -> Vec<u64> {
    page["events"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page}"))
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect()
}
