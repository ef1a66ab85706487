//! `imagestreams secrets …`: the registry credentials of a namespace, over
//! the gateway's `Secrets` gRPC service. Its imports (and only its) use them,
//! matched by registry host, longest prefix first, before the global docker
//! `config.json`.
//!
//! - `secrets create-registry NAME --server HOST[/PATH] --username U --password-stdin`
//!   (the password is read from stdin, never from the command line);
//! - `secrets list`: names, servers and usernames;
//! - `secrets delete NAME`.

use std::io::{Read, Write};

use imagestreams_proto::v1::{self as pb, secrets_client::SecretsClient};

use super::{
    ClientError, Context,
    connection::{self, DEFAULT_CALL_TIMEOUT},
    tabwriter,
};
use crate::cli::{CreateRegistrySecretArgs, SecretsCommand};

/// The password on `stdin`: its first line, without the line break.
pub fn read_password(stdin: &mut impl Read) -> Result<String, ClientError> {
    let mut text = String::new();
    stdin
        .read_to_string(&mut text)
        .map_err(|source| ClientError::Read {
            path: "-".into(),
            source,
        })?;
    let password = text.lines().next().unwrap_or_default().to_owned();
    if password.is_empty() {
        return Err(ClientError::usage(
            "--password-stdin: stdin holds no password",
        ));
    }
    Ok(password)
}

/// The create request of `args` in `namespace`, with the password from `stdin`.
pub fn create_request(
    args: &CreateRegistrySecretArgs,
    namespace: &str,
    stdin: &mut impl Read,
) -> Result<pb::CreateRegistrySecretRequest, ClientError> {
    if !args.password_stdin {
        return Err(ClientError::usage(
            "the password is read from stdin only: pass --password-stdin",
        ));
    }
    Ok(pb::CreateRegistrySecretRequest {
        namespace: namespace.to_owned(),
        name: args.name.clone(),
        server: args.server.clone(),
        username: args.username.clone(),
        password: read_password(stdin)?,
    })
}

/// Runs `secrets …`.
pub async fn run(
    ctx: &mut Context,
    command: &SecretsCommand,
    stdin: &mut impl Read,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), ClientError> {
    let namespace = ctx.namespace().to_owned();
    let request = match command {
        SecretsCommand::CreateRegistry(args) => Some(create_request(args, &namespace, stdin)?),
        _ => None,
    };
    let connection = connection::session(ctx).await?;
    let mut client = SecretsClient::new(connection.channel.clone());
    match command {
        SecretsCommand::CreateRegistry(args) => {
            // can't fail: built above for this variant
            let request = request.expect("a create request");
            client
                .create_registry(connection.request(request, Some(DEFAULT_CALL_TIMEOUT)))
                .await
                .map_err(|s| connection.status(s))?;
            writeln!(out, "secret/{} created", args.name)?;
        }
        SecretsCommand::List => {
            let items = client
                .list(connection.request(
                    pb::ListSecretsRequest {
                        namespace: namespace.clone(),
                    },
                    Some(DEFAULT_CALL_TIMEOUT),
                ))
                .await
                .map_err(|s| connection.status(s))?
                .into_inner()
                .items;
            let rows: Vec<Vec<&str>> = items
                .iter()
                .map(|s| {
                    vec![
                        s.name.as_str(),
                        s.server.as_str(),
                        s.username.as_str(),
                        s.creation_timestamp.as_str(),
                    ]
                })
                .collect();
            let header = ["NAME", "SERVER", "USERNAME", "CREATED"];
            tabwriter::print_list(out, err, Some(&namespace), &header, &rows)?;
        }
        SecretsCommand::Delete { name } => {
            client
                .delete(connection.request(
                    pb::DeleteSecretRequest {
                        namespace: namespace.clone(),
                        name: name.clone(),
                    },
                    Some(DEFAULT_CALL_TIMEOUT),
                ))
                .await
                .map_err(|s| connection.status(s))?;
            writeln!(out, "secret \"{name}\" deleted")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_the_first_line_of_stdin() {
        let mut stdin = "s3cret\n".as_bytes();
        assert_eq!(read_password(&mut stdin).unwrap(), "s3cret");
        let mut empty = "".as_bytes();
        assert!(read_password(&mut empty).is_err());
    }
}
