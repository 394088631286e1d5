//! Redaction that erases: once `POST /v1/events/<i>/redact` answers, no
//! byte of the event (nor its key, which would open what freed pages
//! still hold) is in any file of the data directory, of a backup taken
//! after, or of the directory after a restart; and re-posting the
//! redacted event's `metadata.uid` answers the same whatever the body.

mod common;

use std::path::Path;

use common::{auth_event, Server};
use serde_json::{json, Value};

const MARKER: &str = "zq7erasemarker";

/// An event carrying `MARKER` in many fields, `tag` in its message.
fn marked(tag: &str) -> Value {
    json!({
        "class_uid": 3002, "activity_id": 1, "severity_id": 1,
        "time": 1_763_800_000_000u64, "status_id": 1,
        "message": format!("{MARKER} logged in {tag}"),
        "user": {"uid": format!("{MARKER}-uid"), "name": format!("{MARKER}-name")},
        "src_endpoint": {"ip": format!("{MARKER}-ip"), "hostname": format!("{MARKER}-src")},
        "device": {"hostname": format!("{MARKER}-host"), "type_id": 1},
        "dst_endpoint": {"hostname": format!("{MARKER}-dst")},
        "metadata": {
            "version": "1.8.0",
            "uid": format!("{MARKER}-event"),
            "product": {"name": format!("{MARKER}-product")}
        }
    })
}

/// The bytes of every file under `dir`, recursively, with their paths.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

/// The files under `dir` that hold `needle`.
fn holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    files(dir)
        .into_iter()
        .filter(|(_, b)| b.windows(needle.len()).any(|w| w == needle))
        .map(|(p, _)| p)
        .collect()
}

/// The key in leaf `i`'s slot of the data directory's key file.
fn key_slot(dir: &Path, i: u64) -> Vec<u8> {
    let keys = std::fs::read(dir.join("sealog.keys")).unwrap();
    keys[32 * i as usize..32 * (i as usize + 1)].to_vec()
}

async fn post(s: &Server, c: &reqwest::Client, path: &str, body: Value) -> (u16, Value) {
    s.post_as(c, path, Some(&s.token), &body).await
}

fn sealog(args: &[&str]) {
    let out = common::sealog(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redacted_event_leaves_no_byte_on_disk_in_backups_or_after_a_restart() {
    let mut s = Server::start(&[]);
    let c = Server::client();
    let evs: Vec<_> = (0..20).map(|i| auth_event(i, json!(i))).collect();
    s.append(&c, json!(evs)).await;
    let target = common::receipts(&s.append(&c, marked("first")).await)[0].index;
    s.append(&c, json!([auth_event(30, json!(30))])).await;
    let dir = s.data_dir().to_path_buf();

    // Control: the event is in the directory, sealed under a key that is
    // there too; the store (which has the key) reads the marker back.
    let (st, body) = {
        let r = c
            .get(format!("{}/v1/events/{target}", s.url))
            .bearer_auth(&s.token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(st, 200);
    assert!(body.contains(&format!("{MARKER}-product")), "{body}");
    let key = key_slot(&dir, target);
    assert_ne!(key, [0; 32], "the event has its key");
    assert!(!holding(&dir, &key).is_empty(), "the grep finds the key");
    assert_eq!(
        holding(&dir, MARKER.as_bytes()),
        Vec::<String>::new(),
        "sealed"
    );
    s.stop();
    {
        let store = sealog::store::engine::open(&dir.join("sealog.redb")).unwrap();
        let sealog::store::EventRow::Present(e) = store.snapshot().unwrap().event(target).unwrap()
        else {
            panic!("event {target} is present")
        };
        let jcs = String::from_utf8(e.jcs).unwrap();
        for field in ["name", "event", "ip", "src", "host", "product"] {
            let want = format!("{MARKER}-{field}");
            assert!(jcs.contains(&want), "recoverable from the directory: {jcs}");
        }
    }
    s.restart_after_stop();

    let (st, v) = post(
        &s,
        &c,
        &format!("/v1/events/{target}/redact"),
        json!({"reason": "erasure request"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let record = v["redacted_by"].as_u64().unwrap();

    let gone = |dir: &Path, what: &str| {
        for (name, bytes) in [("marker", MARKER.as_bytes()), ("key", &key[..])] {
            assert_eq!(
                holding(dir, bytes),
                Vec::<String>::new(),
                "{what}: the {name} is in these files"
            );
        }
    };
    gone(&dir, "once the redaction answered");
    assert_eq!(key_slot(&dir, target), [0; 32]);

    // A backup taken after, and the log restored from it.
    let tmp = tempfile::tempdir().unwrap();
    let backup = tmp.path().join("after.backup");
    let data = dir.to_str().unwrap();
    sealog(&["backup", "--data", data, "--out", backup.to_str().unwrap()]);
    gone(tmp.path(), "the backup");
    let restored = tmp.path().join("restored");
    sealog(&[
        "restore",
        "--from",
        backup.to_str().unwrap(),
        "--data",
        restored.to_str().unwrap(),
    ]);
    sealog(&["check", "--data", restored.to_str().unwrap()]);
    gone(tmp.path(), "the backup and the restored log");

    // Re-posting the uid: one answer, whatever the body.
    let mut answers = Vec::new();
    for body in [marked("first"), marked("a guess at something else")] {
        let (st, v) = post(&s, &c, "/v1/events", body).await;
        assert_eq!(st, 410, "{v}");
        assert_eq!(v["error"]["code"], "redacted");
        assert_eq!(v["error"]["redacted_by"], record);
        answers.push(v);
    }
    assert_eq!(answers[0], answers[1], "the answer confirms no guess");

    s.restart();
    gone(&dir, "after a restart");
    let r = c
        .get(format!("{}/v1/events/{target}", s.url))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    let (st, v) = post(&s, &c, "/v1/events", marked("first")).await;
    assert_eq!((st, &v), (410, &answers[0]));
    s.stop();
    sealog(&["check", "--data", data]);
    gone(&dir, "after check");
}
