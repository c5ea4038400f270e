//! The module map of main.rs is the crate's layering: every `crate::` path in a module
//! names a module listed below it there. An import circle cannot pass (one of its
//! imports points up the list), and the map cannot leave out a module or go stale.

use std::collections::BTreeSet;
use std::path::Path;

fn source(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The modules of the map, top first: its lines ``//! - `name`: …``.
fn map(main: &str) -> Vec<String> {
    main.lines()
        .filter_map(|l| l.strip_prefix("//! - `")?.split_once('`'))
        .map(|(name, _)| name.to_string())
        .collect()
}

/// The modules main.rs declares, but for the test-only ones (this one).
fn declared(main: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut test_only = false;
    for line in main.lines() {
        if let Some(name) = line.strip_prefix("mod ").and_then(|l| l.strip_suffix(';')) {
            if !test_only {
                out.insert(name.to_string());
            }
        }
        test_only = line.trim() == "#[cfg(test)]";
    }
    out
}

/// The module each `crate::` path of `text` starts with (comment lines left out);
/// `crate::{a, b::C}` gives both.
fn crate_paths(text: &str) -> Vec<String> {
    let code: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect();
    let code = code.join("\n");
    let mut found = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        match rest.strip_prefix('{') {
            Some(group) => found.extend(group_items(group).into_iter().map(first_name)),
            None => found.push(first_name(rest)),
        }
    }
    found
}

/// The leading identifier of `s`.
fn first_name(s: &str) -> String {
    s.trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The items of a `{…}` group (its opening brace already passed), split at its own
/// commas.
fn group_items(group: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..i]);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.retain(|item| !item.trim().is_empty());
    items
}

#[test]
fn the_map_lists_every_module_once() {
    let main = source("main.rs");
    let map = map(&main);
    let listed: BTreeSet<String> = map.iter().cloned().collect();
    assert_eq!(listed.len(), map.len(), "a module listed twice: {map:?}");
    assert_eq!(
        listed,
        declared(&main),
        "the map of main.rs vs its `mod` lines"
    );
}

#[test]
fn modules_import_only_modules_below_them_in_the_map() {
    let map = map(&source("main.rs"));
    let mut upward = BTreeSet::new();
    let mut checked = 0;
    for (at, module) in map.iter().enumerate() {
        for target in crate_paths(&source(&format!("{module}.rs"))) {
            checked += 1;
            let problem = match map.iter().position(|m| *m == target) {
                Some(below) if below > at || target == *module => continue,
                Some(_) => format!(
                    "{module} imports {target}, listed above it (a circle, or {target} \
                     belongs below {module} in the map)"
                ),
                None => format!(
                    "{module} names crate::{target}, no module of the map (an item of main.rs?)"
                ),
            };
            upward.insert(problem);
        }
    }
    assert!(checked > 100, "too few crate:: paths found ({checked})");
    assert!(upward.is_empty(), "{upward:#?}");
}

#[test]
fn crate_paths_reads_groups_and_skips_comments() {
    let text =
        "use crate::a::B;\n// crate::c\nuse crate::{d, e::{F, G},\n    h};\nx(crate::i::j());";
    assert_eq!(crate_paths(text), ["a", "d", "e", "h", "i"]);
}
