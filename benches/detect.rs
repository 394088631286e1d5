//! What the detection rules cost per event in a credential-attack burst:
//! tens of thousands of failed logons from one source IP, over a handful
//! of users (the window of that IP never empties) and over thousands
//! (each user new), and what `risk` costs beside them.
//!
//!   cargo bench --bench detect
//!
//! Each iteration feeds a fresh engine the whole burst; criterion reports
//! the time per burst (divide by the burst's size for the time per event).

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use sealog::detect::engine::{Engine, Rules};
use sealog::events::signals::Signals;

/// The burst's size.
const BURST: u64 = 20_000;

/// A failed logon of `user` from one IP at `time`, as the rules read it.
fn failure(user: u64, time: u64) -> Signals {
    let json = format!(
        r#"{{"class_uid":3002,"activity_id":1,"status_id":2,"time":{time},"user":{{"uid":"u-{user}"}},"src_endpoint":{{"ip":"203.0.113.9"}}}}"#
    );
    Signals::parse(json.as_bytes()).expect("signals")
}

fn burst(users: u64) -> Vec<Signals> {
    let t0 = 1_763_800_000_000;
    (0..BURST).map(|i| failure(i % users, t0 + i)).collect()
}

fn feed(events: &[Signals]) -> usize {
    let mut e = Engine::new(Rules::default());
    let mut fired = 0;
    for (i, s) in events.iter().enumerate() {
        fired += e.observe_signals(i as u64, s).len();
    }
    fired
}

fn bursts(c: &mut Criterion) {
    let mut g = c.benchmark_group("burst_from_one_ip");
    g.sample_size(10);
    for users in [4, 1_000, BURST] {
        let events = burst(users);
        g.bench_function(format!("{BURST}_failures_over_{users}_users"), |b| {
            b.iter(|| black_box(feed(&events)))
        });
    }
    g.finish();
}

fn risk(c: &mut Criterion) {
    // After a burst over every user: one user's risk.
    let events = burst(BURST);
    c.bench_function("risk_after_burst", |b| {
        b.iter_batched_ref(
            || {
                let mut e = Engine::new(Rules::default());
                for (i, s) in events.iter().enumerate() {
                    e.observe_signals(i as u64, s);
                }
                e
            },
            |e| black_box(e.risk("u-7")),
            BatchSize::LargeInput,
        )
    });
}

criterion_group!(benches, bursts, risk);
criterion_main!(benches);
