//! Reading ImageStreams from `-f` files: JSON or YAML (detected as the model
//! does), several YAML documents separated by `---`, and `List` documents.
//! Every stream is parsed and validated by the model, so errors name the
//! field (`spec.tags[0].fromm: unknown field …`).

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use imagestreams_common::model::{
    DocumentFormat, ImageStream, MAX_DOCUMENT_BYTES, ModelError, detect_format,
};

use super::ClientError;

/// The largest file read (a `List` may hold many streams of up to
/// [`MAX_DOCUMENT_BYTES`] each).
pub const MAX_FILE_BYTES: usize = 64 * MAX_DOCUMENT_BYTES;

/// A stream read from a file, and where in the file it was.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The file (`-` for stdin).
    pub path: PathBuf,
    /// `document 2: `, `items[1]: `, or empty for a file's only stream.
    pub location: String,
    /// The parsed, validated stream.
    pub stream: ImageStream,
}

/// Reads `path` (`-`: stdin) and parses every stream in it.
pub fn load(path: &Path) -> Result<Vec<Loaded>, ClientError> {
    let bytes = read(path)?;
    parse(path, &bytes)
}

fn read(path: &Path) -> Result<Vec<u8>, ClientError> {
    let error = |source| ClientError::Read {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    let limit = MAX_FILE_BYTES as u64 + 1;
    if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(error)?;
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(limit).read_to_end(&mut bytes))
            .map_err(error)?;
    }
    if bytes.len() > MAX_FILE_BYTES {
        return Err(error(std::io::Error::other(format!(
            "larger than the limit of {MAX_FILE_BYTES} bytes"
        ))));
    }
    Ok(bytes)
}

/// Parses the streams of one file's content.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<Loaded>, ClientError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    // The file's syntax holds for each of its documents: `--- {a: 1}` is YAML.
    let format = detect_format(bytes);
    let documents: Vec<Vec<u8>> = match format {
        DocumentFormat::Json => vec![bytes.to_vec()],
        DocumentFormat::Yaml => split_yaml(bytes),
    };
    let several = documents.len() > 1;
    let mut loaded = Vec::new();
    for (i, document) in documents.iter().enumerate() {
        let prefix = if several {
            format!("document {}: ", i + 1)
        } else {
            String::new()
        };
        let fail = |location: String, source| ClientError::Document {
            path: path.to_owned(),
            location,
            source,
        };
        match list_items(format, document) {
            Some(items) => {
                for (j, item) in items.into_iter().enumerate() {
                    let location = format!("{prefix}items[{j}]: ");
                    let stream = parse_one(format, &item).map_err(|e| fail(location.clone(), e))?;
                    loaded.push(Loaded {
                        path: path.to_owned(),
                        location,
                        stream,
                    });
                }
            }
            None => {
                let stream = parse_one(format, document).map_err(|e| fail(prefix.clone(), e))?;
                loaded.push(Loaded {
                    path: path.to_owned(),
                    location: prefix,
                    stream,
                });
            }
        }
    }
    Ok(loaded)
}

/// Parses and validates one document of a known syntax.
fn parse_one(format: DocumentFormat, document: &[u8]) -> Result<ImageStream, ModelError> {
    match (format, std::str::from_utf8(document)) {
        (DocumentFormat::Yaml, Ok(text)) => ImageStream::from_yaml(text),
        // JSON, or YAML that is not UTF-8 (the model says so).
        _ => ImageStream::parse_document(document),
    }
}

/// Splits YAML text at `---` document markers. Documents holding nothing but
/// blanks and comments are dropped, unless the whole text is such (then the
/// model reports it as empty).
fn split_yaml(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut documents: Vec<Vec<u8>> = vec![Vec::new()];
    // After a `...` end marker, lines up to the next `---` belong to no document.
    let mut ended = false;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let text = trim_line_end(line);
        let marker =
            text.starts_with(b"---") && text.get(3).is_none_or(|b| b.is_ascii_whitespace());
        if marker {
            ended = false;
            let mut document = Vec::new();
            // `--- {inline: content}`: the rest of the line opens the document.
            let rest = trim_ascii_start(&line[3..]);
            if !rest.is_empty() && !rest.starts_with(b"#") {
                document.extend_from_slice(rest);
            }
            documents.push(document);
        } else if text == b"..." {
            ended = true;
        } else if !ended && let Some(current) = documents.last_mut() {
            current.extend_from_slice(line);
        }
    }
    let meaningful: Vec<Vec<u8>> = documents
        .iter()
        .filter(|d| has_content(d))
        .cloned()
        .collect();
    if meaningful.is_empty() {
        vec![bytes.to_vec()]
    } else {
        meaningful
    }
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    &line[..end]
}

fn trim_ascii_start(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    &s[start..]
}

fn has_content(document: &[u8]) -> bool {
    document.split(|&b| b == b'\n').any(|line| {
        let line = trim_ascii_start(line);
        !line.is_empty() && !line.starts_with(b"#")
    })
}

/// The items of a `List` document (`kind: List` or `…List` with `items`),
/// each re-encoded in the document's syntax; `None` for any other document,
/// including one that does not parse (the model then says why).
fn list_items(format: DocumentFormat, document: &[u8]) -> Option<Vec<Vec<u8>>> {
    match format {
        DocumentFormat::Json => {
            let value: serde_json::Value = serde_json::from_slice(document).ok()?;
            let items = list_of(value.get("kind")?.as_str()?, value.get("items")?)?;
            let items = items.as_array()?;
            items.iter().map(|i| serde_json::to_vec(i).ok()).collect()
        }
        DocumentFormat::Yaml => {
            let value: serde_norway::Value = serde_norway::from_slice(document).ok()?;
            let items = list_of(value.get("kind")?.as_str()?, value.get("items")?)?;
            let items = items.as_sequence()?;
            items
                .iter()
                .map(|i| serde_norway::to_string(i).ok().map(String::into_bytes))
                .collect()
        }
    }
}

fn list_of<'v, V>(kind: &str, items: &'v V) -> Option<&'v V> {
    (kind == "List" || kind.ends_with("List")).then_some(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(loaded: &[Loaded]) -> Vec<(&str, &str)> {
        loaded
            .iter()
            .map(|l| (l.location.as_str(), l.stream.metadata.name.as_str()))
            .collect()
    }

    #[test]
    fn one_json_or_yaml_document() {
        let json = br#"{"apiVersion":"v1","kind":"ImageStream","metadata":{"name":"ruby"}}"#;
        let loaded = parse(Path::new("a.json"), json).unwrap();
        assert_eq!(names(&loaded), [("", "ruby")]);
        let yaml =
            b"# leading comment\n---\napiVersion: v1\nkind: ImageStream\nmetadata: {name: ruby}\n";
        assert_eq!(
            names(&parse(Path::new("a.yaml"), yaml).unwrap()),
            [("", "ruby")]
        );
    }

    #[test]
    fn several_yaml_documents() {
        let yaml = b"apiVersion: v1\nkind: ImageStream\nmetadata: {name: a}\n---\n# only a comment\n--- \napiVersion: v1\nkind: ImageStream\nmetadata:\n  name: b\n...\nignored: after the end marker\n--- {apiVersion: v1, kind: ImageStream, metadata: {name: c}}\n";
        let loaded = parse(Path::new("-"), yaml).unwrap();
        assert_eq!(
            names(&loaded),
            [
                ("document 1: ", "a"),
                ("document 2: ", "b"),
                ("document 3: ", "c")
            ]
        );
    }

    #[test]
    fn lists() {
        let json = br#"{"apiVersion":"v1","kind":"List","items":[
            {"kind":"ImageStream","apiVersion":"image.openshift.io/v1","metadata":{"name":"a"}},
            {"kind":"ImageStream","apiVersion":"image.openshift.io/v1","metadata":{"name":"b"},
             "spec":{"tags":[{"name":"2.5","from":{"kind":"DockerImage","name":"x:2.5"}}]}}]}"#;
        let loaded = parse(Path::new("l.json"), json).unwrap();
        assert_eq!(names(&loaded), [("items[0]: ", "a"), ("items[1]: ", "b")]);
        let yaml = b"kind: ImageStreamList\napiVersion: image.openshift.io/v1\nitems:\n- kind: ImageStream\n  apiVersion: v1\n  metadata: {name: a}\n  spec:\n    tags:\n    - name: \"2.5\"\n";
        let loaded = parse(Path::new("l.yaml"), yaml).unwrap();
        assert_eq!(loaded[0].stream.spec.tags[0].name, "2.5");
    }

    #[test]
    fn errors_name_the_file_the_document_and_the_field() {
        let bad = br#"{"kind":"ImageStream","apiVersion":"v1","metadata":{"name":"ruby"},"spec":{"tags":[{"name":"x","fromm":{}}]}}"#;
        let e = parse(Path::new("bad.json"), bad).unwrap_err();
        let line = e.to_string();
        assert!(line.starts_with("bad.json: "), "{line}");
        assert!(line.contains("spec.tags[0].fromm"), "{line}");

        let yaml = b"apiVersion: v1\nkind: ImageStream\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ImageStream\nmetadata: {name: Bad_Name}\n";
        let line = parse(Path::new("-"), yaml).unwrap_err().to_string();
        assert!(
            line.starts_with("stdin: document 2: metadata.name"),
            "{line}"
        );

        let list =
            br#"{"kind":"List","items":[{"apiVersion":"v1","kind":"ImageStream","metadata":{}}]}"#;
        let line = parse(Path::new("l.json"), list).unwrap_err().to_string();
        assert!(
            line.starts_with("l.json: items[0]: metadata.name"),
            "{line}"
        );

        let empty = parse(Path::new("e.yaml"), b"# nothing\n")
            .unwrap_err()
            .to_string();
        assert!(empty.contains("empty document"), "{empty}");
    }

    #[test]
    fn missing_files_are_read_errors() {
        let e = load(Path::new("/nonexistent/x.json")).unwrap_err();
        assert!(matches!(e, ClientError::Read { .. }));
        assert!(
            e.to_string()
                .starts_with("cannot read /nonexistent/x.json: ")
        );
    }
}
