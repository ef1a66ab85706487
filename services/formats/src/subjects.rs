//! Every NATS subject, JetStream stream, KV bucket and key of imagestreams, and
//! the token encoding that keeps names safe inside them.
//!
//! # Hierarchy
//!
//! `imagestreams.<kind>.<namespace>.<name>`, for example
//! `imagestreams.images.pushed.ns1.app` or `imagestreams.tags.changed.ns1.app`.
//!
//! # Token encoding
//!
//! Stream names may contain `.` (OpenShift allows `ruby.v2`), and a NATS token
//! must hold none of `.`, `*`, `>` or whitespace. Every namespace and name is
//! therefore written as one token with [`encode_token`]:
//!
//! - the bytes `a-z`, `A-Z`, `0-9`, `-` and `_` stand for themselves;
//! - every other byte of the UTF-8 text becomes `=XX`, two upper-case hex digits
//!   (so `=` itself is `=3D`, `.` is `=2E`);
//! - the empty string becomes `=` alone.
//!
//! The encoding is injective and [`decode_token`] reverses it for every string,
//! and the alphabet (`A-Za-z0-9-_=`) is also valid in JetStream KV keys, so the
//! same tokens name KV keys. Valid namespaces (DNS-1123 labels) are unchanged,
//! and a valid stream name only changes where it holds a `.`:
//! `ruby.v2` → `ruby=2Ev2`.

use std::fmt::Write as _;

/// Prefix of every subject.
pub const ROOT: &str = "imagestreams";

/// JetStream stream holding image events (`imagestreams.images.>`).
pub const STREAM_IMAGES: &str = "IMAGESTREAMS_IMAGES";
/// JetStream stream holding tag events (`imagestreams.tags.>`).
pub const STREAM_TAGS: &str = "IMAGESTREAMS_TAGS";
/// JetStream stream holding import requests and results (`imagestreams.imports.>`).
pub const STREAM_IMPORTS: &str = "IMAGESTREAMS_IMPORTS";
/// JetStream stream holding build and deployment requests (`imagestreams.builds.>`, `imagestreams.deployments.>`).
pub const STREAM_TRIGGERS: &str = "IMAGESTREAMS_TRIGGERS";
/// JetStream stream holding the events a consumer could never apply
/// (`imagestreams.deadletters.>`), kept for an operator to inspect or replay.
pub const STREAM_DEAD_LETTERS: &str = "IMAGESTREAMS_DEAD_LETTERS";

/// KV bucket holding one ImageStream per key (see [`stream_key`]).
pub const BUCKET_STREAMS: &str = "imagestreams";

/// Subject kinds: the second and third tokens of a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `ImagePushed`.
    ImagesPushed,
    /// `ImageDeleted`.
    ImagesDeleted,
    /// `ImageRecorded`: a pushed image's metadata was read and recorded.
    ImagesRecorded,
    /// `TagsChanged`.
    TagsChanged,
    /// `ImportRequested`: a webhook receiver's verified delivery, asking for
    /// the tags of `<ns>` that follow a repository to be imported again
    /// (`<name>` is the receiver's). Imports asked on demand go over
    /// request-reply instead, and every import is announced as `TagsChanged`.
    ImportsRequested,
    /// Import results: declared, never published (see [`Kind::ImportsRequested`]).
    ImportsCompleted,
    /// `BuildRequested`.
    BuildsRequested,
    /// `DeploymentRequested`.
    DeploymentsRequested,
    /// An event a consumer could never apply, as it was received (payload
    /// and headers), with the reason in the `Imagestreams-Dead-Letter-Reason`
    /// header; `<ns>.<name>` are those of the stream it was for.
    DeadLettered,
}

impl Kind {
    /// The kinds the services publish: the event contract,
    /// `proto/asyncapi.yaml` (a test holds the two together).
    pub const PUBLISHED: [Kind; 8] = [
        Kind::ImagesPushed,
        Kind::ImagesDeleted,
        Kind::ImagesRecorded,
        Kind::TagsChanged,
        Kind::ImportsRequested,
        Kind::BuildsRequested,
        Kind::DeploymentsRequested,
        Kind::DeadLettered,
    ];

    /// Every kind, for tests and topology.
    pub const ALL: [Kind; 9] = [
        Kind::ImagesPushed,
        Kind::ImagesDeleted,
        Kind::ImagesRecorded,
        Kind::TagsChanged,
        Kind::ImportsRequested,
        Kind::ImportsCompleted,
        Kind::BuildsRequested,
        Kind::DeploymentsRequested,
        Kind::DeadLettered,
    ];

    /// The kind's tokens, e.g. `images.pushed`.
    pub fn tokens(self) -> &'static str {
        match self {
            Kind::ImagesPushed => "images.pushed",
            Kind::ImagesDeleted => "images.deleted",
            Kind::ImagesRecorded => "images.recorded",
            Kind::TagsChanged => "tags.changed",
            Kind::ImportsRequested => "imports.requested",
            Kind::ImportsCompleted => "imports.completed",
            Kind::BuildsRequested => "builds.requested",
            Kind::DeploymentsRequested => "deployments.requested",
            Kind::DeadLettered => "deadletters.events",
        }
    }

    /// The JetStream stream that stores this kind.
    pub fn stream(self) -> &'static str {
        match self {
            Kind::ImagesPushed | Kind::ImagesDeleted | Kind::ImagesRecorded => STREAM_IMAGES,
            Kind::TagsChanged => STREAM_TAGS,
            Kind::ImportsRequested | Kind::ImportsCompleted => STREAM_IMPORTS,
            Kind::BuildsRequested | Kind::DeploymentsRequested => STREAM_TRIGGERS,
            Kind::DeadLettered => STREAM_DEAD_LETTERS,
        }
    }

    /// The subject of one object: `imagestreams.<kind>.<ns>.<name>`.
    pub fn subject(self, namespace: &str, name: &str) -> String {
        format!(
            "{ROOT}.{}.{}.{}",
            self.tokens(),
            encode_token(namespace),
            encode_token(name)
        )
    }

    /// A filter for every object of one namespace: `imagestreams.<kind>.<ns>.*`.
    pub fn namespace_filter(self, namespace: &str) -> String {
        format!("{ROOT}.{}.{}.*", self.tokens(), encode_token(namespace))
    }

    /// A filter for every object: `imagestreams.<kind>.*.*`.
    pub fn all_filter(self) -> String {
        format!("{ROOT}.{}.*.*", self.tokens())
    }

    /// Splits a subject of this kind back into `(namespace, name)`.
    pub fn parse(self, subject: &str) -> Option<(String, String)> {
        let rest = subject
            .strip_prefix(ROOT)?
            .strip_prefix('.')?
            .strip_prefix(self.tokens())?
            .strip_prefix('.')?;
        let (ns, name) = rest.split_once('.')?;
        if name.contains('.') {
            return None;
        }
        Some((decode_token(ns)?, decode_token(name)?))
    }
}

/// The subjects a JetStream stream captures.
pub fn stream_subjects(stream: &str) -> Vec<String> {
    let mut tokens: Vec<&str> = Kind::ALL
        .iter()
        .filter(|k| k.stream() == stream)
        .map(|k| k.tokens().split('.').next().unwrap_or_default())
        .collect();
    tokens.dedup();
    tokens
        .into_iter()
        .map(|first| format!("{ROOT}.{first}.>"))
        .collect()
}

/// Every JetStream stream of imagestreams.
pub const STREAMS: [&str; 5] = [
    STREAM_IMAGES,
    STREAM_TAGS,
    STREAM_IMPORTS,
    STREAM_TRIGGERS,
    STREAM_DEAD_LETTERS,
];

/// Request-reply subjects of the stream-store API (core NATS, queue group
/// [`STORE_QUEUE`]): `imagestreams.api.store.<op>`.
pub fn store_api(op: &str) -> String {
    format!("{ROOT}.api.store.{op}")
}

/// Queue group of the stream-store API responders.
pub const STORE_QUEUE: &str = "stream-store";

/// The KV key of one stream: `<ns>.<name>`, both encoded.
pub fn stream_key(namespace: &str, name: &str) -> String {
    format!("{}.{}", encode_token(namespace), encode_token(name))
}

/// The KV key filter of one namespace: `<ns>.*`.
pub fn namespace_keys(namespace: &str) -> String {
    format!("{}.*", encode_token(namespace))
}

/// The KV key of one tag's record in a stream: `<ns>.<name>.<tag>`, each
/// encoded. A stream is its [`stream_key`] (the header: metadata, spec,
/// bookkeeping) plus one such key per tag in its status.
pub fn tag_key(namespace: &str, name: &str, tag: &str) -> String {
    format!("{}.{}", stream_key(namespace, name), encode_token(tag))
}

/// The KV key filter of one stream's tag records: `<ns>.<name>.*`.
pub fn stream_tag_keys(namespace: &str, name: &str) -> String {
    format!("{}.*", stream_key(namespace, name))
}

/// What a key of the streams bucket holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketKey {
    /// The header of stream `(namespace, name)`.
    Stream(String, String),
    /// The record of one tag of stream `(namespace, name)`.
    Tag(String, String, String),
}

/// Parses a key of the streams bucket ([`stream_key`] or [`tag_key`]).
pub fn parse_bucket_key(key: &str) -> Option<BucketKey> {
    let mut tokens = key.split('.');
    let (ns, name) = (tokens.next()?, tokens.next()?);
    let (ns, name) = (decode_token(ns)?, decode_token(name)?);
    match (tokens.next(), tokens.next()) {
        (None, _) => Some(BucketKey::Stream(ns, name)),
        (Some(tag), None) => Some(BucketKey::Tag(ns, name, decode_token(tag)?)),
        _ => None,
    }
}

/// Splits a KV key from [`stream_key`] back into `(namespace, name)`.
pub fn parse_stream_key(key: &str) -> Option<(String, String)> {
    let (ns, name) = key.split_once('.')?;
    if name.contains('.') {
        return None;
    }
    Some((decode_token(ns)?, decode_token(name)?))
}

/// Object store of request and reply payloads larger than a NATS message,
/// each read once by its receiver (and expiring if not).
pub const BUCKET_PAYLOADS: &str = "imagestreams-payloads";
/// KV bucket holding one trigger per key `<ns>.<name>` (see [`trigger_key`]);
/// the trigger service is its single writer.
pub const BUCKET_TRIGGERS: &str = "imagestreams-triggers";
/// KV bucket holding one firing (a Build or a Deployment) per key
/// `<ns>.<trigger>.<firing id>` (see [`firing_key`]).
pub const BUCKET_FIRINGS: &str = "imagestreams-firings";
/// The durable consumer of `TagsChanged` that the trigger replicas share.
pub const DURABLE_TRIGGER: &str = "trigger";
/// Queue group of the trigger service's write API responders.
pub const TRIGGER_QUEUE: &str = "trigger";

/// Request-reply subjects of the trigger service's write API (core NATS, queue
/// group [`TRIGGER_QUEUE`]): `imagestreams.api.trigger.<op>`.
pub fn trigger_api(op: &str) -> String {
    format!("{ROOT}.api.trigger.{op}")
}

/// The KV key of one trigger: `<ns>.<name>`, both encoded.
pub fn trigger_key(namespace: &str, name: &str) -> String {
    stream_key(namespace, name)
}

/// The KV key of one firing: `<ns>.<trigger>.<id>`, each encoded.
pub fn firing_key(namespace: &str, trigger: &str, id: &str) -> String {
    format!(
        "{}.{}.{}",
        encode_token(namespace),
        encode_token(trigger),
        encode_token(id)
    )
}

/// The KV key filter of the firings of one namespace (all when `None`) and
/// one trigger (all when `None`).
pub fn firing_keys(namespace: Option<&str>, trigger: Option<&str>) -> String {
    match (namespace, trigger) {
        (Some(ns), Some(t)) => format!("{}.{}.*", encode_token(ns), encode_token(t)),
        (Some(ns), None) => format!("{}.*.*", encode_token(ns)),
        (None, Some(t)) => format!("*.{}.*", encode_token(t)),
        (None, None) => "*.*.*".to_owned(),
    }
}

/// Queue group of the tag-syncer's request-reply API (import-image and secrets).
pub const TAG_SYNCER_QUEUE: &str = "tag-syncer";

/// Request-reply subjects of the tag-syncer (core NATS, queue group
/// [`TAG_SYNCER_QUEUE`]): `imagestreams.api.tagsyncer.<op>`, op ∈ `import`,
/// `secrets.create`, `secrets.list`, `secrets.delete`.
pub fn tag_syncer_api(op: &str) -> String {
    format!("{ROOT}.api.tagsyncer.{op}")
}

/// KV bucket of per-namespace registry secrets, one per key `<ns>.<name>`,
/// each value encrypted (XChaCha20-Poly1305) with the key bound to its KV key.
pub const BUCKET_REGISTRY_SECRETS: &str = "imagestreams-registry-secrets";
/// KV bucket of the import schedule: `<ns>.<name>` → next run of the
/// stream's scheduled tags (a compare-and-swap lease per stream per interval).
pub const BUCKET_IMPORT_SCHEDULE: &str = "imagestreams-import-schedule";
/// KV bucket of the cluster-wide scheduled-import counters, one per minute
/// (`m<unix minute>`), expiring on their own.
pub const BUCKET_IMPORT_RATE: &str = "imagestreams-import-rate";
/// KV bucket of image metadata: `<algorithm>.<hex>` (a manifest digest with
/// `.` for `:`) → the image record, written once, never changed.
pub const BUCKET_IMAGES: &str = "imagestreams-images";

/// KV bucket holding webhook receivers: one per key `<namespace>.<name>`,
/// and the index of their URL ids under `_ids.<id>`.
pub const BUCKET_RECEIVERS: &str = "imagestreams-receivers";
/// The durable consumer of the streams bucket that the tag-syncer replicas
/// share, to import streams when they are created or their spec asks for it.
pub const DURABLE_TAG_SYNCER: &str = "tag-syncer";

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Encodes any string as one subject token (see the module docs).
pub fn encode_token(s: &str) -> String {
    if s.is_empty() {
        return "=".to_owned();
    }
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if is_plain(b) {
            out.push(b as char);
        } else {
            // can't fail: writing to a String
            let _ = write!(out, "={b:02X}");
        }
    }
    out
}

/// Decodes a token made by [`encode_token`]; `None` when it is not one.
pub fn decode_token(token: &str) -> Option<String> {
    if token == "=" {
        return Some(String::new());
    }
    if token.is_empty() {
        return None;
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if is_plain(b) {
            out.push(b);
            i += 1;
        } else if b == b'=' {
            let hex = token.get(i + 1..i + 3)?;
            if !hex
                .bytes()
                .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(&h))
            {
                return None;
            }
            let v = u8::from_str_radix(hex, 16).ok()?;
            if is_plain(v) {
                // a plain byte is never escaped: the encoding is canonical
                return None;
            }
            out.push(v);
            i += 3;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn token_is_safe(t: &str) -> bool {
        !t.is_empty()
            && !t
                .chars()
                .any(|c| c == '.' || c == '*' || c == '>' || c.is_whitespace())
    }

    #[test]
    fn plain_names_are_unchanged() {
        assert_eq!(encode_token("ns1"), "ns1");
        assert_eq!(encode_token("my-app_2"), "my-app_2");
        assert_eq!(encode_token("ruby.v2"), "ruby=2Ev2");
        assert_eq!(encode_token(""), "=");
        assert_eq!(encode_token("a=b"), "a=3Db");
    }

    #[test]
    fn subjects_follow_the_hierarchy() {
        assert_eq!(
            Kind::ImagesPushed.subject("ns", "app"),
            "imagestreams.images.pushed.ns.app"
        );
        assert_eq!(
            Kind::TagsChanged.subject("ns", "app.v2"),
            "imagestreams.tags.changed.ns.app=2Ev2"
        );
        assert_eq!(
            Kind::TagsChanged.parse("imagestreams.tags.changed.ns.app=2Ev2"),
            Some(("ns".into(), "app.v2".into()))
        );
        assert_eq!(
            Kind::TagsChanged.parse("imagestreams.images.pushed.ns.app"),
            None
        );
        assert_eq!(
            stream_subjects(STREAM_IMAGES),
            vec!["imagestreams.images.>".to_owned()]
        );
        assert_eq!(
            stream_subjects(STREAM_TRIGGERS),
            vec![
                "imagestreams.builds.>".to_owned(),
                "imagestreams.deployments.>".to_owned()
            ]
        );
    }

    #[test]
    fn every_kind_belongs_to_a_declared_stream() {
        for kind in Kind::ALL {
            assert!(STREAMS.contains(&kind.stream()));
            let subject = kind.subject("a", "b");
            assert!(
                stream_subjects(kind.stream())
                    .iter()
                    .any(|f| subject.starts_with(f.trim_end_matches('>'))),
                "{subject} not captured by {}",
                kind.stream()
            );
        }
    }

    #[test]
    fn trigger_and_firing_keys_are_encoded() {
        assert_eq!(trigger_key("ns", "t.1"), "ns.t=2E1");
        assert_eq!(firing_key("ns", "t", "t-00ff"), "ns.t.t-00ff");
        assert_eq!(firing_keys(Some("ns"), Some("a.b")), "ns.a=2Eb.*");
        assert_eq!(firing_keys(Some("ns"), None), "ns.*.*");
        assert_eq!(firing_keys(None, None), "*.*.*");
        assert_eq!(trigger_api("create"), "imagestreams.api.trigger.create");
    }

    #[test]
    fn non_canonical_tokens_are_refused() {
        assert_eq!(decode_token("a=61"), None, "escaped plain byte");
        assert_eq!(decode_token("a=2e"), None, "lower-case hex");
        assert_eq!(decode_token("a=2"), None, "short escape");
        assert_eq!(decode_token("a.b"), None);
        assert_eq!(decode_token(""), None);
    }

    proptest! {
        #[test]
        fn any_string_round_trips(s in ".*") {
            let t = encode_token(&s);
            prop_assert!(token_is_safe(&t), "unsafe token {t:?}");
            prop_assert_eq!(decode_token(&t), Some(s));
        }

        #[test]
        fn valid_names_round_trip_through_subjects_and_keys(
            ns in "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?",
            name in "[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+){0,6}",
        ) {
            for kind in Kind::ALL {
                let subject = kind.subject(&ns, &name);
                prop_assert_eq!(subject.split('.').count(), 5);
                prop_assert!(subject.split('.').all(token_is_safe));
                prop_assert_eq!(kind.parse(&subject), Some((ns.clone(), name.clone())));
            }
            let key = stream_key(&ns, &name);
            prop_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_=.".contains(&b)));
            prop_assert_eq!(parse_stream_key(&key), Some((ns.clone(), name.clone())));
            prop_assert_eq!(
                parse_bucket_key(&key),
                Some(BucketKey::Stream(ns.clone(), name.clone()))
            );
            let tag = format!("{name}.v1");
            prop_assert_eq!(
                parse_bucket_key(&tag_key(&ns, &name, &tag)),
                Some(BucketKey::Tag(ns.clone(), name.clone(), tag.clone()))
            );
            prop_assert_eq!(parse_stream_key(&tag_key(&ns, &name, &tag)), None);
        }
    }
}
