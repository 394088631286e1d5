//! The driver conformance suite: the contract of `store` (spec/storage.md,
//! "Storage driver contract") as tests that any driver must pass.
//!
//! Each check takes a driver and an empty scratch directory, and panics
//! if the driver breaks the contract. A driver's test file runs them all
//! with one line: `sealog::store_conformance!(&MyDriver);` (see
//! `tests/store_conformance.rs`, which runs them against redb).
//!
//! The checks use only the traits: what a driver stores and how is its
//! own business; what it answers, when, and after which failures, is not.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::events::{Committed, Facets};
use crate::store::index_keys::{of_str, Keys};
use crate::store::keys;
use crate::store::{
    uid_hash, Claim, Driver, EventRow, IndexKey, IndexView, KnownUids, LogStore, NoKnownUids,
    Outcome, Placed, Refusal, Snapshot, StoreError, StoredEvent, TreeState, Write,
};
use sealog_verify::tiles::TileRef;
use sealog_verify::tree::{self, Hash, MemoryHashes};

/// Runs every check of the suite as a `#[test]` of its own, against the
/// driver `$driver` (an expression of type `&dyn Driver`, evaluated once
/// per test), each in a fresh temporary directory. Needs `tempfile`.
#[macro_export]
macro_rules! store_conformance {
    ($driver:expr) => {
        $crate::store_conformance!(@each $driver;
            batches_read_back_exactly_and_survive_reopening,
            a_batch_is_all_or_nothing,
            a_write_on_a_stale_state_is_refused,
            snapshots_are_isolated_from_later_writes,
            redaction_erases_the_event_and_keeps_the_leaf,
            uids_tell_a_retry_from_a_reuse,
            tokens_change_with_their_audit_event,
            flags_and_identity_persist,
            backup_and_restore_round_trip,
            a_second_writer_is_refused,
            witness_state_is_durable,
            index_rounds_commit_whole_and_views_hold_still,
        );
    };
    (@each $driver:expr; $($check:ident),* $(,)?) => {$(
        #[test]
        fn $check() {
            let dir = tempfile::tempdir().expect("a scratch directory");
            $crate::store::conformance::$check($driver, dir.path());
        }
    )*};
}

/// Test event `i`: uid `uid-i`, class 3002, user `user{i % 3}`.
pub fn event(i: usize) -> Committed {
    let facets = Facets {
        class_uid: 3002,
        uid: format!("uid-{i}"),
        users: vec![format!("user{}", i % 3)],
        time: 1000 + i as u64,
        ..Default::default()
    };
    Committed::new(format!("{{\"i\":{i}}}").into_bytes(), facets)
}

/// Redacts leaf `index` with the record `event(record)` in one write.
pub fn redact(
    store: &dyn LogStore,
    state: TreeState,
    index: u64,
    record: usize,
) -> (TreeState, Vec<Outcome>, Vec<Write>) {
    store
        .write(
            state,
            vec![Write::Redact {
                index,
                record: event(record),
            }],
            &NoKnownUids,
        )
        .unwrap()
}

/// Test events `range`.
pub fn events(range: std::ops::Range<usize>) -> Vec<Committed> {
    range.map(event).collect()
}

/// A store of this build's driver at `dir/name` holding test events
/// `0..n`, and its state.
pub fn store_with(dir: &Path, name: &str, n: usize) -> (Arc<dyn LogStore>, TreeState) {
    open_with(
        crate::store::engine::driver(),
        &dir.join(name),
        &events(0..n),
    )
}

/// A store of `driver` at `path` holding `evs`, and its state.
pub fn open_with(
    driver: &dyn Driver,
    path: &Path,
    evs: &[Committed],
) -> (Arc<dyn LogStore>, TreeState) {
    let store = driver.open(path).expect("the store opens");
    let state = store.tree_state().expect("a tree state");
    let (state, _) = store
        .append(state, evs.to_vec(), &NoKnownUids)
        .expect("the events append");
    (store, state)
}

/// What a snapshot must answer for `e`'s facets: the stored row leaves
/// out the uid, logged time and content hash (the uid rows keep them).
fn stored_facets(e: &Committed) -> Facets {
    Facets {
        uid: String::new(),
        logged_time: 0,
        content: [0; 32],
        ..e.facets.clone()
    }
}

/// The tree of `evs`, in memory.
fn tree_of(evs: &[Committed]) -> MemoryHashes {
    let mut mem = MemoryHashes::default();
    for e in evs {
        mem.append(tree::leaf_hash(&e.commitment.0));
    }
    mem
}

/// Tile `t` of the tree of `evs`, as tlog-tiles defines it.
fn tile_of(evs: &[Committed], mem: &MemoryHashes, t: &TileRef) -> Vec<u8> {
    match t.level {
        None => {
            let first = t.first_entry() as usize;
            let entries = &evs[first..first + t.width as usize];
            sealog_verify::tiles::entry_bundle(entries.iter().map(|e| &e.commitment.0[..]))
        }
        Some(l) => tlog_tiles::Tile::new(sealog_verify::tiles::HEIGHT, l, t.index, t.width, false)
            .read_data(mem)
            .expect("the tile is in the tree"),
    }
}

fn tile(level: Option<u8>, index: u64, width: u32) -> TileRef {
    TileRef {
        level,
        index,
        width,
    }
}

/// Asserts that `snap` holds exactly `evs` (none redacted): commitments,
/// events, facets, uid rows, roots, proofs and tiles, and nothing beyond.
fn assert_holds(snap: &dyn Snapshot, evs: &[Committed]) {
    let n = evs.len() as u64;
    let mem = tree_of(evs);
    let want: Vec<Hash> = evs.iter().map(|e| e.commitment).collect();
    assert_eq!(snap.commitments(0, n).unwrap(), want, "the commitments");
    for (i, e) in evs.iter().enumerate() {
        let i = i as u64;
        assert_eq!(
            snap.event(i).unwrap(),
            EventRow::Present(StoredEvent {
                salt: e.salt,
                jcs: e.jcs.clone()
            }),
            "event {i}"
        );
        assert_eq!(
            snap.facets(i).unwrap(),
            Some(stored_facets(e)),
            "facets {i}"
        );
    }
    let facets = snap.facets_in(0..n + 10, |f| f).unwrap();
    let want: Vec<(u64, Facets)> = (0..).zip(evs.iter().map(stored_facets)).collect();
    assert_eq!(facets, want, "facets in order");
    let uids = snap.uid_rows(0..n + 10).unwrap();
    let want: Vec<(u64, Claim, [u8; 32])> = (0..)
        .zip(evs)
        .map(|(i, e)| {
            let tag = keys::content_tag(&e.key, &e.facets.content);
            (i, Claim::Tag(tag), uid_hash(&e.facets.uid))
        })
        .collect();
    assert_eq!(uids, want, "the uid rows: hash and keyed content claim");
    assert_eq!(snap.redactions(0..n + 10).unwrap(), []);
    for size in [1, n / 2 + 1, n.saturating_sub(1).max(1), n] {
        assert_eq!(
            tree::root(size, &snap).unwrap(),
            tree::root(size, &mem).unwrap(),
            "root at {size}"
        );
    }
    for leaf in (0..n).step_by(13).chain([n - 1]) {
        assert_eq!(
            tree::prove_inclusion(n, leaf, &snap).unwrap(),
            tree::prove_inclusion(n, leaf, &mem).unwrap(),
            "inclusion of {leaf} in {n}"
        );
    }
    let full = n / 256;
    let part = (n % 256) as u32;
    let mut tiles = vec![tile(Some(0), 0, 1), tile(None, 0, 1)];
    for i in 0..full {
        tiles.extend([
            tile(Some(0), i, 256),
            tile(None, i, 256),
            tile(Some(0), i, 3),
        ]);
    }
    if part > 0 {
        tiles.extend([tile(Some(0), full, part), tile(None, full, part)]);
    }
    if full > 0 {
        tiles.push(tile(Some(1), 0, full as u32));
    }
    for t in &tiles {
        assert_eq!(snap.tile(t).unwrap(), tile_of(evs, &mem, t), "tile {t}");
    }
    // Nothing beyond the tree.
    assert_eq!(snap.event(n).unwrap(), EventRow::Absent);
    assert_eq!(snap.facets(n).unwrap(), None);
    assert!(snap.commitments(n - 1, 2).is_err(), "a commitment beyond");
    let beyond = tree::stored_hash_count(n);
    assert!(snap.read_hashes(&[0, beyond]).is_err(), "a hash beyond");
    assert_eq!(snap.read_hashes(&[]).unwrap(), []);
    assert!(
        snap.tile(&tile(Some(0), full, part + 1)).is_err(),
        "a tile beyond"
    );
    assert!(
        snap.tile(&tile(None, full, part + 1)).is_err(),
        "a bundle beyond"
    );
}

/// Appends in batches: every answer is the tree of what was appended,
/// reads give back exactly what was written, and after the store is
/// closed and opened again it holds exactly what it acknowledged.
pub fn batches_read_back_exactly_and_survive_reopening(driver: &dyn Driver, dir: &Path) {
    let path = dir.join("log");
    let evs = events(0..700);
    let acknowledged = {
        let store = driver.open(&path).unwrap();
        let mut state = store.tree_state().unwrap();
        assert_eq!(state.size, 0);
        assert_eq!(state.root, tree::root(0, &MemoryHashes::default()).unwrap());
        for chunk in evs[..500].chunks(37) {
            let (next, placed) = store.append(state, chunk.to_vec(), &NoKnownUids).unwrap();
            let want: Vec<Placed> = (state.size..next.size).map(Placed::New).collect();
            assert_eq!(placed, want);
            assert_eq!(store.tree_state().unwrap(), next);
            state = next;
        }
        state
    };
    assert_eq!(acknowledged.size, 500);
    assert_eq!(
        acknowledged.root,
        tree::root(500, &tree_of(&evs[..500])).unwrap()
    );
    let store = driver.open(&path).unwrap();
    assert_eq!(store.tree_state().unwrap(), acknowledged, "after reopening");
    let (state, _) = store
        .append(acknowledged, evs[500..].to_vec(), &NoKnownUids)
        .unwrap();
    assert_eq!(state.root, tree::root(700, &tree_of(&evs)).unwrap());
    assert_holds(&*store.snapshot().unwrap(), &evs);
    assert_eq!(store.verify_all(&mut |_, _| {}).unwrap(), state);
    drop(store);
    let store = driver.open(&path).unwrap();
    assert_eq!(store.tree_state().unwrap(), state);
    assert_holds(&*store.snapshot().unwrap(), &evs);
}

/// Answers for uids as an index would, but fails the lookup of one.
struct FailingLookup(&'static str);

impl KnownUids for FailingLookup {
    fn get(&self, uid: &str) -> Result<Option<(u64, Claim)>, StoreError> {
        match uid == self.0 {
            true => Err(StoreError::Index("failed by the test".into())),
            false => Ok(None),
        }
    }
}

/// A write that fails part-way leaves no part of its batch: no leaf,
/// hash, event, uid row, token or redaction, before or after reopening;
/// the same batch then commits at the same indexes.
pub fn a_batch_is_all_or_nothing(driver: &dyn Driver, dir: &Path) {
    let path = dir.join("log");
    let before = events(0..10);
    let (store, s) = open_with(driver, &path, &before);
    let batch = || {
        vec![
            Write::CreateToken {
                hash: [7; 32],
                record: br#"{"name":"ci","scopes":["append"]}"#.to_vec(),
                name: "ci".into(),
                audit: event(100),
            },
            Write::Redact {
                index: 2,
                record: event(101),
            },
            // The lookup of uid-15 fails: after the token and the
            // redaction were written in the transaction.
            Write::Append(events(10..20)),
        ]
    };
    let check = |store: &dyn LogStore| {
        assert_eq!(store.tree_state().unwrap(), s, "the state of before");
        assert_eq!(store.tokens().unwrap(), [], "no token");
        assert_holds(&*store.snapshot().unwrap(), &before);
    };
    let err = store
        .write(s, batch(), &FailingLookup("uid-15"))
        .unwrap_err();
    assert!(matches!(err, StoreError::Index(_)), "{err}");
    check(&*store);
    drop(store);
    let store = driver.open(&path).unwrap();
    check(&*store);
    let (s2, out, _) = store.write(s, batch(), &NoKnownUids).unwrap();
    assert_eq!(
        out,
        [
            Outcome::Token { audit: 10 },
            Outcome::Redacted { record: 11 },
            Outcome::Appended((12..22).map(Placed::New).collect()),
        ]
    );
    assert_eq!(s2.size, 22);
    assert_eq!(store.verify_all(&mut |_, _| {}).unwrap(), s2);
}

/// A write names the state it extends; on any other it is refused and
/// changes nothing: no write lands on a stale state (two writers, or a
/// writer that lost track, would fork the log).
pub fn a_write_on_a_stale_state_is_refused(driver: &dyn Driver, dir: &Path) {
    let evs = events(0..8);
    let (store, s) = open_with(driver, &dir.join("log"), &evs[..5]);
    let (s2, _) = store.append(s, evs[5..].to_vec(), &NoKnownUids).unwrap();
    for stale in [
        s,
        TreeState {
            size: s2.size + 1,
            root: s2.root,
        },
    ] {
        let r = store.append(stale, vec![event(50)], &NoKnownUids);
        assert!(r.is_err(), "a write after size {}", stale.size);
        assert_eq!(store.tree_state().unwrap(), s2);
    }
    assert_holds(&*store.snapshot().unwrap(), &evs);
}

/// A snapshot answers for the state it was taken at: later appends,
/// tiles completed later and tokens do not show through it; an event
/// redacted since reads as redacted (its key is gone), nothing else of
/// the redaction shows.
pub fn snapshots_are_isolated_from_later_writes(driver: &dyn Driver, dir: &Path) {
    let evs = events(0..300);
    let (store, s) = open_with(driver, &dir.join("log"), &evs);
    let snap = store.snapshot().unwrap();
    let (s2, _) = store.append(s, events(300..600), &NoKnownUids).unwrap();
    let (s3, out, _) = redact(&*store, s2, 5, 1000);
    assert_eq!(out, [Outcome::Redacted { record: 600 }]);
    assert_eq!(tree::root(300, &snap).unwrap(), s.root);
    assert!(snap.commitments(300, 1).is_err(), "no leaf 300");
    assert_eq!(snap.event(300).unwrap(), EventRow::Absent);
    assert_eq!(snap.uid_rows(0..1000).unwrap().len(), 300);
    assert_eq!(snap.redactions(0..1000).unwrap(), []);
    assert!(
        snap.tile(&tile(Some(0), 1, 256)).is_err(),
        "tile 1 completed after the snapshot"
    );
    let mem = tree_of(&evs);
    for t in [
        tile(Some(0), 1, 44),
        tile(None, 1, 44),
        tile(Some(0), 0, 256),
    ] {
        assert_eq!(snap.tile(&t).unwrap(), tile_of(&evs, &mem, &t), "tile {t}");
    }
    // The one thing that reaches back: erasure.
    assert_eq!(snap.event(5).unwrap(), EventRow::Redacted(600));
    assert_eq!(snap.facets(5).unwrap(), None);
    assert_eq!(snap.facets_in(0..300, |f| f).unwrap().len(), 299);
    assert_eq!(snap.event(6).unwrap(), EventRow::Present(present(&evs[6])));
    drop(snap);
    let now = store.snapshot().unwrap();
    assert_eq!(tree::root(s3.size, &now).unwrap(), s3.root);
    assert_eq!(now.redactions(0..1000).unwrap(), [(600, 5)]);
}

fn present(e: &Committed) -> StoredEvent {
    StoredEvent {
        salt: e.salt,
        jcs: e.jcs.clone(),
    }
}

/// A redaction erases the event (its row, facets and content claim) and
/// keeps the leaf: commitments, hashes and old roots stay; a second
/// redaction and one beyond the tree are refused; a re-post of its uid
/// answers "redacted" whatever the content; all of it after reopening.
pub fn redaction_erases_the_event_and_keeps_the_leaf(driver: &dyn Driver, dir: &Path) {
    let path = dir.join("log");
    let (store, s) = open_with(driver, &path, &events(0..6));
    let before = store.snapshot().unwrap().commitments(0, 6).unwrap();
    let (s2, out, _) = redact(&*store, s, 3, 100);
    assert_eq!(out, [Outcome::Redacted { record: 6 }]);
    assert_eq!(s2.size, 7);
    let (s3, out, _) = store
        .write(
            s2,
            vec![
                Write::Redact {
                    index: 3,
                    record: event(101),
                },
                Write::Redact {
                    index: 99,
                    record: event(102),
                },
            ],
            &NoKnownUids,
        )
        .unwrap();
    assert_eq!(
        out,
        [
            Outcome::Refused(Refusal::AlreadyRedacted {
                index: 3,
                record: 6
            }),
            Outcome::Refused(Refusal::NoSuchEvent(99))
        ]
    );
    assert_eq!(s3, s2, "refusals append nothing");
    let check = |store: &dyn LogStore| {
        assert_eq!(store.tree_state().unwrap(), s2);
        let snap = store.snapshot().unwrap();
        assert_eq!(snap.commitments(0, 6).unwrap(), before, "commitments stay");
        assert_eq!(tree::root(6, &snap).unwrap(), s.root, "the old root stays");
        assert_eq!(snap.event(3).unwrap(), EventRow::Redacted(6));
        assert_eq!(snap.facets(3).unwrap(), None);
        assert_eq!(snap.redactions(0..7).unwrap(), [(6, 3)]);
        let leaves: Vec<u64> = snap
            .facets_in(0..7, |_| ())
            .unwrap()
            .into_iter()
            .map(|f| f.0)
            .collect();
        assert_eq!(leaves, [0, 1, 2, 4, 5, 6], "all but 3's");
        let (_, claim, hash) = snap.uid_rows(3..4).unwrap()[0];
        assert_eq!((claim, hash), (Claim::Redacted, uid_hash("uid-3")));
        drop(snap);
        assert_eq!(store.verify_all(&mut |_, _| {}).unwrap(), s2);
    };
    check(&*store);
    drop(store);
    let store = driver.open(&path).unwrap();
    check(&*store);
    let known: HashMap<String, (u64, Claim)> = [("uid-3".to_string(), (3, Claim::Redacted))]
        .into_iter()
        .collect();
    let mut other = event(3);
    other.facets.content = [9; 32];
    for again in [event(3), other] {
        let (s4, out, _) = store
            .write(s2, vec![Write::Append(vec![again])], &known)
            .unwrap();
        assert_eq!(
            out,
            [Outcome::Refused(Refusal::UidRedacted {
                uid: "uid-3".into(),
                index: 3,
                record: 6
            })]
        );
        assert_eq!(s4, s2);
    }
}

/// An event whose uid the log holds is a retry (nothing appended, its
/// first index answered) when its content is the same, and refuses the
/// whole request when it is not; within one batch as across batches.
pub fn uids_tell_a_retry_from_a_reuse(driver: &dyn Driver, dir: &Path) {
    let store = driver.open(&dir.join("log")).unwrap();
    let s0 = store.tree_state().unwrap();
    let (s1, placed) = store
        .append(s0, vec![event(0), event(1), event(0)], &NoKnownUids)
        .unwrap();
    assert_eq!(
        placed,
        [Placed::New(0), Placed::New(1), Placed::Duplicate(0)]
    );
    // Uids of earlier batches come from the caller's lookup; the claim
    // the store keeps tells a retry from a reuse.
    let claim = |i: u64| store.snapshot().unwrap().uid_rows(i..i + 1).unwrap()[0].1;
    let known: HashMap<String, (u64, Claim)> = [
        ("uid-0".to_string(), (0, claim(0))),
        ("uid-1".to_string(), (1, claim(1))),
    ]
    .into_iter()
    .collect();
    let (s2, placed) = store.append(s1, vec![event(1), event(2)], &known).unwrap();
    assert_eq!(placed, [Placed::Duplicate(1), Placed::New(2)]);
    assert_eq!(s2.size, 3);
    let mut other = event(7);
    other.facets.uid = "uid-0".into();
    other.facets.content = [9; 32];
    let (s3, out, _) = store
        .write(s2, vec![Write::Append(vec![event(3), other])], &known)
        .unwrap();
    assert_eq!(
        out,
        [Outcome::Refused(Refusal::UidConflict {
            uid: "uid-0".into(),
            index: 0
        })]
    );
    assert_eq!(s3, s2, "nothing of the request appended");
    // Within one request: the same uid with other content.
    let mut twin = event(4);
    twin.facets.content = [8; 32];
    let (s4, out, _) = store
        .write(s2, vec![Write::Append(vec![event(4), twin])], &known)
        .unwrap();
    assert!(
        matches!(&out[0], Outcome::Refused(Refusal::UidConflict { uid, .. }) if uid == "uid-4"),
        "{out:?}"
    );
    assert_eq!(s4, s2);
    let rows = store.snapshot().unwrap().uid_rows(0..10).unwrap();
    let uids: Vec<[u8; 32]> = rows.iter().map(|r| r.2).collect();
    assert_eq!(
        uids,
        ["uid-0", "uid-1", "uid-2"].map(uid_hash),
        "in log order"
    );
}

/// A token record changes only with its audit event: created (a second
/// unrevoked one of the same name refused), revoked (an unknown name
/// refused), all of it after reopening.
pub fn tokens_change_with_their_audit_event(driver: &dyn Driver, dir: &Path) {
    let path = dir.join("log");
    let (store, s) = open_with(driver, &path, &events(0..2));
    let create = |name: &str, hash: u8, audit: usize| Write::CreateToken {
        hash: [hash; 32],
        record: format!(r#"{{"name":"{name}","scopes":["read"]}}"#).into_bytes(),
        name: name.into(),
        audit: event(audit),
    };
    let (s2, out, _) = store
        .write(
            s,
            vec![create("a", 1, 10), create("a", 2, 11), create("b", 3, 12)],
            &NoKnownUids,
        )
        .unwrap();
    assert_eq!(
        out,
        [
            Outcome::Token { audit: 2 },
            Outcome::Refused(Refusal::TokenExists("a".into())),
            Outcome::Token { audit: 3 },
        ]
    );
    assert_eq!(s2.size, 4);
    let (s3, out, _) = store
        .write(
            s2,
            vec![
                Write::RevokeToken {
                    name: "a".into(),
                    audit: event(13),
                },
                Write::RevokeToken {
                    name: "a".into(),
                    audit: event(14),
                },
            ],
            &NoKnownUids,
        )
        .unwrap();
    assert_eq!(
        out,
        [
            Outcome::Token { audit: 4 },
            Outcome::Refused(Refusal::NoSuchToken("a".into())),
        ]
    );
    drop(store);
    let store = driver.open(&path).unwrap();
    assert_eq!(store.tree_state().unwrap(), s3);
    let mut tokens: Vec<([u8; 32], serde_json::Value)> = store
        .tokens()
        .unwrap()
        .into_iter()
        .map(|(h, r)| (h, serde_json::from_slice(&r).unwrap()))
        .collect();
    tokens.sort_by_key(|t| t.0);
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[0].0, [1; 32]);
    assert_eq!(tokens[0].1["name"], "a");
    assert_eq!(tokens[0].1["revoked"], true);
    assert_eq!(tokens[1].0, [3; 32]);
    assert_eq!(tokens[1].1["revoked"], serde_json::Value::Null);
    // Revoked, the name is free again.
    let (_, out, _) = store
        .write(s3, vec![create("a", 4, 15)], &NoKnownUids)
        .unwrap();
    assert_eq!(out, [Outcome::Token { audit: 5 }]);
}

/// The read-only and fork-risk flags, the log's identity and its last
/// logged time are durable: they read back after reopening.
pub fn flags_and_identity_persist(driver: &dyn Driver, dir: &Path) {
    let path = dir.join("log");
    {
        let (store, s) = open_with(driver, &path, &events(0..3));
        assert_eq!(store.read_only().unwrap(), None);
        assert_eq!(store.fork_risk().unwrap(), None);
        store.bind_identity("example.org/log", "vkey-1").unwrap();
        store.bind_identity("example.org/log", "vkey-1").unwrap();
        let mut late = event(3);
        late.facets.logged_time = 1_700_000_000_123;
        let mut early = event(4);
        early.facets.logged_time = 1_600_000_000_000;
        store.append(s, vec![late, early], &NoKnownUids).unwrap();
        store.set_read_only("restored without evidence").unwrap();
        store.set_fork_risk("accepted by the operator").unwrap();
    }
    let store = driver.open(&path).unwrap();
    assert_eq!(
        store.read_only().unwrap().as_deref(),
        Some("restored without evidence")
    );
    assert_eq!(
        store.fork_risk().unwrap().as_deref(),
        Some("accepted by the operator")
    );
    assert_eq!(store.last_logged_time().unwrap(), 1_700_000_000_123);
    store.bind_identity("example.org/log", "vkey-1").unwrap();
    for (origin, vkey) in [("example.org/log", "vkey-2"), ("other.org/log", "vkey-1")] {
        let err = store.bind_identity(origin, vkey).unwrap_err();
        assert!(matches!(err, StoreError::Identity(_)), "{err}");
    }
}

/// A backup is the log as of one committed state, keys included (but
/// not those of redacted events), with the files put beside it; restored,
/// it reads back the same and checks clean. Neither writes over a file.
pub fn backup_and_restore_round_trip(driver: &dyn Driver, dir: &Path) {
    let evs = events(0..300);
    let (store, s) = open_with(driver, &dir.join("log"), &evs);
    let (s2, _, _) = redact(&*store, s, 7, 1000);
    let backup = dir.join("backup");
    assert_eq!(store.backup_to(&backup).unwrap(), s2);
    // Appended after: not in the backup.
    store.append(s2, events(301..310), &NoKnownUids).unwrap();
    assert!(store.backup_to(&backup).is_err(), "over an existing file");
    let files = [("log.vkey", "vkey\n".to_string()), ("log.key", "k".into())];
    driver.put_backup_files(&backup, &files).unwrap();
    let mut got = driver.backup_files(&backup).unwrap();
    got.sort();
    assert_eq!(
        got,
        [
            ("log.key".to_string(), "k".to_string()),
            ("log.vkey".into(), "vkey\n".into())
        ]
    );
    let restored = dir.join("restored");
    std::fs::create_dir(&restored).unwrap();
    driver.restore(&backup, &restored.join("log")).unwrap();
    assert!(
        driver.restore(&backup, &restored.join("log")).is_err(),
        "over an existing log"
    );
    let copy = driver.open(&restored.join("log")).unwrap();
    assert_eq!(copy.tree_state().unwrap(), s2);
    assert_eq!(copy.verify_all(&mut |_, _| {}).unwrap(), s2);
    let (a, b) = (store.snapshot().unwrap(), copy.snapshot().unwrap());
    assert_eq!(
        a.commitments(0, 301).unwrap(),
        b.commitments(0, 301).unwrap()
    );
    assert_eq!(a.uid_rows(0..301).unwrap(), b.uid_rows(0..301).unwrap());
    assert_eq!(b.redactions(0..400).unwrap(), [(300, 7)]);
    assert_eq!(b.event(7).unwrap(), EventRow::Redacted(300));
    for i in [0, 6, 8, 299] {
        assert_eq!(
            b.event(i).unwrap(),
            EventRow::Present(present(&evs[i as usize]))
        );
        assert_eq!(b.facets(i).unwrap(), Some(stored_facets(&evs[i as usize])));
    }
    assert_eq!(b.event(301).unwrap(), EventRow::Absent);
    assert_eq!(tree::root(300, &b).unwrap(), s.root);
    drop(b);
    // The restored log appends where the backup ends.
    let (s3, placed) = copy.append(s2, vec![event(2000)], &NoKnownUids).unwrap();
    assert_eq!((s3.size, placed), (302, vec![Placed::New(301)]));
}

/// A store has one writer: opening it while it is open fails with
/// `AlreadyOpen`, and succeeds once it is closed.
pub fn a_second_writer_is_refused(driver: &dyn Driver, dir: &Path) {
    let path = dir.join("log");
    let (store, s) = open_with(driver, &path, &events(0..3));
    match driver.open(&path) {
        Err(StoreError::AlreadyOpen(_)) => {}
        Err(e) => panic!("a second open failed otherwise: {e}"),
        Ok(_) => panic!("a second writer opened the store"),
    }
    assert_eq!(store.tree_state().unwrap(), s, "the first is unharmed");
    store.append(s, vec![event(3)], &NoKnownUids).unwrap();
    drop(store);
    let store = driver.open(&path).unwrap();
    assert_eq!(store.tree_state().unwrap().size, 4);
}

/// A witness's state reads back what was last set, after reopening.
pub fn witness_state_is_durable(driver: &dyn Driver, dir: &Path) {
    let path = dir.join("witness");
    {
        let w = driver.open_witness(&path).unwrap();
        assert_eq!(w.latest("example.org/log").unwrap(), None);
        w.set_latest("example.org/log", b"one").unwrap();
        w.set_latest("example.org/log", b"two").unwrap();
        w.set_latest("other.org/log", b"").unwrap();
    }
    let w = driver.open_witness(&path).unwrap();
    assert_eq!(
        w.latest("example.org/log").unwrap().as_deref(),
        Some(&b"two"[..])
    );
    assert_eq!(
        w.latest("other.org/log").unwrap().as_deref(),
        Some(&b""[..])
    );
    assert_eq!(w.latest("third.org/log").unwrap(), None);
}

/// The index keys of test leaf `i`: class 3002 or 3003, time 1000 + i,
/// user `user{i % 3}`, the IP of every fifth.
fn index_keys_of(i: u64) -> Keys {
    Keys {
        class_uid: 3002 + (i % 2) as u32,
        time: 1000 + i,
        users: vec![of_str(&format!("user{}", i % 3))],
        actors: vec![],
        ip: i.is_multiple_of(5).then(|| of_str("10.0.0.1")),
    }
}

/// The leaves `view` lists under `key`.
fn scanned(
    view: &dyn IndexView,
    key: IndexKey,
    newest_first: bool,
    after: Option<(u64, u64)>,
) -> Vec<(u64, u64)> {
    (view.scan(&key, newest_first, after).unwrap())
        .map(|r| r.unwrap())
        .collect()
}

fn leaves(items: Vec<(u64, u64)>) -> Vec<u64> {
    items.into_iter().map(|i| i.1).collect()
}

/// The lookup index: a round commits whole (dropped unfinished, nothing
/// of it stays), a view is one committed state, scans list the leaves of
/// a key in order either way from a cursor, a removed event leaves the
/// scans (its leaf hash and uid rows stay), and the progress survives
/// reopening.
pub fn index_rounds_commit_whole_and_views_hold_still(driver: &dyn Driver, dir: &Path) {
    let path = dir.join("index");
    let index = driver.create_index(&path).unwrap();
    assert_eq!(index.progress().unwrap(), (0, None));
    {
        let mut round = index.begin_round(true).unwrap();
        round.add_leaves(vec![(100, 0)]).unwrap();
        round.add_uids(vec![(200, 0)]).unwrap();
        round.add_events(&[(0, index_keys_of(0))]).unwrap();
        // Dropped unfinished.
    }
    assert_eq!(index.progress().unwrap(), (0, None));
    let empty = index.view().unwrap();
    assert_eq!(empty.indexed().unwrap(), 0);
    assert!(empty.leaf_candidates(100).unwrap().is_empty());
    assert_eq!(scanned(&*empty, IndexKey::All, false, None), []);
    drop(empty);

    let round_of = |range: std::ops::Range<u64>, remove: &[u64], root: u8, durable: bool| {
        let mut round = index.begin_round(durable).unwrap();
        round
            .add_leaves(range.clone().map(|i| (100 + i % 4, i)).collect())
            .unwrap();
        round
            .add_uids(range.clone().map(|i| (200 + i, i)).collect())
            .unwrap();
        let keys: Vec<(u64, Keys)> = range.clone().map(|i| (i, index_keys_of(i))).collect();
        round.add_events(&keys).unwrap();
        for &leaf in remove {
            round.remove_event(leaf).unwrap();
        }
        round.finish(range.end, Hash([root; 32])).unwrap();
    };
    round_of(0..10, &[], 1, true);
    let old = index.view().unwrap();
    round_of(10..20, &[4], 2, false);
    round_of(20..20, &[], 3, true);
    assert_eq!(index.progress().unwrap(), (20, Some(vec![3; 32])));

    // The view from before holds still.
    assert_eq!(old.indexed().unwrap(), 10);
    let user1 = || IndexKey::User("user1".into());
    assert_eq!(leaves(scanned(&*old, user1(), false, None)), [1, 4, 7]);
    assert!(old.uid_candidates(210).unwrap().is_empty());
    drop(old);

    let view = index.view().unwrap();
    assert_eq!(view.indexed().unwrap(), 20);
    let asc = leaves(scanned(&*view, user1(), false, None));
    assert_eq!(asc, [1, 7, 10, 13, 16, 19], "4 removed");
    let desc = leaves(scanned(&*view, user1(), true, None));
    assert_eq!(desc, [19, 16, 13, 10, 7, 1]);
    let after = |a| Some((0, a));
    assert_eq!(
        leaves(scanned(&*view, user1(), false, after(7))),
        [10, 13, 16, 19]
    );
    assert_eq!(
        leaves(scanned(&*view, user1(), true, after(13))),
        [10, 7, 1]
    );
    let odd: Vec<u64> = (0..20).filter(|i| i % 2 == 1).collect();
    assert_eq!(
        leaves(scanned(&*view, IndexKey::Class(3003), false, None)),
        odd
    );
    let ip = IndexKey::Ip("10.0.0.1".into());
    assert_eq!(leaves(scanned(&*view, ip, false, None)), [0, 5, 10, 15]);
    let time = IndexKey::Time {
        from: 1003,
        to: 1006,
    };
    assert_eq!(
        scanned(&*view, time.clone(), false, None),
        [(1003, 3), (1005, 5), (1006, 6)],
        "4 removed"
    );
    assert_eq!(
        scanned(&*view, time, true, Some((1006, 6))),
        [(1005, 5), (1003, 3)]
    );
    let all: Vec<u64> = (0..20).filter(|&i| i != 4).collect();
    assert_eq!(leaves(scanned(&*view, IndexKey::All, false, None)), all);
    assert_eq!(
        leaves(scanned(&*view, IndexKey::All, true, after(3))),
        [2, 1, 0]
    );
    assert_eq!(view.leaf_candidates(100).unwrap(), [0, 4, 8, 12, 16]);
    assert_eq!(view.uid_candidates(204).unwrap(), [4], "the uid row stays");
    let mut uids = Vec::new();
    view.each_uid_key(&mut |k| uids.push(k)).unwrap();
    uids.sort_unstable();
    assert_eq!(uids, (200..220).collect::<Vec<u64>>());
    drop(view);

    index.reopen().unwrap();
    assert_eq!(index.progress().unwrap(), (20, Some(vec![3; 32])));
    drop(index);
    let index = driver
        .open_index(&path)
        .unwrap()
        .expect("an index of this layout");
    assert_eq!(index.progress().unwrap(), (20, Some(vec![3; 32])));
}
