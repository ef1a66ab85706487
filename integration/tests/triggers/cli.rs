//! The CLI verbs of triggers, run as the real binary against the gateway's
//! `Triggers` implementation: `set triggers`, `get triggers|builds|deployments`,
//! `describe trigger`, `delete trigger`.

use std::process::Stdio;

use imagestreams_integration::binaries;
use tokio::io::AsyncWriteExt as _;

use crate::{
    api::serve_grpc,
    kit::{Env, Receiver, WAIT, digest, expected_signature},
};

/// What one run of the binary did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn run(server: &str, args: &[&str], stdin: Option<&str>) -> anyhow::Result<Run> {
    let mut cmd = tokio::process::Command::new(binaries::imagestreams());
    cmd.args(["--server", server, "-n", "cli"])
        .args(args)
        .env_remove("IMAGESTREAMS_NAMESPACE")
        .env_remove("IMAGESTREAMS_SERVER")
        .env_remove("IMAGESTREAMS_TOKEN")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).await?;
    }
    let output = tokio::time::timeout(WAIT, child.wait_with_output()).await??;
    Ok(Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

#[tokio::test]
async fn the_cli_sets_triggers_and_gets_builds() -> anyhow::Result<()> {
    let env = Env::start(|_| {}).await?;
    let receiver = Receiver::start().await?;
    let _replica = env.replica().await?;
    let server = format!("http://{}", serve_grpc(&env).await?);
    let secret = "cli-secret-from-stdin";

    let url = receiver.url("ok", "app-build");
    let set = run(
        &server,
        &[
            "set",
            "triggers",
            "app-build",
            "--from-image",
            "app:latest",
            "--build",
            "--webhook",
            &url,
            "--secret-stdin",
        ],
        Some(&format!("{secret}\n")),
    )
    .await?;
    assert_eq!(set.code, Some(0), "{}", set.stderr);
    assert_eq!(set.stdout, "trigger.imagestreams.io/app-build created\n");
    let deploy = run(
        &server,
        &[
            "set",
            "triggers",
            "web",
            "--from-image",
            "app:prod",
            "--deploy",
            "-c",
            "web",
            "--no-fire-existing",
        ],
        None,
    )
    .await?;
    assert_eq!(deploy.code, Some(0), "{}", deploy.stderr);

    let image = digest("cli");
    env.tags_changed("cli", "app", "latest", &image, 3, None)
        .await?;
    env.wait_firings_complete("cli", "app-build", 1).await?;
    let request = receiver.requests().remove(0);
    assert_eq!(
        request.signature.as_deref(),
        Some(expected_signature(secret.as_bytes(), &request.body).as_str()),
        "signed with the secret read from stdin, without its newline"
    );

    let triggers = run(&server, &["get", "triggers"], None).await?;
    assert_eq!(triggers.code, Some(0), "{}", triggers.stderr);
    let lines: Vec<&str> = triggers.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{}", triggers.stdout);
    assert!(
        lines[1].starts_with("app-build")
            && lines[1].contains("Build")
            && lines[1].contains("Succeeded"),
        "{}",
        triggers.stdout
    );
    assert!(
        lines[2].starts_with("web") && lines[2].contains("Deploy") && lines[2].contains("app:prod"),
        "{}",
        triggers.stdout
    );

    let builds = run(&server, &["get", "builds"], None).await?;
    assert_eq!(builds.code, Some(0), "{}", builds.stderr);
    assert!(
        builds.stdout.contains(&request.delivery),
        "{}",
        builds.stdout
    );
    assert!(builds.stdout.contains("Succeeded"), "{}", builds.stdout);
    let json = run(&server, &["get", "builds", "-o", "json"], None).await?;
    let list: serde_json::Value = serde_json::from_str(&json.stdout)?;
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][0]["kind"], "Build");
    assert_eq!(list["items"][0]["image"], image.as_str());
    assert_eq!(
        list["items"][0]["metadata"]["name"],
        request.delivery.as_str()
    );
    assert_eq!(list["items"][0]["delivery"]["state"], "Succeeded");
    let deployments = run(&server, &["get", "deployments"], None).await?;
    assert_eq!(deployments.code, Some(0));
    assert_eq!(deployments.stdout, "");
    assert_eq!(deployments.stderr, "No resources found in cli namespace.\n");

    let described = run(&server, &["describe", "trigger", "app-build"], None).await?;
    assert_eq!(described.code, Some(0), "{}", described.stderr);
    for expected in [
        "Name:",
        "app-build",
        "ImageStreamTag app:latest",
        "<set>",
        &image,
        &request.delivery,
        "HTTP 200",
    ] {
        assert!(
            described.stdout.contains(expected),
            "{expected} missing from:\n{}",
            described.stdout
        );
    }
    let yaml = run(
        &server,
        &["get", "trigger", "app-build", "-o", "yaml"],
        None,
    )
    .await?;
    for output in [
        &triggers.stdout,
        &described.stdout,
        &yaml.stdout,
        &json.stdout,
    ] {
        assert!(!output.contains(secret), "the secret leaked:\n{output}");
    }
    assert!(yaml.stdout.contains("hasSecret: true"), "{}", yaml.stdout);

    let bad = run(
        &server,
        &["set", "triggers", "bad", "--from-image", "app", "--build"],
        None,
    )
    .await?;
    assert_ne!(bad.code, Some(0));
    assert_eq!(bad.stderr.lines().count(), 1, "{}", bad.stderr);
    assert!(bad.stderr.contains("spec.from"), "{}", bad.stderr);

    let deleted = run(&server, &["delete", "trigger", "app-build"], None).await?;
    assert_eq!(
        deleted.stdout,
        "trigger.imagestreams.io \"app-build\" deleted\n"
    );
    let gone = run(&server, &["get", "trigger", "app-build"], None).await?;
    assert_ne!(gone.code, Some(0));
    assert!(gone.stderr.contains("not found"), "{}", gone.stderr);
    Ok(())
}
