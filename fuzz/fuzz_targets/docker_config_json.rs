//! Fuzzes the tag-syncer's docker `config.json` reader
//! (`Keyring::from_docker_config_json`) and `normalize_server` on arbitrary
//! bytes: every `auths` entry that holds a credential is found again under
//! its own key, keys normalize idempotently, and `Debug` never depends on a
//! secret.
#![no_main]

use imagestreams_common::config::Secret;
use imagestreams_registry_client::{Credential, Keyring, normalize_server};
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
    // Each key of `auths` that held a credential can be looked up. (The
    // reader skips the fields it does not know without checking their strings
    // are UTF-8 or their escapes valid, so such a config is not a `Value`.)
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let auths = struct_fields(&value, &["auths"])
        .get("auths")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
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
        if holds_credential(entry) {
            let key =
                normalize_server(server).expect("the key of an accepted credential normalizes");
            normalized.push(key.clone());
            if known_whitespace_in_path(&key) {
                continue;
            }
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

/// The fields of a struct as serde reads it: from a JSON object, or (KNOWN,
/// see fuzz/README.md, "Findings") from a JSON array of its fields in
/// declaration order, which serde's derive also accepts: `[{"host": …}]` is a
/// config, `["dXNlcjpwYXNz"]` an entry with that `auth`.
fn struct_fields(value: &Value, names: &[&str]) -> Map<String, Value> {
    match value {
        Value::Object(map) => map.clone(),
        Value::Array(items) => names
            .iter()
            .zip(items)
            .map(|(name, item)| ((*name).to_owned(), item.clone()))
            .collect(),
        _ => Map::new(),
    }
}

/// Whether the parser gives this entry a credential: an identity token, a
/// registry token, an `auth`, or a username with a password (each non-empty).
fn holds_credential(entry: &Value) -> bool {
    let fields = struct_fields(
        entry,
        &[
            "auth",
            "username",
            "password",
            "identitytoken",
            "registrytoken",
        ],
    );
    let present = |field: &str| {
        fields
            .get(field)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    present("identitytoken")
        || present("registrytoken")
        || present("auth")
        || (present("username") && present("password"))
}

/// KNOWN, routed to the tag-syncer (fuzz/README.md, "Findings"):
/// `normalize_server` keeps whitespace inside the path, where the next
/// normalization trims it (`quay.io/org /` → `quay.io/org ` → `quay.io/org`),
/// so such a key is not a fixed point and `lookup` of its own key misses.
/// Until that is fixed, keys holding whitespace skip those two checks.
fn known_whitespace_in_path(key: &str) -> bool {
    key.chars().any(char::is_whitespace)
}

fn check_server(server: &str) {
    if let Some(key) = normalize_server(server) {
        assert!(!key.is_empty());
        assert!(!key.ends_with('/'), "{server:?} → {key:?}");
        if known_whitespace_in_path(&key) {
            return;
        }
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
