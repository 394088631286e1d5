//! The command line: keygen for operators who manage keys, the refusals
//! that protect a log's identity, and `serve`'s config file.

mod common;

use std::path::Path;

use common::{free_port, refused_in, sealog, spawn_serving_in, Kill, Server};
use serde_json::{json, Value};

/// `sealog ARGS`, which must refuse (exit non-zero) rather than serve.
fn refused(args: &[&str]) -> String {
    refused_in(Path::new("."), args)
}

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
    let err = refused(&[
        "serve",
        "--data",
        d,
        "--listen",
        "127.0.0.1:0",
        "--origin",
        "other.example/log",
    ]);
    assert!(err.contains("differs from the key's name"), "{err}");

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
    let err = refused(&[
        "serve",
        "--data",
        fresh.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(err.contains("restore the key"), "{err}");
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
    let store = sealog::store::engine::open(&a.join("sealog.redb")).unwrap();
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
    let err = refused(&[
        "serve",
        "--data",
        a.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(err.contains("another log"), "{err}");
}

/// Appends `n` events in one request with `token`; the status.
async fn append_n(c: &reqwest::Client, url: &str, token: &str, n: u64) -> u16 {
    let batch: Vec<Value> = (0..n).map(|i| common::auth_event(i, json!(i))).collect();
    c.post(format!("{url}/v1/events"))
        .bearer_auth(token)
        .json(&batch)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_its_options_from_the_config_file_and_flags_override_them() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let config = tmp.path().join("conf.toml");
    std::fs::write(
        &config,
        format!(
            "data = {:?}\nlisten = \"127.0.0.1:{port}\"\nmax_events = 2\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    let c = Server::client();
    // The data directory, the address and a limit, all from the file.
    let (child, url) =
        spawn_serving_in(tmp.path(), &["serve", "--config", config.to_str().unwrap()]);
    let k = Kill(child);
    assert_eq!(
        url,
        format!("http://127.0.0.1:{port}"),
        "listen from the file"
    );
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let token = token.trim();
    assert_eq!(append_n(&c, &url, token, 2).await, 200);
    assert_eq!(append_n(&c, &url, token, 3).await, 413, "max_events = 2");
    assert_eq!(common::terminate(k), Some(0));
    // A flag wins over the file, key by key: the rest still comes from it.
    let (child, url) = spawn_serving_in(
        tmp.path(),
        &[
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--max-events",
            "3",
        ],
    );
    let k = Kill(child);
    assert_ne!(url, format!("http://127.0.0.1:{port}"));
    assert_eq!(append_n(&c, &url, token, 3).await, 200, "the flag's 3");
    assert_eq!(append_n(&c, &url, token, 4).await, 413);
    assert_eq!(common::terminate(k), Some(0));
    // Without --config, ./sealog.toml is read when it is there.
    std::fs::rename(&config, tmp.path().join("sealog.toml")).unwrap();
    let (child, url) = spawn_serving_in(tmp.path(), &["serve", "--listen", "127.0.0.1:0"]);
    let _k = Kill(child);
    let h: Value = c
        .get(format!("{url}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["size"], 6, "the same data directory: {h}");
    assert_eq!(append_n(&c, &url, token, 3).await, 413, "max_events = 2");
}

#[test]
fn a_bad_config_file_is_refused_with_a_message_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("conf.toml");
    let path = config.to_str().unwrap();
    for (text, names) in [
        ("max_event = 5\n", "max_event"),
        ("max_events = \"many\"\n", "max_events"),
        ("listen = 8080\n", "listen"),
        ("log_format = \"xml\"\n", "log_format"),
        (
            "[detections]\nbrute_force_failure = 3\n",
            "brute_force_failure",
        ),
        ("[detections]\nspray_users = -1\n", "spray_users"),
        ("[detections\n", "detections"),
    ] {
        std::fs::write(&config, text).unwrap();
        let err = refused(&["serve", "--config", path, "--data", data.to_str().unwrap()]);
        assert!(err.contains(names), "{text:?}: {err}");
        assert!(!data.join("admin.token").exists(), "{text:?}: nothing made");
    }
    // A file that is not there is named.
    let gone = tmp.path().join("gone.toml");
    let err = refused(&["serve", "--config", gone.to_str().unwrap()]);
    assert!(err.contains("gone.toml"), "{err}");
}
