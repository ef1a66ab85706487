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

/// A `List` of streams, as `oc get is -o json` prints one.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListDocument<'a> {
    api_version: &'static str,
    kind: &'static str,
    items: &'a [ImageStream],
    metadata: ListMeta,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ListMeta {
    resource_version: String,
}

impl<'a> ListDocument<'a> {
    /// `{"apiVersion":"v1","kind":"List","items":[…],"metadata":{"resourceVersion":…}}`.
    pub fn new(items: &'a [ImageStream], resource_version: &str) -> Self {
        Self {
            api_version: "v1",
            kind: "List",
            items,
            metadata: ListMeta {
                resource_version: resource_version.to_owned(),
            },
        }
    }

    /// Indented JSON with a final newline; each item in the model's shape.
    pub fn to_json_pretty(&self) -> Result<String, ClientError> {
        serde_json::to_string_pretty(self)
            .map(|s| s + "\n")
            .map_err(|e| ClientError::BadResponse(format!("cannot write JSON: {e}")))
    }

    /// YAML.
    pub fn to_yaml(&self) -> Result<String, ClientError> {
        serde_norway::to_string(self)
            .map_err(|e| ClientError::BadResponse(format!("cannot write YAML: {e}")))
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
