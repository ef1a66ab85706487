//! `imagestreams mirror SOURCE DEST [--platform P] [--dry-run] [--insecure]`:
//! copies images to another registry through the tag-syncer, with the
//! namespace's registry secrets (see the gateway's `Mirror`), waits, and
//! prints one line per image:
//!
//! ```text
//! mirrored app:1 -> registry.example.com/team/app:1 sha256:…: 3 manifests, 4 blobs (4 sent, 1.2 MiB; 0 mounted; 0 already there)
//! ```
//!
//! or `…: already there` when the destination's tag already points at the
//! image (nothing is written). A failed image is an `error: SOURCE -> DEST failed (Reason): message` line
//! on stderr, and the command exits non-zero.

use std::io::Write;

use imagestreams_common::error::ApiError;
use imagestreams_images_api::human_size;
use imagestreams_proto::v1::{self as pb, image_streams_client::ImageStreamsClient};
use imagestreams_tag_syncer_api::STATUS_FAILURE;

use super::{
    ClientError, Context,
    connection::{self, MAX_RESPONSE_BYTES},
};
use crate::cli::MirrorArgs;

/// How long `mirror` waits for the outcome (the server's own wait is 10 min).
pub const DEFAULT_MIRROR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(660);

/// The request `args` make in `namespace`.
pub fn request(args: &MirrorArgs, namespace: &str) -> pb::MirrorRequest {
    pb::MirrorRequest {
        namespace: namespace.to_owned(),
        source: args.source.trim().to_owned(),
        destination: args.destination.trim().to_owned(),
        platform: args.platform.clone().unwrap_or_default(),
        dry_run: args.dry_run,
        insecure: args.insecure,
        // the gateway's own patience
        timeout_ms: 0,
    }
}

/// What `mirror` prints for `response`; how many images failed.
pub fn render(
    response: &pb::MirrorResponse,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<usize, ClientError> {
    let mut failed = 0;
    for image in &response.images {
        let from = if image.tag.is_empty() {
            image.source.clone()
        } else {
            format!("{} ({})", image.tag, image.source)
        };
        if image.status == STATUS_FAILURE {
            failed += 1;
            writeln!(
                err,
                "error: {from} -> {} failed ({}): {}",
                image.destination,
                image.reason,
                image.message.replace('\n', " ")
            )?;
            continue;
        }
        let (verb, sent) = if response.dry_run {
            ("would mirror", "to send")
        } else {
            ("mirrored", "sent")
        };
        if image.unchanged {
            writeln!(
                out,
                "{verb} {from} -> {} {}: already there",
                image.destination, image.digest
            )?;
            continue;
        }
        writeln!(
            out,
            "{verb} {from} -> {} {}: {} manifest{}, {} blob{} ({} {sent}, {}; {} mounted; {} already there)",
            image.destination,
            image.digest,
            image.manifests,
            plural(image.manifests),
            image.blobs,
            plural(image.blobs),
            image.uploaded,
            human_size(image.bytes_uploaded),
            image.mounted,
            image.present,
        )?;
    }
    Ok(failed)
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Runs `mirror`.
pub async fn run(
    ctx: &mut Context,
    args: &MirrorArgs,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), ClientError> {
    let request = request(args, ctx.namespace());
    let connection = connection::session(ctx).await?;
    let mut client = ImageStreamsClient::new(connection.channel.clone())
        .max_decoding_message_size(MAX_RESPONSE_BYTES);
    let response = client
        .mirror(connection.request(request, Some(DEFAULT_MIRROR_TIMEOUT)))
        .await
        .map_err(|s| connection.status(s))?
        .into_inner();
    let failed = render(&response, out, err)?;
    if failed == 0 {
        return Ok(());
    }
    Err(ClientError::Api(ApiError::Internal(format!(
        "{failed} of {} image(s) failed to mirror",
        response.images.len()
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_image_and_errors_apart() {
        let response = pb::MirrorResponse {
            images: vec![
                pb::MirroredImage {
                    tag: "1".into(),
                    source: "r/ns/app@sha256:aa".into(),
                    destination: "d/team/app:1".into(),
                    status: "Success".into(),
                    digest: "sha256:aa".into(),
                    manifests: 1,
                    blobs: 2,
                    uploaded: 1,
                    bytes_uploaded: 2048,
                    present: 1,
                    ..Default::default()
                },
                pb::MirroredImage {
                    source: "r/ns/app:2".into(),
                    destination: "d/team/app:2".into(),
                    status: "Failure".into(),
                    reason: "Unauthorized".into(),
                    message: "no\nway".into(),
                    ..Default::default()
                },
            ],
            dry_run: false,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(render(&response, &mut out, &mut err).unwrap(), 1);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "mirrored 1 (r/ns/app@sha256:aa) -> d/team/app:1 sha256:aa: 1 manifest, 2 blobs (1 sent, 2.0 KiB; 0 mounted; 1 already there)\n"
        );
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "error: r/ns/app:2 -> d/team/app:2 failed (Unauthorized): no way\n"
        );
    }
}
