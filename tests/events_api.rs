//! The audit-log side over HTTP with the real binary: reading events and
//! receipts back, the tlog-proof form, idempotent retries, redaction, an
//! auditor's full check, scopes, tokens, and queries against brute force.

mod common;

use std::collections::BTreeMap;

use common::{auth_event, receipts, Server};
use sealog_verify::receipt::Receipt;
use sealog_verify::verify;
use serde_json::{json, Value};

async fn get(c: &reqwest::Client, s: &Server, path: &str, token: Option<&str>) -> (u16, String) {
    s.get_as(c, path, token).await
}

async fn post(
    c: &reqwest::Client,
    s: &Server,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    s.post_as(c, path, token, &body).await
}

fn b64(s: &str) -> Vec<u8> {
    base64::Engine::decode(&base64::prelude::BASE64_STANDARD, s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_uid_from_20_clients_at_once_is_one_leaf() {
    let s = Server::start(&[]);
    let c = Server::client();
    let mut ev = auth_event(7, json!("retry"));
    ev["metadata"]["uid"] = json!("idp-event-0001");
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (c, url, token, ev) = (c.clone(), s.url.clone(), s.token.clone(), ev.clone());
        tasks.push(tokio::spawn(async move {
            let r = c
                .post(format!("{url}/v1/events"))
                .bearer_auth(token)
                .json(&ev)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            serde_json::from_str::<Receipt>(&r.text().await.unwrap()).unwrap()
        }));
    }
    let mut rs = Vec::new();
    for t in tasks {
        rs.push(t.await.unwrap());
    }
    assert!(
        rs.iter().all(|r| r.index == rs[0].index),
        "one index for all"
    );
    assert_eq!(
        rs.iter().filter(|r| !r.duplicate).count(),
        1,
        "one original, 19 duplicates"
    );
    assert!(rs.iter().all(|r| r.commitment == rs[0].commitment
        && r.event.as_ref().unwrap().get() == rs[0].event.as_ref().unwrap().get()));
    for r in &rs {
        verify::verify_receipt(r, &s.vkey).unwrap();
    }
    let cp = s.checkpoint(&c).await;
    assert_eq!(cp.size, 2, "the admin token record and one event");
    // In one batch too.
    let (st, _) = post(
        &c,
        &s,
        "/v1/events",
        Some(&s.token),
        json!([ev.clone(), ev.clone()]),
    )
    .await;
    assert_eq!(st, 200);
    let cp = s.checkpoint(&c).await;
    assert_eq!(cp.size, 2);
    // The same uid on another event is refused, appends nothing, and shows
    // nothing of the logged event (an append token cannot read with it).
    let mut other = auth_event(8, json!("not the same"));
    other["metadata"]["uid"] = json!("idp-event-0001");
    let (st, v) = post(
        &c,
        &s,
        "/v1/events",
        Some(&s.token),
        json!([auth_event(9, json!("fine")), other]),
    )
    .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (409, Some("uid_conflict")),
        "{v}"
    );
    assert!(
        !v.to_string().contains("retry"),
        "no event content in the answer"
    );
    let cp = s.checkpoint(&c).await;
    assert_eq!(cp.size, 2, "nothing of the request appended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_read_back_receipts_and_tlog_proofs_verify() {
    let s = Server::start(&[]);
    let c = Server::client();
    let sent: Vec<Value> = (0..40)
        .map(|i| auth_event(i, json!(format!("secret-tag-{i}"))))
        .collect();
    let rs = receipts(&s.append(&c, json!(sent)).await);
    let t = Some(s.token.as_str());

    let (st, body) = get(&c, &s, &format!("/v1/events/{}", rs[5].index), t).await;
    assert_eq!(st, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["event"]["unmapped"]["tag"], "secret-tag-5");
    assert_eq!(
        b64(v["salt"].as_str().unwrap()),
        rs[5].salt.clone().unwrap()
    );
    assert_eq!(v["commitment"], rs[5].commitment.to_string());

    // Receipts at the latest and at a past size, JSON and tlog-proof.
    let (st, body) = get(&c, &s, &format!("/v1/events/{}/receipt", rs[5].index), t).await;
    assert_eq!(st, 200);
    let latest: Receipt = serde_json::from_str(&body).unwrap();
    assert_eq!(verify::verify_receipt(&latest, &s.vkey).unwrap().size, 41);
    let (st, body) = get(
        &c,
        &s,
        &format!("/v1/events/{}/receipt?size=7", rs[5].index),
        t,
    )
    .await;
    assert_eq!(st, 200);
    let past: Receipt = serde_json::from_str(&body).unwrap();
    assert_eq!(verify::verify_receipt(&past, &s.vkey).unwrap().size, 7);
    let r = c
        .get(format!("{}/v1/events/{}/receipt", s.url, rs[9].index))
        .bearer_auth(&s.token)
        .header("accept", "text/x.tlog.proof")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/x.tlog.proof");
    let text = r.text().await.unwrap();
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "), "{text}");
    assert!(text.contains(&format!("\nindex {}\n", rs[9].index)));
    let parsed = Receipt::from_tlog_proof(&text).unwrap();
    verify::verify_receipt(&parsed, &s.vkey).expect("the tlog-proof stands alone");
    let tampered = text.replacen(
        &format!("index {}", rs[9].index),
        &format!("index {}", rs[8].index),
        1,
    );
    assert!(
        verify::verify_receipt(&Receipt::from_tlog_proof(&tampered).unwrap(), &s.vkey).is_err()
    );
    let (_, same) = get(
        &c,
        &s,
        &format!("/v1/events/{}/receipt?format=tlog-proof", rs[9].index),
        t,
    )
    .await;
    assert_eq!(same, text);

    for (path, want) in [
        ("/v1/events/41", 404),
        ("/v1/events/x", 400),
        ("/v1/events/-1", 400),
        ("/v1/events/5/receipt?size=5", 400),
        ("/v1/events/5/receipt?size=42", 400),
        ("/v1/events/5/receipt?format=xml", 400),
        ("/v1/events/5/receipt?bogus=1", 400),
    ] {
        assert_eq!(get(&c, &s, path, t).await.0, want, "{path}");
    }

    // Public routes reveal no event content.
    let public = [
        "/checkpoint".to_string(),
        "/tile/0/000.p/41".into(),
        "/tile/entries/000.p/41".into(),
        format!("/v1/proof/inclusion?index={}", rs[5].index),
        "/v1/proof/consistency?from=3&to=41".into(),
    ];
    for p in public {
        let (st, body) = get(&c, &s, &p, None).await;
        assert_eq!(st, 200, "{p}");
        assert!(
            !body.contains("secret-tag") && !body.contains("example.com"),
            "{p} leaks event content"
        );
    }
}

/// What an auditor does: read every event back, recompute every
/// commitment from salt and event, and match the entry bundles.
async fn audit(c: &reqwest::Client, s: &Server) -> (u64, BTreeMap<u64, u64>) {
    let text = s.get_text(c, "/checkpoint").await;
    let cp = sealog_verify::note::verify_checkpoint(text.as_bytes(), &s.vkey).unwrap();
    let mut leaves = Vec::new();
    for tile in 0..cp.size.div_ceil(256) {
        let w = (cp.size - tile * 256).min(256);
        let path = if w == 256 {
            format!("/tile/entries/{tile:03}")
        } else {
            format!("/tile/entries/{tile:03}.p/{w}")
        };
        let r = c.get(format!("{}{path}", s.url)).send().await.unwrap();
        let bundle = r.bytes().await.unwrap();
        assert_eq!(bundle.len() as u64, w * 34);
        for e in bundle.chunks(34) {
            assert_eq!(&e[..2], &[0, 32]);
            leaves.push(sealog_verify::tree::Hash(e[2..].try_into().unwrap()));
        }
    }
    let mut mem = sealog_verify::tree::MemoryHashes::default();
    for l in &leaves {
        mem.append(sealog_verify::tree::leaf_hash(&l.0));
    }
    assert_eq!(
        sealog_verify::tree::root(cp.size, &mem).unwrap(),
        cp.root,
        "bundles rebuild the root"
    );
    let mut redacted = BTreeMap::new();
    for (i, commitment) in leaves.iter().enumerate() {
        let (st, body) = get(c, s, &format!("/v1/events/{i}"), Some(&s.token)).await;
        let v: Value = serde_json::from_str(&body).unwrap();
        match st {
            200 => {
                let jcs = sealog_verify::commitment::canonical(&v["event"]).unwrap();
                let salt = b64(v["salt"].as_str().unwrap());
                assert_eq!(
                    sealog_verify::commitment::commitment(&salt, &jcs),
                    *commitment,
                    "event {i}"
                );
            }
            410 => {
                redacted.insert(i as u64, v["error"]["redacted_by"].as_u64().unwrap());
            }
            other => panic!("event {i}: {other} {v}"),
        }
    }
    (cp.size, redacted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_checks_every_commitment_before_and_after_a_redaction() {
    let s = Server::start(&[]);
    let c = Server::client();
    let sent: Vec<Value> = (0..300).map(|i| auth_event(i % 11, json!(i))).collect();
    let rs = receipts(&s.append(&c, json!(sent)).await);
    let (size, redacted) = audit(&c, &s).await;
    assert_eq!((size, redacted.len()), (301, 0));
    let old_cp = s.checkpoint(&c).await;

    let target = rs[123].index;
    let t = Some(s.token.as_str());
    let (st, v) = post(
        &c,
        &s,
        &format!("/v1/events/{target}/redact"),
        t,
        json!({"reason": "GDPR erasure #42"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let record = v["redacted_by"].as_u64().unwrap();
    assert_eq!(record, 301);

    let (size, redacted) = audit(&c, &s).await;
    assert_eq!(size, 302);
    assert_eq!(redacted, BTreeMap::from([(target, record)]));
    // The redaction is itself on the record: who, which index, why.
    let (st, body) = get(&c, &s, &format!("/v1/events/{record}"), t).await;
    assert_eq!(st, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            v["event"]["class_uid"].as_u64(),
            v["event"]["activity_id"].as_u64()
        ),
        (Some(3004), Some(4))
    );
    assert_eq!(v["event"]["entity"]["uid"], target.to_string());
    assert_eq!(v["event"]["actor"]["user"]["name"], "admin");
    assert!(v["event"]["message"]
        .as_str()
        .unwrap()
        .contains("GDPR erasure #42"));
    // Every old receipt, including the redacted event's, still verifies,
    // and the old checkpoint is consistent with the new one.
    for r in &rs {
        verify::verify_receipt(r, &s.vkey).unwrap();
    }
    let new_cp = s.checkpoint(&c).await;
    s.assert_consistent(&c, &old_cp, &new_cp).await;
    // Its receipt now carries no event; a retry of its uid is answered so.
    let (st, body) = get(&c, &s, &format!("/v1/events/{target}/receipt"), t).await;
    assert_eq!(st, 410, "{body}");
    let (st, _) = post(
        &c,
        &s,
        &format!("/v1/events/{target}/redact"),
        t,
        json!({"reason": "again"}),
    )
    .await;
    assert_eq!(st, 410);
    for (path, body, want) in [
        ("/v1/events/999/redact", json!({"reason": "x"}), 404),
        ("/v1/events/5/redact", json!({}), 400),
        ("/v1/events/5/redact", json!({"reason": ""}), 400),
        ("/v1/events/5/redact", json!({"reason": 7}), 400),
    ] {
        assert_eq!(post(&c, &s, path, t, body).await.0, want, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_enforces_its_scope_and_revocation() {
    let mut s = Server::start(&[]);
    let c = Server::client();
    let admin = Some(s.token.clone());
    let mut tokens = BTreeMap::new();
    for (name, scopes) in [("writer", json!(["append"])), ("reader", json!(["read"]))] {
        let (st, v) = post(
            &c,
            &s,
            "/v1/tokens",
            admin.as_deref(),
            json!({"name": name, "scopes": scopes}),
        )
        .await;
        assert_eq!(st, 201, "{v}");
        tokens.insert(name, v["token"].as_str().unwrap().to_string());
    }
    let (st, _) = post(
        &c,
        &s,
        "/v1/tokens",
        admin.as_deref(),
        json!({"name": "writer", "scopes": ["read"]}),
    )
    .await;
    assert_eq!(st, 409, "names are unique among active tokens");
    for bad in [
        json!({"name": "x y", "scopes": ["read"]}),
        json!({"name": "ok", "scopes": []}),
        json!({"name": "ok", "scopes": ["root"]}),
    ] {
        assert_eq!(
            post(&c, &s, "/v1/tokens", admin.as_deref(), bad).await.0,
            400
        );
    }
    let (st, list) = get(&c, &s, "/v1/tokens", admin.as_deref()).await;
    assert_eq!(st, 200);
    for t in tokens.values() {
        assert!(!list.contains(&t[7..]), "the list never shows tokens");
    }
    // A token with every scope, revoked before use.
    let (_, v) = post(
        &c,
        &s,
        "/v1/tokens",
        admin.as_deref(),
        json!({"name": "spent", "scopes": ["admin"]}),
    )
    .await;
    let spent = v["token"].as_str().unwrap().to_string();
    assert_eq!(
        post(
            &c,
            &s,
            "/v1/tokens/spent/revoke",
            admin.as_deref(),
            Value::Null
        )
        .await
        .0,
        200
    );
    let w = Some(tokens["writer"].as_str());
    let r = Some(tokens["reader"].as_str());
    let ev = auth_event(1, json!("scoped"));
    // (method, path, body, the scope it needs)
    let routes: Vec<(&str, &str, Value, &str)> = vec![
        ("POST", "/v1/events", ev.clone(), "append"),
        ("GET", "/v1/events/0", Value::Null, "read"),
        ("GET", "/v1/events/0/receipt", Value::Null, "read"),
        ("GET", "/v1/events?user=u-1", Value::Null, "read"),
        (
            "POST",
            "/v1/events/0/redact",
            json!({"reason": "scope test"}),
            "admin",
        ),
        (
            "POST",
            "/v1/tokens",
            json!({"name": "n", "scopes": ["read"]}),
            "admin",
        ),
        ("GET", "/v1/tokens", Value::Null, "admin"),
        ("POST", "/v1/tokens/none/revoke", Value::Null, "admin"),
    ];
    for (method, path, body, scope) in &routes {
        let call = |token: Option<&str>| {
            let (c, s) = (&c, &s);
            let (method, path, body) = (*method, *path, body.clone());
            let token = token.map(String::from);
            async move {
                if method == "GET" {
                    get(c, s, path, token.as_deref()).await.0
                } else {
                    post(c, s, path, token.as_deref(), body).await.0
                }
            }
        };
        assert_eq!(call(None).await, 401, "{path} without a token");
        assert_eq!(
            call(Some("sealog_notatoken")).await,
            401,
            "{path} with a wrong token"
        );
        assert_eq!(call(Some(&spent)).await, 401, "{path} with a revoked token");
        let (right, wrong) = match *scope {
            "append" => (w, r),
            "read" => (r, w),
            _ => (None, r),
        };
        assert_eq!(call(wrong).await, 403, "{path} with the wrong scope");
        if let Some(t) = right {
            assert!(call(Some(t)).await < 400, "{path} with scope {scope}");
        }
    }
    // Revocation takes effect at once and is on the record.
    let (st, v) = post(
        &c,
        &s,
        "/v1/tokens/writer/revoke",
        admin.as_deref(),
        Value::Null,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let audit_index = v["audit_index"].as_u64().unwrap();
    assert_eq!(
        post(&c, &s, "/v1/events", w, ev.clone()).await.0,
        401,
        "revoked"
    );
    assert_eq!(
        post(
            &c,
            &s,
            "/v1/tokens/writer/revoke",
            admin.as_deref(),
            Value::Null
        )
        .await
        .0,
        404
    );
    let (_, body) = get(
        &c,
        &s,
        &format!("/v1/events/{audit_index}"),
        admin.as_deref(),
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["event"]["entity"]["name"], "writer");
    assert_eq!(v["event"]["activity_id"], 9);
    // The log audits itself: token creations and the revocation are
    // Entity Management events.
    let (_, body) = get(
        &c,
        &s,
        "/v1/events?class_uid=3004&order=oldest",
        admin.as_deref(),
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<(String, u64)> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"]["entity"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                e["event"]["activity_id"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("admin".into(), 1),
            ("writer".into(), 1),
            ("reader".into(), 1),
            ("spent".into(), 1),
            ("spent".into(), 9),
            ("writer".into(), 9)
        ]
    );

    // Revocation survives a restart, and the CLI works on a stopped log.
    assert_eq!(s.stop(), Some(0));
    let bin = env!("CARGO_BIN_EXE_sealog");
    let data = s.data_dir().to_str().unwrap().to_string();
    let out = std::process::Command::new(bin)
        .args([
            "token",
            "create",
            "--data",
            &data,
            "--scope",
            "read,append",
            "--name",
            "cli",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli_token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = std::process::Command::new(bin)
        .args(["token", "list", "--data", &data])
        .output()
        .unwrap();
    let list = String::from_utf8(out.stdout).unwrap();
    assert!(
        list.contains("cli\t[\"read\",\"append\"]\tactive")
            && list.contains("writer\t[\"append\"]\trevoked"),
        "{list}"
    );
    assert!(!list.contains(&cli_token[7..]));
    let out = std::process::Command::new(bin)
        .args(["token", "revoke", "--data", &data, "--name", "reader"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = std::process::Command::new(bin)
        .args(["token", "revoke", "--data", &data, "--name", "nobody"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    s.restart_after_stop();
    assert_eq!(post(&c, &s, "/v1/events", w, ev.clone()).await.0, 401);
    assert_eq!(get(&c, &s, "/v1/events/1", r).await.0, 401);
    assert_eq!(
        post(&c, &s, "/v1/events", Some(&cli_token), ev.clone())
            .await
            .0,
        200
    );
    // The CLI refuses while the log runs.
    let out = std::process::Command::new(bin)
        .args(["token", "list", "--data", &data])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("running"));
}

/// One random event and what it is indexed by.
struct Sample {
    user: String,
    actor: String,
    ip: String,
    class: u32,
    activity: i64,
    status: i64,
    time: u64,
}

fn sample(rng: &mut u64) -> (Sample, Value) {
    let mut next = |n: u64| {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng % n
    };
    let (class, activity) = match next(3) {
        0 => (3002, 1 + next(2) as i64),
        1 => (3001, [5, 9, 10, 12][next(4) as usize]),
        _ => (6003, 1 + next(4) as i64),
    };
    let s = Sample {
        user: format!("u{}", next(20)),
        actor: format!("a{}", next(10)),
        ip: format!("192.0.2.{}", next(15)),
        class,
        activity,
        status: [0, 1, 2, 99][next(4) as usize],
        time: 1_700_000_000_000 + next(100_000),
    };
    let mut v = json!({
        "class_uid": s.class, "activity_id": s.activity, "severity_id": 1, "time": s.time, "status_id": s.status,
        "user": {"uid": s.user}, "actor": {"user": {"name": s.actor}}, "src_endpoint": {"ip": s.ip},
        "metadata": {"version": "1.8.0", "product": {"name": "gen"}}
    });
    if class == 3002 {
        v["dst_endpoint"] = json!({"hostname": "h"});
    }
    if class == 6003 {
        v["api"] = json!({"operation": "op"});
    }
    (s, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_match_a_brute_force_filter() {
    let s = Server::start(&[]);
    let c = Server::client();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut all: Vec<(u64, Sample)> = Vec::new();
    for _ in 0..6 {
        let (samples, values): (Vec<Sample>, Vec<Value>) =
            (0..500).map(|_| sample(&mut rng)).unzip();
        let rs = receipts(&s.append(&c, json!(values)).await);
        all.extend(rs.iter().map(|r| r.index).zip(samples));
    }
    // The detections observe every event before one is redacted (a
    // redacted event is not observed, and `detections_caught_up` counts).
    s.detections_caught_up(&c).await;
    // A redacted event leaves every query.
    let gone = all[10].0;
    let (_, v) = post(
        &c,
        &s,
        &format!("/v1/events/{gone}/redact"),
        Some(&s.token),
        json!({"reason": "test"}),
    )
    .await;
    all.remove(10);
    // The log's own records match queries too: the admin token's creation
    // (Entity Management, Create) and the redaction (Delete), both with a
    // time now, outside every range below.
    let record = |activity, actor: &str| Sample {
        user: String::new(),
        actor: actor.into(),
        ip: String::new(),
        class: 3004,
        activity,
        status: -1,
        time: u64::MAX,
    };
    all.insert(0, (0, record(1, "sealog")));
    all.push((v["redacted_by"].as_u64().unwrap(), record(4, "admin")));

    // The detections have recorded all they will: set their findings aside.
    s.detections_caught_up(&c).await;
    let (_, body) = get(
        &c,
        &s,
        "/v1/events?class_uid=2004&limit=1000",
        Some(&s.token),
    )
    .await;
    let findings: std::collections::HashSet<u64> = serde_json::from_str::<Value>(&body).unwrap()
        ["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    let mut checked = 0;
    for q in 0..60u64 {
        let mut params: Vec<(String, String)> = Vec::new();
        let pick = |k: u64| (q / k).is_multiple_of(3);
        if pick(1) {
            params.push(("user".into(), format!("u{}", q % 20)));
        }
        if pick(2) {
            params.push(("actor".into(), format!("a{}", q % 10)));
        }
        if pick(5) && params.is_empty() {
            params.push(("src_ip".into(), format!("192.0.2.{}", q % 15)));
        }
        if pick(3) {
            params.push((
                "class_uid".into(),
                ["3002", "3001", "6003"][(q % 3) as usize].into(),
            ));
        }
        if q % 4 == 1 {
            params.push((
                "status_id".into(),
                ["0", "1", "2", "99"][(q / 4 % 4) as usize].into(),
            ));
        }
        if q % 5 == 2 {
            params.push(("activity_id".into(), "1".into()));
        }
        if q % 6 == 3 {
            params.push((
                "since".into(),
                (1_700_000_000_000u64 + q * 1000).to_string(),
            ));
            params.push(("until".into(), (1_700_000_050_000u64 + q * 500).to_string()));
        }
        let newest = q % 2 == 0;
        params.push((
            "order".into(),
            if newest { "newest" } else { "oldest" }.into(),
        ));
        params.push(("limit".into(), (7 + q * 13 % 200).to_string()));

        let get_p = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let mut want: Vec<u64> = all
            .iter()
            .filter(|(_, e)| {
                get_p("user").is_none_or(|v| e.user == v)
                    && get_p("actor").is_none_or(|v| e.actor == v)
                    && get_p("src_ip").is_none_or(|v| e.ip == v)
                    && get_p("class_uid").is_none_or(|v| e.class.to_string() == v)
                    && get_p("status_id").is_none_or(|v| e.status.to_string() == v)
                    && get_p("activity_id").is_none_or(|v| e.activity.to_string() == v)
                    && get_p("since").is_none_or(|v| e.time >= v.parse::<u64>().unwrap())
                    && get_p("until").is_none_or(|v| e.time <= v.parse::<u64>().unwrap())
            })
            .map(|(i, _)| *i)
            .collect();
        let by_time = get_p("since").is_some()
            && get_p("user").is_none()
            && get_p("actor").is_none()
            && get_p("src_ip").is_none();
        if by_time {
            // A time-range walk returns events in time order.
            let time: BTreeMap<u64, u64> = all.iter().map(|(i, e)| (*i, e.time)).collect();
            want.sort_by_key(|i| (time[i], *i));
        }
        if newest {
            want.reverse();
        }
        let mut got = Vec::new();
        let mut cursor: Option<String> = None;
        // 3,000 events, at least a page of 100 each: never more pages.
        for page in 0.. {
            assert!(page <= 3_000, "{params:?}: the cursor never ends");
            let mut p = params.clone();
            if let Some(cur) = &cursor {
                p.push(("cursor".into(), cur.clone()));
            }
            let qs = serde_urlencoded::to_string(&p).unwrap();
            let (st, body) = get(&c, &s, &format!("/v1/events?{qs}"), Some(&s.token)).await;
            assert_eq!(st, 200, "{qs}: {body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            got.extend(
                v["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["index"].as_u64().unwrap()),
            );
            match v["next_cursor"].as_str() {
                Some(cur) => cursor = Some(cur.to_string()),
                None => break,
            }
        }
        // Detections the random events set off are events too; the model
        // here covers the generated ones and the log's own records.
        got.retain(|i| !findings.contains(i));
        assert_eq!(got, want, "query {params:?}");
        checked += want.len();
    }
    assert!(checked > 500, "the queries matched a fair share: {checked}");

    for bad in [
        "/v1/events?limit=0",
        "/v1/events?limit=1001",
        "/v1/events?order=up",
        "/v1/events?cursor=zzz",
        "/v1/events?since=5&until=4",
        "/v1/events?class_uid=x",
        "/v1/events?colour=red",
        "/v1/events?user=",
    ] {
        assert_eq!(get(&c, &s, bad, Some(&s.token)).await.0, 400, "{bad}");
    }
    // A cursor from one order does not continue the other.
    let (_, body) = get(&c, &s, "/v1/events?limit=1&order=oldest", Some(&s.token)).await;
    let cur = serde_json::from_str::<Value>(&body).unwrap()["next_cursor"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        get(
            &c,
            &s,
            &format!("/v1/events?limit=1&order=newest&cursor={cur}"),
            Some(&s.token)
        )
        .await
        .0,
        400
    );
}

/// One row of the scope table: a route as the README and spec/api.md name
/// it (`<i>` for an index), the scopes that open it (none: public), and
/// a concrete request to try it with.
struct Route {
    method: &'static str,
    route: &'static str,
    scopes: &'static [&'static str],
    path: &'static str,
    body: Value,
}

/// Every route of the API. A route added to the README's API table or to
/// spec/api.md without a row here fails
/// `every_route_of_the_scope_table_refuses_no_token_and_the_wrong_scope`.
fn scope_table() -> Vec<Route> {
    let r = |method, route, scopes, path, body| Route {
        method,
        route,
        scopes,
        path,
        body,
    };
    let none = Value::Null;
    vec![
        r(
            "POST",
            "/v1/events",
            &["append"],
            "/v1/events",
            auth_event(9, json!("scoped")),
        ),
        r(
            "GET",
            "/v1/events",
            &["read"],
            "/v1/events?user=u-1",
            none.clone(),
        ),
        r(
            "GET",
            "/v1/events/<i>",
            &["read"],
            "/v1/events/1",
            none.clone(),
        ),
        r(
            "GET",
            "/v1/events/<i>/receipt",
            &["read"],
            "/v1/events/1/receipt",
            none.clone(),
        ),
        r(
            "POST",
            "/v1/events/<i>/redact",
            &["admin"],
            "/v1/events/2/redact",
            json!({"reason": "scope test"}),
        ),
        r(
            "POST",
            "/v1/tokens",
            &["admin"],
            "/v1/tokens",
            json!({"name": "made", "scopes": ["read"]}),
        ),
        r("GET", "/v1/tokens", &["admin"], "/v1/tokens", none.clone()),
        r(
            "POST",
            "/v1/tokens/<name>/revoke",
            &["admin"],
            "/v1/tokens/victim/revoke",
            none.clone(),
        ),
        r(
            "GET",
            "/v1/risk",
            &["risk", "read"],
            "/v1/risk?user=u-1",
            none.clone(),
        ),
        r(
            "GET",
            "/v1/events/<i>/assurance",
            &["read"],
            "/v1/events/1/assurance",
            none.clone(),
        ),
        r(
            "GET",
            "/v1/stream",
            &["read"],
            "/v1/stream?from=1",
            none.clone(),
        ),
        r(
            "POST",
            "/v1/admin/backup",
            &["admin"],
            "/v1/admin/backup",
            none.clone(),
        ),
        r("GET", "/metrics", &[], "/metrics", none.clone()),
        r("GET", "/checkpoint", &[], "/checkpoint", none.clone()),
        r(
            "GET",
            "/checkpoint/latest",
            &[],
            "/checkpoint/latest",
            none.clone(),
        ),
        r("GET", "/tile/<L>/<N>", &[], "/tile/0/000.p/3", none.clone()),
        r(
            "GET",
            "/tile/entries/<N>",
            &[],
            "/tile/entries/000.p/3",
            none.clone(),
        ),
        r(
            "GET",
            "/v1/proof/inclusion",
            &[],
            "/v1/proof/inclusion?index=1&size=3",
            none.clone(),
        ),
        r(
            "GET",
            "/v1/proof/consistency",
            &[],
            "/v1/proof/consistency?from=1&to=3",
            none.clone(),
        ),
        r("GET", "/healthz", &[], "/healthz", none),
    ]
}

/// The README's API table: (method, route, scopes) for each route it
/// names (a row may name several; query strings and optional parts cut).
fn readme_routes() -> Vec<(String, String, Vec<String>)> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = readme
        .split("| route | auth | what |")
        .nth(1)
        .expect("the README's API table");
    let mut out = Vec::new();
    for line in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split('|').collect();
        let ticked = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        };
        let scopes = ticked(cells[2]);
        for code in ticked(cells[1]) {
            let Some((method, path)) = code.split_once(' ') else {
                continue;
            };
            if method != "GET" && method != "POST" {
                continue;
            }
            let path = path.split(['?', '[']).next().unwrap().to_string();
            out.push((method.to_string(), path, scopes.clone()));
        }
    }
    out
}

/// The scopes spec/api.md gives `method route`: from the line that names
/// it, else from its section's heading; `(public)` is none. None if the
/// spec does not name the route.
fn spec_scopes(spec: &str, method: &str, route: &str) -> Option<Vec<String>> {
    let needle = format!("`{method} {}", route.replace("<i>", "<index>"));
    let lines: Vec<&str> = spec.lines().collect();
    let at = lines.iter().position(|l| {
        l.match_indices(&needle)
            .any(|(i, _)| matches!(l[i + needle.len()..].chars().next(), Some('`' | '?' | '[')))
    })?;
    let scope_of = |l: &str| -> Option<Vec<String>> {
        if l.contains("(public") {
            return Some(Vec::new());
        }
        let rest = l.split("(scope ").nth(1)?;
        let rest = rest.split(')').next().unwrap();
        Some(
            rest.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect(),
        )
    };
    for l in lines[..=at].iter().rev() {
        if let Some(s) = scope_of(l) {
            return Some(s);
        }
        if l.starts_with("## ") {
            break;
        }
    }
    panic!("spec/api.md names {method} {route} under no scope")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_of_the_scope_table_refuses_no_token_and_the_wrong_scope() {
    let table = scope_table();
    // The table is the README's and the spec's, route for route.
    let mut ours: Vec<(String, String, Vec<String>)> = table
        .iter()
        .map(|r| {
            let scopes = r.scopes.iter().map(|s| s.to_string()).collect();
            (r.method.to_string(), r.route.to_string(), scopes)
        })
        .collect();
    let mut readme = readme_routes();
    ours.sort();
    readme.sort();
    assert_eq!(ours, readme, "the README's API table and this test's");
    let spec =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/spec/api.md")).unwrap();
    for (method, route, scopes) in &ours {
        assert_eq!(
            spec_scopes(&spec, method, route).as_ref(),
            Some(scopes),
            "spec/api.md on {method} {route}"
        );
    }

    let s = Server::start(&[]);
    let c = Server::client();
    let evs: Vec<Value> = (1..4).map(|u| auth_event(u, json!(u))).collect();
    s.append(&c, json!(evs)).await;
    s.new_token(&c, "victim", &["read"]).await;
    let mut tokens = vec![("admin", s.token.clone())];
    for scope in ["append", "read", "risk"] {
        tokens.push((scope, s.new_token(&c, scope, &[scope]).await));
    }
    // The status of one request; the body is not read (a stream stays
    // open until the answer is dropped).
    // The answer to one request; the body is read only for a refusal (a
    // stream stays open until the answer is dropped).
    let call = async |r: &Route, token: Option<&str>| -> reqwest::Response {
        let url = format!("{}{}", s.url, r.path);
        let mut req = if r.method == "GET" {
            c.get(url)
        } else {
            c.post(url).json(&r.body)
        };
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    };
    // A refusal: `status`, the JSON error `code`, and for a 401 the
    // challenge (RFC 6750).
    let refused = async |r: &Route, token: Option<&str>, status: u16, code: &str, what: &str| {
        let answer = call(r, token).await;
        assert_eq!(answer.status(), status, "{what}");
        let challenge = answer.headers().get("www-authenticate").cloned();
        if status == 401 {
            let challenge = challenge.unwrap_or_else(|| panic!("{what}: no WWW-Authenticate"));
            assert!(challenge.to_str().unwrap().starts_with("Bearer"), "{what}");
        }
        let v: Value = answer.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{what}: {v}");
    };
    for r in &table {
        let what = format!("{} {}", r.method, r.path);
        if r.scopes.is_empty() {
            assert_eq!(call(r, None).await.status(), 200, "{what} is public");
            continue;
        }
        refused(
            r,
            None,
            401,
            "unauthorized",
            &format!("{what} without a token"),
        )
        .await;
        let bogus = format!("{what} with no such token");
        refused(r, Some("sealog_notatoken"), 401, "unauthorized", &bogus).await;
        // Every token without the scope first, then those with it (a
        // redaction or a token change can be made once).
        let (right, wrong): (Vec<_>, Vec<_>) = tokens
            .iter()
            .partition(|(scope, _)| *scope == "admin" || r.scopes.contains(scope));
        assert!(!wrong.is_empty());
        for (scope, t) in wrong {
            let with = format!("{what} with a {scope} token");
            refused(r, Some(t), 403, "forbidden", &with).await;
        }
        for (scope, t) in right {
            let status = call(r, Some(t)).await.status().as_u16();
            assert!(
                (200..300).contains(&status),
                "{what} with a {scope} token: {status}"
            );
        }
    }
}
