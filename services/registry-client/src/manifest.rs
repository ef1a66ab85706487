//! Manifests: the media types we accept, digests of manifest bytes, and the platforms of an image index
//! (OCI index or Docker manifest list).

use serde::Deserialize;
use sha2::{Digest as _, Sha256, Sha384, Sha512};

/// OCI image index.
pub const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list.
pub const MEDIA_TYPE_DOCKER_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest, schema 2.
pub const MEDIA_TYPE_DOCKER_SCHEMA2: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The `Accept` of every manifest HEAD and GET: without these a registry converts to schema 1, which has another
/// digest.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// A manifest's digest, as a HEAD (or the GET fallback) found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestDigest {
    /// `sha256:…`: the image's identity; for a multi-arch image, the index's.
    pub digest: String,
    /// The `Content-Type` the registry gave, if any.
    pub media_type: Option<String>,
    /// The manifest's size in bytes, if the registry said.
    pub size: Option<u64>,
}

/// A manifest's bytes, verified against its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The digest of `bytes`.
    pub digest: String,
    /// The media type: the `Content-Type`, else the document's `mediaType`.
    pub media_type: Option<String>,
    /// The manifest as served.
    pub bytes: bytes::Bytes,
}

impl Manifest {
    /// Whether this is an image index or manifest list (a multi-arch image).
    pub fn is_index(&self) -> bool {
        match self.media_type.as_deref() {
            Some(MEDIA_TYPE_OCI_INDEX | MEDIA_TYPE_DOCKER_LIST) => true,
            Some(MEDIA_TYPE_OCI_MANIFEST | MEDIA_TYPE_DOCKER_SCHEMA2) => false,
            _ => {
                serde_json::from_slice::<IndexDoc>(&self.bytes).is_ok_and(|d| d.manifests.is_some())
            }
        }
    }

    /// The per-platform manifests of an index; empty for a single-platform manifest. Entries without a
    /// platform, or with `unknown` os or architecture (BuildKit's attestations), are left out.
    pub fn platforms(&self) -> Result<Vec<PlatformManifest>, serde_json::Error> {
        if !self.is_index() {
            return Ok(Vec::new());
        }
        let doc: IndexDoc = serde_json::from_slice(&self.bytes)?;
        Ok(doc
            .manifests
            .unwrap_or_default()
            .into_iter()
            .filter_map(|d| {
                let p = d.platform?;
                (p.os != "unknown" && p.architecture != "unknown").then(|| PlatformManifest {
                    digest: d.digest,
                    media_type: d.media_type,
                    size: d.size,
                    platform: Platform {
                        os: p.os,
                        architecture: p.architecture,
                        variant: p.variant.filter(|v| !v.is_empty()),
                        os_version: p.os_version.filter(|v| !v.is_empty()),
                    },
                })
            })
            .collect())
    }
}

/// The media type named inside a manifest document (`mediaType`), if any.
pub(crate) fn document_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Doc {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Doc>(bytes).ok()?.media_type
}

/// One platform's manifest in an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformManifest {
    /// The platform manifest's digest.
    pub digest: String,
    /// Its media type.
    pub media_type: Option<String>,
    /// Its size in bytes.
    pub size: Option<u64>,
    /// What it runs on.
    pub platform: Platform,
}

/// An OCI platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    /// `linux`, `windows`, …
    pub os: String,
    /// `amd64`, `arm64`, …
    pub architecture: String,
    /// `v7`, `v8`, … when given.
    pub variant: Option<String>,
    /// `os.version` when given (Windows).
    pub os_version: Option<String>,
}

#[derive(Deserialize)]
struct IndexDoc {
    manifests: Option<Vec<Descriptor>>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    digest: String,
    size: Option<u64>,
    platform: Option<PlatformDoc>,
}

#[derive(Deserialize)]
struct PlatformDoc {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    variant: Option<String>,
    #[serde(rename = "os.version")]
    os_version: Option<String>,
}

/// The digest of `bytes` with `algorithm` (`sha256`, `sha384`, `sha512`); `None` for another algorithm.
pub fn digest_of(algorithm: &str, bytes: &[u8]) -> Option<String> {
    let hex = match algorithm {
        "sha256" => hex::encode(Sha256::digest(bytes)),
        "sha384" => hex::encode(Sha384::digest(bytes)),
        "sha512" => hex::encode(Sha512::digest(bytes)),
        _ => return None,
    };
    Some(format!("{algorithm}:{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"{
      "schemaVersion": 2,
      "mediaType": "application/vnd.oci.image.index.v1+json",
      "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 100,
         "digest": "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
         "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 101,
         "digest": "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 50,
         "digest": "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
         "platform": {"os": "unknown", "architecture": "unknown"},
         "annotations": {"vnd.docker.reference.type": "attestation-manifest"}}
      ]
    }"#;

    #[test]
    fn index_platforms_skip_attestations() {
        let m = Manifest {
            digest: digest_of("sha256", INDEX.as_bytes()).unwrap(),
            media_type: None,
            bytes: bytes::Bytes::from_static(INDEX.as_bytes()),
        };
        assert!(m.is_index());
        let p = m.platforms().unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].platform.architecture, "amd64");
        assert_eq!(p[0].platform.variant, None);
        assert_eq!(p[1].platform.variant.as_deref(), Some("v8"));
        assert_eq!(p[1].size, Some(101));
    }

    #[test]
    fn a_single_manifest_has_no_platforms() {
        let m = Manifest {
            digest: String::new(),
            media_type: Some(MEDIA_TYPE_OCI_MANIFEST.into()),
            bytes: bytes::Bytes::from_static(br#"{"schemaVersion":2,"layers":[]}"#),
        };
        assert!(!m.is_index());
        assert!(m.platforms().unwrap().is_empty());
    }

    #[test]
    fn digests_by_algorithm() {
        assert_eq!(
            digest_of("sha256", b"").unwrap(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(digest_of("sha512", b"x").unwrap().starts_with("sha512:"));
        assert_eq!(digest_of("md5", b"x"), None);
        assert_eq!(
            document_media_type(INDEX.as_bytes()).as_deref(),
            Some(MEDIA_TYPE_OCI_INDEX)
        );
    }
}
