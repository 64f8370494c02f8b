//! The layering of `host/src`, checked on the source: each top-level module may use only
//! the modules of the layers below its own, and no import cycle may join two of them (a
//! module and its own children may still refer to each other). A lower layer that needs
//! something of a higher one declares a trait the higher one implements (`features`,
//! `sessions::Peers`, `plugins::Ownership`). ARCHITECTURE.md draws the same layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom to top. Same-layer uses are allowed while they form no cycle.
const LAYERS: &[&[&str]] = &[
    // Plain data: the element tree, typed stanzas, stream framing, small shared counters,
    // tracked tasks and the shutdown signal.
    &["xml"],
    &["stanza", "stream", "tasks"],
    &["config"],
    &["limits"],
    // Persistence and credentials, certificates.
    &["store", "auth", "tls"],
    // The session table, the feature runtime as the core sees it, and the context the
    // RFC 6121 core shares.
    &["sessions", "features"],
    // Entity capabilities: what a resource's caps stand for (store + sessions).
    &["caps"],
    &["context"],
    // The RFC 6121 core: delivery (addressing, §8.5, offline storage, error replies), the
    // services that deliver through it, then the router that dispatches to them.
    &["delivery"],
    &["presence"],
    &["roster"],
    &["account"],
    &["iq"],
    &["router"],
    // The plugin runtime and the pool.
    &["plugins", "pool"],
    // Connections.
    &["c2s", "listener"],
    // The composition root.
    &["server"],
    // The binary's edge.
    &["daemon", "cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Which top-level modules each top-level module uses (`crate::x`), test code left out:
/// a file's trailing `#[cfg(test)]` module, and whole files declared `#[cfg(test)] mod x;`
/// (child `tests.rs` files, the shared `testkit`), whose fakes and fixtures may reach any
/// layer, as a trailing test module may.
fn uses(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let test_only = test_only_files(src);
    let mut files = vec![src.to_path_buf()];
    while let Some(path) = files.pop() {
        if test_only.contains(&path) {
            continue;
        }
        if path.is_dir() {
            files.extend(
                std::fs::read_dir(&path)
                    .expect("read src")
                    .map(|e| e.expect("entry").path()),
            );
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = path.strip_prefix(src).expect("under src");
        let first = rel
            .components()
            .next()
            .expect("a component")
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if matches!(module.as_str(), "lib" | "main" | "layers") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read a source file");
        let code = without_tests(&text);
        let used = graph.entry(module.clone()).or_default();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (at, _) in line.match_indices("crate::") {
                let rest = &line[at + "crate::".len()..];
                if let Some(group) = rest.strip_prefix('{') {
                    // `use crate::{a::X, b};`: each path's first segment.
                    let group = group.split('}').next().unwrap_or_default();
                    used.extend(group.split(',').filter_map(|p| first_segment(p.trim())));
                } else if let Some(name) = first_segment(rest) {
                    used.insert(name);
                }
            }
        }
        used.remove(&module);
    }
    graph
}

/// The files and directories of the modules declared `#[cfg(test)]` on their own line
/// just above `mod x;` (or `pub mod x;`): `x.rs` and `x/` beside a `lib.rs` or `mod.rs`,
/// under `foo/` for a `foo.rs`.
fn test_only_files(src: &Path) -> BTreeSet<std::path::PathBuf> {
    let mut found = BTreeSet::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read a source file");
            let stem = path.file_stem().expect("a file name").to_string_lossy();
            let children = if matches!(stem.as_ref(), "lib" | "main" | "mod") {
                dir.clone()
            } else {
                dir.join(stem.as_ref())
            };
            let mut lines = text.lines().map(str::trim);
            while let Some(line) = lines.next() {
                if line != "#[cfg(test)]" {
                    continue;
                }
                let next = lines.next().unwrap_or_default();
                let declared = next.strip_prefix("pub ").unwrap_or(next);
                if let Some(name) = declared.strip_prefix("mod ").and_then(|m| m.strip_suffix(';')) {
                    found.insert(children.join(format!("{name}.rs")));
                    found.insert(children.join(name));
                }
            }
        }
    }
    found
}

fn first_segment(path: &str) -> Option<String> {
    let name: String = path.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    (!name.is_empty()).then_some(name)
}

/// The file without its trailing `#[cfg(test)]` module(s): fakes may reach anywhere.
fn without_tests(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod ") {
        Some(at) => &text[..at],
        None => text,
    }
}

/// The strongly connected sets of more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, (usize, usize)>,
        stack: Vec<&'g str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'g>(w: &mut Walk<'g>, v: &'g str) {
        let n = w.index.len();
        w.index.insert(v, (n, n));
        w.stack.push(v);
        for next in w.graph.get(v).into_iter().flatten() {
            let next = next.as_str();
            if !w.graph.contains_key(next) {
                continue;
            }
            if !w.index.contains_key(next) {
                visit(w, next);
                let low = w.index[next].1.min(w.index[v].1);
                w.index.get_mut(v).expect("visited").1 = low;
            } else if w.stack.contains(&next) {
                let low = w.index[next].0.min(w.index[v].1);
                w.index.get_mut(v).expect("visited").1 = low;
            }
        }
        if w.index[v].0 == w.index[v].1 {
            let mut set = Vec::new();
            while let Some(top) = w.stack.pop() {
                set.push(top.to_string());
                if top == v {
                    break;
                }
            }
            if set.len() > 1 {
                set.sort();
                w.found.push(set);
            }
        }
    }
    let mut w = Walk {
        graph,
        index: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !w.index.contains_key(v.as_str()) {
            visit(&mut w, v);
        }
    }
    w.found
}

#[test]
fn modules_use_only_the_layers_below() {
    let graph = uses(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let mut problems = Vec::new();
    for (from, used) in &graph {
        let Some(own) = layer_of(from) else {
            problems.push(format!("module `{from}` has no layer in layers.rs"));
            continue;
        };
        for to in used {
            match layer_of(to) {
                Some(theirs) if theirs > own => problems.push(format!("`{from}` uses `{to}`, a higher layer")),
                Some(_) => {}
                None => problems.push(format!("`{from}` uses `{to}`, which has no layer in layers.rs")),
            }
        }
    }
    assert!(
        problems.is_empty(),
        "layering of host/src:\n  {}",
        problems.join("\n  ")
    );
}

/// With every layer ordered, a cycle needs an upward use (refused above) or two modules of
/// one layer using each other, refused here.
#[test]
fn no_import_cycle_joins_two_modules() {
    let graph = uses(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let found = cycles(&graph);
    assert!(found.is_empty(), "import cycles among modules of host/src: {found:?}");
}

/// The files left out as test code are the ones declared `#[cfg(test)]`, and only those.
#[test]
fn test_only_files_are_the_cfg_test_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = test_only_files(&src);
    for file in ["testkit.rs", "layers.rs", "router/tests.rs", "stream/fuzz.rs"] {
        assert!(found.contains(&src.join(file)), "{file} is test code");
    }
    for file in ["router/mod.rs", "presence/mod.rs", "stream/writer.rs", "context.rs"] {
        assert!(!found.contains(&src.join(file)), "{file} is not test code");
    }
}

#[test]
fn the_cycle_check_finds_cycles() {
    let graph: BTreeMap<String, BTreeSet<String>> =
        [("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")]
            .into_iter()
            .fold(BTreeMap::new(), |mut g, (f, t)| {
                g.entry(f.to_string()).or_default().insert(t.to_string());
                g.entry(t.to_string()).or_default();
                g
            });
    assert_eq!(cycles(&graph), vec![vec!["a".to_string(), "b".into(), "c".into()]]);
}
