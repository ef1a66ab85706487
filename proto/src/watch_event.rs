//! `imagestreams.v1.WatchEvent`, written by hand instead of generated (the
//! build maps the proto type here with `extern_path`), so that a server can
//! encode one change once and send the same bytes to every watcher of it.
//!
//! On the wire it is exactly the message of `image_streams.proto`:
//! `WatchEventType type = 1; ImageStream object = 2;`.

use prost::{
    DecodeError, Message,
    bytes::{Buf, BufMut, Bytes},
    encoding::{self, DecodeContext, WireType},
};

use crate::v1::{ImageStream, WatchEventType};

/// One change of a watch: what happened and the stream after it.
///
/// A decoded or built event has its fields; one made by [`WatchEvent::shared`]
/// carries only its encoding, which is what it sends (decode it to read it).
#[derive(Clone, PartialEq, Default, Debug)]
pub struct WatchEvent {
    /// A [`WatchEventType`].
    pub r#type: i32,
    /// The stream after the change (for `DELETED`, its last state).
    pub object: Option<ImageStream>,
    /// The encoding of `r#type` and `object`, when made once to be shared.
    encoded: Option<Bytes>,
}

impl WatchEvent {
    /// An event with its fields, as clients see it.
    pub fn new(kind: WatchEventType, object: ImageStream) -> Self {
        WatchEvent {
            r#type: kind as i32,
            object: Some(object),
            encoded: None,
        }
    }

    /// The event encoded once: cloning it copies a reference to the bytes,
    /// and sending it writes them as they are.
    pub fn shared(kind: WatchEventType, object: ImageStream) -> Self {
        let encoded = Bytes::from(Self::new(kind, object).encode_to_vec());
        WatchEvent {
            r#type: kind as i32,
            object: None,
            encoded: Some(encoded),
        }
    }

    /// The event's type, or `WATCH_EVENT_TYPE_UNSPECIFIED` for an unknown value.
    pub fn r#type(&self) -> WatchEventType {
        WatchEventType::try_from(self.r#type).unwrap_or_default()
    }
}

impl Message for WatchEvent {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if let Some(encoded) = &self.encoded {
            buf.put_slice(encoded);
            return;
        }
        if self.r#type != 0 {
            encoding::int32::encode(1, &self.r#type, buf);
        }
        if let Some(object) = &self.object {
            encoding::message::encode(2, object, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        // a decoded event is read through its fields
        self.encoded = None;
        match tag {
            1 => encoding::int32::merge(wire_type, &mut self.r#type, buf, ctx),
            2 => encoding::message::merge(
                wire_type,
                self.object.get_or_insert_with(ImageStream::default),
                buf,
                ctx,
            ),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        if let Some(encoded) = &self.encoded {
            return encoded.len();
        }
        let kind = if self.r#type != 0 {
            encoding::int32::encoded_len(1, &self.r#type)
        } else {
            0
        };
        kind + self
            .object
            .as_ref()
            .map_or(0, |object| encoding::message::encoded_len(2, object))
    }

    fn clear(&mut self) {
        *self = WatchEvent::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::ObjectMeta;

    fn stream(name: &str) -> ImageStream {
        ImageStream {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "ns".into(),
                resource_version: "7".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_shared_event_encodes_exactly_as_the_plain_one() {
        let plain = WatchEvent::new(WatchEventType::Modified, stream("app"));
        let shared = WatchEvent::shared(WatchEventType::Modified, stream("app"));
        assert_eq!(shared.encode_to_vec(), plain.encode_to_vec());
        assert_eq!(shared.encoded_len(), plain.encoded_len());
        assert_eq!(shared.clone().encode_to_vec(), plain.encode_to_vec());
    }

    #[test]
    fn decoding_gives_the_fields_back() {
        let shared = WatchEvent::shared(WatchEventType::Deleted, stream("app"));
        let decoded = WatchEvent::decode(shared.encode_to_vec().as_slice()).unwrap();
        assert_eq!(
            decoded,
            WatchEvent::new(WatchEventType::Deleted, stream("app"))
        );
        assert_eq!(decoded.r#type(), WatchEventType::Deleted);
    }

    #[test]
    fn an_unknown_field_is_skipped_and_defaults_are_not_written() {
        let mut bytes = WatchEvent::new(WatchEventType::Added, stream("a")).encode_to_vec();
        // field 9, varint 1
        bytes.extend_from_slice(&[9 << 3, 1]);
        let decoded = WatchEvent::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.object, Some(stream("a")));
        assert!(WatchEvent::default().encode_to_vec().is_empty());
    }
}
