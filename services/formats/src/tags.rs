//! Tag lists: the `Link: <…>; rel="next"` header of a paged `tags/list`, restricted to the origin that sent
//! it, and OpenShift's priority order for choosing which tags to import when there are too many.

use std::cmp::Ordering;

use url::Url;

/// A tag list as read from a registry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TagList {
    /// The tags, in the registry's order, without duplicates.
    pub tags: Vec<String>,
    /// `tags/list` pages read.
    pub pages: u32,
    /// Whether more tags were left unread because of the client's `Limits::max_listed_tags` or
    /// `Limits::max_tag_pages`.
    pub truncated: bool,
}

/// The tags of one `tags/list` page body, `{"name": …, "tags": [string] | null}`, in the page's order. A
/// missing or `null` `tags` (distribution's answer for an empty repository) is no tags; other fields are
/// ignored.
pub fn parse_tag_page(body: &[u8]) -> Result<Vec<String>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Page {
        #[serde(default)]
        tags: Option<Vec<String>>,
    }
    let page: Page = serde_json::from_slice(body)?;
    Ok(page.tags.unwrap_or_default())
}

/// Why a `Link` header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The next page is on another scheme, host or port.
    #[error("the next page is on another origin: {0}")]
    ForeignOrigin(String),
    /// The `<…>` of the next page is not a URL.
    #[error("the next-page link is not a valid URL")]
    Invalid,
}

/// The `rel="next"` target of `Link` header values, resolved against `base` (the URL of the page that sent
/// them). A link to another scheme, host or port is an error: it is never followed. `Ok(None)` when there is
/// no next page.
pub fn next_link<'a, I>(values: I, base: &Url) -> Result<Option<Url>, LinkError>
where
    I: IntoIterator<Item = &'a str>,
{
    for value in values {
        for (target, params) in split_links(value) {
            let is_next = params.iter().any(|(k, v)| {
                k.eq_ignore_ascii_case("rel")
                    && v.split_ascii_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
            });
            if !is_next {
                continue;
            }
            let url = base.join(target).map_err(|_| LinkError::Invalid)?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(LinkError::ForeignOrigin(url.scheme().to_owned()));
            }
            if url.origin() != base.origin() {
                return Err(LinkError::ForeignOrigin(url.origin().ascii_serialization()));
            }
            return Ok(Some(url));
        }
    }
    Ok(None)
}

/// `<target>; k=v; k="v", <target2>; …` → [(target, [(k, v)])]. Commas inside `<…>` or quotes do not split.
fn split_links(value: &str) -> Vec<(&str, Vec<(String, String)>)> {
    let mut out = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        let Some(after) = rest.strip_prefix('<') else {
            break;
        };
        let Some(end) = after.find('>') else {
            break;
        };
        let target = &after[..end];
        rest = &after[end + 1..];
        let mut params = Vec::new();
        loop {
            rest = rest.trim_start_matches([' ', '\t']);
            let Some(after_semi) = rest.strip_prefix(';') else {
                break;
            };
            rest = after_semi.trim_start_matches([' ', '\t']);
            let name_end = rest
                .find(|c: char| c == '=' || c == ';' || c == ',' || c.is_whitespace())
                .unwrap_or(rest.len());
            let name = rest[..name_end].to_owned();
            rest = rest[name_end..].trim_start_matches([' ', '\t']);
            let mut v = String::new();
            if let Some(after_eq) = rest.strip_prefix('=') {
                rest = after_eq.trim_start_matches([' ', '\t']);
                if let Some(q) = rest.strip_prefix('"') {
                    let close = q.find('"').unwrap_or(q.len());
                    v = q[..close].to_owned();
                    rest = q.get(close + 1..).unwrap_or("");
                } else {
                    let end = rest.find([';', ',']).unwrap_or(rest.len());
                    v = rest[..end].trim().to_owned();
                    rest = &rest[end..];
                }
            }
            params.push((name, v));
        }
        out.push((target, params));
    }
    out
}

/// OpenShift's tag priority classes, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Latest,
    /// `5.1`, `v5.1`, `5.1-rc1`.
    Minor,
    /// Full semantic versions: `5.1.3`, `v5.1.3-other`.
    Full,
    Other,
}

struct Ranked<'a> {
    tag: &'a str,
    class: Class,
    version: Option<semver::Version>,
    v_prefix: bool,
}

fn rank(tag: &str) -> Ranked<'_> {
    let ranked = |class, version| Ranked {
        tag,
        class,
        version,
        v_prefix: tag.starts_with('v'),
    };
    if tag == "latest" {
        return ranked(Class::Latest, None);
    }
    let short = tag.strip_prefix('v').unwrap_or(tag);
    if let Ok(v) = semver::Version::parse(short) {
        return ranked(Class::Full, Some(v));
    }
    let is_num = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let minor = |s: &str| {
        s.split_once('.')
            .is_some_and(|(a, b)| is_num(a) && is_num(b))
    };
    if minor(short)
        && let Ok(v) = semver::Version::parse(&format!("{short}.0"))
    {
        return ranked(Class::Minor, Some(v));
    }
    // `5.1-rc1`: a minor version, a dash, and a word (`\w+`).
    if let Some((base, suffix)) = short.split_once('-')
        && minor(base)
        && !suffix.is_empty()
        && suffix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && let Ok(v) = semver::Version::parse(&format!("{base}.0-{suffix}"))
    {
        return ranked(Class::Minor, Some(v));
    }
    ranked(Class::Other, None)
}

fn compare(a: &Ranked<'_>, b: &Ranked<'_>) -> Ordering {
    a.class
        .cmp(&b.class)
        .then_with(|| match (&a.version, &b.version) {
            // Newest first; at equal precedence `5.1` before `v5.1`, then by the tag itself so the order is total.
            (Some(va), Some(vb)) => vb
                .cmp_precedence(va)
                .then_with(|| a.v_prefix.cmp(&b.v_prefix))
                .then_with(|| a.tag.cmp(b.tag)),
            _ => a.tag.cmp(b.tag),
        })
}

/// Orders tags as OpenShift does when it imports a whole repository (library-go `PrioritizeTags`): `latest`
/// first; then minor versions (`5.1`, `v5.1`, `5.1-rc1`), newest first; then full semantic versions (`5.1.3`,
/// `v5.1.3-other`), newest first; then every other tag in lexicographic order.
pub fn prioritize_tags<S: AsRef<str>>(tags: &[S]) -> Vec<String> {
    let mut ranked: Vec<Ranked<'_>> = tags.iter().map(|t| rank(t.as_ref())).collect();
    ranked.sort_by(compare);
    ranked.into_iter().map(|r| r.tag.to_owned()).collect()
}

/// The `max` tags an import takes: the first `max` of [`prioritize_tags`].
pub fn select_tags<S: AsRef<str>>(tags: &[S], max: usize) -> Vec<String> {
    let mut out = prioritize_tags(tags);
    out.truncate(max);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_page_gives_its_tags_in_order() {
        let page = br#"{"name":"ns/app","tags":["v2","latest","v1"]}"#;
        assert_eq!(parse_tag_page(page).unwrap(), ["v2", "latest", "v1"]);
        for empty in [
            &br#"{"name":"ns/app","tags":null}"#[..],
            br#"{"name":"ns/app"}"#,
        ] {
            assert_eq!(parse_tag_page(empty).unwrap(), Vec::<String>::new());
        }
        for bad in [
            &br#"{"tags":"latest"}"#[..],
            br#"{"tags":[1]}"#,
            b"[]x",
            b"",
        ] {
            assert!(
                parse_tag_page(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn base() -> Url {
        Url::parse("https://reg.example:5000/v2/ns/app/tags/list?n=2").unwrap()
    }

    #[test]
    fn follows_relative_and_absolute_next_links_on_the_same_origin() {
        let next = next_link(
            [r#"</v2/ns/app/tags/list?n=2&last=b>; rel="next""#],
            &base(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            next.as_str(),
            "https://reg.example:5000/v2/ns/app/tags/list?n=2&last=b"
        );
        let next = next_link(
            ["<https://reg.example:5000/v2/ns/app/tags/list?last=c&n=2>;rel=next"],
            &base(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(next.query(), Some("last=c&n=2"));
        // Several links in one value, and rel lists.
        let next = next_link(
            [r#"</first>; rel="first", <list?last=d>; title="a, b"; rel="prev next""#],
            &base(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(next.path(), "/v2/ns/app/tags/list");
        assert_eq!(next.query(), Some("last=d"));
        assert_eq!(next_link([r#"</x>; rel="prev""#], &base()).unwrap(), None);
        assert_eq!(next_link(Vec::<&str>::new(), &base()).unwrap(), None);
    }

    #[test]
    fn refuses_links_to_another_origin() {
        for link in [
            r#"<https://evil.example/v2/ns/app/tags/list?last=b>; rel="next""#,
            r#"<https://reg.example:5001/v2/ns/app/tags/list>; rel="next""#,
            r#"<http://reg.example:5000/v2/ns/app/tags/list>; rel="next""#,
            r#"<//evil.example/v2/x>; rel="next""#,
            r#"<https://reg.example:5000@evil.example/x>; rel="next""#,
            r#"<file:///etc/passwd>; rel="next""#,
        ] {
            let err = next_link([link], &base()).unwrap_err();
            assert!(
                matches!(err, LinkError::ForeignOrigin(_)),
                "{link}: {err:?}"
            );
        }
        // The default port is the same origin.
        let base = Url::parse("https://reg.example/v2/a/tags/list").unwrap();
        assert!(
            next_link(
                [r#"<https://reg.example:443/v2/a/tags/list?last=x>; rel="next""#],
                &base
            )
            .unwrap()
            .is_some()
        );
    }

    #[test]
    fn prioritizes_like_openshift() {
        let tags = [
            "v1.2.3",
            "1.10",
            "abc",
            "latest",
            "1.2.10",
            "1.2.3-rc1",
            "v1.9",
            "1.10-beta",
            "2.0.0",
            "0.9",
            "1.9",
            "zzz",
            "5",
            "1.2.3",
        ];
        assert_eq!(
            prioritize_tags(&tags),
            [
                "latest",
                // minor versions, newest first; a pre-release after its release; `1.9` before `v1.9`
                "1.10",
                "1.10-beta",
                "1.9",
                "v1.9",
                "0.9",
                // full versions, newest first
                "2.0.0",
                "1.2.10",
                "1.2.3",
                "v1.2.3",
                "1.2.3-rc1",
                // the rest, lexicographically (`5` is not a version here, as in OpenShift)
                "5",
                "abc",
                "zzz",
            ]
        );
    }

    #[test]
    fn selects_the_first_max_and_is_total() {
        let tags: Vec<String> = (0..100)
            .map(|i| format!("1.{i}"))
            .chain(["latest".into()])
            .collect();
        assert_eq!(select_tags(&tags, 3), ["latest", "1.99", "1.98"]);
        assert_eq!(select_tags(&tags, 0), Vec::<String>::new());
        assert_eq!(select_tags(&["b", "a"], 10), ["a", "b"]);
        // Build metadata has equal precedence: the tag breaks the tie, so the order does not depend on input order.
        assert_eq!(
            prioritize_tags(&["1.0.0+b", "1.0.0+a"]),
            prioritize_tags(&["1.0.0+a", "1.0.0+b"])
        );
    }
}
