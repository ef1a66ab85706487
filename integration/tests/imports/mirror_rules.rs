//! Mirror rules end to end, on real parts: skopeo pushes to a notifying
//! docker-registry (the integrated one) move `mirrors/app:prod`; a rule made
//! with the CLI pushes each new image to an htpasswd-protected registry with
//! the namespace's secret, through a tag-syncer process killed with SIGKILL
//! halfway and started again. The destination's own notifications, in the
//! order it took the pushes, show each manifest pushed at most once and never
//! an older image after a newer one.

use std::time::Duration;

use imagestreams::cli::{
    ClientCommand, DescribeArgs, GetArgs, GetOutput, ServiceName, SetCommand, SetTriggersArgs,
};
use imagestreams_common::config::Secret;
use imagestreams_integration::{
    NotificationSink, Registry, RegistryOptions, push_unique_image, raw_digest,
    registry_proxy::{BlobFault, RegistryProxy},
    wait_for_some,
};
use serde_json::Value;

use crate::{Env, SyncerProcess, WAIT, cli, create_secret, rule};

const NAMESPACE: &str = "mirrors";
const USER: &str = "pusher";
const PASSWORD: &str = "Rule-Pa55-never-shown";
/// The bearer token the integrated registry sends and the watcher expects.
const TOKEN: &str = "mirror-rules-token";
/// Pushes to the followed tag, the first one before the rule exists.
const PUSHES: usize = 20;
/// The tag-syncer is killed after this push and started again after `RESTART_AFTER`.
const KILL_AFTER: usize = 6;
const RESTART_AFTER: usize = 12;
/// How long a push of a rule may take here (a killed tag-syncer costs this).
const PUSH_TIMEOUT_MS: u64 = 6_000;
/// How long the source's proxy holds each blob back.
const BLOB_STALL: Duration = Duration::from_millis(700);

fn set_mirror(name: &str, to: &str) -> ClientCommand {
    ClientCommand::Set(SetCommand::Triggers(SetTriggersArgs {
        name: name.to_owned(),
        from_image: "app:prod".to_owned(),
        build: false,
        deploy: false,
        mirror: Some(to.to_owned()),
        insecure: false,
        webhook: None,
        secret_stdin: false,
        container: None,
        paused: false,
        no_fire_existing: false,
    }))
}

fn describe(name: &str) -> ClientCommand {
    ClientCommand::Describe(DescribeArgs {
        resource: "trigger".to_owned(),
        names: vec![name.to_owned()],
    })
}

/// The digests of the manifests the destination took for `repository`, in order.
fn manifest_pushes(sink: &NotificationSink, repository: &str) -> Vec<String> {
    sink.events()
        .iter()
        .filter(|e| e["action"] == "push" && e["target"]["repository"] == repository)
        .filter(|e| {
            e["target"]["mediaType"]
                .as_str()
                .is_some_and(|m| m.contains("manifest") || m.contains("index"))
        })
        .filter_map(|e| e["target"]["digest"].as_str().map(str::to_owned))
        .collect()
}

/// `PUT /v2/<repository>/manifests/…` requests in the registry's access log.
fn manifest_puts(registry: &Registry, repository: &str) -> usize {
    let needle = format!("\"PUT /v2/{repository}/manifests/");
    std::fs::read_to_string(registry.log_path())
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(&needle))
        .count()
}

/// `get RESOURCE [NAME] -o json`, parsed.
async fn get_json(server: &str, resource: &str, name: Option<&str>) -> anyhow::Result<Value> {
    let (result, out, err) = cli(
        server,
        NAMESPACE,
        ClientCommand::Get(GetArgs {
            resource: resource.to_owned(),
            names: name.map(str::to_owned).into_iter().collect(),
            output: Some(GetOutput::Json),
            selector: None,
            all_namespaces: false,
        }),
    )
    .await;
    result.map_err(|e| anyhow::anyhow!("{e}: {err}"))?;
    Ok(serde_json::from_str(&out)?)
}

/// Waits until `describe trigger NAME` prints `needle`; the last output.
async fn wait_described(server: &str, name: &str, needle: &str) -> anyhow::Result<String> {
    let last = std::sync::Mutex::new(String::new());
    let found = wait_for_some(
        || async {
            let (result, out, err) = cli(server, NAMESPACE, describe(name)).await;
            *last.lock().unwrap() = format!("{out}{err}");
            (result.is_ok() && out.contains(needle)).then_some(out)
        },
        Duration::from_secs(30),
    )
    .await;
    found.map_err(|e| {
        anyhow::anyhow!(
            "{name} never showed {needle:?} ({e}):\n{}",
            last.lock().unwrap()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_rule_follows_pushes_across_a_killed_tag_syncer_never_backwards()
-> anyhow::Result<()> {
    let env = Env::start().await?;
    let sink = NotificationSink::start(None).await?;
    let destination = Registry::start(RegistryOptions {
        htpasswd: Some((USER.into(), PASSWORD.into())),
        notify_backoff: Duration::from_millis(100),
        ..RegistryOptions::notifying(sink.url(), None)
    })
    .await?;
    // a registry the namespace has no secret for
    let locked = Registry::start(RegistryOptions {
        htpasswd: Some(("someone".into(), "else".into())),
        ..RegistryOptions::default()
    })
    .await?;
    let reserved = std::net::TcpListener::bind("127.0.0.1:0")?;
    let watcher_addr = reserved.local_addr()?;
    let integrated = Registry::start(RegistryOptions {
        notify_backoff: Duration::from_millis(100),
        ..RegistryOptions::notifying(format!("http://{watcher_addr}/notifications"), Some(TOKEN))
    })
    .await?;
    drop(reserved);
    // the tag-syncer reads the source through a proxy that holds every blob
    // back a while, so a push is surely in flight when the process is killed
    let stalling = RegistryProxy::start(&integrated.url(), BlobFault::Stall(BLOB_STALL)).await?;
    let (source, dest, locked_host) = (integrated.host(), destination.host(), locked.host());
    let rules = [
        rule(&source, stalling.url().trim_start_matches("http://")),
        rule(&dest, &dest),
        rule(&locked_host, &locked_host),
    ];
    let mut syncer = SyncerProcess::start(&env, &rules).await?;
    let app = env
        .spawn(
            &[
                ServiceName::StreamStore,
                ServiceName::RegistryWatcher,
                ServiceName::Trigger,
                ServiceName::Gateway,
            ],
            &[],
            |c| {
                c.integrated_registry.host = source.clone();
                c.registry_watcher.listen = watcher_addr;
                c.registry_watcher.token = Some(Secret::new(TOKEN));
                c.trigger.mirror_timeout_ms = PUSH_TIMEOUT_MS;
                c.trigger.lease_ms = 1_000;
                c.trigger.resync_interval_ms = 1_000;
                c.trigger.webhook.initial_backoff_ms = 100;
                c.trigger.webhook.max_backoff_ms = 400;
                c.trigger.webhook.max_attempts = 4;
            },
        )
        .await?;
    let server = app.grpc_url();
    let creds = Some((USER, PASSWORD));
    let repository = "team/app";
    let target = format!("{dest}/{repository}:prod");

    // the stream is made by the first push; the rules follow its tag
    let mut pushed = vec![push_unique_image(&integrated, &format!("{NAMESPACE}/app:prod")).await?];
    create_secret(&server, NAMESPACE, "push", &dest, USER, PASSWORD).await?;
    let made = wait_for_some(
        || async {
            let (result, out, _) = cli(&server, NAMESPACE, set_mirror("prod-out", &target)).await;
            result.ok().map(|()| out)
        },
        WAIT,
    )
    .await?;
    assert_eq!(made, "trigger.imagestreams.io/prod-out created\n");
    let (result, _, err) = cli(
        &server,
        NAMESPACE,
        set_mirror("prod-locked", &format!("{locked_host}/{repository}")),
    )
    .await;
    result.map_err(|e| anyhow::anyhow!("{e}: {err}"))?;
    wait_for_some(
        || async {
            (raw_digest(&destination.image_ref(&format!("{repository}:prod")), creds)
                .await
                .ok()
                == Some(pushed[0].clone()))
            .then_some(())
        },
        WAIT,
    )
    .await?;

    // nineteen more pushes; the tag-syncer dies in the middle of a push and
    // comes back
    for n in 1..PUSHES {
        pushed.push(push_unique_image(&integrated, &format!("{NAMESPACE}/app:prod")).await?);
        if n == KILL_AFTER {
            let before = stalling.blob_gets();
            wait_for_some(
                || async { (stalling.blob_gets() > before).then_some(()) },
                WAIT,
            )
            .await?;
            syncer.kill().await?;
        }
        if n == RESTART_AFTER {
            syncer = SyncerProcess::start(&env, &rules).await?;
        }
    }
    let last = pushed.last().cloned().unwrap_or_default();
    let reached = wait_for_some(
        || async {
            let now = raw_digest(&destination.image_ref(&format!("{repository}:prod")), creds)
                .await
                .ok();
            (now.as_ref() == Some(&last)).then_some(())
        },
        Duration::from_secs(60),
    )
    .await;
    let order = manifest_pushes(&sink, repository);
    reached.map_err(|e| {
        anyhow::anyhow!("the destination never reached the last push ({e}); it took {order:?}")
    })?;

    // each image at most once, in the order of the pushes, ending at the last
    // (its notification may trail the manifest it announces)
    let order = wait_for_some(
        || async {
            let order = manifest_pushes(&sink, repository);
            (order.last() == Some(&last)).then_some(order)
        },
        WAIT,
    )
    .await?;
    let positions: Vec<usize> = order
        .iter()
        .map(|digest| {
            pushed
                .iter()
                .position(|p| p == digest)
                .unwrap_or_else(|| panic!("{digest} was never pushed to the source"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "pushed at most once each and never backwards: {positions:?}"
    );
    eprintln!(
        "mirror rule: {} of {PUSHES} images pushed, at positions {positions:?}",
        order.len()
    );
    assert_eq!(
        manifest_puts(&destination, repository),
        order.len(),
        "the access log agrees with the notifications"
    );

    // the rule says so, and so does each firing
    let rule_json = wait_for_some(
        || async {
            let rule = get_json(&server, "triggers", Some("prod-out")).await.ok()?;
            (rule["status"]["lastMirroredImage"] == last.as_str()).then_some(rule)
        },
        WAIT,
    )
    .await?;
    let condition = &rule_json["status"]["conditions"][0];
    assert_eq!(condition["type"], "Mirrored", "{rule_json}");
    assert_eq!(condition["status"], "True", "{rule_json}");
    assert_eq!(rule_json["spec"]["mirror"]["to"], target.as_str());
    let described = wait_described(&server, "prod-out", "True=Mirrored").await?;
    assert!(described.contains(&target), "{described}");
    let listed = get_json(&server, "mirrors", None).await?;
    let firings: Vec<&Value> = listed["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|f| f["trigger"] == "prod-out")
                .collect()
        })
        .unwrap_or_default();
    let states: Vec<&str> = firings
        .iter()
        .map(|f| f["delivery"]["state"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == "Succeeded").count(),
        order.len(),
        "one Succeeded firing per image pushed: {states:?}"
    );
    assert!(
        states
            .iter()
            .all(|s| ["Succeeded", "Superseded"].contains(s)),
        "{states:?}"
    );
    // the push the kill cut off ended in an error (the tag-syncer never
    // answered) and was tried again or superseded
    let cut_off: Vec<&Value> = firings
        .iter()
        .copied()
        .filter(|f| {
            f["delivery"]["lastError"]
                .as_str()
                .is_some_and(|e| !e.is_empty())
        })
        .collect();
    assert!(
        !cut_off.is_empty(),
        "no push was cut off by the kill: {listed}"
    );
    eprintln!("mirror rule: cut off by the kill: {cut_off:?}");

    // without credentials for its registry: a clear False condition, nothing tagged
    let refused = wait_described(&server, "prod-locked", "False=Failed").await?;
    assert!(refused.contains("Unauthorized"), "{refused}");
    let (user, password) = ("someone", "else");
    assert!(
        raw_digest(
            &locked.image_ref(&format!("{repository}:prod")),
            Some((user, password))
        )
        .await
        .is_err(),
        "nothing is tagged at a registry that refused the push"
    );
    assert!(
        !refused.contains(PASSWORD) && !described.contains(PASSWORD),
        "the secret never shows"
    );
    syncer.stop().await?;
    app.stop().await
}
