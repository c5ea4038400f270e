//! The layering of `src/` (docs/architecture.md, `src/lib.rs`): every
//! `crate::…` path in a module names a module of a lower layer (or its own),
//! so no two top-level modules import each other.

use std::collections::BTreeMap;
use std::path::Path;

/// The top-level modules, bottom-up; one entry per layer.
const LAYERS: &[&[&str]] = &[
    &[
        "config",
        "clock",
        "client_id",
        "socket",
        "registry",
        "json",
        "logtext",
    ],
    &["http", "ws"],
    // Operations carry pushes (`ws::Push`).
    &["op"],
    // Streams keep pushes and answer reads in `op`'s terms.
    &["history"],
    &["api"],
    &["metrics"],
    &["webhook", "cluster"],
    &["mailbox"],
    &["node"],
    &["core"],
    &["console"],
    &["service"],
    &["server"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The top-level module a file of `src/` belongs to (`core/send.rs` → `core`).
fn module_of(rel: &Path) -> String {
    let first = rel.components().next().expect("a path inside src/");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_string()
}

/// Every top-level module named by a `crate::` path in `text`.
fn crate_paths(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            found.extend(inner.split(',').filter_map(|p| {
                let name = p.trim().split("::").next()?.trim();
                (!name.is_empty()).then(|| name.to_string())
            }));
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_import_only_from_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut upward: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut checked = 0;
    for file in files {
        let rel = file.strip_prefix(&src).expect("inside src/");
        let module = module_of(rel);
        if matches!(module.as_str(), "lib" | "main") {
            continue;
        }
        let own = layer_of(&module)
            .unwrap_or_else(|| panic!("src/{} is in no layer of this test", rel.display()));
        let text = std::fs::read_to_string(&file).expect("readable source");
        for target in crate_paths(&text) {
            checked += 1;
            if target == module {
                continue;
            }
            let layer = layer_of(&target)
                .unwrap_or_else(|| panic!("src/{} names crate::{target}", rel.display()));
            if layer >= own {
                upward
                    .entry(format!("{module} -> {target}"))
                    .or_default()
                    .push(rel.display().to_string());
            }
        }
    }
    assert!(checked > 100, "too few crate:: paths found ({checked})");
    assert!(
        upward.is_empty(),
        "imports that do not point down the layers: {upward:#?}"
    );
}

#[test]
fn every_module_of_lib_rs_has_a_layer() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("src/lib.rs");
    let modules: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    assert!(modules.len() > 10, "{modules:?}");
    for m in modules {
        assert!(layer_of(m).is_some(), "module {m} of lib.rs is in no layer");
    }
}
