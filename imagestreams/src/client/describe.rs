//! `imagestreams describe is [NAME...]`: the `oc describe is` text. The
//! stream's metadata, then each tag: where it comes from, its annotations,
//! whether an import is pending or failed, and its history, newest first.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    io::Write,
};

use chrono::{DateTime, Utc};
use imagestreams_common::{
    model::{
        CONDITION_FALSE, FROM_DOCKER_IMAGE, FROM_IMAGE_STREAM_IMAGE, FROM_IMAGE_STREAM_TAG,
        IMPORT_SUCCESS, ImageStream, NamedTagEventList, REFERENCE_POLICY_LOCAL, TagReference,
        policy::{self, Policy},
    },
    reference::Reference,
};
use imagestreams_images_api::{human_size, view::Image};

use super::{
    Client, ClientError, Context,
    get::unique_images,
    humanize::{ago, parse_time},
    resource,
    tabwriter::TabWriter,
    tags::{follow_tag_reference, prioritize_tags},
};
use crate::cli::DescribeArgs;

/// What `oc` prints for an empty value.
const NONE: &str = "<none>";

/// Runs `describe`.
pub async fn run(
    ctx: &mut Context,
    args: &DescribeArgs,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), ClientError> {
    let names = resource::names(&args.resource, &args.names)?;
    let namespace = ctx.namespace().to_owned();
    let client = ctx.client().await?;
    let streams = if names.is_empty() {
        let mut items = client.list_all(&namespace, "").await?.items;
        items.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        items
    } else {
        let mut streams = Vec::with_capacity(names.len());
        for name in &names {
            streams.push(client.get(&namespace, name).await?);
        }
        streams
    };
    if streams.is_empty() {
        writeln!(err, "No resources found in {namespace} namespace.")?;
        return Ok(());
    }
    let now = Utc::now();
    for (i, stream) in streams.iter().enumerate() {
        if i > 0 {
            out.write_all(b"\n\n")?;
        }
        let images = current_images(client, stream).await;
        out.write_all(describe(stream, &images, now).as_bytes())?;
    }
    Ok(())
}

/// The current image of each tag of `stream`, by digest, as far as the server has their metadata (a tag
/// whose image cannot be had is described without it).
pub async fn current_images(client: &mut Client, stream: &ImageStream) -> Images {
    let mut images = Images::new();
    let digests: BTreeSet<&str> = stream
        .status
        .iter()
        .flat_map(|s| s.tags.iter())
        .filter_map(|t| t.items.first())
        .map(|e| e.image.as_str())
        .filter(|d| !d.is_empty())
        .collect();
    for digest in digests {
        if let Ok(found) = client
            .get_image(&stream.metadata.namespace, &stream.metadata.name, digest)
            .await
        {
            images.insert(digest.to_owned(), found.image);
        }
    }
    images
}

/// Images by digest.
pub type Images = BTreeMap<String, Image>;

/// The description of `stream`, times relative to `now`.
pub fn describe(stream: &ImageStream, images: &Images, now: DateTime<Utc>) -> String {
    let mut w = TabWriter::describe();
    let meta = &stream.metadata;
    field(&mut w, "Name", &meta.name);
    if !meta.namespace.is_empty() {
        field(&mut w, "Namespace", &meta.namespace);
    }
    if let Some(created) = meta.creation_timestamp.as_deref().and_then(parse_time) {
        field(&mut w, "Created", &ago(created, now));
    }
    map(&mut w, "Labels", &meta.labels);
    let mut annotations = meta.annotations.clone();
    if let Some(description) = annotations.remove("description").filter(|d| !d.is_empty()) {
        field(&mut w, "Description", &description);
    }
    map(&mut w, "Annotations", &annotations);
    field(&mut w, "Image Repository", image_repository(stream));
    let local = stream.spec.lookup_policy.as_ref().is_some_and(|p| p.local);
    field(&mut w, "Image Lookup", &format!("local={local}"));
    tags(&mut w, stream, images, now);
    w.finish()
}

/// `Label:\tvalue`, one tab-led line per further line of the value.
fn field(w: &mut TabWriter, label: &str, value: &str) {
    let value = if value.is_empty() { NONE } else { value };
    let _ = write!(w, "{label}:");
    for line in value.split('\n') {
        let _ = writeln!(w, "\t{line}");
    }
}

/// `Label:\tk=v` for the first key, `\tk=v` for the others; `<none>` when empty.
fn map(w: &mut TabWriter, label: &str, items: &BTreeMap<String, String>) {
    let mut entries = items.iter();
    let Some((key, value)) = entries.next() else {
        field(w, label, "");
        return;
    };
    field(w, label, &format!("{key}={value}"));
    for (key, value) in entries {
        for line in format!("{key}={value}").split('\n') {
            let _ = writeln!(w, "\t{line}");
        }
    }
}

/// Where the stream's images are pulled from: the public repository, else
/// the status', else the spec's.
fn image_repository(stream: &ImageStream) -> &str {
    let status = stream.status.as_ref();
    [
        status.map(|s| s.public_docker_image_repository.as_str()),
        status.map(|s| s.docker_image_repository.as_str()),
        Some(stream.spec.docker_image_repository.as_str()),
    ]
    .into_iter()
    .flatten()
    .find(|r| !r.is_empty())
    .unwrap_or_default()
}

fn tags(w: &mut TabWriter, stream: &ImageStream, images: &Images, now: DateTime<Utc>) {
    let status_tags: &[NamedTagEventList] = stream
        .status
        .as_ref()
        .map(|s| s.tags.as_slice())
        .unwrap_or_default();
    if status_tags.is_empty() && stream.spec.tags.is_empty() {
        let _ = writeln!(w, "Tags:\t{NONE}");
        return;
    }

    let mut sorted: Vec<String> = status_tags.iter().map(|t| t.tag.clone()).collect();
    // Spec tags that only follow another tag of this stream are listed with it.
    let mut followers: BTreeSet<&str> = BTreeSet::new();
    let mut followed_by: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for spec in &stream.spec.tags {
        if let Some((target, true)) = follow_tag_reference(stream, &spec.name) {
            followers.insert(&spec.name);
            followed_by
                .entry(target)
                .or_default()
                .push(spec.name.clone());
        }
        if stream.status_tag(&spec.name).is_none() {
            sorted.push(spec.name.clone());
        }
    }
    let _ = write!(
        w,
        "Unique Images:\t{}\nTags:\t{}\n\n",
        unique_images(stream),
        sorted.len()
    );
    prioritize_tags(&mut sorted);

    let mut first = true;
    for tag in sorted.iter().filter(|t| !followers.contains(t.as_str())) {
        if !first {
            let _ = writeln!(w);
        }
        first = false;
        match followed_by.get_mut(tag.as_str()) {
            Some(names) => {
                prioritize_tags(names);
                let _ = writeln!(w, "{tag} ({})", names.join(", "));
            }
            None => {
                let _ = writeln!(w, "{tag}");
            }
        }
        tag_section(w, stream, tag, images, now);
    }
}

fn tag_section(
    w: &mut TabWriter,
    stream: &ImageStream,
    tag: &str,
    images: &Images,
    now: DateTime<Utc>,
) {
    let history = stream.status_tag(tag);
    let spec = stream.spec_tag(tag);
    let _ = writeln!(w, "{}", source_line(stream, spec));
    if let Some(spec) = spec {
        let policy = spec.import_policy.clone().unwrap_or_default();
        if policy.insecure {
            let _ = writeln!(w, "    will use insecure HTTPS or HTTP connections");
        }
        if spec
            .reference_policy
            .as_ref()
            .is_some_and(|p| p.r#type == REFERENCE_POLICY_LOCAL)
        {
            let _ = writeln!(
                w,
                "    prefer registry pullthrough when referencing this tag"
            );
        }
    }
    let _ = writeln!(w);

    if let Some(spec) = spec {
        let a = &spec.annotations;
        let list = |key: &str| {
            a.get(key)
                .filter(|v| !v.is_empty())
                .map(|v| v.split(',').collect::<Vec<_>>().join(", "))
        };
        let mut extra = Vec::new();
        if let Some(d) = a.get("description").filter(|d| !d.is_empty()) {
            extra.extend(d.lines().map(|l| format!("  {l}")));
        }
        if let Some(t) = list("tags") {
            extra.push(format!("  Tags: {t}"));
        }
        if let Some(t) = list("supports") {
            extra.push(format!("  Supports: {t}"));
        }
        if let Some(t) = a.get("sampleRepo").filter(|t| !t.is_empty()) {
            extra.push(format!("  Example Repo: {t}"));
        }
        if !extra.is_empty() {
            let _ = writeln!(w, "{}\n", extra.join("\n"));
        }
        if importing(spec, history) {
            let _ = writeln!(w, "  ~ importing latest image ...");
        }
    }

    let Some(history) = history else {
        let _ = writeln!(w, "  no images");
        return;
    };
    for condition in &history.conditions {
        if condition.r#type == IMPORT_SUCCESS && condition.status == CONDITION_FALSE {
            let _ = writeln!(
                w,
                "  ! error: Import failed ({}): {}",
                condition.reason, condition.message
            );
            if let Some(t) = parse_time(&condition.last_transition_time) {
                let _ = writeln!(w, "      {}", ago(t, now));
            }
        }
    }
    if history.items.is_empty() {
        let _ = writeln!(w, "  no images");
        return;
    }
    for (i, event) in history.items.iter().enumerate() {
        let marker = if i == 0 { "  * " } else { "    " };
        let _ = writeln!(w, "{marker}{}", event.docker_image_reference);
        let age = parse_time(&event.created)
            .map(|t| ago(t, now))
            .unwrap_or_default();
        // The digest, when the pull spec does not already pin it.
        let pinned = Reference::parse_normalized(&event.docker_image_reference)
            .ok()
            .and_then(|r| r.digest().map(str::to_owned));
        if !event.image.is_empty() && pinned.as_deref() != Some(event.image.as_str()) {
            let _ = writeln!(w, "      {age}\t{}", event.image);
        } else {
            let _ = writeln!(w, "      {age}");
        }
        if let Some(line) = images
            .get(&event.image)
            .filter(|_| i == 0)
            .and_then(image_line)
        {
            let _ = writeln!(w, "      {line}");
        }
    }
}

/// `linux/amd64, 3 layers, 2.1 MiB` (platforms and size of an image), `linux/amd64, linux/arm64` (an
/// index), or why its metadata is missing.
fn image_line(image: &Image) -> Option<String> {
    if let Some(error) = image.metadata_error() {
        return Some(format!("! metadata: {error}"));
    }
    let mut parts = vec![image.platforms().join(", ")];
    if let Some(metadata) = &image.docker_image_metadata {
        let layers = image.docker_image_layers.len();
        parts.push(format!(
            "{layers} layer{}",
            if layers == 1 { "" } else { "s" }
        ));
        parts.push(human_size(metadata.size));
    }
    parts.retain(|p| !p.is_empty());
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Where a tag's images come from, in `oc`'s words.
fn source_line(stream: &ImageStream, spec: Option<&TagReference>) -> String {
    let Some(spec) = spec else {
        return "  no spec tag".to_owned();
    };
    if let Some(line) = policy_line(stream, spec) {
        return line;
    }
    let Some(from) = &spec.from else {
        return "  tag without source image".to_owned();
    };
    let name = if !from.namespace.is_empty() && from.namespace != stream.metadata.namespace {
        format!("{}/{}", from.namespace, from.name)
    } else {
        from.name.clone()
    };
    let scheduled = spec.import_policy.as_ref().is_some_and(|p| p.scheduled);
    let kind = from.kind.as_str();
    match (kind, spec.reference, scheduled) {
        (FROM_IMAGE_STREAM_TAG, true, _) => format!("  reference to {name}"),
        (FROM_IMAGE_STREAM_TAG, false, true) => format!("  updates automatically from {name}"),
        (FROM_DOCKER_IMAGE, true, _) => format!("  reference to registry {name}"),
        (FROM_DOCKER_IMAGE, false, true) => {
            format!("  updates automatically from registry {name}")
        }
        (FROM_IMAGE_STREAM_IMAGE, true, _) => format!("  reference to image {name}"),
        (FROM_IMAGE_STREAM_TAG | FROM_DOCKER_IMAGE | FROM_IMAGE_STREAM_IMAGE, _, _) => {
            format!("  tagged from {name}")
        }
        (_, true, _) => format!("  reference to {kind} {name}"),
        (_, false, _) => format!("  updates from {kind} {name}"),
    }
}

/// For a tag with a policy: the policy, what it chooses and among how many
/// candidates, e.g. `follows 1.10.0 by policy semver ">=1.0 <2" (4 candidates)`.
fn policy_line(stream: &ImageStream, spec: &TagReference) -> Option<String> {
    let choice = policy::choose_in(stream, spec)?;
    let described = Policy::describe(spec.policy.as_ref()?);
    Some(match choice {
        Ok(choice) => {
            let count = match choice.candidates {
                1 => "1 candidate".to_owned(),
                n => format!("{n} candidates"),
            };
            match choice.chosen {
                Some(tag) => format!("  follows {tag} by policy {described} ({count})"),
                None => format!("  follows no tag yet by policy {described} ({count})"),
            }
        }
        Err(e) => format!("  ! invalid policy {described}: {}", e.message),
    })
}

/// Whether the spec asks for a generation the status has not answered yet
/// (never for a tag with a policy, which imports nothing).
fn importing(spec: &TagReference, history: Option<&NamedTagEventList>) -> bool {
    let Some(wanted) = spec.generation else {
        return false;
    };
    if spec.reference || spec.policy.is_some() {
        return false;
    }
    let observed = history.map_or(0, |h| {
        let item = h.latest().and_then(|e| e.generation).unwrap_or(0);
        let condition = h.condition(IMPORT_SUCCESS).map_or(0, |c| c.generation);
        item.max(condition)
    });
    wanted > observed
}

#[cfg(test)]
mod tests {
    use imagestreams_common::model::{
        ImageLookupPolicy, ObjectReference, TagEvent, TagEventCondition, TagImportPolicy,
        TagReferencePolicy,
    };

    use super::*;

    fn seed(file: &str) -> ImageStream {
        let path = format!("{}/../testdata/seed/{file}", env!("CARGO_MANIFEST_DIR"));
        ImageStream::parse_document(&std::fs::read(path).unwrap()).unwrap()
    }

    fn now() -> DateTime<Utc> {
        parse_time("2015-05-05T19:14:59Z").unwrap()
    }

    #[test]
    fn the_seed_like_oc() {
        let text = describe(&seed("imagestream-synced.json"), &Images::new(), now());
        let expected = "\
Name:\t\t\truby
Namespace:\t\tdefault
Created:\t\t3 minutes ago
Labels:\t\t\t<none>
Annotations:\t\topenshift.io/image.dockerRepositoryCheck=2015-05-05T19:12:00Z
Image Repository:\topenshift/ruby-20-centos7
Image Lookup:\t\tlocal=false
Unique Images:\t\t2
Tags:\t\t\t2

latest
  no spec tag

  * openshift/ruby-20-centos7:latest
      3 minutes ago\t94439378e4546d72ef221c47fe2ac30065bcc3a98c25bc51bed77ec00efabb95

v0.4
  no spec tag

  * openshift/ruby-20-centos7:v0.4
      3 minutes ago\tc7dbf059225847a7bfb4f40bc335ad7e70defc913de1a28aabea3a2072844a3f
";
        assert_eq!(text, expected);
    }

    #[test]
    fn a_stream_without_tags() {
        let text = describe(&seed("imagestream-create.json"), &Images::new(), now());
        assert!(text.contains("Tags:\t\t\t<none>\n"), "{text}");
        assert!(!text.contains("Namespace:"), "{text}");
    }

    fn spec_tag(name: &str, kind: &str, from: &str) -> TagReference {
        TagReference {
            name: name.to_owned(),
            from: Some(ObjectReference {
                kind: kind.to_owned(),
                name: from.to_owned(),
                ..ObjectReference::default()
            }),
            generation: Some(2),
            ..TagReference::default()
        }
    }

    #[test]
    fn tags_with_sources_histories_and_conditions() {
        let mut is = ImageStream::new("ns", "app");
        is.metadata.labels.insert("app".into(), "web".into());
        is.spec.lookup_policy = Some(ImageLookupPolicy { local: true });
        let digest = format!("sha256:{}", "a".repeat(64));
        let older = format!("sha256:{}", "b".repeat(64));
        let mut v1 = spec_tag("1.0", FROM_DOCKER_IMAGE, "quay.io/org/app:1.0");
        v1.import_policy = Some(TagImportPolicy {
            scheduled: true,
            insecure: true,
            ..TagImportPolicy::default()
        });
        v1.reference_policy = Some(TagReferencePolicy {
            r#type: REFERENCE_POLICY_LOCAL.into(),
        });
        v1.annotations
            .insert("description".into(), "App 1.0".into());
        v1.annotations.insert("tags".into(), "builder,app".into());
        let latest = spec_tag("latest", FROM_IMAGE_STREAM_TAG, "1.0");
        let broken = spec_tag("2.0", FROM_DOCKER_IMAGE, "unreachable.example/app:2.0");
        let mut pinned = spec_tag("pinned", FROM_IMAGE_STREAM_IMAGE, "app@sha256:x");
        pinned.reference = true;
        is.spec.tags = vec![v1, latest, broken, pinned];
        let history = is.status_tag_mut("1.0");
        history.items = vec![
            TagEvent {
                created: "2015-05-05T19:14:00Z".into(),
                docker_image_reference: format!("quay.io/org/app@{digest}"),
                image: digest.clone(),
                generation: Some(2),
            },
            TagEvent {
                created: "2015-05-05T17:14:59Z".into(),
                docker_image_reference: format!("quay.io/org/app@{older}"),
                image: older.clone(),
                generation: Some(1),
            },
        ];
        is.status_tag_mut("2.0").conditions = vec![TagEventCondition {
            r#type: IMPORT_SUCCESS.into(),
            status: CONDITION_FALSE.into(),
            last_transition_time: "2015-05-05T19:13:59Z".into(),
            reason: "NotFound".into(),
            message: "dial tcp: lookup unreachable.example: no such host".into(),
            generation: 2,
        }];
        let text = describe(&is, &Images::new(), now());
        let tags_part = &text[text.find("\n\n").unwrap() + 2..];
        let expected = "\
2.0
  tagged from unreachable.example/app:2.0

  ! error: Import failed (NotFound): dial tcp: lookup unreachable.example: no such host
      About a minute ago
  no images

1.0 (latest)
  updates automatically from registry quay.io/org/app:1.0
    will use insecure HTTPS or HTTP connections
    prefer registry pullthrough when referencing this tag

  App 1.0
  Tags: builder, app

  * quay.io/org/app@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
      59 seconds ago
    quay.io/org/app@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb
      2 hours ago

pinned
  reference to image app@sha256:x

  no images
";
        assert_eq!(tags_part, expected, "{text}");
        assert!(text.contains("Labels:\t\t\tapp=web\n"), "{text}");
        assert!(text.contains("Image Lookup:\t\tlocal=true\n"), "{text}");
        assert!(
            text.contains("Unique Images:\t\t2\nTags:\t\t\t4\n"),
            "{text}"
        );
    }

    #[test]
    fn pending_imports_show() {
        let mut is = ImageStream::new("ns", "app");
        is.spec.tags = vec![spec_tag("1.0", FROM_DOCKER_IMAGE, "quay.io/org/app:1.0")];
        let text = describe(&is, &Images::new(), now());
        assert!(
            text.ends_with("1.0\n  tagged from quay.io/org/app:1.0\n\n  ~ importing latest image ...\n  no images\n"),
            "{text}"
        );
    }

    #[test]
    fn policy_tags_show_the_policy_the_choice_and_the_candidates() {
        let mut is = ImageStream::new("ns", "app");
        let item = |n: char| TagEvent {
            created: "2015-05-05T19:10:00Z".into(),
            docker_image_reference: format!("r/ns/app@sha256:{}", n.to_string().repeat(64)),
            image: format!("sha256:{}", n.to_string().repeat(64)),
            generation: Some(1),
        };
        let status = is.status.get_or_insert_default();
        for (tag, n) in [
            ("1.0.0", 'a'),
            ("1.10.0", 'b'),
            ("2.0.0", 'c'),
            ("latest", 'c'),
        ] {
            status.tags.push(NamedTagEventList {
                tag: tag.into(),
                items: vec![item(n)],
                ..NamedTagEventList::default()
            });
        }
        let policy = |name: &str, range: &str| TagReference {
            name: name.into(),
            generation: Some(2),
            policy: Some(imagestreams_common::model::TagPolicy {
                semver: Some(imagestreams_common::model::SemverPolicy {
                    range: range.into(),
                }),
                ..Default::default()
            }),
            ..TagReference::default()
        };
        is.spec.tags = vec![policy("latest-1.x", ">=1.0 <2"), policy("v3", ">=3")];
        let text = describe(&is, &Images::new(), now());
        assert!(
            text.contains("latest-1.x\n  follows 1.10.0 by policy semver \">=1.0 <2\" (2 candidates)\n\n  no images\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "v3\n  follows no tag yet by policy semver \">=3\" (0 candidates)\n\n  no images\n"
            ),
            "{text}"
        );
    }
}
