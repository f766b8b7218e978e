//! The module graph has no cycles: no two modules import each other,
//! directly or around a loop, at any level of the folder tree.
//!
//! A file is a module (`mod.rs` is its folder's). An edge is a `crate::…`,
//! `super::…` or `self::…` path in non-test code. A reference from inside a
//! folder to its own `mod.rs` (or the reverse) is the parent–child seam and
//! not counted; any other reference counts between the two children of the
//! deepest folder that holds both ends, so `spec/isoflop.rs → nodes/mod.rs`
//! is the edge `spec → nodes`, and `fit/optimal.rs → fit/study.rs` is
//! `optimal → study`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type ModPath = Vec<String>;

fn module_path(root: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(root).unwrap();
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    match last.as_str() {
        "mod.rs" | "lib.rs" => {}
        other => parts.push(other.trim_end_matches(".rs").to_string()),
    }
    parts
}

/// The code before the first `#[cfg(test)]`, line comments dropped.
fn non_test_code(text: &str) -> String {
    let cut = text.find("#[cfg(test)]").unwrap_or(text.len());
    text[..cut]
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Reads a path after `start` (`a::b::{c, d::e}`): every path it names,
/// a group's items to their first segment.
fn paths_at(code: &str, start: usize) -> Vec<Vec<String>> {
    let chars: Vec<char> = code[start..].chars().collect();
    let mut i = 0;
    let mut prefix = Vec::new();
    loop {
        if chars.get(i) == Some(&'{') {
            return group_items(&chars[i..]).into_iter().map(|item| [prefix.clone(), vec![item]].concat()).collect();
        }
        let begin = i;
        while i < chars.len() && is_ident_char(chars[i]) {
            i += 1;
        }
        if begin == i {
            break;
        }
        prefix.push(chars[begin..i].iter().collect::<String>());
        if !chars[i..].starts_with(&[':', ':']) {
            break;
        }
        i += 2;
    }
    vec![prefix]
}

/// The first segment of each item of the `{…}` group `chars` starts with.
fn group_items(chars: &[char]) -> Vec<String> {
    let mut depth = 0;
    let mut item = String::new();
    let mut out = Vec::new();
    for &c in chars {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        let item_ends = depth == 0 || (depth == 1 && (c == ',' || c == '{'));
        if item_ends {
            let first: String = item.trim().chars().take_while(|&c| is_ident_char(c)).collect();
            if !first.is_empty() {
                out.push(first);
            }
            item.clear();
            if depth == 0 {
                break;
            }
        } else if depth == 1 {
            item.push(c);
        }
    }
    out
}

/// Every module path this file's code names, before resolution.
fn references(code: &str, me: &ModPath) -> Vec<ModPath> {
    let mut out = Vec::new();
    for anchor in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(found) = code[from..].find(anchor) {
            let at = from + found;
            from = at + anchor.len();
            if code[..at].chars().next_back().is_some_and(|c| is_ident_char(c) || c == ':') {
                continue;
            }
            // `super` of a file is its folder; of a mod.rs (whose path is its folder's), the folder above.
            let base: ModPath = match anchor {
                "crate::" => Vec::new(),
                "self::" => me.clone(),
                _ => me[..me.len().saturating_sub(1)].to_vec(),
            };
            for path in paths_at(code, from) {
                let mut full = base.clone();
                let mut rest = path.into_iter().peekable();
                while rest.peek().is_some_and(|s| s == "super") {
                    rest.next();
                    full.pop();
                }
                full.extend(rest);
                out.push(full);
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && path.file_name().is_some_and(|n| n != "main.rs") {
            out.push(path);
        }
    }
}

/// Edges between sibling modules, keyed by the folder that holds them.
fn sibling_edges(root: &Path) -> BTreeMap<ModPath, BTreeSet<(String, String)>> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let modules: BTreeSet<ModPath> = files.iter().map(|f| module_path(root, f)).collect();
    let mut edges: BTreeMap<ModPath, BTreeSet<(String, String)>> = BTreeMap::new();
    for file in &files {
        let me = module_path(root, file);
        let code = non_test_code(&std::fs::read_to_string(file).unwrap());
        for reference in references(&code, &me) {
            // The longest known module the path goes through.
            let target = (0..=reference.len())
                .rev()
                .map(|n| reference[..n].to_vec())
                .find(|p| modules.contains(p))
                .unwrap_or_default();
            let common = me.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if common == me.len() || common == target.len() {
                continue; // one holds the other: the parent–child seam
            }
            edges.entry(me[..common].to_vec()).or_default().insert((me[common].clone(), target[common].clone()));
        }
    }
    edges
}

/// The cycles among one folder's children, each as its modules in order.
fn cycles(edges: &BTreeSet<(String, String)>) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&String> = edges.iter().flat_map(|(a, b)| [a, b]).collect();
    let reach = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for (a, b) in edges {
                if *a == n && seen.insert(b.clone()) {
                    stack.push(b.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&String, BTreeSet<String>> = nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut found: BTreeSet<Vec<String>> = BTreeSet::new();
    for n in &nodes {
        let component: Vec<String> = nodes
            .iter()
            .filter(|m| reachable[*n].contains(**m) && reachable[*m].contains(*n))
            .map(|m| (*m).clone())
            .collect();
        if !component.is_empty() {
            found.insert(component);
        }
    }
    found.into_iter().collect()
}

fn cycles_under(root: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(root);
    let mut out = Vec::new();
    for (folder, edges) in sibling_edges(&root) {
        for cycle in cycles(&edges) {
            let arrows: Vec<String> = edges
                .iter()
                .filter(|(a, b)| cycle.contains(a) && cycle.contains(b))
                .map(|(a, b)| format!("{a} → {b}"))
                .collect();
            out.push(format!("in crate::{}: {}", folder.join("::"), arrows.join(", ")));
        }
    }
    out
}

#[test]
fn no_two_modules_import_each_other() {
    let mut found = cycles_under("src");
    found.extend(cycles_under("torch-worker/src").into_iter().map(|c| format!("torch-worker {c}")));
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn the_scanner_sees_groups_supers_and_nesting() {
    let me: ModPath = vec!["exec".into(), "transfer".into()];
    let code =
        "use super::build::lock_key;\nuse super::{selection, fingerprint::{A, B}};\nlet x = crate::spec::Value::Null;";
    let found = references(code, &me);
    let shown: Vec<String> = found.iter().map(|p| p.join("::")).collect();
    assert_eq!(shown, ["spec::Value::Null", "exec::build::lock_key", "exec::selection", "exec::fingerprint"]);
}
