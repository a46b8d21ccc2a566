//! The crate's files import one way: no file reaches, through any chain of
//! imports, back to itself, and the engine never reaches the glue.
//!
//! Reads `src/` as text: every `use` (groups expanded), every path written
//! inline (`crate::a::b`, `super::c`), and every path that starts with a
//! child module's name is an edge from the file to the file that defines
//! the module it names. A `mod` declaration is not an edge: a parent
//! declaring its children does not depend on them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A file's module path (`["nginx", "conf", "loc"]`) and its text.
struct SourceFile {
    module: Vec<String>,
    text: String,
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src/");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The text without comments and string literals, which may hold paths
/// that are not imports.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal ('"', '\n'); lifetimes ('a) pass through.
            let end = text[i + 1..].find('\'').map_or(b.len(), |e| i + 2 + e);
            i = end;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// The code without `#[cfg(test)] mod NAME { ... }`: a file's unit tests
/// are the file's own (their `use super::*` is the file itself), not part
/// of the layering.
fn without_test_modules(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        let inline_mod = trimmed.starts_with("mod ")
            && trimmed
                .find(['{', ';'])
                .is_some_and(|i| trimmed.as_bytes()[i] == b'{');
        if !inline_mod {
            out.push_str("#[cfg(test)]");
            rest = after;
            continue;
        }
        let open = after.find('{').unwrap_or(0);
        let mut depth = 0;
        let mut end = after.len();
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `use` statements with their brace groups expanded into whole paths.
fn use_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = find_keyword(rest, "use") {
        let stmt_start = at + 3;
        let Some(end) = rest[stmt_start..].find(';') else {
            break;
        };
        // Words kept apart by one space (`a as b`), none around `::`.
        let stmt = rest[stmt_start..stmt_start + end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace(":: ", "::")
            .replace(" ::", "::");
        expand("", &stmt, &mut paths);
        rest = &rest[stmt_start + end + 1..];
    }
    paths
}

fn find_keyword(text: &str, word: &str) -> Option<usize> {
    let b = text.as_bytes();
    let mut from = 0;
    while let Some(pos) = text[from..].find(word) {
        let at = from + pos;
        let before_ok = at == 0 || !(b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_');
        let after = at + word.len();
        let after_ok = after < b.len() && b[after].is_ascii_whitespace();
        if before_ok && after_ok {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    match tree.find('{') {
        None => {
            let tree = tree.trim();
            let path = tree.split(" as ").next().unwrap_or(tree);
            out.push(format!("{prefix}{path}"));
        }
        Some(open) => {
            let head = tree[..open].trim();
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(&format!("{prefix}{head}"), &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            if start < inner.len() {
                expand(&format!("{prefix}{head}"), &inner[start..], out);
            }
        }
    }
}

/// Every `a::b::c` path written in the code (identifiers joined by `::`).
fn inline_paths(code: &str) -> Vec<String> {
    let b = code.as_bytes();
    let mut paths = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        if is_ident(b[i]) && (i == 0 || !(is_ident(b[i - 1]) || b[i - 1] == b':')) {
            let start = i;
            loop {
                while i < b.len() && is_ident(b[i]) {
                    i += 1;
                }
                if b[i..].starts_with(b"::") && i + 2 < b.len() && is_ident(b[i + 2]) {
                    i += 2;
                } else {
                    break;
                }
            }
            let path = &code[start..i];
            if path.contains("::") {
                paths.push(path.to_string());
            }
        } else {
            i += 1;
        }
    }
    paths
}

/// The file a path points into: the longest module prefix that is a file.
fn resolve(from: &[String], path: &str, modules: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    let mut parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
    // Relative paths start from the file's own module, in a `mod.rs` and a
    // `name.rs` alike.
    let here: Vec<String> = from.to_vec();
    let mut base: Vec<String> = match parts.first() {
        Some(&"crate") => {
            parts.remove(0);
            Vec::new()
        }
        Some(&"super") => {
            let mut base = here.clone();
            while parts.first() == Some(&"super") {
                parts.remove(0);
                base.pop();
            }
            base
        }
        Some(&"self") => {
            parts.remove(0);
            from.to_vec()
        }
        Some(first) => {
            let mut child = here.clone();
            child.push((*first).to_string());
            if !modules.contains(&child) {
                return None;
            }
            here
        }
        None => return None,
    };
    let mut found = modules.contains(&base).then(|| base.clone());
    for part in parts {
        base.push(part.to_string());
        if modules.contains(&base) {
            found = Some(base.clone());
        } else {
            break;
        }
    }
    found.filter(|m| m.as_slice() != from && !m.is_empty())
}

fn graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    // LAYERING_SRC checks another tree (an older commit's, say).
    let src = std::env::var_os("LAYERING_SRC").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        PathBuf::from,
    );
    let mut paths = Vec::new();
    collect(&src, &mut paths);
    let files: Vec<SourceFile> = paths
        .iter()
        .map(|p| SourceFile {
            module: module_of(&src, p),
            text: fs::read_to_string(p).expect("a source file"),
        })
        .collect();
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| f.module.clone()).collect();
    let mut edges = BTreeMap::new();
    for file in &files {
        let code = without_test_modules(&code_only(&file.text));
        let mut to = BTreeSet::new();
        for path in use_paths(&code).into_iter().chain(inline_paths(&code)) {
            if let Some(target) = resolve(&file.module, &path, &modules) {
                // A file's own submodules declared inline (`mod tests`)
                // are the file itself.
                if !target.starts_with(&file.module) || target.len() > file.module.len() {
                    to.insert(target);
                }
            }
        }
        edges.insert(file.module.clone(), to);
    }
    edges
}

fn name(m: &[String]) -> String {
    m.join("::")
}

/// One cycle, if the graph has any (depth-first search).
fn find_cycle(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        marks: &mut BTreeMap<Vec<String>, Mark>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        marks.insert(node.clone(), Mark::Open);
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let at = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle: Vec<String> = stack[at..].iter().map(|n| name(n)).collect();
                    cycle.push(name(next));
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(cycle) = visit(next, edges, marks, stack) {
                        return Some(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(node.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in edges.keys() {
        if marks.get(node).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(cycle) = visit(node, edges, &mut marks, &mut Vec::new()) {
                return Some(cycle);
            }
        }
    }
    None
}

#[test]
fn no_file_imports_itself_back() {
    let edges = graph();
    assert!(
        edges.len() > 40,
        "the graph has every source file: {}",
        edges.len()
    );
    if let Some(cycle) = find_cycle(&edges) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_engine_never_imports_the_glue() {
    for (from, to) in graph() {
        if from.first().map(String::as_str) != Some("engine") {
            continue;
        }
        for target in to {
            assert_ne!(
                target.first().map(String::as_str),
                Some("nginx"),
                "{} imports {}",
                name(&from),
                name(&target)
            );
        }
    }
}

#[test]
fn the_checker_sees_imports_and_cycles() {
    // The glue's top imports its configuration, which the graph must show,
    // or the tests above would pass on a graph with no edges.
    let edges = graph();
    let module = vec!["nginx".to_string(), "module".to_string()];
    let accessor: Vec<String> = ["nginx", "conf", "accessor"].map(String::from).to_vec();
    assert!(edges[&module].contains(&accessor), "{:?}", edges[&module]);
    let mut looped = edges.clone();
    looped.entry(accessor).or_default().insert(module);
    assert!(find_cycle(&looped).is_some());
}
