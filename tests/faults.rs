//! Faults: graceful shutdown, a full disk, corruption at rest, a clock
//! that steps back.

mod common;

use std::process::Command;

use common::{auth_event, eventually, receipts, sealog, Server, PATIENCE};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_the_pending_batch_answers_and_exits_0() {
    // A batch lingers 5 s after its first event: the ten requests are
    // queued (seen in /healthz) when SIGTERM comes, and the drain answers
    // them once the batch commits.
    let mut s = Server::start(&["--batch-wait-us", "5000000"]);
    let c = Server::client();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (c, url, token) = (c.clone(), s.url.clone(), s.token.clone());
        tasks.push(tokio::spawn(async move {
            let r = c
                .post(format!("{url}/v1/events"))
                .bearer_auth(token)
                .json(&auth_event(i, json!(i)))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }));
    }
    eventually(PATIENCE, "ten events queued", async || {
        let h: Value = s.get_json(&c, "/healthz").await;
        (h["queued"] == 10).then_some(()).ok_or(h.to_string())
    })
    .await;
    let code = s.stop();
    let mut acked = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(
            status, 200,
            "a queued request is answered, not dropped: {body}"
        );
        acked += receipts(&body).len() as u64;
    }
    assert_eq!(code, Some(0), "graceful stop exits 0");
    s.restart_after_stop();
    assert_eq!(s.size(&c).await, acked + 1);
}

/// A size-limited tmpfs for the data directory; None where mounting is
/// not allowed (not root, no CAP_SYS_ADMIN).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path, mb: u32) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| SmallDisk(dir.to_path_buf()))
    }
    fn grow(&self, mb: u32) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={mb}m")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

// Ignored where build.rs found no right to mount (root with
// CAP_SYS_ADMIN); never ignored in CI, where a failed mount fails it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(can_mount_tmpfs),
    ignore = "needs root with CAP_SYS_ADMIN to mount a small tmpfs"
)]
async fn a_full_disk_answers_503_stays_consistent_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&tmp.path().join("disk"), 3)
        .expect("cannot mount a small tmpfs (needs root with CAP_SYS_ADMIN)");
    let mut s = Server::start_in(&disk.0.join("data"), &[]);
    let c = Server::client();
    let pad = "x".repeat(2000);
    let batch: Vec<Value> = (0..100).map(|i| auth_event(i, json!(pad))).collect();
    let mut ok = Vec::new();
    let mut full = 0;
    for _ in 0..40 {
        let r = c
            .post(format!("{}/v1/events", s.url))
            .bearer_auth(&s.token)
            .json(&batch)
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => ok.extend(receipts(&r.text().await.unwrap())),
            503 => {
                full += 1;
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["error"]["code"], "storage");
            }
            other => panic!("{other}: a full disk must answer 503"),
        }
    }
    assert!(full > 0, "the disk never filled");
    let before = s.size(&c).await;
    assert_eq!(
        before,
        ok.len() as u64 + 1,
        "only acknowledged events are in the log"
    );
    let cp_before = s.checkpoint(&c).await;
    // Space returns: appends resume without a restart.
    disk.grow(64);
    let resumed = eventually(PATIENCE, "appends resume when space returns", async || {
        let r = c
            .post(format!("{}/v1/events", s.url))
            .bearer_auth(&s.token)
            .json(&batch)
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => Ok(receipts(&r.text().await.unwrap())),
            status => Err(format!("{status}")),
        }
    })
    .await;
    ok.extend(resumed);
    let after = s.checkpoint(&c).await;
    s.assert_consistent(&c, &cp_before, &after).await;
    for r in &ok {
        sealog_verify::verify::verify_receipt(r, &s.vkey).unwrap();
    }
    // The lookup index (same disk) comes back too (it may lag while it
    // recovers: queries then answer 503 index_catching_up): a query sees
    // every acknowledged event of user u-7, the newest included.
    s.index_caught_up(&c).await;
    let page: Value = s.get_json_auth(&c, "/v1/events?user=u-7&limit=1000").await;
    let found: std::collections::HashSet<u64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    let want: std::collections::HashSet<u64> = ok
        .iter()
        .filter(|r| {
            r.event
                .as_ref()
                .is_some_and(|e| e.get().contains("\"u-7\""))
        })
        .map(|r| r.index)
        .collect();
    assert!(want.len() > 1);
    assert_eq!(
        found, want,
        "the query sees exactly u-7's acknowledged events"
    );
    // And the store checks clean after a restart.
    assert_eq!(s.stop(), Some(0));
    let out = sealog(&["check", "--data", s.data_dir().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.restart_after_stop();
    assert_eq!(s.size(&c).await, after.size);
}

/// Flips the first byte of every copy of `needle` in the file.
fn flip_all(path: &std::path::Path, needle: &[u8]) -> usize {
    let mut data = std::fs::read(path).unwrap();
    let mut n = 0;
    let mut i = 0;
    while i + needle.len() <= data.len() {
        if &data[i..i + needle.len()] == needle {
            data[i] ^= 0x01;
            n += 1;
        }
        i += 1;
    }
    std::fs::write(path, data).unwrap();
    n
}

/// Runs `sealog check` on `data`, which must refuse it as corrupt; its
/// message.
fn check_refuses(data: &str) -> String {
    let out = sealog(&["check", "--data", data]);
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(
        !out.status.success() && err.contains("store is corrupt"),
        "{err}"
    );
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_at_rest_is_detected() {
    let mut s = Server::start(&[]);
    let c = Server::client();
    let evs: Vec<Value> = (0..299).map(|i| auth_event(i, json!(i))).collect();
    let rs = receipts(&s.append(&c, json!(evs)).await);
    let mut tiles = Vec::new();
    for path in ["tile/1/000.p/1", "tile/0/000"] {
        let r = c.get(format!("{}/{path}", s.url)).send().await.unwrap();
        tiles.push(r.bytes().await.unwrap().to_vec());
    }
    let [level1, tile0] = <[Vec<u8>; 2]>::try_from(tiles).unwrap();
    assert_eq!(tile0.len(), 256 * 32);
    assert_eq!(s.stop(), Some(0));
    let db = s.data_dir().join("sealog.redb");
    let data = s.data_dir().to_str().unwrap().to_string();
    assert!(sealog(&["check", "--data", &data]).status.success());
    let saved = std::fs::read(&db).unwrap();

    // A commitment in the public entries: `check` finds it, and so does
    // the server at startup or an auditor's replay.
    assert!(flip_all(&db, &rs[100].commitment.0) > 0);
    eprintln!("check, flipped commitment: {}", check_refuses(&data));
    std::fs::write(&db, &saved).unwrap();
    assert!(flip_all(&db, &rs[100].commitment.0) > 0);
    match common::try_start(&data) {
        Err(err) => eprintln!("startup, flipped commitment: {}", err.trim()),
        Ok(mut server) => {
            let state = tempfile::tempdir().unwrap();
            let out = sealog(&[
                "audit",
                "--log",
                &server.url,
                "--vkey",
                &s.vkey,
                "--state",
                state.path().to_str().unwrap(),
                "--replay",
            ]);
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            assert!(!out.status.success(), "the replay must fail");
            eprintln!("replay, flipped commitment: {}", err.trim());
            assert_eq!(server.stop(), Some(0));
        }
    }

    // A hash on the tree's right edge: the server refuses to start (it
    // would sign a root it cannot re-derive).
    std::fs::write(&db, &saved).unwrap();
    assert!(flip_all(&db, &level1) > 0);
    let out = sealog(&["serve", "--data", &data, "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("store is corrupt"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A full tile stored whole: `check` finds it. Leaf hashes 1 and 2
    // are adjacent in the tile only (the hashes table has their parent
    // between them).
    std::fs::write(&db, &saved).unwrap();
    assert!(flip_all(&db, &tile0[32..96]) > 0);
    eprintln!("check, flipped stored tile: {}", check_refuses(&data));

    // A byte inside a private event: its row is sealed under the key in
    // its slot, so the test seals what the receipt gave (codec 0: too few
    // events for a dictionary) to find it. `check` finds the flip.
    std::fs::write(&db, &saved).unwrap();
    let r = &rs[17];
    let keys_path = s.data_dir().join("sealog.keys");
    let keys = std::fs::read(&keys_path).unwrap();
    let slot = 32 * r.index as usize..32 * (r.index as usize + 1);
    let key: [u8; 32] = keys[slot.clone()].try_into().unwrap();
    let mut row = vec![0u8];
    row.extend_from_slice(r.salt.as_ref().unwrap());
    row.extend_from_slice(r.event.as_ref().unwrap().get().as_bytes());
    let mut sealed = vec![2u8];
    sealog::store::keys::seal(&key, sealog::store::keys::Sealed::Event, &row, &mut sealed);
    assert_eq!(flip_all(&db, &sealed[20..52]), 1, "the sealed row, once");
    eprintln!("check on a flipped event byte: {}", check_refuses(&data));

    // A byte of its key: `check` finds that too.
    std::fs::write(&db, &saved).unwrap();
    let mut flipped = keys.clone();
    flipped[slot.start + 5] ^= 1;
    std::fs::write(&keys_path, &flipped).unwrap();
    eprintln!("check on a flipped key byte: {}", check_refuses(&data));
    std::fs::write(&keys_path, &keys).unwrap();
    assert!(sealog(&["check", "--data", &data]).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_times_stay_monotonic_when_the_clock_steps_back() {
    let mut s = Server::start(&[]);
    let c = Server::client();
    let logged = |body: &str| -> u64 {
        let r = &receipts(body)[0];
        let v: Value = serde_json::from_str(r.event.as_ref().unwrap().get()).unwrap();
        v["metadata"]["logged_time"].as_u64().unwrap()
    };
    let t1 = logged(&s.append(&c, auth_event(1, json!(1))).await);
    assert_eq!(s.stop(), Some(0));
    // The wall clock steps back a day while the log is down.
    s.use_test_hooks();
    s.set_env("SEALOG_CLOCK_SKEW_MS", "-86400000");
    s.restart_after_stop();
    let t2 = logged(&s.append(&c, auth_event(2, json!(2))).await);
    assert!(t2 >= t1, "logged_time went back: {t2} < {t1}");
    let t3 = logged(&s.append(&c, auth_event(3, json!(3))).await);
    assert!(t3 >= t2);
    assert_eq!(s.size(&c).await, 4, "checkpoints keep growing");
}
