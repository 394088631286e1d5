//! Interop with Go's reference code: tests/interop/checker.go, built on
//! golang.org/x/mod/sumdb/tlog and sumdb/note, checks a running log's
//! checkpoint, entry bundles, every hash tile and sampled proofs.
//!
//! Needs `go` and Debian's golang-golang-x-mod-dev. build.rs looks for
//! them: where they are missing the test is compiled `#[ignore]`d, so
//! `cargo test` lists it as ignored (never as passed). In CI (CI set) or
//! with SEALOG_REQUIRE_GO set it is never ignored, and a missing Go fails
//! it. After installing Go, the next build looks again (build.rs watches
//! dpkg's status file).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{auth_event, Server};
use serde_json::json;

const GOPATH: &str = "/usr/share/gocode";

fn go_available() -> bool {
    let go = Command::new("go")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    go && Path::new(GOPATH)
        .join("src/golang.org/x/mod/sumdb/tlog")
        .is_dir()
}

fn build_checker() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let out = target.join("interop-checker");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/checker.go");
    let status = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(&src)
        .env("GO111MODULE", "off")
        .env("GOPATH", GOPATH)
        .env("GOCACHE", target.join("go-cache"))
        .env("GOFLAGS", "")
        .status()
        .expect("run go build");
    assert!(status.success(), "go build of the interop checker failed");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(have_go),
    ignore = "needs Go: apt-get install golang-go golang-golang-x-mod-dev"
)]
async fn go_reference_code_verifies_checkpoint_tiles_and_proofs() {
    assert!(
        go_available(),
        "Go or golang.org/x/mod is missing: apt-get install golang-go golang-golang-x-mod-dev"
    );
    let checker = build_checker();
    let s = Server::start(&[]);
    let c = Server::client();

    // A few thousand entries in uneven batches, crossing many level-0 tile
    // boundaries and leaving partial tiles at levels 0 and 1.
    let mut n = 0;
    let mut k = 0;
    while n < 3_100 {
        let len = [1, 7, 255, 256, 3, 300, 64][k % 7];
        let batch: Vec<_> = (0..len)
            .map(|i| auth_event((n + i) as u64, json!(n + i)))
            .collect();
        s.append(&c, json!(batch)).await;
        n += len;
        k += 1;
    }
    let out = Command::new(&checker)
        .arg(&s.url)
        .arg(&s.vkey)
        .output()
        .expect("run the checker");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}{stderr}");
    assert!(out.status.success(), "Go checker failed:\n{stdout}{stderr}");
    assert!(stdout.contains(&format!("size={} ", n + 1)), "{stdout}");

    // The checker must also fail when the log lies: give it another key.
    let other = tempfile::tempdir().unwrap();
    let vkey = sealog::server::keygen(
        &sealog::sys::datadir::DataDir(other.path().join("k")),
        "localhost/sealog",
    )
    .unwrap();
    let out = Command::new(&checker)
        .arg(&s.url)
        .arg(&vkey)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a checkpoint verified under a stranger's key"
    );
}
