//! Times as `oc` prints them: docker/go-units' `HumanDuration` ("3 minutes",
//! "About an hour", "2 weeks") and the "… ago" of tables and descriptions.

use chrono::{DateTime, Utc};

/// Parses an RFC 3339 timestamp of the model; `None` when empty or malformed.
pub fn parse_time(timestamp: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(timestamp)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A time given as an age before `now` (`30s`, `90m`, `12h`, `2d`) or as an
/// RFC 3339 time, as `--since` and `--at` take it; `flag` names the option
/// in the error.
pub fn parse_since(text: &str, now: DateTime<Utc>, flag: &str) -> Result<DateTime<Utc>, String> {
    if let Some(time) = parse_time(text) {
        return Ok(time);
    }
    let wrong = || format!("{flag} {text:?}: a duration (30s, 90m, 12h, 2d) or an RFC 3339 time");
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = number.parse().map_err(|_| wrong())?;
    let age = match unit {
        "s" => chrono::TimeDelta::seconds(n),
        "m" => chrono::TimeDelta::minutes(n),
        "h" => chrono::TimeDelta::hours(n),
        "d" => chrono::TimeDelta::days(n),
        _ => return Err(wrong()),
    };
    Ok(now - age)
}

/// docker/go-units `HumanDuration`: a rough, friendly length of time.
/// Negative durations (clock skew) read as "Less than a second".
pub fn human_duration(d: chrono::TimeDelta) -> String {
    let seconds = d.num_seconds();
    if seconds < 1 {
        return "Less than a second".to_owned();
    }
    if seconds == 1 {
        return "1 second".to_owned();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = d.num_minutes();
    if minutes == 1 {
        return "About a minute".to_owned();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    // go-units rounds hours to the nearest (math.Round).
    let hours = (d.num_milliseconds() as f64 / 3_600_000.0).round() as i64;
    if hours == 1 {
        return "About an hour".to_owned();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", d.num_hours() / 24 / 365)
}

/// "3 minutes ago", measured from `now`.
pub fn ago(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!("{} ago", human_duration(now - then))
}

/// [`ago`] of an RFC 3339 timestamp; empty when it does not parse.
pub fn ago_str(timestamp: &str, now: DateTime<Utc>) -> String {
    parse_time(timestamp)
        .map(|t| ago(t, now))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn since_takes_ages_and_times() {
        let now = parse_time("2026-12-07T12:00:00Z").unwrap();
        let since = |text| parse_since(text, now, "--since");
        assert_eq!(
            since("90m").unwrap().to_rfc3339(),
            "2026-12-07T10:30:00+00:00"
        );
        assert_eq!(
            since("2026-12-01T00:00:00Z").unwrap().to_rfc3339(),
            "2026-12-01T00:00:00+00:00"
        );
        assert!(since("soon").is_err());
        assert!(since("5y").is_err());
    }

    #[test]
    fn follows_go_units() {
        let cases = [
            (TimeDelta::milliseconds(-5), "Less than a second"),
            (TimeDelta::milliseconds(999), "Less than a second"),
            (TimeDelta::seconds(1), "1 second"),
            (TimeDelta::seconds(59), "59 seconds"),
            (TimeDelta::seconds(60), "About a minute"),
            (TimeDelta::seconds(119), "About a minute"),
            (TimeDelta::minutes(3), "3 minutes"),
            (TimeDelta::minutes(59), "59 minutes"),
            (TimeDelta::minutes(60), "About an hour"),
            (TimeDelta::minutes(89), "About an hour"),
            (TimeDelta::minutes(90), "2 hours"),
            (TimeDelta::hours(47), "47 hours"),
            (TimeDelta::hours(48), "2 days"),
            (TimeDelta::days(13), "13 days"),
            (TimeDelta::days(14), "2 weeks"),
            (TimeDelta::days(59), "8 weeks"),
            (TimeDelta::days(60), "2 months"),
            (TimeDelta::days(729), "24 months"),
            (TimeDelta::days(730), "2 years"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn ago_of_a_timestamp() {
        let now = parse_time("2015-05-05T19:14:57Z").unwrap();
        assert_eq!(ago_str("2015-05-05T19:11:57Z", now), "3 minutes ago");
        assert_eq!(ago_str("not a time", now), "");
        assert_eq!(ago_str("", now), "");
    }
}
