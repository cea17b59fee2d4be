//! The layout shows the architecture: `lib.rs` lists the modules bottom-up, and each module
//! uses only modules listed before it, so dependencies run one way and there is no import
//! circle. Read from the source, so a new `use crate::...` that breaks the order fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The `pub mod` lines of lib.rs, in order.
fn module_order() -> Vec<String> {
    let lib = std::fs::read_to_string(source_dir().join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|line| line.trim().strip_prefix("pub mod "))
        .map(|rest| rest.trim_end_matches(';').to_owned())
        .collect()
}

/// Every `.rs` file of a top-level module: `src/name.rs` and everything under `src/name/`.
fn files_of(module: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let single = source_dir().join(format!("{module}.rs"));
    if single.is_file() {
        files.push(single);
    }
    let mut dirs = vec![source_dir().join(module)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The top-level modules a piece of source names through `crate::`, in code and in doc links.
fn crate_references(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    for (index, _) in text.match_indices("crate::") {
        let rest = &text[index + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a, b::c, self}`: the first segment of each item.
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name = ident(item.trim());
                if !name.is_empty() && name != "self" {
                    found.insert(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn every_module_uses_only_modules_listed_before_it_in_lib_rs() {
    let order = module_order();
    assert!(order.len() >= 10, "lib.rs lists the modules: {order:?}");
    let mut violations = Vec::new();
    for (position, module) in order.iter().enumerate() {
        let files = files_of(module);
        assert!(!files.is_empty(), "module `{module}` has no source file");
        // A unit-test module (`tests.rs`) may build its inputs with a higher layer: the
        // registry's binding tests verify real certificates with `tls::Trust`. The rule is
        // about the code that ships.
        for file in files.into_iter().filter(|f| !f.ends_with("tests.rs")) {
            let text = std::fs::read_to_string(&file).unwrap();
            for used in crate_references(&text) {
                match order.iter().position(|m| *m == used) {
                    Some(at) if at < position || used == *module => {}
                    Some(_) => violations.push(format!(
                        "{} (module `{module}`) uses `{used}`, listed after it",
                        file.display()
                    )),
                    None => violations.push(format!(
                        "{} uses `crate::{used}`, which lib.rs does not list",
                        file.display()
                    )),
                }
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_reference_reader_sees_grouped_and_plain_paths() {
    let text = "use crate::{auth, storage::x, self};\nuse crate::tls::Y;\n/// [`crate::error`]";
    let found: Vec<_> = crate_references(text).into_iter().collect();
    assert_eq!(found, ["auth", "error", "storage", "tls"]);
}

/// The code of a file that ships: everything before its unit-test module, without comments (a
/// doc link names a module without depending on it).
fn shipped_code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let code = text.split("\n#[cfg(test)]").next().unwrap_or_default();
    code.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `.rs` file under `dir`, with its module path (`tls/trust.rs` is `["tls", "trust"]`,
/// `registry.rs` and `registry/mod.rs` are `["registry"]`, `lib.rs` and `main.rs` are the crate's root).
fn modules_under(dir: &Path) -> Vec<(Vec<String>, PathBuf)> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(current) = dirs.pop() {
        for entry in std::fs::read_dir(&current).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(dir).unwrap().with_extension("");
            let mut segments: Vec<String> = relative
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            if matches!(
                segments.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                segments.pop();
            }
            found.push((segments, path));
        }
    }
    found
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}
/// `a::b::{c, d::e}` → [a, b, c], [a, b, d, e] (one level of group is enough here).
fn expand(rest: &str, base: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = base;
    let mut rest = rest;
    loop {
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let item = item.trim();
                if item.is_empty() || item == "self" {
                    continue;
                }
                let mut each = path.clone();
                for segment in item.split("::") {
                    let name = ident(segment.trim());
                    if name.is_empty() {
                        break;
                    }
                    each.push(name.to_owned());
                }
                out.push(each);
            }
            return;
        }
        let name = ident(rest);
        if name.is_empty() {
            out.push(path);
            return;
        }
        path.push(name.to_owned());
        rest = &rest[name.len()..];
        match rest.strip_prefix("::") {
            Some(next) => rest = next,
            None => {
                out.push(path);
                return;
            }
        }
    }
}

/// The module paths a file's code reaches through `crate::`, `super::` and `self::`, each item
/// of a `{...}` group apart (`super::{store::now, Client}` is `store::now` and `Client`).
fn paths_used(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices("::") {
        let before = &code[..at];
        let start = before
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |i| i + 1);
        let prefix = &code[start..at];
        // Only where a path starts: `crate::`, `self::`, or a run of `super::`.
        let base: Vec<String> = match prefix {
            "crate" => Vec::new(),
            "self" => module.to_vec(),
            p if p.split("::").all(|s| s == "super") => {
                let ups = p.split("::").count();
                module[..module.len().saturating_sub(ups)].to_vec()
            }
            _ => continue,
        };
        // `super::super::x` is seen once, from its start.
        if code[at + 2..].starts_with("super::") {
            continue;
        }
        expand(&code[at + 2..], base, &mut found);
    }
    found
}

/// What each file re-exports: `(its module, the name) → the full path` of every item of a
/// `pub use` / `pub(crate) use` of its own submodules (`registry.rs`'s `pub use
/// store::Registry` makes `registry::Registry` the item of `registry/store.rs`).
fn reexports(modules: &[(Vec<String>, PathBuf)]) -> BTreeMap<(Vec<String>, String), Vec<String>> {
    let mut found = BTreeMap::new();
    for (module, path) in modules {
        let code = shipped_code(path);
        for statement in code.split(';') {
            let statement = statement.trim();
            let Some(rest) = ["pub use ", "pub(crate) use ", "pub(super) use "]
                .iter()
                .find_map(|lead| statement.strip_prefix(lead))
            else {
                continue;
            };
            let rest = rest.trim().strip_prefix("self::").unwrap_or(rest.trim());
            if rest.starts_with("crate::") || rest.starts_with("super::") {
                continue;
            }
            let mut paths = Vec::new();
            expand(
                &rest.replace(char::is_whitespace, ""),
                module.clone(),
                &mut paths,
            );
            for full in paths {
                if let Some(name) = full.last() {
                    found.insert((module.clone(), name.clone()), full.clone());
                }
            }
        }
    }
    found
}

/// The pairs of files of a crate that import each other. A module and its own submodules (a
/// file and the files under its directory) are one unit and not counted: a child using its
/// parent's types is how Rust splits a module.
fn import_circles(src: &Path) -> Vec<String> {
    let modules = modules_under(src);
    let file_of = |path: &[String]| -> Option<usize> {
        (0..=path.len())
            .rev()
            .find_map(|len| modules.iter().position(|(m, _)| m[..] == path[..len]))
    };
    let related = |a: &[String], b: &[String]| a.starts_with(b) || b.starts_with(a);
    let reexported = reexports(&modules);
    // Through a parent's re-export to the file that defines the item: `super::Registry` from
    // `registry/follow.rs` is `registry/store.rs`, not the parent.
    let resolve = |mut used: Vec<String>| {
        for _ in 0..4 {
            let Some(file) = file_of(&used) else { break };
            let depth = modules[file].0.len();
            let Some(name) = used.get(depth) else { break };
            let Some(target) = reexported.get(&(modules[file].0.clone(), name.clone())) else {
                break;
            };
            let mut next = target.clone();
            next.extend(used[depth + 1..].iter().cloned());
            used = next;
        }
        used
    };
    let mut edges = BTreeSet::new();
    for (index, (module, path)) in modules.iter().enumerate() {
        for used in paths_used(&shipped_code(path), module) {
            if let Some(target) = file_of(&resolve(used))
                && target != index
                && !related(module, &modules[target].0)
            {
                edges.insert((index, target));
            }
        }
    }
    edges
        .iter()
        .filter(|(a, b)| a < b && edges.contains(&(*b, *a)))
        .map(|(a, b)| {
            format!(
                "{} and {} import each other",
                modules[*a].1.display(),
                modules[*b].1.display()
            )
        })
        .collect()
}

#[test]
fn no_two_files_of_any_crate_of_the_workspace_import_each_other() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut circles = Vec::new();
    for krate in [
        "dispatch-api",
        "route-worker",
        "dispatchctl",
        "devpki",
        "types",
        "tls",
    ] {
        circles.extend(import_circles(&workspace.join(krate).join("src")));
    }
    assert!(circles.is_empty(), "{}", circles.join("\n"));
}

#[test]
fn the_circle_finder_sees_two_sibling_files_that_use_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir(src.join("tls")).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod tls;\n").unwrap();
    std::fs::write(src.join("tls/mod.rs"), "mod a;\nmod b;\npub struct T;\n").unwrap();
    std::fs::write(src.join("tls/a.rs"), "use super::b::B;\nuse super::T;\n").unwrap();
    std::fs::write(src.join("tls/b.rs"), "use crate::tls::{a::A, T};\n").unwrap();
    let circles = import_circles(src);
    assert_eq!(circles.len(), 1, "{circles:?}");
    assert!(circles[0].contains("a.rs") && circles[0].contains("b.rs"));
    // One way only is fine, and so is a child using its parent.
    std::fs::write(src.join("tls/b.rs"), "use super::T;\n").unwrap();
    assert!(import_circles(src).is_empty());
    // Through the parent's re-exports, it is still a circle: `super::B` is b.rs's.
    std::fs::write(
        src.join("tls/mod.rs"),
        "mod a;\nmod b;\npub use b::B;\npub(crate) use a::{A, Other};\npub struct T;\n",
    )
    .unwrap();
    std::fs::write(src.join("tls/a.rs"), "use super::{B, T};\npub struct A;\n").unwrap();
    std::fs::write(src.join("tls/b.rs"), "use crate::tls::A;\npub struct B;\n").unwrap();
    let circles = import_circles(src);
    assert_eq!(circles.len(), 1, "{circles:?}");
    assert!(circles[0].contains("a.rs") && circles[0].contains("b.rs"));
}

/// Every source file of the workspace's crates that ships (not a `tests.rs` of unit tests).
fn shipped_sources() -> Vec<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    [
        "dispatch-api",
        "route-worker",
        "dispatchctl",
        "devpki",
        "types",
        "tls",
    ]
    .iter()
    .flat_map(|krate| modules_under(&workspace.join(krate).join("src")))
    .map(|(_, path)| path)
    .filter(|path| !path.ends_with("tests.rs"))
    .collect()
}

#[test]
fn no_source_file_of_any_crate_of_the_workspace_is_over_400_lines_before_its_tests() {
    let mut long = Vec::new();
    for path in shipped_sources() {
        let text = std::fs::read_to_string(&path).unwrap();
        let lines = text
            .lines()
            .take_while(|line| !line.starts_with("#[cfg(test)]"))
            .count();
        if lines > 400 {
            long.push(format!("{}: {lines} lines", path.display()));
        }
    }
    assert!(
        long.is_empty(),
        "split these by what they do:\n{}",
        long.join("\n")
    );
}

/// The functions of `code` longer than `max` lines, from the line of `fn` to the line of its
/// closing brace, each as `name: lines`. Braces in comments, strings and char literals do not
/// count, nor does `fn` in them.
fn long_functions(code: &str, max: usize) -> Vec<String> {
    let bytes = code.as_bytes();
    let mut long = Vec::new();
    // Each open brace, with the function whose body it opens (if it does).
    let mut braces: Vec<Option<(String, usize)>> = Vec::new();
    // `fn name` seen, its body not yet opened; and the brackets open since.
    let mut pending: Option<(String, usize)> = None;
    let mut nesting = 0usize;
    let (mut at, mut line) = (0usize, 1usize);
    let skip_to = |from: usize, end: &str| code[from..].find(end).map_or(code.len(), |i| from + i);
    while at < bytes.len() {
        if !code.is_char_boundary(at) {
            at += 1;
            continue;
        }
        let rest = &code[at..];
        let word_start =
            at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        let next = if rest.starts_with("//") {
            skip_to(at, "\n")
        } else if rest.starts_with("/*") {
            skip_to(at + 2, "*/") + 2
        } else if rest.starts_with('"')
            || (word_start && (rest.starts_with("r\"") || rest.starts_with("r#")))
        {
            // A raw string ends with `"` and as many `#` as it began with; others at an
            // unescaped `"`.
            let hashes = rest[usize::from(rest.starts_with('r'))..]
                .chars()
                .take_while(|c| *c == '#')
                .count();
            if rest.starts_with('r') {
                let open = at + 1 + hashes + 1;
                skip_to(open, &format!("\"{}", "#".repeat(hashes))) + 1 + hashes
            } else {
                let mut end = at + 1;
                while end < bytes.len() && bytes[end] != b'"' {
                    end += if bytes[end] == b'\\' { 2 } else { 1 };
                }
                end + 1
            }
        } else if rest.starts_with("'\\") {
            // A char literal with an escape ('\'', '\u{7b}').
            at + 3 + rest[3..].find('\'').map_or(0, |end| end + 1)
        } else if rest.starts_with('\'') && rest.get(2..3) == Some("'") {
            // A char literal ('{'), not a lifetime ('a).
            at + 3
        } else if word_start && rest.starts_with("fn ") {
            let name: String = rest[3..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                pending = Some((name, line));
                nesting = 0;
            }
            at + 3
        } else {
            match bytes[at] {
                b'{' => braces.push(pending.take()),
                b'}' => {
                    if let Some(Some((name, start))) = braces.pop() {
                        let lines = line - start + 1;
                        if lines > max {
                            long.push(format!("{name}: {lines} lines"));
                        }
                    }
                }
                b'(' | b'[' => nesting += 1,
                b')' | b']' => nesting = nesting.saturating_sub(1),
                // A declaration without a body (in a trait, say).
                b';' if nesting == 0 => pending = None,
                _ => {}
            }
            at + 1
        };
        let next = next.min(bytes.len());
        line += bytes[at..next].iter().filter(|b| **b == b'\n').count();
        at = next;
    }
    long
}

#[test]
fn the_function_measure_counts_from_fn_to_its_closing_brace_past_braces_in_literals() {
    let code = "fn short() {\n    let s = \"}}\\\"\";\n    let c = '}';\n    let r = r#\"{\"#;\n}\n\
                fn long<'a>(x: &'a str) {\n    if x.is_empty() {\n        let y = '{'; // }\n    }\n\
                /* } */\n    let u = \"http://a\";\n}\n\
                fn declared(x: [u8; 2]);\n// fn not_one() {\n";
    assert_eq!(long_functions(code, 5), ["long: 7 lines"]);
    assert_eq!(long_functions(code, 4), ["short: 5 lines", "long: 7 lines"]);
}

#[test]
fn no_function_of_any_crate_of_the_workspace_is_over_100_lines_outside_tests() {
    let mut long = Vec::new();
    for path in shipped_sources() {
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("\n#[cfg(test)]").next().unwrap_or_default();
        for function in long_functions(code, 100) {
            long.push(format!("{}: {function}", path.display()));
        }
    }
    assert!(
        long.is_empty(),
        "split these into steps with names:\n{}",
        long.join("\n")
    );
}
