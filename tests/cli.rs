//! The command line: keygen for operators who manage keys, and the
//! refusals that protect a log's identity.

mod common;

use common::sealog;

#[test]
fn keygen_makes_a_key_that_serve_uses_and_identity_mismatches_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    let out = sealog(&["keygen", "--origin", "audit.example.com/prod", "--out", d]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vkey = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(vkey.starts_with("audit.example.com/prod+"));
    assert_eq!(
        std::fs::read_to_string(dir.join("log.vkey"))
            .unwrap()
            .trim(),
        vkey
    );
    // keygen never overwrites a key.
    assert!(!sealog(&["keygen", "--origin", "x.example/y", "--out", d])
        .status
        .success());
    // A key name with a space is refused.
    let bad = tmp.path().join("bad");
    assert!(!sealog(&[
        "keygen",
        "--origin",
        "has space",
        "--out",
        bad.to_str().unwrap()
    ])
    .status
    .success());

    // serve refuses an --origin that is not the key's name.
    let out = sealog(&[
        "serve",
        "--data",
        d,
        "--listen",
        "127.0.0.1:0",
        "--origin",
        "other.example/log",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("differs from the key's name"));

    // A database without its key is refused rather than given a new identity.
    let fresh = tmp.path().join("fresh");
    // (Private, as serve demands of a data directory and its database.)
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(&fresh)
        .unwrap();
    std::os::unix::fs::OpenOptionsExt::mode(
        std::fs::OpenOptions::new().write(true).create_new(true),
        0o600,
    )
    .open(fresh.join("sealog.redb"))
    .unwrap();
    let out = sealog(&[
        "serve",
        "--data",
        fresh.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("restore the key"));
}

#[test]
fn a_store_created_with_one_key_refuses_another() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    assert!(sealog(&[
        "keygen",
        "--origin",
        "same.example/log",
        "--out",
        a.to_str().unwrap()
    ])
    .status
    .success());
    assert!(sealog(&[
        "keygen",
        "--origin",
        "same.example/log",
        "--out",
        b.to_str().unwrap()
    ])
    .status
    .success());
    // Make a's store, then swap in b's key of the same name.
    let store = sealog::store::Store::open(&a.join("sealog.redb")).unwrap();
    let vkey_a = std::fs::read_to_string(a.join("log.vkey")).unwrap();
    store
        .bind_identity("same.example/log", vkey_a.trim())
        .unwrap();
    drop(store);
    // redb made the file with the umask's mode; serve wants it private.
    std::fs::set_permissions(
        a.join("sealog.redb"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::fs::remove_file(a.join("log.key")).unwrap();
    std::fs::copy(b.join("log.key"), a.join("log.key")).unwrap();
    let out = sealog(&[
        "serve",
        "--data",
        a.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another log"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
