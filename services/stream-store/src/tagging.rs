//! `oc tag` requests: parsing and checking a [`proto::TagRequest`] into a
//! [`TagCommand`], before anything is read or written.
//!
//! # Semantics (as `oc tag`)
//!
//! - SOURCE is `[ns/]stream:tag` (`ImageStreamTag`), `[ns/]stream@digest`
//!   (`ImageStreamImage`) or a pull spec (`DockerImage`). With no
//!   `source_kind`, the kind is detected as `oc` does: a registry host in
//!   front means `DockerImage`, `@` means `ImageStreamImage`, `:tag` means
//!   `ImageStreamTag`, anything else `DockerImage`. `source_kind` accepts
//!   `ImageStreamTag`/`istag`, `ImageStreamImage`/`isimage` and
//!   `DockerImage`/`docker`, in any case.
//! - Each DESTINATION is `[ns/]stream:tag`; the request's namespace is the
//!   default for both.
//! - `alias` (tracking) only works within one stream, and only from an
//!   `ImageStreamTag`; `scheduled` and `insecure` only for `DockerImage`
//!   sources; `delete` takes no source and no import flags.

use imagestreams_common::{
    error::ApiError,
    model::{
        FieldError, REFERENCE_POLICY_LOCAL, REFERENCE_POLICY_SOURCE, ValidationErrors,
        is_dns1123_label, is_valid_stream_name,
    },
    reference::{self, Reference},
};
use imagestreams_proto::v1 as proto;

/// A stream named by a tag request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamName {
    /// Its namespace (the request's when not written).
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// Where tagged images come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `[ns/]stream:tag`: the tag's current image (or the tag itself, with `alias`).
    StreamTag {
        /// The stream.
        stream: StreamName,
        /// Whether the namespace was written in the source.
        explicit_namespace: bool,
        /// The tag.
        tag: String,
    },
    /// `[ns/]stream@digest`: one image of a stream's history.
    StreamImage {
        /// The stream.
        stream: StreamName,
        /// Whether the namespace was written in the source.
        explicit_namespace: bool,
        /// The digest.
        digest: String,
    },
    /// A pull spec, as written.
    DockerImage(String),
}

/// One destination tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The stream (created when missing).
    pub stream: StreamName,
    /// The tag.
    pub tag: String,
}

/// A checked tag request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagCommand {
    /// The source; `None` when deleting.
    pub source: Option<Source>,
    /// The destinations, in request order.
    pub destinations: Vec<Destination>,
    /// Track the source tag instead of copying its current image.
    pub alias: bool,
    /// Set `reference: true` on the destination tags.
    pub reference: bool,
    /// Set `importPolicy.scheduled`.
    pub scheduled: bool,
    /// Set `importPolicy.insecure`.
    pub insecure: bool,
    /// Remove the destination tags.
    pub delete: bool,
    /// `referencePolicy.type` of the destination tags (`Source` or `Local`).
    pub reference_policy: &'static str,
}

impl TagCommand {
    /// The destination streams, each once, in the order first named, with
    /// their tags.
    pub fn by_stream(&self) -> Vec<(StreamName, Vec<String>)> {
        let mut groups: Vec<(StreamName, Vec<String>)> = Vec::new();
        for d in &self.destinations {
            match groups.iter_mut().find(|(s, _)| *s == d.stream) {
                Some((_, tags)) => {
                    if !tags.contains(&d.tag) {
                        tags.push(d.tag.clone());
                    }
                }
                None => groups.push((d.stream.clone(), vec![d.tag.clone()])),
            }
        }
        groups
    }
}

fn invalid(field: &str, value: &str, message: impl Into<String>) -> ApiError {
    ValidationErrors(vec![FieldError::invalid(field, value, message)]).into()
}

/// Splits `[ns/]rest` and checks the namespace and stream name of `rest`
/// (split off by `separator`).
fn parse_stream_part<'a>(
    field: &str,
    input: &'a str,
    default_namespace: &str,
    separator: char,
) -> Result<(StreamName, bool, &'a str), ApiError> {
    let (namespace, rest, explicit) = match input.split_once('/') {
        None => (default_namespace, input, false),
        Some((ns, rest)) => (ns, rest, true),
    };
    if explicit && !is_dns1123_label(namespace) {
        return Err(invalid(
            field,
            input,
            format!("invalid namespace {namespace:?}"),
        ));
    }
    let Some((name, suffix)) = rest.split_once(separator) else {
        let form = if separator == ':' {
            "<stream>:<tag>"
        } else {
            "<stream>@<digest>"
        };
        return Err(invalid(
            field,
            input,
            format!("must be of the form [<namespace>/]{form}"),
        ));
    };
    if !is_valid_stream_name(name) {
        return Err(invalid(
            field,
            input,
            format!("invalid image stream name {name:?}"),
        ));
    }
    Ok((
        StreamName {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        },
        explicit,
        suffix,
    ))
}

fn parse_stream_tag(
    field: &str,
    input: &str,
    namespace: &str,
) -> Result<(StreamName, bool, String), ApiError> {
    let (stream, explicit, tag) = parse_stream_part(field, input, namespace, ':')?;
    if !reference::is_valid_tag(tag) {
        return Err(invalid(field, input, format!("invalid tag {tag:?}")));
    }
    Ok((stream, explicit, tag.to_owned()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    StreamTag,
    StreamImage,
    DockerImage,
}

fn kind_of(source_kind: &str, source: &str) -> Result<Kind, ApiError> {
    match source_kind.to_ascii_lowercase().as_str() {
        "imagestreamtag" | "istag" => Ok(Kind::StreamTag),
        "imagestreamimage" | "isimage" => Ok(Kind::StreamImage),
        "dockerimage" | "docker" => Ok(Kind::DockerImage),
        "" => Ok(detect_kind(source)),
        _ => Err(ValidationErrors(vec![FieldError::not_supported(
            "sourceKind",
            source_kind,
            &["ImageStreamTag", "ImageStreamImage", "DockerImage"],
        )])
        .into()),
    }
}

/// `oc tag`'s detection: a registry host in front is a pull spec, then `@` is
/// an image of a stream, `:` a tag of one, and anything else a pull spec.
fn detect_kind(source: &str) -> Kind {
    let has_registry = source.split_once('/').is_some_and(|(first, _)| {
        first.contains('.') || first.contains(':') || first == "localhost"
    });
    if has_registry {
        Kind::DockerImage
    } else if source.contains('@') {
        Kind::StreamImage
    } else if source.contains(':') {
        Kind::StreamTag
    } else {
        Kind::DockerImage
    }
}

fn parse_source(request: &proto::TagRequest) -> Result<Source, ApiError> {
    let source = request.source.trim();
    if source.is_empty() {
        return Err(ValidationErrors(vec![FieldError::required("source", "")]).into());
    }
    Ok(match kind_of(&request.source_kind, source)? {
        Kind::StreamTag => {
            let (stream, explicit_namespace, tag) =
                parse_stream_tag("source", source, &request.namespace)?;
            Source::StreamTag {
                stream,
                explicit_namespace,
                tag,
            }
        }
        Kind::StreamImage => {
            let (stream, explicit_namespace, digest) =
                parse_stream_part("source", source, &request.namespace, '@')?;
            reference::validate_digest(digest)
                .map_err(|e| invalid("source", source, format!("invalid digest: {e}")))?;
            Source::StreamImage {
                stream,
                explicit_namespace,
                digest: digest.to_owned(),
            }
        }
        Kind::DockerImage => {
            Reference::parse_normalized(source)
                .map_err(|e| invalid("source", source, e.to_string()))?;
            Source::DockerImage(source.to_owned())
        }
    })
}

/// `oc tag --reference-policy`: `source` (the default) or `local`, in any case.
fn reference_policy(text: &str) -> Result<&'static str, ApiError> {
    match text.to_ascii_lowercase().as_str() {
        "" | "source" => Ok(REFERENCE_POLICY_SOURCE),
        "local" => Ok(REFERENCE_POLICY_LOCAL),
        _ => Err(invalid(
            "reference_policy",
            text,
            "supported values: source, local",
        )),
    }
}

/// Parses and checks a tag request; nothing is read yet.
pub fn parse(request: &proto::TagRequest) -> Result<TagCommand, ApiError> {
    if !is_dns1123_label(&request.namespace) {
        return Err(if request.namespace.is_empty() {
            ValidationErrors(vec![FieldError::required("namespace", "")]).into()
        } else {
            invalid("namespace", &request.namespace, "must be a DNS-1123 label")
        });
    }
    if request.destinations.is_empty() {
        return Err(ValidationErrors(vec![FieldError::required(
            "destinations",
            "at least one destination is required",
        )])
        .into());
    }
    let destinations = request
        .destinations
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let (stream, _, tag) =
                parse_stream_tag(&format!("destinations[{i}]"), d.trim(), &request.namespace)?;
            Ok(Destination { stream, tag })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let command = TagCommand {
        source: None,
        destinations,
        alias: request.alias,
        reference: request.reference,
        scheduled: request.scheduled,
        insecure: request.insecure,
        delete: request.delete,
        reference_policy: reference_policy(&request.reference_policy)?,
    };
    if request.delete {
        if !request.reference_policy.is_empty() {
            return Err(invalid(
                "reference_policy",
                &request.reference_policy,
                "may not be set when deleting tags",
            ));
        }
        let flag = [
            ("alias", request.alias),
            ("scheduled", request.scheduled),
            ("insecure", request.insecure),
        ]
        .into_iter()
        .find(|(_, set)| *set);
        if let Some((flag, _)) = flag {
            return Err(invalid(flag, "true", "may not be set when deleting tags"));
        }
        if !request.source.trim().is_empty() || !request.source_kind.is_empty() {
            return Err(invalid(
                "source",
                &request.source,
                "may not be set when deleting tags",
            ));
        }
        return Ok(command);
    }
    let source = parse_source(request)?;
    if (request.scheduled || request.insecure) && !matches!(source, Source::DockerImage(_)) {
        return Err(invalid(
            if request.scheduled {
                "scheduled"
            } else {
                "insecure"
            },
            "true",
            "only container images (source kind DockerImage) can have import flags set",
        ));
    }
    if request.alias {
        let Source::StreamTag { stream, tag, .. } = &source else {
            return Err(invalid(
                "alias",
                "true",
                "an alias needs an ImageStreamTag source (<stream>:<tag>)",
            ));
        };
        for (i, d) in command.destinations.iter().enumerate() {
            if d.stream != *stream {
                return Err(invalid(
                    &format!("destinations[{i}]"),
                    &request.destinations[i],
                    "cannot set alias across different image streams",
                ));
            }
            if d.tag == *tag {
                return Err(invalid(
                    &format!("destinations[{i}]"),
                    &request.destinations[i],
                    "a tag cannot be an alias of itself",
                ));
            }
        }
    }
    Ok(TagCommand {
        source: Some(source),
        ..command
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn request(source: &str, destinations: &[&str]) -> proto::TagRequest {
        proto::TagRequest {
            namespace: "ns1".into(),
            source: source.into(),
            destinations: destinations.iter().map(|d| d.to_string()).collect(),
            ..Default::default()
        }
    }

    fn name(namespace: &str, name: &str) -> StreamName {
        StreamName {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    #[track_caller]
    fn field_of(result: Result<TagCommand, ApiError>) -> String {
        match result {
            Err(ApiError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn sources_are_detected_as_oc_does() {
        let c = parse(&request("ruby:2.0", &["ruby:static"])).unwrap();
        assert_eq!(
            c.source,
            Some(Source::StreamTag {
                stream: name("ns1", "ruby"),
                explicit_namespace: false,
                tag: "2.0".into()
            })
        );
        let c = parse(&request("openshift/ruby:2.0", &["other/ruby:tip"])).unwrap();
        assert!(matches!(
            c.source,
            Some(Source::StreamTag { ref stream, explicit_namespace: true, .. }) if *stream == name("openshift", "ruby")
        ));
        assert_eq!(c.destinations[0].stream, name("other", "ruby"));
        let c = parse(&request(&format!("ruby@{DIGEST}"), &["ruby:pinned"])).unwrap();
        assert!(
            matches!(c.source, Some(Source::StreamImage { ref digest, .. }) if digest == DIGEST)
        );
        for docker in [
            "quay.io/x/app:1",
            "localhost/app:1",
            "127.0.0.1:5000/a/b:1",
            "ruby",
        ] {
            let c = parse(&request(docker, &["ruby:x"])).unwrap();
            assert_eq!(
                c.source,
                Some(Source::DockerImage(docker.into())),
                "{docker}"
            );
        }
        let mut r = request("openshift/origin:latest", &["ruby:tip"]);
        r.source_kind = "docker".into();
        assert_eq!(
            parse(&r).unwrap().source,
            Some(Source::DockerImage("openshift/origin:latest".into()))
        );
    }

    #[test]
    fn bad_requests_name_the_field() {
        assert_eq!(field_of(parse(&request("ruby:2.0", &[]))), "destinations");
        assert_eq!(
            field_of(parse(&request("ruby:2.0", &["ruby"]))),
            "destinations[0]"
        );
        assert_eq!(
            field_of(parse(&request("ruby:2.0", &["Bad:x"]))),
            "destinations[0]"
        );
        assert_eq!(field_of(parse(&request("", &["ruby:x"]))), "source");
        assert_eq!(
            field_of(parse(&request("ruby@sha256:12", &["ruby:x"]))),
            "source"
        );
        let mut r = request("ruby:2.0", &["ruby:x"]);
        r.source_kind = "Deployment".into();
        assert_eq!(field_of(parse(&r)), "sourceKind");
        let mut r = request("ruby:2.0", &["ruby:x"]);
        r.scheduled = true;
        assert_eq!(field_of(parse(&r)), "scheduled");
        let mut r = request("ruby:2.0", &["ruby:x"]);
        r.namespace.clear();
        assert_eq!(field_of(parse(&r)), "namespace");
    }

    #[test]
    fn aliases_stay_within_one_stream() {
        let mut r = request("ruby:2.0", &["ruby:latest", "ns1/ruby:stable"]);
        r.alias = true;
        assert!(parse(&r).unwrap().alias);
        r.destinations.push("other:latest".into());
        assert_eq!(field_of(parse(&r)), "destinations[2]");
        let mut r = request("ruby:2.0", &["ruby:2.0"]);
        r.alias = true;
        assert_eq!(field_of(parse(&r)), "destinations[0]");
    }

    #[test]
    fn deletes_take_no_source() {
        let mut r = request("", &["ruby:x", "ruby:y", "web:x"]);
        r.delete = true;
        let c = parse(&r).unwrap();
        assert_eq!(
            c.by_stream(),
            [
                (name("ns1", "ruby"), vec!["x".to_owned(), "y".to_owned()]),
                (name("ns1", "web"), vec!["x".to_owned()])
            ]
        );
        r.source = "ruby:1".into();
        assert_eq!(field_of(parse(&r)), "source");
        r.source.clear();
        r.alias = true;
        assert_eq!(field_of(parse(&r)), "alias");
    }

    #[test]
    fn reference_policy_is_source_local_or_refused() {
        let mut r = request("ruby:2.0", &["ruby:latest"]);
        assert_eq!(parse(&r).unwrap().reference_policy, REFERENCE_POLICY_SOURCE);
        r.reference_policy = "LOCAL".into();
        assert_eq!(parse(&r).unwrap().reference_policy, REFERENCE_POLICY_LOCAL);
        r.reference_policy = "remote".into();
        assert_eq!(field_of(parse(&r)), "reference_policy");
        let mut r = request("", &["ruby:x"]);
        r.delete = true;
        r.reference_policy = "local".into();
        assert_eq!(field_of(parse(&r)), "reference_policy");
    }
}
