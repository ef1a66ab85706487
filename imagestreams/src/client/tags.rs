//! How `oc` orders and abbreviates tags: newest first in tables
//! (`SortStatusTags`, `printTagsUpToWidth`), by version in descriptions
//! (`PrioritizeTags`), and which spec tags merely follow another tag of the
//! same stream (`FollowTagReference`).

use std::cmp::Ordering;

use imagestreams_common::model::{FROM_IMAGE_STREAM_TAG, ImageStream, NamedTagEventList};

use super::humanize::parse_time;

/// The budget of the TAGS column of `get is`.
pub const TAGS_COLUMN_WIDTH: usize = 40;

/// Status tag names, the most recently updated first; ties (timestamps have
/// seconds precision) by name.
pub fn sort_status_tags(tags: &[NamedTagEventList]) -> Vec<String> {
    let mut keyed: Vec<(Option<i64>, &str)> = tags
        .iter()
        .map(|t| {
            let created = t
                .latest()
                .and_then(|e| parse_time(&e.created))
                .map(|c| c.timestamp());
            (created, t.tag.as_str())
        })
        .collect();
    // Newest first; a tag without history (None) sorts last.
    keyed.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    keyed.into_iter().map(|(_, t)| t.to_owned()).collect()
}

/// `printTagsUpToWidth`: as many tags, newest first, as fit in `width`
/// characters (at least one, a little more when that evens the edge), then
/// ` + N more...`.
pub fn tags_up_to_width(tags: &[NamedTagEventList], width: usize) -> String {
    let sorted = sort_status_tags(tags);
    let width = width as isize;
    let margin = width / 4;
    let mut remaining = width;
    let mut shown = sorted.len();
    for (i, tag) in sorted.iter().enumerate() {
        let len = tag.len() as isize;
        remaining -= len + 1;
        if remaining >= 0 {
            continue;
        }
        if i == 0 {
            shown = 1;
            break;
        }
        // More than a quarter of the width is left unfilled, and this tag
        // overshoots by less than a quarter: keep going for a less ragged edge.
        if margin < remaining + len && margin >= -remaining {
            continue;
        }
        shown = i;
        break;
    }
    let joined = sorted[..shown].join(",");
    match sorted.len() - shown {
        0 => joined,
        hidden => format!("{joined} + {hidden} more..."),
    }
}

/// `PrioritizeTags`: `latest` first, then minor versions (`5.1`, `v5.1`,
/// `5.1-rc1`) newest first, then full semantic versions newest first, then
/// every other tag in lexicographic order.
pub fn prioritize_tags(tags: &mut [String]) {
    tags.sort_by(|a, b| compare_prioritized(&Prioritized::of(a), &Prioritized::of(b)));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Priority {
    Latest,
    Minor,
    Full,
    Other,
}

struct Prioritized<'a> {
    tag: &'a str,
    priority: Priority,
    version: Option<SemVer>,
    prefix: &'a str,
}

impl<'a> Prioritized<'a> {
    fn of(tag: &'a str) -> Self {
        let other = |prefix| Prioritized {
            tag,
            priority: Priority::Other,
            version: None,
            prefix,
        };
        if tag == "latest" {
            return Prioritized {
                priority: Priority::Latest,
                ..other("")
            };
        }
        let (prefix, short) = match tag.strip_prefix('v') {
            Some(rest) => ("v", rest),
            None => ("", tag),
        };
        if let Some(v) = SemVer::parse(short) {
            return Prioritized {
                priority: Priority::Full,
                version: Some(v),
                ..other(prefix)
            };
        }
        if let Some(v) = minor_version(short) {
            return Prioritized {
                priority: Priority::Minor,
                version: Some(v),
                ..other(prefix)
            };
        }
        other(prefix)
    }
}

fn compare_prioritized(a: &Prioritized, b: &Prioritized) -> Ordering {
    a.priority
        .cmp(&b.priority)
        .then_with(|| match (a.priority, &a.version, &b.version) {
            (Priority::Other, _, _) => a.tag.cmp(b.tag),
            // Newer versions first.
            (_, Some(va), Some(vb)) => vb.cmp(va).then_with(|| a.prefix.cmp(b.prefix)),
            _ => Ordering::Equal,
        })
}

/// `5.1` as 5.1.0, and `5.1-rc1` as 5.1.0-rc1.
fn minor_version(short: &str) -> Option<SemVer> {
    let (numbers, suffix) = match short.split_once('-') {
        Some((n, s)) => (n, Some(s)),
        None => (short, None),
    };
    let (major, minor) = numbers.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(major) || !digits(minor) {
        return None;
    }
    if let Some(s) = suffix {
        // `\w+`
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return None;
        }
    }
    let full = match suffix {
        Some(s) => format!("{major}.{minor}.0-{s}"),
        None => format!("{major}.{minor}.0"),
    };
    SemVer::parse(&full)
}

/// A semantic version 2.0.0 (`MAJOR.MINOR.PATCH[-PRE][+BUILD]`), compared by
/// precedence (build metadata ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
struct SemVer {
    core: (u64, u64, u64),
    pre: Vec<PreId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PreId {
    Numeric(u64),
    Alpha(String),
}

impl SemVer {
    fn parse(s: &str) -> Option<SemVer> {
        let (s, build) = match s.split_once('+') {
            Some((v, b)) => (v, Some(b)),
            None => (s, None),
        };
        if let Some(build) = build
            && !build.split('.').all(is_identifier)
        {
            return None;
        }
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (s, None),
        };
        let mut parts = core.split('.');
        let mut number = || parts.next().and_then(numeric);
        let core = (number()?, number()?, number()?);
        if parts.next().is_some() {
            return None;
        }
        let pre = match pre {
            None => Vec::new(),
            Some(p) => p
                .split('.')
                .map(|id| {
                    if !is_identifier(id) {
                        None
                    } else if id.bytes().all(|b| b.is_ascii_digit()) {
                        numeric(id).map(PreId::Numeric)
                    } else {
                        Some(PreId::Alpha(id.to_owned()))
                    }
                })
                .collect::<Option<Vec<_>>>()?,
        };
        Some(SemVer { core, pre })
    }
}

/// A number without leading zeros.
fn numeric(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl Ord for SemVer {
    fn cmp(&self, other: &Self) -> Ordering {
        self.core.cmp(&other.core).then_with(|| {
            match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                // A pre-release is older than its release.
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    for (a, b) in self.pre.iter().zip(&other.pre) {
                        let o = match (a, b) {
                            (PreId::Numeric(x), PreId::Numeric(y)) => x.cmp(y),
                            (PreId::Numeric(_), PreId::Alpha(_)) => Ordering::Less,
                            (PreId::Alpha(_), PreId::Numeric(_)) => Ordering::Greater,
                            (PreId::Alpha(x), PreId::Alpha(y)) => x.cmp(y),
                        };
                        if o != Ordering::Equal {
                            return o;
                        }
                    }
                    self.pre.len().cmp(&other.pre.len())
                }
            }
        })
    }
}

impl PartialOrd for SemVer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// `FollowTagReference`: the spec tag that `tag` ends at after following
/// `ImageStreamTag` sources within this stream, and whether it followed at
/// least one. `None` for a loop, a missing tag or a reference to another stream.
pub fn follow_tag_reference<'a>(stream: &'a ImageStream, tag: &'a str) -> Option<(&'a str, bool)> {
    let mut tag = tag;
    let mut multiple = false;
    let mut seen = Vec::new();
    loop {
        if seen.contains(&tag) {
            return None;
        }
        seen.push(tag);
        let spec = stream.spec_tag(tag)?;
        let from = match &spec.from {
            Some(from) if from.kind == FROM_IMAGE_STREAM_TAG => from,
            _ => return Some((tag, multiple)),
        };
        if !from.namespace.is_empty() && from.namespace != stream.metadata.namespace {
            return None;
        }
        tag = match from.name.split_once(':') {
            Some((name, t)) if name == stream.metadata.name && !t.is_empty() => t,
            Some(_) => return None,
            None => &from.name,
        };
        multiple = true;
    }
}

#[cfg(test)]
mod tests {
    use imagestreams_common::model::{ObjectReference, TagEvent, TagReference};

    use super::*;

    fn history(tag: &str, created: &str) -> NamedTagEventList {
        NamedTagEventList {
            tag: tag.to_owned(),
            items: if created.is_empty() {
                vec![]
            } else {
                vec![TagEvent {
                    created: created.to_owned(),
                    ..TagEvent::default()
                }]
            },
            conditions: vec![],
        }
    }

    #[test]
    fn newest_first_then_by_name() {
        let tags = [
            history("old", "2015-05-05T19:11:58Z"),
            history("b", "2015-05-05T19:12:00Z"),
            history("a", "2015-05-05T19:12:00Z"),
            history("none", ""),
        ];
        assert_eq!(sort_status_tags(&tags), ["a", "b", "old", "none"]);
    }

    #[test]
    fn tags_are_cut_to_the_width() {
        let tags: Vec<_> = (0..10)
            .map(|i| history(&format!("tag-{i}"), &format!("2015-05-05T19:1{i}:00Z")))
            .collect();
        // 5 chars and a comma each: 6 fit in 40, the 7th overshoots past the margin.
        assert_eq!(
            tags_up_to_width(&tags, TAGS_COLUMN_WIDTH),
            "tag-9,tag-8,tag-7,tag-6,tag-5,tag-4 + 4 more..."
        );
        let one = [history(&"x".repeat(50), "2015-05-05T19:11:58Z")];
        assert_eq!(tags_up_to_width(&one, TAGS_COLUMN_WIDTH), "x".repeat(50));
        let two = [
            history(&"x".repeat(50), "2015-05-05T19:11:59Z"),
            history("y", "2015-05-05T19:11:58Z"),
        ];
        assert_eq!(
            tags_up_to_width(&two, TAGS_COLUMN_WIDTH),
            format!("{} + 1 more...", "x".repeat(50))
        );
        assert_eq!(tags_up_to_width(&[], TAGS_COLUMN_WIDTH), "");
    }

    #[test]
    fn prioritized_like_oc() {
        let mut tags: Vec<String> = [
            "other",
            "5.1.3",
            "v5.1",
            "latest",
            "5.2",
            "5.1-rc1",
            "5.1",
            "abc",
            "5.1.3-beta",
            "v5.1.4",
        ]
        .map(String::from)
        .to_vec();
        prioritize_tags(&mut tags);
        assert_eq!(
            tags,
            [
                "latest",
                "5.2",
                "5.1",
                "v5.1",
                "5.1-rc1",
                "v5.1.4",
                "5.1.3",
                "5.1.3-beta",
                "abc",
                "other"
            ]
        );
    }

    #[test]
    fn semver_precedence() {
        let v = |s| SemVer::parse(s).unwrap();
        assert!(v("1.0.0-alpha") < v("1.0.0-alpha.1"));
        assert!(v("1.0.0-alpha.1") < v("1.0.0-alpha.beta"));
        assert!(v("1.0.0-beta.2") < v("1.0.0-beta.11"));
        assert!(v("1.0.0-rc.1") < v("1.0.0"));
        assert_eq!(v("1.0.0+build"), v("1.0.0"));
        for bad in ["1.0", "01.0.0", "1.0.0-", "1.0.0-a_b", "a.b.c", "1.0.0.0"] {
            assert!(SemVer::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn follows_references_within_the_stream() {
        let mut is = ImageStream::new("ns", "ruby");
        let tag = |name: &str, kind: &str, from: &str| TagReference {
            name: name.to_owned(),
            from: Some(ObjectReference {
                kind: kind.to_owned(),
                name: from.to_owned(),
                ..ObjectReference::default()
            }),
            ..TagReference::default()
        };
        is.spec.tags = vec![
            tag("3.3", "DockerImage", "ruby:3.3"),
            tag("latest", FROM_IMAGE_STREAM_TAG, "3.3"),
            tag("stable", FROM_IMAGE_STREAM_TAG, "ruby:latest"),
            tag("other", FROM_IMAGE_STREAM_TAG, "python:3"),
            tag("loop-a", FROM_IMAGE_STREAM_TAG, "loop-b"),
            tag("loop-b", FROM_IMAGE_STREAM_TAG, "loop-a"),
        ];
        assert_eq!(follow_tag_reference(&is, "3.3"), Some(("3.3", false)));
        assert_eq!(follow_tag_reference(&is, "latest"), Some(("3.3", true)));
        assert_eq!(follow_tag_reference(&is, "stable"), Some(("3.3", true)));
        assert_eq!(follow_tag_reference(&is, "other"), None);
        assert_eq!(follow_tag_reference(&is, "loop-a"), None);
        assert_eq!(follow_tag_reference(&is, "missing"), None);
    }
}
