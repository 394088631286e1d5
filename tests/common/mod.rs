//! A harness that runs the real `sealog` binary on a temporary data
//! directory and talks to it over HTTP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

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

    /// Stops the server with SIGTERM and waits for it; returns its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        send_signal(child.id(), "TERM");
        child.wait().ok()?.code()
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_sealog"))
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
    let code = k.0.wait().ok()?.code();
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
