//! `mirror`: copies images of a stream, or any pull spec, to another registry
//! ([`RegistryClient::copy_image`]), with the credentials imports use: the
//! namespace's registry secrets first, then the global docker config, matched
//! by registry prefix, for the source and the destination alike.
//!
//! - **Sources.** `STREAM:TAG` is the tag's current image, `STREAM@DIGEST` an
//!   image of the stream's histories, `STREAM` every tag's current image
//!   (a name without `/` is a stream of the namespace); anything else is a
//!   pull spec (`:latest` when it names neither tag nor digest). A stream's
//!   images are read from the pinned pull specs of its history, so what is
//!   copied is exactly what the stream points at.
//! - **Destinations.** `REPOSITORY:TAG`, or `REPOSITORY`, which takes the
//!   source's tag (each tag's own for a whole stream).
//! - **Outcome** per image: `Success` with what crossed, or `Failure` with the
//!   registry error's reason and message; one image failing does not stop the
//!   others. A source that does not resolve is an error of the request.
//! - **Deadline.** With `timeout_ms` (a mirror rule's request), copying stops
//!   at the caller's deadline with a `Timeout` failure, so the caller's retry
//!   never races a copy left behind.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;

use imagestreams_common::{
    error::{ApiError, chain},
    metrics::ServiceMetrics,
    model::ImageStream,
    reference::Reference,
};
use imagestreams_proto::v1 as proto;
use imagestreams_registry_client::{
    RegistryError,
    mirror::{CopyOptions, CopyReport},
};
use imagestreams_stream_store_api::StreamReader;
use imagestreams_tag_syncer_api::{STATUS_FAILURE, STATUS_SUCCESS};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};

use crate::importer::Importer;

/// One image to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Job {
    /// The stream tag, when the source is a stream.
    tag: String,
    source: Reference,
    destination: Reference,
}

/// Runs mirrors.
#[derive(Debug)]
pub struct Mirrorer {
    importer: Arc<Importer>,
    reader: StreamReader,
    metrics: MirrorMetrics,
}

/// `mirrored_images_total{outcome}` and `mirrored_bytes_total`.
#[derive(Clone, Debug, Default)]
struct MirrorMetrics {
    images: Family<OutcomeLabels, Counter>,
    bytes: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    /// `ok`, `unchanged`, or the failure's reason (`Unauthorized`, …).
    outcome: String,
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    let message = message.into();
    ApiError::invalid(field, format!("{field}: Invalid value: {message}"))
}

fn parse(field: &str, text: &str) -> Result<Reference, ApiError> {
    Reference::parse_normalized(text).map_err(|e| invalid(field, format!("{text:?}: {e}")))
}

/// The images `source` names, from `stream` when it names one: (tag, pull spec).
fn stream_images(stream: &ImageStream, source: &str) -> Result<Vec<(String, String)>, ApiError> {
    let name = &stream.metadata.name;
    if let Some((_, digest)) = source.split_once('@') {
        let found = stream
            .status
            .iter()
            .flat_map(|s| s.tags.iter())
            .flat_map(|t| t.items.iter())
            .find(|item| item.image == digest)
            .ok_or_else(|| ApiError::NotFound(format!("image {digest} is not in stream {name}")))?;
        return Ok(vec![(String::new(), found.docker_image_reference.clone())]);
    }
    if let Some((_, tag)) = source.split_once(':') {
        let current = stream
            .status_tag(tag)
            .and_then(|t| t.latest())
            .ok_or_else(|| {
                ApiError::NotFound(format!("tag {tag} of stream {name} has no image"))
            })?;
        return Ok(vec![(
            tag.to_owned(),
            current.docker_image_reference.clone(),
        )]);
    }
    let all: Vec<(String, String)> = stream
        .status
        .iter()
        .flat_map(|s| s.tags.iter())
        .filter_map(|t| Some((t.tag.clone(), t.latest()?.docker_image_reference.clone())))
        .collect();
    if all.is_empty() {
        return Err(ApiError::NotFound(format!("stream {name} has no images")));
    }
    Ok(all)
}

/// The destination of the image `tag` (its stream tag or source tag).
fn destination_of(destination: &Reference, tag: &str, many: bool) -> Result<Reference, ApiError> {
    if destination.digest().is_some() {
        return Err(invalid(
            "destination",
            "a destination is a repository or repository:tag, not a digest",
        ));
    }
    match destination.tag() {
        Some(_) if many => Err(invalid(
            "destination",
            "a whole stream goes to a repository without a tag: each tag keeps its name",
        )),
        Some(_) => Ok(destination.clone()),
        None if tag.is_empty() => Err(invalid(
            "destination",
            "the source names no tag: give the destination one (repository:tag)",
        )),
        None => destination
            .with_tag(tag)
            .map_err(|e| invalid("destination", e.to_string())),
    }
}

fn outcome(job: &Job, result: Result<CopyReport, String>, reason: &str) -> proto::MirroredImage {
    let mut image = proto::MirroredImage {
        tag: job.tag.clone(),
        source: job.source.to_string(),
        destination: job.destination.to_string(),
        ..proto::MirroredImage::default()
    };
    match result {
        Ok(report) => {
            image.status = STATUS_SUCCESS.into();
            image.digest = report.digest;
            image.media_type = report.media_type;
            image.manifests = report.manifests as u32;
            image.blobs = report.blobs as u32;
            image.present = report.present as u32;
            image.mounted = report.mounted as u32;
            image.uploaded = report.uploaded as u32;
            image.bytes_uploaded = report.bytes;
            image.unchanged = report.unchanged;
        }
        Err(message) => {
            image.status = STATUS_FAILURE.into();
            image.reason = reason.to_owned();
            image.message = message;
        }
    }
    image
}

impl Mirrorer {
    /// Mirrors with `importer`'s client and credentials, reading streams
    /// with `reader`.
    pub fn new(importer: Arc<Importer>, reader: StreamReader) -> Self {
        Mirrorer {
            importer,
            reader,
            metrics: MirrorMetrics::default(),
        }
    }

    /// Registers the mirror metrics with the service's.
    pub fn register_metrics(&self, metrics: &ServiceMetrics) {
        metrics.register(
            "mirrored_images",
            "Images mirrored, by outcome (ok, unchanged, or the failure's reason)",
            self.metrics.images.clone(),
        );
        metrics.register(
            "mirrored_bytes",
            "Blob bytes uploaded by mirrors",
            self.metrics.bytes.clone(),
        );
    }

    /// The images of `request`, resolved.
    async fn plan(&self, request: &proto::MirrorRequest) -> Result<Vec<Job>, ApiError> {
        let destination = parse("destination", &request.destination)?;
        let sources: Vec<(String, Reference)> = if request.source.contains('/') {
            let source = parse("source", &request.source)?;
            let tag = source.tag().unwrap_or_default().to_owned();
            let source = if source.tag().is_none() && source.digest().is_none() {
                source
                    .with_tag("latest")
                    .map_err(|e| invalid("source", e.to_string()))?
            } else {
                source
            };
            let tag = if tag.is_empty() && source.digest().is_none() {
                "latest".to_owned()
            } else {
                tag
            };
            vec![(tag, source)]
        } else {
            let name = request.source.split(['@', ':']).next().unwrap_or_default();
            let stream = self.reader.get(&request.namespace, name).await?;
            stream_images(&stream, &request.source)?
                .into_iter()
                .map(|(tag, spec)| Ok((tag, parse("source", &spec)?)))
                .collect::<Result<_, ApiError>>()?
        };
        let many = sources.len() > 1;
        sources
            .into_iter()
            .map(|(tag, source)| {
                Ok(Job {
                    destination: destination_of(&destination, &tag, many)?,
                    tag,
                    source,
                })
            })
            .collect()
    }

    /// Mirrors as `request` says, image by image.
    #[tracing::instrument(skip_all, fields(namespace = %request.namespace, source = %request.source, destination = %request.destination, dry_run = request.dry_run), err(level = "debug"))]
    pub async fn mirror(
        &self,
        request: proto::MirrorRequest,
    ) -> Result<proto::MirrorResponse, ApiError> {
        let deadline = (request.timeout_ms > 0)
            .then(|| Instant::now() + Duration::from_millis(request.timeout_ms));
        let jobs = self.plan(&request).await?;
        let keyring = self.importer.namespace_keyring(&request.namespace).await;
        let options = CopyOptions {
            platform: (!request.platform.is_empty()).then(|| request.platform.clone()),
            dry_run: request.dry_run,
            ..CopyOptions::default()
        };
        let client = self.importer.client();
        let mut images = Vec::with_capacity(jobs.len());
        for job in jobs {
            let repositories = self
                .importer
                .repository(&job.source.repository(), request.insecure, &keyring)
                .and_then(|from| {
                    let to = self.importer.repository(
                        &job.destination.repository(),
                        request.insecure,
                        &keyring,
                    )?;
                    Ok((from, to))
                });
            let reference = job
                .source
                .digest()
                .or(job.source.tag())
                .unwrap_or("latest")
                .to_owned();
            let tag = job.destination.tag().unwrap_or("latest").to_owned();
            let copy = async {
                let (from, to) = repositories?;
                client
                    .copy_image(&from, &reference, &to, &tag, &options)
                    .await
            };
            // past the caller's deadline nothing more is written: its retry
            // never races a copy left behind
            let result = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, copy)
                    .await
                    .unwrap_or_else(|_| {
                        Err(RegistryError::Timeout {
                            registry: job.destination.domain().to_owned(),
                            what: format!("the copy of {}", job.source),
                            timeout: Duration::from_millis(request.timeout_ms),
                            attempts: 1,
                        })
                    }),
                None => copy.await,
            };
            let reason = result.as_ref().err().map_or("", |e| e.reason());
            if !request.dry_run {
                let outcome = match &result {
                    Ok(report) if report.unchanged => "unchanged",
                    Ok(report) => {
                        self.metrics.bytes.inc_by(report.bytes);
                        "ok"
                    }
                    Err(_) => reason,
                };
                self.metrics
                    .images
                    .get_or_create(&OutcomeLabels {
                        outcome: outcome.to_owned(),
                    })
                    .inc();
            }
            match &result {
                Ok(report) => tracing::info!(
                    source = %job.source, destination = %job.destination, digest = %report.digest,
                    uploaded = report.uploaded, mounted = report.mounted, present = report.present,
                    bytes = report.bytes, "mirrored"
                ),
                Err(e) => tracing::warn!(
                    source = %job.source, destination = %job.destination, reason,
                    error = chain(e), "mirror failed"
                ),
            }
            let result = result.map_err(|e| e.to_string());
            images.push(outcome(&job, result, reason));
        }
        Ok(proto::MirrorResponse {
            images,
            dry_run: request.dry_run,
        })
    }
}

#[cfg(test)]
mod tests {
    use imagestreams_common::model::{NamedTagEventList, TagEvent};

    use super::*;

    fn stream() -> ImageStream {
        let mut s = ImageStream::new("ns1", "app");
        let status = s.status.get_or_insert_default();
        for (tag, n) in [("1", 'a'), ("2", 'b')] {
            let digest = format!("sha256:{}", n.to_string().repeat(64));
            status.tags.push(NamedTagEventList {
                tag: tag.into(),
                items: vec![TagEvent {
                    docker_image_reference: format!("r.example/ns1/app@{digest}"),
                    image: digest,
                    ..TagEvent::default()
                }],
                ..NamedTagEventList::default()
            });
        }
        s
    }

    #[test]
    fn stream_sources_are_its_pinned_images() {
        let s = stream();
        let b = format!("sha256:{}", "b".repeat(64));
        assert_eq!(
            stream_images(&s, "app:2").unwrap(),
            [("2".to_owned(), format!("r.example/ns1/app@{b}"))]
        );
        assert_eq!(stream_images(&s, &format!("app@{b}")).unwrap()[0].0, "");
        assert_eq!(stream_images(&s, "app").unwrap().len(), 2);
        assert!(matches!(
            stream_images(&s, "app:3"),
            Err(ApiError::NotFound(_))
        ));
        assert!(matches!(
            stream_images(&s, "app@sha256:00"),
            Err(ApiError::NotFound(_))
        ));
    }

    #[test]
    fn destinations_take_the_source_tag_or_their_own() {
        let repo = Reference::parse_normalized("dest.example/team/app").unwrap();
        let tagged = Reference::parse_normalized("dest.example/team/app:prod").unwrap();
        assert_eq!(
            destination_of(&repo, "1", true).unwrap().to_string(),
            "dest.example/team/app:1"
        );
        assert_eq!(
            destination_of(&tagged, "1", false).unwrap().to_string(),
            "dest.example/team/app:prod"
        );
        for (destination, tag, many) in [(&tagged, "1", true), (&repo, "", false)] {
            assert!(matches!(
                destination_of(destination, tag, many),
                Err(ApiError::Invalid { .. })
            ));
        }
        let pinned = Reference::parse_normalized(&format!(
            "dest.example/team/app@sha256:{}",
            "c".repeat(64)
        ))
        .unwrap();
        assert!(destination_of(&pinned, "1", false).is_err());
    }
}
