//! The documents a newcomer reads first stay true: every link of the README and of `docs/`
//! leads somewhere (a file that exists, a heading that exists), and `docs/configuration.md`
//! lists exactly the settings the three programs read, no fewer and no more; `docs/architecture.md`
//! names every source file, and every file its "where to change what" names exists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_reflection::{ContainerFormat, Format, Registry, Tracer, TracerConfig};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e package sits in the workspace")
        .to_owned()
}

/// The README and every page under `docs/`.
fn documents() -> Vec<PathBuf> {
    let mut found = vec![workspace().join("README.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(workspace().join("docs"))
        .expect("docs/ exists")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    found.extend(pages);
    found
}

/// The text outside fenced code blocks and inline code spans: a `[x](y)` there is code, not a
/// link.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Every other backtick-delimited span is code.
        for (index, part) in line.split('`').enumerate() {
            if index % 2 == 0 {
                out.push_str(part);
            }
        }
        out.push('\n');
    }
    out
}

/// `(text, target)` of each Markdown link.
fn links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let end = after.find(')').unwrap_or(after.len());
        found.push(after[..end].to_owned());
        rest = &after[end..];
    }
    found
}

/// GitHub's anchor for a heading: lower case, spaces to hyphens, punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a document's headings (outside code blocks).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut found = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            found.insert(slug(line.trim_start_matches('#')));
        }
    }
    found
}

#[test]
fn every_link_of_the_readme_and_the_docs_leads_to_a_file_and_heading_that_exist() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for document in documents() {
        let text = std::fs::read_to_string(&document).unwrap();
        for target in links(&prose(&text)) {
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            checked += 1;
            let (file, anchor) = match target.split_once('#') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (target.as_str(), None),
            };
            let path = if file.is_empty() {
                document.clone()
            } else {
                document.parent().unwrap().join(file)
            };
            if !path.exists() {
                broken.push(format!("{}: `{target}`: no such file", document.display()));
                continue;
            }
            if let Some(anchor) = anchor {
                let headings = anchors(&std::fs::read_to_string(&path).unwrap_or_default());
                if !headings.contains(anchor) {
                    broken.push(format!(
                        "{}: `{target}`: no heading `#{anchor}` in {}",
                        document.display(),
                        path.display()
                    ));
                }
            }
        }
    }
    assert!(
        checked >= 20,
        "the documents link to each other ({checked} links seen)"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_reader_finds_links_outside_code_and_github_anchors() {
    let text = "see [a](docs/a.md#x) and `[b](not-a-link)`\n```\n[c](code)\n```\n[d](#two-words)";
    assert_eq!(links(&prose(text)), ["docs/a.md#x", "#two-words"]);
    assert_eq!(
        slug(" Clients file (`config/clients.toml`)"),
        "clients-file-configclientstoml"
    );
    assert_eq!(slug(" Two commands"), "two-commands");
}

#[test]
fn the_readme_is_a_front_page_of_at_most_250_lines() {
    let text = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let lines = text.lines().count();
    assert!(
        lines <= 250,
        "README.md has {lines} lines: move the depth to docs/"
    );
}

/// Every setting a settings type reads, as dotted keys (`limits.unproven.max_wait_ms`), traced
/// from its `Deserialize`: a nested section is a struct, an optional section (`Option<S>`) is
/// followed into `S`.
fn settings_of<T: for<'de> serde::Deserialize<'de>>() -> BTreeSet<String> {
    let mut tracer = Tracer::new(TracerConfig::default());
    let (root, _) = tracer
        .trace_simple_type::<T>()
        .expect("the settings type can be traced");
    // Enums (`client_auth`, `format`, ...) are leaves here: their variants need not be traced.
    let registry = tracer.registry_unchecked();
    let mut keys = BTreeSet::new();
    collect(&registry, &root, "", &mut keys);
    keys
}

fn collect(registry: &Registry, format: &Format, prefix: &str, keys: &mut BTreeSet<String>) {
    let struct_fields = |name: &str| match registry.get(name) {
        Some(ContainerFormat::Struct(fields)) => Some(fields),
        _ => None,
    };
    let inner = match format {
        Format::Option(inner) => inner.as_ref(),
        other => other,
    };
    match inner {
        Format::TypeName(name) if struct_fields(name).is_some() => {
            for field in struct_fields(name).unwrap() {
                let key = if prefix.is_empty() {
                    field.name.clone()
                } else {
                    format!("{prefix}.{}", field.name)
                };
                collect(registry, &field.value, &key, keys);
            }
        }
        _ => {
            keys.insert(prefix.to_owned());
        }
    }
}

/// The keys `configuration.md` lists under one program's heading: the backticked names in the
/// first column of its tables.
fn documented(program: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(workspace().join("docs/configuration.md")).unwrap();
    let heading = format!("## {program}\n");
    let start = text
        .find(&heading)
        .unwrap_or_else(|| panic!("configuration.md has a `## {program}` section"));
    let section = &text[start + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut keys = BTreeSet::new();
    for line in section.lines() {
        let Some(first) = line.strip_prefix("| ").and_then(|l| l.split(" |").next()) else {
            continue;
        };
        for (index, part) in first.split('`').enumerate() {
            if index % 2 == 1 {
                keys.insert(part.to_owned());
            }
        }
    }
    keys
}

fn assert_documented(program: &str, code: BTreeSet<String>) {
    assert!(
        code.len() >= 5,
        "{program}'s settings were traced: {code:?}"
    );
    let docs = documented(program);
    let missing: Vec<_> = code.difference(&docs).collect();
    let unknown: Vec<_> = docs.difference(&code).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "docs/configuration.md, `## {program}`: settings of the code not listed: {missing:?}; \
         listed but not settings: {unknown:?}"
    );
}

#[test]
fn configuration_md_lists_every_setting_of_dispatch_api_and_nothing_else() {
    assert_documented(
        "dispatch-api",
        settings_of::<dispatch_api::configuration::Settings>(),
    );
}

#[test]
fn configuration_md_lists_every_setting_of_route_worker_and_nothing_else() {
    assert_documented(
        "route-worker",
        settings_of::<route_worker::configuration::WorkerSettings>(),
    );
}

#[test]
fn configuration_md_lists_every_setting_of_dispatchctl_and_nothing_else() {
    assert_documented(
        "dispatchctl",
        settings_of::<dispatchctl::configuration::Settings>(),
    );
}

/// Every `.rs` file under `dir`, recursively.
fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn architecture_md_names_every_source_file_of_the_four_programs() {
    let map = std::fs::read_to_string(workspace().join("docs/architecture.md")).unwrap();
    let mut files = Vec::new();
    for program in [
        "dispatch-api",
        "route-worker",
        "dispatchctl",
        "devpki",
        "types",
        "tls",
    ] {
        sources(&workspace().join(program).join("src"), &mut files);
    }
    assert!(files.len() > 50, "{} files", files.len());
    let unnamed: Vec<String> = files
        .iter()
        .filter(|file| {
            let name = file.file_name().unwrap().to_str().unwrap();
            !map.contains(name)
        })
        .map(|file| {
            file.strip_prefix(workspace())
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    assert!(
        unnamed.is_empty(),
        "docs/architecture.md does not say what these are: {unnamed:?}"
    );
}

/// The workspace paths in backticks of `text`: `a/b.rs`, `docs/x.md`, `migrations/sqlite`.
fn named_paths(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| span.contains('/') && !span.contains(' ') && !span.starts_with('/'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_file_where_to_change_what_names_exists() {
    let map = std::fs::read_to_string(workspace().join("docs/architecture.md")).unwrap();
    let section = map
        .split("## Where to change what")
        .nth(1)
        .expect("docs/architecture.md has a \"Where to change what\"");
    let paths = named_paths(section);
    assert!(paths.len() > 15, "{paths:?}");
    let missing: Vec<&String> = paths
        .iter()
        .filter(|path| !workspace().join(path).exists())
        .collect();
    assert!(missing.is_empty(), "named but not there: {missing:?}");
    assert_eq!(
        named_paths("see `a/b.rs` and `not a path` and `docs/x.md`"),
        ["a/b.rs", "docs/x.md"]
    );
}
