//! What an index round costs as its table grows, in one B-tree or split in
//! two (a small table the rounds insert into, merged into the large one
//! once it holds a quarter as many rows): the measurement behind keeping
//! the index's scattered tables whole (BENCHMARKS.md, "Index round cost"
//! and "Index rounds: every 10 s, up to 524,288 leaves, one table per
//! key").
//!
//!   cargo bench --bench roundcost -- [whole|split] [rows]
//!
//! Inserts `rows` (default 4M) random (u64, u64) keys in rounds of
//! 131,072, each sorted and committed durably with quick repair, as the
//! index follower does, and prints every fourth round's cost per row and
//! every merge's.

use std::time::Instant;

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

const MAIN: TableDefinition<(u64, u64), ()> = TableDefinition::new("main");
const RECENT: TableDefinition<(u64, u64), ()> = TableDefinition::new("recent");
const ROUND: u64 = 131_072;

/// xorshift64: scattered keys, the same in every run.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let split = args.get(1).is_some_and(|m| m == "split");
    let total: u64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(4_000_000);
    let dir = tempfile::tempdir().unwrap();
    let db = Database::builder()
        .set_cache_size(128 << 20)
        .create(dir.path().join("db"))
        .unwrap();
    let mut x = 88_172_645_463_325_252u64;
    let started = Instant::now();
    for n in (ROUND..=total).step_by(ROUND as usize) {
        let mut rows: Vec<(u64, u64)> = (n - ROUND..n).map(|i| (next(&mut x), i)).collect();
        rows.sort_unstable();
        let mut tx = db.begin_write().unwrap();
        tx.set_quick_repair(true);
        let t0 = Instant::now();
        {
            let mut t = tx.open_table(if split { RECENT } else { MAIN }).unwrap();
            for r in &rows {
                t.insert(*r, ()).unwrap();
            }
        }
        let mut merged = String::new();
        if split {
            let recent = tx.open_table(RECENT).unwrap().len().unwrap();
            let main = tx.open_table(MAIN).unwrap().len().unwrap();
            if recent >= (1u64 << 19).max(main / 4) {
                let m0 = Instant::now();
                {
                    let from = tx.open_table(RECENT).unwrap();
                    let mut to = tx.open_table(MAIN).unwrap();
                    for row in from.iter().unwrap() {
                        to.insert(row.unwrap().0.value(), ()).unwrap();
                    }
                }
                tx.delete_table(RECENT).unwrap();
                let d = m0.elapsed().as_secs_f64();
                merged = format!(
                    ", merged {recent} rows: {:.2} µs/row",
                    d * 1e6 / recent as f64
                );
            }
        }
        tx.commit().unwrap();
        let d = t0.elapsed().as_secs_f64();
        if (n / ROUND).is_multiple_of(4) || !merged.is_empty() {
            println!(
                "rows={n}: round {:.0} ms, {:.2} µs/row{merged}",
                d * 1e3,
                d * 1e6 / ROUND as f64
            );
        }
    }
    println!("total {:.1} s", started.elapsed().as_secs_f64());
}
