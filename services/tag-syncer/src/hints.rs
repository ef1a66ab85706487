//! Which tags of a stream follow what a webhook names (issue 18): the
//! import a receiver's delivery asks for. A delivery is a hint, never the
//! truth: it only chooses the tags to import again, and the registry says
//! what they point to now.
//!
//! A stream tag follows `registry/repository:tag` when
//!
//! - it is a `DockerImage` spec tag imported from that repository and tag
//!   (`spec.tags[].from`, compared in normal form: `nginx:1.27` is
//!   `docker.io/library/nginx:1.27`), or
//! - the stream follows the whole repository (`spec.dockerImageRepository`)
//!   and has no spec tag of that name.
//!
//! A hint without a registry (Nexus does not say which host serves its
//! repositories) matches the repository on any registry: the receiver's
//! namespace and repository allow-list are what bound it.

use imagestreams_common::{model::ImageStream, reference::Reference};

use crate::plan::{ImportPlan, TagImport, importable, insecure};

/// A repository and tags, as a webhook names them, in normal form.
#[derive(Debug, Clone, Copy)]
pub struct Named<'a> {
    /// The registry host, when the sender says.
    pub registry: Option<&'a str>,
    /// The repository path on it (`library/nginx`).
    pub repository: &'a str,
    /// The tags pushed.
    pub tags: &'a [String],
}

impl Named<'_> {
    /// Whether `reference` is in the named repository (any tag).
    fn is_repository_of(&self, reference: &Reference) -> bool {
        reference.path() == self.repository && self.registry.is_none_or(|r| r == reference.domain())
    }
}

/// The import of the tags of `stream` that follow `named`; `None` when none
/// does.
pub fn followers(stream: &ImageStream, named: Named<'_>) -> Option<ImportPlan> {
    let mut plan = ImportPlan::new(stream);
    for spec in &stream.spec.tags {
        let Some(from) = importable(spec) else {
            continue;
        };
        let Ok(reference) = Reference::parse_normalized(from) else {
            continue;
        };
        let tag = reference.tag().unwrap_or("latest");
        if reference.digest().is_none()
            && named.is_repository_of(&reference)
            && named.tags.iter().any(|t| t == tag)
        {
            plan.tags.push(TagImport {
                tag: spec.name.clone(),
                from: from.to_owned(),
                insecure: insecure(spec),
                generation: spec.generation.unwrap_or(stream.metadata.generation),
            });
        }
    }
    let whole = stream.spec.docker_image_repository.as_str();
    if let Ok(repository) = Reference::parse_normalized(whole)
        && !whole.is_empty()
        && named.is_repository_of(&repository)
    {
        for tag in named.tags {
            if stream.spec_tag(tag).is_none() {
                plan.tags.push(TagImport {
                    tag: tag.clone(),
                    from: format!("{whole}:{tag}"),
                    insecure: false,
                    generation: stream.metadata.generation,
                });
            }
        }
    }
    (!plan.is_empty()).then_some(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(json: serde_json::Value) -> ImageStream {
        let mut stream: ImageStream = serde_json::from_value(json).unwrap();
        stream.metadata.namespace = "ns1".into();
        stream
    }

    fn tags(plan: Option<ImportPlan>) -> Vec<(String, String)> {
        plan.map(|p| p.tags.into_iter().map(|t| (t.tag, t.from)).collect())
            .unwrap_or_default()
    }

    fn named<'a>(registry: Option<&'a str>, repository: &'a str, tags: &'a [String]) -> Named<'a> {
        Named {
            registry,
            repository,
            tags,
        }
    }

    #[test]
    fn spec_tags_follow_their_source_in_normal_form() {
        let s = stream(serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {"tags": [
                {"name": "stable", "from": {"kind": "DockerImage", "name": "nginx:1.27"}},
                {"name": "edge", "from": {"kind": "DockerImage", "name": "docker.io/library/nginx:mainline"}},
                {"name": "pinned", "from": {"kind": "DockerImage", "name": "nginx@sha256:0000000000000000000000000000000000000000000000000000000000000000"}},
                {"name": "other", "from": {"kind": "DockerImage", "name": "quay.io/library/nginx:1.27"}},
                {"name": "alias", "from": {"kind": "ImageStreamTag", "name": "web:stable"}}
            ]}
        }));
        let pushed = vec!["1.27".to_owned()];
        assert_eq!(
            tags(followers(
                &s,
                named(Some("docker.io"), "library/nginx", &pushed)
            )),
            [("stable".to_owned(), "nginx:1.27".to_owned())],
            "the tag from index.docker.io's nginx:1.27, not quay.io's, not a pinned digest"
        );
        assert_eq!(
            tags(followers(&s, named(None, "library/nginx", &pushed))),
            [
                ("stable".to_owned(), "nginx:1.27".to_owned()),
                ("other".to_owned(), "quay.io/library/nginx:1.27".to_owned())
            ],
            "no registry named: any registry's"
        );
        let unrelated = vec!["1.26".to_owned()];
        assert!(followers(&s, named(Some("docker.io"), "library/nginx", &unrelated)).is_none());
    }

    #[test]
    fn a_stream_following_a_repository_imports_the_named_tags_it_has_no_spec_for() {
        let s = stream(serde_json::json!({
            "metadata": {"name": "app"},
            "spec": {
                "dockerImageRepository": "registry.example.com:5000/team/app",
                "tags": [{"name": "prod", "from": {"kind": "DockerImage", "name": "registry.example.com:5000/team/app:v2"}}]
            }
        }));
        let pushed = vec!["v2".to_owned(), "v3".to_owned(), "prod".to_owned()];
        assert_eq!(
            tags(followers(
                &s,
                named(Some("registry.example.com:5000"), "team/app", &pushed)
            )),
            [
                (
                    "prod".to_owned(),
                    "registry.example.com:5000/team/app:v2".to_owned()
                ),
                (
                    "v2".to_owned(),
                    "registry.example.com:5000/team/app:v2".to_owned()
                ),
                (
                    "v3".to_owned(),
                    "registry.example.com:5000/team/app:v3".to_owned()
                ),
            ],
            "prod follows v2 by its spec; a pushed `prod` is not the spec tag's source"
        );
        assert!(
            followers(&s, named(Some("registry.example.com"), "team/app", &pushed)).is_none(),
            "another port is another registry"
        );
    }
}
