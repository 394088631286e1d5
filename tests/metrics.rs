//! `GET /metrics`: the Prometheus text exposition counts what the log did.

mod common;

use std::collections::HashMap;

use common::{auth_event, Server};
use serde_json::json;

/// Each sample of a text exposition, by `name{labels}`. Panics on a line
/// that is neither a comment nor `series value`, or on a series whose
/// metric family has no `# TYPE`.
fn samples(text: &str) -> HashMap<String, f64> {
    let mut typed = Vec::new();
    let mut out = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.push(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect(line);
        let name = series.split('{').next().unwrap();
        assert!(
            typed.iter().any(|t| name.starts_with(t.as_str())),
            "{name} has no # TYPE"
        );
        let value = value.parse::<f64>().expect(line);
        assert!(
            out.insert(series.to_string(), value).is_none(),
            "{series} twice"
        );
    }
    out
}

#[tokio::test]
async fn metrics_count_appends_by_outcome_batches_proofs_and_the_tree() {
    let s = Server::start(&[]);
    let c = Server::client();
    let before = samples(&s.get_text(&c, "/metrics").await);
    assert_eq!(before["sealog_tree_size"], 1.0, "the admin token's record");

    s.append(&c, auth_event(1, json!("one"))).await;
    s.append(
        &c,
        json!((2..5).map(|u| auth_event(u, json!(u))).collect::<Vec<_>>()),
    )
    .await;
    let bad = c
        .post(format!("{}/v1/events", s.url))
        .bearer_auth(&s.token)
        .json(&json!({"class_uid": 3002}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422, "an event OCSF refuses");
    s.get_text(&c, "/v1/proof/inclusion?index=2").await; // asserts 200

    let m = samples(&s.get_text(&c, "/metrics").await);
    let grew = |k: &str| m[k] - before.get(k).copied().unwrap_or(0.0);
    assert_eq!(grew(r#"sealog_append_requests_total{outcome="ok"}"#), 2.0);
    assert_eq!(grew(r#"sealog_append_events_total{outcome="ok"}"#), 4.0);
    assert_eq!(
        grew(r#"sealog_append_requests_total{outcome="invalid_event"}"#),
        1.0
    );
    assert_eq!(grew("sealog_inclusion_proofs_total"), 1.0);
    assert_eq!(m["sealog_tree_size"], 5.0);
    assert_eq!(s.checkpoint(&c).await.size, 5);
    // Two requests, two batches or one: four events either way.
    assert_eq!(grew("sealog_batch_events_sum"), 4.0);
    let batches = grew("sealog_batch_events_count");
    assert!((1.0..=2.0).contains(&batches), "{batches} batches");
    assert_eq!(grew("sealog_commit_seconds_count"), batches);
    assert_eq!(
        m[r#"sealog_batch_events_bucket{le="+Inf"}"#],
        m["sealog_batch_events_count"]
    );
    assert_eq!(m["sealog_index_pauses_total"], 0.0, "an index in step");
    assert_eq!(m["sealog_queue_depth"], 0.0);
    assert!(
        !m.contains_key("sealog_witness_lag_leaves"),
        "no witnesses configured"
    );
}

/// `samples` of `/metrics` once `done` holds of them, polling for at most
/// 30 s.
async fn samples_once(
    s: &Server,
    c: &reqwest::Client,
    what: &str,
    done: impl Fn(&HashMap<String, f64>) -> bool,
) -> HashMap<String, f64> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let m = samples(&s.get_text(c, "/metrics").await);
        if done(&m) {
            return m;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {m:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_followers_of_the_log_report_their_lag_and_retries() {
    let s = Server::start(&[]);
    let c = Server::client();
    let lag = |f: &str| format!(r#"sealog_follower_lag_leaves{{follower="{f}"}}"#);
    for f in ["index", "detections", "stream", "witnessing"] {
        let m = samples(&s.get_text(&c, "/metrics").await);
        let retries = format!(r#"sealog_follower_retries_total{{follower="{f}"}}"#);
        assert_eq!(m.get(&retries), Some(&0.0), "{f}");
    }
    s.append(
        &c,
        json!((0..5).map(|u| auth_event(u, json!(u))).collect::<Vec<_>>()),
    )
    .await;
    // Both followers catch up (a query hurries the index): no lag, and
    // the index covers the tree.
    let _: serde_json::Value = s.get_json_auth(&c, "/v1/events?user=u-1").await;
    let m = samples_once(&s, &c, "the followers catch up", |m| {
        m.get(&lag("index")) == Some(&0.0) && m.get(&lag("detections")) == Some(&0.0)
    })
    .await;
    assert_eq!(m["sealog_indexed_size"], m["sealog_tree_size"]);
    assert_eq!(m["sealog_detection_lag_events"], 0.0);
    assert!(
        !m.contains_key(&lag("witnessing")),
        "no witnesses configured"
    );
    assert!(!m.contains_key(&lag("stream")), "no stream open");
    // An open stream is a follower too, and is forgotten once closed.
    let stream = c
        .get(format!("{}/v1/stream?from=0", s.url))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    samples_once(&s, &c, "an open stream's lag", |m| {
        m.get(&lag("stream")) == Some(&0.0)
    })
    .await;
    drop(stream);
    samples_once(&s, &c, "a closed stream is forgotten", |m| {
        !m.contains_key(&lag("stream"))
    })
    .await;
}
