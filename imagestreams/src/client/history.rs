//! `imagestreams history is STREAM[:TAG] [--since T] [--at T] [-o json|yaml]`:
//! every change of a stream's tags, newest first, with who or what caused it
//! and what it fired; with `--at`, what each tag pointed to then. The
//! gateway answers from the event log, the tags' histories and the KV
//! history (see the README's "History" for how far each reaches back).

use std::io::Write;

use chrono::Utc;
use imagestreams_proto::v1 as pb;
use imagestreams_stream_store_api::history::{ChangeView, HistoryView, timestamp};

use super::{
    ClientError, Context, humanize::parse_since, resource::RESOURCE_NAMES, tabwriter::TabWriter,
};
use crate::cli::HistoryArgs;

/// How many characters of a digest's hex a table shows.
const SHORT_DIGEST: usize = 12;

/// `sha256:0123456789ab` of a digest; other strings as they are.
fn short(digest: &str) -> &str {
    match digest.split_once(':') {
        Some((algorithm, hex)) if hex.len() > SHORT_DIGEST => {
            &digest[..algorithm.len() + 1 + SHORT_DIGEST]
        }
        _ => digest,
    }
}

fn cause(change: &ChangeView) -> String {
    match &change.cause {
        None => "(before the event log)".to_owned(),
        Some(c) if c.actor.is_empty() => c.kind.clone(),
        Some(c) => format!("{} by {}", c.kind, c.actor),
    }
}

fn fired(change: &ChangeView) -> String {
    let fired: Vec<String> = change
        .fired
        .iter()
        .map(|f| match f.delivery.as_str() {
            "" => format!("{} {}", f.kind, f.trigger),
            delivery => format!("{} {} ({delivery})", f.kind, f.trigger),
        })
        .collect();
    fired.join(", ")
}

/// Runs `history`.
pub async fn run(
    ctx: &mut Context,
    args: &HistoryArgs,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    if !RESOURCE_NAMES
        .iter()
        .any(|r| r.eq_ignore_ascii_case(&args.resource))
    {
        return Err(ClientError::usage(format!(
            "history is kept for image streams (is), not {:?}",
            args.resource
        )));
    }
    let output = args.output.as_deref().unwrap_or("");
    if !matches!(output, "" | "json" | "yaml") {
        return Err(ClientError::usage(format!(
            "-o {output:?}: json or yaml (or none for a table)"
        )));
    }
    let (name, tag) = match args.name.split_once(':') {
        Some((name, tag)) if !name.is_empty() && !tag.is_empty() => (name, tag),
        Some(_) => {
            return Err(ClientError::usage(format!(
                "{:?} is not of the form STREAM[:TAG]",
                args.name
            )));
        }
        None => (args.name.as_str(), ""),
    };
    let now = Utc::now();
    let time = |value: &Option<String>, flag: &str| {
        value
            .as_deref()
            .map(|text| parse_since(text, now, flag).map(timestamp))
            .transpose()
            .map_err(ClientError::usage)
    };
    let request = pb::HistoryRequest {
        namespace: ctx.namespace().to_owned(),
        name: name.to_owned(),
        tag: tag.to_owned(),
        since: time(&args.since, "--since")?,
        at: time(&args.at, "--at")?,
    };
    let at = request.at;
    let namespace = request.namespace.clone();
    let reply = ctx.client().await?.history(request).await?;
    let view = HistoryView::new(&namespace, name, at.as_ref(), reply);
    let text = match output {
        "json" => serde_json::to_string_pretty(&view)
            .map(|s| s + "\n")
            .map_err(|e| ClientError::BadResponse(format!("cannot write JSON: {e}")))?,
        "yaml" => serde_norway::to_string(&view)
            .map_err(|e| ClientError::BadResponse(format!("cannot write YAML: {e}")))?,
        _ => table(&view),
    };
    out.write_all(text.as_bytes()).map_err(ClientError::Output)
}

fn table(view: &HistoryView) -> String {
    let mut table = TabWriter::table();
    if let (Some(at), Some(tags)) = (&view.at, &view.tags_at) {
        if tags.is_empty() {
            return format!(
                "No tag of {}/{} pointed to an image at {at}.\n",
                view.namespace, view.name
            );
        }
        table.row(&["TAG", "IMAGE", "SINCE"]);
        for tag in tags {
            table.row(&[
                tag.tag.as_str(),
                tag.docker_image_reference.as_str(),
                tag.since.as_str(),
            ]);
        }
        return table.finish();
    }
    if view.changes.is_empty() {
        return format!("No changes of {}/{} are kept.\n", view.namespace, view.name);
    }
    table.row(&["TAG", "TIME", "FROM", "TO", "CAUSE", "FIRED"]);
    for change in &view.changes {
        let from = if change.from.is_empty() {
            "<new>"
        } else {
            short(&change.from)
        };
        table.row(&[
            change.tag.as_str(),
            change.time.as_str(),
            from,
            short(&change.to),
            cause(change).as_str(),
            fired(change).as_str(),
        ]);
    }
    table.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_shortened_for_tables() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(short(&digest), "sha256:abababababab");
        assert_eq!(short("sha256:abc"), "sha256:abc");
        assert_eq!(short(""), "");
    }
}
