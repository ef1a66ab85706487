//! Reading and writing ImageStream documents (JSON and YAML): the size limit,
//! strict field checking with full field paths, and [`ModelError`].
//!
//! Unknown fields are rejected, like `kubectl --validate=strict`: a typo such
//! as `spec.tags[0].fromm` is an error naming that path, never silently
//! dropped. Every successful parse is also validated ([`ImageStream::validate`]).

use std::fmt;

use serde::de::DeserializeOwned;

use super::types::ImageStream;
use super::validate::ValidationErrors;

/// The largest document accepted, checked before parsing.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// A document syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentFormat {
    /// JSON (RFC 8259).
    Json,
    /// YAML (one document).
    Yaml,
}

impl fmt::Display for DocumentFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Json => "JSON",
            Self::Yaml => "YAML",
        })
    }
}

/// Why a document could not be turned into a valid ImageStream, or back.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The document is larger than [`MAX_DOCUMENT_BYTES`].
    #[error("document is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// The document size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The document is not well-formed, has a value of the wrong type, or has
    /// an unknown field.
    #[error("{}", malformed_message(*.format, .path, .message))]
    Malformed {
        /// The syntax the document was read as.
        format: DocumentFormat,
        /// Where the problem is, e.g. `spec.tags[0].fromm`; empty for the whole document.
        path: String,
        /// What the problem is, with the line and column when known.
        message: String,
    },
    /// The document parsed but breaks OpenShift's rules.
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    /// The stream could not be written (not expected for a parsed stream).
    #[error("cannot write the ImageStream as {format}: {message}")]
    Serialize {
        /// The syntax being written.
        format: DocumentFormat,
        /// The serializer's message.
        message: String,
    },
}

fn malformed_message(format: DocumentFormat, path: &str, message: &str) -> String {
    if path.is_empty() {
        format!("malformed {format} document: {message}")
    } else {
        format!("malformed {format} document: {path}: {message}")
    }
}

impl ModelError {
    fn malformed(format: DocumentFormat, path: String, message: String) -> Self {
        // serde_path_to_error writes the root as ".".
        let path = if path == "." { String::new() } else { path };
        Self::Malformed {
            format,
            path,
            message,
        }
    }

    fn from_path_error<E: fmt::Display>(
        format: DocumentFormat,
        error: serde_path_to_error::Error<E>,
    ) -> Self {
        Self::malformed(format, error.path().to_string(), error.inner().to_string())
    }
}

fn check_size(len: usize) -> Result<(), ModelError> {
    if len > MAX_DOCUMENT_BYTES {
        return Err(ModelError::TooLarge {
            size: len,
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    Ok(())
}

/// Reads `bytes` as JSON into `T` (which decides whether unknown fields are
/// errors), naming the failing field's path, as the model's documents are
/// read: for the other kinds the API serves.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ModelError> {
    let format = DocumentFormat::Json;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| ModelError::from_path_error(format, e))?;
    de.end()
        .map_err(|e| ModelError::malformed(format, String::new(), e.to_string()))?;
    Ok(value)
}

fn decode_yaml<T: DeserializeOwned>(text: &str) -> Result<T, ModelError> {
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de)
        .map_err(|e| ModelError::from_path_error(DocumentFormat::Yaml, e))
}

fn decode_yaml_document(text: &str) -> Result<ImageStream, ModelError> {
    // An empty (or all-comment, or `null`) YAML document reads as `None`.
    decode_yaml::<Option<ImageStream>>(text)?.ok_or_else(|| {
        ModelError::malformed(
            DocumentFormat::Yaml,
            String::new(),
            "empty document".to_owned(),
        )
    })
}

impl ImageStream {
    /// Parses and validates a JSON document.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ModelError> {
        check_size(bytes.len())?;
        let stream: Self = decode_json(bytes)?;
        stream.validate()?;
        Ok(stream)
    }

    /// Parses and validates a YAML document (exactly one).
    pub fn from_yaml(text: &str) -> Result<Self, ModelError> {
        check_size(text.len())?;
        let stream = decode_yaml_document(text)?;
        stream.validate()?;
        Ok(stream)
    }

    /// Parses and validates a document in either syntax: JSON when its first
    /// non-blank character is `{`, YAML otherwise. A UTF-8 byte-order mark is
    /// skipped.
    pub fn parse_document(bytes: &[u8]) -> Result<Self, ModelError> {
        let stream = Self::parse_document_unvalidated(bytes)?;
        stream.validate()?;
        Ok(stream)
    }

    /// Like [`parse_document`](Self::parse_document) (size limit, strict
    /// fields, paths in errors) but without [`validate`](Self::validate): for
    /// documents this system wrote itself, such as stored state, which must
    /// stay readable if the rules ever tighten.
    pub fn parse_document_unvalidated(bytes: &[u8]) -> Result<Self, ModelError> {
        check_size(bytes.len())?;
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        match detect_format(bytes) {
            DocumentFormat::Json => decode_json(bytes),
            DocumentFormat::Yaml => {
                let text = std::str::from_utf8(bytes).map_err(|e| {
                    ModelError::malformed(
                        DocumentFormat::Yaml,
                        String::new(),
                        format!("not UTF-8: {e}"),
                    )
                })?;
                decode_yaml_document(text)
            }
        }
    }

    /// The stream as indented JSON, in OpenShift's shape.
    pub fn to_json_pretty(&self) -> Result<String, ModelError> {
        serde_json::to_string_pretty(self).map_err(|e| ModelError::Serialize {
            format: DocumentFormat::Json,
            message: e.to_string(),
        })
    }

    /// The stream as YAML, in OpenShift's shape.
    pub fn to_yaml(&self) -> Result<String, ModelError> {
        serde_norway::to_string(self).map_err(|e| ModelError::Serialize {
            format: DocumentFormat::Yaml,
            message: e.to_string(),
        })
    }
}

/// JSON when the first non-blank byte is `{`, else YAML.
pub fn detect_format(bytes: &[u8]) -> DocumentFormat {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => DocumentFormat::Json,
        _ => DocumentFormat::Yaml,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testdata::{fixtures, seed};

    fn json(value: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&value).unwrap()
    }

    fn valid_value() -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "image.openshift.io/v1",
            "kind": "ImageStream",
            "metadata": {"name": "ruby", "namespace": "default"},
            "spec": {"tags": [{"name": "latest", "from": {"kind": "DockerImage", "name": "ruby:3"}}]}
        })
    }

    #[test]
    fn seed_create_parses() {
        let is = ImageStream::from_json(&seed("imagestream-create.json")).unwrap();
        assert_eq!(is.api_version, "v1");
        assert_eq!(is.metadata.name, "ruby");
        assert_eq!(is.spec.docker_image_repository, "openshift/ruby-20-centos7");
        assert!(is.status.is_none());
    }

    #[test]
    fn seed_synced_round_trips_to_an_equal_value() {
        let bytes = seed("imagestream-synced.json");
        let is = ImageStream::from_json(&bytes).unwrap();
        let input: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(serde_json::to_value(&is).unwrap(), input);
        let again: serde_json::Value = serde_json::from_str(&is.to_json_pretty().unwrap()).unwrap();
        assert_eq!(again, input);
        assert_eq!(
            is.metadata.annotations[crate::model::ANNOTATION_DOCKER_REPOSITORY_CHECK],
            "2015-05-05T19:12:00Z"
        );
        let latest = is.status_tag("latest").unwrap().latest().unwrap();
        assert_eq!(
            latest.docker_image_reference,
            "openshift/ruby-20-centos7:latest"
        );
    }

    #[test]
    fn every_fixture_parses_and_keeps_its_document() {
        let all = fixtures();
        assert_eq!(all.len(), 21);
        for (name, bytes) in all {
            let is = ImageStream::from_json(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            let input: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let output = serde_json::to_value(&is).unwrap();
            assert_eq!(output["spec"], input["spec"], "{name}: spec");
            // Including `creationTimestamp: null`, `generation: null`,
            // `importPolicy: {}` and `status.dockerImageRepository: ""`.
            assert_eq!(output, input, "{name}: whole document");
            assert!(!is.spec.tags.is_empty(), "{name}");
        }
    }

    #[test]
    fn yaml_round_trips() {
        let mut docs = fixtures();
        docs.push(("synced".to_owned(), seed("imagestream-synced.json")));
        docs.push(("create".to_owned(), seed("imagestream-create.json")));
        for (name, bytes) in docs {
            let is = ImageStream::from_json(&bytes).unwrap();
            let yaml = is.to_yaml().unwrap();
            let back = ImageStream::from_yaml(&yaml).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(back, is, "{name}");
            assert_eq!(ImageStream::parse_document(yaml.as_bytes()).unwrap(), is);
            assert_eq!(ImageStream::parse_document(&bytes).unwrap(), is);
        }
    }

    #[test]
    fn hand_written_yaml_parses() {
        let yaml = "\u{feff}apiVersion: image.openshift.io/v1
kind: ImageStream
metadata:
  name: ruby
  creationTimestamp: ~
spec:
  lookupPolicy: {local: false}
  tags:
  - name: \"2.5\"
    annotations: {version: \"2.5\"}
    from: {kind: DockerImage, name: ruby:2.5}
    generation: null
    importPolicy: {}
    referencePolicy: {type: Local}
";
        let is = ImageStream::parse_document(yaml.as_bytes()).unwrap();
        assert_eq!(is.spec.tags[0].name, "2.5");
        assert_eq!(is.spec.tags[0].import_policy, Some(Default::default()));
        assert_eq!(is.spec.tags[0].generation, None);

        let unquoted = yaml.replace("name: \"2.5\"", "name: 2.5");
        // A plain YAML scalar is read as the string it spells.
        let is = ImageStream::parse_document(unquoted.as_bytes()).unwrap();
        assert_eq!(is.spec.tags[0].name, "2.5");
    }

    fn malformed(result: Result<ImageStream, ModelError>) -> (DocumentFormat, String, String) {
        match result {
            Err(ModelError::Malformed {
                format,
                path,
                message,
            }) => (format, path, message),
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    fn invalid(result: Result<ImageStream, ModelError>) -> ValidationErrors {
        match result {
            Err(ModelError::Invalid(errors)) => errors,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_path() {
        let mut doc = valid_value();
        doc["spec"]["tags"][0]["fromm"] = serde_json::json!({});
        let result = ImageStream::from_json(&json(doc));
        let err = result.unwrap_err();
        let text = err.to_string();
        let ModelError::Malformed { path, message, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(path, "spec.tags[0].fromm");
        assert!(message.starts_with("unknown field `fromm`"), "{message}");
        assert!(text.contains("spec.tags[0].fromm: unknown field"), "{text}");

        for (pointer, field, expected) in [
            ("", "extra", "extra"),
            ("/metadata", "generateName", "metadata.generateName"),
            ("/spec/tags/0/from", "uid", "spec.tags[0].from.uid"),
        ] {
            let mut doc = valid_value();
            doc.pointer_mut(pointer).unwrap()[field] = serde_json::json!("x");
            let (_, path, _) = malformed(ImageStream::from_json(&json(doc.clone())));
            assert_eq!(path, expected);
            let yaml = serde_norway::to_string(&doc).unwrap();
            let (format, path, _) = malformed(ImageStream::from_yaml(&yaml));
            assert_eq!((format, path.as_str()), (DocumentFormat::Yaml, expected));
        }
    }

    #[test]
    fn wrong_types_name_their_path() {
        let mut doc = valid_value();
        doc["spec"]["tags"][0]["reference"] = serde_json::json!("yes");
        let (_, path, message) = malformed(ImageStream::from_json(&json(doc)));
        assert_eq!(path, "spec.tags[0].reference");
        assert!(message.contains("invalid type"), "{message}");
    }

    #[test]
    fn malformed_json_and_yaml() {
        let (format, path, message) =
            malformed(ImageStream::from_json(b"{\"kind\": \"ImageStream\",}"));
        assert_eq!(format, DocumentFormat::Json);
        assert!(message.contains("line 1"), "{path}: {message}");

        let (format, _, _) = malformed(ImageStream::parse_document(b"{\"kind\": "));
        assert_eq!(format, DocumentFormat::Json);

        let (format, _, message) = malformed(ImageStream::from_json(
            b"{\"kind\": \"ImageStream\"} trailing",
        ));
        assert_eq!(format, DocumentFormat::Json);
        assert!(message.contains("trailing"), "{message}");

        let (format, _, message) = malformed(ImageStream::from_yaml(
            "kind: ImageStream\nmetadata: [unclosed\n",
        ));
        assert_eq!(format, DocumentFormat::Yaml);
        assert!(message.contains("line"), "{message}");

        let (format, _, _) = malformed(ImageStream::parse_document(b"kind: [\n"));
        assert_eq!(format, DocumentFormat::Yaml);
        let (_, _, message) = malformed(ImageStream::parse_document(b"kind: \xff\n"));
        assert!(message.contains("UTF-8"), "{message}");
        for empty in ["", "  \n", "# nothing\n", "~\n", "null"] {
            let (_, _, message) = malformed(ImageStream::parse_document(empty.as_bytes()));
            assert_eq!(message, "empty document", "{empty:?}");
        }
        malformed(ImageStream::from_yaml("a: 1\n---\nb: 2\n"));
    }

    #[test]
    fn oversized_documents_are_refused_before_parsing() {
        let big = vec![b' '; MAX_DOCUMENT_BYTES + 1];
        for result in [
            ImageStream::from_json(&big),
            ImageStream::parse_document(&big),
            ImageStream::from_yaml(std::str::from_utf8(&big).unwrap()),
        ] {
            match result {
                Err(ModelError::TooLarge { size, limit }) => {
                    assert_eq!((size, limit), (MAX_DOCUMENT_BYTES + 1, MAX_DOCUMENT_BYTES));
                }
                other => panic!("expected TooLarge, got {other:?}"),
            }
        }
    }

    #[test]
    fn wrong_kind_or_api_version_names_the_field() {
        for (field, value) in [("kind", "Pod"), ("apiVersion", "apps/v1")] {
            let mut doc = valid_value();
            doc[field] = serde_json::json!(value);
            let errors = invalid(ImageStream::from_json(&json(doc)));
            assert!(errors.find(field).is_some(), "{errors}");
        }
        let mut doc = valid_value();
        doc.as_object_mut().unwrap().remove("kind");
        let errors = invalid(ImageStream::from_json(&json(doc)));
        assert_eq!(errors.to_string(), "kind: Required value");
    }

    #[test]
    fn invalid_documents_report_every_field() {
        let cases: &[(&str, serde_json::Value, &str)] = &[
            ("/metadata/name", "Foo".into(), "metadata.name"),
            ("/metadata/name", "a/b".into(), "metadata.name"),
            ("/metadata/name", "..".into(), "metadata.name"),
            ("/metadata/name", "a".repeat(300).into(), "metadata.name"),
            (
                "/metadata/namespace",
                "Not_A_Label".into(),
                "metadata.namespace",
            ),
            ("/spec/tags/0/name", "-x".into(), "spec.tags[0].name"),
            (
                "/spec/tags/0/name",
                "t".repeat(129).into(),
                "spec.tags[0].name",
            ),
            (
                "/spec/tags/0/from/kind",
                "Docker".into(),
                "spec.tags[0].from.kind",
            ),
            (
                "/spec/dockerImageRepository",
                "openshift/UPPER".into(),
                "spec.dockerImageRepository",
            ),
            (
                "/spec/dockerImageRepository",
                "foo:tag".into(),
                "spec.dockerImageRepository",
            ),
            (
                "/metadata/creationTimestamp",
                "05/05/2015".into(),
                "metadata.creationTimestamp",
            ),
        ];
        for (pointer, value, field) in cases {
            let mut doc = valid_value();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            doc.pointer_mut(parent).unwrap()[key] = value.clone();
            let errors = invalid(ImageStream::from_json(&json(doc.clone())));
            assert!(errors.find(field).is_some(), "{pointer}={value}: {errors}");
            let yaml = serde_norway::to_string(&doc).unwrap();
            let errors = invalid(ImageStream::parse_document(yaml.as_bytes()));
            assert!(
                errors.find(field).is_some(),
                "yaml {pointer}={value}: {errors}"
            );
        }

        let mut doc = valid_value();
        let tag = doc["spec"]["tags"][0].clone();
        doc["spec"]["tags"].as_array_mut().unwrap().push(tag);
        doc["metadata"]["name"] = "Foo".into();
        let errors = invalid(ImageStream::from_json(&json(doc)));
        assert_eq!(errors.errors().len(), 2, "{errors}");
        assert!(errors.find("spec.tags[1].name").is_some());
    }

    #[test]
    fn unvalidated_parsing_is_still_strict() {
        let mut doc = valid_value();
        doc["metadata"]["name"] = "Foo".into();
        let is = ImageStream::parse_document_unvalidated(&json(doc.clone())).unwrap();
        assert_eq!(is.metadata.name, "Foo");
        doc["spec"]["tagz"] = serde_json::json!([]);
        let (_, path, _) = malformed(ImageStream::parse_document_unvalidated(&json(doc)));
        assert_eq!(path, "spec.tagz");
    }

    #[test]
    fn nulls_read_as_empty() {
        let doc = serde_json::json!({
            "apiVersion": "v1", "kind": "ImageStream",
            "metadata": {"name": "ruby", "labels": null, "namespace": null},
            "spec": {"tags": null, "dockerImageRepository": null},
            "status": null
        });
        let is = ImageStream::from_json(&json(doc)).unwrap();
        assert_eq!(is, {
            let mut want = ImageStream::new("", "ruby");
            want.api_version = "v1".to_owned();
            want
        });
    }
}
