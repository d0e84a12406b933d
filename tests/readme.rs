//! The README's Rust snippets are the `examples/readme_*.rs` programs, verbatim: CI compiles
//! each with exactly the features its paragraph names, so a paste from the README compiles.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a test failure"
)]

const SNIPPETS: &[(&str, &str)] = &[
    ("examples/readme_quickstart.rs", "No feature needed"),
    (
        "examples/readme_sqlite.rs",
        "With `features = [\"sqlite\"]`",
    ),
    (
        "examples/readme_postgres.rs",
        "With `features = [\"postgres\"]`",
    ),
    ("examples/readme_axum.rs", "With `features = [\"axum\"]`"),
    ("examples/readme_expiry.rs", "No feature needed"),
];

fn read(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// The Rust code blocks of a Markdown text.
fn rust_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```rust") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn every_readme_snippet_is_a_compiled_example_under_its_stated_features() {
    let readme = read("README.md");
    let blocks = rust_blocks(&readme);
    assert_eq!(
        blocks.len(),
        SNIPPETS.len(),
        "every Rust block of the README is one of the compiled examples"
    );
    for (path, features) in SNIPPETS {
        let code = read(path);
        let at = blocks
            .iter()
            .position(|b| *b == code)
            .unwrap_or_else(|| panic!("README has no block equal to {path}"));
        // The paragraph before the block names the features it needs.
        let fence = readme.find(&format!("```rust\n{}", blocks[at])).unwrap();
        let before = &readme[..fence];
        let paragraph = before.trim_end().rsplit("\n\n").next().unwrap();
        assert!(
            paragraph.contains(features),
            "{path}: the paragraph before it must say `{features}`, says {paragraph:?}"
        );
    }
}

#[test]
fn the_snippet_list_matches_the_examples_that_exist() {
    let mut examples: Vec<String> =
        std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("readme_"))
            .map(|n| format!("examples/{n}"))
            .collect();
    examples.sort();
    let mut listed: Vec<String> = SNIPPETS.iter().map(|(p, _)| (*p).to_owned()).collect();
    listed.sort();
    assert_eq!(examples, listed);
}
