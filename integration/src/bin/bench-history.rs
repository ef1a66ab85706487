//! `bench-history`: what asking a tag's history costs when the tag has
//! changed 10,000 times (issue 20), against a real nats-server with the
//! registry-watcher, the stream-store and the gateway in this process, in
//! their default configuration except `registry_watcher.read_metadata =
//! false` (the pushed digests are in no registry).
//!
//! The tag is pushed `--changes` times (10,000) through the watcher, one
//! notification after the other, so that every push is a change (a
//! `TagsChanged` in the event log). Then, in the same run:
//!
//! - **floor:** `ImageStreams.Get` of the stream (what `get is` does);
//! - **`history --at`:** `ImageStreams.History` with `at` in the middle of
//!   the pushes (answered from the event log: the tag's own history holds
//!   only the last 50);
//! - **`history`:** the whole list, every change with its cause.
//!
//! Each is asked 30 times, one after the other; medians and ratios to the
//! floor are printed.
//!
//! ```text
//! NATS_SERVER=/path/to/nats-server cargo run --release -p imagestreams-integration --bin bench-history
//! ```
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use imagestreams::cli::ServiceName;
use imagestreams_common::config::Secret;
use imagestreams_integration::{
    NatsServer, TestApp,
    bench::{Summary, print_summary, summarize},
    load::{self, Push},
    wait_for,
};
use imagestreams_proto::v1 as proto;
use imagestreams_stream_store_api::history::timestamp;

const TOKEN: &str = "bench-history-token";
const NAMESPACE: &str = "history";
const STREAM: &str = "app";
const TAG: &str = "latest";
/// Calls per measured operation.
const SAMPLES: usize = 30;
/// Pushes to the tag.
const DEFAULT_CHANGES: usize = 10_000;

/// What asking a tag's history costs when the tag has changed many times,
/// against its floor measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "bench-history", long_about = None, args_override_self = true)]
struct Args {
    /// Pushes to the tag.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CHANGES)]
    changes: usize,
}

async fn measure<F, Fut>(mut call: F) -> anyhow::Result<Summary>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut nanos = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let started = Instant::now();
        call().await?;
        nanos.push(started.elapsed().as_nanos() as u64);
    }
    Ok(summarize(nanos))
}

/// `ImageStreams.History` of the tag, at `at` or since `since` if given.
async fn history(
    client: &Client,
    at: Option<prost_types::Timestamp>,
    since: Option<prost_types::Timestamp>,
) -> anyhow::Result<proto::HistoryResponse> {
    let request = proto::HistoryRequest {
        namespace: NAMESPACE.into(),
        name: STREAM.into(),
        tag: TAG.into(),
        at,
        since,
    };
    Ok(client.clone().history(request).await?.into_inner())
}

type Client = proto::image_streams_client::ImageStreamsClient<tonic::transport::Channel>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Args { changes } = Args::parse();
    let nats = NatsServer::start().await?;
    let app = TestApp::spawn_with(
        &nats,
        &[
            ServiceName::RegistryWatcher,
            ServiceName::StreamStore,
            ServiceName::Gateway,
        ],
        |c| {
            c.registry_watcher.token = Some(Secret::new(TOKEN));
            c.registry_watcher.read_metadata = false;
        },
    )
    .await?;
    let client = app.client().await?;

    // the tag's changes, in order, each a TagsChanged
    let pushes: Vec<Push> = (0..changes)
        .map(|i| Push::numbered(NAMESPACE, i, STREAM, TAG))
        .collect();
    let watchers = [format!(
        "http://{}/notifications",
        app.addr("notifications")
    )];
    let http = reqwest::Client::new();
    let started = Instant::now();
    load::notify_all(&http, &watchers, TOKEN, &pushes, 1, Duration::from_secs(60)).await?;
    let last = pushes.last().context("--changes 0")?.digest.clone();
    let get = proto::GetRequest {
        namespace: NAMESPACE.into(),
        name: STREAM.into(),
        ..Default::default()
    };
    let current = |stream: &proto::ImageStream| {
        stream
            .status
            .as_ref()
            .and_then(|s| s.tags.iter().find(|t| t.tag == TAG))
            .and_then(|t| t.items.first())
            .map(|i| i.image.clone())
    };
    {
        let (client, get, last) = (client.clone(), get.clone(), last.clone());
        wait_for(
            move || {
                let (mut client, get, last) = (client.clone(), get.clone(), last.clone());
                async move {
                    match client.get(get).await {
                        Ok(reply) => current(reply.get_ref()) == Some(last),
                        Err(_) => false,
                    }
                }
            },
            Duration::from_secs(600),
        )
        .await?;
    }
    let filled = started.elapsed();
    // a time in the middle of the pushes
    let all = history(&client, None, None).await?;
    anyhow::ensure!(
        all.changes.len() == changes,
        "{} changes listed for {changes} pushes",
        all.changes.len()
    );
    let middle = all.changes[changes / 2].time;
    println!(
        "bench-history: a tag changed {changes} times (filled in {filled:.1?}), {SAMPLES} calls each"
    );

    let floor = measure(|| {
        let (mut client, get) = (client.clone(), get.clone());
        async move {
            client.get(get).await?;
            Ok(())
        }
    })
    .await?;
    let at = measure(|| async {
        let reply = history(&client, middle, None).await?;
        anyhow::ensure!(reply.at.len() == 1, "one tag at the middle time");
        Ok(())
    })
    .await?;
    let list = measure(|| async {
        let reply = history(&client, None, None).await?;
        anyhow::ensure!(reply.changes.len() == changes, "every change");
        Ok(())
    })
    .await?;
    let since = measure(|| async {
        let recent = timestamp(chrono::Utc::now() - chrono::TimeDelta::seconds(1));
        history(&client, None, Some(recent)).await?;
        Ok(())
    })
    .await?;
    print_summary("floor: Get (get is)", 30, &floor);
    print_summary("History --at (middle)", 30, &at);
    print_summary("History (all changes)", 30, &list);
    print_summary("History --since 1s (none)", 30, &since);
    println!(
        "  p50 vs. Get: --at {:.1}×, all {:.1}×, --since 1s {:.1}×",
        at.p50 / floor.p50,
        list.p50 / floor.p50,
        since.p50 / floor.p50
    );
    drop(client);
    app.stop().await
}
