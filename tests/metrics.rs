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
