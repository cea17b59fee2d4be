//! The layout shows the architecture: `lib.rs` lists the modules bottom-up, and each module
//! uses only modules listed before it, so dependencies run one way and there is no import
//! circle. Read from the source, so a new `use crate::...` that breaks the order fails here.

use std::collections::BTreeSet;
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
