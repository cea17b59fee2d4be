//! Static checks of what ships: no secret or local state can enter an image.

use std::path::Path;

fn repo_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The source paths of every COPY/ADD instruction that reads the build context.
fn context_sources(dockerfile: &str) -> Vec<String> {
    let mut sources = Vec::new();
    for line in dockerfile.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        let Some(instruction) = words.next() else {
            continue;
        };
        if !instruction.eq_ignore_ascii_case("COPY") && !instruction.eq_ignore_ascii_case("ADD") {
            continue;
        }
        let args: Vec<&str> = words
            .filter(|w| !w.starts_with("--chown") && !w.starts_with("--chmod"))
            .collect();
        if args.first().is_some_and(|a| a.starts_with("--from")) {
            continue; // copies from a build stage, not from the context
        }
        sources.extend(
            args[..args.len().saturating_sub(1)]
                .iter()
                .map(|s| s.to_string()),
        );
    }
    sources
}

#[test]
fn no_dockerfile_copies_certificates_keys_or_data_into_an_image() {
    let dockerfile = repo_file("Dockerfile");
    let sources = context_sources(&dockerfile);
    assert!(!sources.is_empty(), "the Dockerfile copies something");
    for source in &sources {
        for forbidden in [
            ".dev-pki", "data", ".pem", ".key", ".p12", ".pfx", ".api-key", ".db",
        ] {
            assert!(
                !source.contains(forbidden),
                "the Dockerfile copies `{source}` ({forbidden})"
            );
        }
    }
}

#[test]
fn dockerignore_keeps_local_pki_and_data_out_of_the_build_context() {
    let ignore = repo_file(".dockerignore");
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for required in [
        ".dev-pki", "data", "**/*.pem", "**/*.key", "**/*.db", "target", ".git",
    ] {
        assert!(
            patterns.contains(&required),
            ".dockerignore lacks `{required}`"
        );
    }
    // A `COPY . .` is only safe because of the above; nothing may re-include secrets.
    for pattern in patterns.iter().filter(|p| p.starts_with('!')) {
        assert!(
            !pattern.contains("pki") && !pattern.contains("data"),
            "`{pattern}` re-includes local state"
        );
    }
}

#[test]
fn the_image_runs_as_a_non_root_user() {
    let dockerfile = repo_file("Dockerfile");
    let user = dockerfile
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with("USER"))
        .expect("a USER instruction");
    let who = user.split_whitespace().nth(1).unwrap();
    assert!(
        !who.starts_with("root") && !who.starts_with("0"),
        "USER {who}"
    );
}

#[test]
fn no_tracked_file_holds_a_private_key() {
    // The dev PKI is generated at run time; a committed key would be a leak.
    let output = std::process::Command::new("git")
        .args([
            "grep",
            "-l",
            "-E",
            "-e",
            "-----BEGIN ([A-Z]+ )?PRIVATE KEY-----",
            "--",
            ":!*.md",
            ":!tests/tests/packaging.rs",
        ])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .expect("git");
    // git grep exits 1 when nothing matches; anything else means the check did not run.
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "git grep failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let files = String::from_utf8_lossy(&output.stdout);
    assert!(
        files.trim().is_empty(),
        "tracked files hold private keys: {files}"
    );
}
