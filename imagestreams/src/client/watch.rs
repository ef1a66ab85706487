//! `imagestreams watch is [NAME] [-o json] [--resource-version RV] [-A]`: one
//! line per change as it happens (TYPE, NAME, RESOURCEVERSION, TAGS), or one
//! JSON object per line. Resumes after `--resource-version`.

use std::io::Write;

use imagestreams_common::model::ImageStream;
use imagestreams_proto::v1 as pb;

use super::{
    ClientError, Context,
    connection::WatchEvent,
    output, resource,
    tags::{TAGS_COLUMN_WIDTH, tags_up_to_width},
};
use crate::cli::{WatchArgs, WatchOutput};

/// Runs `watch` until the server ends the stream.
pub async fn run(
    ctx: &mut Context,
    args: &WatchArgs,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let given: Vec<String> = args.name.iter().cloned().collect();
    let names = resource::names(&args.resource, &given)?;
    let name = match names.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        _ => return Err(ClientError::usage("watch takes at most one name")),
    };
    if !name.is_empty() && args.all_namespaces {
        return Err(ClientError::usage(
            "a resource cannot be retrieved by name across all namespaces",
        ));
    }
    let request = pb::WatchRequest {
        namespace: if args.all_namespaces {
            String::new()
        } else {
            ctx.namespace().to_owned()
        },
        name,
        resource_version: args.resource_version.clone().unwrap_or_default(),
        label_selector: args.selector.clone().unwrap_or_default(),
    };
    let mut events = ctx.client().await?.watch(request).await?;
    let json = args.output == Some(WatchOutput::Json);
    if !json {
        writeln!(out, "{}", header(args.all_namespaces))?;
        out.flush()?;
    }
    while let Some(event) = events.next().await? {
        let line = if json {
            output::watch_event_line(event.kind, &event.object)?
        } else {
            row(&event, args.all_namespaces)
        };
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    Ok(())
}

/// Column widths: a stream never waits for the next row to be aligned, so
/// each column has a fixed minimum and longer values push the rest right.
const TYPE_WIDTH: usize = 8;
const NAMESPACE_WIDTH: usize = 16;
const NAME_WIDTH: usize = 24;
const RESOURCE_VERSION_WIDTH: usize = 15;
const GAP: &str = "   ";

fn line(namespace: Option<&str>, kind: &str, name: &str, rv: &str, tags: &str) -> String {
    let mut line = format!("{kind:<TYPE_WIDTH$}{GAP}");
    if let Some(ns) = namespace {
        line.push_str(&format!("{ns:<NAMESPACE_WIDTH$}{GAP}"));
    }
    line.push_str(&format!(
        "{name:<NAME_WIDTH$}{GAP}{rv:<RESOURCE_VERSION_WIDTH$}{GAP}{tags}"
    ));
    line.trim_end().to_owned()
}

/// The header line.
pub fn header(all_namespaces: bool) -> String {
    line(
        all_namespaces.then_some("NAMESPACE"),
        "TYPE",
        "NAME",
        "RESOURCEVERSION",
        "TAGS",
    )
}

/// One event's line.
pub fn row(event: &WatchEvent, all_namespaces: bool) -> String {
    let stream: &ImageStream = &event.object;
    let tags = stream
        .status
        .as_ref()
        .map(|s| tags_up_to_width(&s.tags, TAGS_COLUMN_WIDTH))
        .unwrap_or_default();
    line(
        all_namespaces.then_some(stream.metadata.namespace.as_str()),
        event.kind,
        &stream.metadata.name,
        &stream.metadata.resource_version,
        &tags,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_line_up_with_the_header() {
        let mut is = ImageStream::new("default", "ruby");
        is.metadata.resource_version = "42".into();
        is.status_tag_mut("latest");
        let event = WatchEvent {
            kind: "MODIFIED",
            object: is,
        };
        assert_eq!(
            header(false),
            "TYPE       NAME                       RESOURCEVERSION   TAGS"
        );
        assert_eq!(
            row(&event, false),
            "MODIFIED   ruby                       42                latest"
        );
        assert_eq!(
            row(&event, true),
            "MODIFIED   default            ruby                       42                latest"
        );
    }
}
