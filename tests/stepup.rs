//! Step-up evidence and the live stream, with the real binary.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{auth_event, now_ms, read_sse_until, receipts, Server, PATIENCE};
use serde_json::{json, Value};

fn mfa_logon(user: &str, session: &str, time: u64) -> Value {
    json!({
        "class_uid": 3002, "activity_id": 1, "severity_id": 1, "status_id": 1, "time": time, "is_mfa": true,
        "auth_factors": [{"factor_type_id": 10}], "user": {"uid": user}, "session": {"uid": session},
        "dst_endpoint": {"hostname": "sso.example.com"},
        "metadata": {"version": "1.8.0", "product": {"name": "Example IdP"}}
    })
}

fn sensitive(user: &str, session: &str, time: u64) -> Value {
    json!({
        "class_uid": 6003, "activity_id": 3, "severity_id": 3, "time": time,
        "actor": {"user": {"uid": user}, "session": {"uid": session}},
        "api": {"operation": "DeleteAuditPolicy"}, "src_endpoint": {"ip": "10.1.1.1"},
        "metadata": {"version": "1.8.0", "product": {"name": "Admin API"}}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assurance_finds_present_and_refuses_absent_expired_and_other_session_step_ups() {
    let s = Server::start(&[]);
    let c = Server::client();
    let t0 = now_ms() - 3_600_000;
    let mfa = receipts(&s.append(&c, mfa_logon("u-5", "s-1", t0)).await)[0].index;
    let idx = |body: String| receipts(&body)[0].index;
    let present = idx(s.append(&c, sensitive("u-5", "s-1", t0 + 5 * 60_000)).await);
    let expired = idx(s
        .append(&c, sensitive("u-5", "s-1", t0 + 30 * 60_000))
        .await);
    let other_session = idx(s.append(&c, sensitive("u-5", "s-2", t0 + 5 * 60_000)).await);
    let absent = idx(s.append(&c, sensitive("u-6", "s-9", t0 + 5 * 60_000)).await);
    let before = idx(s.append(&c, sensitive("u-7", "s-7", t0 - 60_000)).await);
    let later_mfa = idx(s.append(&c, mfa_logon("u-7", "s-7", t0)).await);
    let _ = later_mfa;

    let v: Value = s
        .get_json_auth(&c, &format!("/v1/events/{present}/assurance"))
        .await;
    let action: sealog_verify::receipt::Receipt =
        serde_json::from_value(v["action"].clone()).unwrap();
    let step_up: sealog_verify::receipt::Receipt =
        serde_json::from_value(v["step_up"].clone()).unwrap();
    assert_eq!((action.index, step_up.index), (present, mfa));
    assert_eq!(
        action.checkpoint, step_up.checkpoint,
        "proven against the same checkpoint"
    );
    let a = sealog_verify::verify::verify_receipt(&action, &s.vkey).unwrap();
    let b = sealog_verify::verify::verify_receipt(&step_up, &s.vkey).unwrap();
    assert_eq!(a, b);

    for (what, index) in [
        ("expired", expired),
        ("other session", other_session),
        ("absent", absent),
        ("after the action", before),
    ] {
        let v: Value = s
            .get_json_auth(&c, &format!("/v1/events/{index}/assurance"))
            .await;
        assert!(v["step_up"].is_null(), "{what}: {v}");
        assert_eq!(v["message"], "no step-up found");
        assert_eq!(v["searched"]["window_ms"], 900_000);
        assert!(v["searched"]["from"].as_u64().is_some());
    }
    // A wider window reaches the expired one's step-up.
    let v: Value = s
        .get_json_auth(
            &c,
            &format!("/v1/events/{expired}/assurance?window_ms=3600000"),
        )
        .await;
    assert_eq!(v["step_up"]["index"], mfa);
    for bad in ["window_ms=0", "window_ms=999999999", "x=1"] {
        let r = c
            .get(format!("{}/v1/events/{present}/assurance?{bad}", s.url))
            .bearer_auth(&s.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
}

/// Reads SSE events until `want` ids are seen or the stream ends; stops
/// early (a forced disconnect) after `cut` events.
async fn read_sse(
    c: &reqwest::Client,
    s: &Server,
    last: Option<u64>,
    cut: usize,
    seen: &mut Vec<u64>,
    want: u64,
) {
    let mut req = c
        .get(format!("{}/v1/stream?from=0", s.url))
        .bearer_auth(&s.token);
    if let Some(id) = last {
        req = req.header("Last-Event-ID", id.to_string());
    }
    let mut r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut buf = String::new();
    let mut got = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, r.chunk())
        .await
        .unwrap_or(Ok(None))
    {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if let Some(id) = block.lines().find_map(|l| l.strip_prefix("id: ")) {
                let id: u64 = id.parse().unwrap();
                let data: Value = serde_json::from_str(
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix("data: "))
                        .unwrap(),
                )
                .unwrap();
                assert_eq!(data["index"], id);
                seen.push(id);
                got += 1;
                if got == cut || seen.len() as u64 >= want {
                    return; // drop the connection
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_stream_delivers_every_event_once_across_disconnects_under_load() {
    let s = Server::start(&[]);
    let c = Server::client();
    let total = 400u64;
    let writer = {
        let (c, url, token) = (c.clone(), s.url.clone(), s.token.clone());
        tokio::spawn(async move {
            for k in 0..(total / 10) {
                let batch: Vec<Value> = (0..10)
                    .map(|j| auth_event(k * 10 + j, json!(k * 10 + j)))
                    .collect();
                let r = c
                    .post(format!("{url}/v1/events"))
                    .bearer_auth(&token)
                    .json(&batch)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let want = total + 1; // and the admin token's record
    let mut seen = Vec::new();
    let mut last = None;
    for _ in 0..50 {
        read_sse(&c, &s, last, 60, &mut seen, want).await;
        last = seen.last().copied();
        if seen.len() as u64 >= want {
            break;
        }
    }
    writer.await.unwrap();
    assert_eq!(seen.len() as u64, want, "every event delivered");
    let distinct: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), seen.len(), "exactly once");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in index order");
    assert_eq!(distinct, (0..want).collect());
    // No token, and a Last-Event-ID that is no index (filters and `from`:
    // the next test).
    let r = c.get(format!("{}/v1/stream", s.url)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(format!("{}/v1/stream", s.url))
        .bearer_auth(&s.token)
        .header("Last-Event-ID", "x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// A step-up for `user` (an OCSF user object) at `time` with `extra`
/// members on top of `mfa_logon`'s.
fn step_up_as(user: Value, time: u64, extra: Value) -> Value {
    let mut v = mfa_logon("x", "s-1", time);
    v["user"] = user;
    v.as_object_mut().unwrap().remove("session");
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

fn action_by(user: Value, time: u64) -> Value {
    let mut v = sensitive("x", "s-1", time);
    v["actor"] = json!({"user": user});
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assurance_counts_only_a_real_step_up_by_the_same_identity() {
    let s = Server::start(&[]);
    let c = Server::client();
    let t0 = now_ms() - 3_600_000;
    let idx = |body: String| receipts(&body)[0].index;
    // Each action has one candidate before it; only the last is a step-up.
    let cases = [
        (
            "logoff",
            json!({"uid": "u-60"}),
            step_up_as(json!({"uid": "u-60"}), t0, json!({"activity_id": 2})),
        ),
        (
            "factor Unknown",
            json!({"uid": "u-61"}),
            step_up_as(
                json!({"uid": "u-61"}),
                t0,
                json!({"auth_factors": [{"factor_type_id": 0}]}),
            ),
        ),
        (
            "factor Other",
            json!({"uid": "u-62"}),
            step_up_as(
                json!({"uid": "u-62"}),
                t0,
                json!({"auth_factors": [{"factor_type_id": 99}]}),
            ),
        ),
        (
            "failed",
            json!({"uid": "u-63"}),
            step_up_as(json!({"uid": "u-63"}), t0, json!({"status_id": 2})),
        ),
        (
            "another uid whose name is the actor's uid",
            json!({"uid": "u-64"}),
            step_up_as(json!({"uid": "u-99", "name": "u-64"}), t0, json!({})),
        ),
        (
            "a user with no uid whose name is the actor's uid",
            json!({"uid": "u-65"}),
            step_up_as(json!({"name": "u-65"}), t0, json!({})),
        ),
        (
            "another uid with the actor's name",
            json!({"name": "Erin"}),
            step_up_as(json!({"uid": "u-98", "name": "Erin"}), t0, json!({})),
        ),
    ];
    for (what, actor, candidate) in cases {
        idx(s.append(&c, candidate).await);
        let action = idx(s.append(&c, action_by(actor, t0 + 60_000)).await);
        let v: Value = s
            .get_json_auth(&c, &format!("/v1/events/{action}/assurance"))
            .await;
        assert!(v["step_up"].is_null(), "{what}: {v}");
    }
    // The same identity's real step-up counts: by uid, and by name for a
    // user with no uid.
    for (user, actor) in [
        (
            json!({"uid": "u-66", "name": "Fay"}),
            json!({"uid": "u-66"}),
        ),
        (json!({"name": "Gil"}), json!({"name": "Gil"})),
    ] {
        let step = idx(s.append(&c, step_up_as(user.clone(), t0, json!({}))).await);
        let action = idx(s.append(&c, action_by(actor, t0 + 60_000)).await);
        let v: Value = s
            .get_json_auth(&c, &format!("/v1/events/{action}/assurance"))
            .await;
        assert_eq!(v["step_up"]["index"], step, "{user}: {v}");
    }
}

/// Opens `/v1/stream?{query}` with the admin token, and `Last-Event-ID`
/// when given.
async fn stream(
    c: &reqwest::Client,
    s: &Server,
    query: &str,
    last: Option<u64>,
) -> reqwest::Response {
    let mut req = c
        .get(format!("{}/v1/stream?{query}", s.url))
        .bearer_auth(&s.token);
    if let Some(id) = last {
        req = req.header("Last-Event-ID", id.to_string());
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200, "{query}");
    r
}

/// The ids a stream sends until it has sent `until` (which must come).
async fn ids_until(r: &mut reqwest::Response, until: u64) -> Vec<u64> {
    let mut buf = String::new();
    let got = read_sse_until(r, &mut buf, PATIENCE, |evs| {
        evs.last().is_some_and(|e| e.id == Some(until))
    })
    .await;
    for e in &got {
        assert_eq!(e.name, None, "{e:?}");
        assert_eq!(e.data["index"].as_u64(), e.id, "{e:?}");
    }
    got.iter().map(|e| e.id.unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_filters_select_only_matching_events_and_from_and_last_event_id_set_the_start() {
    let s = Server::start(&[]);
    let c = Server::client();
    let t = now_ms() - 60_000;
    // Logons (3002) of users u-0..u-2 and account changes (3001) of the
    // same users, interleaved; then one of u-1's logons redacted.
    let change = |u: u64| {
        json!({
            "class_uid": 3001, "activity_id": 9, "severity_id": 1, "status_id": 1, "time": t + u,
            "user": {"uid": format!("u-{u}")},
            "metadata": {"version": "1.8.0", "product": {"name": "Example IdP"}}
        })
    };
    let mut events = Vec::new();
    for k in 0..12u64 {
        events.push(if k % 2 == 0 {
            auth_event(k % 3, json!(k))
        } else {
            change(k % 3)
        });
    }
    let at: Vec<u64> = receipts(&s.append(&c, json!(events)).await)
        .iter()
        .map(|r| r.index)
        .collect();
    let logons_of_u1: Vec<u64> = (0..12)
        .filter(|k| k % 2 == 0 && k % 3 == 1)
        .map(|k| at[k as usize])
        .collect();
    assert_eq!(logons_of_u1.len(), 2);
    let changes: Vec<u64> = (0..12)
        .filter(|k| k % 2 == 1)
        .map(|k| at[k as usize])
        .collect();
    let (status, v) = s
        .post_as(
            &c,
            &format!("/v1/events/{}/redact", changes[0]),
            Some(&s.token),
            &json!({"reason": "stream test"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let redaction = v["redacted_by"].as_u64().unwrap();
    // A sentinel that matches every filter below, appended last: a stream
    // that reaches it has sent all it was going to send before it.
    let mut sentinel = auth_event(1, json!("sentinel"));
    sentinel["time"] = json!(t);
    let end = receipts(&s.append(&c, sentinel).await)[0].index;

    // class_uid and user together: u-1's logons only.
    let mut r = stream(&c, &s, "class_uid=3002&user=u-1", None).await;
    let mut want = logons_of_u1.clone();
    want.push(end);
    assert_eq!(
        ids_until(&mut r, end).await,
        want,
        "class_uid=3002&user=u-1"
    );
    // class_uid alone: every account change but the redacted one, and not
    // the redaction record (3004).
    let mut r = stream(&c, &s, "class_uid=3001", None).await;
    let mut more = change(2);
    more["unmapped"] = json!({"tag": "end"});
    let end_change = receipts(&s.append(&c, more).await)[0].index;
    let mut want: Vec<u64> = changes[1..].to_vec();
    want.push(end_change);
    assert_eq!(ids_until(&mut r, end_change).await, want, "class_uid=3001");
    // user alone: u-1's events of both classes.
    let mut r = stream(&c, &s, "user=u-1", None).await;
    let mut want: Vec<u64> = (0..12)
        .filter(|k| k % 3 == 1 && at[*k as usize] != changes[0])
        .map(|k| at[k as usize])
        .collect();
    want.push(end);
    assert_eq!(ids_until(&mut r, end).await, want, "user=u-1");

    // from=N starts at N exactly, then every index (the redacted one
    // skipped), the redaction record included.
    let from = at[3];
    let mut r = stream(&c, &s, &format!("from={from}"), None).await;
    let want: Vec<u64> = (from..=end_change).filter(|i| *i != changes[0]).collect();
    assert!(want.contains(&redaction));
    assert_eq!(ids_until(&mut r, end_change).await, want, "from={from}");
    // Last-Event-ID resumes right after its id, whatever `from` says.
    let mut r = stream(&c, &s, "from=0", Some(at[5])).await;
    let got = ids_until(&mut r, end_change).await;
    assert_eq!(got[0], at[5] + 1, "resumed after {}", at[5]);
    assert_eq!(
        got,
        (at[5] + 1..=end_change)
            .filter(|i| *i != changes[0])
            .collect::<Vec<_>>()
    );
    // And with a filter: the next match after the id.
    let mut r = stream(&c, &s, "class_uid=3002&user=u-1", Some(logons_of_u1[0])).await;
    assert_eq!(ids_until(&mut r, end).await, [logons_of_u1[1], end]);
    // Events that commit while a filtered stream is open arrive too.
    let mut r = stream(&c, &s, &format!("user=u-2&from={}", end_change + 1), None).await;
    let live = receipts(
        &s.append(
            &c,
            json!([auth_event(0, json!(0)), auth_event(2, json!("live"))]),
        )
        .await,
    );
    assert_eq!(ids_until(&mut r, live[1].index).await, [live[1].index]);
}
