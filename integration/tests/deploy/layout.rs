//! README's Layout table names every crate of the workspace, by its
//! directory, and nothing that is not one (issue 22): a newcomer reading it
//! finds every crate and its role.

use std::{collections::BTreeSet, path::Path, process::Command};

use imagestreams_integration::readme;

#[test]
fn the_readme_layout_lists_exactly_the_workspaces_crates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(&root)
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let root = std::fs::canonicalize(&root).expect("the workspace root");
    let crates: BTreeSet<String> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            let manifest = Path::new(p["manifest_path"].as_str().expect("a path"));
            let dir = manifest.parent().expect("a directory");
            let relative = dir.strip_prefix(&root).expect("inside the workspace");
            relative.to_string_lossy().trim_end_matches('/').to_owned()
        })
        .collect();
    let listed: BTreeSet<String> = readme::first_column(&readme::text(), "## Layout")
        .into_iter()
        .map(|path| path.trim_end_matches('/').to_owned())
        .collect();
    assert_eq!(
        listed, crates,
        "README's Layout (left) against cargo metadata's crates (right)"
    );
}
