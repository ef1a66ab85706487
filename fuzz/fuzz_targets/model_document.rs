//! Fuzzes `ImageStream::parse_document` (JSON or YAML, strict and validated)
//! on arbitrary bytes: an accepted stream is valid, and comes back equal
//! through its own JSON, its own YAML, the protobuf wire type (`From` out,
//! `TryFrom` in) and the protobuf bytes.
#![no_main]

use imagestreams_common::model::{ImageStream, MAX_DOCUMENT_BYTES};
use imagestreams_proto::v1 as pb;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

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

    // The protobuf edge, and the bytes on the wire.
    let wire = pb::ImageStream::from(stream.clone());
    let bytes = wire.encode_to_vec();
    let decoded = pb::ImageStream::decode(bytes.as_slice()).expect("own protobuf decodes");
    assert_eq!(decoded, wire, "protobuf bytes round trip");
    let back = ImageStream::try_from(decoded)
        .unwrap_or_else(|e| panic!("the wire form of an accepted stream is refused: {e}"));
    assert_eq!(back, stream, "protobuf round trip");
});
