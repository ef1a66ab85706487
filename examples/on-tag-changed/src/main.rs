//! Runs a command with a tag's new pull spec whenever imagestreams moves
//! the tag: a durable JetStream consumer of `TagsChanged` (see
//! `proto/asyncapi.yaml`). It acknowledges an event only once the command
//! succeeded, so a restart neither misses nor repeats work (a failed command
//! is retried after 5 s).
//!
//! ```text
//! on-tag-changed --nats nats://127.0.0.1:4222 --namespace ns1 [--stream app] \
//!     --tag latest --durable deploy-app -- ./deploy.sh
//! ```
//! runs `./deploy.sh <pull spec>` for each new image of `app:latest` in `ns1`
//! (of every stream's `latest` without `--stream`).
#![forbid(unsafe_code)]

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures::StreamExt as _;
use imagestreams_formats::subjects::encode_token;
use imagestreams_proto::v1::TagsChanged;
use prost::Message as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut nats, mut namespace, mut stream, mut tag, mut durable) =
        ("nats://127.0.0.1:4222".to_owned(), None, None, None, None);
    let mut command = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--nats" => nats = value()?,
            "--namespace" => namespace = Some(value()?),
            "--stream" => stream = Some(value()?),
            "--tag" => tag = Some(value()?),
            "--durable" => durable = Some(value()?),
            "--" => command.extend(args.by_ref()),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let (Some(namespace), Some(tag), Some(durable), Some(program)) =
        (namespace, tag, durable, command.first().cloned())
    else {
        anyhow::bail!(
            "usage: on-tag-changed --namespace NS [--stream NAME] --tag TAG --durable NAME -- COMMAND [ARGS]"
        );
    };

    // imagestreams.tags.changed.<namespace>.<stream or *>, each token-encoded
    let name = stream.as_deref().map_or("*".to_owned(), encode_token);
    let filter = format!(
        "imagestreams.tags.changed.{}.{name}",
        encode_token(&namespace)
    );
    let js = jetstream::new(async_nats::connect(&nats).await?);
    let consumer = js
        .get_stream("IMAGESTREAMS_TAGS")
        .await?
        .get_or_create_consumer(
            &durable,
            pull::Config {
                durable_name: Some(durable.clone()),
                filter_subject: filter,
                // on first start, changes from now on; after a restart, from where it stopped
                deliver_policy: jetstream::consumer::DeliverPolicy::New,
                ack_wait: Duration::from_secs(120),
                ..Default::default()
            },
        )
        .await?;
    eprintln!(
        "on-tag-changed: waiting for {namespace}/{}:{tag}",
        stream.as_deref().unwrap_or("*")
    );

    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| anyhow::anyhow!("{e}"))?;
        let event = TagsChanged::decode(message.payload.as_ref())?;
        let mut ok = true;
        for change in event
            .changes
            .iter()
            .filter(|c| c.tag == tag && !c.new_image.is_empty())
        {
            println!(
                "{}/{}:{} -> {}",
                event.namespace, event.stream, change.tag, change.docker_image_reference
            );
            let status = tokio::process::Command::new(&program)
                .args(&command[1..])
                .arg(&change.docker_image_reference)
                .status()
                .await?;
            ok &= status.success();
        }
        let ack = match ok {
            true => AckKind::Ack,
            false => AckKind::Nak(Some(Duration::from_secs(5))),
        };
        message
            .ack_with(ack)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}
