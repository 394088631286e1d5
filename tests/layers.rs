//! The layer rules of spec/architecture.md, checked on the source: a
//! module of the server crate imports only from its own layer or below,
//! no two modules import each other (directly or round a cycle), only the
//! storage driver names the database, and the verifier crate names no
//! server module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The server crate's top-level modules, lowest layer first; modules in
/// one inner list share a layer and must not import each other.
const LAYERS: &[&[&str]] = &[
    &["sys"],
    &["net"],
    &["events"],
    &["store"],
    &["query"],
    &["log"],
    &["detect", "witness"],
    &["ops"],
    &["server"],
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/a/b.rs` and `src/a/b/mod.rs` → `a::b`.
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(root().join("src")).unwrap();
    let mut parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// The code of `text` without its `#[cfg(test)] mod tests { ... }` block
/// (tests may reach anywhere) and without comments.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.trim_start().starts_with("//") {
            true => "",
            false => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules `code` (the text of module `me`) imports: every
/// `crate::x::y` path, `super::x` path and path through a child module
/// `me` declares, resolved to the longest module in `modules` it names.
fn imports(me: &str, code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let parent = me.rsplit_once("::").map_or("", |(p, _)| p);
    let mut prefixes: Vec<(String, String)> = vec![
        ("crate::".into(), String::new()),
        ("super::".into(), parent.to_string()),
    ];
    for m in modules {
        if let Some(child) = m.strip_prefix(&format!("{me}::")) {
            if !child.contains("::") {
                prefixes.push((format!("{child}::"), me.to_string()));
            }
        }
    }
    let mut out = BTreeSet::new();
    for (prefix, base) in prefixes {
        let mut at = 0;
        while let Some(i) = code[at..].find(&prefix) {
            let start = at + i;
            at = start + prefix.len();
            // A whole path segment only: `xcrate::` or `a::child::` is not it.
            let before = code[..start].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path: String = code[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let mut segs: Vec<String> = base
                .split("::")
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            if prefix != "crate::" && prefix != "super::" {
                segs.push(prefix.trim_end_matches(':').to_string());
            }
            segs.extend(path.split("::").filter(|s| !s.is_empty()).map(String::from));
            for n in (1..=segs.len()).rev() {
                let m = segs[..n].join("::");
                if modules.contains(&m) {
                    out.insert(m);
                    break;
                }
            }
        }
    }
    out
}

struct Graph {
    edges: BTreeMap<String, BTreeSet<String>>,
}

fn graph() -> Graph {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    files.retain(|f| !f.starts_with(root().join("src/bin")));
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    let mut edges = BTreeMap::new();
    for f in &files {
        let m = module_of(f);
        if m == "lib" || m == "main" {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        let mut to = imports(&m, &code(&text), &modules);
        to.remove(&m);
        edges.insert(m, to);
    }
    Graph { edges }
}

fn layer(module: &str) -> Option<usize> {
    let top = module.split("::").next().unwrap();
    LAYERS.iter().position(|l| l.contains(&top))
}

#[test]
fn every_module_belongs_to_a_layer_and_imports_only_downwards() {
    let g = graph();
    let mut wrong = Vec::new();
    for (from, tos) in &g.edges {
        let Some(lf) = layer(from) else {
            wrong.push(format!("{from} is in no layer of LAYERS"));
            continue;
        };
        for to in tos {
            let (ft, tt) = (from.split("::").next(), to.split("::").next());
            if ft == tt {
                continue;
            }
            match layer(to) {
                Some(lt) if lt < lf => {}
                _ => wrong.push(format!("{from} imports {to}, a layer above or beside it")),
            }
        }
    }
    assert!(wrong.is_empty(), "layer rule broken:\n{}", wrong.join("\n"));
}

#[test]
fn no_two_modules_import_each_other_round_a_cycle() {
    let g = graph();
    // A module is on a cycle when it can reach itself.
    let mut cycles = Vec::new();
    for start in g.edges.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        while let Some((m, path)) = stack.pop() {
            for to in g.edges.get(&m).into_iter().flatten() {
                if to == start {
                    cycles.push(format!("{} -> {start}", path.join(" -> ")));
                } else if seen.insert(to.clone()) {
                    let mut p = path.clone();
                    p.push(to.clone());
                    stack.push((to.clone(), p));
                }
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

/// Whether `code` reaches the redb crate: a path `redb::…` or
/// `::redb::…`, or `use redb`. A path through the driver module
/// (`store::redb::…`, `super::redb::…`) is not the crate.
fn names_the_redb_crate(code: &str) -> bool {
    code.match_indices("redb::").any(|(i, _)| {
        let before = &code[..i];
        let module_path = before.ends_with("::") && !before.ends_with(" ::") && {
            let seg = before.trim_end_matches("::");
            seg.ends_with(|c: char| c.is_alphanumeric() || c == '_')
        };
        let in_word = before.ends_with(|c: char| c.is_alphanumeric() || c == '_');
        !module_path && !in_word
    }) || code.contains("use redb")
        || code.contains("use ::redb")
}

#[test]
fn the_redb_check_tells_the_crate_from_the_driver_module() {
    assert!(names_the_redb_crate("use redb::Database;"));
    assert!(names_the_redb_crate("let e: redb::Error = x;"));
    assert!(names_the_redb_crate("f(::redb::Error::Corrupted)"));
    assert!(!names_the_redb_crate("use super::redb::Redb;"));
    assert!(!names_the_redb_crate("crate::store::redb::Redb"));
    assert!(!names_the_redb_crate("let p = \"sealog.redb\";"));
}

#[test]
fn only_the_storage_driver_names_the_database() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let driver = root().join("src/store/redb");
    let named: Vec<String> = files
        .iter()
        .filter(|f| !f.starts_with(&driver))
        .filter(|f| names_the_redb_crate(&code(&std::fs::read_to_string(f).unwrap())))
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        named.is_empty(),
        "files outside src/store/redb naming redb: {named:?}"
    );
}

#[test]
fn the_verifier_crate_names_no_server_module() {
    let mut files = Vec::new();
    rust_files(&root().join("crates/sealog-verify/src"), &mut files);
    assert!(files.len() > 5, "the verifier crate's sources are found");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            !text.contains("sealog::"),
            "{} names the server crate",
            f.display()
        );
    }
    let manifest = std::fs::read_to_string(root().join("crates/sealog-verify/Cargo.toml")).unwrap();
    for dep in ["tokio", "axum", "hyper", "reqwest", "redb"] {
        assert!(
            !manifest.contains(&format!("\n{dep} ")) && !manifest.contains(&format!("\n{dep}=")),
            "sealog-verify depends on {dep}"
        );
    }
}
