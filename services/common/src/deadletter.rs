//! Dead letters: where a durable consumer puts an event it can never apply,
//! so that the event neither blocks the events behind it nor is lost.
//!
//! A dead letter is the event as it was received (payload and headers)
//! republished on [`Kind::DeadLettered`]'s subject of the stream it was for,
//! `imagestreams.deadletters.events.<ns>.<name>`, in the JetStream stream
//! [`subjects::STREAM_DEAD_LETTERS`] (kept 7 days), with three headers:
//! [`REASON_HEADER`] (the cause chain), [`CONSUMER_HEADER`] (who gave up) and
//! [`SUBJECT_HEADER`] (where it came from). Its message id is
//! `<consumer>:<stream>:<sequence>` of the original, so a consumer that dies
//! between dead-lettering and terminating the original stores it once.
//!
//! The consumer terminates the original only once the dead letter is stored;
//! when storing fails, the original is retried later like any transient
//! failure.

use async_nats::jetstream;

use crate::subjects::Kind;

/// The header holding why the event could not be applied.
pub const REASON_HEADER: &str = "Imagestreams-Dead-Letter-Reason";
/// The header naming the durable consumer that gave up on the event.
pub const CONSUMER_HEADER: &str = "Imagestreams-Dead-Letter-Consumer";
/// The header holding the event's original subject.
pub const SUBJECT_HEADER: &str = "Imagestreams-Original-Subject";

/// The most bytes of a reason kept in [`REASON_HEADER`].
const MAX_REASON_BYTES: usize = 1024;

/// Storing a dead letter failed; the original should be retried later.
#[derive(Debug, thiserror::Error)]
#[error("cannot store the dead letter of {subject}")]
pub struct DeadLetterError {
    subject: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

/// The subject of the dead letters of stream `namespace/name`.
pub fn subject(namespace: &str, name: &str) -> String {
    Kind::DeadLettered.subject(namespace, name)
}

/// Stores `message`, received by durable consumer `consumer` and meant for
/// stream `namespace/name`, as a dead letter with `reason`, and waits until
/// JetStream has it.
pub async fn store(
    js: &jetstream::Context,
    consumer: &str,
    namespace: &str,
    name: &str,
    message: &jetstream::Message,
    reason: &str,
) -> Result<(), DeadLetterError> {
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| DeadLetterError {
        subject: message.subject.to_string(),
        source,
    };
    let mut headers = message.headers.clone().unwrap_or_default();
    // a redelivered dead letter keeps one id: the original's place in its stream
    let id = match message.info() {
        Ok(info) => format!("{consumer}:{}:{}", info.stream, info.stream_sequence),
        Err(e) => return Err(failed(e.to_string().into())),
    };
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
    headers.insert(REASON_HEADER, header_value(reason).as_str());
    headers.insert(CONSUMER_HEADER, consumer);
    headers.insert(SUBJECT_HEADER, message.subject.as_str());
    js.publish_with_headers(subject(namespace, name), headers, message.payload.clone())
        .await
        .map_err(|e| failed(Box::new(e)))?
        .await
        .map_err(|e| failed(Box::new(e)))?;
    Ok(())
}

/// `reason` as one header line: no line breaks, at most
/// [`MAX_REASON_BYTES`] bytes (cut at a character boundary).
fn header_value(reason: &str) -> String {
    let line: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut end = line.len().min(MAX_REASON_BYTES);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subjects;

    #[test]
    fn reasons_become_one_bounded_header_line() {
        assert_eq!(header_value("a\nb\r\tc"), "a b  c");
        let long = "é".repeat(MAX_REASON_BYTES);
        let value = header_value(&long);
        assert!(value.len() <= MAX_REASON_BYTES);
        assert!(value.chars().all(|c| c == 'é'));
    }

    #[test]
    fn dead_letters_are_filed_under_their_stream() {
        assert_eq!(
            subject("ns1", "ruby.v2"),
            "imagestreams.deadletters.events.ns1.ruby=2Ev2"
        );
        assert_eq!(
            subjects::stream_subjects(subjects::STREAM_DEAD_LETTERS),
            ["imagestreams.deadletters.>"]
        );
    }
}
