//! Bounded state (issue 16), on a nats-server with a small `max_payload` so
//! that the limits are reached with a few hundred pushes: a tag pushed
//! hundreds of times keeps the configured history and never stalls the other
//! streams, and a push that can never be stored is dead-lettered without
//! holding anything up. Pushes come as the registry sends them: notification
//! envelopes POSTed to the registry-watcher.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use imagestreams::cli::ServiceName;
use imagestreams_common::{
    config::{Config, DEFAULT_HISTORY_LIMIT, Secret},
    deadletter,
    model::ImageStream,
    subjects::{self, Kind},
};
use imagestreams_integration::{NatsServer, TestApp, bench, load, wait_for};
use imagestreams_proto::v1 as proto;
use imagestreams_stream_store_api::{StoreClient, StreamReader};
use prost::Message as _;

const TOKEN: &str = "bounded-token";
/// A sixteenth of the default 1 MiB: 625 pushes here weigh what 10,000 do there.
const SMALL_MAX_PAYLOAD: usize = 64 * 1024;
/// How long one notification is retried.
const RETRY_FOR: Duration = Duration::from_secs(30);
/// The longest a push to an idle stream may wait for its `TagsChanged`
/// while another stream is busy: generous for a loaded 2-core machine, far
/// below the seconds a stalled pipeline shows.
const STALL_BOUND: Duration = Duration::from_secs(2);

/// A push numbered `index` (its registry time) to `stream:tag`.
fn push(namespace: &str, index: usize, stream: &str, tag: &str) -> load::Push {
    load::Push::numbered(namespace, index, stream, tag)
}

async fn spawn(nats: &NatsServer) -> anyhow::Result<(TestApp, String)> {
    let app = TestApp::spawn_with(
        nats,
        &[ServiceName::RegistryWatcher, ServiceName::StreamStore],
        |c: &mut Config| {
            c.registry_watcher.token = Some(Secret::new(TOKEN));
            // the pushed digests are not in any registry
            c.registry_watcher.read_metadata = false;
        },
    )
    .await?;
    let url = format!("http://{}/notifications", app.addr("notifications"));
    Ok((app, url))
}

/// Sends `pushes` one after another and returns, per stream, when its
/// (last) notification was accepted.
async fn send(url: &str, pushes: &[load::Push]) -> anyhow::Result<HashMap<String, Instant>> {
    let http = reqwest::Client::new();
    let watchers = [url.to_owned()];
    let mut accepted = HashMap::new();
    for push in pushes {
        load::notify(&http, &watchers, TOKEN, push, RETRY_FOR).await?;
        accepted.insert(push.stream.clone(), Instant::now());
    }
    Ok(accepted)
}

/// Records when the first `TagsChanged` of each stream of `namespace` arrives.
async fn first_changes(
    nats: &async_nats::Client,
    namespace: &str,
) -> anyhow::Result<tokio::task::JoinHandle<HashMap<String, Instant>>> {
    let mut changes = nats
        .subscribe(Kind::TagsChanged.namespace_filter(namespace))
        .await?;
    nats.flush().await?;
    Ok(tokio::spawn(async move {
        let mut seen = HashMap::new();
        while let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_secs(5), changes.next()).await
        {
            if let Ok(event) = proto::TagsChanged::decode(message.payload) {
                seen.entry(event.stream).or_insert_with(Instant::now);
            }
        }
        seen
    }))
}

/// Push → `TagsChanged` latencies of the `quiet` streams, in nanoseconds;
/// fails naming the streams that got none.
fn latencies(
    quiet: &[String],
    accepted: &HashMap<String, Instant>,
    changed: &HashMap<String, Instant>,
) -> anyhow::Result<Vec<u64>> {
    let missing: Vec<_> = quiet.iter().filter(|s| !changed.contains_key(*s)).collect();
    anyhow::ensure!(
        missing.is_empty(),
        "{} of {} streams got no TagsChanged: {missing:?}",
        missing.len(),
        quiet.len()
    );
    Ok(quiet
        .iter()
        .map(|s| changed[s].saturating_duration_since(accepted[s]).as_nanos() as u64)
        .collect())
}

#[tokio::test]
async fn a_busy_tag_keeps_a_bounded_history_and_stalls_no_other_stream() -> anyhow::Result<()> {
    const BUSY_PUSHES: usize = 625;
    const QUIET: usize = 200;
    let nats = NatsServer::start_with_max_payload(SMALL_MAX_PAYLOAD).await?;
    let (app, url) = spawn(&nats).await?;
    let client = nats.connect().await?;

    // alone: 200 streams pushed once each
    let alone: Vec<_> = (0..QUIET)
        .map(|i| push("alone", i, &format!("quiet-{i}"), "latest"))
        .collect();
    let quiet: Vec<String> = alone.iter().map(|p| p.stream.clone()).collect();
    let watching = first_changes(&client, "alone").await?;
    let accepted = send(&url, &alone).await?;
    let baseline = bench::summarize(latencies(&quiet, &accepted, &watching.await?)?);

    // beside a busy tag: the same, one quiet push after every three busy ones
    let mut busy_pushes = Vec::new();
    let mut mixed = Vec::new();
    let (mut busy, mut next_quiet) = (0, 0);
    for index in 0..BUSY_PUSHES + QUIET {
        let quiet_turn = index % 4 == 3 && next_quiet < QUIET || busy == BUSY_PUSHES;
        if quiet_turn {
            mixed.push(push("mixed", index, &quiet[next_quiet], "latest"));
            next_quiet += 1;
        } else {
            let p = push("mixed", index, "busy", "latest");
            busy_pushes.push(p.clone());
            mixed.push(p);
            busy += 1;
        }
    }
    let watching = first_changes(&client, "mixed").await?;
    let accepted = send(&url, &mixed).await?;
    let beside = latencies(&quiet, &accepted, &watching.await?)?;
    let beside = bench::summarize(beside);
    let worst = Duration::from_secs_f64(beside.max / 1e3);
    println!(
        "push → TagsChanged of {QUIET} quiet streams, alone: p50 {:.1} ms, p99 {:.1} ms; \
         beside {BUSY_PUSHES} pushes of one tag (max_payload {SMALL_MAX_PAYLOAD}): \
         p50 {:.1} ms, p99 {:.1} ms, worst {worst:?}",
        baseline.p50, baseline.p99, beside.p50, beside.p99,
    );
    assert!(
        worst < STALL_BOUND,
        "a quiet stream waited {worst:?} for its TagsChanged beside the busy one"
    );

    // the busy tag: the configured history, newest first, the last push current
    let reader = StreamReader::new(client_kv(&client).await?, client.clone());
    let last = busy_pushes.last().expect("busy pushes").digest.clone();
    wait_for(
        || async {
            reader.get("mixed", "busy").await.is_ok_and(|s| {
                s.status_tag("latest")
                    .and_then(|t| t.latest())
                    .is_some_and(|l| l.image == last)
            })
        },
        Duration::from_secs(30),
    )
    .await?;
    let stream: ImageStream = reader.get("mixed", "busy").await?;
    let history: Vec<&str> = stream
        .status_tag("latest")
        .expect("the busy tag")
        .items
        .iter()
        .map(|i| i.image.as_str())
        .collect();
    let limit = DEFAULT_HISTORY_LIMIT.get();
    let expected: Vec<&str> = busy_pushes
        .iter()
        .rev()
        .take(limit)
        .map(|p| p.digest.as_str())
        .collect();
    assert_eq!(history.len(), limit, "the default history limit");
    assert_eq!(history, expected, "the newest {limit} pushes, newest first");
    app.stop().await
}

async fn client_kv(
    client: &async_nats::Client,
) -> anyhow::Result<async_nats::jetstream::kv::Store> {
    Ok(async_nats::jetstream::new(client.clone())
        .get_key_value(subjects::BUCKET_STREAMS)
        .await?)
}

#[tokio::test]
async fn a_push_that_can_never_be_stored_is_dead_lettered_and_stalls_nothing() -> anyhow::Result<()>
{
    // a stream whose header (metadata, spec) nearly fills one 16 KiB value,
    // as an API client left it: pushes add to the header (the pusher, the
    // change), so some can never be stored
    const TAGS: usize = 20;
    let nats = NatsServer::start_with_max_payload(16 * 1024).await?;
    let (app, url) = spawn(&nats).await?;
    let client = nats.connect().await?;
    let js = async_nats::jetstream::new(client.clone());
    let mut full = ImageStream::new("dl", "full");
    full.metadata
        .annotations
        .insert("example.com/notes".into(), "n".repeat(10_700));
    StoreClient::new(client.clone())
        .create(proto::CreateRequest {
            namespace: "dl".into(),
            image_stream: Some(full.into()),
        })
        .await?;

    let pushes: Vec<_> = (0..TAGS)
        .map(|i| push("dl", i, "full", &format!("v{i}")))
        .collect();
    send(&url, &pushes).await?;
    let mut dead_letters = js.get_stream(subjects::STREAM_DEAD_LETTERS).await?;
    let subject = deadletter::subject("dl", "full");
    wait_for(
        || {
            let mut stream = dead_letters.clone();
            async move { stream.info().await.is_ok_and(|i| i.state.messages > 0) }
        },
        Duration::from_secs(30),
    )
    .await?;

    // the next push of another stream is applied at once
    let watching = first_changes(&client, "dl").await?;
    let other = [push("dl", TAGS, "other", "latest")];
    let accepted = send(&url, &other).await?;
    let changed = watching.await?;
    let waited = latencies(&["other".to_owned()], &accepted, &changed)?[0];
    assert!(
        Duration::from_nanos(waited) < Duration::from_secs(1),
        "the push after a dead letter waited {waited} ns"
    );

    // the dead letter: the event as sent, with its cause naming the limit
    let letter = dead_letters
        .get_last_raw_message_by_subject(&subject)
        .await?;
    let event = proto::ImagePushed::decode(letter.payload.clone())?;
    assert_eq!(event.stream, "full");
    let headers = letter.headers;
    let reason = headers
        .get(deadletter::REASON_HEADER)
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    assert!(
        reason.contains("over the limit of") && reason.contains("max_payload"),
        "{reason}"
    );
    assert_eq!(
        headers.get(deadletter::CONSUMER_HEADER).map(|v| v.as_str()),
        Some("stream-store")
    );

    // the stream says so, and holds every tag that fitted
    let reader = StreamReader::new(client_kv(&client).await?, client.clone());
    let full = reader.get("dl", "full").await?;
    let note = full
        .metadata
        .annotations
        .get("imagestreams.io/dead-letter")
        .cloned()
        .unwrap_or_default();
    assert!(
        note.contains(&subject) && note.contains("not recorded"),
        "{note}"
    );
    let stored = full.status.as_ref().map_or(0, |s| s.tags.len());
    let letters = dead_letters.info().await?.state.messages as usize;
    assert_eq!(stored + letters, TAGS, "every push stored or dead-lettered");
    app.stop().await
}
