//! The bodies of the fuzz targets, shared by the cargo-fuzz binaries and
//! by tests/fuzz_corpus.rs, which replays the kept corpus on every test
//! run. Each must never panic, and checks an invariant where it has one.

/// Signed notes and checkpoints: a parsed checkpoint re-renders to its
/// own text.
pub fn note(data: &[u8]) {
    if let Ok(n) = signed_note::Note::from_bytes(data) {
        if let Ok(c) = sealog_verify::note::Checkpoint::parse(n.text()) {
            assert_eq!(c.body().as_bytes(), n.text());
        }
    }
    let _ = sealog_verify::note::Checkpoint::parse(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sealog_verify::receipt::Receipt::from_tlog_proof(text);
        let _ = sealog_verify::policy::Policy::parse(text);
    }
}

/// Tile paths: the only accepted encoding is the canonical one.
pub fn tile_path(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(t) = sealog_verify::tiles::TileRef::parse(s) {
            assert_eq!(t.to_string(), format!("tile/{s}"));
            let _ = t.exists_in(u64::MAX);
        }
    }
}

/// add-checkpoint bodies.
pub fn add_checkpoint(data: &[u8]) {
    if let Ok(r) = sealog::witness::server::AddRequest::parse(data) {
        assert!(r.proof.len() <= sealog::witness::server::MAX_PROOF_LINES);
    }
}

/// Event validation: an accepted event's canonical form is canonical.
pub fn event(data: &[u8]) {
    if let Ok(v) = sealog::events::json::parse(data) {
        if let Ok(c) = sealog::events::prepare(v, 1, sealog::events::Appender::Token("test")) {
            let again = sealog::events::json::parse(&c.jcs).expect("canonical JSON parses");
            assert_eq!(
                sealog_verify::commitment::canonical(&again).expect("still valid"),
                c.jcs
            );
        }
    }
}

/// JCS: canonicalizing is idempotent, and the log's one-pass writer
/// agrees byte for byte with `serde_json_canonicalizer`, the oracle.
pub fn jcs(data: &[u8]) {
    if let Ok(v) = sealog::events::json::parse(data) {
        if let Ok(once) = sealog_verify::commitment::canonical(&v) {
            assert_eq!(serde_json_canonicalizer::to_vec(&v).unwrap(), once);
            let v2 = sealog::events::json::parse(&once).expect("canonical JSON parses");
            assert_eq!(sealog_verify::commitment::canonical(&v2).unwrap(), once);
        }
    }
}
