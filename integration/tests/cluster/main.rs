//! Replicas on a NATS cluster (issue 9): three routed `nats-server -js`
//! processes, streams and KV buckets with 3 replicas, and two replicas of the
//! registry-watcher and the stream-store sharing the work. Notifications go
//! to both watchers, several pushes of one tag in flight at once, while one
//! NATS node is stopped and restarted. Every pushed digest must end in its
//! tag's history exactly once and in push order (the registry's time
//! decides), and the `TagsChanged` stream must hold each change once, never
//! moving a tag back to an older image (a push applied after a newer one is
//! history, not a change).

use std::time::Duration;

use imagestreams::cli::ServiceName;
use imagestreams_common::config::{Config, Secret};
use imagestreams_integration::{NatsCluster, TestApp, load};

/// The bearer token both watchers expect.
const TOKEN: &str = "cluster-token";
/// 200 pushes over 4 streams × 2 tags.
const PUSHES: usize = 200;
/// Notifications in flight at once (so pushes of one tag overlap).
const IN_FLIGHT: usize = 8;
/// How long everything may take to land after the last notification.
const SETTLE: Duration = Duration::from_secs(60);
/// How long one notification is retried while NATS fails over.
const RETRY_FOR: Duration = Duration::from_secs(30);

#[tokio::test]
async fn replicas_on_a_three_node_cluster_lose_and_double_nothing() -> anyhow::Result<()> {
    let mut cluster = NatsCluster::start(3).await?;
    let services = [ServiceName::RegistryWatcher, ServiceName::StreamStore];
    let configure = |c: &mut Config| {
        c.nats.replicas = 3;
        c.registry_watcher.token = Some(Secret::new(TOKEN));
    };
    // the replicas connect through different nodes first
    let replicas = [
        TestApp::spawn_on(&cluster.urls_from(0), &services, configure).await?,
        TestApp::spawn_on(&cluster.urls_from(1), &services, configure).await?,
    ];
    let watchers: Vec<String> = replicas
        .iter()
        .map(|r| format!("http://{}/notifications", r.addr("notifications")))
        .collect();

    let all = load::pushes("cluster", PUSHES, 4, 2);
    let http = reqwest::Client::new();
    let (first, rest) = all.split_at(PUSHES / 2);
    let (second, third) = rest.split_at(PUSHES / 4);
    let mut retried =
        load::notify_all(&http, &watchers, TOKEN, first, IN_FLIGHT, RETRY_FOR).await?;
    // one node goes down, and comes back, under load
    cluster.nodes[2].stop().await?;
    retried += load::notify_all(&http, &watchers, TOKEN, second, IN_FLIGHT, RETRY_FOR).await?;
    cluster.nodes[2].restart().await?;
    retried += load::notify_all(&http, &watchers, TOKEN, third, IN_FLIGHT, RETRY_FOR).await?;

    let client = async_nats::connect(cluster.urls().split(',').collect::<Vec<_>>()).await?;
    let audit = load::audit(&async_nats::jetstream::new(client), &all, SETTLE).await?;
    println!(
        "cluster: {PUSHES} pushes over {} replicas while a NATS node restarted \
         ({retried} POSTs retried): {audit}",
        replicas.len()
    );
    assert!(audit.is_clean(), "{audit}");
    for replica in replicas {
        replica.stop().await?;
    }
    Ok(())
}
