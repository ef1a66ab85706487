//! Request parameters shared by gRPC and REST: namespaces and names, label
//! selectors, page limits, continue tokens and resource versions. Every
//! parser names the parameter it rejects, in the caller's spelling.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use imagestreams_common::{error::ApiError, model};
use imagestreams_stream_store_api::selector::Selector;

/// A required namespace: a DNS-1123 label.
pub(crate) fn namespace(value: &str, field: &str) -> Result<(), ApiError> {
    if value.is_empty() {
        return Err(ApiError::invalid(field, format!("{field}: Required value")));
    }
    if !model::is_dns1123_label(value) {
        return Err(ApiError::invalid(
            field,
            format!("{field}: Invalid value: {value:?}: must be a lowercase RFC 1123 label"),
        ));
    }
    Ok(())
}

/// An optional namespace: empty means every namespace.
pub(crate) fn namespace_or_all(value: &str, field: &str) -> Result<Option<String>, ApiError> {
    if value.is_empty() {
        return Ok(None);
    }
    namespace(value, field)?;
    Ok(Some(value.to_owned()))
}

/// A required stream name. Only emptiness is checked: a name that could
/// never have been created is simply not found.
pub(crate) fn name(value: &str, field: &str) -> Result<(), ApiError> {
    if value.is_empty() {
        return Err(ApiError::invalid(field, format!("{field}: Required value")));
    }
    Ok(())
}

/// A label selector; empty selects everything.
pub(crate) fn selector(text: &str) -> Result<Selector, ApiError> {
    Ok(Selector::parse(text)?)
}

/// A page size; `0` (or absent) means no limit.
pub(crate) fn limit(value: i64, field: &str) -> Result<Option<usize>, ApiError> {
    match value {
        0 => Ok(None),
        n if n < 0 => Err(ApiError::invalid(
            field,
            format!("{field}: Invalid value: {n}: must be greater than or equal to 0"),
        )),
        n => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
    }
}

/// A page size in a query string.
pub(crate) fn limit_text(value: &str, field: &str) -> Result<Option<usize>, ApiError> {
    if value.is_empty() {
        return Ok(None);
    }
    let n: i64 = value.parse().map_err(|_| {
        ApiError::invalid(
            field,
            format!("{field}: Invalid value: {value:?}: must be a non-negative integer"),
        )
    })?;
    limit(n, field)
}

/// A resourceVersion to start a watch from: empty or `0` means "send the
/// current state first", as in Kubernetes.
pub(crate) fn watch_revision(value: &str, field: &str) -> Result<Option<u64>, ApiError> {
    match value {
        "" | "0" => Ok(None),
        v => v.parse().map(Some).map_err(|_| {
            ApiError::invalid(
                field,
                format!("{field}: Invalid value: {v:?}: must be a decimal resource version"),
            )
        }),
    }
}

/// An optional resourceVersion precondition (delete).
pub(crate) fn precondition(value: &str, field: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.parse::<u64>().is_ok() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            format!("{field}: Invalid value: {value:?}: must be a decimal resource version"),
        ))
    }
}

/// The opaque continue token of a list page: the URL-safe base64 of the last
/// item's `namespace/name`. The next page starts after that item, reading the
/// store as it is then (no snapshot is kept between pages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContinueToken {
    /// The namespace of the last item returned.
    pub namespace: String,
    /// The name of the last item returned.
    pub name: String,
}

impl ContinueToken {
    /// The token of the page that ended with `namespace/name`.
    pub fn encode(namespace: &str, name: &str) -> String {
        URL_SAFE_NO_PAD.encode(format!("{namespace}/{name}"))
    }

    /// Decodes a token from a list of `namespace` (all when `None`); empty is
    /// no token.
    pub fn decode(
        token: &str,
        namespace: Option<&str>,
        field: &str,
    ) -> Result<Option<ContinueToken>, ApiError> {
        if token.is_empty() {
            return Ok(None);
        }
        let bad = |why: &str| {
            ApiError::invalid(
                field,
                format!(
                    "{field}: Invalid value: {token:?}: {why}; pass the token of the previous page as it was returned"
                ),
            )
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| bad("not a continue token"))?;
        let text = String::from_utf8(bytes).map_err(|_| bad("not a continue token"))?;
        let (ns, name) = text
            .split_once('/')
            .ok_or_else(|| bad("not a continue token"))?;
        if !model::is_dns1123_label(ns) || name.is_empty() {
            return Err(bad("not a continue token"));
        }
        if namespace.is_some_and(|n| n != ns) {
            return Err(bad("the token belongs to a list of another namespace"));
        }
        Ok(Some(ContinueToken {
            namespace: ns.to_owned(),
            name: name.to_owned(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(error: ApiError) -> String {
        match error {
            ApiError::Invalid { field, .. } => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let token = ContinueToken::encode("ns-1", "ruby.v2");
        let back = ContinueToken::decode(&token, None, "continue")
            .unwrap()
            .unwrap();
        assert_eq!(
            (back.namespace.as_str(), back.name.as_str()),
            ("ns-1", "ruby.v2")
        );
        assert!(
            ContinueToken::decode(&token, Some("ns-1"), "continue")
                .unwrap()
                .is_some()
        );
        assert!(
            ContinueToken::decode("", None, "continue")
                .unwrap()
                .is_none()
        );
        for bad in [
            "!!!",
            "bm9zbGFzaA",
            &URL_SAFE_NO_PAD.encode("Bad_NS/x"),
            &URL_SAFE_NO_PAD.encode("ns/"),
        ] {
            let error = ContinueToken::decode(bad, None, "continue_token").unwrap_err();
            assert!(error.to_string().contains("continue_token"), "{error}");
            assert_eq!(field_of(error), "continue_token");
        }
        let other = ContinueToken::decode(&token, Some("other"), "continue").unwrap_err();
        assert!(other.to_string().contains("another namespace"), "{other}");
    }

    #[test]
    fn parameters_name_the_field() {
        assert_eq!(limit(0, "limit").unwrap(), None);
        assert_eq!(limit(5, "limit").unwrap(), Some(5));
        assert_eq!(field_of(limit(-1, "limit").unwrap_err()), "limit");
        assert_eq!(field_of(limit_text("ten", "limit").unwrap_err()), "limit");
        assert_eq!(watch_revision("", "resource_version").unwrap(), None);
        assert_eq!(watch_revision("0", "resource_version").unwrap(), None);
        assert_eq!(watch_revision("42", "resource_version").unwrap(), Some(42));
        assert_eq!(
            field_of(watch_revision("x1", "resource_version").unwrap_err()),
            "resource_version"
        );
        assert_eq!(
            field_of(namespace("", "namespace").unwrap_err()),
            "namespace"
        );
        assert_eq!(
            field_of(namespace("Bad_NS", "namespace").unwrap_err()),
            "namespace"
        );
        assert_eq!(namespace_or_all("", "namespace").unwrap(), None);
        assert_eq!(field_of(selector("a in (").unwrap_err()), "labelSelector");
        assert_eq!(
            field_of(precondition("v1", "resource_version").unwrap_err()),
            "resource_version"
        );
    }
}
