//! The notification's decisions as the events the registry-watcher publishes:
//! [`ImagePush`] → `ImagePushed`, [`ImageDeletion`] → `ImageDeleted`.
use imagestreams_proto::v1 as proto;

use super::{ImageDeletion, ImagePush};
use crate::time::timestamp;

impl From<ImagePush> for proto::ImagePushed {
    fn from(push: ImagePush) -> Self {
        proto::ImagePushed {
            event_id: push.event_id,
            registry: push.registry,
            repository: push.repository,
            tag: push.tag,
            digest: push.digest,
            media_type: push.media_type,
            size: push.size,
            time: Some(timestamp(push.time)),
            actor: push.actor,
            source: proto::ImageSource::RegistryNotification as i32,
            namespace: push.stream.namespace,
            stream: push.stream.name,
            #[allow(deprecated)]
            summary: None,
            references: push
                .references
                .into_iter()
                .map(|d| proto::ImageLayer {
                    name: d.digest,
                    size: d.size,
                    media_type: d.media_type,
                })
                .collect(),
        }
    }
}

impl From<ImageDeletion> for proto::ImageDeleted {
    fn from(deletion: ImageDeletion) -> Self {
        proto::ImageDeleted {
            event_id: deletion.event_id,
            registry: deletion.registry,
            repository: deletion.repository,
            tag: deletion.tag,
            digest: deletion.digest,
            time: Some(timestamp(deletion.time)),
            actor: deletion.actor,
            namespace: deletion.stream.namespace,
            stream: deletion.stream.name,
        }
    }
}
