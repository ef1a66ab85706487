//! Fuzzes the tag-syncer's `tags/list` handling: `next_link` (the `Link:
//! <…>; rel="next"` header, same origin only) and the order of the listed
//! tags (`prioritize_tags`, `select_tags`).
//!
//! Input, as text: the first line is the URL of the page (a default one when
//! it is not an http(s) URL), the lines up to the first empty line are `Link`
//! header values, and the rest is the page's body: a `tags/list` JSON object
//! (`{"name": …, "tags": […]}`), else whitespace-separated tags.
//!
//! The body goes through `parse_tag_page`, the function the client's
//! `list_tags` reads each page with.
#![no_main]

use imagestreams_formats::tags::{
    LinkError, next_link, parse_tag_page, prioritize_tags, select_tags,
};
use libfuzzer_sys::fuzz_target;
use url::Url;

const DEFAULT_BASE: &str = "https://registry.example:5000/v2/ns/app/tags/list?n=100";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
    let base = Url::parse(first)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .unwrap_or_else(|| Url::parse(DEFAULT_BASE).expect("a valid URL"));
    let (links, body) = rest.split_once("\n\n").unwrap_or((rest, ""));
    let links: Vec<&str> = links.lines().collect();

    check_links(&links, &base);
    for value in &links {
        check_one_target(value, &base);
    }
    check_tags(&page_tags(body));
});

fn check_links(values: &[&str], base: &Url) {
    match next_link(values.iter().copied(), base) {
        Ok(Some(url)) => {
            assert!(matches!(url.scheme(), "http" | "https"), "{url}");
            assert_eq!(url.origin(), base.origin(), "{url} from {base}");
        }
        Ok(None) | Err(LinkError::Invalid) => {}
        Err(LinkError::ForeignOrigin(origin)) => {
            assert_ne!(origin, base.origin().ascii_serialization());
        }
    }
    // Without any value there is no next page; with the values read one at a
    // time the first one that decides, decides.
    assert_eq!(next_link(std::iter::empty(), base), Ok(None));
    let one_by_one = values
        .iter()
        .map(|v| next_link([*v], base))
        .find(|r| *r != Ok(None))
        .unwrap_or(Ok(None));
    assert_eq!(next_link(values.iter().copied(), base), one_by_one);
}

/// A link built from `raw` as its target: `rel="next"` follows exactly what
/// `Url::join` gives when it stays on the origin; any other `rel` is no next
/// page; a `prev` link before it changes nothing.
fn check_one_target(raw: &str, base: &Url) {
    let target: String = raw.chars().filter(|c| *c != '>').collect();
    let want = match base.join(&target) {
        Err(_) => Err(LinkError::Invalid),
        Ok(url) if !matches!(url.scheme(), "http" | "https") => {
            Err(LinkError::ForeignOrigin(url.scheme().to_owned()))
        }
        Ok(url) if url.origin() != base.origin() => {
            Err(LinkError::ForeignOrigin(url.origin().ascii_serialization()))
        }
        Ok(url) => Ok(Some(url)),
    };
    for value in [
        format!("<{target}>; rel=\"next\""),
        format!("<{target}>;rel=next"),
        format!("</v2/other/tags/list>; rel=\"prev\", <{target}>; rel=\"first next\""),
    ] {
        assert_eq!(next_link([value.as_str()], base), want, "{value:?}");
    }
    assert_eq!(
        next_link([format!("<{target}>; rel=\"prev\"").as_str()], base),
        Ok(None)
    );
}

/// The tags of a page body as the client reads them; whitespace-separated
/// words when the body is not a tag list.
fn page_tags(body: &str) -> Vec<String> {
    match parse_tag_page(body.as_bytes()) {
        Ok(tags) => tags,
        Err(_) => body.split_whitespace().map(str::to_owned).collect(),
    }
}

fn check_tags(tags: &[String]) {
    let ordered = prioritize_tags(tags);
    // A permutation of the input.
    let mut sorted_in = tags.to_vec();
    sorted_in.sort();
    let mut sorted_out = ordered.clone();
    sorted_out.sort();
    assert_eq!(sorted_in, sorted_out, "not a permutation");
    // A total order: the input order does not matter.
    let mut reversed = tags.to_vec();
    reversed.reverse();
    assert_eq!(
        prioritize_tags(&reversed),
        ordered,
        "depends on input order"
    );
    assert_eq!(prioritize_tags(&ordered), ordered, "not idempotent");
    if tags.iter().any(|t| t == "latest") {
        assert_eq!(ordered[0], "latest");
    }
    for max in [0, 1, tags.len() / 2, tags.len(), tags.len() + 1] {
        let selected = select_tags(tags, max);
        assert_eq!(selected, ordered[..max.min(ordered.len())]);
    }
}
