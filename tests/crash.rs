//! kill -9 under load. Writers (single events and batches, each event with
//! its own `metadata.uid`) and readers run while the server is killed with
//! SIGKILL at random moments and restarted. A writer whose request failed
//! retries it, with the same uids, until it is answered (a server that
//! answers nothing for `PATIENCE` fails the test). After every
//! restart and at the end:
//! - every receipt ever returned verifies offline, its checkpoint is
//!   consistent with the newest one, and its event reads back and matches
//!   its commitment;
//! - no two checkpoints ever seen share a size with different roots;
//! - the tree size never goes backwards;
//! - no event was appended twice: each uid is in the log exactly once.
//!
//! 3 kills by default; SEALOG_LONG_CRASH=1 makes it 25.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use common::{auth_event, eventually, Server, PATIENCE};
use sealog_verify::note::{self, Checkpoint};
use sealog_verify::receipt::{ConsistencyProof, Receipt};
use sealog_verify::verify;
use serde_json::{json, Value};

struct Shared {
    url: RwLock<String>,
    receipts: Mutex<Vec<Receipt>>,
    sent_uids: Mutex<Vec<String>>,
    stop: AtomicBool,
}

fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

async fn writer(id: u64, sh: Arc<Shared>, token: String) {
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut seq = 0u64;
    // A steady load, bounded so that checking every receipt stays cheap.
    while !sh.stop.load(Ordering::Relaxed) {
        let n = if seq.is_multiple_of(3) { 5 } else { 1 };
        let events: Vec<Value> = (0..n)
            .map(|j| {
                let mut e = auth_event(id, json!({"w": id, "seq": seq, "j": j}));
                e["metadata"]["uid"] = json!(format!("w{id}-{seq}-{j}"));
                e
            })
            .collect();
        sh.sent_uids.lock().unwrap().extend(
            events
                .iter()
                .map(|e| e["metadata"]["uid"].as_str().unwrap().to_string()),
        );
        let body = if n == 1 {
            events[0].clone()
        } else {
            json!(events)
        };
        // Retry the same request until it is answered: across a kill and
        // restart that is well within PATIENCE; a server that never
        // answers again fails the test.
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "writer {id}: no answer to an append within {PATIENCE:?}"
            );
            let url = sh.url.read().unwrap().clone();
            let r = c
                .post(format!("{url}/v1/events"))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await;
            if let Ok(r) = r {
                if r.status() == 200 {
                    if let Ok(text) = r.text().await {
                        sh.receipts.lock().unwrap().extend(common::receipts(&text));
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        seq += 1;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

async fn reader(sh: Arc<Shared>) {
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut i = 0u64;
    while !sh.stop.load(Ordering::Relaxed) {
        let url = sh.url.read().unwrap().clone();
        let _ = c.get(format!("{url}/checkpoint")).send().await;
        let _ = c
            .get(format!("{url}/v1/proof/inclusion?index={}", i % 7))
            .send()
            .await;
        let _ = c.get(format!("{url}/tile/0/000.p/1")).send().await;
        i += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Checks every invariant against the running server; returns its size.
async fn check(
    s: &Server,
    sh: &Shared,
    seen: &mut BTreeMap<u64, sealog_verify::tree::Hash>,
    min_size: u64,
) -> u64 {
    let c = Server::client();
    let head =
        note::verify_checkpoint(s.get_text(&c, "/checkpoint").await.as_bytes(), &s.vkey).unwrap();
    assert!(
        head.size >= min_size,
        "the tree went backwards: {} < {min_size}",
        head.size
    );
    let mut record = |cp: &Checkpoint| {
        let prev = seen.insert(cp.size, cp.root);
        assert!(
            prev.is_none_or(|r| r == cp.root),
            "two roots for size {}",
            cp.size
        );
    };
    record(&head);
    let receipts = sh.receipts.lock().unwrap().clone();
    let mut consistent: HashMap<u64, bool> = HashMap::new();
    for r in &receipts {
        let cp = verify::verify_receipt(r, &s.vkey).expect("every receipt verifies offline");
        record(&cp);
        assert!(
            cp.size <= head.size,
            "a receipt is ahead of the log: acknowledged data was lost"
        );
        if let std::collections::hash_map::Entry::Vacant(slot) = consistent.entry(cp.size) {
            let p: ConsistencyProof = s
                .get_json(
                    &c,
                    &format!("/v1/proof/consistency?from={}&to={}", cp.size, head.size),
                )
                .await;
            verify::verify_consistency(&p, &cp, &head)
                .expect("consistent with the newest checkpoint");
            slot.insert(true);
        }
    }
    for r in receipts.iter().step_by(7) {
        let v: Value = s
            .get_json_auth(&c, &format!("/v1/events/{}", r.index))
            .await;
        let jcs = sealog_verify::commitment::canonical(&v["event"]).unwrap();
        let salt = base64::Engine::decode(
            &base64::prelude::BASE64_STANDARD,
            v["salt"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(
            sealog_verify::commitment::commitment(&salt, &jcs),
            r.commitment,
            "event {} reads back",
            r.index
        );
    }
    head.size
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_loses_and_forks_nothing() {
    let kills = if std::env::var_os("SEALOG_LONG_CRASH").is_some() {
        25
    } else {
        3
    };
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed}, {kills} kills");
    let mut s = Server::start(&["--batch-wait-us", "500"]);
    let sh = Arc::new(Shared {
        url: RwLock::new(s.url.clone()),
        receipts: Mutex::new(Vec::new()),
        sent_uids: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
    });
    let mut tasks = Vec::new();
    for id in 0..8 {
        tasks.push(tokio::spawn(writer(id, sh.clone(), s.token.clone())));
    }
    let readers: Vec<_> = (0..2).map(|_| tokio::spawn(reader(sh.clone()))).collect();
    let mut seen = BTreeMap::new();
    let mut size = 0;
    for k in 0..kills {
        tokio::time::sleep(Duration::from_millis(300 + rng(&mut seed) % 1200)).await;
        s.kill9();
        s.restart_after_stop();
        *sh.url.write().unwrap() = s.url.clone();
        size = check(&s, &sh, &mut seen, size).await;
        eprintln!(
            "kill {}: size {size}, {} receipts so far",
            k + 1,
            sh.receipts.lock().unwrap().len()
        );
    }
    // The writers get through to the last restart before they stop.
    let before = sh.receipts.lock().unwrap().len();
    eventually(
        PATIENCE,
        "appends are answered after the last restart",
        async || {
            let n = sh.receipts.lock().unwrap().len();
            (n > before + 8)
                .then_some(())
                .ok_or(format!("{n} receipts"))
        },
    )
    .await;
    sh.stop.store(true, Ordering::Relaxed);
    for t in tasks.into_iter().chain(readers) {
        t.await.unwrap();
    }
    size = check(&s, &sh, &mut seen, size).await;

    // Every uid sent is in the log exactly once.
    let c = Server::client();
    let mut counts: HashMap<String, u32> = HashMap::new();
    let mut cursor: Option<String> = None;
    // Each page holds up to 1,000 events: far fewer pages than this.
    for page in 0.. {
        assert!(page < 10_000, "the cursor never ends");
        let mut q = "/v1/events?order=oldest&limit=1000&class_uid=3002".to_string();
        if let Some(cur) = &cursor {
            q.push_str(&format!("&cursor={cur}"));
        }
        let v: Value = s.get_json_auth(&c, &q).await;
        for e in v["events"].as_array().unwrap() {
            *counts
                .entry(e["event"]["metadata"]["uid"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        match v["next_cursor"].as_str() {
            Some(cur) => cursor = Some(cur.to_string()),
            None => break,
        }
    }
    let sent = sh.sent_uids.lock().unwrap().clone();
    for uid in &sent {
        assert_eq!(counts.get(uid), Some(&1), "uid {uid}");
    }
    assert_eq!(counts.len(), sent.len());
    assert_eq!(
        size,
        sent.len() as u64 + 1,
        "the log holds exactly the sent events and its admin record"
    );
    eprintln!(
        "{kills} kills survived, {} events, {} receipts, none lost",
        sent.len(),
        sh.receipts.lock().unwrap().len()
    );
}
