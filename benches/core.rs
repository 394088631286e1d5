//! Criterion benches for the hot functions: leaf/node hashing, event
//! preparation (OCSF validation + JCS + commitment), proof generation at
//! 10^6 (real hashes in memory) and 10^8 (synthetic hashes), checkpoint
//! signing, event compression, and batch integration (a 100-event durable
//! append).
//!
//!   cargo bench --bench core

// The load generator's events; only `write_event` is used here.
#[allow(dead_code)]
#[path = "events.rs"]
mod events;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use sealog::events::{self as event, Committed};
use sealog::store::LogStore;
use sealog_verify::note::{self, LogSigner};
use sealog_verify::tree::{self, MemoryHashes};

fn sample_event() -> serde_json::Value {
    serde_json::json!({
        "class_uid": 3002, "activity_id": 1, "time": 1763800000000u64, "severity_id": 1, "status_id": 1,
        "dst_endpoint": {"hostname": "sso.example.com"},
        "user": {"uid": "u-000042", "name": "alice@example.com"},
        "src_endpoint": {"ip": "10.1.2.3", "hostname": "laptop-17.corp.example.com"},
        "http_request": {"user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0"},
        "auth_factors": [{"factor_type_id": 3}],
        "metadata": {"version": "1.8.0", "product": {"name": "Example IdP"}, "uid": "evt-000000000042"}
    })
}

fn hashing(c: &mut Criterion) {
    let commitment = [7u8; 32];
    c.bench_function("leaf_hash", |b| {
        b.iter(|| tree::leaf_hash(black_box(&commitment)))
    });
    let (l, r) = (tree::leaf_hash(b"l"), tree::leaf_hash(b"r"));
    c.bench_function("node_hash", |b| {
        b.iter(|| tree::node_hash(black_box(l), black_box(r)))
    });
    let ev = sample_event();
    c.bench_function("prepare (OCSF validation + JCS + salt + SHA-256)", |b| {
        b.iter(|| {
            event::prepare(black_box(ev.clone()), 1, event::Appender::Token("bench")).unwrap()
        })
    });
    let jcs = sealog_verify::commitment::canonical(&ev).unwrap();
    c.bench_function("commitment (salt + SHA-256 of the JCS bytes)", |b| {
        b.iter(|| Committed::new(black_box(jcs.clone()), Default::default()))
    });
}

fn proofs(c: &mut Criterion) {
    const N: u64 = 1_000_000;
    let mut t = MemoryHashes::default();
    for i in 0..N {
        t.append(tree::leaf_hash(&i.to_be_bytes()));
    }
    let mut i = 0u64;
    c.bench_function("inclusion proof at 10^6", |b| {
        b.iter(|| {
            i = (i + 7919) % N;
            tree::prove_inclusion(N, i, &t).unwrap()
        })
    });
    let mut m = 1u64;
    c.bench_function("consistency proof at 10^6", |b| {
        b.iter(|| {
            m = m % (N - 1) + 7919;
            tree::prove_consistency(m.min(N), N, &t).unwrap()
        })
    });
    // A 100-event request's receipts: its leaves are the tree's last.
    let batch: Vec<u64> = (N - 100..N).collect();
    c.bench_function("100 receipts' proofs at 10^6, one by one", |b| {
        b.iter(|| {
            (batch.iter())
                .map(|&m| tree::prove_inclusion(N, m, &t).unwrap())
                .collect::<Vec<_>>()
        })
    });
    c.bench_function("100 receipts' proofs at 10^6, sharing subtrees", |b| {
        b.iter(|| tree::prove_inclusions(N, &batch, &t).unwrap())
    });
    let root = tree::root(N, &t).unwrap();
    let proof = tree::prove_inclusion(N, 123_456, &t).unwrap();
    let leaf = tree::leaf_hash(&123_456u64.to_be_bytes());
    c.bench_function("inclusion check at 10^6", |b| {
        b.iter(|| tree::check_inclusion(&proof, N, root, 123_456, leaf).unwrap())
    });
}

/// A hash store of any size whose hashes are made up from their index:
/// proof generation reads the same indexes at 10^8 as with real hashes.
struct Synthetic;

impl tree::HashReader for Synthetic {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tree::Hash>, tree::Error> {
        Ok(indexes
            .iter()
            .map(|i| tree::leaf_hash(&i.to_be_bytes()))
            .collect())
    }
}

fn proofs_at_1e8(c: &mut Criterion) {
    const N: u64 = 100_000_000;
    let mut i = 0u64;
    c.bench_function("inclusion proof at 10^8 (synthetic hashes)", |b| {
        b.iter(|| {
            i = (i + 7_919_993) % N;
            tree::prove_inclusion(N, i, &Synthetic).unwrap()
        })
    });
    c.bench_function("consistency proof at 10^8 (synthetic hashes)", |b| {
        b.iter(|| {
            i = (i + 7_919_993) % N;
            tree::prove_consistency(i.max(1), N, &Synthetic).unwrap()
        })
    });
}

fn signing(c: &mut Criterion) {
    let (skey, vkey) = note::generate_key("bench.example/log").unwrap();
    let signer = LogSigner::new(&skey).unwrap();
    let root = tree::leaf_hash(b"root");
    c.bench_function("checkpoint sign", |b| {
        b.iter(|| signer.sign(black_box(1_000_000), root))
    });
    let cp = signer.sign(1_000_000, root);
    c.bench_function("checkpoint verify", |b| {
        b.iter(|| note::verify_checkpoint(cp.as_bytes(), &vkey).unwrap())
    });
}

/// One event's stored form: zstd with a dictionary trained, as the log
/// trains it, on its first 4,096 events (the load generator's).
fn compression(c: &mut Criterion) {
    use sealog::store::redb::event_codec::{self, Dictionary, Samples};
    let jcs: Vec<Vec<u8>> = (0..event_codec::TRAIN_AT)
        .map(|n| {
            let mut body = Vec::new();
            events::write_event(&mut body, 1, n);
            event::prepare(
                serde_json::from_slice(&body).unwrap(),
                1,
                event::Appender::Token("bench"),
            )
            .unwrap()
            .jcs
        })
        .collect();
    let mut samples = Samples::default();
    for e in &jcs {
        samples.add(e);
    }
    let dict = Dictionary::new(&samples.train().unwrap());
    let (salt, mut out) = ([7u8; sealog_verify::commitment::SALT_LEN], Vec::new());
    let (mut raw, mut stored) = (0, 0);
    for e in &jcs {
        event_codec::encode(&salt, e, Some(&dict), &mut out);
        (raw, stored) = (raw + e.len(), stored + out.len());
    }
    eprintln!(
        "stored form: {} of {} canonical bytes per event",
        stored / jcs.len(),
        raw / jcs.len()
    );
    let mut i = 0;
    c.bench_function("event encode (zstd with the log's dictionary)", |b| {
        b.iter(|| {
            i = (i + 1) % jcs.len();
            event_codec::encode(&salt, black_box(&jcs[i]), Some(&dict), &mut out)
        })
    });
}

fn batch_append(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = sealog::store::engine::open(&dir.path().join("db")).unwrap();
    let mut state = store.tree_state().unwrap();
    let mut g = c.benchmark_group("store");
    g.sample_size(30);
    g.bench_function("append 100 events, durable", |b| {
        b.iter_batched(
            || {
                (0..100)
                    .map(|_| {
                        event::prepare(sample_event(), 1, event::Appender::Token("bench")).unwrap()
                    })
                    .collect::<Vec<_>>()
            },
            |evs| {
                state = store
                    .append(state, evs, &sealog::store::NoKnownUids)
                    .unwrap()
                    .0
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(
    benches,
    hashing,
    proofs,
    proofs_at_1e8,
    signing,
    compression,
    batch_append
);
criterion_main!(benches);
