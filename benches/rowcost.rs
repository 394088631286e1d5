//! What a redb row costs by the shape of its key: the measurement behind
//! the split of the log's database (spec/storage.md).
//!
//!   cargo bench --bench rowcost -- [batch] [events]
//!
//! Appends `events` synthetic events in transactions of `batch`, each
//! event writing rows shaped like the log's, and reports, per event, the
//! time spent inserting into each table and committing; then the same
//! with only the rows keyed by leaf index (what the append transaction
//! writes), and with only the rows keyed by scattered values (what the
//! index follower writes).

use std::time::{Duration, Instant};

use redb::{Database, TableDefinition};
use sha2::Digest;

type U64Table = TableDefinition<'static, u64, &'static [u8]>;
const HASHES: U64Table = TableDefinition::new("hashes");
const ENTRIES: U64Table = TableDefinition::new("entries");
const EVENTS: U64Table = TableDefinition::new("events");
const FACETS: U64Table = TableDefinition::new("facets");
const UID_LOG: U64Table = TableDefinition::new("uid_log");
const LEAVES: TableDefinition<[u8; 32], u64> = TableDefinition::new("leaves");
const UIDS: TableDefinition<&str, &[u8]> = TableDefinition::new("uids");
const BY_USER: TableDefinition<(&str, u64), ()> = TableDefinition::new("by_user");
const BY_IP: TableDefinition<(&str, u64), ()> = TableDefinition::new("by_ip");

const SEQUENTIAL: &[&str] = &["hashes", "entries", "events", "facets", "uid_log"];
const SCATTERED: &[&str] = &["leaves", "uids", "by_user", "by_ip"];

fn h(x: u64, salt: u8) -> [u8; 32] {
    sha2::Sha256::new()
        .chain_update([salt])
        .chain_update(x.to_be_bytes())
        .finalize()
        .into()
}

/// Per-event microseconds by table, and the commit.
fn run(batch: u64, total: u64, tables: &[&str]) -> Vec<(&'static str, f64)> {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path().join("db")).unwrap();
    let names = [
        "hashes", "entries", "events", "facets", "uid_log", "leaves", "uids", "by_user", "by_ip",
        "commit",
    ];
    let mut spent = [Duration::ZERO; 10];
    let (event, facets) = (vec![7u8; 690], vec![1u8; 120]);
    let mut n = 0;
    while n < total {
        let tx = db.begin_write().unwrap();
        {
            let mut t: Vec<_> = [HASHES, ENTRIES, EVENTS, FACETS, UID_LOG]
                .iter()
                .map(|d| tx.open_table(*d).unwrap())
                .collect();
            let mut leaves = tx.open_table(LEAVES).unwrap();
            let mut uids = tx.open_table(UIDS).unwrap();
            let mut by_user = tx.open_table(BY_USER).unwrap();
            let mut by_ip = tx.open_table(BY_IP).unwrap();
            for (k, name) in names[..9].iter().enumerate() {
                if !tables.contains(name) {
                    continue;
                }
                let start = Instant::now();
                for i in n..n + batch {
                    match k {
                        0 => {
                            t[0].insert(2 * i, &h(i, 0)[..]).unwrap();
                            t[0].insert(2 * i + 1, &h(i, 1)[..]).unwrap();
                        }
                        1 => drop(t[1].insert(i, &h(i, 2)[..]).unwrap()),
                        2 => drop(t[2].insert(i, event.as_slice()).unwrap()),
                        3 => drop(t[3].insert(i, facets.as_slice()).unwrap()),
                        4 => drop(t[4].insert(i, &h(i, 4)[..]).unwrap()),
                        5 => drop(leaves.insert(h(i, 3), i).unwrap()),
                        6 => {
                            let uid: String =
                                h(i, 5)[..16].iter().map(|b| format!("{b:02x}")).collect();
                            uids.insert(uid.as_str(), &h(i, 6)[..]).unwrap();
                        }
                        7 => {
                            let (u, name) = (
                                format!("u-{:06}", i % 5000),
                                format!("user{}@example.com", i % 5000),
                            );
                            by_user.insert((u.as_str(), i), ()).unwrap();
                            by_user.insert((name.as_str(), i), ()).unwrap();
                        }
                        _ => {
                            let ip = format!("10.{}.{}.{}", i % 7, i % 251, i % 253);
                            by_ip.insert((ip.as_str(), i), ()).unwrap();
                        }
                    }
                }
                spent[k] += start.elapsed();
            }
        }
        let start = Instant::now();
        tx.commit().unwrap();
        spent[9] += start.elapsed();
        n += batch;
    }
    names
        .iter()
        .zip(spent)
        .filter(|(name, _)| tables.contains(name) || **name == "commit")
        .map(|(name, d)| (*name, d.as_secs_f64() * 1e6 / total as f64))
        .collect()
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let batch = args.first().copied().unwrap_or(200);
    let total = args.get(1).copied().unwrap_or(200_000);
    let all: Vec<&str> = SEQUENTIAL.iter().chain(SCATTERED).copied().collect();
    for (label, tables) in [
        ("every row in one transaction", all.as_slice()),
        (
            "rows keyed by leaf index only (the append transaction)",
            SEQUENTIAL,
        ),
        (
            "rows with scattered keys only (the index follower)",
            SCATTERED,
        ),
    ] {
        let costs = run(batch, total, tables);
        let sum: f64 = costs.iter().map(|c| c.1).sum();
        println!("{label}: {batch}-event transactions, {total} events: {sum:.1} µs/event");
        for (name, us) in costs {
            println!("  {name:<8} {us:6.2} µs/event");
        }
    }
}
