//! Hostile input: ambiguous and deep JSON, oversized headers, slow clients,
//! too many connections; and logs that never hold tokens or event bodies.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{auth_event, eventually_blocking, host, raw, Server, PATIENCE};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_deep_and_huge_json_get_4xx() {
    let s = Server::start(&[]);
    let c = Server::client();
    let ev = auth_event(1, json!("x")).to_string();
    let dup = ev.replacen(
        "\"severity_id\":1",
        "\"severity_id\":1,\"severity_id\":5",
        1,
    );
    assert_ne!(dup, ev);
    let deep = format!("{{\"x\":{}1{}}}", "[".repeat(300), "]".repeat(300));
    for (what, body, status) in [
        ("duplicate keys", dup.clone(), 400),
        ("duplicate keys in a batch", format!("[{ev},{dup}]"), 400),
        ("nesting 300 deep", deep, 400),
        ("NaN", "{\"n\": NaN}".to_string(), 400),
        ("a lone surrogate", "{\"s\": \"\\udc00\"}".to_string(), 400),
    ] {
        let r = c
            .post(format!("{}/v1/events", s.url))
            .bearer_auth(&s.token)
            .body(body)
            .send()
            .await
            .unwrap();
        let got = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(got, status, "{what}: {v}");
        if what.starts_with("duplicate") {
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("duplicate key"),
                "{v}"
            );
        }
    }
    // A 5 MiB body is refused on its Content-Length, before it is sent.
    let answer = raw(
        &host(&s.url),
        format!("POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", s.token, 5 << 20).as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // A long string within the limits is an event like any other.
    let mut big = auth_event(2, json!("y".repeat(sealog::events::MAX_EVENT_BYTES - 4096)));
    big["message"] = json!("z".repeat(1000));
    let (status, v) = s.post_as(&c, "/v1/events", Some(&s.token), &big).await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_slow_clients_and_connection_floods_are_bounded() {
    let s = Server::start(&[
        "--header-timeout-ms",
        "600",
        "--body-timeout-ms",
        "600",
        "--max-connections",
        "4",
    ]);
    let addr = host(&s.url);
    // Headers over 64 KiB: 431.
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 << 10)
    );
    let answer = raw(&addr, big.as_bytes());
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    // Slowloris: headers never finish; the connection is closed at the deadline.
    let t0 = Instant::now();
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    // A body that never finishes: 408.
    let t0 = Instant::now();
    let answer = {
        let mut t = TcpStream::connect(&addr).unwrap();
        t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        t.write_all(format!("POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 1000\r\n\r\n{{\"a\":", s.token).as_bytes()).unwrap();
        let mut out = vec![0u8; 4096];
        let n = t.read(&mut out).unwrap_or(0);
        String::from_utf8_lossy(&out[..n]).to_string()
    };
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    // A flood of idle connections cannot keep others out: all 4 slots
    // held by idle sockets (accepted in order, so before the next), the
    // next connection is served. The header deadline here (600 ms) would
    // free the slots anyway; tests/security_net.rs, with long timeouts,
    // pins that the newcomer closes the socket idle longest.
    let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    let answer = raw(
        &addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_hold_no_tokens_and_no_event_bodies() {
    let tmp = tempfile::tempdir().unwrap();
    let log_path = tmp.path().join("stderr.log");
    let data = tmp.path().join("data");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sealog"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--data",
        ])
        .arg(&data)
        .env("RUST_LOG", "debug")
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let addr = eventually_blocking(PATIENCE, "a serving line", || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let line = text
            .lines()
            .find(|l| l.contains("\"serving\""))
            .ok_or(text.clone())?;
        let v: Value = serde_json::from_str(line).expect("JSON log lines");
        Ok(v["fields"]["addr"].as_str().unwrap().to_string())
    });
    let url = format!("http://{addr}");
    let admin = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{url}/v1/tokens"))
        .bearer_auth(&admin)
        .json(&json!({"name": "ingest", "scopes": ["append"]}))
        .send()
        .await
        .unwrap();
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let secret = "very-secret-event-content-7731";
    let r = c
        .post(format!("{url}/v1/events"))
        .bearer_auth(&token)
        .json(&auth_event(1, json!(secret)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!("{url}/v1/events"))
        .bearer_auth("sealog_wrong-guess")
        .json(&auth_event(1, json!(secret)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Index 1 records the token's creation (the log's own record, which no
    // admin may redact); index 2 is the secret event.
    c.post(format!("{url}/v1/events/2/redact"))
        .bearer_auth(&admin)
        .json(&json!({"reason": "test"}))
        .send()
        .await
        .unwrap();
    common::send_signal(child.id(), "TERM");
    assert!(common::exit_within(&mut child, PATIENCE).success());
    let logs = std::fs::read_to_string(&log_path).unwrap();
    for line in logs.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    for needle in [
        admin.as_str(),
        &admin[7..],
        token.as_str(),
        &token[7..],
        "wrong-guess",
        secret,
        "user1@example.com",
    ] {
        assert!(!logs.contains(needle), "the logs hold {needle:?}");
    }
    assert!(
        logs.contains("token created") && logs.contains("event redacted"),
        "operations are logged, by name"
    );
}
