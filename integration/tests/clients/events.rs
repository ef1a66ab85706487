//! `imagestreams events` against `up` after a real push: the events kept,
//! decoded, in publish order, filtered by subject and time.

use std::time::Duration;

use imagestreams_integration::{binaries, image::push_unique_image, wait_for_some};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt as _, BufReader, Lines},
    process::ChildStdout,
};

use crate::Up;

const APP: &str = "apiVersion: image.openshift.io/v1
kind: ImageStream
metadata:
  name: app
";

/// `imagestreams events ARGS`: exit status, stdout lines as JSON, stderr.
async fn events(up: &Up, args: &[&str]) -> (bool, Vec<Value>, String) {
    let out = tokio::process::Command::new(binaries::imagestreams())
        .arg("events")
        .args(["--nats", &up.nats_url()])
        .args(args)
        .current_dir(up.dir.path())
        .output()
        .await
        .expect("imagestreams events runs");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (
        out.status.success(),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn events_replays_what_subscribers_saw_decoded_and_filtered() {
    let up = Up::start().await.expect("up");
    let created = up.run_with_input(&["create", "-f", "-"], APP).await;
    assert!(created.status.success(), "{created:?}");
    let digest = push_unique_image(&up.registry, "default/app:latest")
        .await
        .expect("push");

    // everything kept, as JSON, once the change is there
    let all = wait_for_some(
        || async {
            let (ok, lines, _) = events(&up, &["-o", "json"]).await;
            let changed = lines.iter().any(|l| {
                l["type"] == "TagsChanged"
                    && l["event"]["changes"][0]["newImage"] == digest.as_str()
            });
            // the image's metadata record comes after the change, on its own time
            let recorded = lines.iter().any(|l| l["type"] == "ImageRecorded");
            (ok && changed && recorded).then_some(lines)
        },
        Duration::from_secs(30),
    )
    .await
    .expect("the TagsChanged and the ImageRecorded of the push");
    let pushed = all
        .iter()
        .find(|l| l["type"] == "ImagePushed")
        .expect("the ImagePushed");
    assert_eq!(pushed["subject"], "imagestreams.images.pushed.default.app");
    assert_eq!(pushed["stream"], "IMAGESTREAMS_IMAGES");
    assert_eq!(pushed["event"]["tag"], "latest");
    assert_eq!(pushed["event"]["digest"], digest.as_str());
    assert!(pushed["headers"]["Nats-Msg-Id"].is_string(), "{pushed}");
    let changed = all
        .iter()
        .position(|l| l["type"] == "TagsChanged")
        .expect("a change");
    let pushed_at = all
        .iter()
        .position(|l| l["type"] == "ImagePushed")
        .expect("a push");
    assert!(
        pushed_at < changed,
        "publish order: the push before its change"
    );
    let times: Vec<&str> = all
        .iter()
        .map(|l| l["time"].as_str().expect("a time"))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "in time order: {times:?}"
    );

    // a subject filter
    let (ok, tags, _) = events(
        &up,
        &[
            "-o",
            "json",
            "--subject-filter",
            "imagestreams.tags.changed.default.*",
        ],
    )
    .await;
    assert!(ok);
    assert!(
        !tags.is_empty() && tags.iter().all(|l| l["type"] == "TagsChanged"),
        "{tags:?}"
    );
    let (ok, none, _) = events(
        &up,
        &[
            "-o",
            "json",
            "--subject-filter",
            "imagestreams.tags.changed.other.*",
        ],
    )
    .await;
    assert!(ok && none.is_empty(), "{none:?}");

    // a start time after everything
    let later = (chrono::Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339();
    let (ok, none, _) = events(&up, &["-o", "json", "--since", &later]).await;
    assert!(ok && none.is_empty(), "{none:?}");
    let (ok, recent, _) = events(&up, &["-o", "json", "--since", "10m"]).await;
    assert!(
        ok && recent.len() == all.len(),
        "{} of {}",
        recent.len(),
        all.len()
    );

    // --follow: the changes kept, then a new one as it comes
    let mut follow = tokio::process::Command::new(binaries::imagestreams())
        .args(["events", "--nats", &up.nats_url(), "-o", "json", "--follow"])
        .args(["--subject-filter", "imagestreams.tags.changed.default.app"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("imagestreams events --follow");
    let mut lines = BufReader::new(follow.stdout.take().expect("stdout")).lines();
    for _ in 0..tags.len() {
        assert_eq!(next(&mut lines).await["type"], "TagsChanged");
    }
    let second = push_unique_image(&up.registry, "default/app:latest")
        .await
        .expect("push");
    let live = next(&mut lines).await;
    assert_eq!(
        live["event"]["changes"][0]["newImage"],
        second.as_str(),
        "{live}"
    );
    let _ = follow.kill().await;

    // mistakes are named
    let (ok, _, err) = events(&up, &["--subject-filter", "other.>"]).await;
    assert!(!ok && err.contains("matches none of our subjects"), "{err}");
    let (ok, _, err) = events(&up, &["--since", "soon"]).await;
    assert!(!ok && err.contains("--since"), "{err}");
}

/// The next line of `--follow`, as JSON, within 30 s.
async fn next(lines: &mut Lines<BufReader<ChildStdout>>) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("a line within 30 s")
        .expect("read")
        .expect("a line");
    serde_json::from_str(&line).expect("JSON")
}
