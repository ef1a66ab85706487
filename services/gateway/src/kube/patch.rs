//! PATCH as kubectl sends it, and reading written objects with
//! `fieldValidation`.
//!
//! | Content-Type | kubectl | what it does here |
//! |---|---|---|
//! | `application/merge-patch+json` | `label`, `annotate`, `apply`, `patch --type=merge` | RFC 7386: objects merge, `null` deletes, lists are replaced |
//! | `application/strategic-merge-patch+json` | `patch` (its default) | a merge patch whose `spec.tags` merge by `name` and `status.tags` by `tag` (OpenShift's `patchMergeKey`s), with `$patch: delete`/`replace` |
//! | `application/json-patch+json` | `patch --type=json` | RFC 6902 |
//! | `application/apply-patch+yaml` | `apply --server-side` | creates the object when missing, else merges the applied document into it (no field ownership: fields dropped from the document are kept) |
//!
//! A patch is applied to the stored object's JSON, read back strictly by
//! the model (or per `fieldValidation`) and written with compare-and-swap on
//! the resourceVersion it was read at: a concurrent write is retried, unless
//! the patch itself names a resourceVersion (then 409, as Kubernetes does).

use serde_json::{Map, Value};

use imagestreams_common::{
    error::{ApiError, StatusCause},
    model::{ImageStream, ModelError},
};

use super::FieldValidation;

/// The kinds of patch served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchType {
    /// RFC 7386.
    Merge,
    /// Kubernetes' strategic merge patch.
    Strategic,
    /// RFC 6902.
    Json,
    /// Server-side apply.
    Apply,
}

impl PatchType {
    /// The patch type of a `Content-Type`, or 415.
    pub fn of(content_type: &str) -> Result<PatchType, ApiError> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchType::Apply),
            other => Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format ({other:?}); accepted media types \
                 include: application/json-patch+json, application/merge-patch+json, \
                 application/apply-patch+yaml, application/strategic-merge-patch+json"
            ))),
        }
    }
}

/// Applies `patch` (the request body) of `kind` to `target`.
pub(crate) fn apply(kind: PatchType, target: &mut Value, patch: &[u8]) -> Result<(), ApiError> {
    match kind {
        PatchType::Json => {
            let patch: json_patch::Patch = serde_json::from_slice(patch)
                .map_err(|e| ApiError::invalid("", format!("malformed JSON patch: {e}")))?;
            json_patch::patch(target, &patch)
                .map_err(|e| ApiError::invalid("", format!("the JSON patch does not apply: {e}")))
        }
        PatchType::Merge => {
            merge(target, &document(patch, "merge patch")?);
            Ok(())
        }
        PatchType::Apply => {
            merge(target, &apply_document(patch)?);
            Ok(())
        }
        PatchType::Strategic => {
            strategic(target, &document(patch, "strategic merge patch")?, "");
            Ok(())
        }
    }
}

/// A server-side apply body: YAML (JSON is YAML too), an object.
pub(crate) fn apply_document(body: &[u8]) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::invalid("", format!("the applied document is not UTF-8: {e}")))?;
    let value: Value = serde_norway::from_str(text)
        .map_err(|e| ApiError::invalid("", format!("malformed applied document: {e}")))?;
    match value {
        Value::Object(_) => Ok(value),
        _ => Err(ApiError::invalid(
            "",
            "the applied document must be an object",
        )),
    }
}

fn document(body: &[u8], what: &str) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("", format!("malformed {what}: {e}")))?;
    match value {
        Value::Object(_) => Ok(value),
        _ => Err(ApiError::invalid(
            "",
            format!("a {what} must be a JSON object"),
        )),
    }
}

/// RFC 7386 JSON merge patch.
pub(crate) fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        return;
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// The merge key of the list at `path`, as openshift/api declares them.
fn merge_key(path: &str) -> Option<&'static str> {
    match path {
        "spec.tags" => Some("name"),
        "status.tags" => Some("tag"),
        _ => None,
    }
}

/// A strategic merge patch: a merge patch whose keyed lists merge by key.
fn strategic(target: &mut Value, patch: &Value, path: &str) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = patch.clone();
        replaced.remove("$patch");
        *target = Value::Object(replaced);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        return;
    };
    for (key, value) in patch {
        // directives kubectl may send: element order, retained keys
        if key.starts_with('$') {
            continue;
        }
        let child = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match (value, merge_key(&child)) {
            (Value::Null, _) => {
                target.remove(key);
            }
            (Value::Array(items), Some(merge_key)) => {
                let list = target
                    .entry(key.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                merge_list(list, items, merge_key, &child);
            }
            (value, _) => strategic(
                target.entry(key.clone()).or_insert(Value::Null),
                value,
                &child,
            ),
        }
    }
}

/// Merges `items` into the keyed list `list`: an item with `$patch: delete`
/// removes its key's element, another merges into it or is appended.
fn merge_list(list: &mut Value, items: &[Value], key: &str, path: &str) {
    if !list.is_array() {
        *list = Value::Array(Vec::new());
    }
    let Value::Array(list) = list else {
        return;
    };
    for item in items {
        let Some(id) = item.get(key).cloned() else {
            continue;
        };
        let at = list.iter().position(|e| e.get(key) == Some(&id));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (at, delete) {
            (Some(at), true) => {
                list.remove(at);
            }
            (None, true) => {}
            (Some(at), false) => strategic(&mut list[at], item, path),
            (None, false) => {
                let mut added = Value::Null;
                strategic(&mut added, item, path);
                list.push(added);
            }
        }
    }
}

/// Reads `value` as an ImageStream: strictly, or dropping unknown fields
/// per `validation` (returned, to be sent as warnings).
pub(crate) fn decode(
    value: Value,
    validation: FieldValidation,
) -> Result<(ImageStream, Vec<String>), (ApiError, Vec<StatusCause>)> {
    decode_with(value, validation, ImageStream::from_json)
}

/// Reads `value` as a `T` of another kind served (its type decides which
/// fields are unknown), as [`decode`] reads an ImageStream.
pub(crate) fn decode_as<T: serde::de::DeserializeOwned>(
    value: Value,
    validation: FieldValidation,
) -> Result<(T, Vec<String>), (ApiError, Vec<StatusCause>)> {
    decode_with(value, validation, imagestreams_common::model::decode_json)
}

fn decode_with<T>(
    mut value: Value,
    validation: FieldValidation,
    parse: impl Fn(&[u8]) -> Result<T, ModelError>,
) -> Result<(T, Vec<String>), (ApiError, Vec<StatusCause>)> {
    let mut dropped = Vec::new();
    loop {
        let bytes = serde_json::to_vec(&value).map_err(|e| {
            (
                ApiError::Internal(format!("cannot encode a patched object: {e}")),
                Vec::new(),
            )
        })?;
        let error = match parse(&bytes) {
            Ok(object) => return Ok((object, dropped)),
            Err(error) => error,
        };
        let unknown = match &error {
            ModelError::Malformed { path, message, .. }
                if validation != FieldValidation::Strict
                    && message.starts_with("unknown field")
                    && dropped.len() < 100 =>
            {
                Some(path.clone())
            }
            _ => None,
        };
        match unknown.filter(|path| remove_path(&mut value, path)) {
            Some(path) => dropped.push(path),
            None => {
                let causes = match &error {
                    ModelError::Invalid(errors) => StatusCause::from_validation(errors),
                    _ => Vec::new(),
                };
                return Err((error.into(), causes));
            }
        }
    }
}

/// Removes the field at a model error's path (`spec.tags[0].fromm`).
fn remove_path(value: &mut Value, path: &str) -> bool {
    let mut steps: Vec<Step> = Vec::new();
    for segment in path.split('.') {
        let (name, indexes) = match segment.find('[') {
            Some(at) => (&segment[..at], &segment[at..]),
            None => (segment, ""),
        };
        if !name.is_empty() {
            steps.push(Step::Key(name.to_owned()));
        }
        for index in indexes.split('[').filter(|s| !s.is_empty()) {
            match index.trim_end_matches(']').parse() {
                Ok(i) => steps.push(Step::Index(i)),
                Err(_) => return false,
            }
        }
    }
    let Some((Step::Key(last), parents)) = steps.split_last() else {
        return false;
    };
    let mut at = value;
    for step in parents {
        let next = match step {
            Step::Key(key) => at.get_mut(key.as_str()),
            Step::Index(i) => at.get_mut(*i),
        };
        match next {
            Some(next) => at = next,
            None => return false,
        }
    }
    at.as_object_mut().and_then(|o| o.remove(last)).is_some()
}

enum Step {
    Key(String),
    Index(usize),
}

/// The `Warning` header value of a dropped field, as kube-apiserver words it.
pub(crate) fn unknown_field_warning(path: &str) -> String {
    format!("299 - \"unknown field \\\"{path}\\\"\"")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patches_follow_rfc_7386() {
        let mut target = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"tags": [{"name": "x"}]}});
        merge(
            &mut target,
            &json!({"metadata": {"labels": {"a": null, "c": "3"}}, "spec": {"tags": [{"name": "y"}]}}),
        );
        assert_eq!(
            target,
            json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"tags": [{"name": "y"}]}})
        );
    }

    #[test]
    fn strategic_patches_merge_tags_by_name() {
        let mut target = json!({"spec": {"tags": [
            {"name": "latest", "from": {"kind": "DockerImage", "name": "a:1"}},
            {"name": "old", "from": {"kind": "DockerImage", "name": "a:0"}}
        ]}});
        let patch = json!({"spec": {"$setElementOrder/tags": [{"name": "latest"}], "tags": [
            {"name": "latest", "annotations": {"note": "x"}},
            {"name": "old", "$patch": "delete"},
            {"name": "new", "from": {"kind": "DockerImage", "name": "a:2"}}
        ]}});
        apply(
            PatchType::Strategic,
            &mut target,
            patch.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(
            target,
            json!({"spec": {"tags": [
                {"name": "latest", "from": {"kind": "DockerImage", "name": "a:1"}, "annotations": {"note": "x"}},
                {"name": "new", "from": {"kind": "DockerImage", "name": "a:2"}}
            ]}})
        );
    }

    #[test]
    fn json_patches_and_their_failures() {
        let mut target = json!({"metadata": {"name": "ruby"}});
        let patch = br#"[{"op":"add","path":"/metadata/labels","value":{"a":"b"}}]"#;
        apply(PatchType::Json, &mut target, patch).unwrap();
        assert_eq!(target["metadata"]["labels"]["a"], "b");
        let bad = br#"[{"op":"remove","path":"/spec/nothing"}]"#;
        assert_eq!(
            apply(PatchType::Json, &mut target, bad)
                .unwrap_err()
                .http_status(),
            400
        );
    }

    #[test]
    fn content_types_choose_the_patch_or_415() {
        assert_eq!(
            PatchType::of("application/merge-patch+json").unwrap(),
            PatchType::Merge
        );
        assert_eq!(
            PatchType::of("application/strategic-merge-patch+json; charset=utf-8").unwrap(),
            PatchType::Strategic
        );
        assert_eq!(
            PatchType::of("application/apply-patch+yaml").unwrap(),
            PatchType::Apply
        );
        assert_eq!(PatchType::of("text/plain").unwrap_err().http_status(), 415);
    }

    #[test]
    fn unknown_fields_fail_strictly_or_are_dropped_and_named() {
        let doc = json!({"kind": "ImageStream", "apiVersion": "image.openshift.io/v1",
            "metadata": {"name": "ruby", "bogus": 1},
            "spec": {"tags": [{"name": "latest", "fromm": {}}]}});
        let (error, _) = decode(doc.clone(), FieldValidation::Strict).unwrap_err();
        assert_eq!(error.http_status(), 400);
        let (stream, dropped) = decode(doc, FieldValidation::Ignore).unwrap();
        assert_eq!(stream.metadata.name, "ruby");
        assert_eq!(dropped, ["metadata.bogus", "spec.tags[0].fromm"]);
        assert_eq!(
            unknown_field_warning("metadata.bogus"),
            r#"299 - "unknown field \"metadata.bogus\"""#
        );
    }
}
