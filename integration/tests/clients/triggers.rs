//! Triggers and mirror rules through the real `kubectl`: our group
//! `imagestreams.io/v1` in discovery, `create -f` of Trigger documents,
//! `get triggers` with its columns, `-o yaml` without the webhook secret,
//! `kubectl explain`, a mistake named by its field with nothing created, a
//! viewer who reads but cannot create, `delete`.

use serde_json::Value;

use crate::{Up, header, row, texts};

const MIRROR: &str = "apiVersion: imagestreams.io/v1
kind: Trigger
metadata:
  name: prod-out
spec:
  type: Mirror
  from: {kind: ImageStreamTag, name: \"app:prod\"}
  mirror:
    to: registry.example.com/team/app
";

const BUILD: &str = "apiVersion: imagestreams.io/v1
kind: Trigger
metadata: {name: app-build}
spec:
  type: Build
  from: {kind: ImageStreamTag, name: \"app:latest\"}
  webhook: {url: \"https://ci.example.com/hooks/app\", secret: not-for-your-eyes}
";

#[tokio::test]
async fn kubectl_creates_lists_shows_and_deletes_triggers_and_mirror_rules() {
    let up = Up::start().await.expect("up");

    let resources = up
        .ok(&["api-resources", "--api-group=imagestreams.io"])
        .await;
    assert_eq!(
        row(&resources, "triggers"),
        ["triggers", "imagestreams.io/v1", "true", "Trigger"],
        "{resources}"
    );
    let explained = up.ok(&["explain", "triggers.spec.mirror.to"]).await;
    assert!(
        explained.contains("in any registry; without a tag, the followed tag's name"),
        "the field's documentation: {explained}"
    );

    for document in [MIRROR, BUILD] {
        let created = up.run_with_input(&["create", "-f", "-"], document).await;
        let (stdout, stderr) = texts(&created);
        assert!(created.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.starts_with("trigger.imagestreams.io/"), "{stdout}");
        assert!(stdout.trim_end().ends_with(" created"), "{stdout}");
    }

    // the destination takes the followed tag's name; the tag has no image yet
    let shown: Value =
        serde_json::from_str(&up.ok(&["get", "trigger", "prod-out", "-o", "json"]).await)
            .expect("json");
    assert_eq!(shown["kind"], "Trigger");
    assert_eq!(shown["spec"]["type"], "Mirror");
    assert_eq!(
        shown["spec"]["mirror"]["to"],
        "registry.example.com/team/app:prod"
    );
    let condition = &shown["status"]["conditions"][0];
    assert_eq!(condition["type"], "Mirrored", "{shown}");
    assert_eq!(condition["status"], "Unknown", "{shown}");
    assert_eq!(condition["reason"], "NothingMirrored", "{shown}");

    // the webhook secret went in and never comes out
    let all = up.ok(&["get", "triggers", "-o", "yaml"]).await;
    assert!(!all.contains("not-for-your-eyes"), "{all}");
    assert!(all.contains("hasSecret: true"), "{all}");

    let table = up.ok(&["get", "triggers"]).await;
    assert_eq!(
        header(&table),
        ["NAME", "TYPE", "FROM", "LAST IMAGE", "DELIVERY", "AGE"],
        "{table}"
    );
    assert_eq!(
        row(&table, "prod-out")[1..3],
        ["Mirror", "app:prod"],
        "{table}"
    );
    assert_eq!(
        row(&table, "app-build")[1..3],
        ["Build", "app:latest"],
        "{table}"
    );
    let wide = up.ok(&["get", "triggers", "-o", "wide"]).await;
    assert!(
        row(&wide, "prod-out").contains(&"registry.example.com/team/app:prod"),
        "{wide}"
    );

    // mistakes are named by their field, and nothing is created
    for (document, field) in [
        (
            "apiVersion: imagestreams.io/v1\nkind: Trigger\nmetadata: {name: bad}\nspec: {type: Mirror, from: {name: \"app:prod\"}}\n",
            "spec.mirror.to",
        ),
        (
            "apiVersion: imagestreams.io/v1\nkind: Trigger\nmetadata: {name: bad}\nspec: {type: Mirror, from: {name: \"app:prod\"}, mirror: {to: \"r.example.com/app@sha256:00\"}}\n",
            "spec.mirror.to",
        ),
        (
            "apiVersion: imagestreams.io/v1\nkind: Trigger\nmetadata: {name: bad}\nspec: {type: Build, from: {name: \"app:prod\"}, pasued: true}\n",
            "pasued",
        ),
    ] {
        let refused = up.run_with_input(&["create", "-f", "-"], document).await;
        let (_, stderr) = texts(&refused);
        assert!(!refused.status.success(), "{document}");
        assert!(stderr.contains(field), "{field}: {stderr}");
    }
    up.fails(&["get", "trigger", "bad"]).await;

    // a viewer reads triggers but creates none
    let viewer = up.service_account("viewer", "default", "view").await;
    let listed = up.ok(&["--token", &viewer, "get", "triggers"]).await;
    assert!(listed.contains("prod-out"), "{listed}");
    let mirror_two = MIRROR.replace("prod-out", "prod-two");
    let denied = up
        .run_with_input(&["--token", &viewer, "create", "-f", "-"], &mirror_two)
        .await;
    let (_, stderr) = texts(&denied);
    assert!(!denied.status.success());
    assert!(stderr.contains("Forbidden"), "{stderr}");

    let deleted = up.ok(&["delete", "trigger", "prod-out"]).await;
    assert_eq!(
        deleted.trim(),
        "trigger.imagestreams.io \"prod-out\" deleted"
    );
    let gone = up.fails(&["get", "trigger", "prod-out"]).await;
    assert!(gone.contains("NotFound"), "{gone}");
}
