//! Operations hardening: no test hooks in the `sealog` binary, restore that
//! cannot fork, a private data directory, a trusted serve.addr, and HTTPS
//! end to end (a CA made here, a certificate reloaded on SIGHUP).

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{auth_event, eventually, sealog, send_signal, Server, PATIENCE};
use serde_json::json;

const SEALOG: &str = env!("CARGO_BIN_EXE_sealog");
const SEALOG_TEST: &str = env!("CARGO_BIN_EXE_sealog-test");

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `bin serve` that is expected to refuse to start: its output, or a
/// panic if it is still running after 30 s (it started instead).
fn serve_refused(bin: &str, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
    all.extend(args);
    common::refused_with(bin, cwd, &all, env)
}

#[test]
fn the_sealog_binary_refuses_the_test_hooks() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let e = serve_refused(
        SEALOG,
        tmp.path(),
        &["--data", s(&data), "--bench-floor", "true"],
        &[],
    );
    assert!(e.contains("bench_floor") && e.contains("hook"), "{e}");
    // Nor from an auto-loaded ./sealog.toml.
    std::fs::write(tmp.path().join("sealog.toml"), "bench_floor = true\n").unwrap();
    let e = serve_refused(SEALOG, tmp.path(), &["--data", s(&data)], &[]);
    assert!(e.contains("bench_floor"), "{e}");
    // An auto-loaded ./sealog.toml that others could have written is
    // refused, whatever it says.
    std::fs::write(tmp.path().join("sealog.toml"), "log_format = \"json\"\n").unwrap();
    std::fs::set_permissions(
        tmp.path().join("sealog.toml"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let e = serve_refused(SEALOG, tmp.path(), &["--data", s(&data)], &[]);
    assert!(e.contains("sealog.toml"), "{e}");
    std::fs::remove_file(tmp.path().join("sealog.toml")).unwrap();
    // The clock-skew variable is refused, by serve and by every command
    // that signs times (witness cosignatures, token events).
    let skew = [("SEALOG_CLOCK_SKEW_MS", "-86400000")];
    let e = serve_refused(SEALOG, tmp.path(), &["--data", s(&data)], &skew);
    assert!(e.contains("SEALOG_CLOCK_SKEW_MS"), "{e}");
    let o = Command::new(SEALOG)
        .args(["token", "list", "--data", s(&data)])
        .envs(skew)
        .output()
        .unwrap();
    assert!(!o.status.success() && stderr(&o).contains("SEALOG_CLOCK_SKEW_MS"));
}

#[tokio::test]
async fn the_bench_route_exists_only_in_sealog_test_which_says_so_loudly() {
    let c = Server::client();
    // The sealog binary has no such route (this test build compiled the
    // hooks into the library: the binary still does not serve them).
    let plain = Server::start(&[]);
    let r = c
        .post(format!("{}/v1/bench/noop", plain.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(SEALOG_TEST)
        .args(["serve", "--listen", "127.0.0.1:0", "--bench-floor", "true"])
        .arg("--data")
        .arg(tmp.path().join("data"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut warned = false;
    let mut addr = None;
    for line in lines.by_ref().take(200) {
        let line = line.unwrap();
        warned |= line.contains("TEST HOOKS ACTIVE");
        if let Some(a) = line.split("serving addr=").nth(1) {
            addr = Some(a.split_whitespace().next().unwrap().to_string());
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let addr = addr.expect("sealog-test serves");
    assert!(warned, "the active hooks are logged at start");
    let r = c
        .post(format!("http://{addr}/v1/bench/noop"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    send_signal(child.id(), "TERM");
    common::exit_within(&mut child, PATIENCE);
}

/// A log with `n` events (plus its admin-token event), stopped.
async fn stopped_log(n: u64) -> Server {
    let mut s = Server::start(&[]);
    let c = Server::client();
    let evs: Vec<_> = (0..n).map(|i| auth_event(i, json!(i))).collect();
    s.append(&c, json!(evs)).await;
    assert_eq!(s.stop(), Some(0));
    s
}

fn backup(data: &Path, out: &Path) {
    let o = sealog(&["backup", "--data", s(data), "--out", s(out)]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_appends_only_with_outside_evidence_of_all_that_was_signed() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n);
    let c = Server::client();
    let mut live = stopped_log(5).await;
    let old = p("old.backup");
    backup(live.data_dir(), &old);
    // The log goes on signing after the old backup.
    live.restart_after_stop();
    live.append(&c, auth_event(9, json!(9))).await;
    let newest = live.get_text(&c, "/checkpoint/latest").await;
    assert_eq!(live.stop(), Some(0));
    let current = p("current.backup");
    backup(live.data_dir(), &current);
    live.restart_after_stop();
    let url = live.url.clone();

    // The live log's checkpoint: a current backup restores writable, an
    // old one is refused (it lacks signed leaves), leaving nothing behind.
    let o = sealog(&[
        "restore",
        "--from",
        s(&old),
        "--data",
        s(&p("r1")),
        "--log",
        &url,
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("missing signed leaves"),
        "{}",
        stderr(&o)
    );
    assert!(!p("r1").join("sealog.redb").exists() && !p("r1").exists());
    let o = sealog(&[
        "restore",
        "--from",
        s(&current),
        "--data",
        s(&p("r2")),
        "--log",
        &url,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("writable"), "{}", stdout(&o));

    // A remote log only over HTTPS: over plain HTTP anyone on the path
    // could replay the backup's own checkpoint. (Refused before any
    // connection: .invalid never resolves.)
    let o = sealog(&[
        "restore",
        "--from",
        s(&old),
        "--data",
        s(&p("r0")),
        "--log",
        "http://log.invalid",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("https://"),
        "{}",
        stderr(&o)
    );

    // A checkpoint file counts only when the witness quorum cosigned it:
    // the log's own signature is what the backup itself carries.
    let (wkey, wvkey) = sealog_verify::cosign::Cosigner::generate("witness.example/w1").unwrap();
    let w = sealog_verify::cosign::Cosigner::new(&wkey).unwrap();
    let cosigned = |note: &str| {
        let body = note.split("\n\n").next().unwrap().to_string() + "\n";
        format!("{note}{}", w.cosign(body.as_bytes(), 1_700_000_000))
    };
    std::fs::write(p("newest.cp"), cosigned(&newest)).unwrap();
    std::fs::write(
        p("policy"),
        format!("log {}\nwitness w1 {wvkey}\nquorum w1\n", live.vkey),
    )
    .unwrap();
    std::fs::write(
        p("no-witness.policy"),
        format!("log {}\nquorum none\n", live.vkey),
    )
    .unwrap();
    std::fs::write(p("log-only.cp"), &newest).unwrap();
    let ev = |from: &Path, dir: &str, cp: &str, policy: &str| {
        sealog(&[
            "restore",
            "--from",
            s(from),
            "--data",
            s(&p(dir)),
            "--checkpoint",
            s(&p(cp)),
            "--policy",
            s(&p(policy)),
        ])
    };
    let o = ev(&old, "r3", "newest.cp", "policy");
    assert!(
        !o.status.success() && stderr(&o).contains("missing signed leaves"),
        "{}",
        stderr(&o)
    );
    let o = ev(&current, "r4", "log-only.cp", "no-witness.policy");
    assert!(
        !o.status.success() && stderr(&o).contains("quorum"),
        "{}",
        stderr(&o)
    );
    let o = ev(&current, "r5", "log-only.cp", "policy");
    assert!(
        !o.status.success(),
        "a checkpoint without the quorum's cosignature"
    );
    let o = ev(&current, "r6", "newest.cp", "policy");
    assert!(o.status.success(), "{}", stderr(&o));
    let restored = Server::start_in(&p("r6"), &[]);
    restored.append(&c, auth_event(10, json!(10))).await;

    // Without evidence: read-only.
    let o = sealog(&["restore", "--from", s(&old), "--data", s(&p("r7"))]);
    assert!(
        o.status.success() && stdout(&o).contains("read-only"),
        "{}",
        stdout(&o)
    );
    let ro = Server::start_in(&p("r7"), &[]);
    let r = c
        .post(format!("{}/v1/events", ro.url))
        .bearer_auth(&ro.token)
        .json(&auth_event(1, json!(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    // Forcing it takes the explicit override, which is logged and
    // recorded in the restored log.
    let o = sealog(&[
        "restore",
        "--from",
        s(&old),
        "--data",
        s(&p("r8")),
        "--i-accept-fork-risk",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("FORK RISK"), "{}", stderr(&o));
    let store = sealog::store::engine::open(&p("r8").join("sealog.redb")).unwrap();
    assert!(store.fork_risk().unwrap().is_some());
    // ... and cannot be combined with evidence that refuses.
    let o = sealog(&[
        "restore",
        "--from",
        s(&old),
        "--data",
        s(&p("r9")),
        "--log",
        &url,
        "--i-accept-fork-risk",
    ]);
    assert!(!o.status.success());
}

#[test]
fn serve_refuses_a_data_directory_others_can_reach() {
    let mut srv = Server::start(&[]);
    assert_eq!(srv.stop(), Some(0));
    let dir = srv.data_dir().to_path_buf();
    let cwd = dir.parent().unwrap().to_path_buf();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    for f in [
        "log.key",
        "admin.token",
        "sealog.redb",
        "sealog.keys",
        "index.redb",
    ] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    let chmod =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    let args = ["--data", s(&dir)];
    chmod(&dir, 0o755);
    let e = serve_refused(SEALOG, &cwd, &args, &[]);
    assert!(e.contains("chmod 700") && e.contains(s(&dir)), "{e}");
    chmod(&dir, 0o700);
    chmod(&dir.join("log.key"), 0o644);
    let e = serve_refused(SEALOG, &cwd, &args, &[]);
    assert!(e.contains("log.key") && e.contains("chmod 600"), "{e}");
    chmod(&dir.join("log.key"), 0o600);
    chmod(&dir.join("sealog.redb"), 0o640);
    let e = serve_refused(SEALOG, &cwd, &args, &[]);
    assert!(e.contains("sealog.redb"), "{e}");
    chmod(&dir.join("sealog.redb"), 0o600);
    // The event keys open every event: the same rule.
    chmod(&dir.join("sealog.keys"), 0o644);
    let e = serve_refused(SEALOG, &cwd, &args, &[]);
    assert!(e.contains("sealog.keys") && e.contains("chmod 600"), "{e}");
    chmod(&dir.join("sealog.keys"), 0o600);
    // Symlinks to the keys or the database are refused, not followed.
    let elsewhere = cwd.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    for f in ["log.key", "sealog.redb", "sealog.keys"] {
        std::fs::rename(dir.join(f), elsewhere.join(f)).unwrap();
        std::os::unix::fs::symlink(elsewhere.join(f), dir.join(f)).unwrap();
        let e = serve_refused(SEALOG, &cwd, &args, &[]);
        assert!(e.contains(f) && e.contains("symlink"), "{f}: {e}");
        std::fs::remove_file(dir.join(f)).unwrap();
        std::fs::rename(elsewhere.join(f), dir.join(f)).unwrap();
    }
    // Put right, it serves again.
    srv.restart_after_stop();
}

#[tokio::test]
async fn backup_sends_the_admin_token_only_to_an_address_its_runner_wrote() {
    let srv = Server::start(&[]);
    let dir = srv.data_dir().to_path_buf();
    let addr = dir.join("serve.addr");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&addr), 0o600, "serve.addr is private");
    let tmp = tempfile::tempdir().unwrap();
    let out = |n: &str| tmp.path().join(n);
    let chmod =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    // Writable by others: anyone could have pointed it at their listener.
    chmod(&addr, 0o622);
    let o = sealog(&["backup", "--data", s(&dir), "--out", s(&out("a"))]);
    assert!(
        !o.status.success() && stderr(&o).contains("serve.addr"),
        "{}",
        stderr(&o)
    );
    chmod(&addr, 0o600);
    // In a directory others can write to.
    chmod(&dir, 0o777);
    let o = sealog(&["backup", "--data", s(&dir), "--out", s(&out("b"))]);
    assert!(!o.status.success(), "{}", stderr(&o));
    chmod(&dir, 0o700);
    // A symlink to a file elsewhere.
    let planted = tmp.path().join("planted.addr");
    std::fs::copy(&addr, &planted).unwrap();
    let real = tmp.path().join("real.addr");
    std::fs::rename(&addr, &real).unwrap();
    std::os::unix::fs::symlink(&planted, &addr).unwrap();
    let o = sealog(&["backup", "--data", s(&dir), "--out", s(&out("c"))]);
    assert!(
        !o.status.success() && stderr(&o).contains("symlink"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_file(&addr).unwrap();
    std::fs::rename(&real, &addr).unwrap();
    // Owned by another user (this needs root to set up).
    // SAFETY: geteuid reads no memory of ours.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(&addr, Some(65534), None).unwrap();
        let o = sealog(&["backup", "--data", s(&dir), "--out", s(&out("d"))]);
        assert!(
            !o.status.success() && stderr(&o).contains("uid 65534"),
            "{}",
            stderr(&o)
        );
        std::os::unix::fs::chown(&addr, Some(0), None).unwrap();
    }
    let o = sealog(&["backup", "--data", s(&dir), "--out", s(&out("e"))]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A CA and a server certificate for localhost and 127.0.0.1 it signed,
/// written as `<name>-ca.pem`, `<name>-cert.pem`, `<name>-key.pem`.
fn make_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("sealog test CA {name}"));
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let paths = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-cert.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    (paths.0, paths.1, paths.2)
}

/// A client trusting only the CA in `ca` (no pooled connections: each
/// request makes a handshake).
fn trusting(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_end_to_end_with_a_certificate_reloaded_on_sighup() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n);
    let (ca1, cert1, key1) = make_ca(tmp.path(), "one");
    let (ca2, cert2, key2) = make_ca(tmp.path(), "two");
    let (cert, key) = (p("cert.pem"), p("key.pem"));
    std::fs::copy(&cert1, &cert).unwrap();
    std::fs::copy(&key1, &key).unwrap();
    let srv = Server::start(&["--tls-cert", s(&cert), "--tls-key", s(&key)]);
    let url = srv.url.replace("http://", "https://");
    let c = trusting(&ca1);
    let r = c
        .post(format!("{url}/v1/events"))
        .bearer_auth(&srv.token)
        .json(&auth_event(1, json!(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let receipt = r.text().await.unwrap();
    std::fs::write(p("receipt.json"), &receipt).unwrap();
    // Plain HTTP to the TLS port gets no answer.
    assert!(Server::client()
        .get(format!("{}/checkpoint", srv.url))
        .send()
        .await
        .is_err());

    // sealog verify --log over HTTPS: with the CA it checks out, without
    // it the certificate is not trusted.
    let verify = |extra: &[&str]| {
        let mut args = vec!["verify", s(&p("receipt.json")).to_string().leak() as &str];
        args.extend(["--vkey", srv.vkey.as_str(), "--log", url.as_str()]);
        args.extend(extra);
        sealog(&args)
    };
    let o = verify(&["--ca-file", s(&ca1)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = verify(&[]);
    assert!(
        !o.status.success(),
        "a certificate from an unknown CA is refused"
    );
    // backup finds the running log over HTTPS too.
    let o = sealog(&[
        "backup",
        "--data",
        s(srv.data_dir()),
        "--out",
        s(&p("b")),
        "--ca-file",
        s(&ca1),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    // A new certificate (from another CA), then SIGHUP: new handshakes get it.
    std::fs::copy(&cert2, &cert).unwrap();
    std::fs::copy(&key2, &key).unwrap();
    send_signal(srv.pid().unwrap(), "HUP");
    let c2 = trusting(&ca2);
    eventually(PATIENCE, "the new certificate is presented", async || {
        let r = c2.get(format!("{url}/checkpoint")).send().await;
        r.map(drop).map_err(|e| e.to_string())
    })
    .await;
    // A new client trusting only the old CA is refused now. (The old
    // client could still resume its TLS session: resumption re-presents
    // no certificate.)
    assert!(trusting(&ca1)
        .get(format!("{url}/checkpoint"))
        .send()
        .await
        .is_err());
    // The server is still the same process, serving.
    let r = c2.get(format!("{url}/checkpoint")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_serves_https_from_a_private_directory_and_cosigns_for_a_log_trusting_its_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n);
    let (ca, cert, key) = make_ca(tmp.path(), "w");
    let o = sealog(&[
        "keygen",
        "--origin",
        "tls.example/log",
        "--out",
        s(&p("log")),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let log_vkey = stdout(&o).trim().to_string();
    std::fs::write(p("logs"), format!("log {log_vkey}\n")).unwrap();
    let o = sealog(&[
        "witness",
        "keygen",
        "--name",
        "w.example",
        "--out",
        s(&p("w")),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let wvkey = stdout(&o).trim().to_string();
    let (child, wurl) = common::spawn_serving(&[
        "witness",
        "serve",
        "--data",
        s(&p("w")),
        "--listen",
        "127.0.0.1:0",
        "--logs",
        s(&p("logs")),
        "--tls-cert",
        s(&cert),
        "--tls-key",
        s(&key),
    ]);
    let _witness = common::Kill(child);
    let wurl = wurl.replace("http://", "https://");
    // The witness's data directory is private too, and a loose one refused.
    let mode = |f: &Path| std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&p("w")), 0o700);
    assert_eq!(mode(&p("w").join("witness.redb")), 0o600);
    std::fs::create_dir(p("loose")).unwrap();
    std::fs::set_permissions(p("loose"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let e = common::refused_with(
        SEALOG,
        tmp.path(),
        &[
            "witness",
            "serve",
            "--data",
            s(&p("loose")),
            "--listen",
            "127.0.0.1:0",
            "--logs",
            s(&p("logs")),
            "--name",
            "loose.example",
        ],
        &[],
    );
    assert!(e.contains("chmod 700"), "{e}");
    std::fs::write(
        p("policy"),
        format!("log {log_vkey}\nwitness w {wvkey} {wurl}\nquorum w\n"),
    )
    .unwrap();
    let policy =
        sealog_verify::policy::Policy::parse(&std::fs::read_to_string(p("policy")).unwrap())
            .unwrap();
    // The log trusts the witness's CA through --ca-file.
    let srv = Server::start_in(
        &p("log"),
        &[
            "--witnesses",
            s(&p("policy")),
            "--witness-interval-ms",
            "50",
            "--ca-file",
            s(&ca),
        ],
    );
    let c = Server::client();
    srv.append(&c, auth_event(1, json!(1))).await;
    eventually(PATIENCE, "cosigned over HTTPS", async || {
        let r = c
            .get(format!("{}/checkpoint", srv.url))
            .send()
            .await
            .unwrap();
        if r.status() != 200 {
            return Err(r.status().to_string());
        }
        let note = r.text().await.unwrap();
        match policy.check(note.as_bytes()) {
            Ok((cp, who)) if cp.size >= 2 => {
                assert!(who.contains("w"));
                Ok(())
            }
            Ok((cp, _)) => Err(format!("size {}", cp.size)),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
}
