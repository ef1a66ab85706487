//! Image references (`[domain/]path[:tag][@digest]`), parsed and normalized exactly like
//! Docker's `github.com/distribution/reference` `ParseNormalizedNamed`, with the digest
//! checks of `github.com/opencontainers/go-digest` v1.0.0.
//!
//! # Grammar (upstream `regexp.go`)
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [domain '/'] remote-name
//! domain           := host [':' port-number]
//! host             := domain-name | IPv4address | \[ IPv6address \]
//! domain-name      := domain-component ['.' domain-component]*
//! domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
//! port-number      := /[0-9]+/
//! path-component   := alpha-numeric [separator alpha-numeric]*
//! remote-name      := path-component ['/' path-component]*
//! alpha-numeric    := /[a-z0-9]+/
//! separator        := /[_.]|__|[-]+/
//! tag              := /[\w][\w.-]{0,127}/
//! digest           := /[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}/
//! identifier       := /[a-f0-9]{64}/
//! ```
//!
//! # Normalization (upstream `normalize.go`)
//!
//! - A one-component name is a Docker Hub official image: `ubuntu` is
//!   `docker.io/library/ubuntu`.
//! - Otherwise the first component is a domain when it is `localhost`, contains
//!   `.` or `:`, or contains an upper-case letter; else the whole name lives on
//!   `docker.io`. `index.docker.io` is rewritten to `docker.io`, and a
//!   one-component path on `docker.io` gets the `library/` prefix.
//! - The path (the part before the first `:` of what follows the domain) must be
//!   lower case, and at most 255 characters long.
//! - No tag is added: a name-only reference stays name-only.
//! - Unlike upstream, a first component taken for a domain that the grammar
//!   reads only as a path component (`a_b.example.com/app`: a host has no
//!   `_`) is refused as "invalid reference format"; upstream returns it with
//!   an empty domain, which names no registry.
//!
//! The familiar form (what `docker` prints) drops `docker.io/` and a `library/`
//! prefix of a one-component path: `docker.io/library/ubuntu:22.04` is
//! `ubuntu:22.04`.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};

/// The maximum length of a repository path (upstream `RepositoryNameTotalLengthMax`).
///
/// Upstream (v0.6.0) measures the path only, without the domain: after
/// normalization `docker.io/` is not counted, but `library/` is.
pub const REPOSITORY_NAME_TOTAL_LENGTH_MAX: usize = 255;

/// Docker Hub's canonical domain.
pub const DEFAULT_DOMAIN: &str = "docker.io";

/// Docker Hub's legacy ("Docker Index") domain, rewritten to [`DEFAULT_DOMAIN`].
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";

/// The namespace of Docker Hub's official images.
const OFFICIAL_REPO_PREFIX: &str = "library/";

/// Always a domain when it is the first of several components.
const LOCALHOST: &str = "localhost";

// The grammar, piece by piece, as upstream `regexp.go` spells it. Every regexp
// is compiled with Unicode off so that `\w` means `[0-9A-Za-z_]`, as in Go.
const ALPHANUMERIC: &str = "[a-z0-9]+";
const SEPARATOR: &str = "(?:[._]|__|[-]+)";
const DOMAIN_NAME_COMPONENT: &str = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const OPTIONAL_PORT: &str = "(?::[0-9]+)?";
const TAG: &str = r"[\w][\w.-]{0,127}";
const DIGEST: &str = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}";
const IDENTIFIER: &str = "([a-f0-9]{64})";
const IPV6_ADDRESS: &str = r"\[(?:[a-fA-F0-9:]+)\]";
/// go-digest v1.0.0 `DigestRegexp`.
const GO_DIGEST: &str = "[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+";

fn optional(parts: &[&str]) -> String {
    format!("(?:{})?", parts.concat())
}

fn any_times(parts: &[&str]) -> String {
    format!("(?:{})*", parts.concat())
}

fn capture(parts: &[&str]) -> String {
    format!("({})", parts.concat())
}

fn anchored(parts: &[&str]) -> String {
    format!("^{}$", parts.concat())
}

/// `host[:port]`, upstream `domainAndPort`.
fn domain_and_port() -> String {
    let domain_name = format!(
        "{DOMAIN_NAME_COMPONENT}{}",
        any_times(&[r"\.", DOMAIN_NAME_COMPONENT])
    );
    let host = format!("(?:{domain_name}|{IPV6_ADDRESS})");
    format!("{host}{OPTIONAL_PORT}")
}

/// Upstream `remoteName`.
fn remote_name() -> String {
    let path_component = format!("{ALPHANUMERIC}{}", any_times(&[SEPARATOR, ALPHANUMERIC]));
    format!("{path_component}{}", any_times(&["/", &path_component]))
}

fn compile(pattern: &str) -> Regex {
    RegexBuilder::new(pattern)
        .unicode(false)
        .build()
        .expect("the reference grammar is a valid regular expression")
}

/// Upstream `referenceRegexp`: captures name, tag and digest.
static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    let name = format!("{}{}", optional(&[&domain_and_port(), "/"]), remote_name());
    compile(&anchored(&[
        &capture(&[&name]),
        &optional(&[":", &capture(&[TAG])]),
        &optional(&["@", &capture(&[DIGEST])]),
    ]))
});

/// Upstream `anchoredNameRegexp`: captures domain and path.
static ANCHORED_NAME: LazyLock<Regex> = LazyLock::new(|| {
    compile(&anchored(&[
        &optional(&[&capture(&[&domain_and_port()]), "/"]),
        &capture(&[&remote_name()]),
    ]))
});

/// Upstream `anchoredTagRegexp`.
static ANCHORED_TAG: LazyLock<Regex> = LazyLock::new(|| compile(&anchored(&[TAG])));

/// Upstream `anchoredDigestRegexp`.
static ANCHORED_DIGEST: LazyLock<Regex> = LazyLock::new(|| compile(&anchored(&[DIGEST])));

/// Upstream `anchoredIdentifierRegexp`.
static ANCHORED_IDENTIFIER: LazyLock<Regex> = LazyLock::new(|| compile(&anchored(&[IDENTIFIER])));

/// go-digest `DigestRegexpAnchored`.
static GO_DIGEST_ANCHORED: LazyLock<Regex> = LazyLock::new(|| compile(&anchored(&[GO_DIGEST])));

/// Why a string is not a valid image reference, tag or digest. The message of
/// each variant is upstream's, word for word.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ReferenceError {
    /// Upstream `ErrReferenceInvalidFormat`: the string does not match the grammar.
    #[error("invalid reference format")]
    InvalidFormat,
    /// Upstream `ErrTagInvalidFormat`: a tag given on its own does not match the grammar.
    #[error("invalid tag format")]
    TagInvalidFormat,
    /// Upstream `ErrDigestInvalidFormat`: a digest given on its own does not match the
    /// reference grammar's digest (`algorithm:` then 32 or more hex digits).
    #[error("invalid digest format")]
    DigestInvalidFormat,
    /// Upstream `ErrNameContainsUppercase`: the string only parses once lower-cased.
    #[error("repository name must be lowercase")]
    NameContainsUppercase,
    /// Upstream `ErrNameEmpty`.
    #[error("repository name must have at least one component")]
    NameEmpty,
    /// Upstream `ErrNameTooLong`: the path is longer than
    /// [`REPOSITORY_NAME_TOTAL_LENGTH_MAX`].
    #[error("repository name must not be more than 255 characters")]
    NameTooLong,
    /// Upstream `ErrNameNotCanonical`: [`Reference::parse_named`] was given a
    /// string that normalization changes.
    #[error("repository name must be canonical")]
    NameNotCanonical,
    /// `ParseNormalizedNamed`: the path (given here) holds an upper-case letter.
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    PathNotLowercase(String),
    /// `ParseNormalizedNamed`: the whole string (given here) is a 64-hex-digit
    /// image identifier, not a name.
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexIdentifier(String),
    /// go-digest `ErrDigestInvalidFormat`.
    #[error("invalid checksum digest format")]
    ChecksumInvalidFormat,
    /// go-digest `ErrDigestInvalidLength`: the hex part is not as long as the algorithm's sum.
    #[error("invalid checksum digest length")]
    ChecksumInvalidLength,
    /// go-digest `ErrDigestUnsupported`: the algorithm is none of sha256, sha384, sha512.
    #[error("unsupported digest algorithm")]
    DigestUnsupported,
}

/// A parsed, normalized image reference: always a domain and a path, maybe a
/// tag, maybe a digest, maybe both.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// Docker's `ParseNormalizedNamed`: parses a familiar or fully qualified
    /// reference and normalizes it (`ubuntu` is `docker.io/library/ubuntu`).
    /// No tag is added to a name-only reference.
    pub fn parse_normalized(s: &str) -> Result<Reference, ReferenceError> {
        if ANCHORED_IDENTIFIER.is_match(s) {
            return Err(ReferenceError::HexIdentifier(s.to_owned()));
        }
        let (domain, remainder) = split_docker_domain(s);
        let remote = remainder.split(':').next().unwrap_or_default();
        if go_to_lower(remote) != remote {
            return Err(ReferenceError::PathNotLowercase(remote.to_owned()));
        }
        let reference = parse(&format!("{domain}/{remainder}"))?;
        // The grammar reads a would-be domain that is no host (`a_b.example.com`)
        // as a path component, leaving no domain: refused (upstream accepts it).
        if reference.domain.is_empty() {
            return Err(ReferenceError::InvalidFormat);
        }
        Ok(reference)
    }

    /// Docker's `ParseNamed`: [`Reference::parse_normalized`], refusing any
    /// string that is not already in its normalized form
    /// (`docker.io/library/ubuntu`, not `ubuntu`).
    pub fn parse_named(s: &str) -> Result<Reference, ReferenceError> {
        let reference = Reference::parse_normalized(s)?;
        if reference.to_string() != s {
            return Err(ReferenceError::NameNotCanonical);
        }
        Ok(reference)
    }

    /// The registry: `docker.io`, `quay.io`, `localhost:5000`, `[::1]:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path within the registry: `library/ubuntu`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `domain/path`, fully qualified (Docker's `Name()`).
    pub fn name(&self) -> String {
        join_name(&self.domain, &self.path)
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`algorithm:hex`), if any.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// Docker's `FamiliarString`: the shortest form Docker prints, such as
    /// `ubuntu:22.04` or `localhost:5000/foo@sha256:…`.
    pub fn familiar(&self) -> String {
        let mut out = self.familiar_name();
        push_suffix(&mut out, self.tag(), self.digest());
        out
    }

    /// Docker's `FamiliarName`: [`Reference::familiar`] without tag and digest.
    pub fn familiar_name(&self) -> String {
        let (domain, path) = familiarize(&self.domain, &self.path);
        join_name(domain, path)
    }

    /// A copy without tag and digest (Docker's `TrimNamed`).
    pub fn repository(&self) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: None,
        }
    }

    /// A copy with `tag` instead of any tag; a digest is kept (Docker's `WithTag`).
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !is_valid_tag(tag) {
            return Err(ReferenceError::TagInvalidFormat);
        }
        Ok(Reference {
            tag: Some(tag.to_owned()),
            ..self.clone()
        })
    }

    /// A copy with `digest` instead of any digest; a tag is kept (Docker's
    /// `WithDigest`). Besides upstream's grammar check ("invalid digest
    /// format"), the digest must pass [`validate_digest`], as in a parsed
    /// reference, so that every `Reference` parses back to itself.
    pub fn with_digest(&self, digest: &str) -> Result<Reference, ReferenceError> {
        if !ANCHORED_DIGEST.is_match(digest) {
            return Err(ReferenceError::DigestInvalidFormat);
        }
        validate_digest(digest)?;
        Ok(Reference {
            digest: Some(digest.to_owned()),
            ..self.clone()
        })
    }
}

impl fmt::Display for Reference {
    /// The full reference: `name[:tag][@digest]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = self.name();
        push_suffix(&mut out, self.tag(), self.digest());
        f.write_str(&out)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    /// [`Reference::parse_normalized`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse_normalized(s)
    }
}

/// Whether `tag` follows Docker's tag grammar `[\w][\w.-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    ANCHORED_TAG.is_match(tag)
}

/// go-digest v1.0.0 `Digest.Validate`: `algorithm:hex`, where the algorithm is
/// sha256, sha384 or sha512 and the hex is as long as its sum (64, 96, 128),
/// in lower case.
pub fn validate_digest(d: &str) -> Result<(), ReferenceError> {
    let Some((algorithm, encoded)) = d.split_once(':') else {
        return Err(ReferenceError::ChecksumInvalidFormat);
    };
    if algorithm.is_empty() || encoded.is_empty() {
        return Err(ReferenceError::ChecksumInvalidFormat);
    }
    let size = match algorithm {
        "sha256" => 32,
        "sha384" => 48,
        "sha512" => 64,
        _ if GO_DIGEST_ANCHORED.is_match(d) => return Err(ReferenceError::DigestUnsupported),
        _ => return Err(ReferenceError::ChecksumInvalidFormat),
    };
    if encoded.len() != size * 2 {
        return Err(ReferenceError::ChecksumInvalidLength);
    }
    if !encoded
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(ReferenceError::ChecksumInvalidFormat);
    }
    Ok(())
}

/// The JSON object of `imagestreams ref parse REF -o json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ParseReport {
    /// The string as given.
    pub input: String,
    /// Whether it parsed.
    pub valid: bool,
    /// Why it did not parse (upstream's message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The fully qualified name, `domain/path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The repository path within the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The tag, if the reference has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The digest, if the reference has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Docker's familiar form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub familiar: Option<String>,
}

impl ParseReport {
    /// Parses `input` with [`Reference::parse_normalized`] and reports the result.
    pub fn of(input: &str) -> ParseReport {
        match Reference::parse_normalized(input) {
            Ok(reference) => ParseReport {
                input: input.to_owned(),
                valid: true,
                error: None,
                name: Some(reference.name()),
                domain: Some(reference.domain.clone()),
                path: Some(reference.path.clone()),
                tag: reference.tag.clone(),
                digest: reference.digest.clone(),
                familiar: Some(reference.familiar()),
            },
            Err(error) => ParseReport {
                input: input.to_owned(),
                valid: false,
                error: Some(error.to_string()),
                name: None,
                domain: None,
                path: None,
                tag: None,
                digest: None,
                familiar: None,
            },
        }
    }
}

/// Upstream `Parse`, without normalization. Reachable from outside only through
/// [`Reference::parse_normalized`], which always hands it a domain; the domain
/// is empty here when the string has none.
fn parse(s: &str) -> Result<Reference, ReferenceError> {
    if s.is_empty() {
        return Err(ReferenceError::NameEmpty);
    }
    let Some(matches) = REFERENCE.captures(s) else {
        let lower = go_to_lower(s);
        if lower != s && REFERENCE.is_match(&lower) {
            return Err(ReferenceError::NameContainsUppercase);
        }
        return Err(ReferenceError::InvalidFormat);
    };
    let name = matches.get(1).map_or("", |m| m.as_str());
    let (domain, path) = match ANCHORED_NAME.captures(name) {
        Some(parts) => (
            parts.get(1).map_or("", |m| m.as_str()),
            parts.get(2).map_or(name, |m| m.as_str()),
        ),
        None => ("", name),
    };
    if path.len() > REPOSITORY_NAME_TOTAL_LENGTH_MAX {
        return Err(ReferenceError::NameTooLong);
    }
    let tag = matches.get(2).map(|m| m.as_str().to_owned());
    let digest = match matches.get(3) {
        Some(m) => {
            validate_digest(m.as_str())?;
            Some(m.as_str().to_owned())
        }
        None => None,
    };
    Ok(Reference {
        domain: domain.to_owned(),
        path: path.to_owned(),
        tag,
        digest,
    })
}

/// Upstream `splitDockerDomain`: the domain and the rest (path, tag, digest),
/// before any validation.
fn split_docker_domain(name: &str) -> (&str, String) {
    let Some((maybe_domain, maybe_remote)) = name.split_once('/') else {
        return (DEFAULT_DOMAIN, format!("{OFFICIAL_REPO_PREFIX}{name}"));
    };
    let (domain, remote) = if maybe_domain == LOCALHOST {
        (maybe_domain, maybe_remote)
    } else if maybe_domain == LEGACY_DEFAULT_DOMAIN {
        (DEFAULT_DOMAIN, maybe_remote)
    } else if maybe_domain.contains(['.', ':']) || go_to_lower(maybe_domain) != maybe_domain {
        (maybe_domain, maybe_remote)
    } else {
        (DEFAULT_DOMAIN, name)
    };
    if domain == DEFAULT_DOMAIN && !remote.contains('/') {
        return (domain, format!("{OFFICIAL_REPO_PREFIX}{remote}"));
    }
    (domain, remote.to_owned())
}

/// Upstream `familiarizeName`: drops `docker.io` and the `library/` of a
/// one-component official path.
fn familiarize<'a>(domain: &'a str, path: &'a str) -> (&'a str, &'a str) {
    if domain != DEFAULT_DOMAIN {
        return (domain, path);
    }
    match path.strip_prefix(OFFICIAL_REPO_PREFIX) {
        Some(rest) if !rest.contains('/') => ("", rest),
        _ => ("", path),
    }
}

/// Upstream `repository.Name`.
fn join_name(domain: &str, path: &str) -> String {
    if domain.is_empty() {
        path.to_owned()
    } else {
        format!("{domain}/{path}")
    }
}

fn push_suffix(out: &mut String, tag: Option<&str>, digest: Option<&str>) {
    if let Some(tag) = tag {
        out.push(':');
        out.push_str(tag);
    }
    if let Some(digest) = digest {
        out.push('@');
        out.push_str(digest);
    }
}

/// Go's `strings.ToLower`: Unicode simple case mapping, one rune for one rune.
/// Rust's `to_lowercase` differs on U+0130 (full mapping `i̇`, Go's `i`) and on
/// a final sigma, so map rune by rune.
fn go_to_lower(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\u{130}' {
            out.push('i');
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests;
