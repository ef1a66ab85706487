//! Fuzzes `Reference::parse_normalized` (Docker's `ParseNormalizedNamed`) on
//! arbitrary UTF-8: a parsed reference keeps the grammar's limits, its full
//! string parses back to it (also canonically), its familiar string parses
//! back to it unless upstream's familiar form is ambiguous, and the report
//! agrees with the accessors.
#![no_main]

use imagestreams_formats::reference::{
    DEFAULT_DOMAIN, ParseReport, REPOSITORY_NAME_TOTAL_LENGTH_MAX, Reference, is_valid_tag,
    validate_digest,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    check(input);
});

fn check(input: &str) {
    let report = ParseReport::of(input);
    assert_eq!(report.input, input);
    let reference = match Reference::parse_normalized(input) {
        Ok(reference) => reference,
        Err(e) => {
            assert!(!report.valid, "{input:?}");
            assert_eq!(report.error, Some(e.to_string()), "{input:?}");
            assert_eq!(input.parse::<Reference>(), Err(e), "{input:?}");
            return;
        }
    };

    // Limits and grammar of every part.
    let (domain, path) = (reference.domain(), reference.path());
    assert!(!domain.is_empty(), "{input:?}: empty domain");
    assert!(!path.is_empty(), "{input:?}: empty path");
    assert!(
        path.len() <= REPOSITORY_NAME_TOTAL_LENGTH_MAX,
        "{input:?}: path of {} bytes",
        path.len()
    );
    assert!(
        path.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'/')),
        "{input:?}: path {path:?}"
    );
    assert!(domain.is_ascii() && !domain.contains('/'), "{input:?}");
    assert_ne!(domain, "index.docker.io", "{input:?}: legacy domain kept");
    if domain == DEFAULT_DOMAIN {
        assert!(
            path.contains('/'),
            "{input:?}: docker.io path without a namespace"
        );
    }
    if let Some(tag) = reference.tag() {
        assert!(is_valid_tag(tag), "{input:?}: tag {tag:?}");
    }
    if let Some(digest) = reference.digest() {
        assert_eq!(validate_digest(digest), Ok(()), "{input:?}: digest");
    }
    assert_eq!(reference.name(), format!("{domain}/{path}"));

    // The full string names the same reference, and is canonical.
    let full = reference.to_string();
    assert_eq!(
        Reference::parse_normalized(&full).as_ref(),
        Ok(&reference),
        "{input:?}: reparse of {full:?}"
    );
    assert_eq!(
        Reference::parse_named(&full).as_ref(),
        Ok(&reference),
        "{input:?}: {full:?} is not canonical"
    );
    // Normalization is idempotent: a canonical input comes back unchanged.
    if input == full {
        assert_eq!(Reference::parse_named(input).as_ref(), Ok(&reference));
    }

    // The familiar string names the same reference, except where upstream's
    // familiar form is itself ambiguous (see `familiar_is_ambiguous`).
    let familiar = reference.familiar();
    if !familiar_is_ambiguous(&reference) {
        assert_eq!(
            Reference::parse_normalized(&familiar).as_ref(),
            Ok(&reference),
            "{input:?}: reparse of familiar {familiar:?}"
        );
    }
    let familiar_name = reference.familiar_name();
    assert!(familiar.starts_with(&familiar_name), "{input:?}");
    assert_eq!(
        reference.repository().familiar(),
        familiar_name,
        "{input:?}: familiar name"
    );

    // Dropping and setting tag and digest goes through the same grammar.
    let repository = reference.repository();
    assert_eq!((repository.tag(), repository.digest()), (None, None));
    assert_eq!(repository.to_string(), reference.name());
    let mut rebuilt = repository.clone();
    if let Some(tag) = reference.tag() {
        rebuilt = rebuilt.with_tag(tag).expect("a parsed tag is a valid tag");
    }
    if let Some(digest) = reference.digest() {
        rebuilt = rebuilt
            .with_digest(digest)
            .expect("a parsed digest is a valid digest");
    }
    assert_eq!(rebuilt, reference, "{input:?}: rebuilt from its parts");

    assert_eq!(
        report,
        ParseReport {
            input: input.to_owned(),
            valid: true,
            error: None,
            name: Some(reference.name()),
            domain: Some(domain.to_owned()),
            path: Some(path.to_owned()),
            tag: reference.tag().map(str::to_owned),
            digest: reference.digest().map(str::to_owned),
            familiar: Some(familiar),
        },
        "{input:?}: report"
    );
}

/// Upstream `FamiliarString` drops `docker.io/` (and `library/` before a
/// one-component path) without checking that the rest still reads as a
/// Docker Hub path, so two kinds of Docker Hub reference have a familiar form
/// that `ParseNormalizedNamed` reads differently (upstream does the same):
///
/// - the first path component looks like a domain (`localhost`, or holds a
///   `.`): `docker.io/foo.bar/app` is familiar `foo.bar/app`, on `foo.bar`;
/// - the familiar string is a 64-hex-digit image id:
///   `docker.io/library/<64 hex>` is familiar `<64 hex>`, refused as an id.
fn familiar_is_ambiguous(reference: &Reference) -> bool {
    if reference.domain() != DEFAULT_DOMAIN {
        return false;
    }
    let familiar_name = reference.familiar_name();
    let first = familiar_name.split('/').next().unwrap_or_default();
    let looks_like_domain =
        familiar_name.contains('/') && (first == "localhost" || first.contains(['.', ':']));
    let familiar = reference.familiar();
    let is_identifier = familiar.len() == 64
        && familiar
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    looks_like_domain || is_identifier
}
