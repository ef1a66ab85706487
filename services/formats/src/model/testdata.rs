//! Test-only access to the seed documents and the openshift/library fixtures (`testdata/`).

use std::path::PathBuf;

fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata")
}

/// The bytes of `testdata/seed/<file>`.
pub(crate) fn seed(file: &str) -> Vec<u8> {
    let path = shared().join("seed").join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `testdata/fixtures/openshift-library/*.json`, as (file name, bytes), sorted by name.
pub(crate) fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = shared().join("fixtures/openshift-library");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}
