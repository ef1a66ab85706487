//! `imagestreams history` against `up`: what `app:latest` pointed to at
//! each of several times across 50 pushes (as the registry notifies them),
//! with a tag history of 10 so that most answers come from the event log;
//! before the stream existed and after its delete; who pushed, who tagged,
//! what fired; and the REST subresource through the real `kubectl get --raw`.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt as _;
use imagestreams_common::subjects::Kind;
use imagestreams_integration::{load::Push, wait_for_some};
use imagestreams_proto::v1 as proto;
use prost::Message as _;
use serde_json::Value;

use crate::Up;

const PUSHES: usize = 50;
const APP: &str = "apiVersion: image.openshift.io/v1
kind: ImageStream
metadata:
  name: app
";
/// The tag history kept in the record: far fewer than the pushes.
const HISTORY_LIMIT: &str = "10";

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `history ARGS -o json`, parsed.
async fn history(up: &Up, args: &[&str]) -> Value {
    let mut all = vec!["history", "is"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    let out = up.cli(&all).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The images `history --at` says the tags pointed to.
async fn images_at(up: &Up, stream: &str, at: DateTime<Utc>) -> Vec<String> {
    let answer = history(up, &[stream, "--at", &rfc3339(at)]).await;
    answer["tagsAt"]
        .as_array()
        .unwrap_or_else(|| panic!("tagsAt in {answer}"))
        .iter()
        .map(|t| t["image"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn history_answers_what_a_tag_pointed_to_at_any_time_and_why() {
    let up = Up::start_with(&[("IMAGESTREAMS_STREAM_STORE__HISTORY_LIMIT", HISTORY_LIMIT)])
        .await
        .expect("up");
    let nats = async_nats::connect(up.nats_url()).await.expect("nats");
    let mut changes = nats
        .subscribe(Kind::TagsChanged.subject("default", "app"))
        .await
        .expect("subscribe");
    nats.flush().await.expect("flush");
    up.cli(&[
        "set",
        "triggers",
        "build-app",
        "--from-image",
        "app:latest",
        "--build",
    ])
    .await;
    let before = Utc::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // created by the admin: the pusher named in the envelopes may push to
    // the stream, not create it
    let created = up.run_with_input(&["create", "-f", "-"], APP).await;
    assert!(created.status.success(), "{created:?}");

    // 50 pushes, each once its change is committed; the test's own record
    // of when each image was current
    let http = reqwest::Client::new();
    let mut current_at = Vec::with_capacity(PUSHES);
    for i in 0..PUSHES {
        let push = Push::numbered("default", i, "app", "latest");
        let answer = http
            .post(&up.notifications)
            .header(
                "Content-Type",
                "application/vnd.docker.distribution.events.v1+json",
            )
            .body(push.envelope())
            .send()
            .await
            .expect("notify");
        assert!(answer.status().is_success(), "{answer:?}");
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), changes.next())
                .await
                .expect("the push's TagsChanged")
                .expect("subscribed");
            let event = proto::TagsChanged::decode(message.payload).expect("TagsChanged");
            if event.changes.iter().any(|c| c.new_image == push.digest) {
                break;
            }
        }
        current_at.push((push.digest.clone(), Utc::now()));
    }

    // what the tag pointed to: before the stream, and at times across the
    // pushes, most of them older than the 10 items the record keeps
    assert!(images_at(&up, "app:latest", before).await.is_empty());
    for i in [0, 1, 17, 38, 39, 40, 48, 49] {
        let (digest, at) = &current_at[i];
        assert_eq!(
            images_at(&up, "app:latest", *at).await,
            std::slice::from_ref(digest),
            "at the time of push {i}"
        );
    }

    // every change, newest first, each with its cause
    let all = history(&up, &["app:latest"]).await;
    let listed = all["changes"].as_array().expect("changes");
    assert_eq!(listed.len(), PUSHES, "{all}");
    let listed_images: Vec<&str> = listed.iter().map(|c| c["to"].as_str().unwrap()).collect();
    let pushed: Vec<&str> = current_at.iter().rev().map(|(d, _)| d.as_str()).collect();
    assert_eq!(listed_images, pushed);
    assert_eq!(listed[0]["from"], current_at[PUSHES - 2].0.as_str());
    assert!(
        listed[PUSHES - 1].get("from").is_none(),
        "the first made the tag"
    );
    for change in listed {
        assert_eq!(change["cause"]["kind"], "push", "{change}");
        assert_eq!(change["cause"]["actor"], "load", "the envelope's actor");
    }
    assert!(all["eventLogFrom"].is_string(), "{all}");

    // what fired: the trigger's build of the last image
    let fired = wait_for_some(
        || async {
            let all = history(&up, &["app:latest"]).await;
            let fired = all["changes"][0]["fired"].as_array().cloned()?;
            (!fired.is_empty()).then_some(fired)
        },
        Duration::from_secs(30),
    )
    .await
    .expect("the last push fired the build trigger");
    assert_eq!(fired[0]["trigger"], "build-app");
    assert_eq!(fired[0]["kind"], "Build");

    // who tagged
    up.cli(&["tag", "app:latest", "app:stable"]).await;
    let stable = history(&up, &["app:stable"]).await;
    let tagged = &stable["changes"][0];
    assert_eq!(tagged["to"], current_at[PUSHES - 1].0.as_str());
    assert_eq!(tagged["cause"]["kind"], "tag", "{stable}");
    assert!(
        !tagged["cause"]["actor"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "the admin's name: {stable}"
    );

    // the same answer over REST, through kubectl
    let (digest, at) = &current_at[20];
    let raw = up
        .ok(&[
            "get",
            "--raw",
            &format!(
                "/apis/image.openshift.io/v1/namespaces/default/imagestreams/app/history?tag=latest&at={}",
                rfc3339(*at)
            ),
        ])
        .await;
    let raw: Value = serde_json::from_str(&raw).expect("JSON");
    assert_eq!(raw["kind"], "ImageStreamHistory");
    assert_eq!(raw["tagsAt"][0]["image"], digest.as_str(), "{raw}");

    // after a delete: nothing then, what was before still answered
    up.cli(&["delete", "is", "app"]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(images_at(&up, "app:latest", Utc::now()).await.is_empty());
    let (digest, at) = &current_at[30];
    assert_eq!(
        images_at(&up, "app:latest", *at).await,
        std::slice::from_ref(digest)
    );
}
