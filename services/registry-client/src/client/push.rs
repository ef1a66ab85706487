//! What the client writes to a registry (distribution spec "push"): blobs,
//! checked with `HEAD`, mounted from another repository of the same registry
//! or uploaded (whole, or in chunks: `POST`, `PATCH`es, `PUT`), and
//! manifests. Writes go to a repository's primary location
//! only: mirrors are for pulls. Every request asks for `pull,push` scope.

use super::transport::{Request, Response};
use super::*;

/// The content type of an uploaded blob.
const OCTET_STREAM: &str = "application/octet-stream";

impl Source<'_> {
    fn push_scope(&self) -> String {
        format!("repository:{}:pull,push", self.endpoint.repository)
    }
}

/// How a blob came to be in the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// Mounted from another repository of the same registry: no bytes sent.
    Mounted,
    /// The registry answered the mount with an upload: the blob must be sent.
    NotMounted,
}

/// A blob upload in progress ([`RegistryClient::open_upload`]).
#[derive(Debug, Clone)]
pub struct Upload {
    location: Url,
    digest: String,
    offset: u64,
    /// The smallest chunk the registry takes, when it says
    /// (`OCI-Chunk-Min-Length`).
    pub min_chunk: Option<u64>,
}

/// Where an upload goes on: the `Location` of the registry's answer,
/// resolved against the registry.
fn upload_location(source: Source<'_>, resp: &Response, what: &str) -> Result<Url, RegistryError> {
    resp.headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|l| source.endpoint.origin.join(l).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| RegistryError::InvalidResponse {
            registry: source.registry(),
            what: what.to_owned(),
            detail: format!("a {} without a usable Location", resp.status),
        })
}

/// The slowest transfer a blob crossing is given time for: 1 MiB/s.
pub const MIN_TRANSFER_BYTES_PER_SECOND: u64 = 1024 * 1024;

impl RegistryClient {
    /// How long one attempt to send or read a blob of `bytes` may take: the
    /// request timeout, plus a second per MiB ([`MIN_TRANSFER_BYTES_PER_SECOND`]),
    /// so that a 2 GiB layer is not cut off after the 10 s an API call gets.
    pub fn transfer_timeout(&self, bytes: u64) -> Duration {
        self.inner.limits.request_timeout()
            + Duration::from_secs(bytes / MIN_TRANSFER_BYTES_PER_SECOND)
    }

    /// Whether the primary location of `repo` holds the blob `digest`.
    pub async fn has_blob(&self, repo: &Repository, digest: &str) -> Result<bool, RegistryError> {
        let source = repo.primary_source();
        let what = format!("blob {}@{digest}", source.endpoint.repository);
        let url = source.api_url(&format!("blobs/{digest}"))?;
        let request = Request::new(Method::HEAD, url, &what);
        match self.send(source, Some(source.push_scope()), request).await {
            Ok(_) => Ok(true),
            Err(RegistryError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Asks the registry to mount the blob `digest` of `from` (a repository
    /// path of the same registry) into `repo`.
    pub async fn mount_blob(
        &self,
        repo: &Repository,
        digest: &str,
        from: &str,
    ) -> Result<BlobOutcome, RegistryError> {
        let source = repo.primary_source();
        let what = format!("a mount of {from}@{digest}");
        let mut url = self.uploads_url(source)?;
        url.query_pairs_mut()
            .append_pair("mount", digest)
            .append_pair("from", from);
        let resp = self.post(source, url, &what).await?;
        Ok(if resp.status == StatusCode::CREATED {
            BlobOutcome::Mounted
        } else {
            BlobOutcome::NotMounted
        })
    }

    /// Uploads the blob `digest` (`bytes`, which must hash to it) to `repo`:
    /// a `POST` opening the upload, then one `PUT` of the bytes closing it
    /// (the spec's monolithic upload in two steps, which every registry
    /// serves).
    pub async fn upload_blob(
        &self,
        repo: &Repository,
        digest: &str,
        bytes: Bytes,
    ) -> Result<(), RegistryError> {
        let upload = self.open_upload(repo, digest).await?;
        self.finish_upload(repo, upload, bytes).await
    }

    /// Opens an upload of the blob `digest` to `repo` (`POST`): where its
    /// chunks go, and the smallest chunk the registry takes
    /// (`OCI-Chunk-Min-Length`).
    pub async fn open_upload(
        &self,
        repo: &Repository,
        digest: &str,
    ) -> Result<Upload, RegistryError> {
        let source = repo.primary_source();
        let what = format!("an upload of {}@{digest}", source.endpoint.repository);
        let opened = self.post(source, self.uploads_url(source)?, &what).await?;
        let min_chunk = opened
            .headers
            .get("oci-chunk-min-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        Ok(Upload {
            location: upload_location(source, &opened, &what)?,
            digest: digest.to_owned(),
            offset: 0,
            min_chunk,
        })
    }

    /// Sends the next chunk of `upload` (`PATCH` with its `Content-Range`),
    /// and moves the upload on to the location the registry answers.
    pub async fn upload_chunk(
        &self,
        repo: &Repository,
        upload: &mut Upload,
        bytes: Bytes,
    ) -> Result<(), RegistryError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let source = repo.primary_source();
        let len = bytes.len() as u64;
        let what = format!(
            "bytes {}-{} of an upload of {}@{}",
            upload.offset,
            upload.offset + len - 1,
            source.endpoint.repository,
            upload.digest
        );
        let request = Request {
            upload: Some((OCTET_STREAM, bytes)),
            max_body: Some(MAX_ERROR_BODY_BYTES),
            timeout: Some(self.transfer_timeout(len)),
            headers: vec![(
                "content-range",
                format!("{}-{}", upload.offset, upload.offset + len - 1),
            )],
            ..Request::new(Method::PATCH, upload.location.clone(), &what)
        };
        let resp = self
            .send(source, Some(source.push_scope()), request)
            .await?;
        upload.location = upload_location(source, &resp, &what)?;
        upload.offset += len;
        Ok(())
    }

    /// Closes `upload` with its last bytes (possibly none): a `PUT` naming
    /// the digest, which the registry checks before it keeps the blob.
    pub async fn finish_upload(
        &self,
        repo: &Repository,
        upload: Upload,
        last: Bytes,
    ) -> Result<(), RegistryError> {
        let source = repo.primary_source();
        let what = format!(
            "an upload of {}@{}",
            source.endpoint.repository, upload.digest
        );
        let mut location = upload.location;
        location
            .query_pairs_mut()
            .append_pair("digest", &upload.digest);
        let timeout = Some(self.transfer_timeout(last.len() as u64));
        let request = Request {
            upload: Some((OCTET_STREAM, last)),
            max_body: Some(MAX_ERROR_BODY_BYTES),
            timeout,
            ..Request::new(Method::PUT, location, &what)
        };
        self.send(source, Some(source.push_scope()), request)
            .await?;
        Ok(())
    }

    /// Puts the manifest `bytes` of `media_type` under `reference` (a tag or
    /// its digest) in `repo`. Returns the digest the registry answered,
    /// checked against the bytes' own.
    pub async fn put_manifest(
        &self,
        repo: &Repository,
        reference: &str,
        media_type: &'static str,
        bytes: Bytes,
    ) -> Result<String, RegistryError> {
        check_reference(reference)?;
        let source = repo.primary_source();
        let what = format!("manifest {}:{reference}", source.endpoint.repository);
        let url = source.api_url(&format!("manifests/{reference}"))?;
        let digest = digest_of("sha256", &bytes).unwrap_or_default();
        let request = Request {
            upload: Some((media_type, bytes)),
            max_body: Some(MAX_ERROR_BODY_BYTES),
            ..Request::new(Method::PUT, url, &what)
        };
        let resp = self
            .send(source, Some(source.push_scope()), request)
            .await?;
        let answered = resp
            .headers
            .get(DOCKER_CONTENT_DIGEST)
            .and_then(|v| v.to_str().ok());
        if let Some(answered) = answered
            && answered != digest
        {
            return Err(RegistryError::DigestMismatch {
                registry: source.registry(),
                what,
                expected: digest,
                actual: answered.to_owned(),
            });
        }
        Ok(digest)
    }

    fn uploads_url(&self, source: Source<'_>) -> Result<Url, RegistryError> {
        source.api_url("blobs/uploads/")
    }

    async fn post(
        &self,
        source: Source<'_>,
        url: Url,
        what: &str,
    ) -> Result<Response, RegistryError> {
        let request = Request {
            upload: Some((OCTET_STREAM, Bytes::new())),
            max_body: Some(MAX_ERROR_BODY_BYTES),
            ..Request::new(Method::POST, url, what)
        };
        self.send(source, Some(source.push_scope()), request).await
    }
}
