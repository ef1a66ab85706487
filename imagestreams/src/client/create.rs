//! `imagestreams create -f FILE|-`: reads every stream first (so a bad file
//! creates nothing), then creates them in order, printing
//! `imagestream.image.openshift.io/NAME created` for each.

use std::io::Write;

use super::{ClientError, Context, documents, output::RESOURCE};
use crate::cli::CreateArgs;

/// Runs `create`.
pub async fn run(
    ctx: &mut Context,
    args: &CreateArgs,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let mut loaded = Vec::new();
    for path in &args.filenames {
        loaded.extend(documents::load(path)?);
    }
    // Namespaces are settled before the first call, so a mismatch creates nothing.
    let mut targets = Vec::with_capacity(loaded.len());
    for item in loaded {
        let namespace = target_namespace(ctx, &item.stream.metadata.namespace)?;
        targets.push((namespace, item.stream));
    }
    let client = ctx.client().await?;
    for (namespace, stream) in targets {
        let created = client.create(&namespace, stream).await?;
        writeln!(out, "{RESOURCE}/{} created", created.metadata.name)?;
    }
    Ok(())
}

/// The document's namespace unless `-n` names another, which kubectl refuses.
fn target_namespace(ctx: &Context, document: &str) -> Result<String, ClientError> {
    if document.is_empty() {
        return Ok(ctx.namespace().to_owned());
    }
    if ctx.namespace_is_explicit() && document != ctx.namespace() {
        return Err(ClientError::usage(format!(
            "the namespace from the provided object \"{document}\" does not match the namespace \"{}\". You must pass '--namespace={document}' to perform this operation.",
            ctx.namespace()
        )));
    }
    Ok(document.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Globals;

    fn ctx(namespace: Option<&str>) -> Context {
        Context::new(Globals {
            server: "http://127.0.0.1:1".to_owned(),
            namespace: namespace.map(str::to_owned),
            token: None,
            certificate_authority: None,
        })
    }

    #[test]
    fn namespaces() {
        assert_eq!(target_namespace(&ctx(None), "").unwrap(), "default");
        assert_eq!(target_namespace(&ctx(Some("a")), "").unwrap(), "a");
        assert_eq!(target_namespace(&ctx(None), "b").unwrap(), "b");
        assert_eq!(target_namespace(&ctx(Some("b")), "b").unwrap(), "b");
        let e = target_namespace(&ctx(Some("a")), "b").unwrap_err();
        assert!(e.to_string().contains("--namespace=b"), "{e}");
    }
}
