//! Validation of an ImageStream, after OpenShift's `ValidateImageStream` and
//! the Kubernetes name rules it relies on; every problem is reported with its
//! field path, Kubernetes style.
//!
//! Sources: openshift-apiserver `pkg/image/apis/image/validation/validation.go`
//! (`ValidateImageStream`, `ValidateImageStreamName`,
//! `ValidateImageStreamTagReference`) and apimachinery `IsDNS1123Label`,
//! `IsDNS1123Subdomain`, `IsQualifiedName`, `IsValidLabelValue`,
//! `ValidatePathSegmentName`, `ValidateAnnotations`.

use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

use super::types::{ImageStream, ObjectMeta, TagPolicy, TagReference};
use super::{
    API_VERSION, FROM_DOCKER_IMAGE, FROM_IMAGE_STREAM_IMAGE, FROM_IMAGE_STREAM_TAG,
    IMPORT_MODE_LEGACY, IMPORT_MODE_PRESERVE_ORIGINAL, KIND, LEGACY_API_VERSION,
    REFERENCE_POLICY_LOCAL, REFERENCE_POLICY_SOURCE,
};
use crate::reference::{self, Reference};

/// The longest `namespace/name` OpenShift accepts, so that it stays a valid
/// repository name (distribution's `NameTotalLengthMax`).
pub const MAX_NAMESPACED_NAME_LENGTH: usize = 255;

/// The longest DNS-1123 label (a namespace).
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;

/// The longest DNS-1123 subdomain (the prefix of a qualified name).
const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;

/// The longest name part of a qualified name, and the longest label value.
const QUALIFIED_NAME_MAX_LENGTH: usize = 63;

/// The most bytes all annotations of one object may hold (Kubernetes `TotalAnnotationSizeLimitB`).
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// The repository name component grammar an image stream name must match.
const NAME_COMPONENT: &str = "[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*";
const DNS1123_LABEL: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN: &str = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const QUALIFIED_NAME: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";

fn anchored(pattern: &str) -> Regex {
    // can't fail: every pattern is a constant of this file, exercised by the tests.
    Regex::new(&format!("^(?:{pattern})$")).expect("constant regex")
}

static NAME_COMPONENT_RE: LazyLock<Regex> = LazyLock::new(|| anchored(NAME_COMPONENT));
static DNS1123_LABEL_RE: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1123_LABEL));
static DNS1123_SUBDOMAIN_RE: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1123_SUBDOMAIN));
static QUALIFIED_NAME_RE: LazyLock<Regex> = LazyLock::new(|| anchored(QUALIFIED_NAME));

/// The kind of a [`FieldError`], as in Kubernetes' `field.ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// A required field is empty or missing.
    Required,
    /// The value is malformed or out of range.
    Invalid,
    /// The value repeats one that must be unique.
    Duplicate,
    /// The value is not one of a fixed set.
    NotSupported,
}

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field path, e.g. `metadata.name` or `spec.tags[0].from.kind`.
    pub field: String,
    /// What kind of problem it is.
    pub kind: FieldErrorKind,
    /// The offending value (empty for [`FieldErrorKind::Required`]).
    pub value: String,
    /// Why it is wrong; for `NotSupported`, the supported values.
    pub message: String,
}

impl FieldError {
    /// `field` is required; `message` may be empty.
    pub fn required(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::Required,
            value: String::new(),
            message: message.into(),
        }
    }

    /// `value` of `field` is invalid because of `message`.
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::Invalid,
            value: value.into(),
            message: message.into(),
        }
    }

    /// `value` of `field` repeats an earlier one.
    pub fn duplicate(field: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::Duplicate,
            value: value.into(),
            message: String::new(),
        }
    }

    /// `value` of `field` is none of `supported`.
    pub fn not_supported(
        field: impl Into<String>,
        value: impl Into<String>,
        supported: &[&str],
    ) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Self {
            field: field.into(),
            kind: FieldErrorKind::NotSupported,
            value: value.into(),
            message: format!("supported values: {}", list.join(", ")),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            field,
            value,
            message,
            ..
        } = self;
        match self.kind {
            FieldErrorKind::Required if message.is_empty() => write!(f, "{field}: Required value"),
            FieldErrorKind::Required => write!(f, "{field}: Required value: {message}"),
            FieldErrorKind::Invalid => write!(f, "{field}: Invalid value: {value:?}: {message}"),
            FieldErrorKind::Duplicate => write!(f, "{field}: Duplicate value: {value:?}"),
            FieldErrorKind::NotSupported => {
                write!(f, "{field}: Unsupported value: {value:?}: {message}")
            }
        }
    }
}

/// Every problem found in one object, in field order. Never empty when
/// returned as an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    /// The errors, in field order.
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }

    /// Whether no error was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first error about exactly `field`, if any.
    pub fn find(&self, field: &str) -> Option<&FieldError> {
        self.0.iter().find(|e| e.field == field)
    }

    fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    fn into_result(self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl fmt::Display for ValidationErrors {
    /// One error as is; several as `[e1, e2]`, like Kubernetes' aggregate.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [] => f.write_str("no errors"),
            [one] => one.fmt(f),
            many => {
                f.write_str("[")?;
                for (i, e) in many.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    e.fmt(f)?;
                }
                f.write_str("]")
            }
        }
    }
}

impl std::error::Error for ValidationErrors {}

impl IntoIterator for ValidationErrors {
    type Item = FieldError;
    type IntoIter = std::vec::IntoIter<FieldError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Whether `value` is a DNS-1123 label (a valid namespace): at most 63
/// characters of `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
pub fn is_dns1123_label(value: &str) -> bool {
    dns1123_label_problems(value).is_empty()
}

/// Whether `name` is a valid image stream name (OpenShift's
/// `ValidateImageStreamName`; the `namespace/name` length limit is checked by
/// [`ImageStream::validate`]).
pub fn is_valid_stream_name(name: &str) -> bool {
    stream_name_problems(name).is_empty()
}

fn dns1123_label_problems(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        problems.push(format!(
            "must be no more than {DNS1123_LABEL_MAX_LENGTH} characters"
        ));
    }
    if !DNS1123_LABEL_RE.is_match(value) {
        problems.push(format!(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', \
             and must start and end with an alphanumeric character (regex used for validation is '{DNS1123_LABEL}')"
        ));
    }
    problems
}

fn dns1123_subdomain_problems(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        problems.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX_LENGTH} characters"
        ));
    }
    if !DNS1123_SUBDOMAIN_RE.is_match(value) {
        problems.push(format!(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', \
             and must start and end with an alphanumeric character (regex used for validation is '{DNS1123_SUBDOMAIN}')"
        ));
    }
    problems
}

/// OpenShift's `ValidateImageStreamName`: a path segment name
/// (`ValidatePathSegmentName`) that is also one repository name component.
fn stream_name_problems(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    let mut problems: Vec<String> = ["/", "%"]
        .iter()
        .filter(|bad| name.contains(*bad))
        .map(|bad| format!("may not contain '{bad}'"))
        .collect();
    if problems.is_empty() && !NAME_COMPONENT_RE.is_match(name) {
        problems.push(format!("must match {NAME_COMPONENT:?}"));
    }
    problems
}

/// Kubernetes `IsQualifiedName`: `[prefix/]name`, prefix a DNS-1123 subdomain,
/// name at most 63 characters of `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`.
fn qualified_name_problems(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let name = match value.split_once('/') {
        None => value,
        Some((_, name)) if name.contains('/') => {
            return vec![
                "a qualified name must be a name with an optional DNS subdomain prefix and one '/' (e.g. 'example.com/MyName')"
                    .to_owned(),
            ];
        }
        Some((prefix, name)) => {
            if prefix.is_empty() {
                problems.push("prefix part must be non-empty".to_owned());
            } else {
                problems.extend(
                    dns1123_subdomain_problems(prefix)
                        .into_iter()
                        .map(|p| format!("prefix part {p}")),
                );
            }
            name
        }
    };
    if name.is_empty() {
        problems.push("name part must be non-empty".to_owned());
        return problems;
    }
    if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        problems.push(format!(
            "name part must be no more than {QUALIFIED_NAME_MAX_LENGTH} characters"
        ));
    }
    if !QUALIFIED_NAME_RE.is_match(name) {
        problems.push(format!(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end \
             with an alphanumeric character (regex used for validation is '{QUALIFIED_NAME}')"
        ));
    }
    problems
}

/// Kubernetes `IsValidLabelValue`: empty, or a qualified name part.
fn label_value_problems(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > QUALIFIED_NAME_MAX_LENGTH {
        problems.push(format!(
            "must be no more than {QUALIFIED_NAME_MAX_LENGTH} characters"
        ));
    }
    if !value.is_empty() && !QUALIFIED_NAME_RE.is_match(value) {
        problems.push(format!(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', \
             and must start and end with an alphanumeric character (regex used for validation is '{QUALIFIED_NAME}')"
        ));
    }
    problems
}

fn check_timestamp(errors: &mut ValidationErrors, field: &str, value: &str) {
    if let Err(e) = chrono::DateTime::parse_from_rfc3339(value) {
        errors.push(FieldError::invalid(
            field,
            value,
            format!("must be an RFC 3339 timestamp such as 2015-05-05T19:11:57Z: {e}"),
        ));
    }
}

fn check_non_negative(errors: &mut ValidationErrors, field: &str, value: i64) {
    if value < 0 {
        errors.push(FieldError::invalid(
            field,
            value.to_string(),
            "must be greater than or equal to 0",
        ));
    }
}

impl ImageStream {
    /// Checks the stream against OpenShift's rules, collecting every problem.
    ///
    /// Covers `kind`/`apiVersion`, the metadata (name, namespace, labels,
    /// annotations, timestamps), `spec.dockerImageRepository`, every spec tag
    /// (name, duplicates, `from`, policies) and the status history (each
    /// `dockerImageReference` and timestamp).
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        self.validate_type(&mut errors);
        validate_metadata(&self.metadata, &mut errors);
        self.validate_spec(&mut errors);
        self.validate_status(&mut errors);
        errors.into_result()
    }

    fn validate_type(&self, errors: &mut ValidationErrors) {
        if self.api_version.is_empty() {
            errors.push(FieldError::required("apiVersion", ""));
        } else if self.api_version != API_VERSION && self.api_version != LEGACY_API_VERSION {
            errors.push(FieldError::not_supported(
                "apiVersion",
                &self.api_version,
                &[API_VERSION, LEGACY_API_VERSION],
            ));
        }
        if self.kind.is_empty() {
            errors.push(FieldError::required("kind", ""));
        } else if self.kind != KIND {
            errors.push(FieldError::not_supported("kind", &self.kind, &[KIND]));
        }
    }

    fn validate_spec(&self, errors: &mut ValidationErrors) {
        let repository = &self.spec.docker_image_repository;
        if !repository.is_empty() {
            let field = "spec.dockerImageRepository";
            match Reference::parse_normalized(repository) {
                Err(e) => errors.push(FieldError::invalid(field, repository, e.to_string())),
                Ok(r) => {
                    if r.tag().is_some() {
                        errors.push(FieldError::invalid(
                            field,
                            repository,
                            "the repository name may not contain a tag",
                        ));
                    }
                    if r.digest().is_some() {
                        errors.push(FieldError::invalid(
                            field,
                            repository,
                            "the repository name may not contain a digest",
                        ));
                    }
                }
            }
        }
        let mut seen = HashSet::new();
        for (i, tag) in self.spec.tags.iter().enumerate() {
            let path = format!("spec.tags[{i}]");
            if !tag.name.is_empty() && !seen.insert(tag.name.as_str()) {
                errors.push(FieldError::duplicate(format!("{path}.name"), &tag.name));
            }
            validate_tag_reference(tag, &path, errors);
        }
    }

    fn validate_status(&self, errors: &mut ValidationErrors) {
        let Some(status) = &self.status else { return };
        let mut seen = HashSet::new();
        for (i, list) in status.tags.iter().enumerate() {
            let path = format!("status.tags[{i}]");
            if list.tag.is_empty() {
                errors.push(FieldError::required(format!("{path}.tag"), ""));
            } else if !seen.insert(list.tag.as_str()) {
                errors.push(FieldError::duplicate(format!("{path}.tag"), &list.tag));
            }
            for (j, item) in list.items.iter().enumerate() {
                let path = format!("{path}.items[{j}]");
                let reference = &item.docker_image_reference;
                if reference.is_empty() {
                    errors.push(FieldError::required(
                        format!("{path}.dockerImageReference"),
                        "",
                    ));
                } else if let Err(e) = Reference::parse_normalized(reference) {
                    errors.push(FieldError::invalid(
                        format!("{path}.dockerImageReference"),
                        reference,
                        e.to_string(),
                    ));
                }
                if !item.created.is_empty() {
                    check_timestamp(errors, &format!("{path}.created"), &item.created);
                }
            }
            for (j, condition) in list.conditions.iter().enumerate() {
                let path = format!("{path}.conditions[{j}]");
                if condition.r#type.is_empty() {
                    errors.push(FieldError::required(format!("{path}.type"), ""));
                }
                if !condition.last_transition_time.is_empty() {
                    check_timestamp(
                        errors,
                        &format!("{path}.lastTransitionTime"),
                        &condition.last_transition_time,
                    );
                }
            }
        }
    }
}

fn validate_metadata(meta: &ObjectMeta, errors: &mut ValidationErrors) {
    if meta.name.is_empty() {
        errors.push(FieldError::required("metadata.name", "name is required"));
    } else {
        for problem in stream_name_problems(&meta.name) {
            errors.push(FieldError::invalid("metadata.name", &meta.name, problem));
        }
        // OpenShift: "Ensure we can generate a valid docker image repository from namespace/name".
        if meta.namespace.len() + 1 + meta.name.len() > MAX_NAMESPACED_NAME_LENGTH {
            errors.push(FieldError::invalid(
                "metadata.name",
                &meta.name,
                format!(
                    "'namespace/name' cannot be longer than {MAX_NAMESPACED_NAME_LENGTH} characters"
                ),
            ));
        }
    }
    if !meta.namespace.is_empty() {
        for problem in dns1123_label_problems(&meta.namespace) {
            errors.push(FieldError::invalid(
                "metadata.namespace",
                &meta.namespace,
                problem,
            ));
        }
    }
    check_non_negative(errors, "metadata.generation", meta.generation);
    if let Some(created) = &meta.creation_timestamp {
        check_timestamp(errors, "metadata.creationTimestamp", created);
    }
    for (key, value) in &meta.labels {
        for problem in qualified_name_problems(key) {
            errors.push(FieldError::invalid("metadata.labels", key, problem));
        }
        for problem in label_value_problems(value) {
            errors.push(FieldError::invalid(
                format!("metadata.labels[{key}]"),
                value,
                problem,
            ));
        }
    }
    let mut total = 0;
    for (key, value) in &meta.annotations {
        // Kubernetes checks annotation keys case-insensitively.
        for problem in qualified_name_problems(&key.to_lowercase()) {
            errors.push(FieldError::invalid("metadata.annotations", key, problem));
        }
        total += key.len() + value.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errors.push(FieldError::invalid(
            "metadata.annotations",
            format!("{total} bytes"),
            format!("may not have more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes in total"),
        ));
    }
}

fn validate_tag_reference(tag: &TagReference, path: &str, errors: &mut ValidationErrors) {
    if tag.name.is_empty() {
        errors.push(FieldError::required(format!("{path}.name"), ""));
    } else if !reference::is_valid_tag(&tag.name) {
        errors.push(FieldError::invalid(
            format!("{path}.name"),
            &tag.name,
            r"a tag must match [\w][\w.-]{0,127}",
        ));
    }
    if let Some(generation) = tag.generation {
        check_non_negative(errors, &format!("{path}.generation"), generation);
    }
    let scheduled = tag.import_policy.as_ref().is_some_and(|p| p.scheduled);
    if let Some(from) = &tag.from {
        let name_field = format!("{path}.from.name");
        let kinds = [
            FROM_DOCKER_IMAGE,
            FROM_IMAGE_STREAM_TAG,
            FROM_IMAGE_STREAM_IMAGE,
        ];
        if from.kind.is_empty() {
            errors.push(FieldError::required(
                format!("{path}.from.kind"),
                "valid values are 'DockerImage', 'ImageStreamImage', 'ImageStreamTag'",
            ));
        } else if !kinds.contains(&from.kind.as_str()) {
            errors.push(FieldError::not_supported(
                format!("{path}.from.kind"),
                &from.kind,
                &kinds,
            ));
        }
        if from.name.is_empty() {
            errors.push(FieldError::required(name_field, ""));
        } else if let Some(problem) = from_name_problem(&from.kind, &from.name) {
            errors.push(FieldError::invalid(name_field, &from.name, problem));
        }
        if !from.namespace.is_empty() {
            for problem in dns1123_label_problems(&from.namespace) {
                errors.push(FieldError::invalid(
                    format!("{path}.from.namespace"),
                    &from.namespace,
                    problem,
                ));
            }
        }
        if scheduled && from.kind != FROM_DOCKER_IMAGE && kinds.contains(&from.kind.as_str()) {
            errors.push(FieldError::invalid(
                format!("{path}.importPolicy.scheduled"),
                "true",
                "only tags pointing to Docker repositories may be scheduled for background import",
            ));
        }
    }
    if let Some(policy) = &tag.import_policy {
        let modes = ["", IMPORT_MODE_LEGACY, IMPORT_MODE_PRESERVE_ORIGINAL];
        if !modes.contains(&policy.import_mode.as_str()) {
            errors.push(FieldError::not_supported(
                format!("{path}.importPolicy.importMode"),
                &policy.import_mode,
                &modes[1..],
            ));
        }
    }
    if let Some(policy) = &tag.policy {
        validate_tag_policy(tag, policy, path, errors);
    }
    if let Some(policy) = &tag.reference_policy {
        let types = ["", REFERENCE_POLICY_SOURCE, REFERENCE_POLICY_LOCAL];
        if !types.contains(&policy.r#type.as_str()) {
            errors.push(FieldError::not_supported(
                format!("{path}.referencePolicy.type"),
                &policy.r#type,
                &types[1..],
            ));
        }
    }
}

/// A tag with a policy follows what the policy chooses: it has no `from`,
/// and the policy compiles.
fn validate_tag_policy(
    tag: &TagReference,
    policy: &TagPolicy,
    path: &str,
    errors: &mut ValidationErrors,
) {
    if let Some(from) = &tag.from {
        errors.push(FieldError::invalid(
            format!("{path}.from"),
            &from.name,
            "a tag with a policy follows the tag the policy chooses and may not have a from",
        ));
    }
    if let Err(e) = policy.compile() {
        let field = if e.field.is_empty() {
            format!("{path}.policy")
        } else {
            format!("{path}.policy.{}", e.field)
        };
        if e.required {
            errors.push(FieldError::required(field, e.message));
        } else {
            errors.push(FieldError::invalid(field, &e.value, e.message));
        }
    }
}

/// What is wrong with `from.name` for `from.kind`, if anything (an unknown
/// kind is reported on `from.kind` alone).
fn from_name_problem(kind: &str, name: &str) -> Option<String> {
    match kind {
        FROM_DOCKER_IMAGE => Reference::parse_normalized(name)
            .err()
            .map(|e| e.to_string()),
        FROM_IMAGE_STREAM_TAG => {
            let (stream, tag) = match name.split_once(':') {
                Some((stream, tag)) => (Some(stream), tag),
                None => (None, name),
            };
            let stream_ok = stream.is_none_or(is_valid_stream_name);
            if stream_ok && reference::is_valid_tag(tag) {
                None
            } else {
                Some(
                    "must be <tag> or <stream>:<tag>, with a valid image stream name and tag"
                        .to_owned(),
                )
            }
        }
        FROM_IMAGE_STREAM_IMAGE => match name.split_once('@') {
            Some((stream, digest)) if is_valid_stream_name(stream) => {
                reference::validate_digest(digest)
                    .err()
                    .map(|e| format!("must be <stream>@<digest>: {e}"))
            }
            _ => Some(
                "must be <stream>@<digest>, with a valid image stream name and digest".to_owned(),
            ),
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ObjectReference, TagImportPolicy, TagReferencePolicy};

    fn stream() -> ImageStream {
        ImageStream::new("default", "ruby")
    }

    fn tag(name: &str, kind: &str, from: &str) -> TagReference {
        TagReference {
            name: name.to_owned(),
            from: Some(ObjectReference {
                kind: kind.to_owned(),
                name: from.to_owned(),
                ..ObjectReference::default()
            }),
            ..TagReference::default()
        }
    }

    /// Asserts that `is` fails validation with an error on exactly `field`.
    #[track_caller]
    fn assert_field(is: &ImageStream, field: &str) -> FieldError {
        let errors = is.validate().expect_err("expected a validation error");
        errors
            .find(field)
            .unwrap_or_else(|| panic!("no error on {field}: {errors}"))
            .clone()
    }

    #[test]
    fn a_minimal_stream_is_valid() {
        stream().validate().unwrap();
        ImageStream {
            api_version: LEGACY_API_VERSION.to_owned(),
            ..stream()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn names_follow_openshift() {
        for good in ["ruby", "a", "ruby-20-centos7", "a.b_c__d---e", "0abc"] {
            assert!(is_valid_stream_name(good), "{good}");
        }
        for bad in [
            "Foo", "a/b", "..", ".", "a%b", "-a", "a-", "a..b", "a___b", "", "ruby!",
        ] {
            assert!(!is_valid_stream_name(bad), "{bad}");
        }
        assert_eq!(stream_name_problems(".."), vec!["may not be '..'"]);
        assert_eq!(stream_name_problems("a/b"), vec!["may not contain '/'"]);
    }

    #[test]
    fn bad_metadata_names_the_field() {
        for (name, fragment) in [
            ("Foo", "must match"),
            ("a/b", "may not contain '/'"),
            ("..", "may not be '..'"),
            ("a%2f", "may not contain '%'"),
        ] {
            let mut is = stream();
            is.metadata.name = name.to_owned();
            let e = assert_field(&is, "metadata.name");
            assert_eq!(e.kind, FieldErrorKind::Invalid);
            assert!(e.message.contains(fragment), "{name}: {e}");
        }

        let mut is = stream();
        is.metadata.name = "a".repeat(300);
        let e = assert_field(&is, "metadata.name");
        assert!(e.message.contains("cannot be longer than 255"), "{e}");
        // 255 in total: "default/" is 8.
        is.metadata.name = "a".repeat(255 - 8);
        is.validate().unwrap();
        is.metadata.name.push('a');
        assert_field(&is, "metadata.name");

        let mut is = stream();
        is.metadata.name.clear();
        let e = assert_field(&is, "metadata.name");
        assert_eq!(e.kind, FieldErrorKind::Required);
        assert_eq!(
            e.to_string(),
            "metadata.name: Required value: name is required"
        );
    }

    #[test]
    fn display_is_kubernetes_style() {
        let mut is = stream();
        is.metadata.name = "Foo".to_owned();
        let errors = is.validate().unwrap_err();
        assert_eq!(
            errors.to_string(),
            r#"metadata.name: Invalid value: "Foo": must match "[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*""#
        );
    }

    #[test]
    fn bad_namespaces() {
        for ns in ["Default", "-ns", "ns-", "a.b", &"n".repeat(64)] {
            let mut is = stream();
            is.metadata.namespace = ns.to_owned();
            assert_field(&is, "metadata.namespace");
        }
        assert!(is_dns1123_label(&"n".repeat(63)));
        assert!(!is_dns1123_label(""));
    }

    #[test]
    fn bad_tags() {
        for name in ["-x", &"t".repeat(129), ".hidden", "a:b", "a b"] {
            let mut is = stream();
            is.spec.tags.push(tag(name, FROM_DOCKER_IMAGE, "ruby:2"));
            let e = assert_field(&is, "spec.tags[0].name");
            assert_eq!(e.kind, FieldErrorKind::Invalid, "{name}");
        }
        let mut is = stream();
        is.spec
            .tags
            .push(tag(&"t".repeat(128), FROM_DOCKER_IMAGE, "ruby:2"));
        is.validate().unwrap();

        let mut is = stream();
        is.spec.tags.push(tag("", FROM_DOCKER_IMAGE, "ruby:2"));
        assert_eq!(
            assert_field(&is, "spec.tags[0].name").kind,
            FieldErrorKind::Required
        );
    }

    #[test]
    fn duplicate_tags() {
        let mut is = stream();
        is.spec
            .tags
            .push(tag("latest", FROM_DOCKER_IMAGE, "ruby:2"));
        is.spec.tags.push(tag("2", FROM_DOCKER_IMAGE, "ruby:2"));
        is.spec.tags.push(tag("latest", FROM_IMAGE_STREAM_TAG, "2"));
        let e = assert_field(&is, "spec.tags[2].name");
        assert_eq!(e.kind, FieldErrorKind::Duplicate);
        assert_eq!(
            e.to_string(),
            r#"spec.tags[2].name: Duplicate value: "latest""#
        );
    }

    #[test]
    fn from_kinds_and_names() {
        let good = [
            (
                FROM_DOCKER_IMAGE,
                "registry.access.redhat.com/ubi8/ruby-25:latest",
            ),
            (FROM_DOCKER_IMAGE, "ruby"),
            (
                FROM_DOCKER_IMAGE,
                "quay.io/a/b@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            ),
            (FROM_IMAGE_STREAM_TAG, "2.5-ubi8"),
            (FROM_IMAGE_STREAM_TAG, "ruby:2.5-ubi8"),
            (
                FROM_IMAGE_STREAM_IMAGE,
                "ruby@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            ),
        ];
        for (kind, name) in good {
            let mut is = stream();
            is.spec.tags.push(tag("t", kind, name));
            is.validate()
                .unwrap_or_else(|e| panic!("{kind} {name}: {e}"));
        }
        let bad = [
            (FROM_DOCKER_IMAGE, "UPPER"),
            (FROM_DOCKER_IMAGE, "a//b"),
            (FROM_IMAGE_STREAM_TAG, "Ruby:2"),
            (FROM_IMAGE_STREAM_TAG, "ruby:-2"),
            (FROM_IMAGE_STREAM_TAG, "ruby:2:3"),
            (FROM_IMAGE_STREAM_IMAGE, "ruby"),
            (FROM_IMAGE_STREAM_IMAGE, "ruby@sha256:short"),
            (
                FROM_IMAGE_STREAM_IMAGE,
                "Ruby@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            ),
        ];
        for (kind, name) in bad {
            let mut is = stream();
            is.spec.tags.push(tag("t", kind, name));
            let e = assert_field(&is, "spec.tags[0].from.name");
            assert_eq!(e.kind, FieldErrorKind::Invalid, "{kind} {name}");
        }

        let mut is = stream();
        is.spec.tags.push(tag("t", "Image", "ruby"));
        let e = assert_field(&is, "spec.tags[0].from.kind");
        assert_eq!(e.kind, FieldErrorKind::NotSupported);
        assert!(
            e.to_string().contains(r#"Unsupported value: "Image""#),
            "{e}"
        );

        let mut is = stream();
        is.spec.tags.push(tag("t", "", "ruby"));
        assert_eq!(
            assert_field(&is, "spec.tags[0].from.kind").kind,
            FieldErrorKind::Required
        );

        let mut is = stream();
        is.spec.tags.push(tag("t", FROM_DOCKER_IMAGE, ""));
        assert_eq!(
            assert_field(&is, "spec.tags[0].from.name").kind,
            FieldErrorKind::Required
        );

        let mut is = stream();
        let mut t = tag("t", FROM_IMAGE_STREAM_TAG, "ruby:2");
        t.from.as_mut().unwrap().namespace = "Other".to_owned();
        is.spec.tags.push(t);
        assert_field(&is, "spec.tags[0].from.namespace");
    }

    #[test]
    fn policies() {
        let mut is = stream();
        let mut t = tag("t", FROM_DOCKER_IMAGE, "ruby");
        t.reference_policy = Some(TagReferencePolicy {
            r#type: "Remote".to_owned(),
        });
        t.import_policy = Some(TagImportPolicy {
            import_mode: "Copy".to_owned(),
            ..TagImportPolicy::default()
        });
        is.spec.tags.push(t);
        let errors = is.validate().unwrap_err();
        assert_eq!(errors.errors().len(), 2, "collects all errors: {errors}");
        assert_eq!(
            errors
                .find("spec.tags[0].referencePolicy.type")
                .unwrap()
                .kind,
            FieldErrorKind::NotSupported
        );
        assert!(
            errors
                .find("spec.tags[0].importPolicy.importMode")
                .is_some()
        );

        for (kind, mode) in [
            (REFERENCE_POLICY_SOURCE, IMPORT_MODE_LEGACY),
            (REFERENCE_POLICY_LOCAL, IMPORT_MODE_PRESERVE_ORIGINAL),
            ("", ""),
        ] {
            let mut is = stream();
            let mut t = tag("t", FROM_DOCKER_IMAGE, "ruby");
            t.reference_policy = Some(TagReferencePolicy {
                r#type: kind.to_owned(),
            });
            t.import_policy = Some(TagImportPolicy {
                import_mode: mode.to_owned(),
                scheduled: true,
                ..TagImportPolicy::default()
            });
            is.spec.tags.push(t);
            is.validate().unwrap();
        }

        let mut is = stream();
        let mut t = tag("t", FROM_IMAGE_STREAM_TAG, "other");
        t.import_policy = Some(TagImportPolicy {
            scheduled: true,
            ..TagImportPolicy::default()
        });
        is.spec.tags.push(t);
        assert_field(&is, "spec.tags[0].importPolicy.scheduled");
    }

    #[test]
    fn docker_image_repository() {
        // `UPPER/case` is valid for Docker's ParseNormalizedNamed: an
        // upper-case first component is a registry host (`UPPER`), and the
        // path `case` is lower case. Only an upper-case *path* is refused.
        for good in [
            "openshift/ruby-20-centos7",
            "ruby",
            "127.0.0.1:5000/ns/app",
            "UPPER/case",
        ] {
            let mut is = stream();
            is.spec.docker_image_repository = good.to_owned();
            is.validate().unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for (bad, fragment) in [
            ("openshift/UPPER", "lowercase"),
            ("UPPER", "lowercase"),
            ("foo:tag", "may not contain a tag"),
            (
                "foo@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                "may not contain a digest",
            ),
            ("a//b", ""),
        ] {
            let mut is = stream();
            is.spec.docker_image_repository = bad.to_owned();
            let e = assert_field(&is, "spec.dockerImageRepository");
            assert!(e.message.contains(fragment), "{bad}: {e}");
        }
    }

    #[test]
    fn labels_and_annotations() {
        let mut is = stream();
        is.metadata
            .labels
            .insert("app.kubernetes.io/name".to_owned(), "ruby".to_owned());
        is.metadata
            .annotations
            .insert("openshift.io/display-name".to_owned(), "Ruby!".to_owned());
        is.metadata
            .annotations
            .insert("iconClass".to_owned(), "icon-ruby".to_owned());
        is.validate().unwrap();

        for key in ["-bad", "a/b/c", "/name", "Example.com/x", &"k".repeat(64)] {
            let mut is = stream();
            is.metadata.labels.insert(key.to_owned(), "v".to_owned());
            assert_field(&is, "metadata.labels");
            let mut is = stream();
            is.metadata
                .annotations
                .insert(key.to_owned(), "v".to_owned());
            if key != "Example.com/x" {
                // Annotation keys are checked lower-cased, as in Kubernetes.
                assert_field(&is, "metadata.annotations");
            }
        }
        let mut is = stream();
        is.metadata
            .labels
            .insert("k".to_owned(), "bad value".to_owned());
        assert_field(&is, "metadata.labels[k]");

        let mut is = stream();
        is.metadata
            .annotations
            .insert("big".to_owned(), "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT));
        assert_field(&is, "metadata.annotations");
    }

    #[test]
    fn timestamps_and_status() {
        let mut is = stream();
        is.metadata.creation_timestamp = Some("yesterday".to_owned());
        assert_field(&is, "metadata.creationTimestamp");

        let mut is = stream();
        let list = is.status_tag_mut("latest");
        list.items.push(crate::model::TagEvent {
            created: "2015-05-05 19:11:58".to_owned(),
            docker_image_reference: String::new(),
            image: "sha256:0".to_owned(),
            generation: Some(1),
        });
        list.conditions.push(crate::model::TagEventCondition {
            r#type: crate::model::IMPORT_SUCCESS.to_owned(),
            status: "False".to_owned(),
            last_transition_time: "never".to_owned(),
            ..Default::default()
        });
        let errors = is.validate().unwrap_err();
        assert!(
            errors.find("status.tags[0].items[0].created").is_some(),
            "{errors}"
        );
        assert_eq!(
            errors
                .find("status.tags[0].items[0].dockerImageReference")
                .unwrap()
                .kind,
            FieldErrorKind::Required
        );
        assert!(
            errors
                .find("status.tags[0].conditions[0].lastTransitionTime")
                .is_some()
        );

        let mut is = stream();
        is.status_tag_mut("latest")
            .items
            .push(crate::model::TagEvent {
                created: "2015-05-05T19:11:58Z".to_owned(),
                docker_image_reference: "Bad Ref".to_owned(),
                ..Default::default()
            });
        assert_field(&is, "status.tags[0].items[0].dockerImageReference");
    }

    #[test]
    fn kind_and_api_version() {
        let mut is = stream();
        is.kind = "Pod".to_owned();
        let e = assert_field(&is, "kind");
        assert_eq!(
            e.to_string(),
            r#"kind: Unsupported value: "Pod": supported values: "ImageStream""#
        );
        let mut is = stream();
        is.api_version = "apps/v1".to_owned();
        assert_field(&is, "apiVersion");
        let mut is = stream();
        is.api_version.clear();
        is.kind.clear();
        let errors = is.validate().unwrap_err();
        assert_eq!(errors.errors().len(), 2);
    }

    #[test]
    fn errors_aggregate_like_kubernetes() {
        let mut is = stream();
        is.metadata.name = "Foo".to_owned();
        is.metadata.namespace = "Bar".to_owned();
        let errors = is.validate().unwrap_err();
        let text = errors.to_string();
        assert!(
            text.starts_with("[metadata.name: Invalid value: \"Foo\""),
            "{text}"
        );
        assert!(
            text.contains(", metadata.namespace: Invalid value: \"Bar\""),
            "{text}"
        );
    }
}
