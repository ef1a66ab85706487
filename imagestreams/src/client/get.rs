//! `imagestreams get is [NAME...] [-o json|yaml|wide|name] [-l SELECTOR] [-A]`:
//! the `oc get is` table (NAME, IMAGE REPOSITORY, TAGS, UPDATED) or the
//! objects themselves.

use std::io::Write;

use chrono::{DateTime, Utc};
use imagestreams_common::model::ImageStream;

use super::{
    ClientError, Context,
    humanize::{ago, ago_str, parse_time},
    output::{self, ListDocument},
    resource,
    tabwriter::TabWriter,
    tags::{TAGS_COLUMN_WIDTH, sort_status_tags, tags_up_to_width},
};
use crate::cli::{GetArgs, GetOutput};

/// Runs `get`.
pub async fn run(
    ctx: &mut Context,
    args: &GetArgs,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), ClientError> {
    let names = resource::names(&args.resource, &args.names)?;
    if !names.is_empty() && args.all_namespaces {
        return Err(ClientError::usage(
            "a resource cannot be retrieved by name across all namespaces",
        ));
    }
    if !names.is_empty() && args.selector.is_some() {
        return Err(ClientError::usage(
            "name cannot be provided when a selector is specified",
        ));
    }
    let namespace = ctx.namespace().to_owned();
    let client = ctx.client().await?;

    if names.len() == 1 && matches!(args.output, Some(GetOutput::Json | GetOutput::Yaml)) {
        let stream = client.get(&namespace, &names[0]).await?;
        let text = match args.output {
            Some(GetOutput::Yaml) => output::yaml(&stream)?,
            _ => output::json(&stream)?,
        };
        out.write_all(text.as_bytes())?;
        return Ok(());
    }

    let (mut streams, resource_version) = if names.is_empty() {
        let scope = if args.all_namespaces { "" } else { &namespace };
        let listing = client
            .list_all(scope, args.selector.as_deref().unwrap_or_default())
            .await?;
        (listing.items, listing.resource_version)
    } else {
        let mut streams = Vec::with_capacity(names.len());
        for name in &names {
            streams.push(client.get(&namespace, name).await?);
        }
        (streams, String::new())
    };
    if names.is_empty() {
        streams.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
    }

    match args.output {
        Some(GetOutput::Json) => {
            let text = ListDocument::new(&streams, &resource_version).to_json_pretty()?;
            out.write_all(text.as_bytes())?;
        }
        Some(GetOutput::Yaml) => {
            let text = ListDocument::new(&streams, &resource_version).to_yaml()?;
            out.write_all(text.as_bytes())?;
        }
        _ if streams.is_empty() => {
            no_resources(err, (!args.all_namespaces).then_some(namespace.as_str()))?;
        }
        Some(GetOutput::Name) => {
            for stream in &streams {
                writeln!(out, "{}", output::name_line(stream))?;
            }
        }
        None | Some(GetOutput::Wide) => {
            let columns = Columns {
                wide: args.output == Some(GetOutput::Wide),
                namespace: args.all_namespaces,
            };
            out.write_all(table(&streams, columns, Utc::now()).as_bytes())?;
        }
    }
    Ok(())
}

/// kubectl's note for an empty table, on stderr.
fn no_resources(err: &mut impl Write, namespace: Option<&str>) -> Result<(), ClientError> {
    match namespace {
        Some(ns) => writeln!(err, "No resources found in {ns} namespace.")?,
        None => writeln!(err, "No resources found")?,
    }
    Ok(())
}

/// Which columns the table has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Columns {
    /// `-o wide`: every tag, plus CREATED, IMAGES and LOCAL LOOKUP.
    pub wide: bool,
    /// `-A`: a NAMESPACE column first.
    pub namespace: bool,
}

/// The `oc get is` table of `streams`, times relative to `now`.
pub fn table(streams: &[ImageStream], columns: Columns, now: DateTime<Utc>) -> String {
    let mut t = TabWriter::table();
    let mut header = Vec::new();
    if columns.namespace {
        header.push("NAMESPACE");
    }
    header.extend(["NAME", "IMAGE REPOSITORY", "TAGS", "UPDATED"]);
    if columns.wide {
        header.extend(["CREATED", "IMAGES", "LOCAL LOOKUP"]);
    }
    t.row(&header);
    for stream in streams {
        let status_tags = stream
            .status
            .as_ref()
            .map(|s| s.tags.as_slice())
            .unwrap_or_default();
        let mut row = Vec::new();
        if columns.namespace {
            row.push(stream.metadata.namespace.clone());
        }
        row.push(stream.metadata.name.clone());
        row.push(repository(stream).to_owned());
        row.push(if columns.wide {
            sort_status_tags(status_tags).join(",")
        } else {
            tags_up_to_width(status_tags, TAGS_COLUMN_WIDTH)
        });
        row.push(updated(stream).map(|t| ago(t, now)).unwrap_or_default());
        if columns.wide {
            row.push(
                stream
                    .metadata
                    .creation_timestamp
                    .as_deref()
                    .map(|c| ago_str(c, now))
                    .unwrap_or_default(),
            );
            row.push(unique_images(stream).to_string());
            let local = stream.spec.lookup_policy.as_ref().is_some_and(|p| p.local);
            row.push(local.to_string());
        }
        t.row(&row);
    }
    t.finish()
}

/// The repository `oc` shows: the public one, else the spec's, else the status'.
pub fn repository(stream: &ImageStream) -> &str {
    let status = stream.status.as_ref();
    let public = status
        .map(|s| s.public_docker_image_repository.as_str())
        .unwrap_or_default();
    if !public.is_empty() {
        return public;
    }
    if !stream.spec.docker_image_repository.is_empty() {
        return &stream.spec.docker_image_repository;
    }
    status
        .map(|s| s.docker_image_repository.as_str())
        .unwrap_or_default()
}

/// When the newest history item of any tag was created.
pub fn updated(stream: &ImageStream) -> Option<DateTime<Utc>> {
    stream
        .status
        .as_ref()?
        .tags
        .iter()
        .filter_map(|t| t.latest().and_then(|e| parse_time(&e.created)))
        .max()
}

/// How many distinct images the histories hold (by digest, else by pull spec).
pub fn unique_images(stream: &ImageStream) -> usize {
    let mut seen = std::collections::BTreeSet::new();
    for list in stream.status.iter().flat_map(|s| &s.tags) {
        for item in &list.items {
            let key = if item.image.is_empty() {
                &item.docker_image_reference
            } else {
                &item.image
            };
            if !key.is_empty() {
                seen.insert(key.as_str());
            }
        }
    }
    seen.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synced() -> ImageStream {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/seed/imagestream-synced.json"
        );
        ImageStream::parse_document(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn the_table_of_the_seed() {
        let now = parse_time("2015-05-05T19:14:59Z").unwrap();
        let text = table(&[synced()], Columns::default(), now);
        assert_eq!(
            text,
            "NAME   IMAGE REPOSITORY            TAGS          UPDATED\n\
             ruby   openshift/ruby-20-centos7   v0.4,latest   3 minutes ago\n"
        );
    }

    #[test]
    fn wide_and_all_namespaces() {
        let now = parse_time("2015-05-05T19:14:59Z").unwrap();
        let columns = Columns {
            wide: true,
            namespace: true,
        };
        let text = table(&[synced()], columns, now);
        let mut lines = text.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap()
            .split("   ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(
            header,
            [
                "NAMESPACE",
                "NAME",
                "IMAGE REPOSITORY",
                "TAGS",
                "UPDATED",
                "CREATED",
                "IMAGES",
                "LOCAL LOOKUP"
            ]
        );
        let row = lines.next().unwrap();
        assert!(row.starts_with("default     ruby   "), "{row}");
        assert!(
            row.contains("3 minutes ago   3 minutes ago   2        false"),
            "{row}"
        );
    }

    #[test]
    fn a_stream_without_history() {
        let mut is = ImageStream::new("default", "bare");
        is.status = Some(Default::default());
        is.status.as_mut().unwrap().docker_image_repository = "127.0.0.1:5000/default/bare".into();
        assert_eq!(repository(&is), "127.0.0.1:5000/default/bare");
        assert_eq!(updated(&is), None);
        assert_eq!(unique_images(&is), 0);
    }
}
