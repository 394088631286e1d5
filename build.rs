//! Embeds the vendored OCSF schema (src/events/ocsf/schema) in the binary, so the
//! server needs no files beside it at run time; and tells the tests what
//! this machine can run (`have_go`, `can_mount_tmpfs`), so that a test the
//! machine cannot run is reported as ignored by `cargo test` instead of
//! passing without having run.

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|e| e == "json") {
            out.push(p);
        }
    }
}

/// Where Debian's golang-golang-x-mod-dev puts golang.org/x/mod; the Go
/// interop test (tests/interop_go.rs) builds against it with GOPATH.
const GOPATH: &str = "/usr/share/gocode";

/// `go` runs and golang.org/x/mod's sumdb/tlog is installed.
fn have_go() -> bool {
    let go = std::process::Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    go && Path::new(GOPATH)
        .join("src/golang.org/x/mod/sumdb/tlog")
        .is_dir()
}

/// This process may mount a tmpfs: effective uid 0 and CAP_SYS_ADMIN in
/// the effective set (a container's root often lacks it).
fn can_mount_tmpfs() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    // Uid: real, effective, saved, filesystem.
    let root = field("Uid:").get(1).is_some_and(|u| u == "0");
    const CAP_SYS_ADMIN: u32 = 21;
    let sys_admin = field("CapEff:")
        .first()
        .and_then(|c| u64::from_str_radix(c, 16).ok())
        .is_some_and(|c| c >> CAP_SYS_ADMIN & 1 == 1);
    root && sys_admin
}

/// Emits the cfgs the tests ignore themselves by. Where a test is
/// mandatory (SEALOG_REQUIRE_GO for Go, CI for both) the cfg is set
/// anyway, so the test runs and fails loudly on what is missing rather
/// than being ignored.
fn test_capabilities() {
    println!("cargo::rustc-check-cfg=cfg(have_go)");
    println!("cargo::rustc-check-cfg=cfg(can_mount_tmpfs)");
    for var in ["SEALOG_REQUIRE_GO", "CI"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    // Installing Go (apt-get) changes dpkg's status file: look again then.
    // A path that does not exist would rerun this script on every build.
    for file in ["/var/lib/dpkg/status", "/usr/bin/go"] {
        if Path::new(file).exists() {
            println!("cargo::rerun-if-changed={file}");
        }
    }
    let ci = std::env::var_os("CI").is_some();
    if have_go() || ci || std::env::var_os("SEALOG_REQUIRE_GO").is_some() {
        println!("cargo::rustc-cfg=have_go");
    }
    if can_mount_tmpfs() || ci {
        println!("cargo::rustc-cfg=can_mount_tmpfs");
    }
}

fn main() {
    test_capabilities();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/events/ocsf/schema");
    println!("cargo:rerun-if-changed=src/events/ocsf/schema");
    let mut files = Vec::new();
    walk(&root, &mut files);
    let mut code = String::from("/// (path relative to the schema root, file text)\npub static FILES: &[(&str, &str)] = &[\n");
    for f in files {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_str()
            .unwrap()
            .replace('\\', "/");
        writeln!(
            code,
            "    ({rel:?}, include_str!({:?})),",
            f.to_str().unwrap()
        )
        .unwrap();
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("ocsf_files.rs");
    std::fs::write(out, code).unwrap();
}
