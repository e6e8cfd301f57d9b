//! No module circles: within each crate, sibling modules (the files of one folder, each with
//! what lies below it) must not name each other in a circle, so that every module can be read
//! with only the ones below it in mind. The one circle allowed is `ir` <-> `ops` in graph: the
//! graph stores operations, and operations build nodes.
//!
//! `cargo test -p dlcli --test module_cycles -- --nocapture` prints each crate's edges.
//!
//! A module's references are the paths it names through `crate::`, `super::` and `self::`
//! (in `use` trees and in code, not a macro's `$crate::`), outside its `#[cfg(test)]` tests
//! and test-only files. A
//! reference from a module to one of its own ancestors or descendants is not an edge here:
//! a folder's `mod.rs` re-exports its children, and they use what it declares.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module by its path from the crate root (`["ops", "conv"]`).
type ModPath = Vec<String>;

/// Every module of the crate whose sources are in `src`, with its file.
fn modules(src: &Path) -> BTreeMap<ModPath, PathBuf> {
    let mut found = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: ModPath = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                parts.pop();
            }
            found.insert(parts, path);
        }
    }
    found
}

/// The source without its test code: from a `#[cfg(test)]` item to the end of the file (tests
/// come last, by convention), and the names of child modules declared test-only
/// (`#[cfg(test)] mod fuzz;`).
fn product_code(text: &str) -> (String, Vec<String>) {
    let mut code = String::new();
    let mut test_children = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" {
            let next = lines.peek().map(|l| l.trim()).unwrap_or("");
            match next.strip_prefix("mod ").and_then(|rest| rest.strip_suffix(';')) {
                Some(child) => {
                    test_children.push(child.to_string());
                    lines.next();
                    continue;
                }
                None => break,
            }
        }
        // Comments name modules in prose.
        let line = line.split("//").next().unwrap_or("");
        code.push_str(line);
        code.push('\n');
    }
    (code, test_children)
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The paths of a `use` tree such as `crate::{a, b::{self, c}}`, each as its segments.
fn use_tree(tree: &str) -> Vec<Vec<String>> {
    // `c as d` names c: drop each ` as d`, then the white space.
    let words: Vec<&str> = tree.split_whitespace().collect();
    let mut kept = String::new();
    let mut i = 0;
    while i < words.len() {
        if words[i] == "as" && i + 1 < words.len() {
            let rest = words[i + 1].trim_start_matches(is_ident);
            kept.push_str(rest);
            i += 2;
            continue;
        }
        kept.push_str(words[i]);
        i += 1;
    }
    let tree = kept;
    let mut out = Vec::new();
    expand(&tree, &mut Vec::new(), &mut out);
    out
}

fn expand(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match tree.find('{') {
        Some(open) => {
            let head = &tree[..open];
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            let added: Vec<String> = head.split("::").filter(|s| !s.is_empty()).map(String::from).collect();
            let depth = prefix.len();
            prefix.extend(added);
            for part in split_top_level(inner) {
                expand(part, prefix, out);
            }
            prefix.truncate(depth);
        }
        None => {
            let mut path = prefix.clone();
            path.extend(tree.split("::").filter(|s| !s.is_empty() && *s != "self").map(String::from));
            out.push(path);
        }
    }
}

/// `a, b::{c, d}, e` split at the commas outside braces.
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

/// The paths that `code` names from `crate`, `super` or `self`, as segments starting with
/// that word.
fn references(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    // `use` statements, whose trees may branch.
    for statement in code.split(';') {
        let statement = statement.trim();
        let Some(at) = statement.find("use ") else { continue };
        let before = &statement[..at];
        if !before.is_empty() && !before.ends_with(char::is_whitespace) {
            continue;
        }
        let tree = statement[at + 4..].trim();
        if ["crate::", "super::", "self::"].iter().any(|p| tree.starts_with(p)) {
            paths.extend(use_tree(tree));
        }
    }
    // Paths in code: `crate::a::b`, `super::super::c`. A macro's `$crate::a` is not the
    // defining module's reference: the expansion belongs to each caller, whose own paths name
    // what it uses.
    for root in ["crate::", "super::", "self::"] {
        for (at, _) in code.match_indices(root) {
            if code[..at].chars().next_back().is_some_and(|c| is_ident(c) || c == '$') {
                continue;
            }
            let rest = &code[at..];
            let end = rest.find(|c: char| !(is_ident(c) || c == ':')).unwrap_or(rest.len());
            paths.push(rest[..end].split("::").filter(|s| !s.is_empty()).map(String::from).collect());
        }
    }
    paths
}

/// The deepest module that `path` (from module `from`) reaches.
fn resolve(path: &[String], from: &ModPath, known: &BTreeMap<ModPath, PathBuf>) -> Option<ModPath> {
    let mut segments = path.iter().peekable();
    let mut at: ModPath = match segments.peek().map(|s| s.as_str()) {
        Some("crate") => {
            segments.next();
            Vec::new()
        }
        Some("self") => {
            segments.next();
            from.clone()
        }
        Some("super") => from.clone(),
        _ => return None,
    };
    while segments.peek().is_some_and(|s| *s == "super") {
        segments.next();
        at.pop()?;
    }
    for segment in segments {
        let mut deeper = at.clone();
        deeper.push(segment.clone());
        if !known.contains_key(&deeper) {
            break;
        }
        at = deeper;
    }
    Some(at)
}

/// The edge between siblings that a reference from `from` to `to` makes: the children of
/// their deepest common ancestor on each side; none when one contains the other.
fn sibling_edge(from: &ModPath, to: &ModPath) -> Option<(ModPath, ModPath)> {
    let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
    if common == from.len() || common == to.len() {
        return None;
    }
    Some((from[..=common].to_vec(), to[..=common].to_vec()))
}

/// Sibling edges of the crate in `src`.
fn edges(src: &Path) -> BTreeSet<(ModPath, ModPath)> {
    let known = modules(src);
    let mut test_only: BTreeSet<ModPath> = BTreeSet::new();
    let mut sources = BTreeMap::new();
    for (module, file) in &known {
        let (code, children) = product_code(&std::fs::read_to_string(file).unwrap());
        for child in children {
            let mut path = module.clone();
            path.push(child);
            test_only.insert(path);
        }
        sources.insert(module.clone(), code);
    }
    let in_tests = |m: &ModPath| test_only.iter().any(|t| m.starts_with(t));
    let mut found = BTreeSet::new();
    for (module, code) in sources.iter().filter(|(m, _)| !in_tests(m)) {
        for path in references(code) {
            let Some(target) = resolve(&path, module, &known) else { continue };
            if let Some(edge) = sibling_edge(module, &target).filter(|(_, to)| !in_tests(to)) {
                found.insert(edge);
            }
        }
    }
    found
}

/// The strongly connected groups of more than one module (Tarjan's algorithm).
fn circles(edges: &BTreeSet<(ModPath, ModPath)>) -> Vec<Vec<ModPath>> {
    let nodes: BTreeSet<&ModPath> = edges.iter().flat_map(|(a, b)| [a, b]).collect();
    let nodes: Vec<&ModPath> = nodes.into_iter().collect();
    let index_of = |m: &ModPath| nodes.iter().position(|n| *n == m).unwrap();
    let mut next: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (a, b) in edges {
        next[index_of(a)].push(index_of(b));
    }
    struct Tarjan<'a> {
        next: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        stack: Vec<usize>,
        on_stack: Vec<bool>,
        counter: usize,
        groups: Vec<Vec<usize>>,
    }
    impl Tarjan<'_> {
        fn visit(&mut self, v: usize) {
            self.index[v] = Some(self.counter);
            self.low[v] = self.counter;
            self.counter += 1;
            self.stack.push(v);
            self.on_stack[v] = true;
            for &w in &self.next[v].clone() {
                match self.index[w] {
                    None => {
                        self.visit(w);
                        self.low[v] = self.low[v].min(self.low[w]);
                    }
                    Some(i) if self.on_stack[w] => self.low[v] = self.low[v].min(i),
                    Some(_) => {}
                }
            }
            if Some(self.low[v]) == self.index[v] {
                let mut group = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack[w] = false;
                    group.push(w);
                    if w == v {
                        break;
                    }
                }
                self.groups.push(group);
            }
        }
    }
    let n = nodes.len();
    let mut t = Tarjan {
        next: &next,
        index: vec![None; n],
        low: vec![0; n],
        stack: Vec::new(),
        on_stack: vec![false; n],
        counter: 0,
        groups: Vec::new(),
    };
    for v in 0..n {
        if t.index[v].is_none() {
            t.visit(v);
        }
    }
    let mut groups: Vec<Vec<ModPath>> = t
        .groups
        .into_iter()
        .filter(|g| g.len() > 1)
        .map(|g| {
            let mut g: Vec<ModPath> = g.into_iter().map(|i| nodes[i].clone()).collect();
            g.sort();
            g
        })
        .collect();
    groups.sort();
    groups
}

fn crate_src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name).join("src")
}

fn named(group: &[ModPath]) -> Vec<String> {
    group.iter().map(|m| m.join("::")).collect()
}

#[test]
fn no_module_circles_in_dlcli_graph_or_kernels() {
    let allowed: Vec<Vec<String>> = vec![vec!["ir".into(), "ops".into()]];
    let mut found = Vec::new();
    for name in ["kernels", "graph", "data", "explain", "dlcli"] {
        let edges = edges(&crate_src(name));
        println!("{name}: {} edges between sibling modules", edges.len());
        for (a, b) in &edges {
            println!("  {} -> {}", a.join("::"), b.join("::"));
        }
        for group in circles(&edges) {
            let group = named(&group);
            if !(name == "graph" && allowed.contains(&group)) {
                found.push(format!("{name}: {}", group.join(" <-> ")));
            }
        }
    }
    assert!(found.is_empty(), "module circles:\n  {}", found.join("\n  "));
}

/// The checker itself: it reads branching `use` trees and `super::` paths, and finds a circle
/// of three and none where references only go down.
#[test]
fn the_checker_reads_use_trees_and_finds_circles() {
    let paths = use_tree("crate::{a, b::{self, c as d}, super::e}");
    let want: Vec<Vec<String>> =
        [vec!["crate", "a"], vec!["crate", "b"], vec!["crate", "b", "c"], vec!["crate", "super", "e"]]
            .iter()
            .map(|p| p.iter().map(|s| s.to_string()).collect())
            .collect();
    assert_eq!(paths, want);
    let m = |s: &str| -> ModPath { s.split("::").filter(|p| !p.is_empty()).map(String::from).collect() };
    let circle: BTreeSet<_> = [(m("a"), m("b")), (m("b"), m("c")), (m("c"), m("a")), (m("c"), m("d"))].into();
    assert_eq!(circles(&circle), vec![vec![m("a"), m("b"), m("c")]]);
    let layered: BTreeSet<_> = [(m("a"), m("b")), (m("b"), m("c")), (m("a"), m("c"))].into();
    assert!(circles(&layered).is_empty());
    assert_eq!(sibling_edge(&m("ops::conv"), &m("ops")), None);
    assert_eq!(sibling_edge(&m("ops::conv"), &m("ir")), Some((m("ops"), m("ir"))));
    assert_eq!(sibling_edge(&m("x::a::q"), &m("x::b")), Some((m("x::a"), m("x::b"))));
}
