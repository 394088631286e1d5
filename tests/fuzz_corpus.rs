//! Replays the kept fuzz corpus (tests/fuzz/corpus/<target>/*) through
//! the same target bodies cargo-fuzz runs (tests/fuzz/targets.rs), so every
//! input the fuzzers found interesting is checked on every test run.

#[path = "fuzz/targets.rs"]
mod targets;

fn replay(target: &str, f: fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        f(&std::fs::read(&p).unwrap());
        n += 1;
    }
    assert!(n > 0, "no corpus for {target}");
    eprintln!("{target}: {n} inputs");
}

#[test]
fn note_corpus() {
    replay("note", targets::note);
}

#[test]
fn tile_path_corpus() {
    replay("tile_path", targets::tile_path);
}

#[test]
fn add_checkpoint_corpus() {
    replay("add_checkpoint", targets::add_checkpoint);
}

#[test]
fn event_corpus() {
    replay("event", targets::event);
}

#[test]
fn jcs_corpus() {
    replay("jcs", targets::jcs);
}
