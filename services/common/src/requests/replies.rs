//! The replies of the services' request-reply APIs: each is a message whose
//! `result` oneof holds the answer or the service's [`proto::StoreError`].
//! [`Reply`] says how to tell them apart once, so every client is one
//! [`ask`](super::ask).

use imagestreams_proto::v1 as proto;

/// A reply whose `result` is the answer or the service's error.
pub trait Reply: prost::Message + Default {
    /// What a successful reply carries.
    type Answer;

    /// The answer, the error, or `None` for an empty reply.
    fn into_result(self) -> Option<Result<Self::Answer, proto::StoreError>>;
}

/// Implements [`Reply`] for `$reply`, whose oneof module is `$oneof`, with the
/// answer variant `$answer` of type `$ty`.
macro_rules! reply {
    ($reply:ty, $oneof:ident, $answer:ident, $ty:ty) => {
        impl Reply for $reply {
            type Answer = $ty;

            fn into_result(self) -> Option<Result<$ty, proto::StoreError>> {
                Some(match self.result? {
                    proto::$oneof::Result::$answer(answer) => Ok(answer),
                    proto::$oneof::Result::Error(error) => Err(error),
                })
            }
        }
    };
}

reply!(
    proto::StoreReply,
    store_reply,
    ImageStream,
    proto::ImageStream
);
reply!(
    proto::ImportReply,
    import_reply,
    Applied,
    proto::ImportApplied
);
reply!(
    proto::ImportImageReply,
    import_image_reply,
    Response,
    proto::ImportImageResponse
);
reply!(
    proto::MirrorReply,
    mirror_reply,
    Response,
    proto::MirrorResponse
);
reply!(
    proto::SecretsReply,
    secrets_reply,
    Secrets,
    proto::ListSecretsResponse
);
reply!(proto::TriggerReply, trigger_reply, Trigger, proto::Trigger);

/// A receivers reply answers with one of several shapes: the answer is the
/// oneof itself, but for its error.
impl Reply for proto::ReceiversReply {
    type Answer = proto::receivers_reply::Result;

    fn into_result(self) -> Option<Result<Self::Answer, proto::StoreError>> {
        Some(match self.result? {
            proto::receivers_reply::Result::Error(error) => Err(error),
            answer => Ok(answer),
        })
    }
}
