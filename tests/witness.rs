//! Witnesses, auditors and clients with the real binary: every status of
//! C2SP tlog-witness v1.0.0 add-checkpoint, races and restarts; then a log
//! with three witnesses (one down), a forged fork refused by the witnesses
//! and caught by the auditor, replays, and offline receipt checks.

mod common;

use std::path::Path;

use base64::prelude::{Engine, BASE64_STANDARD};
use common::{
    auth_event, eventually, free_port, receipts, sealog, spawn_serving, terminate, Kill, Server,
    PATIENCE,
};
use sealog_verify::cosign::CosignatureVerifier;
use sealog_verify::note::{self, LogSigner};
use sealog_verify::policy::Policy;
use sealog_verify::tree::{self, Hash, MemoryHashes};
use serde_json::json;

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap().trim().to_string()
}

/// A test log: a key and a tree of `n` leaves.
struct TestLog {
    signer: LogSigner,
    tree: MemoryHashes,
}

impl TestLog {
    fn new(skey: &str, n: u64, seed: &str) -> Self {
        let mut tree = MemoryHashes::default();
        for i in 0..n {
            tree.append(tree::leaf_hash(format!("{seed}{i}").as_bytes()));
        }
        TestLog {
            signer: LogSigner::new(skey).unwrap(),
            tree,
        }
    }
    fn checkpoint(&self, size: u64) -> String {
        self.signer
            .sign(size, tree::root(size, &self.tree).unwrap())
    }
    fn proof(&self, old: u64, new: u64) -> Vec<Hash> {
        if old == 0 || old == new {
            return vec![];
        }
        tree::prove_consistency(old, new, &self.tree).unwrap()
    }
    fn body(&self, old: u64, new: u64) -> String {
        request(old, &self.proof(old, new), &self.checkpoint(new))
    }
}

fn request(old: u64, proof: &[Hash], checkpoint: &str) -> String {
    let mut b = format!("old {old}\n");
    for h in proof {
        b.push_str(&format!("{h}\n"));
    }
    b.push('\n');
    b.push_str(checkpoint);
    b
}

async fn add(c: &reqwest::Client, url: &str, body: String) -> (u16, Option<String>, String) {
    let r = c
        .post(format!("{url}/add-checkpoint"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    (status, ct, r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_witness_answers_every_case_of_the_spec() {
    let tmp = tempfile::tempdir().unwrap();
    let (skey_a, vkey_a) = note::generate_key("a.example/log").unwrap();
    let (skey_b, vkey_b) = note::generate_key("b.example/log").unwrap();
    let (skey_x, _) = note::generate_key("x.example/log").unwrap();
    let (impostor, _) = note::generate_key("a.example/log").unwrap();
    let logs = tmp.path().join("logs");
    std::fs::write(
        &logs,
        format!("# trusted logs\nlog {vkey_a}\nlog {vkey_b} https://b.example/\n"),
    )
    .unwrap();
    let wdir = tmp.path().join("w");
    let args = [
        "witness",
        "serve",
        "--data",
        wdir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--logs",
        logs.to_str().unwrap(),
    ];
    let mut with_name = args.to_vec();
    with_name.extend(["--name", "witness.example/w1"]);
    let (child, url) = spawn_serving(&with_name);
    let w = Kill(child);
    let wvkey = read(&wdir.join("witness.vkey"));
    let verifier = CosignatureVerifier::new(&wvkey).unwrap();
    let c = reqwest::Client::new();

    let a = TestLog::new(&skey_a, 40, "a");
    let fork = TestLog::new(&skey_a, 40, "fork");
    let b = TestLog::new(&skey_b, 40, "b");

    // 404: an origin it does not know.
    let x = TestLog::new(&skey_x, 5, "x");
    assert_eq!(add(&c, &url, x.body(0, 5)).await.0, 404);
    // 403: the right origin, a stranger's key.
    let imp = TestLog::new(&impostor, 5, "a");
    assert_eq!(add(&c, &url, imp.body(0, 5)).await.0, 403);
    // 400: old size above the checkpoint's; malformed bodies.
    assert_eq!(
        add(&c, &url, request(6, &[], &a.checkpoint(5))).await.0,
        400
    );
    for bad in [
        "",
        "garbage",
        "old 0\n",
        "old 00\n\n",
        "old 0\nnot-a-hash\n\n",
    ] {
        assert_eq!(
            add(&c, &url, format!("{bad}{}", a.checkpoint(5))).await.0,
            400,
            "{bad:?}"
        );
    }
    // 422: a non-empty proof from size 0.
    assert_eq!(
        add(&c, &url, request(0, &a.proof(2, 5), &b.checkpoint(5)))
            .await
            .0,
        422
    );

    // A size-0 checkpoint is cosigned, and the witness goes on from it.
    assert_eq!(add(&c, &url, b.body(0, 0)).await.0, 200);
    assert_eq!(
        add(&c, &url, b.body(0, 5)).await.0,
        200,
        "onward from a cosigned size 0"
    );

    // 200: the first checkpoint, from size 0; the cosignature verifies.
    let (st, _, text) = add(&c, &url, a.body(0, 5)).await;
    assert_eq!(st, 200, "{text}");
    let body5 = a.checkpoint(5).split("\n\n").next().unwrap().to_string() + "\n";
    let line = text.lines().next().unwrap();
    let raw = base64::Engine::decode(
        &base64::prelude::BASE64_STANDARD,
        line.rsplit(' ').next().unwrap(),
    )
    .unwrap();
    assert!(line.starts_with("\u{2014} witness.example/w1 "));
    assert!(verifier.timestamp(body5.as_bytes(), &raw[4..]).is_some());
    let with_cosig = format!("{}{text}", a.checkpoint(5));
    let policy = Policy::parse(&format!("log {vkey_a}\nwitness w1 {wvkey}\nquorum w1\n")).unwrap();
    assert_eq!(policy.check(with_cosig.as_bytes()).unwrap().0.size, 5);

    // 409 with the size: the old size is not the latest.
    let (st, ct, text) = add(&c, &url, a.body(0, 8)).await;
    assert_eq!(
        (st, ct.as_deref(), text.as_str()),
        (409, Some("text/x.tlog.size"), "5\n")
    );
    assert_eq!(add(&c, &url, a.body(3, 8)).await.0, 409);
    // 422: a proof that does not verify.
    let mut bad = a.proof(5, 8);
    bad[0].0[0] ^= 1;
    assert_eq!(
        add(&c, &url, request(5, &bad, &a.checkpoint(8))).await.0,
        422
    );
    // 422: a fork's proof from 5 does not reach its checkpoint from ours.
    assert_eq!(
        add(&c, &url, request(5, &fork.proof(5, 8), &fork.checkpoint(8)))
            .await
            .0,
        422
    );
    // 409 (v1.0.0): same size, another root; without the size body, which
    // v1.0.0 requires only for an old-size mismatch and which clients
    // (Tessera v1.0.4) read as "retry from this size".
    let (st, ct, text) = add(&c, &url, request(5, &[], &fork.checkpoint(5))).await;
    assert_eq!(st, 409, "{text}");
    assert_ne!(ct.as_deref(), Some("text/x.tlog.size"), "{text}");
    assert!(text.trim().parse::<u64>().is_err(), "no size body: {text}");
    assert!(text.contains("different root"), "{text}");
    // 200 again for the same checkpoint; then onward with a proof.
    assert_eq!(add(&c, &url, a.body(5, 5)).await.0, 200);
    assert_eq!(add(&c, &url, a.body(5, 8)).await.0, 200);

    // A race: ten requests from size 8 at once; one wins, the others are
    // told the winner's size, and the witness never rolls back.
    let mut tasks = Vec::new();
    for new in 9..19 {
        let (c, url, body) = (c.clone(), url.clone(), a.body(8, new));
        tasks.push(tokio::spawn(
            async move { (new, add(&c, &url, body).await) },
        ));
    }
    let mut winners = Vec::new();
    let mut told = Vec::new();
    for t in tasks {
        let (new, (st, _, text)) = t.await.unwrap();
        match st {
            200 => winners.push(new),
            409 => told.push(text.trim().parse::<u64>().unwrap()),
            other => panic!("{other}: {text}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one request wins the race");
    assert!(
        told.iter().all(|&s| s == winners[0]),
        "the others learn the winner's size: {told:?}"
    );

    // Restart: the latest cosigned size persists.
    assert_eq!(terminate(w), Some(0));
    let (child, url) = spawn_serving(&args);
    let _w = Kill(child);
    let (st, _, text) = add(&c, &url, a.body(0, 30)).await;
    assert_eq!((st, text), (409, format!("{}\n", winners[0])));
    assert_eq!(add(&c, &url, a.body(winners[0], 30)).await.0, 200);
}

/// The body of a GET, whatever its status.
async fn get_text(c: &reqwest::Client, url: String) -> String {
    c.get(url).send().await.unwrap().text().await.unwrap()
}

async fn wait_for_cosigned(c: &reqwest::Client, url: &str, policy: &Policy, size: u64) -> String {
    let what = format!("a cosigned checkpoint of size {size}");
    eventually(PATIENCE, &what, async || {
        let r = c.get(format!("{url}/checkpoint")).send().await.unwrap();
        if r.status() != 200 {
            return Err(r.status().to_string());
        }
        let note = r.text().await.unwrap();
        match policy.check(note.as_bytes()) {
            Ok((cp, _)) if cp.size >= size => Ok(note),
            Ok((cp, _)) => Err(format!("size {}", cp.size)),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_witnesses_one_down_a_forged_fork_and_the_auditor() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |s: &str| tmp.path().join(s).to_str().unwrap().to_string();
    let out = sealog(&[
        "keygen",
        "--origin",
        "audit.example/log",
        "--out",
        &p("log"),
    ]);
    assert!(out.status.success());
    let log_vkey = String::from_utf8(out.stdout).unwrap().trim().to_string();
    std::fs::write(p("logs"), format!("log {log_vkey}\n")).unwrap();
    let mut wv = Vec::new();
    for i in 1..=3 {
        let out = sealog(&[
            "witness",
            "keygen",
            "--name",
            &format!("w{i}.example"),
            "--out",
            &p(&format!("w{i}")),
        ]);
        assert!(out.status.success());
        wv.push(String::from_utf8(out.stdout).unwrap().trim().to_string());
    }
    let (c1, u1) = spawn_serving(&[
        "witness",
        "serve",
        "--data",
        &p("w1"),
        "--listen",
        "127.0.0.1:0",
        "--logs",
        &p("logs"),
    ]);
    let (c2, u2) = spawn_serving(&[
        "witness",
        "serve",
        "--data",
        &p("w2"),
        "--listen",
        "127.0.0.1:0",
        "--logs",
        &p("logs"),
    ]);
    let (_k1, _k2) = (Kill(c1), Kill(c2));
    let u3 = format!("http://127.0.0.1:{}", free_port()); // w3 is down
    let policy_text = format!(
        "log {log_vkey}\nwitness w1 {} {u1}\nwitness w2 {} {u2}\nwitness w3 {} {u3}\ngroup two-of-three 2 w1 w2 w3\nquorum two-of-three\n",
        wv[0], wv[1], wv[2]
    );
    std::fs::write(p("policy"), &policy_text).unwrap();
    let policy = Policy::parse(&policy_text).unwrap();

    // The log, its key made by keygen, asking the three witnesses.
    let (child, url) = spawn_serving(&[
        "serve",
        "--data",
        &p("log"),
        "--listen",
        "127.0.0.1:0",
        "--witnesses",
        &p("policy"),
        "--witness-interval-ms",
        "100",
    ]);
    let _log = Kill(child);
    let token = read(&tmp.path().join("log/admin.token"));
    let c = reqwest::Client::new();
    // Appends go on while a witness is down.
    let mut all = Vec::new();
    for i in 0..10 {
        let batch: Vec<_> = (0..5).map(|j| auth_event(i * 5 + j, json!(j))).collect();
        let r = c
            .post(format!("{url}/v1/events"))
            .bearer_auth(&token)
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        all.extend(receipts(&r.text().await.unwrap()));
    }
    let honest = wait_for_cosigned(&c, &url, &policy, 51).await;
    let (honest_cp, who) = policy.check(honest.as_bytes()).unwrap();
    assert_eq!(honest_cp.size, 51);
    assert_eq!(who.into_iter().collect::<Vec<_>>(), ["w1", "w2"]);
    // The uncosigned latest is at its own path.
    let latest = get_text(&c, format!("{url}/checkpoint/latest")).await;
    assert_eq!(
        note::verify_checkpoint(latest.as_bytes(), &log_vkey)
            .unwrap()
            .size,
        51
    );
    // Witnessed up to the latest: no lag.
    let metrics = get_text(&c, format!("{url}/metrics")).await;
    assert!(
        metrics.lines().any(|l| l == "sealog_witness_lag_leaves 0"),
        "{metrics}"
    );

    // Offline receipt checks: a receipt fetched now carries the witnessed
    // checkpoint; an append-time receipt is proven consistent with it.
    let r = c
        .get(format!("{url}/v1/events/{}/receipt", all[7].index))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    std::fs::write(p("receipt.json"), r.text().await.unwrap()).unwrap();
    let wargs = [
        "--witness",
        &wv[0],
        "--witness",
        &wv[1],
        "--witness",
        &wv[2],
    ];
    let mut args = vec![
        "verify",
        p("receipt.json").leak() as &str,
        "--vkey",
        &log_vkey,
        "--quorum",
        "2",
    ];
    args.extend(wargs);
    let out = sealog(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = c
        .get(format!(
            "{url}/v1/events/{}/receipt?format=tlog-proof",
            all[7].index
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    std::fs::write(p("receipt.tlog-proof"), r.text().await.unwrap()).unwrap();
    args[1] = p("receipt.tlog-proof").leak();
    assert!(sealog(&args).status.success());
    std::fs::write(
        p("old-receipt.json"),
        serde_json::to_string(&all[0]).unwrap(),
    )
    .unwrap();
    args[1] = p("old-receipt.json").leak();
    assert!(
        !sealog(&args).status.success(),
        "an append-time receipt is not cosigned by itself"
    );
    args.extend(["--log", &url]);
    let out = sealog(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("consistent with the log's checkpoint of size 51"));
    args[5] = "3"; // a quorum of three is not met
    assert!(!sealog(&args).status.success());

    // The auditor follows the honest log.
    let audit = |log: &str, state: &str, extra: &[&str]| {
        let mut a = vec![
            "audit",
            "--log",
            log,
            "--policy",
            p("policy").leak() as &str,
            "--state",
            p(state).leak(),
        ];
        a.extend(extra);
        sealog(&a)
    };
    // A replay with a read token; returns what it printed.
    let replay = |log: &str| {
        let out = audit(
            log,
            "replayer",
            &["--replay", "--token-file", p("log/admin.token").leak()],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let out = audit(&url, "auditor", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = replay(&url);
    assert!(stdout.contains("replayed 51 new leaves"), "{stdout}");
    assert!(stdout.contains("51 events checked"), "{stdout}");

    // A forged fork: a second instance with the same key signs another
    // tree of the same origin.
    // (A data directory is its owner's only: serve refuses a looser one.)
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(p("fork"))
        .unwrap();
    std::fs::copy(p("log/log.key"), p("fork/log.key")).unwrap();
    let (child, fork_url) =
        spawn_serving(&["serve", "--data", &p("fork"), "--listen", "127.0.0.1:0"]);
    let _fork = Kill(child);
    let fork_token = read(&tmp.path().join("fork/admin.token"));
    let batch: Vec<_> = (0..50)
        .map(|j| auth_event(900 + j, json!("forged")))
        .collect();
    let r = c
        .post(format!("{fork_url}/v1/events"))
        .bearer_auth(&fork_token)
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let fork51 = get_text(&c, format!("{fork_url}/checkpoint")).await;
    let fork_cp = note::verify_checkpoint(fork51.as_bytes(), &log_vkey).unwrap();
    assert_eq!(fork_cp.size, 51, "validly signed by the log's key");
    assert_ne!(fork_cp.root, honest_cp.root);
    // The witnesses refuse it: same size, another root (409)...
    let (st, _, _) = add(&c, &u1, request(51, &[], &fork51)).await;
    assert_eq!(st, 409);
    // ...and, grown, its proof from the witnessed size fails (422).
    let batch: Vec<_> = (0..9)
        .map(|j| auth_event(950 + j, json!("forged")))
        .collect();
    c.post(format!("{fork_url}/v1/events"))
        .bearer_auth(&fork_token)
        .json(&batch)
        .send()
        .await
        .unwrap();
    let fork60 = get_text(&c, format!("{fork_url}/checkpoint")).await;
    let proof: sealog_verify::receipt::ConsistencyProof = serde_json::from_str(
        &get_text(&c, format!("{fork_url}/v1/proof/consistency?from=51&to=60")).await,
    )
    .unwrap();
    assert_eq!(
        add(&c, &u2, request(51, &proof.hashes, &fork60)).await.0,
        422
    );

    // The auditor, pointed at the fork, exits 2 with evidence.
    let fork_policy = format!("log {log_vkey}\nquorum none\n");
    std::fs::write(p("fork-policy"), fork_policy).unwrap();
    let out = sealog(&[
        "audit",
        "--log",
        &fork_url,
        "--policy",
        &p("fork-policy"),
        "--state",
        &p("auditor"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let evidence: Vec<_> = std::fs::read_dir(p("auditor"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.starts_with("evidence-").then_some(name)
        })
        .collect();
    assert_eq!(evidence.len(), 1);
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("auditor").join(&evidence[0])).unwrap(),
    )
    .unwrap();
    // Anyone with the log's key can check the evidence: both notes verify,
    // and the proof between them does not.
    let old = note::verify_checkpoint(
        doc["old_checkpoint"].as_str().unwrap().as_bytes(),
        &log_vkey,
    )
    .unwrap();
    let new = note::verify_checkpoint(
        doc["new_checkpoint"].as_str().unwrap().as_bytes(),
        &log_vkey,
    )
    .unwrap();
    assert_eq!((old.size, new.size), (51, 60));
    let p2: sealog_verify::receipt::ConsistencyProof =
        serde_json::from_value(doc["consistency_proof"].clone()).unwrap();
    assert!(sealog_verify::verify::verify_consistency(&p2, &old, &new).is_err());
    // The honest log still audits clean from the same state.
    assert!(audit(&url, "auditor", &[]).status.success());
    // A replay resumes where the last one stopped.
    let batch: Vec<_> = (0..5).map(|j| auth_event(500 + j, json!(j))).collect();
    c.post(format!("{url}/v1/events"))
        .bearer_auth(&token)
        .json(&batch)
        .send()
        .await
        .unwrap();
    wait_for_cosigned(&c, &url, &policy, 56).await;
    let stdout = replay(&url);
    assert!(stdout.contains("replayed 5 new leaves"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quietly_edited_event_is_caught_by_replay() {
    let mut s = Server::start(&[]);
    let c = Server::client();
    let evs: Vec<_> = (0..20).map(|i| auth_event(i, json!(i))).collect();
    s.append(&c, json!(evs)).await;
    assert_eq!(s.stop(), Some(0));
    // Someone with the disk edits event 7 in the private store.
    {
        use redb::ReadableTable;
        let db = redb::Database::open(s.data_dir().join("sealog.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        {
            // Sealed (codec 2) under the event's key, which whoever holds
            // the disk has too (sealog.keys, slot 7): opened, it is codec
            // 0 (20 events are too few to train a dictionary) || salt ||
            // JCS. Edited and sealed again, it opens as well as before.
            let keys = std::fs::read(s.data_dir().join("sealog.keys")).unwrap();
            let key: [u8; 32] = keys[32 * 7..32 * 8].try_into().unwrap();
            let which = sealog::store::keys::Sealed::Event;
            let mut t = tx
                .open_table(redb::TableDefinition::<u64, &[u8]>::new("events_z"))
                .unwrap();
            let sealed = t.get(7).unwrap().unwrap().value().to_vec();
            assert_eq!(sealed[0], 2);
            let row = sealog::store::keys::open(&key, which, &sealed[1..]).unwrap();
            assert_eq!(row[0], 0);
            let edited = String::from_utf8(row[33..].to_vec())
                .unwrap()
                .replace("\"status_id\":1", "\"status_id\":2");
            let mut plain = row[..33].to_vec();
            plain.extend_from_slice(edited.as_bytes());
            let mut new = vec![2u8];
            sealog::store::keys::seal(&key, which, &plain, &mut new);
            t.insert(7, new.as_slice()).unwrap();
        }
        tx.commit().unwrap();
    }
    s.restart_after_stop();
    let state = tempfile::tempdir().unwrap();
    let token_file = s.data_dir().join("admin.token");
    let out = sealog(&[
        "audit",
        "--log",
        &s.url,
        "--vkey",
        &s.vkey,
        "--state",
        state.path().to_str().unwrap(),
        "--replay",
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("event 7 does not match its commitment"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `s` with the byte at `at` of its base64 decoding flipped.
fn flip_b64(s: &str, at: usize) -> String {
    let mut b = BASE64_STANDARD.decode(s.trim()).unwrap();
    b[at] ^= 0x01;
    BASE64_STANDARD.encode(b)
}

/// A checkpoint note with the signature of the line starting `— {who} `
/// changed in its last byte.
fn flip_signature(note: &str, who: &str) -> String {
    let prefix = format!("— {who} ");
    let mut found = false;
    let out: Vec<String> = note
        .split('\n')
        .map(|l| match l.strip_prefix(&prefix) {
            Some(sig) => {
                found = true;
                let n = BASE64_STANDARD.decode(sig).unwrap().len();
                format!("{prefix}{}", flip_b64(sig, n - 1))
            }
            None => l.to_string(),
        })
        .collect();
    assert!(found, "no signature by {who} in {note}");
    out.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_refuses_a_receipt_tampered_in_its_leaf_proof_checkpoint_or_cosignature() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |s: &str| tmp.path().join(s).to_str().unwrap().to_string();
    let out = sealog(&["keygen", "--origin", "t.example/log", "--out", &p("log")]);
    assert!(out.status.success());
    let log_vkey = String::from_utf8(out.stdout).unwrap().trim().to_string();
    std::fs::write(p("logs"), format!("log {log_vkey}\n")).unwrap();
    let out = sealog(&["witness", "keygen", "--name", "w.example", "--out", &p("w")]);
    assert!(out.status.success());
    let wvkey = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (child, wurl) = spawn_serving(&[
        "witness",
        "serve",
        "--data",
        &p("w"),
        "--listen",
        "127.0.0.1:0",
        "--logs",
        &p("logs"),
    ]);
    let _w = Kill(child);
    let policy_text = format!("log {log_vkey}\nwitness w {wvkey} {wurl}\nquorum w\n");
    std::fs::write(p("policy"), &policy_text).unwrap();
    let policy = Policy::parse(&policy_text).unwrap();
    let s = Server::start_in(
        Path::new(&p("log")),
        &["--witnesses", &p("policy"), "--witness-interval-ms", "50"],
    );
    let c = Server::client();
    let evs: Vec<_> = (0..20).map(|i| auth_event(i, json!(i))).collect();
    s.append(&c, json!(evs)).await;
    wait_for_cosigned(&c, &s.url, &policy, 21).await;
    let fetch = async |query: &str| {
        let r = c
            .get(format!("{}/v1/events/7/receipt{query}", s.url))
            .bearer_auth(&s.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    };
    let json_receipt = fetch("").await;
    let tlog_proof = fetch("?format=tlog-proof").await;

    // `sealog verify` on `text`: Ok(stdout) or Err(stderr).
    let n = std::cell::Cell::new(0);
    let verify = |text: &str| {
        n.set(n.get() + 1);
        let file = p(&format!("receipt-{}", n.get()));
        std::fs::write(&file, text).unwrap();
        let out = sealog(&[
            "verify",
            &file,
            "--vkey",
            &log_vkey,
            "--witness",
            &wvkey,
            "--quorum",
            "1",
        ]);
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        if out.status.success() {
            Ok(text(&out.stdout))
        } else {
            Err(text(&out.stderr))
        }
    };
    let ok = verify(&json_receipt).expect("the JSON receipt verifies");
    assert!(
        ok.contains("OK: event 7") && ok.contains("cosigned by {\"w0\"}"),
        "{ok}"
    );
    let ok = verify(&tlog_proof).expect("the tlog-proof verifies");
    assert!(ok.contains("OK: event 7"), "{ok}");

    // The JSON form, one field at a time: (what, tampered, the message).
    let r: serde_json::Value = serde_json::from_str(&json_receipt).unwrap();
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = r.clone();
        f(&mut v);
        serde_json::to_string(&v).unwrap()
    };
    let checkpoint = r["checkpoint"].as_str().unwrap().to_string();
    let other_size = checkpoint.replacen("\n21\n", "\n20\n", 1);
    assert_ne!(other_size, checkpoint);
    let no_cosignature: String = checkpoint
        .split('\n')
        .filter(|l| !l.starts_with("— w.example "))
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(no_cosignature, checkpoint);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "event",
            with(&|v| v["event"]["unmapped"]["tag"] = json!(8)),
            "commitment is not",
        ),
        (
            "salt",
            with(&|v| v["salt"] = json!(flip_b64(v["salt"].as_str().unwrap(), 0))),
            "commitment is not",
        ),
        (
            "commitment",
            with(&|v| v["commitment"] = json!(flip_b64(v["commitment"].as_str().unwrap(), 0))),
            "commitment is not",
        ),
        (
            "leaf hash",
            with(&|v| v["leaf_hash"] = json!(flip_b64(v["leaf_hash"].as_str().unwrap(), 0))),
            "leaf hash is not",
        ),
        (
            "index",
            with(&|v| v["index"] = json!(6)),
            "inclusion proof does not reach",
        ),
        (
            "an inclusion proof hash",
            with(&|v| {
                let h = v["inclusion_proof"][1].as_str().unwrap().to_string();
                v["inclusion_proof"][1] = json!(flip_b64(&h, 31));
            }),
            "inclusion proof does not reach",
        ),
        (
            "the checkpoint's size",
            with(&|v| v["checkpoint"] = json!(other_size)),
            "checkpoint: ",
        ),
        (
            "the checkpoint's signature",
            with(&|v| v["checkpoint"] = json!(flip_signature(&checkpoint, "t.example/log"))),
            "checkpoint: ",
        ),
        (
            "the cosignature",
            with(&|v| v["checkpoint"] = json!(flip_signature(&checkpoint, "w.example"))),
            "invalid signature for key w.example",
        ),
        (
            "no cosignature",
            with(&|v| v["checkpoint"] = json!(no_cosignature)),
            "witness quorum not met",
        ),
    ];
    for (what, text, message) in &cases {
        let err = verify(text).expect_err(&format!("a receipt with another {what} verified"));
        assert!(err.contains(message), "{what}: {err}");
    }

    // The tlog-proof form: the leaf is rebuilt from the `extra` line, so a
    // changed event or salt shows as a leaf the proof does not reach.
    let (head, note) = tlog_proof.split_once("\n\n").unwrap();
    let lines: Vec<&str> = head.split('\n').collect();
    assert!(
        lines[1].starts_with("extra ") && lines[2] == "index 7",
        "{head}"
    );
    let extra = BASE64_STANDARD.decode(&lines[1]["extra ".len()..]).unwrap();
    let salt_len = sealog_verify::commitment::SALT_LEN;
    let event = String::from_utf8(extra[salt_len..].to_vec()).unwrap();
    assert!(event.contains("\"tag\":6"), "{event}");
    let rebuilt = |line1: String, line2: &str, proof: Vec<String>, note: &str| {
        let mut out = vec![lines[0].to_string(), line1, line2.to_string()];
        out.extend(proof);
        format!("{}\n\n{note}", out.join("\n"))
    };
    let proof: Vec<String> = lines[3..].iter().map(|l| l.to_string()).collect();
    let extra_line = |salt: &[u8], event: &str| {
        let mut b = salt.to_vec();
        b.extend_from_slice(event.as_bytes());
        format!("extra {}", BASE64_STANDARD.encode(b))
    };
    let salt = &extra[..salt_len];
    let mut other_salt = salt.to_vec();
    other_salt[0] ^= 1;
    let mut bad_proof = proof.clone();
    bad_proof[0] = flip_b64(&bad_proof[0], 31);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "event",
            rebuilt(
                extra_line(salt, &event.replace("\"tag\":6", "\"tag\":9")),
                lines[2],
                proof.clone(),
                note,
            ),
            "inclusion proof does not reach",
        ),
        (
            "salt",
            rebuilt(
                extra_line(&other_salt, &event),
                lines[2],
                proof.clone(),
                note,
            ),
            "inclusion proof does not reach",
        ),
        (
            "index",
            rebuilt(lines[1].to_string(), "index 6", proof.clone(), note),
            "inclusion proof does not reach",
        ),
        (
            "an inclusion proof hash",
            rebuilt(lines[1].to_string(), lines[2], bad_proof, note),
            "inclusion proof does not reach",
        ),
        (
            "the checkpoint's size",
            rebuilt(
                lines[1].to_string(),
                lines[2],
                proof.clone(),
                &note.replacen("\n21\n", "\n20\n", 1),
            ),
            "checkpoint: ",
        ),
        (
            "the checkpoint's signature",
            rebuilt(
                lines[1].to_string(),
                lines[2],
                proof.clone(),
                &flip_signature(note, "t.example/log"),
            ),
            "checkpoint: ",
        ),
        (
            "the cosignature",
            rebuilt(
                lines[1].to_string(),
                lines[2],
                proof.clone(),
                &flip_signature(note, "w.example"),
            ),
            "invalid signature for key w.example",
        ),
    ];
    for (what, text, message) in &cases {
        assert_ne!(text, &tlog_proof, "{what}: nothing changed");
        let err = verify(text).expect_err(&format!("a tlog-proof with another {what} verified"));
        assert!(err.contains(message), "tlog-proof {what}: {err}");
    }
}
