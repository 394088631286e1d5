//! What an inclusion proof costs on the store's side alone, without HTTP:
//! the measurement behind the hash cache's layout (BENCHMARKS.md, "Proof
//! cost in the store"). Opens the log of a data directory (use a copy: opening may write),
//! then proves leaves at random past sizes, as the load generator's
//! `inclusion` scenario asks, on one thread with a snapshot per proof as
//! the route takes, and prints the cost per proof of each round.
//!
//!   cargo bench --bench proofcost -- DATA [proofs per round] [rounds]

use std::time::Instant;

use sealog::{store::engine, sys::datadir::DataDir};
use sealog_verify::tree;

/// xorshift64: the same draws in every run.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let usage = |why: &str| -> ! {
        eprintln!("proofcost: {why}\nusage: proofcost DATA [proofs per round] [rounds]");
        std::process::exit(2);
    };
    let Some(data) = args.first() else {
        usage("no data directory")
    };
    let count = |at: usize, default: u64| match args.get(at) {
        None => default,
        Some(s) => s
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| usage(&format!("{s:?} is not a positive count"))),
    };
    let (per_round, rounds) = (count(1, 200_000), count(2, 5));
    let store = engine::open(&DataDir(data.into()).db()).expect("open the log");
    let n = store.tree_state().expect("tree state").size;
    if n == 0 {
        usage("the log is empty: nothing to prove");
    }
    println!("tree size {n}");
    let mut rng = 0x2545_F491_4F6C_DD1D_u64;
    for round in 1..=rounds {
        let t0 = Instant::now();
        let mut hashes = 0;
        for _ in 0..per_round {
            next(&mut rng);
            let size = 1 + rng % n;
            let index = (rng >> 20) % size;
            let snap = store.snapshot().expect("snapshot");
            hashes += tree::prove_inclusion(size, index, &snap)
                .expect("proof")
                .len();
        }
        let ns = t0.elapsed().as_nanos() as f64 / per_round as f64;
        println!(
            "round {round}: {ns:.0} ns a proof ({:.1} hashes each)",
            hashes as f64 / per_round as f64
        );
    }
}
