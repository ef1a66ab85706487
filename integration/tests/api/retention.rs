//! The event streams' retention is configuration (`nats.events_max_age_secs`,
//! `nats.events_max_bytes`), applied on start to streams that exist already,
//! without losing what they hold.

use std::time::Duration;

use imagestreams_common::{
    nats::{self as topology, DEFAULT_EVENT_MAX_AGE, EventRetention},
    subjects::{self, Kind},
};
use imagestreams_integration::NatsServer;

#[tokio::test]
async fn event_retention_is_configured_and_changed_in_place() {
    let nats = NatsServer::start().await.expect("nats");
    let client = nats.connect().await.expect("connect");
    let declared = topology::provision(&client, 1).await.expect("provision");
    let js = declared.js;
    for name in subjects::STREAMS {
        let config = js
            .get_stream(name)
            .await
            .expect(name)
            .cached_info()
            .config
            .clone();
        assert_eq!(config.max_age, DEFAULT_EVENT_MAX_AGE, "{name}");
        assert_eq!(config.max_bytes, -1, "{name}: no byte limit by default");
    }
    let subject = Kind::TagsChanged.subject("ns1", "app");
    js.publish(subject.clone(), "kept".into())
        .await
        .expect("publish")
        .await
        .expect("ack");

    // a restart with another retention: the streams take it, events stay
    let auditor = EventRetention {
        max_age: Duration::from_secs(90 * 24 * 3600),
        max_bytes: 64 << 20,
    };
    topology::provision_with(&client, 1, &auditor)
        .await
        .expect("provision again");
    for name in subjects::STREAMS {
        let mut stream = js.get_stream(name).await.expect(name);
        let info = stream.info().await.expect("info");
        assert_eq!(info.config.max_age, auditor.max_age, "{name}");
        assert_eq!(info.config.max_bytes, 64 << 20, "{name}");
    }
    let tags = js
        .get_stream(Kind::TagsChanged.stream())
        .await
        .expect("the tags stream");
    let kept = tags
        .get_last_raw_message_by_subject(&subject)
        .await
        .expect("the event published before");
    assert_eq!(&kept.payload[..], b"kept");
}
