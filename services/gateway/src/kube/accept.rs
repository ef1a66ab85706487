//! What a Kubernetes client asks for in `Accept`: a `meta.k8s.io` Table, an
//! aggregated discovery document, or plain JSON.
//!
//! Kubernetes clients send lists of media ranges with parameters
//! (`application/json;as=Table;v=v1;g=meta.k8s.io,application/json`). We
//! answer the first range we implement and fall back to plain JSON for
//! everything else, never 406: kubectl has no fallback of its own, and its
//! Table, discovery, OpenAPI and event requests all carry such lists.

/// One media range of an `Accept` header: `type/subtype` and its `g`, `v`
/// and `as` parameters (others are ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct MediaRange {
    essence: String,
    group: String,
    version: String,
    kind: String,
}

fn ranges(accept: &str) -> impl Iterator<Item = MediaRange> + '_ {
    accept.split(',').map(|range| {
        let mut parts = range.split(';');
        let mut media = MediaRange {
            essence: parts.next().unwrap_or_default().trim().to_ascii_lowercase(),
            ..MediaRange::default()
        };
        for parameter in parts {
            let Some((key, value)) = parameter.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"').to_owned();
            match key.trim() {
                "g" => media.group = value,
                "v" => media.version = value,
                "as" => media.kind = value,
                _ => {}
            }
        }
        media
    })
}

fn is_json(essence: &str) -> bool {
    matches!(essence, "application/json" | "*/*" | "application/*")
}

/// The `meta.k8s.io` Table version a client asks for, if any: `v1` or `v1beta1`.
pub(crate) fn table_version(accept: &str) -> Option<&'static str> {
    ranges(accept)
        .find_map(|m| {
            let table = m.kind == "Table" && m.group == "meta.k8s.io" && is_json(&m.essence);
            match (table, m.version.as_str()) {
                (true, "v1") => Some(Some("v1")),
                (true, "v1beta1") => Some(Some("v1beta1")),
                // a plain JSON range before any Table one: the client prefers JSON
                (false, _) if m.kind.is_empty() && is_json(&m.essence) => Some(None),
                _ => None,
            }
        })
        .flatten()
}

/// The aggregated discovery version a client asks for, if any: `v2` or
/// `v2beta1` of `apidiscovery.k8s.io`, first one wins.
pub(crate) fn discovery_version(accept: &str) -> Option<&'static str> {
    ranges(accept)
        .find_map(|m| {
            let aggregated = m.kind == "APIGroupDiscoveryList"
                && m.group == "apidiscovery.k8s.io"
                && is_json(&m.essence);
            match (aggregated, m.version.as_str()) {
                (true, "v2") => Some(Some("v2")),
                (true, "v2beta1") => Some(Some("v2beta1")),
                (false, _) if m.kind.is_empty() && is_json(&m.essence) => Some(None),
                _ => None,
            }
        })
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECTL_TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    const KUBECTL_DISCOVERY: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

    #[test]
    fn kubectl_asks_for_a_table() {
        assert_eq!(table_version(KUBECTL_TABLE), Some("v1"));
        assert_eq!(
            table_version("application/json;as=Table;v=v1beta1;g=meta.k8s.io"),
            Some("v1beta1")
        );
        assert_eq!(table_version("application/json"), None);
        assert_eq!(table_version(""), None);
        // plain JSON first: the client prefers it
        assert_eq!(
            table_version("application/json,application/json;as=Table;v=v1;g=meta.k8s.io"),
            None
        );
        // parameters in any order, spaces, an unknown version
        assert_eq!(
            table_version("application/json; g=meta.k8s.io; v=v1; as=Table"),
            Some("v1")
        );
        assert_eq!(
            table_version("application/json;as=Table;v=v9;g=meta.k8s.io"),
            None
        );
    }

    #[test]
    fn discovery_follows_the_version_asked() {
        assert_eq!(discovery_version(KUBECTL_DISCOVERY), Some("v2"));
        // kubectl 1.27-1.29
        assert_eq!(
            discovery_version(
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
            ),
            Some("v2beta1")
        );
        // python-kubernetes
        assert_eq!(discovery_version("application/json"), None);
        assert_eq!(
            discovery_version("application/vnd.kubernetes.protobuf,application/json"),
            None
        );
    }
}
