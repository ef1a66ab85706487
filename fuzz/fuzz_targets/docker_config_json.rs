//! Fuzzes the tag-syncer's docker `config.json` reader
//! (`Keyring::from_docker_config_json`) and `normalize_server` on arbitrary
//! bytes: every `auths` entry that holds a credential is found again under
//! its own key, keys normalize idempotently, and `Debug` never depends on a
//! secret.
#![no_main]

use imagestreams_formats::credentials::{Credential, Keyring, normalize_server};
use imagestreams_formats::secret::Secret;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    // The bytes as a server key: normalization is idempotent.
    if let Ok(text) = std::str::from_utf8(data) {
        check_server(text);
    }

    let Ok(keyring) = Keyring::from_docker_config_json(data) else {
        return;
    };
    // Each key of `auths` that held a credential can be looked up.
    let value: Value =
        serde_json::from_slice(data).expect("an accepted config is a JSON value");
    // Docker's format is objects all the way down: nothing else is read.
    let top = value.as_object().expect("an accepted config is a JSON object");
    let auths = match top.get("auths") {
        Some(auths) => auths
            .as_object()
            .expect("an accepted config's auths is an object")
            .clone(),
        None => Map::new(),
    };
    assert!(
        keyring.len() <= auths.len(),
        "{} > {}",
        keyring.len(),
        auths.len()
    );
    let mut normalized: Vec<String> = Vec::new();
    for (server, entry) in &auths {
        check_server(server);
        // Entries without a credential are skipped, whatever their key.
        let entry = entry
            .as_object()
            .expect("an accepted config's auths entries are objects");
        if holds_credential(entry) {
            let key =
                normalize_server(server).expect("the key of an accepted credential normalizes");
            normalized.push(key.clone());
            let credential = keyring
                .lookup(&key)
                .unwrap_or_else(|| panic!("{server:?} ({key:?}) has no credential"));
            check_debug(credential);
            // A repository below the key gets the same credential or a more specific one.
            assert!(keyring.lookup(&format!("{key}/fuzz/repo")).is_some());
        }
    }
    normalized.sort();
    normalized.dedup();
    assert_eq!(keyring.len(), normalized.len(), "entries {normalized:?}");
    assert_eq!(keyring.is_empty(), normalized.is_empty());
    assert_eq!(keyring.overlaid_with(&keyring), keyring);
    assert_eq!(Keyring::new().overlaid_with(&keyring), keyring);
});

/// Whether the parser gives this entry a credential: an identity token, a
/// registry token, an `auth`, or a username with a password (each non-empty).
fn holds_credential(entry: &Map<String, Value>) -> bool {
    let present = |field: &str| {
        entry
            .get(field)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    present("identitytoken")
        || present("registrytoken")
        || present("auth")
        || (present("username") && present("password"))
}

fn check_server(server: &str) {
    if let Some(key) = normalize_server(server) {
        assert!(!key.is_empty());
        assert!(!key.ends_with('/'), "{server:?} → {key:?}");
        assert!(!key.contains(char::is_whitespace), "{server:?} → {key:?}");
        assert_eq!(
            normalize_server(&key).as_deref(),
            Some(key.as_str()),
            "{server:?} → {key:?} is not a fixed point"
        );
    }
}

/// `Debug` is the same with any other secret in place of the real one.
fn check_debug(credential: &Credential) {
    let other = Secret::new("\u{1}another secret\u{1}");
    let replaced = match credential {
        Credential::Basic { username, .. } => Credential::Basic {
            username: username.clone(),
            password: other,
        },
        Credential::IdentityToken { .. } => Credential::IdentityToken { token: other },
        Credential::RegistryToken { .. } => Credential::RegistryToken { token: other },
    };
    assert_eq!(format!("{credential:?}"), format!("{replaced:?}"));
}
