//! End to end over HTTP with the real binary: concurrent appends, offline
//! receipt checks, proofs for past sizes, restart continuity.

mod common;

use std::collections::BTreeSet;

use common::{auth_event, receipts, Server};
use sealog_verify::note;
use sealog_verify::receipt::{InclusionProof, Receipt};
use sealog_verify::verify;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_all_verify_and_survive_restart() {
    let mut s = Server::start(&[]);
    let c = Server::client();
    let empty = s.checkpoint(&c).await;
    assert_eq!(
        empty.size, 1,
        "a new log holds one event: its admin token's creation"
    );

    // 48 clients, each sending singles and batches at once.
    let mut tasks = Vec::new();
    for client_id in 0..48 {
        let (url, token) = (s.url.clone(), s.token.clone());
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for k in 0..6 {
                let body = if k % 3 == 0 {
                    json!((0..(1 + client_id % 7))
                        .map(|j| auth_event(
                            client_id,
                            json!({"client": client_id, "k": k, "j": j})
                        ))
                        .collect::<Vec<_>>())
                } else {
                    auth_event(
                        client_id,
                        json!({"client": client_id, "k": k, "nested": {"z": 1, "a": [1.5, null]}}),
                    )
                };
                let r = c
                    .post(format!("{url}/v1/events"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let v = r.text().await.unwrap();
                assert_eq!(v.starts_with('['), body.is_array(), "single in, single out");
                let rs = receipts(&v);
                let sent = if body.is_array() {
                    body.as_array().unwrap().clone()
                } else {
                    vec![body.clone()]
                };
                assert_eq!(rs.len(), sent.len());
                for (r, e) in rs.iter().zip(&sent) {
                    let got: serde_json::Value =
                        serde_json::from_str(r.event.as_ref().unwrap().get()).unwrap();
                    assert_eq!(
                        got["unmapped"], e["unmapped"],
                        "receipts come back in request order"
                    );
                    assert_eq!(got["type_uid"], 300201, "the log fills in type_uid");
                }
                // A request's events are contiguous.
                for w in rs.windows(2) {
                    assert_eq!(w[1].index, w[0].index + 1);
                }
                out.extend(rs);
            }
            out
        }));
    }
    let mut all: Vec<Receipt> = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }

    let head = s.checkpoint(&c).await;
    assert_eq!(head.size, all.len() as u64 + 1);
    let indexes: BTreeSet<u64> = all.iter().map(|r| r.index).collect();
    assert_eq!(
        indexes,
        (1..head.size).collect(),
        "every index exactly once"
    );

    // Every receipt verifies offline, and its checkpoint is consistent
    // with the latest one.
    let mut checked_sizes = BTreeSet::new();
    for r in &all {
        let cp = verify::verify_receipt(r, &s.vkey).expect("receipt verifies offline");
        assert!(cp.size > r.index);
        if checked_sizes.insert(cp.size) {
            s.assert_consistent(&c, &cp, &head).await;
        }
    }
    // A receipt whose event was changed does not verify.
    let mut forged = all[0].clone();
    forged.event =
        Some(serde_json::value::RawValue::from_string("{\"client\":999}".into()).unwrap());
    assert!(verify::verify_receipt(&forged, &s.vkey).is_err());

    // Proofs for past sizes verify against the roots in old receipts.
    for r in all.iter().step_by(17) {
        let cp = note::verify_checkpoint(r.checkpoint.as_bytes(), &s.vkey).unwrap();
        let p: InclusionProof = s
            .get_json(
                &c,
                &format!("/v1/proof/inclusion?index={}&size={}", r.index, cp.size),
            )
            .await;
        sealog_verify::tree::check_inclusion(&p.hashes, cp.size, cp.root, r.index, r.leaf_hash)
            .unwrap();
        let by_hash: InclusionProof = s
            .get_json(
                &c,
                &format!(
                    "/v1/proof/inclusion?leaf_hash={}&size={}",
                    urlencode(&r.leaf_hash.to_string()),
                    cp.size
                ),
            )
            .await;
        assert_eq!(by_hash.index, r.index);
        assert_eq!(by_hash.hashes, p.hashes);
    }

    // Restart: the same tree and checkpoint, then it grows consistently.
    s.restart();
    let after = s.checkpoint(&c).await;
    assert_eq!(after, head, "restart keeps size and root");
    let more = receipts(
        &s.append(
            &c,
            json!([
                auth_event(1, json!("after 1")),
                auth_event(2, json!("after 2"))
            ]),
        )
        .await,
    );
    assert_eq!(more[0].index, head.size);
    let grown = s.checkpoint(&c).await;
    assert_eq!(grown.size, head.size + 2);
    s.assert_consistent(&c, &head, &grown).await;
    s.assert_consistent(&c, &empty, &grown).await;
    for r in all.iter().step_by(29).chain(&more) {
        let p: InclusionProof = s
            .get_json(
                &c,
                &format!("/v1/proof/inclusion?index={}&size={}", r.index, grown.size),
            )
            .await;
        sealog_verify::tree::check_inclusion(
            &p.hashes,
            grown.size,
            grown.root,
            r.index,
            r.leaf_hash,
        )
        .unwrap();
    }
    assert_eq!(s.stop(), Some(0));
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

#[tokio::test]
async fn tiles_are_served_for_signed_sizes_only() {
    let s = Server::start(&[]);
    let c = Server::client();
    let body: Vec<_> = (0..299).map(|i| auth_event(i, json!(i))).collect();
    let mut rs = receipts(&s.append(&c, json!(body)).await);
    let head = s.checkpoint(&c).await;
    assert_eq!(head.size, 300, "299 and the admin token's record");
    // rs[i] is leaf i: put leaf 0 (the token record) in front.
    let first = c
        .get(format!("{}/v1/events/0/receipt", s.url))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    rs.insert(
        0,
        serde_json::from_str(&first.text().await.unwrap()).unwrap(),
    );

    // Level 0: tile 0 full, tile 1 partial of width 44; level 1 width 1.
    let get = |p: &'static str| {
        let c = c.clone();
        let url = format!("{}{p}", s.url);
        async move {
            let r = c.get(url).send().await.unwrap();
            (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
        }
    };
    let (st, t0) = get("/tile/0/000").await;
    assert_eq!((st, t0.len()), (200, 8192));
    assert_eq!(&t0[32 * 5..32 * 6], &rs[5].leaf_hash.0);
    let (st, t1) = get("/tile/0/001.p/44").await;
    assert_eq!((st, t1.len()), (200, 44 * 32));
    assert_eq!(&t1[32 * 3..32 * 4], &rs[259].leaf_hash.0);
    let (st, narrower) = get("/tile/0/001.p/10").await;
    assert_eq!(
        (st, &narrower[..]),
        (200, &t1[..320]),
        "a narrower width is a prefix"
    );
    let (st, l1) = get("/tile/1/000.p/1").await;
    assert_eq!(st, 200);
    let mut mem = sealog_verify::tree::MemoryHashes::default();
    for r in &rs[..256] {
        mem.append(r.leaf_hash);
    }
    assert_eq!(&l1[..], &sealog_verify::tree::root(256, &mem).unwrap().0);
    let (st, bundle) = get("/tile/entries/001.p/44").await;
    assert_eq!((st, bundle.len()), (200, 44 * 34));
    assert_eq!(&bundle[..2], &[0, 32]);
    assert_eq!(&bundle[2..34], &rs[256].commitment.0);

    for (path, want) in [
        ("/tile/0/001", 404),
        ("/tile/0/001.p/45", 404),
        ("/tile/0/002.p/1", 404),
        ("/tile/1/000", 404),
        ("/tile/2/000.p/1", 404),
        ("/tile/entries/001", 404),
        ("/tile/0/1", 400),
        ("/tile/0/x000/001", 400),
        ("/tile/0/000.p/256", 400),
        ("/tile/0/000.p/0", 400),
        ("/tile/00/000", 400),
        ("/tile/64/000", 400),
        ("/tile/entries/000.p/01", 400),
        ("/tile/0/..%2F..%2Fetc%2Fpasswd", 400),
        ("/tile/0/%30%30%30", 400),
        ("/tile/entries%2F000", 400),
        ("/tile/x/000", 400),
    ] {
        let r = c.get(format!("{}{path}", s.url)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), want, "{path}");
        let v: serde_json::Value = r.json().await.expect("JSON error body");
        assert!(v["error"]["code"].is_string(), "{path}: {v}");
    }
}
