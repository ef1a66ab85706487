//! The published event contract, `proto/asyncapi.yaml`, against the code:
//! one channel per kind the services publish (`Kind::PUBLISHED`) and none
//! other, each at the subject the code builds, in the JetStream stream the
//! code declares, with the stream's retention, age and duplicate window, a
//! `Nats-Msg-Id` header, a `send` operation, and a payload naming a message
//! of the protos. (ci/validate_deploy.py checks the document against the
//! AsyncAPI 3.0.0 JSON schema.)

use std::{collections::BTreeMap, path::Path, time::Duration};

use imagestreams_common::{
    nats::{DEFAULT_DUPLICATE_WINDOW, DEFAULT_EVENT_MAX_AGE},
    subjects::Kind,
};
use serde_json::Value;

fn repo(path: &str) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// `7d`, `10m`, `30s` as the document writes durations.
fn duration(text: &str) -> Duration {
    let (number, unit) = text.split_at(text.len() - 1);
    let n: u64 = number
        .parse()
        .unwrap_or_else(|_| panic!("a duration: {text}"));
    Duration::from_secs(match unit {
        "d" => n * 86_400,
        "h" => n * 3_600,
        "m" => n * 60,
        "s" => n,
        _ => panic!("a duration: {text}"),
    })
}

/// Follows a local `$ref` (`#/components/…`).
fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => document
            .pointer(reference.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling $ref {reference}")),
        None => value,
    }
}

#[test]
fn the_asyncapi_document_is_the_code_s_event_contract() {
    let document: Value = serde_norway::from_str(&repo("proto/asyncapi.yaml")).expect("YAML");
    assert_eq!(document["asyncapi"], "3.0.0");
    let protos: String = ["events.proto", "triggers.proto"]
        .iter()
        .map(|f| repo(&format!("proto/imagestreams/v1/{f}")))
        .collect();

    let channels = document["channels"].as_object().expect("channels");
    let by_address: BTreeMap<String, (&String, &Value)> = channels
        .iter()
        .map(|(id, c)| {
            (
                c["address"].as_str().expect("an address").to_owned(),
                (id, c),
            )
        })
        .collect();
    let published: BTreeMap<String, Kind> = Kind::PUBLISHED
        .iter()
        .map(|k| {
            (
                format!("imagestreams.{}.{{namespace}}.{{name}}", k.tokens()),
                *k,
            )
        })
        .collect();
    assert_eq!(
        by_address.keys().collect::<Vec<_>>(),
        published.keys().collect::<Vec<_>>(),
        "the document's channels are the subjects the services publish"
    );

    let operations = document["operations"].as_object().expect("operations");
    for (address, kind) in &published {
        let (id, channel) = by_address[address];
        // the code's subject is the address with its parameters, token-encoded
        assert_eq!(
            address
                .replace("{namespace}", "ns1")
                .replace("{name}", "ruby=2Ev2"),
            kind.subject("ns1", "ruby.v2")
        );
        let jetstream = &channel["x-jetstream"];
        assert_eq!(jetstream["stream"], kind.stream(), "{address}");
        assert_eq!(jetstream["retention"], "limits", "{address}");
        let max_age = jetstream["max_age"].as_str().expect("max_age");
        assert_eq!(duration(max_age), DEFAULT_EVENT_MAX_AGE, "{address}");
        let window = jetstream["duplicate_window"]
            .as_str()
            .expect("duplicate_window");
        assert_eq!(duration(window), DEFAULT_DUPLICATE_WINDOW, "{address}");
        assert!(
            jetstream["message_id"].is_string(),
            "{address}: say what the id is"
        );
        for parameter in ["namespace", "name"] {
            assert!(
                channel["parameters"][parameter].is_object(),
                "{address}: {parameter}"
            );
        }
        let sent = operations.values().any(|op| {
            op["action"] == "send" && op["channel"]["$ref"] == format!("#/channels/{id}").as_str()
        });
        assert!(sent, "{address}: a send operation");

        let messages = channel["messages"].as_object().expect("messages");
        assert_eq!(messages.len(), 1, "{address}");
        let message = resolve(&document, messages.values().next().expect("a message"));
        let headers = resolve(&document, &message["headers"]);
        assert!(
            headers["properties"]["Nats-Msg-Id"].is_object(),
            "{address}"
        );
        assert!(
            headers["required"]
                .as_array()
                .is_some_and(|r| r.iter().any(|h| h == "Nats-Msg-Id")),
            "{address}"
        );
        let payload = &message["payload"];
        assert_eq!(
            payload["schemaFormat"], "application/vnd.google.protobuf;version=3",
            "{address}"
        );
        if *kind != Kind::DeadLettered {
            let name = payload["schema"].as_str().expect("a message name");
            let short = name
                .strip_prefix("imagestreams.v1.")
                .expect("package imagestreams.v1");
            assert!(
                protos.contains(&format!("message {short} {{")),
                "{address}: no message {name} in the protos"
            );
        }
    }
}
