//! Fuzzes `ImageStream::parse_document` (JSON or YAML, strict and validated)
//! on arbitrary bytes: an accepted stream is valid, and comes back equal
//! through its own JSON and its own YAML. (The protobuf edge is not built
//! here: `imagestreams-proto` brings tonic. Its unit tests round-trip every
//! fixture and seed.)
#![no_main]

use imagestreams_formats::model::{ImageStream, MAX_DOCUMENT_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Whatever the bytes, the lenient reader never panics either.
    let unvalidated = ImageStream::parse_document_unvalidated(data);
    let Ok(stream) = ImageStream::parse_document(data) else {
        return;
    };
    assert_eq!(
        unvalidated.as_ref().ok(),
        Some(&stream),
        "parse_document_unvalidated reads another stream"
    );
    assert_eq!(stream.validate(), Ok(()), "an accepted stream is valid");

    // Its own JSON.
    let json = stream
        .to_json_pretty()
        .expect("an accepted stream serializes to JSON");
    if json.len() <= MAX_DOCUMENT_BYTES {
        let back = ImageStream::from_json(json.as_bytes())
            .unwrap_or_else(|e| panic!("own JSON refused: {e}\n{json}"));
        assert_eq!(back, stream, "JSON round trip\n{json}");
        let back = ImageStream::parse_document(json.as_bytes())
            .unwrap_or_else(|e| panic!("own JSON refused by parse_document: {e}"));
        assert_eq!(back, stream, "JSON round trip through parse_document");
    }

    // Its own YAML.
    let yaml = stream
        .to_yaml()
        .expect("an accepted stream serializes to YAML");
    if yaml.len() <= MAX_DOCUMENT_BYTES {
        let back = ImageStream::from_yaml(&yaml)
            .unwrap_or_else(|e| panic!("own YAML refused: {e}\n{yaml}"));
        assert_eq!(back, stream, "YAML round trip\n{yaml}");
    }
});
