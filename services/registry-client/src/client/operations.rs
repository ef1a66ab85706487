//! The registry operations of [`RegistryClient`]: ping, tag lists (paged), manifests and their digests
//! (verified), blobs (with one redirect to blob storage), each tried at the repository's sources in turn
//! (mirrors, then the primary location).

use super::transport::{Request, Response, content_type};
use super::*;

/// Checks that `body` hashes to `expected` (with `expected`'s algorithm); the digest it hashes to.
pub(super) fn verify_digest(
    source: Source<'_>,
    what: &str,
    expected: &str,
    body: &[u8],
) -> Result<String, RegistryError> {
    let algorithm = expected.split(':').next().unwrap_or_default();
    let actual = digest_of(algorithm, body).ok_or_else(|| RegistryError::InvalidResponse {
        registry: source.registry(),
        what: what.to_owned(),
        detail: format!("unsupported digest algorithm {algorithm}"),
    })?;
    if actual != expected {
        return Err(RegistryError::DigestMismatch {
            registry: source.registry(),
            what: what.to_owned(),
            expected: expected.to_owned(),
            actual,
        });
    }
    Ok(actual)
}

impl RegistryClient {
    /// `GET /v2/` on the primary location, authenticating as a `docker login` would: succeeds when the
    /// registry accepts the credential (or anonymous access).
    pub async fn ping(&self, repo: &Repository) -> Result<(), RegistryError> {
        let source = repo.primary_source();
        let url = join(&source.endpoint.origin, "v2/")?;
        let what = "the /v2/ ping";
        self.send(
            source,
            None,
            Request {
                max_body: Some(MAX_ERROR_BODY_BYTES),
                ..Request::new(Method::GET, url, what)
            },
        )
        .await
        .map(drop)
    }

    /// Every tag of the repository, from its primary location (mirrors are for manifests, as in
    /// containers/image), following `Link: <…>; rel="next"` on the same origin only, up to
    /// [`Limits::max_listed_tags`] tags and [`Limits::max_tag_pages`] pages.
    pub async fn list_tags(&self, repo: &Repository) -> Result<TagList, RegistryError> {
        let source = repo.primary_source();
        let limits = &self.inner.limits;
        let what = format!("the tags of {}", source.endpoint.repository);
        let mut url = source.api_url("tags/list")?;
        if let Some(n) = limits.tag_page_size {
            url.query_pairs_mut().append_pair("n", &n.to_string());
        }
        let mut list = TagList::default();
        let mut seen = HashSet::new();
        let mut visited = HashSet::new();
        loop {
            if !visited.insert(url.to_string()) {
                return Err(RegistryError::InvalidResponse {
                    registry: source.registry(),
                    what,
                    detail: "the next-page links form a cycle".into(),
                });
            }
            let resp = self
                .send(
                    source,
                    Some(source.pull_scope()),
                    Request {
                        accept: Some("application/json"),
                        max_body: Some(limits.max_body_bytes),
                        ..Request::new(Method::GET, url.clone(), &what)
                    },
                )
                .await?;
            list.pages += 1;
            let page_tags =
                parse_tag_page(&resp.body).map_err(|e| RegistryError::InvalidResponse {
                    registry: source.registry(),
                    what: what.clone(),
                    detail: format!("not a tag list: {e}"),
                })?;
            let page_len = page_tags.len();
            let last = page_tags.last().cloned();
            let mut new = 0;
            for tag in page_tags {
                if list.tags.len() >= limits.max_listed_tags {
                    list.truncated = true;
                    break;
                }
                if seen.insert(tag.clone()) {
                    list.tags.push(tag);
                    new += 1;
                }
            }
            if list.truncated {
                break;
            }
            let link_values = resp
                .headers
                .get_all(LINK)
                .iter()
                .filter_map(|v| v.to_str().ok());
            let next = match next_link(link_values, &url) {
                Ok(next) => next,
                Err(LinkError::ForeignOrigin(link_origin)) => {
                    return Err(RegistryError::ForeignLink {
                        registry: source.registry(),
                        what,
                        link_origin,
                    });
                }
                Err(LinkError::Invalid) => {
                    return Err(RegistryError::InvalidResponse {
                        registry: source.registry(),
                        what,
                        detail: "invalid next-page link".into(),
                    });
                }
            };
            // Without a Link, a full page of a registry honouring `n` may still have a next page at `last`.
            let next = next.or_else(|| match (limits.tag_page_size, last) {
                (Some(n), Some(last)) if page_len == n as usize && new > 0 => {
                    let mut next = url.clone();
                    next.query_pairs_mut()
                        .clear()
                        .append_pair("n", &n.to_string())
                        .append_pair("last", &last);
                    Some(next)
                }
                _ => None,
            });
            match next {
                None => break,
                Some(_)
                    if list.pages >= limits.max_tag_pages
                        || list.tags.len() >= limits.max_listed_tags =>
                {
                    list.truncated = true;
                    break;
                }
                Some(next) => url = next,
            }
        }
        tracing::debug!(
            registry = %source.registry(),
            repository = %source.endpoint.repository,
            tags = list.tags.len(),
            pages = list.pages,
            truncated = list.truncated,
            "listed tags"
        );
        Ok(list)
    }

    /// The digest `tag` points to: `HEAD /v2/<name>/manifests/<tag>` accepting OCI index and manifest, Docker
    /// manifest list and schema 2; a GET (hashing the bytes, checked against `Docker-Content-Digest` when
    /// sent) when the HEAD has no usable digest. For a multi-arch image this is the index's digest. Mirrors
    /// are tried first, then the primary location.
    pub async fn digest(
        &self,
        repo: &Repository,
        tag: &str,
    ) -> Result<ManifestDigest, RegistryError> {
        check_reference(tag)?;
        self.each_source(repo, |source| self.digest_at(source, tag))
            .await
    }

    /// The manifest `reference` (a tag or a digest) names, verified against its digest.
    pub async fn manifest(
        &self,
        repo: &Repository,
        reference: &str,
    ) -> Result<Manifest, RegistryError> {
        check_reference(reference)?;
        self.each_source(repo, |source| self.manifest_at(source, reference))
            .await
    }

    /// The per-platform manifests (os, architecture, variant) of the index `digest`; empty when `digest` is a
    /// single-platform manifest.
    pub async fn manifest_platforms(
        &self,
        repo: &Repository,
        digest: &str,
    ) -> Result<Vec<PlatformManifest>, RegistryError> {
        if validate_digest(digest).is_err() {
            return Err(RegistryError::InvalidReference {
                input: digest.to_owned(),
                detail: "not a valid digest".into(),
            });
        }
        let manifest = self.manifest(repo, digest).await?;
        manifest
            .platforms()
            .map_err(|e| RegistryError::InvalidResponse {
                registry: repo.primary().registry(),
                what: format!("the index {digest}"),
                detail: format!("not an image index: {e}"),
            })
    }

    /// The blob `digest` (an image config), at most `max_bytes`, verified against its digest. A redirect to
    /// blob storage is followed once, without our credentials.
    pub async fn blob(
        &self,
        repo: &Repository,
        digest: &str,
        max_bytes: u64,
    ) -> Result<Bytes, RegistryError> {
        validate_digest(digest).map_err(|e| RegistryError::InvalidReference {
            input: digest.to_owned(),
            detail: e.to_string(),
        })?;
        self.each_source(repo, |source| self.blob_at(source, digest, max_bytes, None))
            .await
    }

    /// The blob `digest` of `size` bytes (a layer being copied), verified
    /// against its digest, with [`RegistryClient::transfer_timeout`] for it.
    pub async fn blob_of_size(
        &self,
        repo: &Repository,
        digest: &str,
        size: u64,
    ) -> Result<Bytes, RegistryError> {
        validate_digest(digest).map_err(|e| RegistryError::InvalidReference {
            input: digest.to_owned(),
            detail: e.to_string(),
        })?;
        let timeout = Some(self.transfer_timeout(size));
        self.each_source(repo, |source| self.blob_at(source, digest, size, timeout))
            .await
    }

    /// Reads `len` bytes of the blob `digest` of `repo` from `offset` (a
    /// `Range` request), from its first source that answers. A source that
    /// ignores the range (a `200` with the whole blob) fails it: a blob
    /// larger than `len` is then `TooLarge`, another answer
    /// `InvalidResponse`; the caller reads the blob whole instead. The bytes
    /// are not checked: only the whole blob has a digest.
    pub async fn blob_range(
        &self,
        repo: &Repository,
        digest: &str,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, RegistryError> {
        validate_digest(digest).map_err(|e| RegistryError::InvalidReference {
            input: digest.to_owned(),
            detail: e.to_string(),
        })?;
        let timeout = Some(self.transfer_timeout(len));
        let last = offset + len.max(1) - 1;
        self.each_source(repo, |source| async move {
            let what = format!(
                "bytes {offset}-{last} of blob {}@{digest}",
                source.endpoint.repository
            );
            let url = source.api_url(&format!("blobs/{digest}"))?;
            let request = Request {
                max_body: Some(len),
                follow_redirect: true,
                timeout,
                headers: vec![("range", format!("bytes={offset}-{last}"))],
                ..Request::new(Method::GET, url, &what)
            };
            let resp = self
                .send(source, Some(source.pull_scope()), request)
                .await?;
            let whole = offset == 0 && resp.status == StatusCode::OK;
            if (resp.status != StatusCode::PARTIAL_CONTENT && !whole)
                || resp.body.len() as u64 != len
            {
                return Err(RegistryError::InvalidResponse {
                    registry: source.registry(),
                    what,
                    detail: format!(
                        "a {} of {} bytes to a range request",
                        resp.status,
                        resp.body.len()
                    ),
                });
            }
            Ok(resp.body)
        })
        .await
    }

    pub(super) async fn blob_at(
        &self,
        source: Source<'_>,
        digest: &str,
        max_bytes: u64,
        timeout: Option<Duration>,
    ) -> Result<Bytes, RegistryError> {
        let what = format!("blob {}@{digest}", source.endpoint.repository);
        let url = source.api_url(&format!("blobs/{digest}"))?;
        let resp = self
            .send(
                source,
                Some(source.pull_scope()),
                Request {
                    max_body: Some(max_bytes),
                    follow_redirect: true,
                    timeout,
                    ..Request::new(Method::GET, url, &what)
                },
            )
            .await?;
        verify_digest(source, &what, digest, &resp.body)?;
        Ok(resp.body)
    }

    /// Follows the redirect `resp` answered `req` with: one GET of its `Location`, anonymous (storage URLs are
    /// pre-signed, and our token is for the registry alone).
    pub(super) async fn follow_redirect(
        &self,
        source: Source<'_>,
        req: &Request<'_>,
        resp: &Response,
    ) -> Result<Response, RegistryError> {
        let location = resp
            .headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| req.url.join(l).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| RegistryError::InvalidResponse {
                registry: source.registry(),
                what: req.what.to_owned(),
                detail: format!("a {} redirect without a usable Location", resp.status),
            })?;
        let redirected = Request {
            accept: req.accept,
            max_body: req.max_body,
            timeout: req.timeout,
            // a blob's Range goes on to its storage
            headers: req.headers.clone(),
            ..Request::new(Method::GET, location, req.what)
        };
        self.execute(&redirected, None).await
    }

    /// Runs `op` on each source in turn (mirrors, then the primary) until one succeeds; the primary's error
    /// when all fail.
    pub(super) async fn each_source<'r, T, F, Fut>(
        &self,
        repo: &'r Repository,
        op: F,
    ) -> Result<T, RegistryError>
    where
        F: Fn(Source<'r>) -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let mut last = None;
        for source in repo.sources() {
            match op(source).await {
                Ok(v) => return Ok(v),
                Err(e) if e.try_next_source() => {
                    if source.endpoint.mirror {
                        tracing::debug!(mirror = %source.registry(), reason = e.reason(), "mirror failed, trying the next source");
                    }
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        // can't fail: a repository always has its primary source
        Err(last.expect("at least one source"))
    }

    pub(super) async fn digest_at(
        &self,
        source: Source<'_>,
        tag: &str,
    ) -> Result<ManifestDigest, RegistryError> {
        let what = format!("manifest {}:{tag}", source.endpoint.repository);
        let url = source.api_url(&format!("manifests/{tag}"))?;
        let resp = self
            .send(
                source,
                Some(source.pull_scope()),
                Request {
                    accept: Some(MANIFEST_ACCEPT),
                    ..Request::new(Method::HEAD, url, &what)
                },
            )
            .await?;
        let header_digest = resp
            .headers
            .get(DOCKER_CONTENT_DIGEST)
            .and_then(|v| v.to_str().ok())
            .filter(|d| validate_digest(d).is_ok());
        match header_digest {
            Some(digest) if validate_digest(tag).is_err() || digest == tag => Ok(ManifestDigest {
                digest: digest.to_owned(),
                media_type: content_type(&resp.headers),
                size: resp
                    .headers
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse().ok()),
            }),
            _ => {
                let manifest = self.manifest_at(source, tag).await?;
                Ok(ManifestDigest {
                    digest: manifest.digest,
                    media_type: manifest.media_type,
                    size: Some(manifest.bytes.len() as u64),
                })
            }
        }
    }

    pub(super) async fn manifest_at(
        &self,
        source: Source<'_>,
        reference: &str,
    ) -> Result<Manifest, RegistryError> {
        let what = format!("manifest {}:{reference}", source.endpoint.repository);
        let url = source.api_url(&format!("manifests/{reference}"))?;
        let resp = self
            .send(
                source,
                Some(source.pull_scope()),
                Request {
                    accept: Some(MANIFEST_ACCEPT),
                    max_body: Some(self.inner.limits.max_body_bytes),
                    ..Request::new(Method::GET, url, &what)
                },
            )
            .await?;
        let header = resp
            .headers
            .get(DOCKER_CONTENT_DIGEST)
            .and_then(|v| v.to_str().ok())
            .filter(|d| validate_digest(d).is_ok());
        // The bytes must hash to the digest asked for, and to the one the registry announced.
        let requested = validate_digest(reference).is_ok().then_some(reference);
        let mut digest = None;
        for expected in [requested, header].into_iter().flatten() {
            digest.get_or_insert(verify_digest(source, &what, expected, &resp.body)?);
        }
        let digest = match digest {
            Some(d) => d,
            // can't fail: sha256 is supported
            None => digest_of("sha256", &resp.body).expect("sha256"),
        };
        let media_type = content_type(&resp.headers)
            .filter(|t| t != "application/json" && t != "text/plain")
            .or_else(|| crate::manifest::document_media_type(&resp.body));
        Ok(Manifest {
            digest,
            media_type,
            bytes: resp.body,
        })
    }
}
