//! Machine-readable output: the OpenShift object as the model serializes it
//! (JSON, YAML), `List` documents, `-o name`, and watch events as JSON lines.

use imagestreams_common::model::{ImageStream, ModelError};
use serde::Serialize;

use super::ClientError;

/// The resource name `oc` prints in `-o name` and in `created`/`deleted` lines.
pub const RESOURCE: &str = "imagestream.image.openshift.io";

/// The plural resource of error messages: `imagestreams.image.openshift.io "x" not found`.
pub const RESOURCE_PLURAL: &str = "imagestreams.image.openshift.io";

/// `imagestream.image.openshift.io/NAME`.
pub fn name_line(stream: &ImageStream) -> String {
    format!("{RESOURCE}/{}", stream.metadata.name)
}

/// A `List` of objects, as `oc get … -o json|yaml` prints one: `{"apiVersion":
/// "v1","kind":"List","items":[…],"metadata":{…}}`, each item in its own
/// shape (the model's for streams, the views' for the rest).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListDocument<'a, T> {
    api_version: &'static str,
    kind: &'static str,
    items: &'a [T],
    metadata: ListMeta,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct ListMeta {
    #[serde(skip_serializing_if = "String::is_empty")]
    resource_version: String,
}

impl<'a, T: Serialize> ListDocument<'a, T> {
    /// A `List` of `items` at `resource_version` (empty: none).
    pub fn new(items: &'a [T], resource_version: &str) -> Self {
        Self {
            api_version: "v1",
            kind: "List",
            items,
            metadata: ListMeta {
                resource_version: resource_version.to_owned(),
            },
        }
    }

    /// Indented JSON with a final newline.
    pub fn to_json_pretty(&self) -> Result<String, ClientError> {
        to_text(self, Format::Json)
    }

    /// YAML.
    pub fn to_yaml(&self) -> Result<String, ClientError> {
        to_text(self, Format::Yaml)
    }
}

/// A machine-readable format of `-o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Indented JSON with a final newline.
    Json,
    /// YAML.
    Yaml,
}

/// `value` in `format`.
pub fn to_text<T: Serialize + ?Sized>(value: &T, format: Format) -> Result<String, ClientError> {
    match format {
        Format::Json => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| ClientError::BadResponse(format!("cannot write JSON: {e}"))),
        Format::Yaml => serde_norway::to_string(value)
            .map_err(|e| ClientError::BadResponse(format!("cannot write YAML: {e}"))),
    }
}

/// What `get … -o json|yaml` prints of `items`: the object alone when one
/// was asked for by name (`single`), else a `List` of them (none included).
pub fn objects<T: Serialize>(
    items: &[T],
    single: bool,
    format: Format,
) -> Result<String, ClientError> {
    match (single, items) {
        (true, [one]) => to_text(one, format),
        _ => to_text(&ListDocument::new(items, ""), format),
    }
}

/// One stream as indented JSON with a final newline.
pub fn json(stream: &ImageStream) -> Result<String, ClientError> {
    stream.to_json_pretty().map(|s| s + "\n").map_err(serialize)
}

/// One stream as YAML.
pub fn yaml(stream: &ImageStream) -> Result<String, ClientError> {
    stream.to_yaml().map_err(serialize)
}

fn serialize(e: ModelError) -> ClientError {
    ClientError::BadResponse(e.to_string())
}

/// A watch event as one compact JSON line: `{"type":"ADDED","object":{…}}`.
pub fn watch_event_line(kind: &str, stream: &ImageStream) -> Result<String, ClientError> {
    #[derive(Serialize)]
    struct Event<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        object: &'a ImageStream,
    }
    serde_json::to_string(&Event {
        kind,
        object: stream,
    })
    .map_err(|e| ClientError::BadResponse(format!("cannot write JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_keeps_the_model_shape_of_items() {
        let is = ImageStream::new("default", "ruby");
        let items = [is.clone()];
        let json = ListDocument::new(&items, "7").to_json_pretty().unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["kind"], "List");
        assert_eq!(value["apiVersion"], "v1");
        assert_eq!(value["metadata"]["resourceVersion"], "7");
        assert_eq!(value["items"][0], serde_json::to_value(&is).unwrap());
        // Item keys keep the model's order (kind before metadata), not sorted.
        assert!(
            json.contains(
                "\"apiVersion\": \"image.openshift.io/v1\",\n      \"kind\": \"ImageStream\",\n      \"metadata\""
            ),
            "{json}"
        );
        let yaml = ListDocument::new(&items, "7").to_yaml().unwrap();
        assert!(yaml.contains("kind: List"), "{yaml}");
    }

    #[test]
    fn watch_lines_are_one_line() {
        let is = ImageStream::new("default", "ruby");
        let line = watch_event_line("ADDED", &is).unwrap();
        assert!(!line.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["type"], "ADDED");
        assert_eq!(value["object"]["metadata"]["name"], "ruby");
    }

    #[test]
    fn name_lines() {
        let is = ImageStream::new("default", "ruby");
        assert_eq!(name_line(&is), "imagestream.image.openshift.io/ruby");
    }
}
