//! Bad input gets the right 4xx with a JSON error body, never a 500, and
//! appends nothing.

mod common;

use common::{auth_event, Server};
use serde_json::{json, Value};

async fn send(
    c: &reqwest::Client,
    s: &Server,
    token: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let mut req = c.post(format!("{}/v1/events", s.url)).body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.expect("a JSON body"))
}

#[tokio::test]
async fn appends_refuse_bad_tokens_and_bad_bodies() {
    let s = Server::start(&["--max-body-bytes", "2048", "--max-events", "5"]);
    let c = Server::client();
    let t = Some(s.token.as_str());
    s.append(&c, auth_event(1, json!("ok"))).await;
    let ok = auth_event(2, json!("x")).to_string();

    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(4096));
    // (what, token, body, status, error code, field)
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        String,
        u16,
        &'a str,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        ("no token", None, "{}".into(), 401, "unauthorized", None),
        (
            "wrong token",
            Some("sealog_nope"),
            "{}".into(),
            401,
            "unauthorized",
            None,
        ),
        (
            "malformed JSON",
            t,
            "{\"a\":".into(),
            400,
            "bad_request",
            Some("body"),
        ),
        (
            "trailing garbage",
            t,
            "{} x".into(),
            400,
            "bad_request",
            Some("body"),
        ),
        (
            "invalid UTF-8",
            t,
            "{\"a\":\"\u{fffd}\"}".replace('\u{fffd}', "\\ud800"),
            400,
            "bad_request",
            Some("body"),
        ),
        (
            "a string event",
            t,
            "\"login\"".into(),
            422,
            "invalid_event",
            Some(""),
        ),
        (
            "a number event",
            t,
            "7".into(),
            422,
            "invalid_event",
            Some(""),
        ),
        (
            "a non-object in a batch",
            t,
            format!("[{ok}, [1]]"),
            422,
            "invalid_event",
            Some(""),
        ),
        (
            "integer above 2^53",
            t,
            "{\"n\": 9007199254740992}".into(),
            422,
            "invalid_event",
            Some("n"),
        ),
        (
            "integer below -2^53",
            t,
            "{\"a\":{\"n\": -9007199254740992}}".into(),
            422,
            "invalid_event",
            Some("a.n"),
        ),
        (
            "huge integer",
            t,
            format!("[{ok},{{\"x\":[1,100000000000000000000000]}}]"),
            422,
            "invalid_event",
            Some("x[1]"),
        ),
        (
            "not OCSF",
            t,
            "{\"a\": 1}".into(),
            422,
            "invalid_event",
            Some("class_uid"),
        ),
        (
            "empty batch",
            t,
            "[]".into(),
            400,
            "bad_request",
            Some("body"),
        ),
        (
            "oversize batch",
            t,
            "[{},{},{},{},{},{}]".into(),
            413,
            "too_large",
            None,
        ),
        ("oversize body", t, big, 413, "too_large", None),
    ];
    for (what, token, body, status, code, field) in cases {
        let (got, v) = send(&c, &s, token, body).await;
        assert_eq!(got, status, "{what}: {v}");
        assert_eq!(v["error"]["code"], code, "{what}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}"
        );
        if let Some(f) = field {
            assert_eq!(v["error"]["field"], f, "{what}: {v}");
        }
    }
    // The batch error says which event, and nothing of the batch is
    // appended: batches are all or nothing.
    let bad = common::auth_event(3, json!("x"))
        .to_string()
        .replace("\"status_id\":1", "\"status_id\":7");
    let (st, v) = send(&c, &s, t, format!("[{ok}, {ok}, {bad}]")).await;
    assert_eq!(
        (st, &v["error"]["index"], &v["error"]["field"]),
        (422, &json!(2), &json!("status_id")),
        "{v}"
    );
    // Raw invalid UTF-8 bytes.
    let (got, _) = send(&c, &s, t, vec![b'{', b'"', 0xff, b'"', b':', b'1', b'}']).await;
    assert_eq!(got, 400);
    // Nothing was appended by any of them: the admin token's record and
    // the one good event.
    assert_eq!(s.size(&c).await, 2);
}

#[tokio::test]
async fn proof_queries_refuse_bad_parameters() {
    let s = Server::start(&[]);
    let c = Server::client();
    s.append(
        &c,
        json!([
            auth_event(1, json!(1)),
            auth_event(2, json!(2)),
            auth_event(3, json!(3))
        ]),
    )
    .await;
    let unknown = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    for (q, status, field) in [
        ("/v1/proof/inclusion?index=abc&size=4", 400, "index"),
        ("/v1/proof/inclusion?index=-1&size=4", 400, "index"),
        ("/v1/proof/inclusion?index=%2B1&size=4", 400, "index"),
        (
            "/v1/proof/inclusion?index=99999999999999999999999&size=4",
            400,
            "index",
        ),
        ("/v1/proof/inclusion?index=4&size=4", 400, "index"),
        ("/v1/proof/inclusion?index=1&size=3&size=4", 400, "size"),
        ("/v1/proof/inclusion?index=0&size=0", 400, "size"),
        ("/v1/proof/inclusion?index=0&size=5", 400, "size"),
        ("/v1/proof/inclusion?size=4", 400, "index"),
        (
            "/v1/proof/inclusion?index=0&leaf_hash=x&size=4",
            400,
            "index",
        ),
        (
            "/v1/proof/inclusion?leaf_hash=notbase64!&size=4",
            400,
            "leaf_hash",
        ),
        (
            "/v1/proof/inclusion?leaf_hash=AAAA&size=4",
            400,
            "leaf_hash",
        ),
        ("/v1/proof/inclusion?index=0&size=4&extra=1", 400, "extra"),
        ("/v1/proof/inclusion?index=0&size=4&%ZZ", 400, ""),
        ("/v1/proof/consistency?from=0&to=4", 400, "from"),
        ("/v1/proof/consistency?from=3&to=2", 400, "from"),
        ("/v1/proof/consistency?from=1&to=5", 400, "to"),
        ("/v1/proof/consistency?from=1", 400, "to"),
        ("/v1/proof/consistency?to=1", 400, "from"),
        ("/v1/proof/consistency?from=1.5&to=2", 400, "from"),
    ] {
        let r = c.get(format!("{}{q}", s.url)).send().await.unwrap();
        let got = r.status().as_u16();
        let v: Value = r.json().await.expect("JSON error body");
        assert_eq!(got, status, "{q}: {v}");
        if !field.is_empty() {
            assert_eq!(v["error"]["field"], field, "{q}: {v}");
        }
    }
    let r = c
        .get(format!(
            "{}/v1/proof/inclusion?leaf_hash={}&size=4",
            s.url,
            unknown.replace('=', "%3D")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .get(format!("{}/no/such/route", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
    // And the good forms work, including an unencoded '+' in leaf_hash.
    for q in [
        "/v1/proof/inclusion?index=3",
        "/v1/proof/consistency?from=4&to=4",
    ] {
        let r = c.get(format!("{}{q}", s.url)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{q}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_with_retry_after_and_appends_nothing() {
    // A sequencer that lingers 500 ms per batch keeps the queue occupied,
    // so with room for one event, concurrent appends find it full.
    let s = Server::start(&["--queue-capacity", "1", "--batch-wait-us", "500000"]);
    let c = Server::client();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (c, url, token) = (c.clone(), s.url.clone(), s.token.clone());
        tasks.push(tokio::spawn(async move {
            let r = c
                .post(format!("{url}/v1/events"))
                .bearer_auth(token)
                .json(&auth_event(i, json!(i)))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let v: Value = r.json().await.unwrap();
            (status, retry, v)
        }));
    }
    let (mut ok, mut busy) = (0, 0);
    for t in tasks {
        let (status, retry, v) = t.await.unwrap();
        match status {
            200 => ok += 1,
            503 => {
                busy += 1;
                assert_eq!(retry.as_deref(), Some("1"));
                assert_eq!(v["error"]["code"], "overloaded");
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert!(ok >= 1 && busy >= 1, "ok {ok}, busy {busy}");
    assert_eq!(
        s.size(&c).await,
        ok + 1,
        "only acknowledged events (and the admin token's record) are in the log"
    );
}

#[tokio::test]
async fn key_files_are_private_and_a_readable_key_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let mut s = Server::start(&[]);
    for f in ["log.key", "admin.token"] {
        let mode = std::fs::metadata(s.data_dir().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let vkey = std::fs::read_to_string(s.data_dir().join("log.vkey")).unwrap();
    assert!(vkey.starts_with("localhost/sealog+"), "{vkey}");
    assert_eq!(s.stop(), Some(0));
    let key = s.data_dir().join("log.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealog"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(s.data_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
}
