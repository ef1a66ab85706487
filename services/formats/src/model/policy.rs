//! Tag policies: a spec tag that follows whichever other tag of its stream a
//! policy chooses, recomputed on every write that moves a tag.
//!
//! The shape is Flux's `ImagePolicy` (`filterTags` with `pattern` and
//! `extract`, then one of `semver`, `numerical`, `alphabetical`), plus
//! `newest`, the "newest build" of Argo CD Image Updater and Kargo:
//!
//! ```yaml
//! spec:
//!   tags:
//!   - name: latest-1.x
//!     policy:
//!       semver: {range: ">=1.0 <2"}
//!   - name: newest-build
//!     policy:
//!       filterTags: {pattern: '^build-(?P<n>\d+)$', extract: '$n'}
//!       numerical: {order: asc}
//! ```
//!
//! # The rules
//!
//! - **Candidates** are the stream's tags that have a current image, other
//!   than policy tags, that match `filterTags.pattern` (all when there is no
//!   filter) and whose compared value (`extract` expanded, else the tag) the
//!   order can read: a semantic version in the range, a number.
//! - **Semver** reads `1.2.3`, `v1.2.3`, `1.2` and `1` (missing parts are 0, as
//!   Masterminds' `NewVersion` that Flux uses). The range is Masterminds'
//!   syntax: comparators separated by spaces or commas all hold, `||` between
//!   alternatives, `1.2 - 1.4` hyphen ranges, `~`, `^`, `x` and `*`
//!   wildcards; a bare version is `=`. Pre-releases are candidates only when
//!   a comparator names a pre-release of the same version (`>=2.0.0-rc.0`),
//!   so `*` never chooses `2.0.0-rc.1`. The highest version wins; of equal
//!   versions (`1.2` and `1.2.0`) the greater tag.
//! - **Numerical** reads a decimal number; **alphabetical** compares bytes.
//!   `asc` (the default) chooses the highest, `desc` the lowest, as Flux.
//! - **Newest** chooses the candidate whose current image arrived last (its
//!   history's `created`), the greater tag on a tie.
//! - No candidate: the policy tag stays where it was.

use std::cmp::Ordering;

use chrono::{DateTime, FixedOffset};
use regex::{Regex, RegexBuilder};
use semver::{Version, VersionReq};

use super::{ImageStream, TagPolicy, TagReference};

/// The longest `filterTags.pattern` accepted.
pub const MAX_PATTERN_LEN: usize = 1024;

/// The largest compiled pattern accepted (the `regex` crate's size limit).
const MAX_PATTERN_SIZE: usize = 1 << 20;

/// What is wrong with a policy: the field under `policy` (`semver.range`) and
/// why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The field, relative to the policy.
    pub field: &'static str,
    /// The value given.
    pub value: String,
    /// Why it is refused.
    pub message: String,
    /// Whether the field is missing (else its value is wrong).
    pub required: bool,
}

impl PolicyError {
    fn new(field: &'static str, value: &str, message: impl Into<String>) -> Self {
        PolicyError {
            field,
            value: value.to_owned(),
            message: message.into(),
            required: false,
        }
    }

    fn required(field: &'static str, message: &str) -> Self {
        PolicyError {
            required: true,
            ..PolicyError::new(field, "", message)
        }
    }
}

/// Which candidate an order prefers: the highest (`asc`) or the lowest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The highest wins (Flux's default).
    Asc,
    /// The lowest wins.
    Desc,
}

/// How the candidates are ordered.
#[derive(Debug, Clone)]
pub enum Order {
    /// The highest version in any of the ranges.
    Semver(Vec<VersionReq>),
    /// By number.
    Numerical(Direction),
    /// By bytes.
    Alphabetical(Direction),
    /// By the time the current image arrived.
    Newest,
}

/// A checked [`TagPolicy`], ready to choose.
#[derive(Debug, Clone)]
pub struct Policy {
    filter: Option<(Regex, String)>,
    order: Order,
}

/// A tag a policy may choose: its name and its current image's `created`.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The tag.
    pub tag: &'a str,
    /// When its current image arrived (RFC 3339).
    pub created: &'a str,
}

/// What a policy chose among the tags it was shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice<'a> {
    /// The chosen tag; `None` when no tag was a candidate.
    pub chosen: Option<&'a str>,
    /// How many of the tags were candidates.
    pub candidates: usize,
}

/// The value a candidate is compared by.
#[derive(Debug, Clone, PartialEq)]
enum Key {
    Version(Version),
    Number(f64),
    Text(String),
    Time(DateTime<FixedOffset>),
}

impl Key {
    fn cmp(&self, other: &Key) -> Ordering {
        match (self, other) {
            (Key::Version(a), Key::Version(b)) => a.cmp_precedence(b),
            (Key::Number(a), Key::Number(b)) => a.total_cmp(b),
            (Key::Text(a), Key::Text(b)) => a.cmp(b),
            (Key::Time(a), Key::Time(b)) => a.cmp(b),
            _ => Ordering::Equal,
        }
    }
}

impl TagPolicy {
    /// Checks the policy and compiles its filter and range.
    pub fn compile(&self) -> Result<Policy, PolicyError> {
        let filter = match &self.filter_tags {
            None => None,
            Some(filter) => Some(compile_filter(&filter.pattern, &filter.extract)?),
        };
        let direction = |field: &'static str, order: &str| match order {
            "" | "asc" => Ok(Direction::Asc),
            "desc" => Ok(Direction::Desc),
            other => Err(PolicyError::new(
                field,
                other,
                r#"supported values: "asc", "desc""#,
            )),
        };
        let mut orders = Vec::new();
        if let Some(semver) = &self.semver {
            orders.push(Order::Semver(parse_range(&semver.range)?));
        }
        if let Some(numerical) = &self.numerical {
            orders.push(Order::Numerical(direction(
                "numerical.order",
                &numerical.order,
            )?));
        }
        if let Some(alphabetical) = &self.alphabetical {
            orders.push(Order::Alphabetical(direction(
                "alphabetical.order",
                &alphabetical.order,
            )?));
        }
        if self.newest.is_some() {
            orders.push(Order::Newest);
        }
        match orders.len() {
            1 => Ok(Policy {
                filter,
                order: orders.remove(0),
            }),
            0 => Err(PolicyError::required(
                "",
                "one of semver, numerical, alphabetical or newest is required",
            )),
            _ => Err(PolicyError::new(
                "",
                "",
                "only one of semver, numerical, alphabetical or newest may be set",
            )),
        }
    }
}

fn compile_filter(pattern: &str, extract: &str) -> Result<(Regex, String), PolicyError> {
    if pattern.is_empty() {
        return Err(PolicyError::required(
            "filterTags.pattern",
            "a regular expression is required",
        ));
    }
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(PolicyError::new(
            "filterTags.pattern",
            &pattern.chars().take(32).collect::<String>(),
            format!("may not be longer than {MAX_PATTERN_LEN} bytes"),
        ));
    }
    let regex = RegexBuilder::new(pattern)
        .size_limit(MAX_PATTERN_SIZE)
        .build()
        .map_err(|e| PolicyError::new("filterTags.pattern", pattern, one_line(&e.to_string())))?;
    for group in template_groups(extract) {
        let known = match group.parse::<usize>() {
            Ok(index) => index < regex.captures_len(),
            Err(_) => regex.capture_names().flatten().any(|name| name == group),
        };
        if !known {
            return Err(PolicyError::new(
                "filterTags.extract",
                extract,
                format!("the pattern has no group {group:?}"),
            ));
        }
    }
    Ok((regex, extract.to_owned()))
}

/// The last line of a regex error (the one that says what is wrong).
fn one_line(message: &str) -> String {
    message
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(message)
        .trim()
        .to_owned()
}

/// The groups `$name`, `${name}`, `$1` of an `extract` template (`$$` is a
/// dollar).
fn template_groups(template: &str) -> Vec<&str> {
    let mut groups = Vec::new();
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            rest = after;
        } else if let Some(braced) = rest.strip_prefix('{') {
            let end = braced.find('}').unwrap_or(braced.len());
            groups.push(&braced[..end]);
            rest = braced.get(end + 1..).unwrap_or("");
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if end > 0 {
                groups.push(&rest[..end]);
            }
            rest = &rest[end..];
        }
    }
    groups
}

/// Reads a version as Masterminds' `NewVersion`: an optional `v`, then one to
/// three numbers, a pre-release and build metadata.
pub fn parse_version(text: &str) -> Option<Version> {
    let text = text
        .strip_prefix('v')
        .or_else(|| text.strip_prefix('V'))
        .unwrap_or(text);
    let end = text.find(['-', '+']).unwrap_or(text.len());
    let (core, suffix) = text.split_at(end);
    let parts = core.split('.').count();
    if parts == 0
        || parts > 3
        || core
            .split('.')
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let padding = ".0".repeat(3 - parts);
    Version::parse(&format!("{core}{padding}{suffix}")).ok()
}

/// Reads a Masterminds range into alternatives the `semver` crate checks.
fn parse_range(range: &str) -> Result<Vec<VersionReq>, PolicyError> {
    let invalid = |message: String| PolicyError::new("semver.range", range, message);
    if range.trim().is_empty() {
        return Err(PolicyError::required(
            "semver.range",
            "a range is required, e.g. \">=1.0 <2\" or \"*\"",
        ));
    }
    range
        .split("||")
        .map(|alternative| {
            let comparators = comparators(alternative).map_err(&invalid)?;
            VersionReq::parse(&comparators.join(", "))
                .map_err(|e| invalid(format!("not a semver range: {e}")))
        })
        .collect()
}

/// The comparators of one alternative, in the `semver` crate's syntax.
fn comparators(alternative: &str) -> Result<Vec<String>, String> {
    const OPERATORS: [&str; 8] = [">=", "<=", "!=", ">", "<", "=", "~", "^"];
    let mut tokens: Vec<String> = Vec::new();
    let mut pending: Option<String> = None;
    for word in alternative
        .split([' ', '\t', ','])
        .filter(|w| !w.is_empty())
    {
        if let Some(operator) = pending.take() {
            tokens.push(format!("{operator}{word}"));
        } else if OPERATORS.contains(&word) {
            pending = Some(word.to_owned());
        } else {
            tokens.push(word.to_owned());
        }
    }
    if let Some(operator) = pending {
        return Err(format!("{operator:?} is not followed by a version"));
    }
    if tokens.is_empty() {
        return Err("an alternative between \"||\" is empty".into());
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens.get(i + 1).is_some_and(|t| t == "-") {
            let Some(high) = tokens.get(i + 2) else {
                return Err("a hyphen range needs a version on each side".into());
            };
            out.push(format!(">={}", strip_v(&tokens[i])));
            out.push(format!("<={}", strip_v(high)));
            i += 3;
            continue;
        }
        out.push(comparator(&tokens[i])?);
        i += 1;
    }
    Ok(out)
}

fn comparator(token: &str) -> Result<String, String> {
    if token.starts_with("!=") {
        return Err("\"!=\" is not supported; narrow the range instead".into());
    }
    let split = token
        .find(|c: char| !matches!(c, '>' | '<' | '=' | '~' | '^'))
        .unwrap_or(token.len());
    let (operator, version) = token.split_at(split);
    let version = strip_v(version);
    let wildcard = version
        .split('.')
        .any(|part| matches!(part, "*" | "x" | "X"));
    Ok(match operator {
        "" if wildcard => version.to_owned(),
        "" => format!("={version}"),
        _ => format!("{operator}{version}"),
    })
}

fn strip_v(version: &str) -> &str {
    version
        .strip_prefix('v')
        .or_else(|| version.strip_prefix('V'))
        .unwrap_or(version)
}

impl Policy {
    /// The value `tag` is compared by, when it is a candidate of this policy
    /// (`created`: when its current image arrived).
    fn key(&self, tag: &str, created: &str) -> Option<Key> {
        let value = match &self.filter {
            None => tag.to_owned(),
            Some((regex, extract)) => {
                let captures = regex.captures(tag)?;
                if extract.is_empty() {
                    tag.to_owned()
                } else {
                    let mut value = String::new();
                    captures.expand(extract, &mut value);
                    value
                }
            }
        };
        match &self.order {
            Order::Semver(ranges) => {
                let version = parse_version(&value)?;
                ranges
                    .iter()
                    .any(|range| range.matches(&version))
                    .then_some(Key::Version(version))
            }
            Order::Numerical(_) => value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .map(Key::Number),
            Order::Alphabetical(_) => Some(Key::Text(value)),
            Order::Newest => DateTime::parse_from_rfc3339(created).ok().map(Key::Time),
        }
    }

    /// Whether a tag named `tag` passes the filter (its image's time aside):
    /// a write that moves it may change what the policy chooses.
    pub fn may_choose(&self, tag: &str) -> bool {
        match self.order {
            Order::Newest => self.filter.as_ref().is_none_or(|(r, _)| r.is_match(tag)),
            _ => self.key(tag, "").is_some(),
        }
    }

    /// The candidate the policy chooses among `tags`, and how many there were.
    pub fn choose<'a>(&self, tags: impl IntoIterator<Item = Candidate<'a>>) -> Choice<'a> {
        let desc = matches!(
            self.order,
            Order::Numerical(Direction::Desc) | Order::Alphabetical(Direction::Desc)
        );
        let mut best: Option<(Key, &'a str)> = None;
        let mut candidates = 0;
        for candidate in tags {
            let Some(key) = self.key(candidate.tag, candidate.created) else {
                continue;
            };
            candidates += 1;
            let better = match &best {
                None => true,
                Some((best_key, best_tag)) => {
                    let by_key = if desc {
                        best_key.cmp(&key)
                    } else {
                        key.cmp(best_key)
                    };
                    by_key.then_with(|| candidate.tag.cmp(best_tag)) == Ordering::Greater
                }
            };
            if better {
                best = Some((key, candidate.tag));
            }
        }
        Choice {
            chosen: best.map(|(_, tag)| tag),
            candidates,
        }
    }

    /// A one-line account of the policy for `describe`, e.g.
    /// `semver ">=1.0 <2"` or `numerical asc of "$n" in /^build-(\d+)$/`.
    pub fn describe(policy: &TagPolicy) -> String {
        let order = |o: &str| {
            if o.is_empty() {
                "asc".to_owned()
            } else {
                o.to_owned()
            }
        };
        let mut text = if let Some(semver) = &policy.semver {
            format!("semver {:?}", semver.range)
        } else if let Some(numerical) = &policy.numerical {
            format!("numerical {}", order(&numerical.order))
        } else if let Some(alphabetical) = &policy.alphabetical {
            format!("alphabetical {}", order(&alphabetical.order))
        } else if policy.newest.is_some() {
            "newest".to_owned()
        } else {
            "none".to_owned()
        };
        if let Some(filter) = &policy.filter_tags {
            if filter.extract.is_empty() {
                text.push_str(&format!(" of tags matching /{}/", filter.pattern));
            } else {
                text.push_str(&format!(
                    " of {:?} in tags matching /{}/",
                    filter.extract, filter.pattern
                ));
            }
        }
        text
    }
}

/// The candidates a policy of `stream` is shown: every status tag with a
/// current image but the policy tags.
pub fn candidates(stream: &ImageStream) -> Vec<Candidate<'_>> {
    let policy_tag = |tag: &str| {
        stream
            .spec
            .tags
            .iter()
            .any(|spec| spec.name == tag && spec.policy.is_some())
    };
    let Some(status) = &stream.status else {
        return Vec::new();
    };
    status
        .tags
        .iter()
        .filter(|list| !policy_tag(&list.tag))
        .filter_map(|list| {
            Some(Candidate {
                tag: &list.tag,
                created: &list.items.first()?.created,
            })
        })
        .collect()
}

/// What the policy of the spec tag `spec` chooses in `stream`; `None` when the
/// tag has no policy.
pub fn choose_in<'a>(
    stream: &'a ImageStream,
    spec: &TagReference,
) -> Option<Result<Choice<'a>, PolicyError>> {
    let policy = spec.policy.as_ref()?;
    Some(policy.compile().map(|p| p.choose(candidates(stream))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NewestPolicy, OrderPolicy, SemverPolicy, TagFilter};

    /// The tags of the issue's acceptance list.
    const TAGS: [&str; 8] = [
        "1.0.0",
        "1.2.0",
        "1.10.0",
        "2.0.0-rc.1",
        "2.0.0",
        "latest",
        "build-17",
        "build-9",
    ];

    fn candidates(tags: &[&'static str]) -> Vec<Candidate<'static>> {
        tags.iter()
            .map(|tag| Candidate {
                tag,
                created: "2026-01-01T00:00:00Z",
            })
            .collect()
    }

    fn semver(range: &str) -> TagPolicy {
        TagPolicy {
            semver: Some(SemverPolicy {
                range: range.into(),
            }),
            ..TagPolicy::default()
        }
    }

    fn filtered(mut policy: TagPolicy, pattern: &str, extract: &str) -> TagPolicy {
        policy.filter_tags = Some(TagFilter {
            pattern: pattern.into(),
            extract: extract.into(),
        });
        policy
    }

    fn chosen(policy: &TagPolicy, tags: &[&'static str]) -> Option<&'static str> {
        policy
            .compile()
            .expect("a valid policy")
            .choose(candidates(tags))
            .chosen
    }

    #[test]
    fn semver_chooses_the_highest_version_in_the_range() {
        assert_eq!(chosen(&semver(">=1.0 <2"), &TAGS), Some("1.10.0"));
        assert_eq!(chosen(&semver(">=1.0, <2"), &TAGS), Some("1.10.0"));
        assert_eq!(chosen(&semver(">= 1.0 < 2"), &TAGS), Some("1.10.0"));
        assert_eq!(chosen(&semver("*"), &TAGS), Some("2.0.0"));
        assert_eq!(chosen(&semver("1.x"), &TAGS), Some("1.10.0"));
        assert_eq!(chosen(&semver("~1.2"), &TAGS), Some("1.2.0"));
        assert_eq!(chosen(&semver("^1"), &TAGS), Some("1.10.0"));
        assert_eq!(chosen(&semver("1.0 - 1.5"), &TAGS), Some("1.2.0"));
        assert_eq!(chosen(&semver("1.2.0"), &TAGS), Some("1.2.0"));
        assert_eq!(chosen(&semver("<1.0 || >=2.0.0"), &TAGS), Some("2.0.0"));
        assert_eq!(chosen(&semver(">=3"), &TAGS), None);
    }

    #[test]
    fn pre_releases_only_when_the_range_names_one() {
        let tags = ["1.10.0", "2.0.0-rc.1"];
        assert_eq!(chosen(&semver("*"), &tags), Some("1.10.0"));
        assert_eq!(chosen(&semver(">=1"), &tags), Some("1.10.0"));
        assert_eq!(chosen(&semver(">=2.0.0-rc.0"), &tags), Some("2.0.0-rc.1"));
    }

    #[test]
    fn versions_read_as_masterminds_does() {
        assert_eq!(parse_version("v1.2.3"), Version::parse("1.2.3").ok());
        assert_eq!(parse_version("1.2"), Version::parse("1.2.0").ok());
        assert_eq!(parse_version("7"), Version::parse("7.0.0").ok());
        assert_eq!(
            parse_version("2.0-rc.1+b5"),
            Version::parse("2.0.0-rc.1+b5").ok()
        );
        for not in ["latest", "build-17", "1.2.3.4", "1..2", "", "v", "1.2.x"] {
            assert_eq!(parse_version(not), None, "{not}");
        }
        // `1.2` and `1.2.0` are the same version: the greater tag wins
        assert_eq!(chosen(&semver("*"), &["1.2.0", "1.2"]), Some("1.2.0"));
        assert_eq!(chosen(&semver("*"), &["v1.10", "1.9.9"]), Some("v1.10"));
    }

    #[test]
    fn numerical_orders_the_extracted_number() {
        let numerical = |order: &str| TagPolicy {
            numerical: Some(OrderPolicy {
                order: order.into(),
            }),
            ..TagPolicy::default()
        };
        let builds = filtered(numerical(""), r"^build-(\d+)$", "$1");
        assert_eq!(chosen(&builds, &TAGS), Some("build-17"));
        let named = filtered(numerical("asc"), r"^build-(?P<n>\d+)$", "${n}");
        assert_eq!(chosen(&named, &TAGS), Some("build-17"));
        let lowest = filtered(numerical("desc"), r"^build-(?P<n>\d+)$", "$n");
        assert_eq!(chosen(&lowest, &TAGS), Some("build-9"));
        let choice = builds.compile().unwrap().choose(candidates(&TAGS));
        assert_eq!(choice.candidates, 2);
        // without a filter, the tags that read as numbers
        assert_eq!(chosen(&numerical(""), &["9", "10", "x"]), Some("10"));
    }

    #[test]
    fn alphabetical_asc_chooses_the_last_and_desc_the_first() {
        let alphabetical = |order: &str| TagPolicy {
            alphabetical: Some(OrderPolicy {
                order: order.into(),
            }),
            ..TagPolicy::default()
        };
        // bytes, not numbers: "build-9" > "build-17"
        assert_eq!(chosen(&alphabetical("asc"), &TAGS), Some("latest"));
        assert_eq!(chosen(&alphabetical("desc"), &TAGS), Some("1.0.0"));
        let builds = filtered(alphabetical(""), "^build-", "");
        assert_eq!(chosen(&builds, &TAGS), Some("build-9"));
    }

    #[test]
    fn newest_chooses_the_image_that_arrived_last() {
        let policy = TagPolicy {
            newest: Some(NewestPolicy {}),
            ..TagPolicy::default()
        }
        .compile()
        .unwrap();
        let tags = [
            Candidate {
                tag: "a",
                created: "2026-01-01T00:00:02Z",
            },
            Candidate {
                tag: "b",
                created: "2026-01-01T00:00:03+01:00",
            },
            Candidate {
                tag: "c",
                created: "not a time",
            },
        ];
        let choice = policy.choose(tags);
        assert_eq!(choice.chosen, Some("a"), "b is an hour earlier");
        assert_eq!(choice.candidates, 2);
        assert!(policy.may_choose("c"), "any tag may be the next to move");
    }

    #[test]
    fn bad_policies_name_the_field() {
        let error = |policy: TagPolicy| policy.compile().expect_err("refused");
        assert_eq!(error(TagPolicy::default()).field, "");
        let two = TagPolicy {
            newest: Some(NewestPolicy {}),
            ..semver("*")
        };
        assert!(error(two).message.contains("only one"));
        assert_eq!(error(semver("")).field, "semver.range");
        assert_eq!(error(semver(">=banana")).field, "semver.range");
        assert_eq!(error(semver(">=")).field, "semver.range");
        assert_eq!(error(semver("!=1.0")).field, "semver.range");
        assert_eq!(
            error(filtered(semver("*"), "(", "")).field,
            "filterTags.pattern"
        );
        assert_eq!(
            error(filtered(semver("*"), "", "")).field,
            "filterTags.pattern"
        );
        let unknown = error(filtered(semver("*"), r"^v(?P<v>.*)$", "$ver"));
        assert_eq!(unknown.field, "filterTags.extract");
        assert!(unknown.message.contains("\"ver\""), "{}", unknown.message);
        assert_eq!(
            error(filtered(semver("*"), r"^v(.*)$", "$2")).field,
            "filterTags.extract"
        );
        let bad_order = TagPolicy {
            numerical: Some(OrderPolicy { order: "up".into() }),
            ..TagPolicy::default()
        };
        assert_eq!(error(bad_order).field, "numerical.order");
    }

    #[test]
    fn describe_says_what_the_policy_does() {
        assert_eq!(
            Policy::describe(&semver(">=1.0 <2")),
            r#"semver ">=1.0 <2""#
        );
        assert_eq!(
            Policy::describe(&filtered(
                TagPolicy {
                    numerical: Some(OrderPolicy::default()),
                    ..TagPolicy::default()
                },
                r"^build-(\d+)$",
                "$1"
            )),
            r#"numerical asc of "$1" in tags matching /^build-(\d+)$/"#
        );
    }
}
