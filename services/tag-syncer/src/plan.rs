//! What to import, as pure functions of a stream (and of an `import-image`
//! request): the [`ImportPlan`] the importer then carries out.
//!
//! - [`needs_import`]: OpenShift's rule for a stream that was created or
//!   whose spec changed. A `spec.dockerImageRepository` not yet checked (no
//!   `openshift.io/image.dockerRepositoryCheck` annotation) imports the whole
//!   repository; a `DockerImage` spec tag (not `reference: true`) whose
//!   generation is newer than the newest generation its status has observed
//!   (items[0] or the `ImportSuccess` condition) imports that image.
//! - [`scheduled`]: the spec tags with `importPolicy.scheduled`.
//! - [`import_image`]: `oc import-image`'s semantics (see the function).

use imagestreams_common::{
    error::ApiError,
    model::{
        ANNOTATION_DOCKER_REPOSITORY_CHECK, FROM_DOCKER_IMAGE, IMPORT_SUCCESS, ImageStream,
        ObjectReference, REFERENCE_POLICY_SOURCE, TagImportPolicy, TagReference,
        TagReferencePolicy, is_dns1123_label, is_valid_stream_name,
    },
    reference::{Reference, is_valid_tag},
};
use imagestreams_proto::v1 as proto;

/// The tag `import-image NAME` means, and the tag a repository failure is
/// recorded on when the stream has none yet.
pub const DEFAULT_TAG: &str = "latest";

/// A whole repository to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryImport {
    /// The repository as written (`openshift/ruby-20-centos7`); pull specs
    /// become `<from>@<digest>`.
    pub from: String,
    /// Plain HTTP.
    pub insecure: bool,
    /// Where a failure to list the repository is recorded: the tags the
    /// stream has, or [`DEFAULT_TAG`].
    pub failure_tags: Vec<String>,
}

/// One image to import into one tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagImport {
    /// The tag of the stream.
    pub tag: String,
    /// The pull spec as written (`quay.io/org/app:1`, `ruby`, `x@sha256:…`).
    pub from: String,
    /// Plain HTTP.
    pub insecure: bool,
    /// The spec generation the import answers; 0: the one the write gives.
    pub generation: i64,
}

/// Everything one import does, in one write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportPlan {
    /// The stream's namespace.
    pub namespace: String,
    /// The stream's name.
    pub name: String,
    /// Create the stream if it does not exist.
    pub create: bool,
    /// A new `spec.dockerImageRepository`.
    pub set_repository: Option<String>,
    /// Spec tags to set.
    pub set_spec_tags: Vec<TagReference>,
    /// The repository to import every tag of.
    pub repository: Option<RepositoryImport>,
    /// Single images.
    pub tags: Vec<TagImport>,
    /// A scheduled re-import ([`scheduled`]), not one asked for.
    pub scheduled: bool,
}

impl ImportPlan {
    pub(crate) fn new(stream: &ImageStream) -> Self {
        ImportPlan {
            namespace: stream.metadata.namespace.clone(),
            name: stream.metadata.name.clone(),
            ..ImportPlan::default()
        }
    }

    /// Whether there is nothing to import.
    pub fn is_empty(&self) -> bool {
        self.repository.is_none() && self.tags.is_empty()
    }
}

/// The `DockerImage` pull spec a spec tag imports, unless it is a reference.
pub fn importable(tag: &TagReference) -> Option<&str> {
    let from = tag.from.as_ref()?;
    (from.kind == FROM_DOCKER_IMAGE && !tag.reference && !from.name.is_empty())
        .then_some(from.name.as_str())
}

pub(crate) fn insecure(tag: &TagReference) -> bool {
    tag.import_policy.as_ref().is_some_and(|p| p.insecure)
}

/// The newest generation the status of `tag` has observed: its newest item's
/// or its `ImportSuccess` condition's; -1 when none (OpenShift's
/// `LatestObservedTagGeneration`).
pub fn latest_observed_generation(stream: &ImageStream, tag: &str) -> i64 {
    let Some(list) = stream.status_tag(tag) else {
        return -1;
    };
    let item = list.items.first().and_then(|i| i.generation).unwrap_or(-1);
    let condition = list
        .condition(IMPORT_SUCCESS)
        .map(|c| c.generation)
        .unwrap_or(-1);
    item.max(condition)
}

fn failure_tags(stream: &ImageStream) -> Vec<String> {
    let tags: Vec<String> = stream
        .status
        .iter()
        .flat_map(|s| s.tags.iter().map(|t| t.tag.clone()))
        .collect();
    if tags.is_empty() {
        vec![DEFAULT_TAG.to_owned()]
    } else {
        tags
    }
}

fn repository_import(stream: &ImageStream, from: &str, insecure: bool) -> RepositoryImport {
    RepositoryImport {
        from: from.to_owned(),
        insecure,
        failure_tags: failure_tags(stream),
    }
}

/// What the creation or a spec change of `stream` asks to import; `None` when nothing.
pub fn needs_import(stream: &ImageStream) -> Option<ImportPlan> {
    let mut plan = ImportPlan::new(stream);
    let repository = &stream.spec.docker_image_repository;
    if !repository.is_empty()
        && !stream
            .metadata
            .annotations
            .contains_key(ANNOTATION_DOCKER_REPOSITORY_CHECK)
    {
        plan.repository = Some(repository_import(stream, repository, false));
    }
    for tag in &stream.spec.tags {
        let Some(from) = importable(tag) else {
            continue;
        };
        let generation = tag.generation.unwrap_or(stream.metadata.generation);
        if latest_observed_generation(stream, &tag.name) < generation {
            plan.tags.push(TagImport {
                tag: tag.name.clone(),
                from: from.to_owned(),
                insecure: insecure(tag),
                generation,
            });
        }
    }
    (!plan.is_empty()).then_some(plan)
}

/// The scheduled re-import of `stream`: its `DockerImage` spec tags with
/// `importPolicy.scheduled`; `None` when it has none.
pub fn scheduled(stream: &ImageStream) -> Option<ImportPlan> {
    let mut plan = ImportPlan {
        scheduled: true,
        ..ImportPlan::new(stream)
    };
    for tag in &stream.spec.tags {
        let Some(from) = importable(tag) else {
            continue;
        };
        if tag.import_policy.as_ref().is_some_and(|p| p.scheduled) {
            plan.tags.push(TagImport {
                tag: tag.name.clone(),
                from: from.to_owned(),
                insecure: insecure(tag),
                generation: tag.generation.unwrap_or(stream.metadata.generation),
            });
        }
    }
    (!plan.is_empty()).then_some(plan)
}

/// Whether `stream` has scheduled tags.
pub fn has_scheduled_tags(stream: &ImageStream) -> bool {
    scheduled(stream).is_some()
}

/// The repository part of a pull spec as written: without `@digest` or `:tag`.
pub fn repository_as_written(spec: &str) -> &str {
    let spec = spec.split_once('@').map_or(spec, |(repo, _)| repo);
    let last_slash = spec.rfind('/').map_or(0, |i| i + 1);
    match spec[last_slash..].rfind(':') {
        Some(colon) => &spec[..last_slash + colon],
        None => spec,
    }
}

/// The tag or digest a pull spec names; `latest` when it names neither.
pub fn reference_of(reference: &Reference) -> String {
    reference
        .digest()
        .or(reference.tag())
        .unwrap_or(DEFAULT_TAG)
        .to_owned()
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid(field, message.into())
}

/// The spec tag `import-image` writes for `tag` from `from`.
fn spec_tag(tag: &str, from: &str, request: &proto::ImportImageRequest) -> TagReference {
    TagReference {
        name: tag.to_owned(),
        from: Some(ObjectReference {
            kind: FROM_DOCKER_IMAGE.to_owned(),
            name: from.to_owned(),
            ..ObjectReference::default()
        }),
        import_policy: Some(TagImportPolicy {
            insecure: request.insecure,
            scheduled: request.scheduled,
            import_mode: String::new(),
        }),
        reference_policy: Some(TagReferencePolicy {
            r#type: REFERENCE_POLICY_SOURCE.to_owned(),
        }),
        ..TagReference::default()
    }
}

/// The stream, tag and implied source of `import-image`'s NAME argument:
/// `NAME`, `NAME:TAG`, or a pull spec (`quay.io/org/app:1`, whose last path
/// component names the stream, as oc does).
pub fn parse_target(target: &str) -> Result<(String, Option<String>, Option<String>), ApiError> {
    if target.contains('@') {
        return Err(invalid(
            "name",
            "to import images by ID, use the 'tag' command",
        ));
    }
    if target.contains('/') {
        let reference = Reference::parse_normalized(target).map_err(|e| {
            invalid(
                "name",
                format!(
                    "the image name must be a valid pull spec or the name of an image stream: {e}"
                ),
            )
        })?;
        let name = reference
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let tag = reference.tag().map(str::to_owned);
        return Ok((name, tag, Some(repository_as_written(target).to_owned())));
    }
    match target.split_once(':') {
        Some((name, tag)) => Ok((name.to_owned(), Some(tag.to_owned()), None)),
        None => Ok((target.to_owned(), None, None)),
    }
}

/// What `import-image` asks, given the stream as it is (`None`: missing).
///
/// As `oc import-image NAME[:TAG] [--from REF] [--all] [--confirm]
/// [--scheduled] [--insecure]`:
///
/// - a missing stream needs `--confirm`, and is then created: with
///   `--all`, following the repository of `--from` (or NAME);
///   else with one spec tag (`TAG`, default `latest`) from `--from` (or NAME:TAG);
/// - `--all`, or no TAG on a stream with `spec.dockerImageRepository` and
///   no `--from`, imports the whole repository (`--from`, else the spec's);
///   a different `--from` than the spec's needs `--confirm`; without any
///   repository, every `DockerImage` spec tag is imported;
/// - otherwise one tag: its spec tag's source (or `--from`, which replaces
///   a different source only with `--confirm`), else
///   `<spec.dockerImageRepository>:TAG`;
/// - `--scheduled` and `--insecure` set the spec tag's `importPolicy`; for a
///   whole repository `--insecure` applies to this import, and
///   `--scheduled` is refused (there is no spec tag to hold it).
pub fn import_image(
    request: &proto::ImportImageRequest,
    current: Option<&ImageStream>,
) -> Result<ImportPlan, ApiError> {
    if !is_dns1123_label(&request.namespace) {
        return Err(invalid(
            "namespace",
            format!("namespace: Invalid value: {:?}", request.namespace),
        ));
    }
    let (name, tag, implied_from) = parse_target(&request.name)?;
    if !is_valid_stream_name(&name) {
        return Err(invalid(
            "name",
            format!("name: Invalid value: {name:?}: not a valid image stream name"),
        ));
    }
    if let Some(tag) = &tag {
        if !is_valid_tag(tag) {
            return Err(invalid("name", format!("invalid tag {tag:?}")));
        }
        if request.all {
            return Err(invalid(
                "all",
                format!("cannot specify a tag {:?} as well as --all", request.name),
            ));
        }
    }
    let from = Some(request.from.trim().to_owned())
        .filter(|f| !f.is_empty())
        .or(implied_from);
    if let Some(from) = &from {
        Reference::parse_normalized(from).map_err(|e| {
            invalid(
                "from",
                format!("--from {from:?} is not a valid pull spec: {e}"),
            )
        })?;
    }
    let mut plan = ImportPlan {
        namespace: request.namespace.clone(),
        name: name.clone(),
        ..ImportPlan::default()
    };
    let Some(stream) = current else {
        if !request.confirm {
            return Err(ApiError::NotFound(format!(
                "no image stream named {name:?} exists, pass --confirm to create and import"
            )));
        }
        plan.create = true;
        if request.all {
            if request.scheduled {
                return Err(scheduled_repository());
            }
            let from = from.unwrap_or_else(|| name.clone());
            let from = repository_as_written(&from).to_owned();
            plan.set_repository = Some(from.clone());
            plan.repository = Some(RepositoryImport {
                from,
                insecure: request.insecure,
                failure_tags: vec![DEFAULT_TAG.to_owned()],
            });
        } else {
            let tag = tag.unwrap_or_else(|| DEFAULT_TAG.to_owned());
            let from = from.unwrap_or_else(|| format!("{name}:{tag}"));
            plan.set_spec_tags.push(spec_tag(&tag, &from, request));
            plan.tags.push(TagImport {
                tag,
                from,
                insecure: request.insecure,
                generation: 0,
            });
        }
        return Ok(plan);
    };
    let repository = stream.spec.docker_image_repository.as_str();
    let whole = request.all || (tag.is_none() && from.is_none() && !repository.is_empty());
    if whole {
        if request.scheduled {
            return Err(scheduled_repository());
        }
        let from = from.map(|f| repository_as_written(&f).to_owned());
        match from {
            None if repository.is_empty() => {
                for spec in &stream.spec.tags {
                    if let Some(from) = importable(spec) {
                        plan.tags.push(TagImport {
                            tag: spec.name.clone(),
                            from: from.to_owned(),
                            insecure: request.insecure || insecure(spec),
                            generation: 0,
                        });
                    }
                }
                if plan.tags.is_empty() {
                    return Err(invalid(
                        "name",
                        "image stream does not have tags pointing to external container images",
                    ));
                }
            }
            None => plan.repository = Some(repository_import(stream, repository, request.insecure)),
            Some(from) => {
                if from != repository {
                    if !request.confirm {
                        return Err(ApiError::Conflict(if repository.is_empty() {
                            "the image stream does not currently import an entire Docker repository, pass --confirm to update".to_owned()
                        } else {
                            format!(
                                "the image stream has a different import spec {repository:?}, pass --confirm to update"
                            )
                        }));
                    }
                    plan.set_repository = Some(from.clone());
                }
                plan.repository = Some(repository_import(stream, &from, request.insecure));
            }
        }
        return Ok(plan);
    }
    let tag = tag.unwrap_or_else(|| DEFAULT_TAG.to_owned());
    let existing = stream.spec_tag(&tag);
    if let Some(source) = existing.and_then(|t| t.from.as_ref())
        && source.kind != FROM_DOCKER_IMAGE
    {
        return Err(invalid(
            "name",
            format!(
                "tag {tag:?} points to existing {} {:?}, it cannot be re-imported",
                source.kind, source.name
            ),
        ));
    }
    let existing_from = existing.and_then(importable_or_reference);
    let from = match (from, existing_from) {
        (Some(from), Some(old)) if from != old && !request.confirm => {
            return Err(ApiError::Conflict(format!(
                "the tag {tag:?} points to {old:?}, pass --confirm to update it to {from:?}"
            )));
        }
        (Some(from), _) => from,
        (None, Some(old)) => old.to_owned(),
        (None, None) if !repository.is_empty() => {
            // a tag of the followed repository: imported without a spec tag
            plan.tags.push(TagImport {
                tag: tag.clone(),
                from: format!("{repository}:{tag}"),
                insecure: request.insecure,
                generation: 0,
            });
            return Ok(plan);
        }
        (None, None) => {
            return Err(ApiError::NotFound(format!(
                "the tag {tag:?} does not exist on the image stream - choose an existing tag to import, or use --from"
            )));
        }
    };
    let wanted = spec_tag(&tag, &from, request);
    let unchanged = existing.is_some_and(|e| {
        e.from == wanted.from
            && e.import_policy.clone().unwrap_or_default().insecure == request.insecure
            && e.import_policy.clone().unwrap_or_default().scheduled == request.scheduled
    });
    if !unchanged {
        let mut set = existing.cloned().unwrap_or_else(|| wanted.clone());
        set.from = wanted.from.clone();
        let mut policy = set.import_policy.clone().unwrap_or_default();
        policy.insecure = request.insecure;
        policy.scheduled = request.scheduled;
        set.import_policy = Some(policy);
        set.reference = false;
        plan.set_spec_tags.push(set);
    }
    plan.tags.push(TagImport {
        tag,
        from,
        insecure: request.insecure || existing.is_some_and(insecure),
        generation: 0,
    });
    Ok(plan)
}

fn importable_or_reference(tag: &TagReference) -> Option<&str> {
    tag.from
        .as_ref()
        .filter(|f| f.kind == FROM_DOCKER_IMAGE && !f.name.is_empty())
        .map(|f| f.name.as_str())
}

fn scheduled_repository() -> ApiError {
    invalid(
        "scheduled",
        "--scheduled applies to tags: import one tag with NAME:TAG --scheduled, or use 'tag --scheduled'",
    )
}

#[cfg(test)]
mod tests {
    use imagestreams_common::model::{TagEvent, TagEventCondition};

    use super::*;

    fn stream(json: serde_json::Value) -> ImageStream {
        let mut s: ImageStream = serde_json::from_value(json).unwrap();
        if s.metadata.namespace.is_empty() {
            s.metadata.namespace = "ns".into();
        }
        if s.metadata.generation == 0 {
            s.metadata.generation = 1;
        }
        s
    }

    fn request(name: &str) -> proto::ImportImageRequest {
        proto::ImportImageRequest {
            namespace: "ns".into(),
            name: name.into(),
            ..Default::default()
        }
    }

    fn seed() -> ImageStream {
        stream(serde_json::json!({
            "kind": "ImageStream", "apiVersion": "v1",
            "metadata": {"name": "ruby"},
            "spec": {"dockerImageRepository": "openshift/ruby-20-centos7"}
        }))
    }

    #[test]
    fn a_new_repository_stream_imports_everything_once() {
        let mut s = seed();
        let plan = needs_import(&s).unwrap();
        assert_eq!(
            plan.repository.as_ref().unwrap().from,
            "openshift/ruby-20-centos7"
        );
        assert_eq!(plan.repository.unwrap().failure_tags, ["latest"]);
        s.metadata
            .annotations
            .insert(ANNOTATION_DOCKER_REPOSITORY_CHECK.into(), "t".into());
        assert_eq!(needs_import(&s), None);
    }

    #[test]
    fn docker_image_tags_import_until_their_generation_is_observed() {
        let mut s = stream(serde_json::json!({
            "metadata": {"name": "ruby"},
            "spec": {"tags": [
                {"name": "a", "from": {"kind": "DockerImage", "name": "quay.io/x/a:1"}, "generation": 2},
                {"name": "ref", "reference": true, "from": {"kind": "DockerImage", "name": "quay.io/x/r:1"}},
                {"name": "alias", "from": {"kind": "ImageStreamTag", "name": "a"}}
            ]}
        }));
        let plan = needs_import(&s).unwrap();
        assert_eq!(
            plan.tags,
            [TagImport {
                tag: "a".into(),
                from: "quay.io/x/a:1".into(),
                insecure: false,
                generation: 2
            }]
        );
        s.status_tag_mut("a").items.push(TagEvent {
            generation: Some(1),
            ..TagEvent::default()
        });
        assert!(needs_import(&s).is_some(), "observed 1 < 2");
        s.status_tag_mut("a").conditions.push(TagEventCondition {
            r#type: IMPORT_SUCCESS.into(),
            generation: 2,
            ..TagEventCondition::default()
        });
        assert_eq!(latest_observed_generation(&s, "a"), 2);
        assert_eq!(needs_import(&s), None, "a failure at 2 is observed too");
    }

    #[test]
    fn pull_specs_as_written() {
        assert_eq!(repository_as_written("ruby"), "ruby");
        assert_eq!(repository_as_written("ruby:3"), "ruby");
        assert_eq!(
            repository_as_written("127.0.0.1:5000/a/b:v1"),
            "127.0.0.1:5000/a/b"
        );
        assert_eq!(
            repository_as_written("127.0.0.1:5000/a/b"),
            "127.0.0.1:5000/a/b"
        );
        assert_eq!(repository_as_written("q.io/a@sha256:00"), "q.io/a");
    }

    #[test]
    fn import_image_follows_oc() {
        // a missing stream needs --confirm
        let err = import_image(&request("ruby"), None).unwrap_err();
        assert!(
            matches!(&err, ApiError::NotFound(m) if m.contains("pass --confirm")),
            "{err}"
        );
        // --confirm creates one tag from NAME:TAG
        let plan = import_image(
            &proto::ImportImageRequest {
                confirm: true,
                from: "quay.io/x/app:2".into(),
                scheduled: true,
                ..request("app:v2")
            },
            None,
        )
        .unwrap();
        assert!(plan.create);
        assert_eq!(plan.set_spec_tags[0].name, "v2");
        assert!(
            plan.set_spec_tags[0]
                .import_policy
                .as_ref()
                .unwrap()
                .scheduled
        );
        assert_eq!(plan.tags[0].from, "quay.io/x/app:2");
        // --all --confirm follows the repository
        let plan = import_image(
            &proto::ImportImageRequest {
                confirm: true,
                all: true,
                from: "quay.io/x/app".into(),
                ..request("app")
            },
            None,
        )
        .unwrap();
        assert_eq!(plan.set_repository.as_deref(), Some("quay.io/x/app"));
        // a repository stream: NAME imports everything, NAME:TAG one tag
        let plan = import_image(&request("ruby"), Some(&seed())).unwrap();
        assert!(plan.repository.is_some() && plan.tags.is_empty());
        let plan = import_image(&request("ruby:v0.4"), Some(&seed())).unwrap();
        assert_eq!(plan.tags[0].from, "openshift/ruby-20-centos7:v0.4");
        assert!(plan.set_spec_tags.is_empty());
        // tag and --all
        let err = import_image(
            &proto::ImportImageRequest {
                all: true,
                ..request("ruby:v1")
            },
            Some(&seed()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("--all"), "{err}");
        // another repository needs --confirm
        let err = import_image(
            &proto::ImportImageRequest {
                all: true,
                from: "quay.io/other/ruby".into(),
                ..request("ruby")
            },
            Some(&seed()),
        )
        .unwrap_err();
        assert!(matches!(err, ApiError::Conflict(_)));
        // by ID
        assert!(import_image(&request("ruby@sha256:00"), Some(&seed())).is_err());
    }

    #[test]
    fn import_image_of_a_spec_tag_keeps_or_updates_its_source() {
        let s = stream(serde_json::json!({
            "metadata": {"name": "app"},
            "spec": {"tags": [
                {"name": "latest", "from": {"kind": "DockerImage", "name": "quay.io/x/app:1"}, "generation": 1}
            ]}
        }));
        let plan = import_image(&request("app"), Some(&s)).unwrap();
        assert!(plan.set_spec_tags.is_empty());
        assert_eq!(plan.tags[0].from, "quay.io/x/app:1");
        let plan = import_image(
            &proto::ImportImageRequest {
                scheduled: true,
                ..request("app")
            },
            Some(&s),
        )
        .unwrap();
        assert!(
            plan.set_spec_tags[0]
                .import_policy
                .as_ref()
                .unwrap()
                .scheduled
        );
        let err = import_image(
            &proto::ImportImageRequest {
                from: "quay.io/x/app:2".into(),
                ..request("app")
            },
            Some(&s),
        )
        .unwrap_err();
        assert!(matches!(err, ApiError::Conflict(_)));
        let err = import_image(&request("app:nope"), Some(&s)).unwrap_err();
        assert!(matches!(err, ApiError::NotFound(_)));
        // without a repository, --all imports every DockerImage tag
        let plan = import_image(
            &proto::ImportImageRequest {
                all: true,
                ..request("app")
            },
            Some(&s),
        )
        .unwrap();
        assert_eq!(plan.tags.len(), 1);
    }

    #[test]
    fn scheduled_tags() {
        let s = stream(serde_json::json!({
            "metadata": {"name": "app"},
            "spec": {"tags": [
                {"name": "a", "from": {"kind": "DockerImage", "name": "q.io/a:1"}, "importPolicy": {"scheduled": true}},
                {"name": "b", "from": {"kind": "DockerImage", "name": "q.io/b:1"}}
            ]}
        }));
        let plan = scheduled(&s).unwrap();
        assert_eq!(plan.tags.len(), 1);
        assert_eq!(plan.tags[0].tag, "a");
        assert!(!has_scheduled_tags(&seed()));
    }
}
