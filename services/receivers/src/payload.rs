//! Each sender's payload, read as a [`Hint`]: the registry host (when the
//! sender names it), the repository path, the tags and the digest, in the
//! normal form image references have here (`docker.io`, not
//! `index.docker.io`; `library/ubuntu`, not `ubuntu`; a GHCR owner in lower
//! case). Only pushes make hints; pings, test events and other actions are
//! [`Delivery::Ping`] or [`Delivery::Ignored`], answered and not acted on.
//! Payloads are read defensively (fields that are missing or of another
//! type than documented are skipped), but a body that is not JSON, or a push
//! without a repository, is [`Malformed`] (400, never a silent 200).

use http::HeaderMap;
use imagestreams_formats::reference::{Reference, is_valid_tag, validate_digest};
use serde_json::Value;

use crate::kind::Kind;

/// What changed, as the sender says: a hint of what to import again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    /// The registry host (with its port), when the sender names it.
    pub registry: Option<String>,
    /// The repository's path on the registry, normalized.
    pub repository: String,
    /// The tags pushed (none for a push by digest).
    pub tags: Vec<String>,
    /// The digest pushed, when the sender says.
    pub digest: Option<String>,
}

/// What a delivery asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Images were pushed.
    Pushes(Vec<Hint>),
    /// A ping or test event: answered, nothing else.
    Ping,
    /// Not a push (a delete, a pull, another package type, a push by digest
    /// alone): answered, nothing else; the reason is counted.
    Ignored(String),
}

/// A delivery and the id its sender gave it, for deduplication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The sender's delivery id (`X-GitHub-Delivery`, a CloudEvents `id`, a
    /// Pub/Sub `messageId`…), when it has one.
    pub id: Option<String>,
    /// What the delivery asks for.
    pub delivery: Delivery,
}

/// A payload that cannot be read: 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {kind} payload: {reason}")]
pub struct Malformed {
    /// The receiver's kind.
    pub kind: Kind,
    /// What is wrong.
    pub reason: String,
}

/// Reads `body` (already verified) as `kind` sends it.
pub fn parse(kind: Kind, headers: &HeaderMap, body: &[u8]) -> Result<Parsed, Malformed> {
    let malformed = |reason: String| Malformed { kind, reason };
    // CloudEvents in binary mode carry the event's attributes in headers
    // and its data as the body
    let binary_event = header(headers, "ce-type").is_some();
    let json: Value = serde_json::from_slice(body)
        .map_err(|e| malformed(format!("the body is not JSON: {e}")))?;
    let header_id = |name: &str| header(headers, name).map(str::to_owned);
    let (id, delivery) = match kind {
        Kind::Dockerhub => (None, dockerhub(&json)),
        Kind::Quay => (None, quay(&json)),
        Kind::Ghcr => (
            header_id("x-github-delivery"),
            ghcr(header(headers, "x-github-event").unwrap_or_default(), &json),
        ),
        Kind::Harbor => (text(&json, "/id"), harbor(&json)),
        Kind::Gitlab | Kind::Distribution => distribution(&json),
        Kind::Acr => (text(&json, "/id"), acr(&json)),
        Kind::Gar => gar(&json),
        Kind::Ecr => (text(&json, "/id"), ecr(&json)),
        Kind::Artifactory => (None, artifactory(&json)),
        Kind::Nexus => (header_id("x-nexus-webhook-delivery"), nexus(headers, &json)),
        Kind::Zot | Kind::Cloudevents if binary_event => (
            header_id("ce-id"),
            cloud_event(header(headers, "ce-type").unwrap_or_default(), &json),
        ),
        Kind::Zot | Kind::Cloudevents => (
            text(&json, "/id"),
            cloud_event(
                &text(&json, "/type").unwrap_or_default(),
                json.get("data").unwrap_or(&Value::Null),
            ),
        ),
        Kind::GenericHmac => (header_id("x-imagestreams-delivery"), generic(&json)),
    };
    Ok(Parsed {
        id,
        delivery: delivery.map_err(malformed)?,
    })
}

type Read = Result<Delivery, String>;

/// Docker Hub: `repository.repo_name`, `push_data.tag`; no digest, no host.
fn dockerhub(json: &Value) -> Read {
    let repository = text(json, "/repository/repo_name").ok_or("no repository.repo_name")?;
    let tags = text(json, "/push_data/tag").into_iter().collect();
    pushes(vec![hint(Some("docker.io"), &repository, tags, None)?])
}

/// Quay: `docker_url` (host and path), else `quay.io/` + `repository`;
/// `updated_tags` a list (or, in old payloads, a map from tag to image).
fn quay(json: &Value) -> Read {
    let (host, path) = match text(json, "/docker_url") {
        Some(url) => split_host(&url),
        None => (
            Some("quay.io".to_owned()),
            text(json, "/repository").ok_or("no docker_url or repository")?,
        ),
    };
    let tags = match json.get("updated_tags") {
        Some(Value::Array(tags)) => tags
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        Some(Value::Object(tags)) => tags.keys().cloned().collect(),
        _ => Vec::new(),
    };
    pushes(vec![hint(host.as_deref(), &path, tags, None)?])
}

/// GitHub `package` / `registry_package` events of container packages:
/// `package_url` (`ghcr.io/owner/name:tag`, sometimes with a bare `:`),
/// `container_metadata.tag.{name,digest}`.
fn ghcr(event: &str, json: &Value) -> Read {
    match event {
        "ping" => return Ok(Delivery::Ping),
        "package" | "registry_package" => {}
        other => return Ok(Delivery::Ignored(format!("GitHub event {other:?}"))),
    }
    let package = json
        .get("package")
        .or_else(|| json.get("registry_package"))
        .ok_or("no package")?;
    let kind = text(package, "/package_type").unwrap_or_default();
    if !kind.eq_ignore_ascii_case("container") {
        return Ok(Delivery::Ignored(format!("package type {kind:?}")));
    }
    let version = package.get("package_version").unwrap_or(&Value::Null);
    let tag = text(version, "/container_metadata/tag/name").filter(|t| !t.is_empty());
    let digest = text(version, "/container_metadata/tag/digest")
        .or_else(|| text(version, "/version"))
        .or_else(|| text(version, "/name"));
    let (host, path) = match text(version, "/package_url") {
        Some(url) => {
            let url = url.split_once('@').map_or(url.as_str(), |(r, _)| r);
            let (host, rest) = split_host(url);
            (host, strip_tag(&rest).to_owned())
        }
        None => {
            let owner = text(package, "/namespace")
                .or_else(|| text(package, "/owner/login"))
                .ok_or("no package_url or namespace")?;
            let name = text(package, "/name").ok_or("no package name")?;
            (Some("ghcr.io".to_owned()), format!("{owner}/{name}"))
        }
    };
    one(host.as_deref(), &path, tag, digest)
}

/// Harbor, Default (`type: PUSH_ARTIFACT`, `event_data`) or CloudEvents
/// (`type: harbor.artifact.pushed`, `data`) format: the repository's
/// `repo_full_name`, the host of a `resource_url`, and per resource a tag
/// (equal to the digest for a push by digest) and a digest.
fn harbor(json: &Value) -> Read {
    let kind = text(json, "/type").unwrap_or_default();
    let data = match kind.as_str() {
        "PUSH_ARTIFACT" | "pushImage" => json.get("event_data"),
        "harbor.artifact.pushed" => json.get("data"),
        other => return Ok(Delivery::Ignored(format!("Harbor event {other:?}"))),
    }
    .ok_or("no event data")?;
    let resources = data
        .get("resources")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let host = resources
        .iter()
        .find_map(|r| text(r, "/resource_url"))
        .and_then(|url| split_host(&url).0);
    let repository = text(data, "/repository/repo_full_name").ok_or("no repo_full_name")?;
    let mut found = Vec::new();
    for resource in &resources {
        let tag = text(resource, "/tag").filter(|t| !t.starts_with("sha256:"));
        let digest = text(resource, "/digest");
        found.push(hint(
            host.as_deref(),
            &repository,
            tag.into_iter().collect(),
            digest,
        )?);
    }
    if found.is_empty() {
        found.push(hint(host.as_deref(), &repository, Vec::new(), None)?);
    }
    pushes(found)
}

/// The CNCF distribution envelope (also GitLab's): `events[]` with
/// `action: push`, `target.{repository,tag,digest}`, `request.host`. The
/// delivery's id is its events' ids.
fn distribution(json: &Value) -> (Option<String>, Read) {
    let Some(events) = json.get("events").and_then(Value::as_array) else {
        return (None, Err("no events".to_owned()));
    };
    let ids: Vec<String> = events.iter().filter_map(|e| text(e, "/id")).collect();
    let id = (!ids.is_empty()).then(|| ids.join(","));
    let mut found = Vec::new();
    for event in events {
        if text(event, "/action").as_deref() != Some("push") {
            continue;
        }
        let Some(repository) = text(event, "/target/repository") else {
            return (id, Err("a push without target.repository".to_owned()));
        };
        let host = text(event, "/request/host");
        let tag = text(event, "/target/tag").filter(|t| !t.is_empty());
        let digest = text(event, "/target/digest");
        match hint(
            host.as_deref(),
            &repository,
            tag.into_iter().collect(),
            digest,
        ) {
            Ok(h) => found.push(h),
            Err(e) => return (id, Err(e)),
        }
    }
    if found.is_empty() {
        return (id, Ok(Delivery::Ignored("no push event".to_owned())));
    }
    (id, pushes(found))
}

/// Azure Container Registry: `action` (`push`, `ping`, …),
/// `target.{repository,tag,digest}`, `request.host`.
fn acr(json: &Value) -> Read {
    match text(json, "/action").as_deref() {
        Some("ping") => return Ok(Delivery::Ping),
        Some("push") => {}
        other => return Ok(Delivery::Ignored(format!("ACR action {other:?}"))),
    }
    let repository = text(json, "/target/repository").ok_or("no target.repository")?;
    let host = text(json, "/request/host");
    let tag = text(json, "/target/tag").filter(|t| !t.is_empty());
    let digest = text(json, "/target/digest");
    one(host.as_deref(), &repository, tag, digest)
}

/// Google Artifact Registry through Pub/Sub push: `message.data` is the
/// base64 of `{"action":"INSERT","digest":"host/…/img@sha256:…","tag":"host/…/img:1.1"}`,
/// `message.messageId` the delivery's id.
fn gar(json: &Value) -> (Option<String>, Read) {
    use base64::Engine as _;
    let id = text(json, "/message/messageId").or_else(|| text(json, "/message/message_id"));
    let read = (|| {
        let data = text(json, "/message/data").ok_or("no message.data")?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| format!("message.data is not base64: {e}"))?;
        let data: Value =
            serde_json::from_slice(&data).map_err(|e| format!("message.data is not JSON: {e}"))?;
        if text(&data, "/action").as_deref() != Some("INSERT") {
            return Ok(Delivery::Ignored(format!(
                "GAR action {:?}",
                text(&data, "/action")
            )));
        }
        let tagged = text(&data, "/tag").filter(|t| !t.is_empty());
        let pinned = text(&data, "/digest").filter(|d| !d.is_empty());
        let spec = tagged
            .as_ref()
            .or(pinned.as_ref())
            .ok_or("no tag or digest")?;
        let reference = Reference::parse_normalized(&spec.to_lowercase())
            .map_err(|e| format!("{spec:?} is not an image reference: {e}"))?;
        let digest = pinned
            .as_deref()
            .and_then(|p| p.rsplit_once('@'))
            .map(|(_, d)| d.to_owned());
        let tags = reference.tag().map(str::to_owned).into_iter().collect();
        pushes(vec![hint(
            Some(reference.domain()),
            reference.path(),
            tags,
            digest,
        )?])
    })();
    (id, read)
}

/// AWS ECR through EventBridge: `detail-type: ECR Image Action`,
/// `detail.{action-type: PUSH, result: SUCCESS, repository-name, image-tag,
/// image-digest}`; the host from `account` and `region`.
fn ecr(json: &Value) -> Read {
    let detail = json.get("detail").ok_or("no detail")?;
    if text(detail, "/action-type").as_deref() != Some("PUSH")
        || text(detail, "/result").as_deref() != Some("SUCCESS")
    {
        return Ok(Delivery::Ignored("not a successful ECR push".to_owned()));
    }
    let repository = text(detail, "/repository-name").ok_or("no repository-name")?;
    let host = match (text(json, "/account"), text(json, "/region")) {
        (Some(account), Some(region)) => Some(format!("{account}.dkr.ecr.{region}.amazonaws.com")),
        _ => None,
    };
    let tag = text(detail, "/image-tag").filter(|t| !t.is_empty());
    let digest = text(detail, "/image-digest");
    one(host.as_deref(), &repository, tag, digest)
}

/// JFrog Artifactory: `domain: docker`, `event_type: pushed`,
/// `data.{image_name,tag,sha256}`; the host of `jpd_origin` when set.
fn artifactory(json: &Value) -> Read {
    if text(json, "/domain").as_deref() != Some("docker")
        || text(json, "/event_type").as_deref() != Some("pushed")
    {
        return Ok(Delivery::Ignored(format!(
            "Artifactory event {:?}/{:?}",
            text(json, "/domain"),
            text(json, "/event_type")
        )));
    }
    let data = json.get("data").ok_or("no data")?;
    let repository = text(data, "/image_name").ok_or("no data.image_name")?;
    let host = text(json, "/jpd_origin").and_then(|origin| {
        let origin = origin.split_once("://").map_or(origin.as_str(), |(_, h)| h);
        origin.split('/').next().map(str::to_owned)
    });
    let tag = text(data, "/tag").filter(|t| !t.is_empty());
    let digest = text(data, "/sha256").map(|hex| format!("sha256:{hex}"));
    one(host.as_deref(), &repository, tag, digest)
}

/// Sonatype Nexus 3 component events (`X-Nexus-Webhook-Id:
/// rm:repository:component`), `action` CREATED or UPDATED, docker
/// components: `component.{name,version}`. No host: Nexus does not say
/// which connector serves the repository.
fn nexus(headers: &HeaderMap, json: &Value) -> Read {
    let id = header(headers, "x-nexus-webhook-id").unwrap_or_default();
    if id != "rm:repository:component" {
        return Ok(Delivery::Ignored(format!("Nexus webhook {id:?}")));
    }
    match text(json, "/action").as_deref() {
        Some("CREATED" | "UPDATED") => {}
        other => return Ok(Delivery::Ignored(format!("Nexus action {other:?}"))),
    }
    let component = json.get("component").ok_or("no component")?;
    if text(component, "/format").as_deref() != Some("docker") {
        return Ok(Delivery::Ignored("not a docker component".to_owned()));
    }
    let name = text(component, "/name").ok_or("no component.name")?;
    let tag = text(component, "/version").filter(|t| !t.is_empty());
    one(None, &name, tag, None)
}

/// zot and other CloudEvents: a push type (zot's
/// `zotregistry.image.updated`, or any `….pushed`/`….push`), `data.{name,
/// reference, digest}` (the reference a tag or the digest), the host from
/// `data.request.host` when present.
fn cloud_event(kind: &str, data: &Value) -> Read {
    let push =
        kind.ends_with(".image.updated") || kind.ends_with(".pushed") || kind.ends_with(".push");
    if !push {
        return Ok(Delivery::Ignored(format!("event type {kind:?}")));
    }
    let repository = text(data, "/name")
        .or_else(|| text(data, "/repository"))
        .ok_or("no data.name")?;
    let host = text(data, "/request/host");
    let reference = text(data, "/reference").or_else(|| text(data, "/tag"));
    let tag = reference.filter(|r| !r.starts_with("sha256:") && !r.is_empty());
    let digest = text(data, "/digest");
    one(host.as_deref(), &repository, tag, digest)
}

/// Our documented shape: `{"repository": "host/path" (or a familiar name),
/// "tags": ["…"], "digest": "sha256:…"}`.
fn generic(json: &Value) -> Read {
    let repository = text(json, "/repository").ok_or("no repository")?;
    let reference = Reference::parse_normalized(&repository.to_lowercase())
        .map_err(|e| format!("repository {repository:?}: {e}"))?;
    let tags = json
        .get("tags")
        .and_then(Value::as_array)
        .map(|tags| {
            tags.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let digest = text(json, "/digest");
    pushes(vec![hint(
        Some(reference.domain()),
        reference.path(),
        tags,
        digest,
    )?])
}

/// The push of one repository and at most one tag.
fn one(host: Option<&str>, path: &str, tag: Option<String>, digest: Option<String>) -> Read {
    pushes(vec![hint(host, path, tag.into_iter().collect(), digest)?])
}

fn pushes(hints: Vec<Hint>) -> Read {
    if hints.iter().all(|h| h.tags.is_empty()) {
        return Ok(Delivery::Ignored("a push by digest alone".to_owned()));
    }
    Ok(Delivery::Pushes(hints))
}

/// A hint in normal form: `host/path` parsed as an image name (a GHCR
/// owner's capitals lowered first), valid tags only, a digest only if it is
/// one.
fn hint(
    host: Option<&str>,
    path: &str,
    tags: Vec<String>,
    digest: Option<String>,
) -> Result<Hint, String> {
    let path = path.trim_matches('/').to_lowercase();
    let (registry, repository) = match host {
        Some(host) => {
            let host = host.to_lowercase();
            let reference = Reference::parse_normalized(&format!("{host}/{path}"))
                .map_err(|e| format!("repository {host}/{path}: {e}"))?;
            (
                Some(reference.domain().to_owned()),
                reference.path().to_owned(),
            )
        }
        None => {
            // a path alone: checked as a name on a placeholder host
            Reference::parse_normalized(&format!("registry.invalid/{path}"))
                .map_err(|e| format!("repository {path}: {e}"))?;
            (None, path)
        }
    };
    let mut tags: Vec<String> = tags.into_iter().filter(|t| is_valid_tag(t)).collect();
    tags.sort();
    tags.dedup();
    Ok(Hint {
        registry,
        repository,
        tags,
        digest: digest.filter(|d| validate_digest(d).is_ok()),
    })
}

/// `host/path` into its host (when the first component is one: it has a
/// dot or a port, or is `localhost`) and its path.
fn split_host(spec: &str) -> (Option<String>, String) {
    let spec = spec
        .split_once("://")
        .map_or(spec, |(_, rest)| rest)
        .trim_matches('/');
    match spec.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (Some(first.to_owned()), rest.to_owned())
        }
        _ => (None, spec.to_owned()),
    }
}

/// `path:tag` (or `path:`) without its tag.
fn strip_tag(path: &str) -> &str {
    let last = path.rfind('/').map_or(0, |i| i + 1);
    match path[last..].rfind(':') {
        Some(i) => &path[..last + i],
        None => path,
    }
}

fn text(json: &Value, pointer: &str) -> Option<String> {
    json.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
