//! No import cycles between the modules of the core crate (`src/`) or of
//! the CLI crate (`cli/src/`).
//!
//! The graph is read from the sources: a module is a file (`config.rs`,
//! `gateway/mod.rs`, `gateway/sms/twilio.rs`), and it imports another when
//! one of its paths -- in a `use` or in code -- starts with `crate::`,
//! `super::`, `self::` or the name of a module it declares (`mod twilio;`,
//! then `twilio::send`), and resolves into that other file. Comments and
//! string literals are skipped; a file's inline modules (`mod tests {}`) are
//! part of it. The crate root (`lib.rs`) is left out: it declares every
//! module and dispatches to them, and the CLI's modules take their clap
//! arguments and `CliError` from it.
//!
//! `cargo test --test import_graph -- --nocapture` prints both graphs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module → the modules it imports.
type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn core_crate_has_no_import_cycles() {
    check("core crate (src/)", &root().join("src"));
}

#[test]
fn cli_crate_has_no_import_cycles() {
    check("CLI crate (cli/src/)", &root().join("cli/src"));
}

#[test]
fn a_cycle_is_found_and_named() {
    let graph = graph_of(&[
        ("", "mod a; mod b; mod c;"),
        ("a", "use crate::b::Thing; // crate::c::Nothing\n"),
        ("b", "pub fn f() { let _ = \"crate::c::x\"; super::c::g() }"),
        ("c", "use super::{a::{self, Other}};"),
        (
            "d",
            "mod e;\nfn h() { e::k() }\n#[cfg(test)]\nmod tests { use super::*; }",
        ),
        ("d::e", "use super::h;"),
    ]);
    assert_eq!(graph["a"], set(&["b"]), "comments are not imports");
    assert_eq!(graph["b"], set(&["c"]), "strings are not imports");
    assert_eq!(
        graph["d"],
        set(&["d::e"]),
        "a child named by its declaration"
    );
    let cycles = cycles(&graph);
    assert_eq!(cycles.len(), 2, "{cycles:?}");
    assert!(cycles.contains(&"a → b → c → a".to_string()), "{cycles:?}");
    assert!(cycles.contains(&"d → d::e → d".to_string()), "{cycles:?}");
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// Prints the graph of the crate at `src` and fails naming its cycles.
fn check(name: &str, src: &Path) {
    let mut files = Vec::new();
    collect(src, src, &mut files);
    let sources: Vec<(String, String)> = files
        .iter()
        .map(|(module, path)| {
            let text =
                std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (module.clone(), text)
        })
        .collect();
    let refs: Vec<(&str, &str)> = sources
        .iter()
        .map(|(m, t)| (m.as_str(), t.as_str()))
        .collect();
    let graph = graph_of(&refs);
    println!("Import graph of the {name}: module → modules it imports");
    for (module, imports) in &graph {
        let list: Vec<&str> = imports.iter().map(String::as_str).collect();
        println!("  {module} → {}", list.join(", "));
    }
    let cycles = cycles(&graph);
    assert!(
        cycles.is_empty(),
        "import cycles in the {name}:\n  {}",
        cycles.join("\n  ")
    );
}

/// Every `.rs` file under `dir` as (module path, file), without the crate
/// roots (`lib.rs`, `main.rs`).
fn collect(src: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(src, &path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let relative = path.strip_prefix(src).expect("under src");
        let mut parts: Vec<String> = relative
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        if parts == ["lib"] || parts == ["main"] {
            continue;
        }
        out.push((parts.join("::"), path));
    }
}

/// The graph of modules given as (module path, source); `""` is the crate
/// root, whose edges are dropped.
fn graph_of(sources: &[(&str, &str)]) -> Graph {
    let modules: BTreeSet<&str> = sources.iter().map(|(m, _)| *m).collect();
    let mut graph = Graph::new();
    for (module, text) in sources {
        if module.is_empty() {
            continue;
        }
        let imports = graph.entry(module.to_string()).or_default();
        for path in paths(module, &tokens(text)) {
            // The longest prefix of the path that is a module file.
            let target = (0..=path.len())
                .rev()
                .map(|n| path[..n].join("::"))
                .find(|p| modules.contains(p.as_str()));
            if let Some(target) = target
                && !target.is_empty()
                && target != *module
            {
                imports.insert(target);
            }
        }
    }
    graph
}

/// Identifiers and punctuation of Rust source, without comments, string
/// and character literals and lifetimes.
fn tokens(text: &str) -> Vec<String> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if ch == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = skip_string(&c, i + 1);
            out.push("\"\"".to_string());
        } else if (ch == 'r' || ch == 'b')
            && let Some(end) = raw_string_end(&c, i)
        {
            i = end;
            out.push("\"\"".to_string());
        } else if ch == '\'' {
            if next == Some('\\') {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                // A lifetime: drop its name too.
                i += 1;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(c[start..i].iter().collect());
        } else if ch == ':' && next == Some(':') {
            out.push("::".to_string());
            i += 2;
        } else if ch.is_whitespace() {
            i += 1;
        } else {
            out.push(ch.to_string());
            i += 1;
        }
    }
    out
}

/// The index after the `"` closing a string whose body starts at `i`.
fn skip_string(c: &[char], mut i: usize) -> usize {
    while i < c.len() {
        match c[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// For a raw or byte string starting at `i` (`r"`, `r#"`, `b"`, `br#"`),
/// the index after it.
fn raw_string_end(c: &[char], i: usize) -> Option<usize> {
    if i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_') {
        return None;
    }
    let mut j = i;
    if c[j] == 'b' {
        j += 1;
        if c.get(j) == Some(&'"') {
            return Some(skip_string(c, j + 1));
        }
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while c.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    if c.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < c.len() {
        if c[j] == '"' && (1..=hashes).all(|h| c.get(j + h) == Some(&'#')) {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(j)
}

/// Every path of `module`'s tokens that names something in this crate, as
/// absolute segments (`["gateway", "telegram", "TelegramClient"]`).
fn paths(module: &str, tokens: &[String]) -> Vec<Vec<String>> {
    let file: Vec<String> = module.split("::").map(str::to_string).collect();
    // Inline modules open at a brace depth: (name, depth).
    let mut inline: Vec<(String, usize)> = Vec::new();
    // Modules declared in each scope (`mod x;` or `mod x {`).
    let mut declared: Vec<BTreeSet<String>> = vec![BTreeSet::new()];
    let mut depth = 0;
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        let scope = |inline: &[(String, usize)]| -> Vec<String> {
            let mut s = file.clone();
            s.extend(inline.iter().map(|(n, _)| n.clone()));
            s
        };
        match t {
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                    declared.pop();
                }
            }
            "mod" if i + 2 < tokens.len() => {
                let name = tokens[i + 1].clone();
                if let Some(d) = declared.last_mut() {
                    d.insert(name.clone());
                }
                if tokens[i + 2] == "{" {
                    inline.push((name, depth));
                    declared.push(BTreeSet::new());
                    depth += 1;
                    i += 3;
                    continue;
                }
            }
            "use" => {
                let end = tokens[i..]
                    .iter()
                    .position(|t| t == ";")
                    .map_or(tokens.len(), |p| i + p);
                let here = scope(&inline);
                let mine = declared.last().cloned().unwrap_or_default();
                for tree in use_paths(&tokens[i + 1..end]) {
                    if let Some(p) = absolute(&here, &mine, &tree) {
                        out.push(p);
                    }
                }
                i = end + 1;
                continue;
            }
            _ => {}
        }
        // A path in code: `a::b::c` not preceded by `::`.
        let starts_path = tokens.get(i + 1).is_some_and(|n| n == "::")
            && (i == 0 || tokens[i - 1] != "::")
            && t.chars().all(|c| c.is_alphanumeric() || c == '_');
        if starts_path {
            let mut segments = vec![t.to_string()];
            let mut j = i + 1;
            while tokens.get(j).is_some_and(|n| n == "::")
                && tokens
                    .get(j + 1)
                    .is_some_and(|n| n.chars().all(|c| c.is_alphanumeric() || c == '_'))
            {
                segments.push(tokens[j + 1].clone());
                j += 2;
            }
            let here = scope(&inline);
            let mine = declared.last().cloned().unwrap_or_default();
            if let Some(p) = absolute(&here, &mine, &segments) {
                out.push(p);
            }
            i = j;
            continue;
        }
        i += 1;
    }
    out
}

/// A path as written in scope `here`, absolute; `None` for a path that
/// does not start in this crate (`std::`, another crate, a type's items).
fn absolute(here: &[String], declared: &BTreeSet<String>, path: &[String]) -> Option<Vec<String>> {
    let first = path.first()?;
    let mut out: Vec<String> = match first.as_str() {
        "crate" => Vec::new(),
        "self" | "super" => here.to_vec(),
        name if declared.contains(name) => here.to_vec(),
        _ => return None,
    };
    let mut rest = path;
    if first == "crate" || first == "self" {
        rest = &path[1..];
    }
    for segment in rest {
        if segment == "super" {
            out.pop()?;
        } else {
            out.push(segment.clone());
        }
    }
    Some(out)
}

/// The paths a `use` tree (tokens between `use` and `;`) brings in:
/// `crate::a::{b, c::{self, D}}` is `crate::a::b`, `crate::a::c`,
/// `crate::a::c::D`.
fn use_paths(tokens: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut i = 0;
    tree(tokens, &mut i, Vec::new(), &mut out);
    out
}

fn tree(tokens: &[String], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    while *i < tokens.len() {
        match tokens[*i].as_str() {
            "::" => *i += 1,
            "{" => {
                *i += 1;
                while *i < tokens.len() && tokens[*i] != "}" {
                    tree(tokens, i, path.clone(), out);
                    if tokens.get(*i).is_some_and(|t| t == ",") {
                        *i += 1;
                    }
                }
                *i += 1;
                return;
            }
            "," | "}" => break,
            "*" => {
                *i += 1;
                out.push(path.clone());
                return;
            }
            "as" => {
                // `x as y`: the path is x.
                *i += 2;
                break;
            }
            "self" if !path.is_empty() => *i += 1,
            name => {
                path.push(name.to_string());
                *i += 1;
            }
        }
    }
    if !path.is_empty() {
        out.push(path);
    }
}

/// Each strongly connected component of more than one module, as one
/// cycle through it: `a → b → c → a`.
fn cycles(graph: &Graph) -> Vec<String> {
    let nodes: Vec<&String> = graph
        .keys()
        .chain(graph.values().flatten())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut out = Vec::new();
    let mut seen: BTreeSet<&String> = BTreeSet::new();
    for start in nodes {
        if seen.contains(start) {
            continue;
        }
        // The component of `start`: what it reaches that reaches it back.
        let from = reach(graph, start, false);
        let to = reach(graph, start, true);
        let component: BTreeSet<&String> = from.intersection(&to).copied().collect();
        seen.extend(component.iter().copied());
        if component.len() < 2 {
            continue;
        }
        out.push(cycle_through(graph, start, &component));
    }
    out
}

/// The modules reachable from `start` (or that reach it, `backwards`).
fn reach<'a>(graph: &'a Graph, start: &'a String, backwards: bool) -> BTreeSet<&'a String> {
    let mut found = BTreeSet::from([start]);
    let mut todo = vec![start];
    while let Some(n) = todo.pop() {
        let next: Vec<&String> = if backwards {
            graph
                .iter()
                .filter(|(_, to)| to.contains(n))
                .map(|(from, _)| from)
                .collect()
        } else {
            graph.get(n).map(|s| s.iter().collect()).unwrap_or_default()
        };
        for m in next {
            if found.insert(m) {
                todo.push(m);
            }
        }
    }
    found
}

/// A shortest walk from `start` back to itself inside `component`, visiting
/// every module of the component it can (breadth first, then joined), as
/// text. Small components are the rule: the first closed walk is enough.
fn cycle_through(graph: &Graph, start: &String, component: &BTreeSet<&String>) -> String {
    // Breadth-first search for the shortest path start → ... → start.
    let mut parent: BTreeMap<&String, &String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    let mut end = None;
    while let Some(n) = queue.pop_front() {
        for m in graph.get(n).into_iter().flatten() {
            if !component.contains(m) {
                continue;
            }
            if m == start {
                end = Some(n);
                queue.clear();
                break;
            }
            if !parent.contains_key(m) {
                parent.insert(m, n);
                queue.push_back(m);
            }
        }
    }
    let mut walk = vec![start.as_str()];
    let mut n = end.expect("a component has a cycle");
    let mut back = Vec::new();
    while n != start {
        back.push(n.as_str());
        n = parent[n];
    }
    walk.extend(back.into_iter().rev());
    walk.push(start);
    let rest: Vec<&String> = component
        .iter()
        .filter(|m| !walk.contains(&m.as_str()))
        .copied()
        .collect();
    let mut text = walk.join(" → ");
    if !rest.is_empty() {
        let names: Vec<&str> = rest.iter().map(|s| s.as_str()).collect();
        text.push_str(&format!(" (same cycle: {})", names.join(", ")));
    }
    text
}
