//! Detections and the risk query over HTTP with the real binary.

mod common;

use common::{eventually, now_ms, receipts, Server, PATIENCE};
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

/// The findings once the detections have observed every event under the
/// latest checkpoint: all there will be for what was appended so far.
async fn settled_findings(s: &Server, c: &reqwest::Client) -> Vec<Value> {
    s.detections_caught_up(c).await;
    findings(s, c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_fires_at_ten_is_on_the_record_and_raises_risk() {
    let s = Server::start(&[]);
    let c = Server::client();
    let t0 = now_ms() - 60_000;
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
    s.detections_caught_up(&c).await;
    assert!(
        findings(&s, &c).await.is_empty(),
        "nothing before the tenth failure"
    );
    evidence.push(receipts(&s.append(&c, failed_logon("u-7", t0 + 10_000)).await)[0].index);
    let f = settled_findings(&s, &c).await;
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
    let r: sealog_verify::receipt::Receipt = s
        .get_json_auth(&c, &format!("/v1/events/{index}/receipt"))
        .await;
    sealog_verify::verify::verify_receipt(&r, &s.vkey).unwrap();

    let risk: Value = s.get_json_auth(&c, "/v1/risk?user=u-7").await;
    assert_eq!(risk["risk_level_id"], 3);
    assert_eq!(risk["reasons"][0]["rule"], "brute_force");
    assert_eq!(risk["last_mfa"]["index"], mfa_index);
    let calm: Value = s.get_json_auth(&c, "/v1/risk?user=nobody").await;
    assert_eq!(calm["risk_level_id"], 0);

    // A risk-only token reads risk and nothing else.
    let token = s.new_token(&c, "engine", &["risk"]).await;
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
    let t0 = now_ms() - 60_000;
    for i in 0..6 {
        s.append(&c, failed_logon("u-9", t0 + 1000 * i)).await;
    }
    assert_eq!(s.stop(), Some(0));
    s.restart_after_stop();
    for i in 6..9 {
        s.append(&c, failed_logon("u-9", t0 + 1000 * i)).await;
    }
    s.detections_caught_up(&c).await;
    assert!(
        findings(&s, &c).await.is_empty(),
        "nine failures across a restart: not yet"
    );
    s.append(&c, failed_logon("u-9", t0 + 9000)).await;
    let f = settled_findings(&s, &c).await;
    assert_eq!(f.len(), 1);
    // And a restart re-derives that finding without logging it twice.
    assert_eq!(s.stop(), Some(0));
    s.restart_after_stop();
    s.detections_caught_up(&c).await;
    assert_eq!(findings(&s, &c).await.len(), 1);
    let risk: Value = s.get_json_auth(&c, "/v1/risk?user=u-9").await;
    assert_eq!(
        risk["reasons"].as_array().unwrap().len(),
        1,
        "state rebuilt from the log"
    );
}

async fn metric(s: &Server, c: &reqwest::Client, series: &str) -> u64 {
    s.metric(c, series).await
}

/// Polls `series` until it reaches `want`; returns it.
async fn wait_metric(s: &Server, c: &reqwest::Client, series: &str, want: u64) -> u64 {
    eventually(PATIENCE, series, async || {
        let v = metric(s, c, series).await;
        (v >= want).then_some(v).ok_or(v.to_string())
    })
    .await
}

async fn post(s: &Server, c: &reqwest::Client, body: &Value) -> (u16, Value) {
    s.post_as(c, "/v1/events", Some(&s.token), body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_dated_past_the_skew_is_refused_and_a_backfilled_one_accepted() {
    let s = Server::start(&["--max-future-skew-ms", "600000"]);
    let c = Server::client();
    let now = now_ms();
    // Ten minutes of skew allowed: an hour ahead is refused, naming `time`.
    let (status, v) = post(&s, &c, &failed_logon("u-f", now + 3_600_000)).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["field"], "time");
    assert_eq!(v["error"]["code"], "invalid_event");
    // In a batch: the event's index is named, and nothing is appended.
    let batch = json!([
        failed_logon("u-f", now),
        failed_logon("u-f", now + 3_600_000)
    ]);
    let (status, v) = post(&s, &c, &batch).await;
    assert_eq!((status, &v["error"]["index"]), (422, &json!(1)), "{v}");
    // Within the skew, and a backfill from a year ago: accepted.
    let (status, v) = post(&s, &c, &failed_logon("u-f", now + 60_000)).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = post(&s, &c, &failed_logon("u-f", now - 365 * 86_400_000)).await;
    assert_eq!(status, 200, "{v}");
    // The default skew is a day.
    let d = Server::start(&[]);
    let (status, _) = post(&d, &c, &failed_logon("u-f", now + 2 * 86_400_000)).await;
    assert_eq!(status, 422);
    let (status, _) = post(&d, &c, &failed_logon("u-f", now + 3_600_000)).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_finds_a_user_by_uid_or_by_name_and_never_mixes_a_uid_with_a_name() {
    let s = Server::start(&[]);
    let c = Server::client();
    let t0 = now_ms() - 60_000;
    // Ten failures of u-40 (named Dana), logged with uid and name.
    let named: Vec<Value> = (0..10)
        .map(|i| {
            let mut e = failed_logon("u-40", t0 + i);
            e["user"]["name"] = json!("Dana");
            e
        })
        .collect();
    s.append(&c, json!(named)).await;
    // Five failures of the uid "carl" and five of a user named "carl"
    // with no uid: two users, five each, no brute force.
    let mut mixed = Vec::new();
    for i in 0..5 {
        mixed.push(failed_logon("carl", t0 + i));
        let mut e = failed_logon("x", t0 + i);
        e["user"] = json!({"name": "carl"});
        mixed.push(e);
    }
    s.append(&c, json!(mixed)).await;
    settled_findings(&s, &c).await;
    for q in ["u-40", "Dana"] {
        let risk: Value = s.get_json_auth(&c, &format!("/v1/risk?user={q}")).await;
        assert_eq!(risk["risk_level_id"], 3, "{q}: {risk}");
        assert_eq!(risk["reasons"][0]["rule"], "brute_force");
        assert_eq!(risk["reasons"][0]["user"], json!({"uid": "u-40"}));
        assert_eq!(risk["matched"], json!([{"uid": "u-40", "name": "Dana"}]));
        assert_eq!(risk["reasons_omitted"], 0);
    }
    s.detections_caught_up(&c).await;
    let f = findings(&s, &c).await;
    assert_eq!(f.len(), 1, "only u-40's brute force: {f:?}");
    let risk: Value = s.get_json_auth(&c, "/v1/risk?user=carl").await;
    assert_eq!(risk["risk_level_id"], 0, "{risk}");
    assert_eq!(risk["matched"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_producer_can_take_a_findings_uid_and_detections_keep_flowing() {
    let mut s = Server::start(&[]);
    let c = Server::client();
    let t0 = now_ms() - 60_000;
    // The finding u-50's ten failures will make, if they land right after
    // the producer's event that takes its uid.
    let size = s.checkpoint(&c).await.size;
    let finding = sealog::detect::engine::Finding {
        rule: "brute_force",
        subject: "u-50".into(),
        identity: None,
        evidence: (size + 1..size + 11).collect(),
        risk_level_id: 3,
        risk_score: 70,
        time: t0 + 9,
    };
    let uid = finding.event()["metadata"]["uid"].clone();
    let mut squatter = failed_logon("someone", t0);
    squatter["metadata"]["uid"] = uid.clone();
    squatter["status_id"] = json!(1);
    // A producer cannot take it: the range is the log's own. (A log
    // written before it was reserved may hold one: the runner then records
    // the finding under an alternate uid, `detecting`'s unit tests.)
    let (status, v) = post(&s, &c, &squatter).await;
    assert_eq!(status, 422);
    assert_eq!(v["error"]["field"], "metadata.uid");
    squatter["metadata"]["uid"] = json!("someone-else-1");
    let at = receipts(&s.append(&c, squatter).await)[0].index;
    assert_eq!(at, size);
    let fails: Vec<Value> = (0..10).map(|i| failed_logon("u-50", t0 + i)).collect();
    let r = receipts(&s.append(&c, json!(fails)).await);
    assert_eq!(r[0].index, size + 1);
    // The finding is recorded under the uid it derives.
    let f = settled_findings(&s, &c).await;
    assert_eq!(f.len(), 1, "the finding is on the record");
    assert_eq!(f[0]["event"]["metadata"]["uid"], uid);
    assert_eq!(f[0]["event"]["unmapped"]["sealog"]["subject"], "u-50");
    let taken = r#"sealog_detection_findings_total{outcome="uid_taken"}"#;
    assert_eq!(metric(&s, &c, taken).await, 0);
    // And detections go on: another user's brute force.
    let fails: Vec<Value> = (0..10).map(|i| failed_logon("u-51", t0 + i)).collect();
    s.append(&c, json!(fails)).await;
    let f = settled_findings(&s, &c).await;
    assert_eq!(f.len(), 2, "detections still flow");
    assert_eq!(f[1]["event"]["unmapped"]["sealog"]["subject"], "u-51");
    // After a restart the replay meets both records again: no new ones,
    // and the runner is not stuck (a third finding appears).
    s.restart();
    let fails: Vec<Value> = (0..10).map(|i| failed_logon("u-52", t0 + i)).collect();
    s.append(&c, json!(fails)).await;
    let f = settled_findings(&s, &c).await;
    assert_eq!(f.len(), 3, "{f:?}");
    s.detections_caught_up(&c).await;
    assert_eq!(findings(&s, &c).await.len(), 3, "nothing logged twice");
    let again = r#"sealog_detection_findings_total{outcome="already_recorded"}"#;
    assert!(metric(&s, &c, again).await >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_failures_from_one_ip_is_processed_with_bounded_state() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("sealog.toml");
    std::fs::write(
        &config,
        "[detections]\nmax_users = 100\nmax_window_events = 100\n",
    )
    .unwrap();
    let s = Server::start(&["--config", config.to_str().unwrap()]);
    let c = Server::client();
    let t0 = now_ms() - 600_000;
    // 3,000 failures over 3,000 users, then 3,000 over 4 users, all from
    // one IP (the old rules rebuilt the IP's whole window per failure).
    for k in 0..3u64 {
        let batch: Vec<Value> = (0..1000)
            .map(|i| failed_logon(&format!("v-{}", k * 1000 + i), t0 + k * 1000 + i))
            .collect();
        s.append(&c, json!(batch)).await;
    }
    for k in 0..3u64 {
        let batch: Vec<Value> = (0..1000)
            .map(|i| failed_logon(&format!("w-{}", i % 4), t0 + 3000 + k * 1000 + i))
            .collect();
        s.append(&c, json!(batch)).await;
    }
    // A spray per five users, then a brute force per ten failures of each
    // of the four: 600 + 300 findings.
    let appended = r#"sealog_detection_findings_total{outcome="appended"}"#;
    assert_eq!(wait_metric(&s, &c, appended, 900).await, 900);
    let users = metric(&s, &c, r#"sealog_detection_state{kind="users"}"#).await;
    assert!(users <= 100, "{users} users held");
    let evicted = metric(&s, &c, r#"sealog_detection_evictions_total{state="users"}"#).await;
    assert!(evicted >= 2900, "{evicted} users evicted");
    let window = metric(
        &s,
        &c,
        r#"sealog_detection_evictions_total{state="window_events"}"#,
    )
    .await;
    assert!(
        window > 0,
        "the few users' failures overflowed the IP's window"
    );
    assert_eq!(metric(&s, &c, "sealog_detection_lag_events").await, 0);
    // Risk answers for a user kept and one evicted.
    let risk: Value = s.get_json_auth(&c, "/v1/risk?user=w-1").await;
    assert_eq!(risk["risk_level_id"], 3);
    assert!(risk["reasons"].as_array().unwrap().len() <= 20);
    assert_eq!(
        risk["reasons"].as_array().unwrap().len() as u64
            + risk["reasons_omitted"].as_u64().unwrap(),
        32,
        "750 failures of w-1: 75 brute-force findings, 32 kept (max_findings_per_user)"
    );
    let findings_evicted = metric(
        &s,
        &c,
        r#"sealog_detection_evictions_total{state="findings"}"#,
    )
    .await;
    assert_eq!(findings_evicted, 4 * (75 - 32));
    let risk: Value = s.get_json_auth(&c, "/v1/risk?user=v-0").await;
    assert_eq!(risk["risk_level_id"], 0);
}

// The boundaries of every rule (spec/detections.md), through the binary
// with thresholds from the config file's `[detections]` table: small
// counts, one-minute windows, a travel speed other than the default. A
// window holds what is at most `W` ms older than the newest event
// (inclusive); a count fires at exactly its threshold.

/// The one-minute window every rule gets below.
const W: u64 = 60_000;

/// A server whose rules fire at 3 (failures, users, denied pushes), over
/// one-minute windows, and at 1,000 km/h.
fn rules_server() -> (Server, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("sealog.toml");
    std::fs::write(
        &config,
        format!(
            "[detections]\n\
             brute_force_failures = 3\nbrute_force_window_ms = {W}\n\
             spray_users = 3\nspray_window_ms = {W}\n\
             mfa_denials = 3\nmfa_window_ms = {W}\n\
             travel_kmh = 1000.0\n\
             privilege_window_ms = {W}\n\
             new_device_window_ms = {W}\n"
        ),
    )
    .unwrap();
    let s = Server::start(&["--config", config.to_str().unwrap()]);
    (s, tmp)
}

/// An Authentication logon of `user` (a uid) at `time`, success (status
/// 1) or failure (2), with `extra` members merged in.
fn logon(user: &str, status: u8, time: u64, extra: Value) -> Value {
    let mut v = json!({
        "class_uid": 3002, "activity_id": 1, "severity_id": 1, "status_id": status, "time": time,
        "user": {"uid": user}, "dst_endpoint": {"hostname": "sso.example.com"},
        "metadata": {"version": "1.8.0", "product": {"name": "Example IdP"}}
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

/// Appends `events` one request each (so each is observed alone); their
/// indices.
async fn append_each(s: &Server, c: &reqwest::Client, events: Vec<Value>) -> Vec<u64> {
    let mut at = Vec::new();
    for e in events {
        at.push(receipts(&s.append(c, e).await)[0].index);
    }
    at
}

/// The findings of `rule` once the detections have caught up, as
/// (subject, evidence).
async fn fired(s: &Server, c: &reqwest::Client, rule: &str) -> Vec<(String, Vec<u64>)> {
    settled_findings(s, c)
        .await
        .iter()
        .filter(|f| f["event"]["finding_info"]["title"] == rule)
        .map(|f| {
            let sealog = &f["event"]["unmapped"]["sealog"];
            let evidence = sealog["evidence"].as_array().unwrap();
            (
                sealog["subject"].as_str().unwrap().to_string(),
                evidence.iter().map(|i| i.as_u64().unwrap()).collect(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_fires_at_the_configured_count_within_the_window_only() {
    let (s, _tmp) = rules_server();
    let c = Server::client();
    let t0 = now_ms() - 3_600_000;
    let fail = |u: &str, t| logon(u, 2, t, json!({}));
    // Two failures: one below the threshold.
    let mut at = append_each(&s, &c, vec![fail("bf", t0), fail("bf", t0 + 1)]).await;
    assert_eq!(fired(&s, &c, "brute_force").await, [], "two of three");
    // The third, exactly at the threshold.
    at.extend(append_each(&s, &c, vec![fail("bf", t0 + 2)]).await);
    assert_eq!(fired(&s, &c, "brute_force").await, [("bf".into(), at)]);
    // Three failures spanning exactly the window fire; one ms more, not.
    let inside = append_each(
        &s,
        &c,
        vec![fail("in", t0), fail("in", t0 + 1), fail("in", t0 + W)],
    )
    .await;
    append_each(
        &s,
        &c,
        vec![
            fail("out", t0),
            fail("out", t0 + 1),
            fail("out", t0 + W + 1),
        ],
    )
    .await;
    let f = fired(&s, &c, "brute_force").await;
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!(f[1], ("in".into(), inside));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_spray_fires_at_the_configured_user_count_within_the_window_only() {
    let (s, _tmp) = rules_server();
    let c = Server::client();
    let t0 = now_ms() - 3_600_000;
    let fail = |u: &str, ip: &str, t| logon(u, 2, t, json!({"src_endpoint": {"ip": ip}}));
    let ip = "198.51.100.1";
    let mut at = append_each(&s, &c, vec![fail("a1", ip, t0), fail("a2", ip, t0 + 1)]).await;
    // The same user again is not another user.
    at.extend(append_each(&s, &c, vec![fail("a2", ip, t0 + 2)]).await);
    assert_eq!(
        fired(&s, &c, "password_spray").await,
        [],
        "two users of three"
    );
    at.extend(append_each(&s, &c, vec![fail("a3", ip, t0 + 3)]).await);
    assert_eq!(
        fired(&s, &c, "password_spray").await,
        [(ip.to_string(), at)]
    );
    let inside = append_each(
        &s,
        &c,
        vec![
            fail("b1", "198.51.100.2", t0),
            fail("b2", "198.51.100.2", t0 + 1),
            fail("b3", "198.51.100.2", t0 + W),
        ],
    )
    .await;
    append_each(
        &s,
        &c,
        vec![
            fail("c1", "198.51.100.3", t0),
            fail("c2", "198.51.100.3", t0 + 1),
            fail("c3", "198.51.100.3", t0 + W + 1),
        ],
    )
    .await;
    let f = fired(&s, &c, "password_spray").await;
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!(f[1], ("198.51.100.2".into(), inside));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_fatigue_fires_after_the_configured_denials_within_the_window_only() {
    let (s, _tmp) = rules_server();
    let c = Server::client();
    let t0 = now_ms() - 3_600_000;
    let push = json!({"auth_factors": [{"factor_type_id": 5}]});
    let denied = |u: &str, t| logon(u, 2, t, push.clone());
    let accepted = |u: &str, t| logon(u, 1, t, push.clone());
    // Two denied pushes then a success: one below.
    append_each(
        &s,
        &c,
        vec![
            denied("m2", t0),
            denied("m2", t0 + 1),
            accepted("m2", t0 + 2),
        ],
    )
    .await;
    assert_eq!(
        fired(&s, &c, "mfa_fatigue").await,
        [],
        "two denials of three"
    );
    // Three, then a success: exactly at the threshold. Denials alone
    // never fire; the success does.
    let mut at = append_each(
        &s,
        &c,
        vec![denied("m3", t0), denied("m3", t0 + 1), denied("m3", t0 + 2)],
    )
    .await;
    assert_eq!(fired(&s, &c, "mfa_fatigue").await, [], "no success yet");
    at.extend(append_each(&s, &c, vec![accepted("m3", t0 + 3)]).await);
    assert_eq!(fired(&s, &c, "mfa_fatigue").await, [("m3".into(), at)]);
    // The success exactly a window after the first denial: fires; a ms
    // later the first denial has left the window.
    let inside = append_each(
        &s,
        &c,
        vec![
            denied("in", t0),
            denied("in", t0 + 1),
            denied("in", t0 + 2),
            accepted("in", t0 + W),
        ],
    )
    .await;
    append_each(
        &s,
        &c,
        vec![
            denied("out", t0),
            denied("out", t0 + 1),
            denied("out", t0 + 2),
            accepted("out", t0 + W + 1),
        ],
    )
    .await;
    let f = fired(&s, &c, "mfa_fatigue").await;
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!(f[1], ("in".into(), inside));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_travel_fires_above_the_configured_speed_only() {
    let (s, _tmp) = rules_server();
    let c = Server::client();
    let t0 = now_ms() - 3_600_000;
    let at = |u: &str, t, long: f64| {
        logon(
            u,
            1,
            t,
            json!({"src_endpoint": {"ip": "192.0.2.9", "location": {"lat": 0.0, "long": long, "country": "XX"}}}),
        )
    };
    // One degree of longitude on the equator: 111.19 km (haversine,
    // R = 6371 km). At 1,000 km/h that takes 400.3 s: 10 % faster fires,
    // 10 % slower does not. (The default, 800 km/h, would fire on both.)
    let fast = (111.195 / 1000.0 * 3_600_000.0 / 1.1) as u64;
    let slow = (111.195 / 1000.0 * 3_600_000.0 / 0.9) as u64;
    let fired_at = append_each(
        &s,
        &c,
        vec![at("fast", t0, 0.0), at("fast", t0 + fast, 1.0)],
    )
    .await;
    append_each(
        &s,
        &c,
        vec![at("slow", t0, 0.0), at("slow", t0 + slow, 1.0)],
    )
    .await;
    // One logon alone is no travel.
    append_each(&s, &c, vec![at("once", t0, 0.0)]).await;
    assert_eq!(
        fired(&s, &c, "impossible_travel").await,
        [("fast".into(), fired_at)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privilege_after_attack_fires_within_the_configured_window_only() {
    let (s, _tmp) = rules_server();
    let c = Server::client();
    let t0 = now_ms() - 3_600_000;
    let fail = |u: &str, t| logon(u, 2, t, json!({}));
    let grant = |u: &str, t| {
        json!({
            "class_uid": 3005, "activity_id": 1, "severity_id": 1, "time": t,
            "user": {"uid": u}, "privileges": ["admin"],
            "metadata": {"version": "1.8.0", "product": {"name": "Example IdP"}}
        })
    };
    // No attack: a grant is no finding.
    append_each(&s, &c, vec![grant("calm", t0)]).await;
    // A brute force (the attack) at t0 + 2, then a grant exactly a window
    // later: fires; a ms later: does not.
    let mut attack = append_each(
        &s,
        &c,
        vec![fail("in", t0), fail("in", t0 + 1), fail("in", t0 + 2)],
    )
    .await;
    append_each(
        &s,
        &c,
        vec![fail("out", t0), fail("out", t0 + 1), fail("out", t0 + 2)],
    )
    .await;
    assert_eq!(fired(&s, &c, "brute_force").await.len(), 2, "the attacks");
    attack.extend(append_each(&s, &c, vec![grant("in", t0 + 2 + W)]).await);
    append_each(&s, &c, vec![grant("out", t0 + 3 + W)]).await;
    assert_eq!(
        fired(&s, &c, "privilege_after_attack").await,
        [("in".into(), attack)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_device_fires_with_history_within_the_configured_window_only() {
    let (s, _tmp) = rules_server();
    let c = Server::client();
    let t0 = now_ms() - 3_600_000;
    let from = |u: &str, t, device: &str| {
        logon(
            u,
            1,
            t,
            json!({"device": {"hostname": device, "type_id": 1}}),
        )
    };
    // A first device is no finding (no history), nor is the same again.
    append_each(
        &s,
        &c,
        vec![from("d", t0, "laptop"), from("d", t0 + 1, "laptop")],
    )
    .await;
    assert_eq!(fired(&s, &c, "new_device").await, [], "one device");
    // A second device while the first is within the window: fires.
    let second = append_each(&s, &c, vec![from("d", t0 + 2, "phone")]).await;
    assert_eq!(fired(&s, &c, "new_device").await, [("d".into(), second)]);
    // History exactly a window old counts; a ms older is forgotten.
    let inside = append_each(
        &s,
        &c,
        vec![from("in", t0, "laptop"), from("in", t0 + W, "phone")],
    )
    .await;
    append_each(
        &s,
        &c,
        vec![from("out", t0, "laptop"), from("out", t0 + W + 1, "phone")],
    )
    .await;
    let f = fired(&s, &c, "new_device").await;
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!(f[1], ("in".into(), vec![inside[1]]));
}
