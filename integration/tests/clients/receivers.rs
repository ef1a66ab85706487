//! Receivers through the real `kubectl` (issue 18): our own group
//! `imagestreams.io/v1` in discovery, `create -f` of a Receiver document,
//! `get receivers` with its columns, `-o yaml` without the secret, the
//! generated secret in the create answer only, a delivery to the URL the
//! status gives showing in the next `get`, a viewer refused, `delete`.

use serde_json::Value;

use crate::{Up, header, row, texts};

const HUB: &str = "apiVersion: imagestreams.io/v1
kind: Receiver
metadata:
  name: hub
spec:
  type: dockerhub
  repositories:
  - docker.io/acme/*
";

/// POSTs `delivery` to a receiver's `url`; the status answered.
async fn post(url: &str, delivery: &Value) -> u16 {
    reqwest::Client::new()
        .post(url)
        .json(delivery)
        .send()
        .await
        .expect("the hooks port answers")
        .status()
        .as_u16()
}

#[tokio::test]
async fn kubectl_creates_lists_shows_and_deletes_receivers() {
    let up = Up::start().await.expect("up");

    let resources = up
        .ok(&["api-resources", "--api-group=imagestreams.io"])
        .await;
    assert_eq!(
        row(&resources, "receivers"),
        ["receivers", "imagestreams.io/v1", "true", "Receiver"],
        "{resources}"
    );
    // both groups are still listed
    let versions = up.ok(&["api-versions"]).await;
    assert!(versions.contains("image.openshift.io/v1"), "{versions}");
    assert!(versions.contains("imagestreams.io/v1"), "{versions}");

    let created = up.run_with_input(&["create", "-f", "-"], HUB).await;
    let (stdout, stderr) = texts(&created);
    assert!(created.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "receiver.imagestreams.io/hub created");

    // a secret left out is generated and shown in the create answer only
    let ghcr = "apiVersion: imagestreams.io/v1\nkind: Receiver\nmetadata: {name: gh}\nspec: {type: ghcr}\n";
    let created = up
        .run_with_input(&["create", "-f", "-", "-o", "json"], ghcr)
        .await;
    let (stdout, stderr) = texts(&created);
    assert!(created.status.success(), "{stderr}");
    let answer: Value = serde_json::from_str(&stdout).expect("json");
    let generated = answer["status"]["generatedSecret"]
        .as_str()
        .unwrap_or_default();
    assert!(generated.len() >= 32, "{answer}");
    let shown = up.ok(&["get", "receiver", "gh", "-o", "json"]).await;
    assert!(!shown.contains(generated), "{shown}");
    assert!(!shown.contains("generatedSecret"), "{shown}");

    // a secret given is never shown either
    let harbor = "apiVersion: imagestreams.io/v1\nkind: Receiver\nmetadata: {name: harbor}\nspec: {type: harbor, secret: not-for-your-eyes}\n";
    up.run_with_input(&["create", "-f", "-"], harbor).await;
    let all = up.ok(&["get", "receivers", "-o", "yaml"]).await;
    assert!(!all.contains("not-for-your-eyes"), "{all}");
    assert!(all.contains("kind: Receiver"), "{all}");

    // a typo is named, and nothing is created
    let typo = "apiVersion: imagestreams.io/v1\nkind: Receiver\nmetadata: {name: typo}\nspec: {type: quay, pasued: true}\n";
    let refused = up.run_with_input(&["create", "-f", "-"], typo).await;
    let (_, stderr) = texts(&refused);
    assert!(!refused.status.success());
    assert!(stderr.contains("pasued"), "{stderr}");
    up.fails(&["get", "receiver", "typo"]).await;

    let table = up.ok(&["get", "receivers"]).await;
    assert_eq!(
        header(&table),
        ["NAME", "TYPE", "PATH", "LAST DELIVERY", "OUTCOME", "AGE"]
    );
    let hub = row(&table, "hub");
    assert_eq!(hub[1], "dockerhub", "{table}");
    assert!(hub[2].starts_with("/hooks/"), "{table}");

    // Docker Hub posts to the URL the status gives; the next get shows it
    let url = up
        .ok(&["get", "receiver", "hub", "-o", "jsonpath={.status.url}"])
        .await;
    assert!(url.ends_with(hub[2]), "{url} vs {table}");
    let delivery = serde_json::json!({
        "push_data": {"pushed_at": 1, "pusher": "ci", "tag": "v1"},
        "repository": {"repo_name": "acme/app", "namespace": "acme"}
    });
    assert_eq!(post(&url, &delivery).await, 202);
    let outcome = up
        .ok(&[
            "get",
            "receiver",
            "hub",
            "-o",
            "jsonpath={.status.lastOutcome}",
        ])
        .await;
    assert_eq!(outcome, "accepted");
    let table = up.ok(&["get", "receivers", "-o", "wide"]).await;
    let hub = row(&table, "hub");
    assert!(hub[3].ends_with("ago"), "{table}");
    assert_eq!(hub[4], "accepted", "{table}");
    assert!(hub.contains(&url.as_str()), "{table}");

    // every namespace's, for whoever may read them everywhere (the admin)
    let other = "apiVersion: imagestreams.io/v1\nkind: Receiver\nmetadata: {name: quay, namespace: team-b}\nspec: {type: quay}\n";
    let created = up.run_with_input(&["create", "-f", "-"], other).await;
    assert!(created.status.success(), "{:?}", texts(&created));
    let all = up.ok(&["get", "receivers", "-A"]).await;
    assert_eq!(header(&all)[..2], ["NAMESPACE", "NAME"], "{all}");
    assert_eq!(
        row(&all, "team-b")[..3],
        ["team-b", "quay", "quay"],
        "{all}"
    );
    assert_eq!(row(&all, "default")[0], "default", "{all}");
    assert_eq!(all.lines().count(), 5, "a header and four receivers: {all}");

    // a viewer may read streams, not receivers: their URLs are secrets
    let viewer = up.service_account("viewer", "default", "view").await;
    let denied = up.fails(&["--token", &viewer, "get", "receivers"]).await;
    assert!(denied.contains("Error from server (Forbidden)"), "{denied}");
    let denied = up
        .fails(&["--token", &viewer, "get", "receivers", "-A"])
        .await;
    assert!(denied.contains("Error from server (Forbidden)"), "{denied}");

    let deleted = up.ok(&["delete", "receiver", "hub"]).await;
    assert_eq!(deleted.trim(), "receiver.imagestreams.io \"hub\" deleted");
    let gone = up.fails(&["get", "receiver", "hub"]).await;
    assert!(gone.contains("NotFound"), "{gone}");
    assert_eq!(post(&url, &delivery).await, 404, "a deleted receiver's URL");
}
