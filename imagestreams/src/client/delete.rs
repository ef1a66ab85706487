//! `imagestreams delete is NAME...`: deletes each stream in turn, printing
//! `imagestream.image.openshift.io "NAME" deleted` like `oc`.

use std::io::Write;

use super::{ClientError, Context, output::RESOURCE, resource};
use crate::cli::DeleteArgs;

/// Runs `delete`.
pub async fn run(
    ctx: &mut Context,
    args: &DeleteArgs,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let names = resource::names(&args.resource, &args.names)?;
    if names.is_empty() {
        return Err(ClientError::usage(
            "resource(s) were provided, but no name was specified",
        ));
    }
    let namespace = ctx.namespace().to_owned();
    let client = ctx.client().await?;
    for name in &names {
        client.delete(&namespace, name).await?;
        writeln!(out, "{RESOURCE} \"{name}\" deleted")?;
    }
    Ok(())
}
