//! Fuzzes the subject-token codec of `imagestreams_formats::subjects`:
//! `encode_token` gives one safe, non-empty token that `decode_token` turns
//! back into the string, for every string; `decode_token` of anything never
//! panics and, when it accepts, the input is the one token of its result (the
//! encoding is canonical). Subjects and KV keys built from two strings split
//! back into them.
#![no_main]

use imagestreams_formats::subjects::{
    Kind, decode_token, encode_token, firing_key, parse_stream_key, stream_key, trigger_key,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Arbitrary bytes as a token: only UTF-8 can be one, so decode the lossy
    // text too (it holds U+FFFD where the bytes were not UTF-8).
    let lossy = String::from_utf8_lossy(data);
    check_decode(&lossy);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_encode(text);

    // Two strings, split at the first NUL: the subjects and keys of the pair.
    let (namespace, name) = text.split_once('\0').unwrap_or((text, ""));
    for kind in Kind::ALL {
        let subject = kind.subject(namespace, name);
        assert_eq!(subject.split('.').count(), 5, "{subject:?}");
        assert_eq!(
            kind.parse(&subject),
            Some((namespace.to_owned(), name.to_owned())),
            "{kind:?} subject {subject:?}"
        );
        for other in Kind::ALL {
            if other != kind {
                assert_eq!(other.parse(&subject), None, "{other:?} parses {subject:?}");
            }
        }
    }
    let key = stream_key(namespace, name);
    assert_eq!(
        parse_stream_key(&key),
        Some((namespace.to_owned(), name.to_owned())),
        "key {key:?}"
    );
    assert_eq!(trigger_key(namespace, name), key);
    let (trigger, id) = name.split_once('\0').unwrap_or((name, ""));
    let firing = firing_key(namespace, trigger, id);
    let parts: Vec<&str> = firing.split('.').collect();
    assert_eq!(parts.len(), 3, "firing key {firing:?}");
    assert_eq!(decode_token(parts[0]).as_deref(), Some(namespace));
    assert_eq!(decode_token(parts[1]).as_deref(), Some(trigger));
    assert_eq!(decode_token(parts[2]).as_deref(), Some(id));
});

fn check_encode(s: &str) {
    let token = encode_token(s);
    assert!(!token.is_empty(), "{s:?}: empty token");
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=')),
        "{s:?}: token {token:?} leaves the alphabet"
    );
    assert_eq!(
        decode_token(&token).as_deref(),
        Some(s),
        "{s:?}: token {token:?}"
    );
    // Plain strings (what valid namespaces are) are their own token.
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    {
        assert_eq!(token, s);
    }
}

fn check_decode(token: &str) {
    if let Some(decoded) = decode_token(token) {
        assert_eq!(
            encode_token(&decoded),
            token,
            "{token:?} decodes to {decoded:?}, which encodes otherwise"
        );
    }
}
