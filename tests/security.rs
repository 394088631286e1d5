//! Regression tests for the weaknesses spec/security.md names, over HTTP
//! with the real binary: records only the log writes, and one rule for an
//! event's shape at append and at every reader.

mod common;

use common::{auth_event, receipts, Server};
use serde_json::{json, Value};

async fn post(
    c: &reqwest::Client,
    s: &Server,
    path: &str,
    token: &str,
    body: &Value,
) -> (u16, Value) {
    s.post_as(c, path, Some(token), body).await
}

async fn get(c: &reqwest::Client, s: &Server, path: &str, token: &str) -> (u16, Value) {
    let (status, body) = s.get_as(c, path, Some(token)).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// A token named `name` with `scopes`, made with the admin token.
async fn token(c: &reqwest::Client, s: &Server, name: &str, scopes: &[&str]) -> String {
    s.new_token(c, name, scopes).await
}

fn with(mut v: Value, path: &[&str], x: Value) -> Value {
    let mut at = &mut v;
    for k in &path[..path.len() - 1] {
        at = at
            .as_object_mut()
            .unwrap()
            .entry(k.to_string())
            .or_insert(json!({}));
    }
    at[path[path.len() - 1]] = x;
    v
}

#[tokio::test]
async fn a_token_cannot_imitate_the_logs_own_records() {
    let s = Server::start(&[]);
    let c = Server::client();
    let ingest = token(&c, &s, "ingest", &["append"]).await;
    // Each way an event could pass for the log's own: the uid range the
    // detection runner draws from, the server's logger, sealog's product,
    // the records' private member.
    let cases = [
        (
            with(
                auth_event(1, json!(1)),
                &["metadata", "uid"],
                json!("sealog-finding-0123"),
            ),
            "metadata.uid",
        ),
        (
            with(
                auth_event(1, json!(2)),
                &["metadata", "loggers"],
                json!([{"name": "relay"}, {"name": "SeaLog", "log_name": "records"}]),
            ),
            "metadata.loggers[1]",
        ),
        (
            with(
                auth_event(1, json!(3)),
                &["metadata", "loggers"],
                json!([{"name": "x", "product": {"name": "sealog"}}]),
            ),
            "metadata.loggers[0]",
        ),
        (
            with(
                auth_event(1, json!(4)),
                &["metadata", "product", "name"],
                json!("sealog"),
            ),
            "metadata.product.name",
        ),
        (
            with(
                auth_event(1, json!(5)),
                &["unmapped", "sealog"],
                json!({"rule": "brute_force"}),
            ),
            "unmapped.sealog",
        ),
    ];
    for (event, field) in &cases {
        for t in [&ingest, &s.token] {
            let (status, v) = post(&c, &s, "/v1/events", t, event).await;
            assert_eq!(status, 422, "{field}: {v}");
            assert_eq!(v["error"]["field"], *field, "{v}");
        }
    }
    // A record the log writes itself still carries them: the admin token's
    // creation at index 0, with the server's logger saying so.
    let (status, v) = get(&c, &s, "/v1/events/0", &s.token).await;
    assert_eq!(status, 200);
    let logger = v["event"]["metadata"]["loggers"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (logger["name"].as_str(), logger["log_name"].as_str()),
        (Some("sealog"), Some("records"))
    );
}

#[tokio::test]
async fn every_event_names_the_token_that_appended_it_inside_its_commitment() {
    let s = Server::start(&[]);
    let c = Server::client();
    let ingest = token(&c, &s, "ingest", &["append"]).await;
    let other = token(&c, &s, "other-ingest", &["append"]).await;
    // A producer's own loggers stay, in order; the server's comes last.
    let event = with(
        with(
            auth_event(7, json!("p")),
            &["metadata", "uid"],
            json!("evt-7"),
        ),
        &["metadata", "loggers"],
        json!([{"name": "fluent-bit", "uid": "relay-1"}]),
    );
    let (status, v) = post(&c, &s, "/v1/events", &ingest, &event).await;
    assert_eq!(status, 200, "{v}");
    let r = receipts(&v.to_string()).remove(0);
    sealog_verify::verify::verify_receipt(&r, &s.vkey).expect("the receipt verifies");
    let stored: Value = serde_json::from_str(r.event.as_ref().unwrap().get()).unwrap();
    let loggers = stored["metadata"]["loggers"].as_array().unwrap();
    assert_eq!(loggers.len(), 2, "{loggers:?}");
    assert_eq!(loggers[0], json!({"name": "fluent-bit", "uid": "relay-1"}));
    assert_eq!(
        loggers[1],
        json!({"name": "sealog", "log_name": "events", "uid": "ingest", "product": {"name": "sealog", "vendor_name": "sealog"}})
    );
    // The logger is inside the commitment: changing it breaks the receipt.
    let mut forged = r.clone();
    let mut e = stored.clone();
    e["metadata"]["loggers"][1]["uid"] = json!("other-ingest");
    forged.event = Some(serde_json::value::RawValue::from_string(e.to_string()).unwrap());
    assert!(sealog_verify::verify::verify_receipt(&forged, &s.vkey).is_err());
    // A retry of the same event by another token (a rotated credential)
    // is the same event: the first leaf, which still names `ingest`.
    let (status, again) = post(&c, &s, "/v1/events", &other, &event).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["index"], v["index"]);
    assert_eq!(again["duplicate"], true);
}

#[tokio::test]
async fn an_admin_cannot_redact_the_logs_own_records() {
    let s = Server::start(&[]);
    let c = Server::client();
    // Index 0 records the admin token's creation; a redaction record and a
    // token revocation are records too.
    let v = s.append(&c, auth_event(1, json!("x"))).await;
    let index = receipts(&v)[0].index;
    let (status, red) = post(
        &c,
        &s,
        &format!("/v1/events/{index}/redact"),
        &s.token,
        &json!({"reason": "test"}),
    )
    .await;
    assert_eq!(status, 200, "{red}");
    let record = red["redacted_by"].as_u64().unwrap();
    token(&c, &s, "temp", &["read"]).await;
    let (status, rv) = post(&c, &s, "/v1/tokens/temp/revoke", &s.token, &json!({})).await;
    assert_eq!(status, 200, "{rv}");
    let revocation = rv["audit_index"].as_u64().unwrap();
    for i in [0, record, revocation] {
        let (status, v) = post(
            &c,
            &s,
            &format!("/v1/events/{i}/redact"),
            &s.token,
            &json!({"reason": "cover tracks"}),
        )
        .await;
        assert_eq!(status, 403, "event {i}: {v}");
        assert_eq!(v["error"]["code"], "protected_record");
        let (status, _) = get(&c, &s, &format!("/v1/events/{i}"), &s.token).await;
        assert_eq!(status, 200, "event {i} is still there");
    }
}

/// An event nested `depth` levels deep (the event object is level 1).
fn nested(depth: usize) -> Value {
    let mut inner = json!("bottom");
    for _ in 0..depth.saturating_sub(2) {
        inner = json!({ "d": inner });
    }
    auth_event(3, inner)
}

#[tokio::test]
async fn the_deepest_event_append_accepts_is_read_back_by_every_reader() {
    let s = Server::start(&[]);
    let c = Server::client();
    let max = sealog::events::MAX_DEPTH;
    // One level too deep: refused, naming where.
    let (status, v) = post(&c, &s, "/v1/events", &s.token, &nested(max + 1)).await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"]["field"]
            .as_str()
            .unwrap()
            .starts_with("unmapped.tag.d"),
        "{v}"
    );
    // At the limit, alone and in a batch: accepted.
    let (status, v) = post(&c, &s, "/v1/events", &s.token, &json!([nested(max)])).await;
    assert_eq!(status, 200, "{v}");
    let r = receipts(&v.to_string()).remove(0);
    // Readers: the offline verifier (the CLI, on the receipt file)…
    let file = s.dir.parent().unwrap().join("deep-receipt.json");
    std::fs::write(&file, serde_json::to_vec(&r).unwrap()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealog"))
        .args(["verify", file.to_str().unwrap(), "--vkey", &s.vkey])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // …the event and receipt routes, and a query page (three envelopes deep)…
    let (status, e) = get(&c, &s, &format!("/v1/events/{}", r.index), &s.token).await;
    assert_eq!(status, 200);
    assert_eq!(e["event"]["unmapped"], nested(max)["unmapped"]);
    let (status, _) = get(&c, &s, &format!("/v1/events/{}/receipt", r.index), &s.token).await;
    assert_eq!(status, 200);
    let (status, page) = get(&c, &s, "/v1/events?user=u-3&order=oldest", &s.token).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    // …and the auditor's full replay, which re-commits every event.
    let token_file = s.dir.join("admin.token");
    let state = s.dir.parent().unwrap().join("audit");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sealog"))
        .args([
            "audit",
            "--log",
            &s.url,
            "--vkey",
            &s.vkey,
            "--state",
            state.to_str().unwrap(),
            "--replay",
            "--token-file",
            token_file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn an_event_over_the_size_every_reader_takes_is_refused() {
    let s = Server::start(&[]);
    let c = Server::client();
    let limit = sealog::events::MAX_EVENT_BYTES;
    let (status, v) = post(
        &c,
        &s,
        "/v1/events",
        &s.token,
        &auth_event(4, json!("x".repeat(limit))),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    // Just under: accepted, and read back whole.
    let (status, v) = post(
        &c,
        &s,
        "/v1/events",
        &s.token,
        &auth_event(4, json!("x".repeat(limit - 2048))),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, e) = get(&c, &s, &format!("/v1/events/{}", v["index"]), &s.token).await;
    assert_eq!(status, 200);
    assert_eq!(
        e["event"]["unmapped"]["tag"].as_str().unwrap().len(),
        limit - 2048
    );
}

#[tokio::test]
async fn a_query_page_is_bounded_by_bytes_not_only_by_count() {
    let s = Server::start(&[]);
    let c = Server::client();
    let big = sealog::events::MAX_EVENT_BYTES - 2048;
    for i in 0..10 {
        s.append(&c, auth_event(5, json!(format!("{i}{}", "y".repeat(big)))))
            .await;
    }
    let (status, page) = get(
        &c,
        &s,
        "/v1/events?user=u-5&order=oldest&limit=100",
        &s.token,
    )
    .await;
    assert_eq!(status, 200);
    let first = page["events"].as_array().unwrap().len();
    assert!(first < 10, "a page of {first} events of ~1 MiB");
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a cursor to go on from");
    let (status, rest) = get(
        &c,
        &s,
        &format!("/v1/events?user=u-5&order=oldest&limit=100&cursor={cursor}"),
        &s.token,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(first + rest["events"].as_array().unwrap().len(), 10);
}

/// A `kB` field of the server's `/proc/PID/status`, in bytes.
fn status_bytes(s: &Server, field: &str) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", s.pid().expect("running"))).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/PID/status"));
    kb * 1024
}

/// Starts a new peak: the server's peak resident memory (VmHWM) is reset
/// to what it holds now (Linux `clear_refs` 5), so that each try
/// measures its own peak rather than one an earlier try reached.
/// Returns the resident memory the new peak starts from.
fn reset_peak(s: &Server) -> u64 {
    std::fs::write(
        format!("/proc/{}/clear_refs", s.pid().expect("running")),
        "5",
    )
    .expect("reset the peak RSS");
    status_bytes(s, "VmRSS:")
}

#[tokio::test]
async fn a_maximum_size_body_costs_at_most_about_three_times_its_size() {
    let limit: usize = 4 << 20;
    // An event's text with `tag` (JSON text) under `unmapped`.
    let event = |user: u64, tag: &str| {
        let e = auth_event(user, json!("TAG")).to_string();
        e.replace("\"TAG\"", tag)
    };
    // `n` copies of `item` joined by commas, inside `open`/`close`.
    let repeat = |open: &str, item: &dyn Fn(usize) -> String, close: &str, room: usize| {
        let mut out = String::from(open);
        let mut i = 0;
        while out.len() + close.len() + 32 < room {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&item(i));
            i += 1;
        }
        out + close
    };
    let one = |tag: String| event(9, &tag);
    let overhead = event(9, "0").len();
    let per_event = limit / 1000 - 8;
    let batch = |tag: &dyn Fn(usize) -> String| {
        let events: Vec<String> = (0..1000u64).map(|i| event(i, &tag(i as usize))).collect();
        format!("[{}]", events.join(","))
    };
    // Bodies of the largest size, shaped to cost the most per byte once
    // parsed (dense arrays of one-digit numbers, objects of tiny members),
    // and a batch of ordinary events.
    let shapes: Vec<(&str, String)> = vec![
        (
            "one dense array",
            one(repeat("[", &|_| "0".into(), "]", limit - overhead)),
        ),
        (
            "one object of tiny members",
            one(repeat(
                "{",
                &|i| format!("\"{i:x}\":0"),
                "}",
                limit - overhead,
            )),
        ),
        (
            "a batch of dense events",
            batch(&|_| repeat("[", &|_| "0".into(), "]", per_event - overhead)),
        ),
        (
            "a batch of ordinary events",
            batch(&|_| format!("\"{}\"", "r".repeat(per_event - overhead - 2))),
        ),
    ];
    let mut over = Vec::new();
    let warm_up = batch(&|i| format!("\"w{i}{}\"", "w".repeat(per_event - overhead - 8)));
    for (name, body) in shapes {
        let s = Server::start(&[]);
        let c = Server::client();
        // The first large batch grows what every request shares and the
        // server bounds on its own (the store's page cache, the runtime's
        // buffers): measure a request after it.
        for _ in 0..2 {
            let r = c
                .post(format!("{}/v1/events", s.url))
                .bearer_auth(&s.token)
                .header("content-type", "application/json")
                .body(warm_up.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        assert!(
            body.len() <= limit && body.len() > limit - limit / 10,
            "{name}: {}",
            body.len()
        );
        // The least of three tries: the machine and the server's own
        // threads (index, detections) add noise to any one.
        let mut grew = u64::MAX;
        for _ in 0..3 {
            let before = reset_peak(&s);
            let r = c
                .post(format!("{}/v1/events", s.url))
                .bearer_auth(&s.token)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            assert!(
                status == 200 || status == 413 || status == 422,
                "{name}: {status} {}",
                &text[..text.len().min(300)]
            );
            grew = grew.min(status_bytes(&s, "VmHWM:").saturating_sub(before));
        }
        eprintln!(
            "{name}: body {} B, peak RSS +{grew} B ({:.2}x)",
            body.len(),
            grew as f64 / body.len() as f64
        );
        // About three times: the body, the events' canonical and stored
        // forms, the receipts; a parsed event's `Value` is bounded apart.
        // A batch of new events also grows the store's page cache (bounded
        // on its own, 512 MiB) by about its size: 4x leaves room for it.
        if grew > 4 * limit as u64 {
            over.push(format!(
                "{name}: peak RSS grew {grew} B for a {} B body",
                body.len()
            ));
        }
    }
    assert!(over.is_empty(), "{over:#?}");
}

async fn metric(s: &Server, c: &reqwest::Client, series: &str) -> u64 {
    s.metric(c, series).await
}

#[tokio::test]
async fn a_leaf_the_index_cannot_read_is_skipped_not_retried_for_ever() {
    let mut s = Server::start(&[]);
    let c = Server::client();
    let mut at = Vec::new();
    for i in 0..5 {
        at.push(receipts(&s.append(&c, auth_event(6, json!(i))).await)[0].index);
    }
    assert_eq!(s.stop(), Some(0));
    // Damage the third event's key, and make the index start over.
    let keys_path = s.dir.join("sealog.keys");
    let mut keys = std::fs::read(&keys_path).unwrap();
    keys[32 * at[2] as usize + 3] ^= 0x40;
    std::fs::write(&keys_path, &keys).unwrap();
    std::fs::remove_file(s.dir.join("index.redb")).unwrap();
    s.restart_after_stop();
    // The index covers the whole tree despite the leaf it cannot read.
    let size = s.checkpoint(&c).await.size;
    common::eventually(common::PATIENCE, "the index covers the tree", async || {
        let indexed = metric(&s, &c, "sealog_indexed_size").await;
        (indexed >= size)
            .then_some(())
            .ok_or(format!("indexed {indexed} of {size}"))
    })
    .await;
    assert_eq!(metric(&s, &c, "sealog_index_skipped_leaves_total").await, 1);
    let (status, page) = get(&c, &s, "/v1/events?user=u-6&order=oldest", &s.token).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(common::indices(&page), [at[0], at[1], at[3], at[4]]);
    // The log goes on: appends, and queries that find them.
    let new = receipts(&s.append(&c, auth_event(6, json!("after"))).await)[0].index;
    let (_, page) = get(&c, &s, "/v1/events?user=u-6&order=newest&limit=1", &s.token).await;
    assert_eq!(page["events"][0]["index"], new);
}
