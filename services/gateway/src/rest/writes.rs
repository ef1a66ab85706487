//! The REST writes of image streams: create, replace (`PUT`), patch (merge,
//! strategic merge, JSON, server-side apply; see [`crate::kube::patch`]) and
//! delete, with `dryRun=All` and `fieldValidation`.

use super::*;

#[instrument(skip_all, fields(namespace = %path.namespace), err(level = "debug"))]
pub(super) async fn create(
    State(streams): State<Arc<Streams>>,
    Extension(auth): Extension<Authenticated>,
    Path(path): Path<CollectionPath>,
    ask: Ask,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RestError> {
    auth.authorize(Some(&path.namespace), Verb::Create)
        .map_err(|e| RestError::about(e, ""))?;
    let (stream, dropped) = read_stream(&headers, body, "", ask.field_validation).await?;
    let name = stream.metadata.name.clone();
    let about = |e| RestError::about(e, &name);
    let created = streams
        .deadline(streams.create(&path.namespace, stream, ask.dry_run))
        .await
        .map_err(about)?;
    written_response(created, &ask, StatusCode::CREATED, &dropped).map_err(about)
}

#[instrument(skip_all, fields(namespace = %path.namespace, name = %path.name), err(level = "debug"))]
pub(super) async fn replace(
    State(streams): State<Arc<Streams>>,
    Extension(auth): Extension<Authenticated>,
    Path(path): Path<ObjectPath>,
    ask: Ask,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RestError> {
    let about = |e| RestError::about(e, &path.name);
    auth.authorize(Some(&path.namespace), Verb::Update)
        .map_err(about)?;
    let (mut stream, dropped) =
        read_stream(&headers, body, &path.name, ask.field_validation).await?;
    if stream.metadata.name.is_empty() {
        stream.metadata.name = path.name.clone();
    }
    let updated = streams
        .deadline(streams.update(&path.namespace, Some(&path.name), stream, ask.dry_run))
        .await
        .map_err(about)?;
    written_response(updated, &ask, StatusCode::OK, &dropped).map_err(about)
}

/// `PATCH …/imagestreams/{name}`: see [`crate::kube::patch`].
#[instrument(skip_all, fields(namespace = %path.namespace, name = %path.name), err(level = "debug"))]
pub(super) async fn patch(
    State(streams): State<Arc<Streams>>,
    Extension(auth): Extension<Authenticated>,
    Path(path): Path<ObjectPath>,
    ask: Ask,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RestError> {
    let about = |e| RestError::about(e, &path.name);
    auth.authorize(Some(&path.namespace), Verb::Update)
        .map_err(about)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let kind = PatchType::of(content_type).map_err(about)?;
    let body = read_body(&headers, body).await.map_err(about)?;
    for _ in 0..PATCH_ATTEMPTS {
        let current = match streams
            .deadline(streams.get(&path.namespace, &path.name, Freshness::Latest))
            .await
        {
            Ok(current) => current,
            Err(ApiError::NotFound(_)) if kind == PatchType::Apply => {
                return apply_create(&streams, &path, &ask, &body).await;
            }
            Err(error) => return Err(about(error)),
        };
        let mut value = serde_json::to_value(&current)
            .map_err(|e| about(ApiError::Internal(format!("cannot encode the stream: {e}"))))?;
        patch::apply(kind, &mut value, &body).map_err(about)?;
        let (mut patched, dropped) = patch::decode(value, ask.field_validation)
            .map_err(|(e, causes)| about(e).with_causes(causes))?;
        keep_generations(&mut patched, &current);
        // a resourceVersion the patch sets is a precondition: no retry
        let pinned = patched.metadata.resource_version != current.metadata.resource_version;
        if spec_and_meta_equal(&patched, &current) {
            return written_response(current, &ask, StatusCode::OK, &dropped).map_err(about);
        }
        let written = streams
            .deadline(streams.update(&path.namespace, Some(&path.name), patched, ask.dry_run))
            .await;
        match written {
            Ok(updated) => {
                return written_response(updated, &ask, StatusCode::OK, &dropped).map_err(about);
            }
            Err(ApiError::Conflict(_)) if !pinned => continue,
            Err(error) => return Err(about(error)),
        }
    }
    Err(about(conflict(&path.name)))
}

/// Gives each spec tag of `patched` that has no generation and is
/// otherwise the current one its current generation: the store assigns
/// generations, a client applying its own document (without them, as
/// `kubectl apply` does, replacing the list) has not changed the tag.
fn keep_generations(patched: &mut ImageStream, current: &ImageStream) {
    for tag in patched
        .spec
        .tags
        .iter_mut()
        .filter(|t| t.generation.is_none())
    {
        let unchanged = |live: &TagReference| {
            let live = TagReference {
                generation: None,
                ..live.clone()
            };
            live == *tag
        };
        if let Some(live) = current.spec_tag(&tag.name).filter(|live| unchanged(live)) {
            tag.generation = live.generation;
        }
    }
}

/// Whether a patch changed nothing a write would store (status is the
/// system's): then nothing is written, and the resourceVersion stays.
fn spec_and_meta_equal(patched: &ImageStream, current: &ImageStream) -> bool {
    patched.spec == current.spec
        && patched.metadata.labels == current.metadata.labels
        && patched.metadata.annotations == current.metadata.annotations
        && patched.metadata.name == current.metadata.name
        && patched.metadata.namespace == current.metadata.namespace
}

/// Server-side apply of an object that does not exist: a create (201).
pub(super) async fn apply_create(
    streams: &Streams,
    path: &ObjectPath,
    ask: &Ask,
    body: &[u8],
) -> Result<Response, RestError> {
    let about = |e| RestError::about(e, &path.name);
    let document = patch::apply_document(body).map_err(about)?;
    let (mut stream, dropped) = patch::decode(document, ask.field_validation)
        .map_err(|(e, causes)| about(e).with_causes(causes))?;
    if stream.metadata.name.is_empty() {
        stream.metadata.name = path.name.clone();
    }
    if stream.metadata.name != path.name {
        return Err(about(ApiError::invalid(
            "",
            format!(
                "metadata.name: the name of the object ({}) does not match the name on the URL ({})",
                stream.metadata.name, path.name
            ),
        )));
    }
    let created = streams
        .deadline(streams.create(&path.namespace, stream, ask.dry_run))
        .await
        .map_err(about)?;
    written_response(created, ask, StatusCode::CREATED, &dropped).map_err(about)
}

#[instrument(skip_all, fields(namespace = %path.namespace, name = %path.name), err(level = "debug"))]
pub(super) async fn delete(
    State(streams): State<Arc<Streams>>,
    Extension(auth): Extension<Authenticated>,
    Path(path): Path<ObjectPath>,
    ask: Ask,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RestError> {
    auth.authorize(Some(&path.namespace), Verb::Delete)
        .map_err(|e| RestError::about(e, &path.name))?;
    let about = |e| RestError::about(e, &path.name);
    let body = read_body(&headers, body).await.map_err(about)?;
    let resource_version = delete_precondition(&body).map_err(about)?;
    let dry_run = ask.dry_run || delete_dry_run(&body);
    let deleted = match dry_run {
        true => {
            streams
                .deadline(async {
                    let current = streams
                        .get(&path.namespace, &path.name, Freshness::Latest)
                        .await?;
                    if !resource_version.is_empty()
                        && resource_version != current.metadata.resource_version
                    {
                        return Err(conflict(&path.name));
                    }
                    Ok(current)
                })
                .await
        }
        false => {
            streams
                .deadline(streams.delete(&path.namespace, &path.name, &resource_version))
                .await
        }
    }
    .map_err(about)?;
    Ok(Json(KubeStatus::success(StatusDetails {
        name: path.name.clone(),
        group: GROUP.to_owned(),
        kind: RESOURCE.to_owned(),
        uid: deleted.metadata.uid,
        causes: Vec::new(),
    }))
    .into_response())
}

/// Whether a `DeleteOptions` body asks for a dry run (`dryRun: ["All"]`).
fn delete_dry_run(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|options| options.get("dryRun").cloned())
        .is_some_and(|d| d.as_array().is_some_and(|a| a.iter().any(|v| v == "All")))
}

/// `preconditions.resourceVersion` of an optional `DeleteOptions` body.
fn delete_precondition(body: &[u8]) -> Result<String, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(String::new());
    }
    let options: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("", format!("malformed DeleteOptions: {e}")))?;
    match options.pointer("/preconditions/resourceVersion") {
        None | Some(serde_json::Value::Null) => Ok(String::new()),
        Some(serde_json::Value::String(rv)) => Ok(rv.clone()),
        Some(other) => Err(ApiError::invalid(
            "preconditions.resourceVersion",
            format!("preconditions.resourceVersion: Invalid value: {other}: must be a string"),
        )),
    }
}

/// Reads and parses an ImageStream body: YAML or JSON by `Content-Type`,
/// by its first character otherwise; unknown fields per `validation`
/// (those dropped are returned).
async fn read_stream(
    headers: &HeaderMap,
    body: Body,
    name: &str,
    validation: FieldValidation,
) -> Result<(ImageStream, Vec<String>), RestError> {
    let bytes = read_body(headers, body)
        .await
        .map_err(|e| RestError::about(e, name))?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let yaml = content_type.contains("yaml")
        || (!content_type.contains("json") && !bytes.trim_ascii_start().starts_with(b"{"));
    if validation != FieldValidation::Strict {
        // read as a plain value first, then by the model without the unknown fields
        let value = match yaml {
            true => std::str::from_utf8(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|text| serde_norway::from_str(text).map_err(|e| e.to_string())),
            false => serde_json::from_slice(&bytes).map_err(|e| e.to_string()),
        }
        .map_err(|e| {
            RestError::about(
                ApiError::invalid("", format!("malformed document: {e}")),
                name,
            )
        })?;
        return patch::decode(value, validation)
            .map_err(|(e, causes)| RestError::about(e, name).with_causes(causes));
    }
    let parsed = if content_type.contains("yaml") {
        match std::str::from_utf8(&bytes) {
            Ok(text) => ImageStream::from_yaml(text),
            Err(e) => Err(ModelError::Malformed {
                format: DocumentFormat::Yaml,
                path: String::new(),
                message: format!("not UTF-8: {e}"),
            }),
        }
    } else if content_type.contains("json") {
        ImageStream::from_json(&bytes)
    } else {
        ImageStream::parse_document(&bytes)
    };
    parsed.map(|stream| (stream, Vec::new())).map_err(|e| {
        let causes = match &e {
            ModelError::Invalid(errors) => StatusCause::from_validation(errors),
            _ => Vec::new(),
        };
        RestError::about(e.into(), name).with_causes(causes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_options_give_the_precondition() {
        assert_eq!(delete_precondition(b"").unwrap(), "");
        assert_eq!(delete_precondition(b" \n").unwrap(), "");
        assert_eq!(
            delete_precondition(
                br#"{"kind":"DeleteOptions","preconditions":{"resourceVersion":"7"}}"#
            )
            .unwrap(),
            "7"
        );
        assert_eq!(
            delete_precondition(br#"{"propagationPolicy":"Background"}"#).unwrap(),
            ""
        );
        assert_eq!(delete_precondition(b"{").unwrap_err().http_status(), 400);
        assert_eq!(
            delete_precondition(br#"{"preconditions":{"resourceVersion":7}}"#)
                .unwrap_err()
                .http_status(),
            400
        );
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_413() {
        let big = vec![b' '; MAX_DOCUMENT_BYTES + 1];
        let error = read_body(&HeaderMap::new(), Body::from(big))
            .await
            .unwrap_err();
        assert_eq!(error.http_status(), 413);
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, (MAX_DOCUMENT_BYTES + 1).into());
        let error = read_body(&headers, Body::empty()).await.unwrap_err();
        assert_eq!(error.http_status(), 413);
        assert!(error.to_string().contains("limit"), "{error}");
        let ok = read_body(&HeaderMap::new(), Body::from("{}"))
            .await
            .unwrap();
        assert_eq!(ok, b"{}");
    }

    #[tokio::test]
    async fn yaml_and_json_bodies_parse_by_content_type() {
        let yaml = "apiVersion: v1\nkind: ImageStream\nmetadata:\n  name: ruby\n";
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "application/yaml".parse().unwrap());
        let is = read_stream(&headers, Body::from(yaml), "", FieldValidation::Strict)
            .await
            .unwrap()
            .0;
        assert_eq!(is.metadata.name, "ruby");
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        let error = read_stream(&headers, Body::from(yaml), "", FieldValidation::Strict)
            .await
            .unwrap_err();
        assert_eq!(error.error.http_status(), 400);
        let error = read_stream(
            &HeaderMap::new(),
            Body::from(r#"{"kind":"ImageStream","apiVersion":"v1","metadata":{"name":"Bad"}}"#),
            "",
            FieldValidation::Strict,
        )
        .await
        .unwrap_err();
        assert_eq!(error.error.http_status(), 422);
        assert_eq!(error.details.causes[0].field, "metadata.name");
    }
}
