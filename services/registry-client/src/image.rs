//! Image metadata from the registry: an [`ImageRecord`] per manifest digest, read once and kept in the
//! [`ImageCatalog`].
//!
//! [`Inspector::inspect`] answers from the catalog when the digest is known; otherwise it reads the manifest
//! (or takes what a push notification already says of it, [`Announced`]), then the image config blob, through
//! the [`RegistryClient`] with its auth and limits. One read per digest at a time in a process: concurrent
//! asks for the same digest wait for the first. The last [`DEFAULT_CACHED_RECORDS`] records are kept in
//! memory too: records never change, so a known digest costs no round trip. A manifest or config that is malformed, too large or does
//! not match its digest is recorded with the error (it will never read better: a digest names one content);
//! a passing failure (timeout, 5xx, unreachable, not found yet) records nothing, and the next ask tries again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use imagestreams_common::error::ApiError;
use imagestreams_common::model::format_timestamp;
use imagestreams_images_api::{ImageCatalog, ImageConfig, ImageRecord, Layer, PlatformImage};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::{counter::Counter, family::Family};
use serde::Deserialize;

#[cfg(test)]
use crate::manifest::MEDIA_TYPE_OCI_INDEX;
use crate::manifest::{MEDIA_TYPE_DOCKER_SCHEMA2, MEDIA_TYPE_OCI_MANIFEST, Manifest};
use crate::{RegistryClient, RegistryError, Repository};

/// Records kept in memory in front of the catalog (records never change, so a cached one is never stale).
pub const DEFAULT_CACHED_RECORDS: usize = 4096;

/// The largest image config read (a config with a long history runs to tens of KiB).
pub const DEFAULT_MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// OCI image config.
pub const MEDIA_TYPE_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker image config.
pub const MEDIA_TYPE_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// A blob a manifest references, as a push notification lists it (`includereferences: true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// The blob's media type.
    pub media_type: String,
    /// `sha256:…`.
    pub digest: String,
    /// In bytes.
    pub size: u64,
}

/// What a push notification already says of a manifest, so that it need not be read again.
#[derive(Debug, Clone, Copy)]
pub struct Announced<'a> {
    /// The manifest's media type.
    pub media_type: &'a str,
    /// The manifest's size in bytes.
    pub size: u64,
    /// The blobs it references (empty without `includereferences`).
    pub references: &'a [Descriptor],
}

/// What is known of a manifest before its metadata is read.
#[derive(Debug, Clone, Copy)]
enum Known<'a> {
    /// Nothing: the manifest is read.
    Nothing,
    /// What a push notification says of it.
    Announced(Announced<'a>),
    /// The manifest itself, read already (an import resolved its tag with it).
    Fetched(&'a Manifest),
}

impl Known<'_> {
    fn media_type(&self) -> String {
        match self {
            Known::Nothing => String::new(),
            Known::Announced(a) => a.media_type.to_owned(),
            Known::Fetched(m) => m.media_type.clone().unwrap_or_default(),
        }
    }

    fn size(&self) -> u64 {
        match self {
            Known::Nothing => 0,
            Known::Announced(a) => a.size,
            Known::Fetched(m) => m.bytes.len() as u64,
        }
    }
}

/// Why an image could not be inspected now (nothing was recorded).
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The registry could not be read now.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The catalog could not be read or written.
    #[error(transparent)]
    Catalog(#[from] ApiError),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Reads image metadata once per digest.
pub struct Inspector {
    client: RegistryClient,
    catalog: ImageCatalog,
    max_config_bytes: u64,
    in_flight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    recent: Mutex<Recent>,
    reads: Family<OutcomeLabels, Counter>,
}

/// The last records seen, at most `capacity`, the oldest evicted first.
#[derive(Default)]
struct Recent {
    capacity: usize,
    records: HashMap<String, ImageRecord>,
    order: std::collections::VecDeque<String>,
}

impl Recent {
    fn get(&self, digest: &str) -> Option<ImageRecord> {
        self.records.get(digest).cloned()
    }

    fn insert(&mut self, record: &ImageRecord) {
        if self.capacity == 0 || self.records.contains_key(&record.digest) {
            return;
        }
        if self.order.len() >= self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.records.remove(&oldest);
        }
        self.order.push_back(record.digest.clone());
        self.records.insert(record.digest.clone(), record.clone());
    }
}

impl std::fmt::Debug for Inspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inspector")
            .field("client", &self.client)
            .field("max_config_bytes", &self.max_config_bytes)
            .finish_non_exhaustive()
    }
}

impl Inspector {
    /// An inspector reading through `client` into `catalog`.
    pub fn new(client: RegistryClient, catalog: ImageCatalog) -> Self {
        Inspector {
            client,
            catalog,
            max_config_bytes: DEFAULT_MAX_CONFIG_BYTES,
            in_flight: Mutex::new(HashMap::new()),
            recent: Mutex::new(Recent {
                capacity: DEFAULT_CACHED_RECORDS,
                ..Recent::default()
            }),
            reads: Family::default(),
        }
    }

    /// The client it reads with.
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// Registers `imagestreams_<service>_image_metadata_reads_total{outcome}` (`ok`, `recorded_error`,
    /// `failed`): registry reads of image metadata, not catalog hits.
    pub fn register_metrics(&self, metrics: &imagestreams_common::metrics::ServiceMetrics) {
        metrics.register(
            "image_metadata_reads",
            "Image metadata read from a registry, by outcome",
            self.reads.clone(),
        );
    }

    /// The record of `digest` in `repo`: from the catalog, else read from the registry and recorded.
    pub async fn inspect(
        &self,
        repo: &Repository,
        digest: &str,
        announced: Option<Announced<'_>>,
    ) -> Result<ImageRecord, InspectError> {
        let known = announced.map_or(Known::Nothing, Known::Announced);
        self.inspect_known(repo, digest, known).await
    }

    /// The record of `manifest` (read already) in `repo`: from the catalog, else its config is read from the
    /// registry (for an image; an index needs nothing more) and recorded.
    pub async fn inspect_fetched(
        &self,
        repo: &Repository,
        manifest: &Manifest,
    ) -> Result<ImageRecord, InspectError> {
        self.inspect_known(repo, &manifest.digest, Known::Fetched(manifest))
            .await
    }

    async fn inspect_known(
        &self,
        repo: &Repository,
        digest: &str,
        known: Known<'_>,
    ) -> Result<ImageRecord, InspectError> {
        if let Some(record) = self.recent().get(digest) {
            return Ok(record);
        }
        let record = match self.catalog.get(digest).await? {
            Some(record) => record,
            None => {
                let lock = self.lock(digest);
                let guard = lock.lock().await;
                let result = self.read_and_record(repo, digest, known).await;
                drop(guard);
                self.unlock(digest, &lock);
                result?
            }
        };
        self.recent().insert(&record);
        Ok(record)
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn read_and_record(
        &self,
        repo: &Repository,
        digest: &str,
        known: Known<'_>,
    ) -> Result<ImageRecord, InspectError> {
        // Whoever held the lock before us may have recorded it.
        if let Some(record) = self.catalog.get(digest).await? {
            return Ok(record);
        }
        let record = match self.read(repo, digest, known).await {
            Ok(record) => {
                self.count("ok");
                record
            }
            Err(e) if is_permanent(&e) => {
                self.count("recorded_error");
                tracing::warn!(
                    digest,
                    error = imagestreams_common::error::chain(&e),
                    "image metadata is unreadable; recording the error"
                );
                ImageRecord {
                    digest: digest.to_owned(),
                    media_type: known.media_type(),
                    manifest_size: known.size(),
                    error: Some(e.to_string()),
                    recorded_at: now(),
                    ..ImageRecord::default()
                }
            }
            Err(e) => {
                self.count("failed");
                return Err(e.into());
            }
        };
        Ok(self.catalog.create(record).await?)
    }

    async fn read(
        &self,
        repo: &Repository,
        digest: &str,
        known: Known<'_>,
    ) -> Result<ImageRecord, RegistryError> {
        let invalid = |what: String, detail: String| RegistryError::InvalidResponse {
            registry: repo.primary().registry(),
            what,
            detail,
        };
        let of_manifest = |manifest: &Manifest| {
            let content = read_manifest(manifest)
                .map_err(|e| invalid(format!("the manifest {digest}"), e))?;
            Ok::<_, RegistryError>((
                manifest.media_type.clone().unwrap_or_default(),
                manifest.bytes.len() as u64,
                content,
            ))
        };
        let announced = match known {
            Known::Announced(announced) => from_references(announced),
            Known::Nothing | Known::Fetched(_) => None,
        };
        let (media_type, manifest_size, content) = match (announced, known) {
            (Some(read), _) => read,
            (None, Known::Fetched(manifest)) => of_manifest(manifest)?,
            (None, _) => of_manifest(&self.client.manifest(repo, digest).await?)?,
        };
        let mut record = ImageRecord {
            digest: digest.to_owned(),
            media_type,
            manifest_size,
            recorded_at: now(),
            ..ImageRecord::default()
        };
        match content {
            ManifestContent::Index(manifests) => record.manifests = manifests,
            ManifestContent::Image { config, layers } => {
                record.layers = layers;
                if config.size > self.max_config_bytes {
                    return Err(RegistryError::TooLarge {
                        registry: repo.primary().registry(),
                        what: format!("the config {}", config.digest),
                        limit: self.max_config_bytes,
                    });
                }
                let bytes = self
                    .client
                    .blob(repo, &config.digest, self.max_config_bytes)
                    .await?;
                record.config = Some(
                    read_config(&bytes, &config.digest)
                        .map_err(|e| invalid(format!("the config {}", config.digest), e))?,
                );
            }
        }
        Ok(record)
    }

    fn count(&self, outcome: &'static str) {
        self.reads.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    fn lock(&self, digest: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(digest.to_owned()).or_default().clone()
    }

    fn unlock(&self, digest: &str, lock: &Arc<tokio::sync::Mutex<()>>) {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        // Ours and the map's: nobody else waits for it.
        if Arc::strong_count(lock) == 2 {
            map.remove(digest);
        }
    }
}

/// Whether `e` will fail the same way every time for this digest.
fn is_permanent(e: &RegistryError) -> bool {
    matches!(
        e,
        RegistryError::InvalidResponse { .. }
            | RegistryError::TooLarge { .. }
            | RegistryError::DigestMismatch { .. }
    )
}

fn now() -> String {
    format_timestamp(chrono::Utc::now())
}

/// What a manifest says: the platforms of an index, or an image's config and layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestContent {
    /// An OCI index or Docker manifest list.
    Index(Vec<PlatformImage>),
    /// An OCI or Docker schema 2 image manifest.
    Image {
        /// The config blob.
        config: Descriptor,
        /// The layers, base first.
        layers: Vec<Layer>,
    },
}

/// Reads `manifest`: an index's platforms, or an image's config and layers.
pub fn read_manifest(manifest: &Manifest) -> Result<ManifestContent, String> {
    if manifest.is_index() {
        let platforms = manifest
            .platforms()
            .map_err(|e| format!("not an image index: {e}"))?;
        return Ok(ManifestContent::Index(
            platforms
                .into_iter()
                .map(|p| PlatformImage {
                    digest: p.digest,
                    media_type: p.media_type.unwrap_or_default(),
                    size: p.size.unwrap_or_default(),
                    os: p.platform.os,
                    architecture: p.platform.architecture,
                    variant: p.platform.variant.unwrap_or_default(),
                })
                .collect(),
        ));
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ImageManifestDoc {
        config: DescriptorDoc,
        #[serde(default)]
        layers: Vec<DescriptorDoc>,
    }
    let doc: ImageManifestDoc = serde_json::from_slice(&manifest.bytes)
        .map_err(|e| format!("not an image manifest: {e}"))?;
    Ok(ManifestContent::Image {
        config: doc.config.into_descriptor(),
        layers: doc
            .layers
            .into_iter()
            .map(|l| {
                let d = l.into_descriptor();
                Layer {
                    digest: d.digest,
                    media_type: d.media_type,
                    size: d.size,
                }
            })
            .collect(),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescriptorDoc {
    #[serde(default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: u64,
}

impl DescriptorDoc {
    fn into_descriptor(self) -> Descriptor {
        Descriptor {
            media_type: self.media_type,
            digest: self.digest,
            size: self.size,
        }
    }
}

/// The content of an image manifest from a push notification's references: its config (by media type) and
/// its layers (the rest, in order). `None` for an index or when the references name no config.
fn from_references(announced: Announced<'_>) -> Option<(String, u64, ManifestContent)> {
    let image_manifest = matches!(
        announced.media_type,
        MEDIA_TYPE_OCI_MANIFEST | MEDIA_TYPE_DOCKER_SCHEMA2
    );
    let is_config = |d: &&Descriptor| {
        matches!(
            d.media_type.as_str(),
            MEDIA_TYPE_OCI_CONFIG | MEDIA_TYPE_DOCKER_CONFIG
        )
    };
    if !image_manifest {
        return None;
    }
    let config = announced.references.iter().find(is_config)?;
    let layers = announced
        .references
        .iter()
        .filter(|d| !is_config(d))
        .map(|d| Layer {
            digest: d.digest.clone(),
            media_type: d.media_type.clone(),
            size: d.size,
        })
        .collect();
    Some((
        announced.media_type.to_owned(),
        announced.size,
        ManifestContent::Image {
            config: config.clone(),
            layers,
        },
    ))
}

/// Reads an image config blob (OCI or Docker), `digest` being its digest.
pub fn read_config(bytes: &[u8], digest: &str) -> Result<ImageConfig, String> {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct ConfigDoc {
        created: Option<String>,
        author: Option<String>,
        architecture: String,
        os: String,
        variant: Option<String>,
        config: Option<RuntimeDoc>,
    }
    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "PascalCase")]
    struct RuntimeDoc {
        user: Option<String>,
        exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
        env: Option<Vec<String>>,
        entrypoint: Option<Vec<String>>,
        cmd: Option<Vec<String>>,
        working_dir: Option<String>,
        labels: Option<BTreeMap<String, String>>,
    }
    let doc: ConfigDoc =
        serde_json::from_slice(bytes).map_err(|e| format!("not an image config: {e}"))?;
    let runtime = doc.config.unwrap_or_default();
    Ok(ImageConfig {
        digest: digest.to_owned(),
        size: bytes.len() as u64,
        os: doc.os,
        architecture: doc.architecture,
        variant: doc.variant.unwrap_or_default(),
        created: doc.created.unwrap_or_default(),
        author: doc.author.unwrap_or_default(),
        user: runtime.user.unwrap_or_default(),
        working_dir: runtime.working_dir.unwrap_or_default(),
        env: runtime.env.unwrap_or_default(),
        entrypoint: runtime.entrypoint.unwrap_or_default(),
        cmd: runtime.cmd.unwrap_or_default(),
        exposed_ports: runtime
            .exposed_ports
            .unwrap_or_default()
            .into_keys()
            .collect(),
        labels: runtime.labels.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(media_type: &str, body: &str) -> Manifest {
        Manifest {
            digest: "sha256:00".into(),
            media_type: Some(media_type.into()),
            bytes: bytes::Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn an_image_manifest_gives_its_config_and_layers() {
        let m = manifest(
            MEDIA_TYPE_OCI_MANIFEST,
            r#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:c","size":7},
               "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:l","size":9}]}"#,
        );
        let ManifestContent::Image { config, layers } = read_manifest(&m).unwrap() else {
            panic!("not an image");
        };
        assert_eq!((config.digest.as_str(), config.size), ("sha256:c", 7));
        assert_eq!(layers.len(), 1);
        assert_eq!((layers[0].digest.as_str(), layers[0].size), ("sha256:l", 9));
    }

    #[test]
    fn an_index_gives_each_platform() {
        let m = manifest(
            MEDIA_TYPE_OCI_INDEX,
            r#"{"schemaVersion":2,"manifests":[
              {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:a","size":1,"platform":{"os":"linux","architecture":"amd64"}},
              {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:b","size":2,"platform":{"os":"linux","architecture":"arm","variant":"v7"}}]}"#,
        );
        let ManifestContent::Index(platforms) = read_manifest(&m).unwrap() else {
            panic!("not an index");
        };
        let names: Vec<_> = platforms.iter().map(PlatformImage::platform).collect();
        assert_eq!(names, ["linux/amd64", "linux/arm/v7"]);
    }

    #[test]
    fn malformed_manifests_and_configs_say_what_is_wrong() {
        let m = manifest(MEDIA_TYPE_OCI_MANIFEST, r#"{"schemaVersion":2}"#);
        assert!(
            read_manifest(&m)
                .unwrap_err()
                .contains("not an image manifest")
        );
        assert!(
            read_config(b"{not json", "sha256:c")
                .unwrap_err()
                .contains("not an image config")
        );
    }

    #[test]
    fn a_config_gives_what_docker_inspect_shows() {
        let config = read_config(
            br#"{"created":"2026-11-27T01:02:03Z","author":"me","architecture":"arm64","os":"linux",
                "config":{"User":"1001","ExposedPorts":{"8080/tcp":{}},"Env":["A=1"],"Entrypoint":["/bin/app"],
                "Cmd":["serve"],"WorkingDir":"/srv","Labels":{"k":"v"}},"rootfs":{"type":"layers","diff_ids":[]}}"#,
            "sha256:c",
        )
        .unwrap();
        assert_eq!(config.platform(), "linux/arm64");
        assert_eq!(config.created, "2026-11-27T01:02:03Z");
        assert_eq!(config.exposed_ports, ["8080/tcp"]);
        assert_eq!(config.entrypoint, ["/bin/app"]);
        assert_eq!(config.labels["k"], "v");
        assert_eq!(
            (config.user.as_str(), config.working_dir.as_str()),
            ("1001", "/srv")
        );
    }

    #[test]
    fn the_memory_keeps_the_newest_records() {
        let mut recent = Recent {
            capacity: 2,
            ..Recent::default()
        };
        let record = |d: &str| ImageRecord {
            digest: d.into(),
            ..ImageRecord::default()
        };
        for d in ["a", "b", "a", "c"] {
            recent.insert(&record(d));
        }
        assert!(recent.get("a").is_none(), "the oldest went first");
        assert_eq!(recent.get("b").map(|r| r.digest), Some("b".into()));
        assert_eq!(recent.get("c").map(|r| r.digest), Some("c".into()));
    }

    #[test]
    fn references_of_a_push_stand_for_the_manifest() {
        let refs = [
            Descriptor {
                media_type: MEDIA_TYPE_OCI_CONFIG.into(),
                digest: "sha256:c".into(),
                size: 5,
            },
            Descriptor {
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                digest: "sha256:l".into(),
                size: 6,
            },
        ];
        let announced = Announced {
            media_type: MEDIA_TYPE_OCI_MANIFEST,
            size: 300,
            references: &refs,
        };
        let (_, size, content) = from_references(announced).unwrap();
        assert_eq!(size, 300);
        let ManifestContent::Image { config, layers } = content else {
            panic!("not an image");
        };
        assert_eq!(config.digest, "sha256:c");
        assert_eq!(layers.len(), 1);
        let no_refs = Announced {
            references: &[],
            ..announced
        };
        assert!(from_references(no_refs).is_none());
    }
}
