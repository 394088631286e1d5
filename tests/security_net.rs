//! Connections, streams, tokens and HTTP behaviour under hostile clients,
//! with the real binary: idle-socket floods, stream caps and revocation,
//! standard header and index forms, JSON bodies on every error (framing
//! errors over raw TCP), the witness server's limits, and the log's
//! witnessing client facing a witness that holds a fork.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{
    auth_event, eventually, host, metric_at, open_stream, raw, spawn_serving, status_and_json,
    until_ended, Kill, Server, PATIENCE,
};
use serde_json::{json, Value};

/// Sends one keep-alive GET /healthz on `t` and reads its whole answer
/// (10 s at most).
fn healthz_keep_alive(t: &mut TcpStream) {
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    t.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"}") {
        let n = t.read(&mut buf).expect("an answer within 10 s");
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
    }
}

/// Sample `series` of `/metrics`; the server always lists the series
/// these tests read, so an absent one is a wrong name, not a zero.
async fn metric(c: &reqwest::Client, url: &str, series: &str) -> f64 {
    metric_at(c, url, series)
        .await
        .unwrap_or_else(|| panic!("no {series} on /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_token_ends_its_open_stream_within_seconds() {
    let s = Server::start(&[]);
    let c = Server::client();
    let reader = s.new_token(&c, "reader", &["read"]).await;
    let mut r = open_stream(&c, &s, &reader).await;
    assert_eq!(r.status(), 200);
    // The stream delivers: the admin token's record, then a live event.
    s.append(&c, auth_event(1, json!("live"))).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    while !seen.contains("id: 2") {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, r.chunk())
            .await
            .expect("events arrive")
            .unwrap()
            .expect("open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let rv = c
        .post(format!("{}/v1/tokens/reader/revoke", s.url))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(rv.status(), 200);
    until_ended(
        &mut r,
        Instant::now() + Duration::from_secs(5),
        "5 s after revocation",
    )
    .await;
    assert_eq!(open_stream(&c, &s, &reader).await.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_capped_per_token_and_overall() {
    let s = Server::start(&[
        "--max-streams",
        "3",
        "--max-streams-per-token",
        "2",
        // Keep-alive comments every 500 ms: a closed client is seen soon.
        "--stream-idle-timeout-ms",
        "2000",
    ]);
    let c = Server::client();
    let a = s.new_token(&c, "a", &["read"]).await;
    let b = s.new_token(&c, "b", &["read"]).await;
    let x = s.new_token(&c, "x", &["read"]).await;
    let a1 = open_stream(&c, &s, &a).await;
    let _a2 = open_stream(&c, &s, &a).await;
    assert_eq!((a1.status().as_u16(), _a2.status().as_u16()), (200, 200));
    let r = open_stream(&c, &s, &a).await;
    assert_eq!(r.status(), 429, "a third stream for one token");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "too_many_streams", "{v}");
    let _b1 = open_stream(&c, &s, &b).await;
    assert_eq!(_b1.status(), 200);
    let r = open_stream(&c, &s, &x).await;
    assert_eq!(r.status(), 503, "three streams open: the server's cap");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "too_many_streams", "{v}");
    // A closed stream gives its place back.
    drop(a1);
    let _x1 = eventually(PATIENCE, "the slot comes back", async || {
        let r = open_stream(&c, &s, &x).await;
        if r.status() == 200 {
            return Ok(r);
        }
        assert_eq!(r.status(), 503);
        Err("503".to_string())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_sockets_and_streams_does_not_block_healthz_or_appends() {
    // Long header and idle timeouts (60 s, default 30 s): only giving way
    // at the cap can let a new client in within the test's deadline.
    let s = Server::start(&["--max-connections", "4", "--header-timeout-ms", "60000"]);
    let addr = host(&s.url);
    // Two keep-alive connections after a request, two in the middle of a
    // request's headers: all four slots.
    let mut flood = Vec::new();
    for _ in 0..2 {
        let mut t = TcpStream::connect(&addr).unwrap();
        healthz_keep_alive(&mut t);
        flood.push(t);
    }
    for _ in 0..2 {
        let mut t = TcpStream::connect(&addr).unwrap();
        t.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        flood.push(t);
    }
    // No wait needed: connections are accepted in order, so the four hold
    // every slot by the time the next one is accepted.
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = c.get(format!("{}/healthz", s.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!("{}/v1/events", s.url))
        .bearer_auth(&s.token)
        .json(&auth_event(1, json!("through the flood")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Streams hold their connections: at most half of the slots (2 of 4).
    let s1 = open_stream(&c, &s, &s.token).await;
    let s2 = open_stream(&c, &s, &s.token).await;
    assert_eq!((s1.status().as_u16(), s2.status().as_u16()), (200, 200));
    let r = open_stream(&c, &s, &s.token).await;
    assert_eq!(r.status(), 503);
    drop(r);
    // With both streams open and idle sockets coming back, health checks
    // and appends still get through.
    for _ in 0..4 {
        flood.push(TcpStream::connect(&addr).unwrap());
    }
    let fresh = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let r = fresh
        .get(format!("{}/healthz", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = fresh
        .post(format!("{}/v1/events", s.url))
        .bearer_auth(&s.token)
        .json(&auth_event(2, json!("beside the streams")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop((s1, s2, flood));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_at_the_idle_timeout() {
    let s = Server::start(&["--idle-timeout-ms", "300", "--header-timeout-ms", "60000"]);
    let mut t = TcpStream::connect(host(&s.url)).unwrap();
    healthz_keep_alive(&mut t);
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t0 = Instant::now();
    let n = t.read(&mut [0u8; 64]).expect("closed, not timed out");
    assert_eq!(n, 0, "the server closed the idle connection");
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    let s = Server::start(&[]);
    let c = Server::client();
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = c
            .get(format!("{}/v1/events/0", s.url))
            .header("authorization", format!("{scheme} {}", s.token))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    let r = c
        .get(format!("{}/v1/events/0", s.url))
        .header("authorization", format!("Basic {}", s.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_and_path_indices_are_canonical_decimals() {
    let s = Server::start(&[]);
    let c = Server::client();
    for bad in [
        "01",
        "+1",
        "-1",
        " 1",
        "1.0",
        "0x1",
        "18446744073709551616",
        "99999999999999999999999",
    ] {
        for path in ["/v1/events/{}", "/v1/events/{}/receipt"] {
            let path = path.replace("{}", &bad.replace(' ', "%20").replace('+', "%2B"));
            let r = c
                .get(format!("{}{path}", s.url))
                .bearer_auth(&s.token)
                .send()
                .await
                .unwrap();
            let st = r.status();
            let v: Value = r.json().await.unwrap();
            assert_eq!(
                (st.as_u16(), &v["error"]["field"]),
                (400, &json!("index")),
                "{path}: {v}"
            );
        }
        if bad.starts_with(' ') {
            continue; // HTTP trims a header value's leading space
        }
        let r = c
            .get(format!("{}/v1/stream", s.url))
            .bearer_auth(&s.token)
            .header("last-event-id", bad)
            .send()
            .await
            .unwrap();
        let st = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (st.as_u16(), &v["error"]["field"]),
            (400, &json!("Last-Event-ID")),
            "{bad:?}: {v}"
        );
    }
    // The largest index there is has no next one: 400, not a wrap to 0.
    let r = c
        .get(format!("{}/v1/stream", s.url))
        .bearer_auth(&s.token)
        .header("last-event-id", u64::MAX.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Canonical forms are served.
    let r = c
        .get(format!("{}/v1/events/0", s.url))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(format!("{}/v1/stream", s.url))
        .bearer_auth(&s.token)
        .header("last-event-id", (u64::MAX - 1).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_names_are_checked_wherever_they_enter() {
    let mut s = Server::start(&[]);
    let c = Server::client();
    for bad in [
        "has%20space",
        "semi%3Bcolon",
        "%C3%A9t%C3%A9",
        &"x".repeat(129),
    ] {
        let r = c
            .post(format!("{}/v1/tokens/{bad}/revoke", s.url))
            .bearer_auth(&s.token)
            .send()
            .await
            .unwrap();
        let st = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (st.as_u16(), &v["error"]["field"]),
            (400, &json!("name")),
            "{bad}: {v}"
        );
        let r = c
            .post(format!("{}/v1/tokens", s.url))
            .bearer_auth(&s.token)
            .json(&json!({"name": bad.replace("%20", " "), "scopes": ["read"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    assert_eq!(s.stop(), Some(0));
    let data = s.dir.to_str().unwrap().to_string();
    for args in [
        vec![
            "token", "create", "--data", &data, "--scope", "read", "--name", "a b",
        ],
        vec!["token", "revoke", "--data", &data, "--name", "a b"],
        vec!["token", "revoke", "--data", &data, "--name", "a\nb"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealog"))
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains("a token name is 1 to 128"), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uid_conflict_counts_as_a_conflict_not_a_storage_error() {
    let s = Server::start(&[]);
    let c = Server::client();
    let mut ev = auth_event(1, json!("first"));
    ev["metadata"]["uid"] = json!("uid-1");
    s.append(&c, ev.clone()).await;
    let conflict = r#"sealog_append_requests_total{outcome="conflict"}"#;
    let storage = r#"sealog_append_requests_total{outcome="storage"}"#;
    let (c0, s0) = (
        metric(&c, &s.url, conflict).await,
        metric(&c, &s.url, storage).await,
    );
    ev["unmapped"]["tag"] = json!("other content");
    let r = c
        .post(format!("{}/v1/events", s.url))
        .bearer_auth(&s.token)
        .json(&ev)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(metric(&c, &s.url, conflict).await, c0 + 1.0);
    assert_eq!(metric(&c, &s.url, storage).await, s0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_answer_has_the_json_error_body() {
    let s = Server::start(&[]);
    let addr = host(&s.url);
    let token = &s.token;
    let cases: Vec<(&str, String, u16, Option<&str>)> = vec![
        (
            "unknown route",
            "GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
            404,
            None,
        ),
        (
            "method not allowed",
            "DELETE /v1/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
            405,
            None,
        ),
        (
            "a path segment that does not decode",
            format!("GET /v1/events/%FF HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"),
            400,
            Some("path"),
        ),
        (
            "a malformed Content-Length",
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".into(),
            400,
            None,
        ),
        (
            "two Content-Lengths",
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".into(),
            400,
            None,
        ),
        (
            "a request line that is not HTTP",
            "this is not http\r\n\r\n".into(),
            400,
            None,
        ),
        (
            "a header without a colon",
            "GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n".into(),
            400,
            None,
        ),
        (
            "headers beyond hyper's buffer",
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "a".repeat(300 << 10)
            ),
            431,
            None,
        ),
        (
            "a body over the limit",
            format!("POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", 5 << 20),
            413,
            None,
        ),
    ];
    for (what, request, status, field) in cases {
        let answer = raw(&addr, request.as_bytes());
        let (got, v) = status_and_json(&answer);
        assert_eq!(got, status, "{what}: {answer}");
        assert!(v["error"]["code"].is_string(), "{what}: {v}");
        assert!(v["error"]["message"].is_string(), "{what}: {v}");
        if let Some(f) = field {
            assert_eq!(v["error"]["field"], f, "{what}: {v}");
        }
    }
}

fn witness_setup(tmp: &std::path::Path, log_vkey: &str) -> Vec<String> {
    let logs = tmp.join("logs");
    std::fs::write(&logs, format!("log {log_vkey}\n")).unwrap();
    vec![
        "witness".into(),
        "serve".into(),
        "--data".into(),
        tmp.join("w").to_str().unwrap().into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--logs".into(),
        logs.to_str().unwrap().into(),
        "--name".into(),
        "witness.example/w".into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_witness_server_has_header_and_body_timeouts_and_a_connection_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, vkey) = sealog_verify::note::generate_key("a.example/log").unwrap();
    let mut args = witness_setup(tmp.path(), &vkey);
    for a in [
        "--header-timeout-ms",
        "500",
        "--body-timeout-ms",
        "1500",
        "--max-connections",
        "2",
    ] {
        args.push(a.into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (child, url) = spawn_serving(&args);
    let _w = Kill(child);
    let addr = host(&url);
    // Slowloris: headers never finish; closed at the header deadline.
    let t0 = Instant::now();
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"POST /add-checkpoint HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let _ = slow.read_to_end(&mut Vec::new());
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // Two requests whose bodies never finish hold both slots until the
    // body deadline (408); a third request waits for a slot meanwhile.
    // `Expect: 100-continue`: the server answers 100 once the handler
    // reads the body, so the client knows its request is busy (a
    // connection still sending headers is idle and would give way).
    let head = b"POST /add-checkpoint HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n";
    let t0 = Instant::now();
    let mut busy: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut t = TcpStream::connect(&addr).unwrap();
            t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            t.write_all(head).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 256];
            while !got.ends_with(b"\r\n\r\n") {
                let n = t.read(&mut buf).expect("100 Continue within 10 s");
                assert!(n > 0, "closed before 100 Continue");
                got.extend_from_slice(&buf[..n]);
            }
            let got = String::from_utf8_lossy(&got);
            assert!(got.starts_with("HTTP/1.1 100"), "{got}");
            t.write_all(b"old 0\n").unwrap();
            t
        })
        .collect();
    let third = raw(
        &addr,
        b"POST /add-checkpoint HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\nConnection: close\r\n\r\ngarbage\n",
    );
    assert!(third.starts_with("HTTP/1.1 400"), "{third}");
    assert!(
        t0.elapsed() >= Duration::from_millis(1200),
        "the third request waited for a slot: {:?}",
        t0.elapsed()
    );
    for t in &mut busy {
        let mut out = vec![0u8; 256];
        let n = t.read(&mut out).unwrap();
        let answer = String::from_utf8_lossy(&out[..n]);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_logs_witnessing_client_reports_a_fork_the_witness_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |s: &str| tmp.path().join(s).to_str().unwrap().to_string();
    // Two logs with one key: each starts with its own admin token's
    // record, so their trees of size 1 differ.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealog"))
        .args([
            "keygen",
            "--origin",
            "fork.example/log",
            "--out",
            &p("honest"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let log_vkey = String::from_utf8(out.stdout).unwrap().trim().to_string();
    // The second log's directory private, as `serve` demands.
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(p("fork"))
        .unwrap();
    std::fs::copy(p("honest/log.key"), p("fork/log.key")).unwrap();
    let args = witness_setup(tmp.path(), &log_vkey);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (child, wurl) = spawn_serving(&args);
    let _w = Kill(child);
    let wvkey = std::fs::read_to_string(tmp.path().join("w/witness.vkey")).unwrap();
    let policy = format!(
        "log {log_vkey}\nwitness w {} {wurl}\nquorum w\n",
        wvkey.trim()
    );
    std::fs::write(p("policy"), policy).unwrap();
    let c = reqwest::Client::new();
    let serve = |dir: String| {
        let policy = p("policy");
        spawn_serving(&[
            "serve",
            "--data",
            &dir,
            "--listen",
            "127.0.0.1:0",
            "--witnesses",
            &policy,
            "--witness-interval-ms",
            "50",
        ])
    };
    let (child, honest) = serve(p("honest"));
    let _h = Kill(child);
    eventually(PATIENCE, "the honest log is cosigned", async || {
        let st = c
            .get(format!("{honest}/checkpoint"))
            .send()
            .await
            .unwrap()
            .status();
        (st == 200).then_some(()).ok_or(st.to_string())
    })
    .await;
    let (child, fork) = serve(p("fork"));
    let _f = Kill(child);
    eventually(PATIENCE, "the fork is reported", async || {
        let forks = metric(&c, &fork, "sealog_witness_forks_total").await;
        (forks >= 1.0).then_some(()).ok_or(forks.to_string())
    })
    .await;
    assert_eq!(
        c.get(format!("{fork}/checkpoint"))
            .send()
            .await
            .unwrap()
            .status(),
        503,
        "never cosigned"
    );
    // Refused rounds are retried less and less often, not every 50 ms: a
    // rate, so measured over a window (at 50 ms it would be ~20 a second;
    // a slow machine only lowers the count).
    let before = metric(&c, &fork, "sealog_witness_errors_total").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = metric(&c, &fork, "sealog_witness_errors_total").await;
    assert!(after - before <= 5.0, "{before} → {after} in 1 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_stops_gracefully_with_a_stream_open() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (child, url) = spawn_serving(&[
        "serve",
        "--data",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let mut k = Kill(child);
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let c = Server::client();
    let mut r = c
        .get(format!("{url}/v1/stream"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    common::send_signal(k.0.id(), "TERM");
    until_ended(
        &mut r,
        Instant::now() + Duration::from_secs(10),
        "10 s after SIGTERM",
    )
    .await;
    let status = eventually(Duration::from_secs(10), "exit after SIGTERM", async || {
        k.0.try_wait().unwrap().ok_or("still running".to_string())
    })
    .await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_answering_garbage_never_stalls_the_log() {
    // A fake witness: in turn a 200 without a cosignature, a 409 with a
    // size above the log's, a 1 MiB answer, and a 409 with a malformed
    // size; each counted and the loop going on.
    let fake = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let wurl = format!("http://{}", fake.local_addr().unwrap());
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = served.clone();
    std::thread::spawn(move || {
        let big = "x".repeat(1 << 20);
        for (n, conn) in fake.incoming().enumerate() {
            let Ok(mut t) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = t.read(&mut buf);
            let (status, ctype, body) = match n % 4 {
                0 => ("200 OK", "text/plain", "no cosignature here\n"),
                1 => ("409 Conflict", "text/x.tlog.size", "999999\n"),
                2 => ("200 OK", "text/plain", big.as_str()),
                _ => ("409 Conflict", "text/x.tlog.size", "lots\n"),
            };
            let _ = t.write_all(
                format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let (_, wvkey) = sealog_verify::cosign::Cosigner::generate("fake.example/w").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealog"))
        .args(["keygen", "--origin", "g.example/log"])
        .arg("--out")
        .arg(tmp.path().join("log"))
        .output()
        .unwrap();
    let log_vkey = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let policy = tmp.path().join("policy");
    std::fs::write(
        &policy,
        format!("log {log_vkey}\nwitness w {wvkey} {wurl}\nquorum w\n"),
    )
    .unwrap();
    let s = Server::start_in(
        &tmp.path().join("log"),
        &[
            "--witnesses",
            policy.to_str().unwrap(),
            "--witness-interval-ms",
            "20",
        ],
    );
    let c = Server::client();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 0;
    // Every kind of answer given (five asks), each counted.
    while served.load(std::sync::atomic::Ordering::Relaxed) < 5
        || metric(&c, &s.url, "sealog_witness_errors_total").await < 4.0
    {
        assert!(Instant::now() < deadline, "the witnessing loop stopped");
        // Appends go on, and each new checkpoint starts a new round.
        s.append(&c, auth_event(i, json!(i))).await;
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        c.get(format!("{}/checkpoint", s.url))
            .send()
            .await
            .unwrap()
            .status(),
        503,
        "never cosigned"
    );
}
