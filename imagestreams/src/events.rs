//! `imagestreams events`: our events as they are kept in JetStream, decoded,
//! as a subscriber receives them — the tool for "what did my subscriber
//! miss?". It reads NATS directly (`--nats`, else `nats.url` of the
//! configuration) with ordered consumers, which leave nothing behind.
//!
//! - `--subject-filter` (default `imagestreams.>`) picks the subjects, with
//!   NATS wildcards, e.g. `imagestreams.tags.changed.ns1.*`; only the
//!   streams holding matching subjects are read.
//! - `--since` (a duration such as `90m`, or an RFC 3339 time) starts there;
//!   everything kept (7 days) otherwise.
//! - The events kept are printed in publish order across streams; with
//!   `--follow`, new ones after them as they come.
//! - `-o json`: one object per line (`time`, `stream`, `sequence`,
//!   `subject`, `type`, `headers`, `event` in protobuf's JSON mapping);
//!   text: time, subject, type and the event on one line.

use std::{collections::BTreeMap, io::Write};

use anyhow::{Context as _, bail};

use crate::client::humanize::parse_since;
use async_nats::jetstream;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt as _;
use imagestreams_common::{
    config::Config,
    nats,
    subjects::{self, Kind},
};
use prost_reflect::{DescriptorPool, DynamicMessage};
use serde_json::{Value, json};

/// The dead letters' header naming where the event came from.
const ORIGINAL_SUBJECT: &str = "Imagestreams-Original-Subject";

/// `imagestreams events` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct EventsArgs {
    /// The NATS server (default: `nats.url` of the configuration).
    #[arg(long)]
    pub nats: Option<String>,
    /// Only subjects matching this NATS filter.
    #[arg(long, default_value = "imagestreams.>")]
    pub subject_filter: String,
    /// Start at this age (`30s`, `90m`, `12h`, `2d`) or RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// After the events kept, print new ones as they come.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// `text` or `json` (one object per line).
    #[arg(long, short = 'o', default_value = "text")]
    pub output: String,
}

/// Whether two NATS subject filters can match a common subject.
fn overlap(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (a.split('.'), b.split('.'));
    loop {
        match (a.next(), b.next()) {
            (Some(">"), Some(_)) | (Some(_), Some(">")) | (None, None) => return true,
            (Some(x), Some(y)) if x == y || x == "*" || y == "*" => {}
            _ => return false,
        }
    }
}

/// The protobuf message of a subject's events.
fn message_type(subject: &str) -> Option<&'static str> {
    let kind = Kind::PUBLISHED
        .into_iter()
        .find(|k| overlap(&k.all_filter(), subject))?;
    Some(match kind {
        Kind::ImagesPushed => "imagestreams.v1.ImagePushed",
        Kind::ImagesDeleted => "imagestreams.v1.ImageDeleted",
        Kind::ImagesRecorded => "imagestreams.v1.ImageRecorded",
        Kind::TagsChanged => "imagestreams.v1.TagsChanged",
        Kind::ImportsRequested => "imagestreams.v1.ImportRequested",
        Kind::BuildsRequested => "imagestreams.v1.BuildRequested",
        Kind::DeploymentsRequested => "imagestreams.v1.DeploymentRequested",
        Kind::DeadLettered | Kind::ImportsCompleted => return None,
    })
}

/// One event as printed.
struct Event {
    time: DateTime<Utc>,
    record: Value,
}

fn decode(pool: &DescriptorPool, stream: &str, message: &jetstream::Message) -> Event {
    let info = message.info().ok();
    let time = info
        .as_ref()
        .and_then(|i| {
            DateTime::from_timestamp(i.published.unix_timestamp(), i.published.nanosecond())
        })
        .unwrap_or_else(Utc::now);
    let headers: BTreeMap<String, String> = message
        .headers
        .iter()
        .flat_map(|h| h.iter())
        .map(|(k, v)| {
            (
                k.to_string(),
                v.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(","),
            )
        })
        .collect();
    // a dead letter holds the event of its original subject
    let of = headers
        .get(ORIGINAL_SUBJECT)
        .map_or(message.subject.as_str(), String::as_str);
    let (kind, event) = match message_type(of).and_then(|name| pool.get_message_by_name(name)) {
        Some(descriptor) => {
            match DynamicMessage::decode(descriptor.clone(), message.payload.as_ref()) {
                Ok(decoded) => (
                    descriptor.name().to_owned(),
                    serde_json::to_value(&decoded).unwrap_or(Value::Null),
                ),
                Err(error) => (
                    "undecodable".to_owned(),
                    json!({ "error": error.to_string() }),
                ),
            }
        }
        None => (
            "unknown".to_owned(),
            json!({ "bytes": message.payload.len() }),
        ),
    };
    Event {
        time,
        record: json!({
            "time": time.to_rfc3339_opts(SecondsFormat::Millis, true),
            "stream": stream,
            "sequence": info.map(|i| i.stream_sequence),
            "subject": message.subject.as_str(),
            "type": kind,
            "headers": headers,
            "event": event,
        }),
    }
}

fn print(out: &mut impl Write, output: &str, event: &Event) -> std::io::Result<()> {
    let r = &event.record;
    match output {
        "json" => writeln!(out, "{r}"),
        _ => writeln!(
            out,
            "{}  {}  {}  {}",
            r["time"].as_str().unwrap_or_default(),
            r["subject"].as_str().unwrap_or_default(),
            r["type"].as_str().unwrap_or_default(),
            r["event"]
        ),
    }
}

/// Runs `imagestreams events`.
pub async fn run(config: Option<&std::path::Path>, args: &EventsArgs) -> anyhow::Result<()> {
    if !matches!(args.output.as_str(), "text" | "json") {
        bail!("-o {:?}: text or json", args.output);
    }
    if !overlap(&args.subject_filter, &format!("{}.>", subjects::ROOT)) {
        bail!(
            "--subject-filter {:?} matches none of our subjects (imagestreams.>)",
            args.subject_filter
        );
    }
    let start = args
        .since
        .as_deref()
        .map(|s| parse_since(s, Utc::now(), "--since"))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let url = match &args.nats {
        Some(url) => url.clone(),
        None => Config::load(config)?.nats.url,
    };
    let client = async_nats::connect(&url)
        .await
        .with_context(|| format!("cannot reach NATS at {url}"))?;
    let js = jetstream::new(client);
    let pool = DescriptorPool::decode(imagestreams_proto::FILE_DESCRIPTOR_SET)?;
    let streams: Vec<&str> = subjects::STREAMS
        .iter()
        .copied()
        .filter(|s| {
            subjects::stream_subjects(s)
                .iter()
                .any(|f| overlap(f, &args.subject_filter))
        })
        .collect();

    let mut kept = Vec::new();
    let mut live = Vec::new();
    for name in streams {
        let (messages, rest) = nats::replay(&js, name, &args.subject_filter, start, None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        kept.extend(messages.iter().map(|m| decode(&pool, name, m)));
        live.push(rest.map(move |m| (name, m)));
    }
    kept.sort_by_key(|e| e.time);
    let mut out = std::io::stdout().lock();
    for event in &kept {
        print(&mut out, &args.output, event)?;
    }
    out.flush()?;
    drop(out);
    if args.follow {
        let mut live = futures::stream::select_all(live);
        while let Some((name, message)) = live.next().await {
            let message = message.map_err(|e| anyhow::anyhow!("reading {name}: {e}"))?;
            let mut out = std::io::stdout().lock();
            print(&mut out, &args.output, &decode(&pool, name, &message))?;
            out.flush()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_overlap_as_nats_matches_them() {
        assert!(overlap("imagestreams.>", "imagestreams.tags.changed.*.*"));
        assert!(overlap(
            "imagestreams.tags.changed.ns1.*",
            "imagestreams.tags.>"
        ));
        assert!(!overlap(
            "imagestreams.tags.changed.ns1.*",
            "imagestreams.images.>"
        ));
        assert!(!overlap(
            "imagestreams.tags.changed.ns1",
            "imagestreams.tags.changed.*.*"
        ));
        assert!(!overlap("other.>", "imagestreams.>"));
        assert_eq!(
            message_type("imagestreams.tags.changed.ns1.app"),
            Some("imagestreams.v1.TagsChanged")
        );
        assert_eq!(
            message_type("imagestreams.deadletters.events.ns1.app"),
            None
        );
    }
}
