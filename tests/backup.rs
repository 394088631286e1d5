//! Backups taken while appends go on, restored, and proven consistent
//! with the live log.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::{auth_event, eventually, sealog, Server, PATIENCE};
use serde_json::json;

/// Waits until the writer has counted more than `n` appends.
async fn appended_past(appended: &AtomicU64, n: u64, what: &str) {
    eventually(PATIENCE, what, async || {
        let got = appended.load(Ordering::Relaxed);
        (got > n).then_some(()).ok_or(format!("{got} appends"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_online_backup_restores_to_a_log_consistent_with_the_live_one() {
    let mut live = Server::start(&[]);
    let c = Server::client();
    let evs: Vec<_> = (0..200).map(|i| auth_event(i, json!(i))).collect();
    live.append(&c, json!(evs)).await;

    // Appends keep going during the backup.
    let stop = Arc::new(AtomicBool::new(false));
    let appended = Arc::new(AtomicU64::new(0));
    let writer = {
        let (c, url, token, stop, appended) = (
            c.clone(),
            live.url.clone(),
            live.token.clone(),
            stop.clone(),
            appended.clone(),
        );
        tokio::spawn(async move {
            let mut i = 1000;
            while !stop.load(Ordering::Relaxed) {
                let r = c
                    .post(format!("{url}/v1/events"))
                    .bearer_auth(&token)
                    .json(&auth_event(i, json!(i)))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                appended.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        })
    };
    // The backup starts while appends are going on.
    appended_past(&appended, 0, "the writer appends").await;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("snap.backup");
    let data = live.data_dir().to_str().unwrap().to_string();
    let before = appended.load(Ordering::Relaxed);
    let out = sealog(&["backup", "--data", &data, "--out", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And go on after it: the live log grows past the snapshot.
    let at_end = appended.load(Ordering::Relaxed);
    appended_past(&appended, at_end, "appends go on after the backup").await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert!(
        appended.load(Ordering::Relaxed) > before,
        "appends went on during the backup"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Restore into a new directory and run it.
    let restored_dir = tmp.path().join("restored");
    let out = sealog(&[
        "restore",
        "--from",
        file.to_str().unwrap(),
        "--data",
        restored_dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !sealog(&[
            "restore",
            "--from",
            file.to_str().unwrap(),
            "--data",
            restored_dir.to_str().unwrap()
        ])
        .status
        .success(),
        "never over a log"
    );
    let restored = Server::start_in(&restored_dir, &[]);
    assert_eq!(restored.vkey, live.vkey, "the same log identity");
    let snap = sealog_verify::note::verify_checkpoint(
        restored.get_text(&c, "/checkpoint").await.as_bytes(),
        &live.vkey,
    )
    .unwrap();
    let now = sealog_verify::note::verify_checkpoint(
        live.get_text(&c, "/checkpoint").await.as_bytes(),
        &live.vkey,
    )
    .unwrap();
    assert!(
        snap.size > 200 && snap.size < now.size,
        "a snapshot from mid-way: {} of {}",
        snap.size,
        now.size
    );
    // Proven consistent: the live log's proof from the snapshot's size
    // reaches its current root from the restored root.
    live.assert_consistent(&c, &snap, &now).await;
    // The restored log reads events with the same admin token, and checks clean.
    let v: serde_json::Value = restored.get_json_auth(&c, "/v1/events/7").await;
    assert_eq!(v["event"]["unmapped"]["tag"], 6);
    // It refuses appends: the original signed sizes past the snapshot, and
    // appending under the same key would sign other roots for them.
    let r = c
        .post(format!("{}/v1/events", restored.url))
        .bearer_auth(&restored.token)
        .json(&auth_event(1, json!(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"]["code"],
        "read_only"
    );
    let mut restored = restored;
    assert_eq!(restored.stop(), Some(0));
    assert!(sealog(&["check", "--data", restored_dir.to_str().unwrap()])
        .status
        .success());
    // An offline backup of the stopped live log works too.
    assert_eq!(live.stop(), Some(0));
    let file2 = tmp.path().join("offline.backup");
    let out = sealog(&["backup", "--data", &data, "--out", file2.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("backup of size {}", now.size)));
    // With the live original's newest checkpoint as outside evidence, a
    // complete snapshot restores to a log that appends; an incomplete one
    // is refused that way. (More in tests/security_ops.rs.)
    let mut l = Server::start_in(live.data_dir(), &[]);
    let full = tmp.path().join("full");
    let out = sealog(&[
        "restore",
        "--from",
        file2.to_str().unwrap(),
        "--data",
        full.to_str().unwrap(),
        "--log",
        &l.url,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let full_log = Server::start_in(&full, &[]);
    full_log.append(&c, auth_event(2, json!(2))).await;
    let partial = tmp.path().join("partial");
    let out = sealog(&[
        "restore",
        "--from",
        file.to_str().unwrap(),
        "--data",
        partial.to_str().unwrap(),
        "--log",
        &l.url,
    ]);
    assert!(!out.status.success());
    assert_eq!(l.stop(), Some(0));
}

/// One query answer on a restored log whose index is being rebuilt: the
/// complete answer, or 503 `index_catching_up` with `Retry-After` (spec
/// api.md, storage.md: a query waits up to 10 s for the index to cover
/// the checkpoint, and never answers with part of what it covers).
async fn query_during_catch_up(
    c: &reqwest::Client,
    s: &Server,
    path: &str,
) -> Result<serde_json::Value, String> {
    let r = c
        .get(format!("{}{path}", s.url))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r.headers().get("retry-after").cloned();
    let v: serde_json::Value = r.json().await.unwrap();
    match status {
        200 => Ok(v),
        503 => {
            assert_eq!(v["error"]["code"], "index_catching_up", "{v}");
            assert_eq!(retry.as_ref().map(|h| h.to_str().unwrap()), Some("1"));
            Err(v.to_string())
        }
        other => panic!("{path}: {other} {v}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_log_rebuilds_its_index_and_queries_never_answer_part_of_it() {
    let mut live = Server::start(&[]);
    let c = Server::client();
    let mut of_u3 = Vec::new();
    for k in 0..6u64 {
        let batch: Vec<_> = (0..1000)
            .map(|i| auth_event((k * 1000 + i) % 10, json!(i)))
            .collect();
        for r in common::receipts(&live.append(&c, json!(batch)).await) {
            if r.event.as_ref().unwrap().get().contains("\"u-3\"") {
                of_u3.push(r.index);
            }
        }
    }
    assert_eq!(of_u3.len(), 600);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("snap.backup");
    let data = live.data_dir().to_str().unwrap().to_string();
    let out = sealog(&["backup", "--data", &data, "--out", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(live.stop(), Some(0));
    let dir = tmp.path().join("restored");
    let out = sealog(&[
        "restore",
        "--from",
        file.to_str().unwrap(),
        "--data",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !dir.join("index.redb").exists(),
        "a restored log gets a fresh index"
    );

    let s = Server::start_in(&dir, &[]);
    let size = s.size(&c).await;
    assert_eq!(size, 6001);
    // Reads by index need no index: at once.
    let v: serde_json::Value = s
        .get_json_auth(&c, &format!("/v1/events/{}", of_u3[0]))
        .await;
    assert_eq!(v["event"]["user"]["uid"], "u-3");
    // Queries: complete or 503 while the index catches up, until complete.
    let path = "/v1/events?user=u-3&order=oldest&limit=1000";
    let page = eventually(PATIENCE, "the index catches up", async || {
        query_during_catch_up(&c, &s, path).await
    })
    .await;
    assert_eq!(
        common::indices(&page),
        of_u3,
        "every event of u-3 the backup holds"
    );
    assert_eq!(page["next_cursor"], serde_json::Value::Null);
    // Then the index covers the restored tree, and lookups by leaf hash
    // find its leaves.
    assert_eq!(s.metric(&c, "sealog_indexed_size").await, size);
    let r: serde_json::Value = s
        .get_json_auth(&c, &format!("/v1/events/{}", of_u3[599]))
        .await;
    let leaf = r["leaf_hash"].as_str().unwrap();
    let q = serde_urlencoded::to_string([("leaf_hash", leaf)]).unwrap();
    let p: serde_json::Value = s.get_json(&c, &format!("/v1/proof/inclusion?{q}")).await;
    assert_eq!(p["index"], of_u3[599]);
}
