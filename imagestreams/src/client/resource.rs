//! The resource arguments of `get`, `describe`, `delete` and `watch`: `is`
//! (or any of its names) followed by names, or `is/NAME` forms, as kubectl
//! reads them.

use super::ClientError;

/// Every spelling of the ImageStream resource kubectl would accept.
pub const RESOURCE_NAMES: [&str; 5] = [
    "is",
    "imagestream",
    "imagestreams",
    "imagestream.image.openshift.io",
    "imagestreams.image.openshift.io",
];

fn check_type(resource: &str) -> Result<(), ClientError> {
    if RESOURCE_NAMES
        .iter()
        .any(|r| r.eq_ignore_ascii_case(resource))
    {
        Ok(())
    } else {
        Err(ClientError::usage(format!(
            "the server doesn't have a resource type \"{resource}\""
        )))
    }
}

/// The stream names of `TYPE NAME...` or `TYPE/NAME...`: checks the type,
/// refuses mixing both forms and empty names.
pub fn names(resource: &str, rest: &[String]) -> Result<Vec<String>, ClientError> {
    match resource.split_once('/') {
        None => {
            check_type(resource)?;
            if let Some(slashed) = rest.iter().find(|n| n.contains('/')) {
                return Err(ClientError::usage(format!(
                    "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'imagestreams get resource/<resource_name>' instead of 'imagestreams get resource resource/<resource_name>'): {slashed}"
                )));
            }
            if rest.iter().any(String::is_empty) {
                return Err(ClientError::usage("a name may not be empty"));
            }
            Ok(rest.to_vec())
        }
        Some(_) => std::iter::once(resource)
            .chain(rest.iter().map(String::as_str))
            .map(|arg| match arg.split_once('/') {
                Some((kind, name)) if !name.is_empty() && !name.contains('/') => {
                    check_type(kind)?;
                    Ok(name.to_owned())
                }
                _ => Err(ClientError::usage(format!(
                    "arguments in resource/name form must have a single resource and name: {arg:?}"
                ))),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn both_forms() {
        assert_eq!(names("is", &[]).unwrap(), Vec::<String>::new());
        assert_eq!(
            names("imagestreams", &s(&["a", "b"])).unwrap(),
            s(&["a", "b"])
        );
        assert_eq!(names("IS", &s(&["a"])).unwrap(), s(&["a"]));
        assert_eq!(
            names("is/a", &s(&["imagestream/b"])).unwrap(),
            s(&["a", "b"])
        );
        assert_eq!(
            names("imagestream.image.openshift.io/ruby", &[]).unwrap(),
            s(&["ruby"])
        );
    }

    #[test]
    fn mistakes() {
        for (resource, rest) in [
            ("pods", vec![]),
            ("is/a", vec!["b"]),
            ("is", vec!["is/b"]),
            ("is/", vec![]),
            ("pod/a", vec![]),
            ("is", vec![""]),
        ] {
            let e = names(resource, &s(&rest)).unwrap_err();
            assert!(matches!(e, ClientError::Usage(_)), "{resource} {rest:?}");
        }
        assert_eq!(
            names("pods", &[]).unwrap_err().to_string(),
            "the server doesn't have a resource type \"pods\""
        );
    }
}
