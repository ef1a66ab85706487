//! Carrying out an [`ImportPlan`]: the registry calls (tag list, one digest
//! per tag), bounded as a whole by the import timeout, and the one
//! `ImportResult` the stream-store applies.
//!
//! - **Credentials.** Per endpoint (mirrors, then the primary location): the
//!   namespace's secret matching the endpoint by the longest
//!   `host[:port][/path]` prefix, else the global docker `config.json`'s.
//!   One namespace's secrets never serve another's imports.
//! - **Failures** become the tag's `ImportSuccess=False` condition with the
//!   reason of [`RegistryError::reason`]; a repository whose tag list fails
//!   records it on the tags the stream has (or `latest`). Tags not done when
//!   the import's time is up fail with `Timeout`: an import never hangs.
//! - **Cap.** A repository gives at most `max_tags_per_import` tags, in
//!   OpenShift's order ([`select_tags`]).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt as _;
use imagestreams_common::{error::ApiError, metrics::ServiceMetrics, reference::Reference};
use imagestreams_proto::v1 as proto;
use imagestreams_registry_client::{
    Keyring, RegistryClient, RegistryError, Repository, image::Inspector, select_tags,
};
use imagestreams_stream_store_api::StoreClient;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Unit,
};
use tokio::time::Instant;

use crate::{
    plan::{ImportPlan, reference_of, repository_as_written},
    secrets::SecretStore,
};

/// How often applying an import is tried when the stream-store is unavailable.
const APPLY_ATTEMPTS: u32 = 3;

/// Runs imports; cheap to share.
#[derive(Debug)]
pub struct Importer {
    client: RegistryClient,
    /// Records each imported digest's metadata, once.
    inspector: Inspector,
    global: Keyring,
    secrets: Arc<SecretStore>,
    store: StoreClient,
    timeout: Duration,
    metrics: ImportMetrics,
}

/// `import_duration_seconds{registry}` and `imported_tags_total{registry,outcome}`.
#[derive(Clone, Debug)]
struct ImportMetrics {
    durations: Family<RegistryLabels, Histogram>,
    tags: Family<OutcomeLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegistryLabels {
    registry: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    registry: String,
    /// `ok`, or the failure's reason (`NotFound`, `Unauthorized`, …).
    outcome: String,
}

impl Default for ImportMetrics {
    fn default() -> Self {
        ImportMetrics {
            durations: Family::new_with_constructor(
                (|| Histogram::new(exponential_buckets(0.005, 2.0, 14))) as fn() -> Histogram,
            ),
            tags: Family::default(),
        }
    }
}

/// The registry of `from` for a metric label (`docker.io` for Docker Hub's
/// short names), `invalid` when it does not parse.
fn registry_of(from: &str) -> String {
    Reference::parse_normalized(from)
        .map(|r| r.domain().to_owned())
        .unwrap_or_else(|_| "invalid".to_owned())
}

impl ImportMetrics {
    /// Records one import: its duration under the registry all its sources
    /// share (`mixed` when they differ), and each tag's outcome.
    fn record(&self, plan: &ImportPlan, tags: &[proto::ImportedTag], took: Duration) {
        let mut registries: HashMap<&str, String> = HashMap::new();
        if let Some(repository) = &plan.repository {
            for tag in &repository.failure_tags {
                registries.insert(tag, registry_of(&repository.from));
            }
        }
        let repository_registry = plan.repository.as_ref().map(|r| registry_of(&r.from));
        for tag in &plan.tags {
            registries.insert(&tag.tag, registry_of(&tag.from));
        }
        let mut all: Vec<String> = registries.values().cloned().collect();
        all.extend(repository_registry.clone());
        all.sort();
        all.dedup();
        let registry = match all.as_slice() {
            [one] => one.clone(),
            [] => "none".to_owned(),
            _ => "mixed".to_owned(),
        };
        self.durations
            .get_or_create(&RegistryLabels { registry })
            .observe(took.as_secs_f64());
        for tag in tags {
            let registry = registries
                .get(tag.tag.as_str())
                .cloned()
                .or_else(|| repository_registry.clone())
                .unwrap_or_else(|| "none".to_owned());
            let outcome = if tag.failed {
                tag.reason.clone()
            } else {
                "ok".to_owned()
            };
            self.tags
                .get_or_create(&OutcomeLabels { registry, outcome })
                .inc();
        }
    }
}

/// When an import reads its new images' metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metadata {
    /// Before the tag moves: a tag's digest by a manifest HEAD (which
    /// Docker Hub does not count as a pull), then, for a new image, its
    /// manifest and config.
    Inline,
    /// After: a tag's manifest by one GET, its config read later.
    After,
}

/// A manifest an import resolved a tag with, whose metadata is still to be
/// recorded.
#[derive(Debug)]
pub struct Fetched {
    repo: Repository,
    manifest: imagestreams_registry_client::Manifest,
}

/// One digest to resolve.
struct Job {
    tag: String,
    repo: Repository,
    reference: String,
    written: String,
    generation: i64,
}

fn failed(tag: &str, reason: &str, message: String, generation: i64) -> proto::ImportedTag {
    proto::ImportedTag {
        tag: tag.to_owned(),
        failed: true,
        reason: reason.to_owned(),
        message,
        generation,
        ..Default::default()
    }
}

fn registry_failure(tag: &str, error: &RegistryError, generation: i64) -> proto::ImportedTag {
    failed(tag, error.reason(), error.to_string(), generation)
}

impl Importer {
    /// An importer talking to registries through `client`, with `global`
    /// credentials and each namespace's `secrets`, applying through `store`;
    /// every import is bounded by `timeout`.
    pub fn new(
        inspector: Inspector,
        global: Keyring,
        secrets: Arc<SecretStore>,
        store: StoreClient,
        timeout: Duration,
    ) -> Self {
        Importer {
            client: inspector.client().clone(),
            inspector,
            global,
            secrets,
            store,
            timeout,
            metrics: ImportMetrics::default(),
        }
    }

    /// Registers the import metrics and the registry client's in `metrics`.
    pub fn register_metrics(&self, metrics: &ServiceMetrics) {
        metrics.register_with_unit(
            "import_duration",
            "Time to resolve an import's tags at their registries, by registry (mixed: several)",
            Unit::Seconds,
            self.metrics.durations.clone(),
        );
        metrics.register(
            "imported_tags",
            "Tags imported, by registry and outcome (ok, or the failure's reason)",
            self.metrics.tags.clone(),
        );
        self.client.register_metrics(metrics);
        self.inspector.register_metrics(metrics);
    }

    /// The registry client.
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// Carries out `plan` and has the stream-store apply the outcome; each
    /// new image's metadata is read before the tag moves.
    #[tracing::instrument(skip_all, fields(namespace = %plan.namespace, name = %plan.name), err(level = "debug"))]
    pub async fn run(&self, plan: &ImportPlan) -> Result<proto::ImportApplied, ApiError> {
        let (tags, _) = self.fetch(plan, Metadata::Inline).await;
        self.apply(plan, tags).await
    }

    /// Carries out `plan` as a hint asks (a webhook's delivery: the tags
    /// most likely point to images just pushed): each tag is resolved with
    /// one manifest GET, the stream-store applies the outcome, and what is
    /// left, reading the new images' configs, is returned to be done after,
    /// with [`record_metadata`](Self::record_metadata), so that the tag
    /// moves without waiting for it.
    #[tracing::instrument(skip_all, fields(namespace = %plan.namespace, name = %plan.name), err(level = "debug"))]
    pub async fn run_hinted(
        &self,
        plan: &ImportPlan,
    ) -> Result<(proto::ImportApplied, Vec<Fetched>), ApiError> {
        let (tags, fetched) = self.fetch(plan, Metadata::After).await;
        Ok((self.apply(plan, tags).await?, fetched))
    }

    /// Records the metadata of images [`run_hinted`](Self::run_hinted)
    /// resolved (once per digest). A failure is logged, not the import's:
    /// the next import of the tag tries again.
    pub async fn record_metadata(&self, fetched: &[Fetched]) {
        futures::stream::iter(fetched)
            .for_each_concurrent(self.client.limits().max_concurrency.max(1), |f| async move {
                if let Err(e) = self.inspector.inspect_fetched(&f.repo, &f.manifest).await {
                    tracing::warn!(digest = %f.manifest.digest, error = imagestreams_common::error::chain(&e), "cannot read the image's metadata now");
                }
            })
            .await;
    }

    async fn apply(
        &self,
        plan: &ImportPlan,
        tags: Vec<proto::ImportedTag>,
    ) -> Result<proto::ImportApplied, ApiError> {
        let result = proto::ImportResult {
            import_id: uuid_like(),
            namespace: plan.namespace.clone(),
            name: plan.name.clone(),
            tags,
            repository_check: true,
            create: plan.create,
            set_docker_image_repository: plan.set_repository.clone().unwrap_or_default(),
            set_spec_tags: plan.set_spec_tags.iter().cloned().map(Into::into).collect(),
            scheduled: plan.scheduled,
        };
        for failure in result.tags.iter().filter(|t| t.failed) {
            tracing::info!(tag = %failure.tag, reason = %failure.reason, message = %failure.message, "import of a tag failed");
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.store.apply_import(&result).await {
                Err(ApiError::Unavailable(why)) if attempt < APPLY_ATTEMPTS => {
                    tracing::debug!(%why, "stream-store unavailable, trying again");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                other => return other,
            }
        }
    }

    /// The registry secrets of `namespace`; none (with a warning) when they
    /// cannot be read, so that public registries still work.
    pub(crate) async fn namespace_keyring(&self, namespace: &str) -> Keyring {
        match self.secrets.keyring(namespace).await {
            Ok(keyring) => keyring,
            Err(error) => {
                tracing::warn!(%namespace, error = imagestreams_common::error::chain(&error), "namespace secrets unavailable; going on without them");
                Keyring::new()
            }
        }
    }

    /// The credentials for `reference`: the global ones, with the
    /// namespace's secret for each endpoint it has one for.
    fn keyring_for(&self, reference: &Reference, insecure: bool, namespace: &Keyring) -> Keyring {
        let mut keyring = self.global.clone();
        if namespace.is_empty() {
            return keyring;
        }
        if let Ok(resolved) = self.client.rules().resolve(reference, insecure) {
            for endpoint in &resolved.endpoints {
                if let Some(credential) = namespace.lookup(&endpoint.location) {
                    // keyed by the whole location: longer than any other match
                    let _ = keyring.insert(&endpoint.location, credential.clone());
                }
            }
        }
        keyring
    }

    /// `reference` resolved by the rules, with its credentials.
    pub(crate) fn repository(
        &self,
        reference: &Reference,
        insecure: bool,
        namespace: &Keyring,
    ) -> Result<Repository, RegistryError> {
        let keyring = self.keyring_for(reference, insecure, namespace);
        self.client.repository(reference, &keyring, insecure)
    }

    /// Resolves every tag of `plan`; one entry per tag, failures included.
    async fn fetch(
        &self,
        plan: &ImportPlan,
        metadata: Metadata,
    ) -> (Vec<proto::ImportedTag>, Vec<Fetched>) {
        let started = Instant::now();
        let (tags, fetched) = self.resolve_all(plan, metadata).await;
        self.metrics.record(plan, &tags, started.elapsed());
        (tags, fetched)
    }

    async fn resolve_all(
        &self,
        plan: &ImportPlan,
        metadata: Metadata,
    ) -> (Vec<proto::ImportedTag>, Vec<Fetched>) {
        let deadline = Instant::now() + self.timeout;
        let namespace = self.namespace_keyring(&plan.namespace).await;
        let mut done: Vec<proto::ImportedTag> = Vec::new();
        let mut jobs: Vec<Job> = Vec::new();
        let single: HashSet<&str> = plan.tags.iter().map(|t| t.tag.as_str()).collect();
        if let Some(repository) = &plan.repository {
            let listed = match Reference::parse_normalized(&repository.from) {
                Ok(reference) => {
                    let reference = reference.repository();
                    match self.repository(&reference, repository.insecure, &namespace) {
                        Ok(repo) => {
                            match tokio::time::timeout_at(deadline, self.client.list_tags(&repo))
                                .await
                            {
                                Ok(Ok(list)) => Ok((repo, list.tags)),
                                Ok(Err(e)) => Err((e.reason(), e.to_string())),
                                Err(_) => Err(self.timed_out(&repository.from)),
                            }
                        }
                        Err(e) => Err((e.reason(), e.to_string())),
                    }
                }
                Err(e) => Err((
                    "BadRequest",
                    format!("invalid repository {:?}: {e}", repository.from),
                )),
            };
            match listed {
                Ok((repo, tags)) => {
                    let max = self.client.limits().max_tags_per_import;
                    for tag in select_tags(&tags, max) {
                        if single.contains(tag.as_str()) {
                            continue;
                        }
                        jobs.push(Job {
                            reference: tag.clone(),
                            tag,
                            repo: repo.clone(),
                            written: repository.from.clone(),
                            generation: 0,
                        });
                    }
                }
                Err((reason, message)) => {
                    for tag in &repository.failure_tags {
                        if !single.contains(tag.as_str()) {
                            done.push(failed(tag, reason, message.clone(), 0));
                        }
                    }
                }
            }
        }
        for tag in &plan.tags {
            let reference = match Reference::parse_normalized(&tag.from) {
                Ok(reference) => reference,
                Err(e) => {
                    done.push(failed(
                        &tag.tag,
                        "BadRequest",
                        format!("invalid image reference {:?}: {e}", tag.from),
                        tag.generation,
                    ));
                    continue;
                }
            };
            match self.repository(&reference.repository(), tag.insecure, &namespace) {
                Ok(repo) => jobs.push(Job {
                    tag: tag.tag.clone(),
                    repo,
                    reference: reference_of(&reference),
                    written: repository_as_written(&tag.from).to_owned(),
                    generation: tag.generation,
                }),
                Err(e) => done.push(registry_failure(&tag.tag, &e, tag.generation)),
            }
        }
        let pending: Vec<(String, String, i64)> = jobs
            .iter()
            .map(|j| (j.tag.clone(), j.written.clone(), j.generation))
            .collect();
        let concurrency = self.client.limits().max_concurrency.max(1);
        let mut results = futures::stream::iter(jobs)
            .map(|job| async move {
                let result = self.resolve(&job, metadata).await;
                (job, result)
            })
            .buffer_unordered(concurrency);
        let mut finished = HashSet::new();
        let mut fetched = Vec::new();
        while let Ok(Some((job, result))) = tokio::time::timeout_at(deadline, results.next()).await
        {
            finished.insert(job.tag.clone());
            done.push(match result {
                Ok((digest, manifest)) => {
                    fetched.extend(manifest.map(|manifest| Fetched {
                        repo: job.repo.clone(),
                        manifest,
                    }));
                    proto::ImportedTag {
                        docker_image_reference: format!("{}@{digest}", job.written),
                        image: digest,
                        tag: job.tag,
                        generation: job.generation,
                        ..Default::default()
                    }
                }
                Err(e) => registry_failure(&job.tag, &e, job.generation),
            });
        }
        for (tag, written, generation) in pending {
            if !finished.contains(&tag) {
                let (reason, message) = self.timed_out(&written);
                done.push(failed(&tag, reason, message, generation));
            }
        }
        (done, fetched)
    }

    /// The digest `job`'s tag points to, and with [`Metadata::After`] the
    /// manifest it was read from. With [`Metadata::Inline`], the image's
    /// record exists once this returns (read once per digest, see
    /// [`Inspector`]); a failure to read it is logged, not the import's: the
    /// tag still moves, and the next import tries again.
    async fn resolve(
        &self,
        job: &Job,
        metadata: Metadata,
    ) -> Result<(String, Option<imagestreams_registry_client::Manifest>), RegistryError> {
        match metadata {
            Metadata::Inline => {
                let digest = self.client.digest(&job.repo, &job.reference).await?.digest;
                if let Err(e) = self.inspector.inspect(&job.repo, &digest, None).await {
                    tracing::warn!(%digest, error = imagestreams_common::error::chain(&e), "cannot read the image's metadata now");
                }
                Ok((digest, None))
            }
            Metadata::After => {
                let manifest = self.client.manifest(&job.repo, &job.reference).await?;
                Ok((manifest.digest.clone(), Some(manifest)))
            }
        }
    }

    fn timed_out(&self, what: &str) -> (&'static str, String) {
        (
            "Timeout",
            format!(
                "timeout: importing from {what} did not finish within {:?}",
                self.timeout
            ),
        )
    }
}

/// A random import id (UUID v4 form).
fn uuid_like() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
