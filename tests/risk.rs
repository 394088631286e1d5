//! Detections and the risk query over HTTP with the real binary.

mod common;

use std::time::{Duration, Instant};

use common::{receipts, Server};
use serde_json::{json, Value};

fn failed_logon(user: &str, time: u64) -> Value {
    json!({
        "class_uid": 3002, "activity_id": 1, "severity_id": 2, "status_id": 2, "time": time,
        "user": {"uid": user}, "dst_endpoint": {"hostname": "sso.example.com"},
        "src_endpoint": {"ip": "203.0.113.50"},
        "metadata": {"version": "1.8.0", "product": {"name": "Example IdP"}}
    })
}

async fn findings(s: &Server, c: &reqwest::Client) -> Vec<Value> {
    let v: Value = s
        .get_json_auth(c, "/v1/events?class_uid=2004&order=oldest")
        .await;
    v["events"].as_array().unwrap().clone()
}

async fn wait_findings(s: &Server, c: &reqwest::Client, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let f = findings(s, c).await;
        if f.len() >= n || Instant::now() > deadline {
            return f;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_fires_at_ten_is_on_the_record_and_raises_risk() {
    let s = Server::start(&[]);
    let c = Server::client();
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - 60_000;
    let mfa = json!({
        "class_uid": 3002, "activity_id": 1, "severity_id": 1, "status_id": 1, "time": t0, "is_mfa": true,
        "user": {"uid": "u-7"}, "dst_endpoint": {"hostname": "sso.example.com"},
        "metadata": {"version": "1.8.0", "product": {"name": "Example IdP"}}
    });
    let mfa_index = receipts(&s.append(&c, mfa).await)[0].index;
    let mut evidence = Vec::new();
    for i in 0..9 {
        evidence
            .push(receipts(&s.append(&c, failed_logon("u-7", t0 + 1000 * (i + 1))).await)[0].index);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        findings(&s, &c).await.is_empty(),
        "nothing before the tenth failure"
    );
    evidence.push(receipts(&s.append(&c, failed_logon("u-7", t0 + 10_000)).await)[0].index);
    let f = wait_findings(&s, &c, 1).await;
    assert_eq!(f.len(), 1, "exactly one finding");
    let ev = &f[0]["event"];
    assert_eq!(ev["finding_info"]["title"], "brute_force");
    assert_eq!(ev["unmapped"]["sealog"]["subject"], "u-7");
    let got: Vec<u64> = ev["unmapped"]["sealog"]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(got, evidence);
    // The finding is itself in the log with a verifiable receipt.
    let index = f[0]["index"].as_u64().unwrap();
    let r: sealog::receipt::Receipt = s
        .get_json_auth(&c, &format!("/v1/events/{index}/receipt"))
        .await;
    sealog::client::verify_receipt(&r, &s.vkey).unwrap();

    let risk: Value = s.get_json_auth(&c, "/v1/risk?user=u-7").await;
    assert_eq!(risk["risk_level_id"], 3);
    assert_eq!(risk["reasons"][0]["rule"], "brute_force");
    assert_eq!(risk["last_mfa"]["index"], mfa_index);
    let calm: Value = s.get_json_auth(&c, "/v1/risk?user=nobody").await;
    assert_eq!(calm["risk_level_id"], 0);

    // A risk-only token reads risk and nothing else.
    let r = c
        .post(format!("{}/v1/tokens", s.url))
        .bearer_auth(&s.token)
        .json(&json!({"name": "engine", "scopes": ["risk"]}))
        .send()
        .await
        .unwrap();
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .get(format!("{}/v1/risk?user=u-7", s.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(format!("{}/v1/events/0", s.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    for bad in ["/v1/risk", "/v1/risk?user=", "/v1/risk?user=a&x=1"] {
        let r = c
            .get(format!("{}{bad}", s.url))
            .bearer_auth(&s.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_window_keeps_the_count() {
    let mut s = Server::start(&[]);
    let c = Server::client();
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - 60_000;
    for i in 0..6 {
        s.append(&c, failed_logon("u-9", t0 + 1000 * i)).await;
    }
    assert_eq!(s.stop(), Some(0));
    s.restart_after_stop();
    for i in 6..9 {
        s.append(&c, failed_logon("u-9", t0 + 1000 * i)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        findings(&s, &c).await.is_empty(),
        "nine failures across a restart: not yet"
    );
    s.append(&c, failed_logon("u-9", t0 + 9000)).await;
    let f = wait_findings(&s, &c, 1).await;
    assert_eq!(f.len(), 1);
    // And a restart re-derives that finding without logging it twice.
    assert_eq!(s.stop(), Some(0));
    s.restart_after_stop();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(findings(&s, &c).await.len(), 1);
    let risk: Value = s.get_json_auth(&c, "/v1/risk?user=u-9").await;
    assert_eq!(
        risk["reasons"].as_array().unwrap().len(),
        1,
        "state rebuilt from the log"
    );
}
