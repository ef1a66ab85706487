//! Times on the wire: RFC 3339 text in documents, `google.protobuf.Timestamp`
//! in events.
//!
//! RFC 3339 allows a leap second (`23:59:60Z`), which chrono keeps as a
//! nanosecond count of one second or more. A protobuf `Timestamp` must have
//! `nanos` below 1,000,000,000, and most decoders refuse one that does not, so
//! every conversion here folds a leap second into the last instant of the
//! second before it, as Go's `time.Parse` does.

use chrono::{DateTime, Timelike, Utc};

/// `time` with a leap second folded into `…:59.999999999`.
pub fn without_leap_second(time: DateTime<Utc>) -> DateTime<Utc> {
    if time.nanosecond() < 1_000_000_000 {
        return time;
    }
    time.with_nanosecond(999_999_999).unwrap_or(time)
}

/// The RFC 3339 time `text` in UTC, a leap second folded; `None` when it is not
/// one.
pub fn parse_rfc3339(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| without_leap_second(t.with_timezone(&Utc)))
}

/// The protobuf time of `time`.
#[cfg(feature = "proto")]
pub fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    let time = without_leap_second(time);
    prost_types::Timestamp {
        seconds: time.timestamp(),
        // below 1e9 once the leap second is folded, so it fits
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

/// The protobuf time of the RFC 3339 `text`; `None` when it is not one.
#[cfg(feature = "proto")]
pub fn timestamp_of_rfc3339(text: &str) -> Option<prost_types::Timestamp> {
    parse_rfc3339(text).map(timestamp)
}

/// The time of a protobuf time; `None` when unset or out of range.
#[cfg(feature = "proto")]
pub fn time_of(time: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    time.and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leap_second_is_folded_into_the_second_before() {
        let leap = parse_rfc3339("2016-12-31T23:59:60Z").expect("RFC 3339 allows a leap second");
        assert_eq!(leap.to_rfc3339(), "2016-12-31T23:59:59.999999999+00:00");
        let ordinary = parse_rfc3339("2016-12-31T23:59:59.5+01:00").expect("a time");
        assert_eq!(ordinary.to_rfc3339(), "2016-12-31T22:59:59.500+00:00");
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[cfg(feature = "proto")]
    #[test]
    fn a_leap_second_gives_a_valid_protobuf_time() {
        let t = timestamp_of_rfc3339("2024-05-01T12:35:60Z").expect("a time");
        assert_eq!(t.nanos, 999_999_999);
        assert_eq!(
            time_of(Some(&t)).map(|t| t.to_rfc3339()),
            Some("2024-05-01T12:35:59.999999999+00:00".to_owned())
        );
        assert_eq!(time_of(None), None);
    }
}
