//! `imagestreams import-image NAME[:TAG] [--from REF] [--all] [--confirm]
//! [--scheduled] [--insecure]`, with `oc import-image`'s semantics (the
//! tag-syncer applies them, see the gateway's `ImportImage`): it waits for
//! the outcome, prints `imagestream.image.openshift.io/NAME imported` (or
//! `imported with errors`) and the stream as `describe` shows it, then one
//! `error: tag T failed (Reason): message` line per failed tag on stderr, and
//! exits non-zero when any tag failed.

use std::io::Write;

use super::{
    ClientError, Context,
    connection::{self, MAX_RESPONSE_BYTES},
    describe,
};
use crate::cli::ImportImageArgs;
use chrono::Utc;
use imagestreams_common::{error::ApiError, model::ImageStream};
use imagestreams_proto::v1::{self as pb, image_streams_client::ImageStreamsClient};
use imagestreams_tag_syncer_api::STATUS_FAILURE;

/// How long `import-image` waits for the outcome (the server bounds an import below this).
pub const DEFAULT_IMPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The request `args` make in `namespace`.
pub fn request(
    args: &ImportImageArgs,
    namespace: &str,
) -> Result<pb::ImportImageRequest, ClientError> {
    if args.name.trim().is_empty() {
        return Err(ClientError::usage(
            "you must specify the name of an image stream",
        ));
    }
    Ok(pb::ImportImageRequest {
        namespace: namespace.to_owned(),
        name: args.name.trim().to_owned(),
        from: args.from.clone().unwrap_or_default(),
        all: args.all,
        confirm: args.confirm,
        scheduled: args.scheduled,
        insecure: args.insecure,
    })
}

/// What `import-image` prints for `response`; the failed tags, if any.
pub fn render(
    response: &pb::ImportImageResponse,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<Vec<String>, ClientError> {
    let stream = response
        .image_stream
        .clone()
        .map(ImageStream::try_from)
        .transpose()
        .map_err(|e| ClientError::BadResponse(format!("an invalid ImageStream: {e}")))?
        .ok_or_else(|| ClientError::BadResponse("an import without its stream".to_owned()))?;
    let failed: Vec<&pb::TagImportResult> = response
        .tags
        .iter()
        .filter(|t| t.status == STATUS_FAILURE)
        .collect();
    writeln!(
        out,
        "imagestream.image.openshift.io/{} imported{}",
        stream.metadata.name,
        if failed.is_empty() {
            ""
        } else {
            " with errors"
        }
    )?;
    writeln!(out)?;
    // the import's answer alone: image metadata is `describe is`'s
    let images = describe::Images::new();
    write!(out, "{}", describe::describe(&stream, &images, Utc::now()))?;
    for tag in &failed {
        writeln!(
            err,
            "error: tag {} failed ({}): {}",
            tag.tag,
            tag.reason,
            tag.message.replace('\n', " ")
        )?;
    }
    Ok(failed.iter().map(|t| t.tag.clone()).collect())
}

/// Runs `import-image`.
pub async fn run(
    ctx: &mut Context,
    args: &ImportImageArgs,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), ClientError> {
    let request = request(args, ctx.namespace())?;
    let connection = connection::session(ctx).await?;
    let mut client = ImageStreamsClient::new(connection.channel.clone())
        .max_decoding_message_size(MAX_RESPONSE_BYTES);
    let response = client
        .import_image(connection.request(request, Some(DEFAULT_IMPORT_TIMEOUT)))
        .await
        .map_err(|s| connection.status(s))?
        .into_inner();
    let failed = render(&response, out, err)?;
    if failed.is_empty() {
        return Ok(());
    }
    Err(ClientError::Api(ApiError::Internal(format!(
        "{} of {} tag(s) failed to import: {}",
        failed.len(),
        response.tags.len(),
        failed.join(", ")
    ))))
}
