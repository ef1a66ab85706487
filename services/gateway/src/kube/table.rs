//! Server-side printing: `meta.k8s.io` Tables with OpenShift's columns, as
//! `oc get is`, `oc get istag` and `oc get isimage` print them (openshift-apiserver's
//! image printers), for lists, single gets and watch events.
//!
//! Each row carries its object as kubectl needs it (`includeObject`):
//! `PartialObjectMetadata` by default, so that `-A`, `--show-labels` and
//! `-L` fill their columns from `metadata`; the whole object for `Object`
//! (`--sort-by`); nothing for `None`.

use chrono::{DateTime, Utc};
use imagestreams_common::{
    error::ApiError,
    model::{ImageStream, ObjectMeta},
};
use imagestreams_images_api::view::{ImageStreamImage, ImageStreamTag};
use serde::Serialize;
use serde_json::{Value, json};

/// The width the TAGS column aims at (OpenShift's).
const TAGS_WIDTH: usize = 40;

/// What each row carries (`?includeObject=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum IncludeObject {
    /// `PartialObjectMetadata` (the default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
    /// Nothing.
    None,
}

impl IncludeObject {
    /// Parses `?includeObject=`; empty is the default.
    pub fn parse(value: &str) -> Result<Self, ApiError> {
        match value {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "Object" => Ok(IncludeObject::Object),
            "None" => Ok(IncludeObject::None),
            other => Err(ApiError::invalid(
                "includeObject",
                format!(
                    "includeObject: Unsupported value: {other:?}: supported values: \"Metadata\", \"Object\", \"None\""
                ),
            )),
        }
    }
}

/// How to print: the Table's version and the rows' objects.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Printing {
    /// `v1` or `v1beta1` of `meta.k8s.io`.
    pub version: &'static str,
    /// What each row carries.
    pub include: IncludeObject,
    /// Whether the column definitions are sent (not in a watch's later events).
    pub headers: bool,
}

/// A `meta.k8s.io` Table.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Table {
    kind: &'static str,
    api_version: String,
    metadata: Value,
    column_definitions: Vec<Value>,
    rows: Vec<Value>,
}

/// A kind the gateway prints.
pub(crate) trait Printable: Serialize {
    /// The columns: name, description, whether `-o wide` only.
    const COLUMNS: &'static [(&'static str, &'static str, bool)];
    /// The object's metadata.
    fn meta(&self) -> &ObjectMeta;
    /// Sends the object as `api_version` (that of the path asked).
    fn set_api_version(&mut self, api_version: &str);
    /// One cell per column, at `now`.
    fn cells(&self, now: DateTime<Utc>) -> Vec<Value>;
}

impl Table {
    /// A Table of `items` printed as `printing` says, with the list's
    /// `resourceVersion` and `continue` token.
    pub fn of<T: Printable>(
        items: &[T],
        printing: Printing,
        resource_version: &str,
        continue_token: &str,
    ) -> Result<Table, ApiError> {
        let now = Utc::now();
        let column_definitions = match printing.headers {
            true => T::COLUMNS
                .iter()
                .enumerate()
                .map(|(i, (name, description, wide))| {
                    json!({
                        "name": name,
                        "type": "string",
                        "format": if i == 0 { "name" } else { "" },
                        "description": description,
                        "priority": if *wide { 1 } else { 0 },
                    })
                })
                .collect(),
            false => Vec::new(),
        };
        let rows = items
            .iter()
            .map(|item| row(item, printing.include, now))
            .collect::<Result<_, _>>()?;
        let mut metadata = json!({});
        if !resource_version.is_empty() {
            metadata["resourceVersion"] = json!(resource_version);
        }
        if !continue_token.is_empty() {
            metadata["continue"] = json!(continue_token);
        }
        Ok(Table {
            kind: "Table",
            api_version: format!("meta.k8s.io/{}", printing.version),
            metadata,
            column_definitions,
            rows,
        })
    }
}

fn row<T: Printable>(
    item: &T,
    include: IncludeObject,
    now: DateTime<Utc>,
) -> Result<Value, ApiError> {
    let cells = item.cells(now);
    let object = match include {
        IncludeObject::None => return Ok(json!({ "cells": cells })),
        IncludeObject::Object => serde_json::to_value(item),
        IncludeObject::Metadata => serde_json::to_value(item.meta()).map(|metadata| {
            json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": metadata,
            })
        }),
    }
    .map_err(|e| ApiError::Internal(format!("cannot encode a table row: {e}")))?;
    Ok(json!({ "cells": cells, "object": object }))
}

impl Printable for ImageStream {
    const COLUMNS: &'static [(&'static str, &'static str, bool)] = &[
        ("Name", "Name must be unique within a namespace.", false),
        (
            "Image Repository",
            "dockerImageRepository represents the effective location this stream may be accessed at.",
            false,
        ),
        ("Tags", "Human readable list of tags.", false),
        ("Updated", "Last update time.", false),
    ];

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn set_api_version(&mut self, api_version: &str) {
        self.api_version = api_version.to_owned();
    }

    fn cells(&self, now: DateTime<Utc>) -> Vec<Value> {
        let status = self.status.clone().unwrap_or_default();
        let mut repository = self.spec.docker_image_repository.as_str();
        if repository.is_empty() {
            repository = &status.docker_image_repository;
        }
        if !status.public_docker_image_repository.is_empty() {
            repository = &status.public_docker_image_repository;
        }
        // newest first, ties by name (OpenShift's SortStatusTags)
        let mut tags: Vec<(Option<DateTime<Utc>>, &str)> = status
            .tags
            .iter()
            .map(|t| {
                (
                    t.latest().and_then(|e| parse_time(&e.created)),
                    t.tag.as_str(),
                )
            })
            .collect();
        tags.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let updated = tags
            .iter()
            .filter_map(|(time, _)| *time)
            .max()
            .map(|time| format!("{} ago", human_duration(now - time)))
            .unwrap_or_default();
        let names: Vec<&str> = tags.iter().map(|(_, name)| *name).collect();
        vec![
            json!(self.metadata.name),
            json!(repository),
            json!(tags_up_to_width(&names, TAGS_WIDTH)),
            json!(updated),
        ]
    }
}

impl Printable for ImageStreamTag {
    const COLUMNS: &'static [(&'static str, &'static str, bool)] = &[
        ("Name", "Name must be unique within a namespace.", false),
        (
            "Image Reference",
            "The pull spec of the tag's current image.",
            false,
        ),
        ("Updated", "When the tag last moved.", false),
        ("Image Name", "The image's name: its manifest digest.", true),
    ];

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn set_api_version(&mut self, api_version: &str) {
        self.api_version = api_version.to_owned();
    }

    fn cells(&self, now: DateTime<Utc>) -> Vec<Value> {
        vec![
            json!(self.metadata.name),
            json!(self.image.docker_image_reference),
            json!(ago(self.metadata.creation_timestamp.as_deref(), now)),
            json!(self.image.metadata.name),
        ]
    }
}

impl Printable for ImageStreamImage {
    const COLUMNS: &'static [(&'static str, &'static str, bool)] = &[
        ("Name", "Name must be unique within a namespace.", false),
        ("Updated", "When the image was recorded.", false),
        ("Image Reference", "The image's pull spec.", true),
        ("Image Name", "The image's name: its manifest digest.", true),
    ];

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn set_api_version(&mut self, api_version: &str) {
        self.api_version = api_version.to_owned();
    }

    fn cells(&self, now: DateTime<Utc>) -> Vec<Value> {
        vec![
            json!(self.metadata.name),
            json!(ago(self.image.metadata.creation_timestamp.as_deref(), now)),
            json!(self.image.docker_image_reference),
            json!(self.image.metadata.name),
        ]
    }
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub(crate) fn ago(time: Option<&str>, now: DateTime<Utc>) -> String {
    time.and_then(parse_time)
        .map(|time| format!("{} ago", human_duration(now - time)))
        .unwrap_or_default()
}

/// kubectl's AGE of an object created at `time`: apimachinery's
/// `duration.HumanDuration` (`45s`, `5m30s`, `120m`, `3h20m`, `2d4h`, `30d`).
pub(crate) fn age(time: Option<&str>, now: DateTime<Utc>) -> String {
    let Some(time) = time.and_then(parse_time) else {
        return "<unknown>".to_owned();
    };
    let seconds = (now - time).num_seconds();
    let (minutes, hours) = (seconds / 60, seconds / 3600);
    let days = hours / 24;
    let with = |big: i64, unit: &str, small: i64, small_unit: &str| match small {
        0 => format!("{big}{unit}"),
        _ => format!("{big}{unit}{small}{small_unit}"),
    };
    match () {
        _ if seconds < -1 => "<invalid>".to_owned(),
        _ if seconds < 0 => "0s".to_owned(),
        _ if seconds < 120 => format!("{seconds}s"),
        _ if minutes < 10 => with(minutes, "m", seconds % 60, "s"),
        _ if minutes < 180 => format!("{minutes}m"),
        _ if hours < 8 => with(hours, "h", minutes % 60, "m"),
        _ if hours < 48 => format!("{hours}h"),
        _ if hours < 24 * 8 => with(days, "d", hours % 24, "h"),
        _ if hours < 24 * 365 * 2 => format!("{days}d"),
        _ if hours < 24 * 365 * 8 => with(days / 365, "y", days % 365, "d"),
        _ => format!("{}y", days / 365),
    }
}

/// docker/go-units' `HumanDuration`, which `oc` prints.
pub(crate) fn human_duration(duration: chrono::TimeDelta) -> String {
    let seconds = duration.num_seconds();
    let minutes = duration.num_minutes();
    // rounded, as go-units does
    let hours = (duration.num_seconds() as f64 / 3600.0 + 0.5) as i64;
    match () {
        _ if seconds < 1 => "Less than a second".to_owned(),
        _ if seconds == 1 => "1 second".to_owned(),
        _ if seconds < 60 => format!("{seconds} seconds"),
        _ if minutes == 1 => "About a minute".to_owned(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".to_owned(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", duration.num_hours() / 24 / 365),
    }
}

/// Tag names joined by `,` up to about `width` characters (a last one may
/// overshoot by a quarter), at least one, the rest counted as `+ N more...`.
fn tags_up_to_width(names: &[&str], width: usize) -> String {
    let mut shown = String::new();
    let mut count = 0;
    for (i, name) in names.iter().enumerate() {
        let grown = shown.len() + usize::from(i > 0) + name.len();
        let last = i + 1 == names.len();
        let fits = grown <= width || (last && grown <= width + width / 4);
        if count > 0 && !fits {
            break;
        }
        if i > 0 {
            shown.push(',');
        }
        shown.push_str(name);
        count += 1;
    }
    match names.len() - count {
        0 => shown,
        more => format!("{shown} + {more} more..."),
    }
}

#[cfg(test)]
mod tests {
    use imagestreams_common::model::{ImageStreamStatus, NamedTagEventList, TagEvent};

    use super::*;

    fn stream_with(tags: &[(&str, &str)]) -> ImageStream {
        let mut stream = ImageStream::new("ns1", "ruby");
        stream.metadata.labels.insert("app".into(), "ruby".into());
        stream.status = Some(ImageStreamStatus {
            docker_image_repository: "registry:5000/ns1/ruby".into(),
            tags: tags
                .iter()
                .map(|(tag, created)| NamedTagEventList {
                    tag: (*tag).into(),
                    items: vec![TagEvent {
                        created: (*created).into(),
                        image: "sha256:1".into(),
                        ..TagEvent::default()
                    }],
                    ..NamedTagEventList::default()
                })
                .collect(),
            ..ImageStreamStatus::default()
        });
        stream
    }

    #[test]
    fn streams_print_with_openshift_columns() {
        let now = parse_time("2026-01-03T00:00:00Z").unwrap();
        let stream = stream_with(&[
            ("2.0", "2026-01-01T00:00:00Z"),
            ("latest", "2026-01-02T23:00:00Z"),
            ("1.9", "2026-01-01T00:00:00Z"),
        ]);
        let cells = stream.cells(now);
        assert_eq!(
            cells,
            [
                json!("ruby"),
                json!("registry:5000/ns1/ruby"),
                json!("latest,1.9,2.0"),
                json!("About an hour ago")
            ]
        );
        let printing = Printing {
            version: "v1",
            include: IncludeObject::Metadata,
            headers: true,
        };
        let table = serde_json::to_value(Table::of(&[stream], printing, "7", "").unwrap()).unwrap();
        assert_eq!(table["kind"], "Table");
        assert_eq!(table["metadata"]["resourceVersion"], "7");
        let names: Vec<&str> = table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Name", "Image Repository", "Tags", "Updated"]);
        let object = &table["rows"][0]["object"];
        assert_eq!(object["kind"], "PartialObjectMetadata");
        assert_eq!(object["metadata"]["namespace"], "ns1");
        assert_eq!(object["metadata"]["labels"]["app"], "ruby");
    }

    #[test]
    fn a_stream_without_history_has_no_update_time() {
        let cells = ImageStream::new("ns1", "empty").cells(Utc::now());
        assert_eq!(cells[2], json!(""));
        assert_eq!(cells[3], json!(""));
    }

    #[test]
    fn long_tag_lists_are_cut_with_a_count() {
        let names = [
            "latest", "3.3", "3.2", "3.1", "3.0", "2.7", "2.6", "2.5", "2.4", "2.3", "2.2", "2.1",
        ];
        let shown = tags_up_to_width(&names, TAGS_WIDTH);
        assert_eq!(shown, "latest,3.3,3.2,3.1,3.0,2.7,2.6,2.5,2.4 + 3 more...");
        assert_eq!(
            tags_up_to_width(&["a-very-long-tag-name-longer-than-forty-chars"], 40),
            "a-very-long-tag-name-longer-than-forty-chars"
        );
        assert_eq!(tags_up_to_width(&[], 40), "");
    }

    #[test]
    fn ages_read_as_kubectl_prints_them() {
        let now = parse_time("2026-12-07T12:00:00Z").unwrap();
        let age_at = |seconds: i64| {
            let created = (now - chrono::TimeDelta::seconds(seconds)).to_rfc3339();
            age(Some(&created), now)
        };
        assert_eq!(age_at(45), "45s");
        assert_eq!(age_at(330), "5m30s");
        assert_eq!(age_at(600), "10m");
        assert_eq!(age_at(7200), "120m");
        assert_eq!(age_at(3 * 3600 + 1200), "3h20m");
        assert_eq!(age_at(52 * 3600), "2d4h");
        assert_eq!(age_at(30 * 86400), "30d");
        assert_eq!(age(None, now), "<unknown>");
    }

    #[test]
    fn durations_read_as_go_units_prints_them() {
        let d = chrono::TimeDelta::seconds;
        assert_eq!(human_duration(d(0)), "Less than a second");
        assert_eq!(human_duration(d(1)), "1 second");
        assert_eq!(human_duration(d(59)), "59 seconds");
        assert_eq!(human_duration(d(60)), "About a minute");
        assert_eq!(human_duration(d(150)), "2 minutes");
        assert_eq!(human_duration(d(3600)), "About an hour");
        assert_eq!(human_duration(d(5 * 3600)), "5 hours");
        assert_eq!(human_duration(d(3 * 86400)), "3 days");
        assert_eq!(human_duration(d(20 * 86400)), "2 weeks");
        assert_eq!(human_duration(d(90 * 86400)), "3 months");
        assert_eq!(human_duration(d(800 * 86400)), "2 years");
    }
}
