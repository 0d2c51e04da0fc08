//! The layers of docs/architecture.md, checked on the source: each module of
//! `src/` imports only modules of lower layers (so no two import each other),
//! and no two public types share a name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first; a module may import only modules of a lower
/// layer. The order is docs/architecture.md's table.
const LAYERS: &[&[&str]] = &[
    &["error", "clock"],
    &["model"],
    &["engine"],
    &["report"],
    &["attribution"],
    &["dataset"],
    &["app"],
    &["serve", "wasm"],
    &["bin"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Every `.rs` file below `dir`.
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

/// The top-level module a file of `src/` belongs to (`src/lib.rs`: none).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    if first == "lib.rs" {
        return None;
    }
    Some(first.trim_end_matches(".rs").to_string())
}

/// The crate's top-level modules a source text names: `crate::x` paths,
/// `use crate::{x, y::…}` lists and, in the binary, `patchlab::x`.
/// `crate::Error` / `crate::Result` are `error`'s re-exports.
fn imports(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |name: &str| {
        let name = match name {
            "Error" | "Result" => "error",
            n => n,
        };
        out.insert(name.to_string());
    };
    for prefix in ["crate::", "patchlab::"] {
        let mut rest = text;
        while let Some(i) = rest.find(prefix) {
            rest = &rest[i + prefix.len()..];
            if let Some(list) = rest.strip_prefix('{') {
                // `use crate::{a, b::{c, d}}`: the first name of each top-level item
                let mut depth = 0;
                let mut item = String::new();
                for ch in list.chars() {
                    match ch {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            add(first_ident(&item));
                            item.clear();
                            continue;
                        }
                        _ => {}
                    }
                    if depth == 0 {
                        item.push(ch);
                    }
                }
                if !first_ident(&item).is_empty() {
                    add(first_ident(&item));
                }
            } else {
                add(first_ident(rest));
            }
        }
    }
    out
}

fn first_ident(s: &str) -> &str {
    let s = s.trim_start();
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

fn sources() -> (PathBuf, Vec<PathBuf>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    (src, files)
}

#[test]
fn modules_import_only_lower_layers() {
    let (src, files) = sources();
    let mut wrong = Vec::new();
    let mut seen = BTreeMap::<String, BTreeSet<String>>::new();
    for f in &files {
        let Some(module) = module_of(&src, f) else {
            continue;
        };
        let own = layer_of(&module)
            .unwrap_or_else(|| panic!("{module} (src/{module}) is in no layer of LAYERS"));
        let text = std::fs::read_to_string(f).unwrap();
        for dep in imports(&text) {
            if dep == module || dep.is_empty() {
                continue;
            }
            seen.entry(module.clone()).or_default().insert(dep.clone());
            match layer_of(&dep) {
                Some(l) if l < own => {}
                Some(_) => wrong.push(format!(
                    "{} imports {dep}, which is not in a lower layer than {module}",
                    f.strip_prefix(&src).unwrap().display()
                )),
                None => {} // a name that is not a module of ours (e.g. a macro path)
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // the checker sees the imports it is meant to check
    assert!(seen["attribution"].contains("report"), "{seen:?}");
    assert!(seen["app"].contains("attribution"), "{seen:?}");
    assert!(seen["bin"].contains("app"), "{seen:?}");
}

#[test]
fn import_scanner_reads_paths_and_use_lists() {
    let got = imports("use crate::{engine::{A, B}, model::Config, Result};\nlet x = crate::clock::now_ms();\nuse patchlab::app::Session;");
    let want: BTreeSet<String> = ["engine", "model", "error", "clock", "app"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(got, want);
}

#[test]
fn no_two_public_types_share_a_name() {
    let (src, files) = sources();
    let mut places = BTreeMap::<String, Vec<String>>::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_start();
            for kind in ["pub struct ", "pub enum ", "pub trait ", "pub type "] {
                if let Some(rest) = line.strip_prefix(kind) {
                    places
                        .entry(first_ident(rest).to_string())
                        .or_default()
                        .push(format!(
                            "{}:{}",
                            f.strip_prefix(&src).unwrap().display(),
                            n + 1
                        ));
                }
            }
        }
    }
    let clashes: Vec<String> = places
        .iter()
        .filter(|(_, at)| at.len() > 1)
        .map(|(name, at)| format!("{name}: {}", at.join(", ")))
        .collect();
    assert!(
        clashes.is_empty(),
        "public types with one name:\n{}",
        clashes.join("\n")
    );
    assert!(places.contains_key("Report") && places.contains_key("Engine"));
}

/// The names only `engine` and `app` may use: the backends' modules and
/// types (their runs and graph runs), and `Compute` and `GraphCompute`,
/// whose calls skip the engine's checks. Everything else holds an `Engine`
/// and `GraphPasses` (an `app::AnyEngine`), checked once.
const BACKEND_NAMES: &[&str] = &[
    "CpuEngine",
    "GpuEngine",
    "CpuRun",
    "GpuRun",
    "CpuGraphRun",
    "GpuGraphRun",
    "Compute",
    "GraphCompute",
];

/// The backend names a source text uses outside comments.
fn backend_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for m in ["engine::cpu", "engine::gpu"] {
            if code.contains(m) {
                out.insert(m.to_string());
            }
        }
        for word in code.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if BACKEND_NAMES.contains(&word) {
                out.insert(word.to_string());
            }
        }
    }
    out
}

#[test]
fn only_engine_and_app_name_a_backend() {
    let (src, files) = sources();
    let mut wrong = Vec::new();
    for f in &files {
        let module = module_of(&src, f).unwrap_or_default();
        if module == "engine" || module == "app" {
            continue;
        }
        let names = backend_names(&std::fs::read_to_string(f).unwrap());
        if !names.is_empty() {
            wrong.push(format!(
                "src/{} names {names:?}: hold an Engine (app::AnyEngine) instead",
                f.strip_prefix(&src).unwrap().display()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // the scanner sees what it is meant to see
    assert_eq!(
        backend_names(
            "use crate::engine::cpu::{CpuEngine, X}; // GpuEngine\nfn f(e: &impl Compute, g: &impl GraphCompute) {}"
        ),
        ["CpuEngine", "Compute", "GraphCompute", "engine::cpu"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}
