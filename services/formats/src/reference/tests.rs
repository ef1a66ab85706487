//! Tests of the image reference grammar: the upstream tables of
//! `distribution/reference` (`reference_test.go`, `normalize_test.go`,
//! `regexp_test.go`) and go-digest v1.0.0 (`digest_test.go`), plus grammar edges.

use super::*;

// ---------------------------------------------------------------- helpers

fn f(n: usize) -> String {
    "f".repeat(n)
}

/// `sha256:` and 64 `f`.
fn sha256_f() -> String {
    format!("sha256:{}", f(64))
}

/// `sha512:` and 128 `f`.
fn sha512_f() -> String {
    format!("sha512:{}", f(128))
}

/// What a case expects of [`Reference::parse_normalized`].
#[derive(Debug)]
enum Want {
    Ok {
        domain: String,
        path: String,
        tag: Option<String>,
        digest: Option<String>,
        familiar: String,
    },
    Err(String),
}

fn ok(domain: &str, path: &str, tag: Option<&str>, digest: Option<&str>, familiar: &str) -> Want {
    Want::Ok {
        domain: domain.to_owned(),
        path: path.to_owned(),
        tag: tag.map(str::to_owned),
        digest: digest.map(str::to_owned),
        familiar: familiar.to_owned(),
    }
}

fn err(message: &str) -> Want {
    Want::Err(message.to_owned())
}

const INVALID: &str = "invalid reference format";
const TOO_LONG: &str = "repository name must not be more than 255 characters";

fn not_lowercase(path: &str) -> String {
    format!("invalid reference format: repository name ({path}) must be lowercase")
}

fn hex_identifier(s: &str) -> String {
    format!("invalid repository name ({s}), cannot specify 64-byte hexadecimal strings")
}

/// Checks one case against every accessor, `Display`, `FromStr`, the report,
/// and the round trips through the full and the familiar string.
fn check(input: &str, want: &Want) {
    let got = Reference::parse_normalized(input);
    let report = ParseReport::of(input);
    assert_eq!(report.input, input);
    match want {
        Want::Err(message) => {
            let e = got.expect_err(input);
            assert_eq!(e.to_string(), *message, "error for {input:?}");
            assert_eq!(input.parse::<Reference>(), Err(e), "FromStr of {input:?}");
            assert!(!report.valid, "report of {input:?}");
            assert_eq!(report.error.as_deref(), Some(message.as_str()));
            assert_eq!(report.name, None);
            assert_eq!(report.familiar, None);
        }
        Want::Ok {
            domain,
            path,
            tag,
            digest,
            familiar,
        } => {
            let r = got.unwrap_or_else(|e| panic!("{input:?} should parse, got {e}"));
            let name = format!("{domain}/{path}");
            let mut full = name.clone();
            if let Some(t) = tag {
                full = format!("{full}:{t}");
            }
            if let Some(d) = digest {
                full = format!("{full}@{d}");
            }
            assert_eq!(r.domain(), domain, "domain of {input:?}");
            assert_eq!(r.path(), path, "path of {input:?}");
            assert_eq!(r.name(), name, "name of {input:?}");
            assert_eq!(r.tag(), tag.as_deref(), "tag of {input:?}");
            assert_eq!(r.digest(), digest.as_deref(), "digest of {input:?}");
            assert_eq!(r.familiar(), *familiar, "familiar of {input:?}");
            assert_eq!(r.to_string(), full, "string of {input:?}");
            assert_eq!(
                input.parse::<Reference>().as_ref(),
                Ok(&r),
                "FromStr of {input:?}"
            );
            // The full and the familiar strings name the same reference.
            assert_eq!(
                Reference::parse_normalized(&full).as_ref(),
                Ok(&r),
                "reparse of {full:?}"
            );
            assert_eq!(
                Reference::parse_named(&full).as_ref(),
                Ok(&r),
                "canonical {full:?}"
            );
            assert_eq!(
                Reference::parse_normalized(familiar).as_ref(),
                Ok(&r),
                "reparse of {familiar:?}"
            );
            let familiar_name = familiar
                .split('@')
                .next()
                .map(|s| match (tag, s.rfind(':')) {
                    (Some(_), Some(i)) => &s[..i],
                    _ => s,
                })
                .unwrap_or_default();
            assert_eq!(
                r.familiar_name(),
                familiar_name,
                "familiar name of {input:?}"
            );
            let repository = r.repository();
            assert_eq!(repository.to_string(), name);
            assert_eq!((repository.tag(), repository.digest()), (None, None));
            assert_eq!(
                report,
                ParseReport {
                    input: input.to_owned(),
                    valid: true,
                    error: None,
                    name: Some(name),
                    domain: Some(domain.clone()),
                    path: Some(path.clone()),
                    tag: tag.clone(),
                    digest: digest.clone(),
                    familiar: Some(familiar.clone()),
                }
            );
        }
    }
}

fn check_all(cases: &[(String, Want)]) {
    for (input, want) in cases {
        check(input, want);
    }
}

fn s(x: &str) -> String {
    x.to_owned()
}

// ------------------------------------------- reference_test.go, via Parse

/// Upstream `TestReferenceParse`, verbatim, against the private `parse`
/// (Docker's `Parse`, without normalization): (input, Ok((name, domain, tag,
/// digest)) or Err(message)).
#[test]
fn upstream_reference_parse_table() {
    type Row = (
        String,
        Result<(String, &'static str, &'static str, String), &'static str>,
    );
    let d = sha256_f();
    let cases: Vec<Row> = vec![
        (s("test_com"), Ok((s("test_com"), "", "", s("")))),
        (s("test.com:tag"), Ok((s("test.com"), "", "tag", s("")))),
        (s("test.com:5000"), Ok((s("test.com"), "", "5000", s("")))),
        (
            s("test.com/repo:tag"),
            Ok((s("test.com/repo"), "test.com", "tag", s(""))),
        ),
        (
            s("test:5000/repo"),
            Ok((s("test:5000/repo"), "test:5000", "", s(""))),
        ),
        (
            s("test:5000/repo:tag"),
            Ok((s("test:5000/repo"), "test:5000", "tag", s(""))),
        ),
        (
            format!("test:5000/repo@{d}"),
            Ok((s("test:5000/repo"), "test:5000", "", d.clone())),
        ),
        (
            format!("test:5000/repo:tag@{d}"),
            Ok((s("test:5000/repo"), "test:5000", "tag", d.clone())),
        ),
        (
            s(""),
            Err("repository name must have at least one component"),
        ),
        (s(":justtag"), Err(INVALID)),
        (format!("@{d}"), Err(INVALID)),
        (
            format!("repo@sha256:{}", f(34)),
            Err("invalid checksum digest length"),
        ),
        (
            format!("validname@invaliddigest:{}", f(64)),
            Err("unsupported digest algorithm"),
        ),
        (s("Uppercase:tag"), Err("repository name must be lowercase")),
        (
            s("test:5000/Uppercase/lowercase:tag"),
            Err("repository name must be lowercase"),
        ),
        (
            s("lowercase:Uppercase"),
            Ok((s("lowercase"), "", "Uppercase", s(""))),
        ),
        (format!("domain/{}:tag", "a".repeat(256)), Err(TOO_LONG)),
        (
            format!("{}a:tag-puts-this-over-max", "a/".repeat(127)),
            Ok((
                format!("{}a", "a/".repeat(127)),
                "a",
                "tag-puts-this-over-max",
                s(""),
            )),
        ),
        (s("aa/asdf$$^/aa"), Err(INVALID)),
        (
            s("sub-dom1.foo.com/bar/baz/quux"),
            Ok((
                s("sub-dom1.foo.com/bar/baz/quux"),
                "sub-dom1.foo.com",
                "",
                s(""),
            )),
        ),
        (
            s("sub-dom1.foo.com/bar/baz/quux:some-long-tag"),
            Ok((
                s("sub-dom1.foo.com/bar/baz/quux"),
                "sub-dom1.foo.com",
                "some-long-tag",
                s(""),
            )),
        ),
        (
            s("b.gcr.io/test.example.com/my-app:test.example.com"),
            Ok((
                s("b.gcr.io/test.example.com/my-app"),
                "b.gcr.io",
                "test.example.com",
                s(""),
            )),
        ),
        (
            s("xn--n3h.com/myimage:xn--n3h.com"),
            Ok((
                s("xn--n3h.com/myimage"),
                "xn--n3h.com",
                "xn--n3h.com",
                s(""),
            )),
        ),
        (
            format!("xn--7o8h.com/myimage:xn--7o8h.com@{}", sha512_f()),
            Ok((
                s("xn--7o8h.com/myimage"),
                "xn--7o8h.com",
                "xn--7o8h.com",
                sha512_f(),
            )),
        ),
        (
            s("foo_bar.com:8080"),
            Ok((s("foo_bar.com"), "", "8080", s(""))),
        ),
        (
            s("foo/foo_bar.com:8080"),
            Ok((s("foo/foo_bar.com"), "foo", "8080", s(""))),
        ),
        (s("192.168.1.1"), Ok((s("192.168.1.1"), "", "", s("")))),
        (
            s("192.168.1.1:tag"),
            Ok((s("192.168.1.1"), "", "tag", s(""))),
        ),
        (
            s("192.168.1.1:5000"),
            Ok((s("192.168.1.1"), "", "5000", s(""))),
        ),
        (
            s("192.168.1.1/repo"),
            Ok((s("192.168.1.1/repo"), "192.168.1.1", "", s(""))),
        ),
        (
            s("192.168.1.1:5000/repo"),
            Ok((s("192.168.1.1:5000/repo"), "192.168.1.1:5000", "", s(""))),
        ),
        (
            s("192.168.1.1:5000/repo:5050"),
            Ok((
                s("192.168.1.1:5000/repo"),
                "192.168.1.1:5000",
                "5050",
                s(""),
            )),
        ),
        (s("[2001:db8::1]"), Err(INVALID)),
        (s("[2001:db8::1]:5000"), Err(INVALID)),
        (s("[2001:db8::1]:tag"), Err(INVALID)),
        (
            s("[2001:db8::1]/repo"),
            Ok((s("[2001:db8::1]/repo"), "[2001:db8::1]", "", s(""))),
        ),
        (
            s("[2001:db8:1:2:3:4:5:6]/repo:tag"),
            Ok((
                s("[2001:db8:1:2:3:4:5:6]/repo"),
                "[2001:db8:1:2:3:4:5:6]",
                "tag",
                s(""),
            )),
        ),
        (
            s("[2001:db8::1]:5000/repo"),
            Ok((
                s("[2001:db8::1]:5000/repo"),
                "[2001:db8::1]:5000",
                "",
                s(""),
            )),
        ),
        (
            s("[2001:db8::1]:5000/repo:tag"),
            Ok((
                s("[2001:db8::1]:5000/repo"),
                "[2001:db8::1]:5000",
                "tag",
                s(""),
            )),
        ),
        (
            format!("[2001:db8::1]:5000/repo@{d}"),
            Ok((
                s("[2001:db8::1]:5000/repo"),
                "[2001:db8::1]:5000",
                "",
                d.clone(),
            )),
        ),
        (
            format!("[2001:db8::1]:5000/repo:tag@{d}"),
            Ok((
                s("[2001:db8::1]:5000/repo"),
                "[2001:db8::1]:5000",
                "tag",
                d.clone(),
            )),
        ),
        (
            s("[2001:db8::]:5000/repo"),
            Ok((s("[2001:db8::]:5000/repo"), "[2001:db8::]:5000", "", s(""))),
        ),
        (
            s("[::1]:5000/repo"),
            Ok((s("[::1]:5000/repo"), "[::1]:5000", "", s(""))),
        ),
        (s("[fe80::1%eth0]:5000/repo"), Err(INVALID)),
        (s("[fe80::1%@invalidzone]:5000/repo"), Err(INVALID)),
        (
            format!("example.com/{}:tag", "a".repeat(255)),
            Ok((
                format!("example.com/{}", "a".repeat(255)),
                "example.com",
                "tag",
                s(""),
            )),
        ),
    ];
    for (input, want) in &cases {
        let got = parse(input);
        match want {
            Err(message) => {
                assert_eq!(got.map_err(|e| e.to_string()), Err(s(message)), "{input:?}");
            }
            Ok((name, domain, tag, digest)) => {
                let r = got.unwrap_or_else(|e| panic!("{input:?}: {e}"));
                assert_eq!(r.to_string(), *input);
                assert_eq!(r.name(), *name, "{input:?}");
                assert_eq!(r.domain(), *domain, "{input:?}");
                assert_eq!(r.tag().unwrap_or_default(), *tag, "{input:?}");
                assert_eq!(r.digest().unwrap_or_default(), digest.as_str(), "{input:?}");
            }
        }
    }
}

/// Upstream `TestDomainAndPath` (`WithName`, no normalization), via `parse`.
#[test]
fn upstream_domain_and_path() {
    for (input, domain, path) in [
        ("test.com/foo", "test.com", "foo"),
        ("test_com/foo", "", "test_com/foo"),
        ("test:8080/foo", "test:8080", "foo"),
        ("test.com:8080/foo", "test.com:8080", "foo"),
        ("test-com:8080/foo", "test-com:8080", "foo"),
        ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
    ] {
        let r = parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!((r.domain(), r.path()), (domain, path), "{input:?}");
    }
}

// ------------------------------------ reference_test.go, via normalization

/// The inputs of upstream `TestReferenceParse`, through `ParseNormalizedNamed`.
#[test]
fn upstream_reference_parse_table_normalized() {
    let d = sha256_f();
    let d512 = sha512_f();
    let long_hub_path = format!("{}a", "a/".repeat(127));
    let cases = vec![
        (
            s("test_com"),
            ok("docker.io", "library/test_com", None, None, "test_com"),
        ),
        (
            s("test.com:tag"),
            ok(
                "docker.io",
                "library/test.com",
                Some("tag"),
                None,
                "test.com:tag",
            ),
        ),
        (
            s("test.com:5000"),
            ok(
                "docker.io",
                "library/test.com",
                Some("5000"),
                None,
                "test.com:5000",
            ),
        ),
        (
            s("test.com/repo:tag"),
            ok("test.com", "repo", Some("tag"), None, "test.com/repo:tag"),
        ),
        (
            s("test:5000/repo"),
            ok("test:5000", "repo", None, None, "test:5000/repo"),
        ),
        (
            s("test:5000/repo:tag"),
            ok("test:5000", "repo", Some("tag"), None, "test:5000/repo:tag"),
        ),
        (
            format!("test:5000/repo@{d}"),
            ok(
                "test:5000",
                "repo",
                None,
                Some(&d),
                &format!("test:5000/repo@{d}"),
            ),
        ),
        (
            format!("test:5000/repo:tag@{d}"),
            ok(
                "test:5000",
                "repo",
                Some("tag"),
                Some(&d),
                &format!("test:5000/repo:tag@{d}"),
            ),
        ),
        (s(""), err(INVALID)),
        (s(":justtag"), err(INVALID)),
        (format!("@{d}"), err(INVALID)),
        (
            format!("repo@sha256:{}", f(34)),
            err("invalid checksum digest length"),
        ),
        (
            format!("validname@invaliddigest:{}", f(64)),
            err("unsupported digest algorithm"),
        ),
        (s("Uppercase:tag"), err(&not_lowercase("library/Uppercase"))),
        // Upstream's FIXME: "Uppercase" is taken for a domain here, so this passes.
        (
            s("Uppercase/lowercase:tag"),
            ok(
                "Uppercase",
                "lowercase",
                Some("tag"),
                None,
                "Uppercase/lowercase:tag",
            ),
        ),
        (
            s("test:5000/Uppercase/lowercase:tag"),
            err(&not_lowercase("Uppercase/lowercase")),
        ),
        (
            s("lowercase:Uppercase"),
            ok(
                "docker.io",
                "library/lowercase",
                Some("Uppercase"),
                None,
                "lowercase:Uppercase",
            ),
        ),
        (format!("domain/{}:tag", "a".repeat(256)), err(TOO_LONG)),
        // "a" is no domain, so the whole 255-character name is the Docker Hub path.
        (
            format!("{long_hub_path}:tag-puts-this-over-max"),
            ok(
                "docker.io",
                &long_hub_path,
                Some("tag-puts-this-over-max"),
                None,
                &format!("{long_hub_path}:tag-puts-this-over-max"),
            ),
        ),
        (s("aa/asdf$$^/aa"), err(INVALID)),
        (
            s("sub-dom1.foo.com/bar/baz/quux"),
            ok(
                "sub-dom1.foo.com",
                "bar/baz/quux",
                None,
                None,
                "sub-dom1.foo.com/bar/baz/quux",
            ),
        ),
        (
            s("sub-dom1.foo.com/bar/baz/quux:some-long-tag"),
            ok(
                "sub-dom1.foo.com",
                "bar/baz/quux",
                Some("some-long-tag"),
                None,
                "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
            ),
        ),
        (
            s("b.gcr.io/test.example.com/my-app:test.example.com"),
            ok(
                "b.gcr.io",
                "test.example.com/my-app",
                Some("test.example.com"),
                None,
                "b.gcr.io/test.example.com/my-app:test.example.com",
            ),
        ),
        (
            s("xn--n3h.com/myimage:xn--n3h.com"),
            ok(
                "xn--n3h.com",
                "myimage",
                Some("xn--n3h.com"),
                None,
                "xn--n3h.com/myimage:xn--n3h.com",
            ),
        ),
        (
            format!("xn--7o8h.com/myimage:xn--7o8h.com@{d512}"),
            ok(
                "xn--7o8h.com",
                "myimage",
                Some("xn--7o8h.com"),
                Some(&d512),
                &format!("xn--7o8h.com/myimage:xn--7o8h.com@{d512}"),
            ),
        ),
        (
            s("foo_bar.com:8080"),
            ok(
                "docker.io",
                "library/foo_bar.com",
                Some("8080"),
                None,
                "foo_bar.com:8080",
            ),
        ),
        (
            s("foo/foo_bar.com:8080"),
            ok(
                "docker.io",
                "foo/foo_bar.com",
                Some("8080"),
                None,
                "foo/foo_bar.com:8080",
            ),
        ),
        (
            s("192.168.1.1"),
            ok(
                "docker.io",
                "library/192.168.1.1",
                None,
                None,
                "192.168.1.1",
            ),
        ),
        (
            s("192.168.1.1:tag"),
            ok(
                "docker.io",
                "library/192.168.1.1",
                Some("tag"),
                None,
                "192.168.1.1:tag",
            ),
        ),
        (
            s("192.168.1.1:5000"),
            ok(
                "docker.io",
                "library/192.168.1.1",
                Some("5000"),
                None,
                "192.168.1.1:5000",
            ),
        ),
        (
            s("192.168.1.1/repo"),
            ok("192.168.1.1", "repo", None, None, "192.168.1.1/repo"),
        ),
        (
            s("192.168.1.1:5000/repo"),
            ok(
                "192.168.1.1:5000",
                "repo",
                None,
                None,
                "192.168.1.1:5000/repo",
            ),
        ),
        (
            s("192.168.1.1:5000/repo:5050"),
            ok(
                "192.168.1.1:5000",
                "repo",
                Some("5050"),
                None,
                "192.168.1.1:5000/repo:5050",
            ),
        ),
        (s("[2001:db8::1]"), err(INVALID)),
        (s("[2001:db8::1]:5000"), err(INVALID)),
        (s("[2001:db8::1]:tag"), err(INVALID)),
        (
            s("[2001:db8::1]/repo"),
            ok("[2001:db8::1]", "repo", None, None, "[2001:db8::1]/repo"),
        ),
        (
            s("[2001:db8:1:2:3:4:5:6]/repo:tag"),
            ok(
                "[2001:db8:1:2:3:4:5:6]",
                "repo",
                Some("tag"),
                None,
                "[2001:db8:1:2:3:4:5:6]/repo:tag",
            ),
        ),
        (
            s("[2001:db8::1]:5000/repo"),
            ok(
                "[2001:db8::1]:5000",
                "repo",
                None,
                None,
                "[2001:db8::1]:5000/repo",
            ),
        ),
        (
            s("[2001:db8::1]:5000/repo:tag"),
            ok(
                "[2001:db8::1]:5000",
                "repo",
                Some("tag"),
                None,
                "[2001:db8::1]:5000/repo:tag",
            ),
        ),
        (
            format!("[2001:db8::1]:5000/repo@{d}"),
            ok(
                "[2001:db8::1]:5000",
                "repo",
                None,
                Some(&d),
                &format!("[2001:db8::1]:5000/repo@{d}"),
            ),
        ),
        (
            format!("[2001:db8::1]:5000/repo:tag@{d}"),
            ok(
                "[2001:db8::1]:5000",
                "repo",
                Some("tag"),
                Some(&d),
                &format!("[2001:db8::1]:5000/repo:tag@{d}"),
            ),
        ),
        (
            s("[2001:db8::]:5000/repo"),
            ok(
                "[2001:db8::]:5000",
                "repo",
                None,
                None,
                "[2001:db8::]:5000/repo",
            ),
        ),
        (
            s("[::1]:5000/repo"),
            ok("[::1]:5000", "repo", None, None, "[::1]:5000/repo"),
        ),
        (s("[fe80::1%eth0]:5000/repo"), err(INVALID)),
        (s("[fe80::1%@invalidzone]:5000/repo"), err(INVALID)),
        (
            format!("example.com/{}:tag", "a".repeat(255)),
            ok(
                "example.com",
                &"a".repeat(255),
                Some("tag"),
                None,
                &format!("example.com/{}:tag", "a".repeat(255)),
            ),
        ),
    ];
    check_all(&cases);
}

// -------------------------------------------------------- normalize_test.go

/// Upstream `TestValidateReferenceName`, with the exact result of each name.
#[test]
fn upstream_validate_reference_name() {
    let hex = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";
    let song = "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev";
    let hex_name = format!("docker.io/{hex}");
    let hex_full = format!("docker.io/library/{hex}");
    let song_full = format!("docker.io/library/{song}");
    let valid: [(&str, &str); 23] = [
        ("docker/docker", "docker.io/docker/docker"),
        ("library/debian", "docker.io/library/debian"),
        ("debian", "docker.io/library/debian"),
        ("docker.io/docker/docker", "docker.io/docker/docker"),
        ("docker.io/library/debian", "docker.io/library/debian"),
        ("docker.io/debian", "docker.io/library/debian"),
        ("index.docker.io/docker/docker", "docker.io/docker/docker"),
        ("index.docker.io/library/debian", "docker.io/library/debian"),
        ("index.docker.io/debian", "docker.io/library/debian"),
        (
            "127.0.0.1:5000/docker/docker",
            "127.0.0.1:5000/docker/docker",
        ),
        (
            "127.0.0.1:5000/library/debian",
            "127.0.0.1:5000/library/debian",
        ),
        ("127.0.0.1:5000/debian", "127.0.0.1:5000/debian"),
        ("192.168.0.1", "docker.io/library/192.168.0.1"),
        ("192.168.0.1:80", "docker.io/library/192.168.0.1:80"),
        ("192.168.0.1:8/debian", "192.168.0.1:8/debian"),
        ("192.168.0.2:25000/debian", "192.168.0.2:25000/debian"),
        (song, &song_full),
        ("[fc00::1]:5000/docker", "[fc00::1]:5000/docker"),
        (
            "[fc00::1]:5000/docker/docker",
            "[fc00::1]:5000/docker/docker",
        ),
        (
            "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
            "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
        ),
        // Valid with a domain: no longer ambiguous with an identifier.
        (&hex_name, &hex_full),
        ("Docker/docker", "Docker/docker"),
        ("DOCKER/docker", "DOCKER/docker"),
    ];
    for (input, full) in valid {
        let r = Reference::parse_normalized(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(r.to_string(), full, "{input:?}");
    }
    let invalid = [
        ("https://github.com/docker/docker", s(INVALID)),
        ("docker/Docker", not_lowercase("docker/Docker")),
        ("-docker", s(INVALID)),
        ("-docker/docker", s(INVALID)),
        ("-docker.io/docker/docker", s(INVALID)),
        ("docker///docker", s(INVALID)),
        ("docker.io/docker/Docker", not_lowercase("docker/Docker")),
        ("docker.io/docker///docker", s(INVALID)),
        ("[fc00::1]", s(INVALID)),
        ("[fc00::1]:5000", s(INVALID)),
        ("fc00::1:5000/debian", s(INVALID)),
        ("[fe80::1%eth0]:5000/debian", s(INVALID)),
        ("[2001:db8:3:4::192.0.2.33]:5000/debian", s(INVALID)),
        (hex, hex_identifier(hex)),
    ];
    for (input, message) in invalid {
        check(input, &Want::Err(message));
    }
}

/// Upstream `TestValidateRemoteName`, with the exact result of each name.
#[test]
fn upstream_validate_remote_name() {
    for name in [
        "docker/docker",
        "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
        "docker-rules/docker",
        "docker---rules/docker",
        "doc/docker",
        "d/docker",
        "jess/t",
        "dock__er/docker",
    ] {
        let r = Reference::parse_normalized(name).unwrap_or_else(|e| panic!("{name:?}: {e}"));
        let path = if name.contains('/') {
            s(name)
        } else {
            format!("library/{name}")
        };
        assert_eq!(
            (r.domain(), r.path()),
            ("docker.io", path.as_str()),
            "{name:?}"
        );
    }
    let hex = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";
    let long_namespace = format!(
        "{}/docker",
        "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255".repeat(4)
    );
    let invalid = [
        (s("docker/Docker"), not_lowercase("docker/Docker")),
        (s("docker///docker"), s(INVALID)),
        (s(hex), hex_identifier(hex)),
        (s("-docker/docker"), s(INVALID)),
        (s("docker-/docker"), s(INVALID)),
        (s("-docker-/docker"), s(INVALID)),
        (s("____/____"), s(INVALID)),
        (s("_docker/_docker"), s(INVALID)),
        (s("dock..er/docker"), s(INVALID)),
        (s("dock_.er/docker"), s(INVALID)),
        (s("dock-.er/docker"), s(INVALID)),
        (s("docker/"), s(INVALID)),
        (long_namespace, s(TOO_LONG)),
    ];
    for (input, message) in invalid {
        check(&input, &Want::Err(message));
    }
}

/// Upstream `TestParseRepositoryInfo`: the familiar, full and ambiguous
/// spellings of one repository all give the same familiar name, full name,
/// domain and path.
#[test]
fn upstream_parse_repository_info() {
    // (path, familiar name, full name, ambiguous name, domain)
    let cases = [
        (
            "fooo/bar",
            "fooo/bar",
            "docker.io/fooo/bar",
            "index.docker.io/fooo/bar",
            "docker.io",
        ),
        (
            "library/ubuntu",
            "ubuntu",
            "docker.io/library/ubuntu",
            "library/ubuntu",
            "docker.io",
        ),
        (
            "nonlibrary/ubuntu",
            "nonlibrary/ubuntu",
            "docker.io/nonlibrary/ubuntu",
            "",
            "docker.io",
        ),
        (
            "other/library",
            "other/library",
            "docker.io/other/library",
            "",
            "docker.io",
        ),
        (
            "private/moonbase",
            "127.0.0.1:8000/private/moonbase",
            "127.0.0.1:8000/private/moonbase",
            "",
            "127.0.0.1:8000",
        ),
        (
            "privatebase",
            "127.0.0.1:8000/privatebase",
            "127.0.0.1:8000/privatebase",
            "",
            "127.0.0.1:8000",
        ),
        (
            "private/moonbase",
            "example.com/private/moonbase",
            "example.com/private/moonbase",
            "",
            "example.com",
        ),
        (
            "privatebase",
            "example.com/privatebase",
            "example.com/privatebase",
            "",
            "example.com",
        ),
        (
            "private/moonbase",
            "example.com:8000/private/moonbase",
            "example.com:8000/private/moonbase",
            "",
            "example.com:8000",
        ),
        (
            "privatebasee",
            "example.com:8000/privatebasee",
            "example.com:8000/privatebasee",
            "",
            "example.com:8000",
        ),
        (
            "library/ubuntu-12.04-base",
            "ubuntu-12.04-base",
            "docker.io/library/ubuntu-12.04-base",
            "index.docker.io/library/ubuntu-12.04-base",
            "docker.io",
        ),
        (
            "library/foo",
            "foo",
            "docker.io/library/foo",
            "docker.io/foo",
            "docker.io",
        ),
        (
            "library/foo/bar",
            "library/foo/bar",
            "docker.io/library/foo/bar",
            "",
            "docker.io",
        ),
        (
            "store/foo/bar",
            "store/foo/bar",
            "docker.io/store/foo/bar",
            "",
            "docker.io",
        ),
        ("bar", "Foo/bar", "Foo/bar", "", "Foo"),
        ("bar", "FOO/bar", "FOO/bar", "", "FOO"),
    ];
    for (path, familiar, full, ambiguous, domain) in cases {
        for input in [familiar, full, ambiguous]
            .into_iter()
            .filter(|i| !i.is_empty())
        {
            check(input, &ok(domain, path, None, None, familiar));
            let r = Reference::parse_normalized(input).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r.familiar_name(), familiar, "{input:?}");
            assert_eq!(r.to_string(), full, "{input:?}");
        }
    }
}

/// Upstream `TestParseReferenceWithTagAndDigest`.
#[test]
fn upstream_parse_reference_with_tag_and_digest() {
    let short =
        "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa";
    let r = Reference::parse_normalized(short).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.to_string(), format!("docker.io/library/{short}"));
    assert_eq!(r.tag(), Some("latest"));
    assert_eq!(
        r.digest(),
        Some("sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa")
    );
    assert_eq!(r.familiar(), short);
}

/// Upstream `TestInvalidReferenceComponents`.
#[test]
fn upstream_invalid_reference_components() {
    assert_eq!(
        Reference::parse_normalized("-foo"),
        Err(ReferenceError::InvalidFormat)
    );
    let r = Reference::parse_normalized("busybox").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        r.with_tag("-foo").map_err(|e| e.to_string()),
        Err(s("invalid tag format"))
    );
    assert_eq!(
        r.with_digest("foo").map_err(|e| e.to_string()),
        Err(s("invalid digest format"))
    );
}

/// Upstream `TestParseAnyReference`, for the inputs `ParseAnyReference` hands
/// to `ParseNormalizedNamed`, plus what `ParseNormalizedNamed` itself makes of
/// the two digest-only inputs.
#[test]
fn upstream_parse_any_reference_named() {
    let digest = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c";
    let hex = "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c";
    let cases = [
        (s("redis"), s("docker.io/library/redis")),
        (s("redis:latest"), s("docker.io/library/redis:latest")),
        (
            s("docker.io/library/redis:latest"),
            s("docker.io/library/redis:latest"),
        ),
        (
            format!("redis@{digest}"),
            format!("docker.io/library/redis@{digest}"),
        ),
        (
            format!("docker.io/library/redis@{digest}"),
            format!("docker.io/library/redis@{digest}"),
        ),
        (s("dmcgowan/myapp"), s("docker.io/dmcgowan/myapp")),
        (
            s("dmcgowan/myapp:latest"),
            s("docker.io/dmcgowan/myapp:latest"),
        ),
        (
            s("docker.io/mcgowan/myapp:latest"),
            s("docker.io/mcgowan/myapp:latest"),
        ),
        (
            format!("dmcgowan/myapp@{digest}"),
            format!("docker.io/dmcgowan/myapp@{digest}"),
        ),
        (
            format!("docker.io/dmcgowan/myapp@{digest}"),
            format!("docker.io/dmcgowan/myapp@{digest}"),
        ),
        (s(&hex[..63]), format!("docker.io/library/{}", &hex[..63])),
        (s("dbcc1"), s("docker.io/library/dbcc1")),
        // A bare digest is a name "sha256" with a 64-character tag here.
        (s(digest), format!("docker.io/library/{digest}")),
    ];
    for (input, full) in cases {
        let r = Reference::parse_normalized(&input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(r.to_string(), full, "{input:?}");
    }
    assert_eq!(
        Reference::parse_normalized(hex).map_err(|e| e.to_string()),
        Err(hex_identifier(hex))
    );
    assert_eq!(
        Reference::parse_normalized(digest).map(|r| r.tag().map(str::to_owned)),
        Ok(Some(s(hex)))
    );
}

/// Upstream `TestNormalizedSplitHostname`.
#[test]
fn upstream_normalized_split_hostname() {
    for (input, domain, path) in [
        ("test.com/foo", "test.com", "foo"),
        ("test_com/foo", "docker.io", "test_com/foo"),
        ("docker/migrator", "docker.io", "docker/migrator"),
        ("test.com:8080/foo", "test.com:8080", "foo"),
        ("test-com:8080/foo", "test-com:8080", "foo"),
        ("foo", "docker.io", "library/foo"),
        ("xn--n3h.com/foo", "xn--n3h.com", "foo"),
        ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
        ("docker.io/foo", "docker.io", "library/foo"),
        ("docker.io/library/foo", "docker.io", "library/foo"),
        ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
    ] {
        let r = Reference::parse_normalized(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!((r.domain(), r.path()), (domain, path), "{input:?}");
    }
}

/// Upstream `TestWithTag` and `TestWithDigest`, on normalized names (upstream
/// uses `WithName`, which does not normalize: its `foo` is our
/// `docker.io/library/foo`).
#[test]
fn upstream_with_tag_and_with_digest() {
    let d = "sha256:1234567890098765432112345667890098765432112345667890098765432112";
    let cases = [
        (
            "test.com/foo",
            Some("tag"),
            None,
            "test.com/foo:tag",
            "test.com/foo:tag",
        ),
        (
            "foo",
            Some("tag2"),
            None,
            "docker.io/library/foo:tag2",
            "foo:tag2",
        ),
        (
            "test.com:8000/foo",
            Some("tag4"),
            None,
            "test.com:8000/foo:tag4",
            "test.com:8000/foo:tag4",
        ),
        (
            "test.com:8000/foo",
            Some("TAG5"),
            None,
            "test.com:8000/foo:TAG5",
            "test.com:8000/foo:TAG5",
        ),
        (
            "test.com:8000/foo",
            Some("TAG5"),
            Some(d),
            &format!("test.com:8000/foo:TAG5@{d}"),
            &format!("test.com:8000/foo:TAG5@{d}"),
        ),
        (
            "test.com/foo",
            None,
            Some(d),
            &format!("test.com/foo@{d}"),
            &format!("test.com/foo@{d}"),
        ),
        (
            "foo",
            None,
            Some(d),
            &format!("docker.io/library/foo@{d}"),
            &format!("foo@{d}"),
        ),
        (
            "test.com:8000/foo",
            None,
            Some(d),
            &format!("test.com:8000/foo@{d}"),
            &format!("test.com:8000/foo@{d}"),
        ),
    ];
    for (name, tag, digest, full, familiar) in cases {
        let mut r = Reference::parse_normalized(name).unwrap_or_else(|e| panic!("{name:?}: {e}"));
        // Digest first, then tag: WithTag keeps the digest (upstream's order).
        if let Some(digest) = digest {
            r = r
                .with_digest(digest)
                .unwrap_or_else(|e| panic!("{digest:?}: {e}"));
        }
        if let Some(tag) = tag {
            r = r.with_tag(tag).unwrap_or_else(|e| panic!("{tag:?}: {e}"));
        }
        assert_eq!(r.to_string(), *full);
        assert_eq!(r.familiar(), *familiar);
        assert_eq!(Reference::parse_normalized(full).as_ref(), Ok(&r));
    }
}

// ------------------------------------------------------------ regexp_test.go

/// Upstream `TestDomainRegexp`, against `domainAndPort`, anchored.
#[test]
fn upstream_domain_regexp() {
    let domain = compile(&anchored(&[&domain_and_port()]));
    for (input, matches) in [
        ("test.com", true),
        ("test.com:10304", true),
        ("test.com:http", false),
        ("localhost", true),
        ("localhost:8080", true),
        ("a", true),
        ("a.b", true),
        ("ab.cd.com", true),
        ("a-b.com", true),
        ("-ab.com", false),
        ("ab-.com", false),
        ("ab.c-om", true),
        ("ab.-com", false),
        ("ab.com-", false),
        ("0101.com", true),
        ("001a.com", true),
        ("b.gbc.io:443", true),
        ("b.gbc.io", true),
        ("xn--n3h.com", true),
        ("Asdf.com", true),
        ("192.168.1.1:75050", true),
        ("192.168.1.1:750050", true),
        ("[fd00:1:2::3]:75050", true),
        ("[fd00:1:2::3]75050", false),
        ("[fd00:1:2::3]::75050", false),
        ("[fd00:1:2::3%eth0]:75050", false),
        ("[fd00123123123]:75050", true),
        ("[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:75050", true),
        ("[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:750505", true),
        ("fd00:1:2::3:75050", false),
    ] {
        assert_eq!(domain.is_match(input), matches, "{input:?}");
    }
}

/// Upstream `TestFullNameRegexp`: `anchoredNameRegexp`, with its captures.
#[test]
fn upstream_full_name_regexp() {
    assert_eq!(ANCHORED_NAME.captures_len(), 3);
    let long = format!("{}a", "a/".repeat(128));
    let long_path = format!("{}a", "a/".repeat(127));
    let cases: Vec<(&str, Option<(&str, &str)>)> = vec![
        ("", None),
        ("short", Some(("", "short"))),
        ("simple/name", Some(("simple", "name"))),
        ("library/ubuntu", Some(("library", "ubuntu"))),
        ("docker/stevvooe/app", Some(("docker", "stevvooe/app"))),
        (
            "aa/aa/aa/aa/aa/aa/aa/aa/aa/bb/bb/bb/bb/bb/bb",
            Some(("aa", "aa/aa/aa/aa/aa/aa/aa/aa/bb/bb/bb/bb/bb/bb")),
        ),
        ("aa/aa/bb/bb/bb", Some(("aa", "aa/bb/bb/bb"))),
        ("a/a/a/a", Some(("a", "a/a/a"))),
        ("a/a/a/a/", None),
        ("a//a/a", None),
        ("a", Some(("", "a"))),
        ("a/aa", Some(("a", "aa"))),
        ("a/aa/a", Some(("a", "aa/a"))),
        ("foo.com", Some(("", "foo.com"))),
        ("foo.com/", None),
        ("foo.com:8080/bar", Some(("foo.com:8080", "bar"))),
        ("foo.com:http/bar", None),
        ("foo.com/bar", Some(("foo.com", "bar"))),
        ("foo.com/bar/baz", Some(("foo.com", "bar/baz"))),
        ("localhost:8080/bar", Some(("localhost:8080", "bar"))),
        (
            "sub-dom1.foo.com/bar/baz/quux",
            Some(("sub-dom1.foo.com", "bar/baz/quux")),
        ),
        ("blog.foo.com/bar/baz", Some(("blog.foo.com", "bar/baz"))),
        ("a^a", None),
        ("aa/asdf$$^/aa", None),
        ("asdf$$^/aa", None),
        ("aa-a/a", Some(("aa-a", "a"))),
        (&long, Some(("a", &long_path))),
        ("a-/a/a/a", None),
        ("foo.com/a-/a/a", None),
        ("-foo/bar", None),
        ("foo/bar-", None),
        ("foo-/bar", None),
        ("foo/-bar", None),
        ("_foo/bar", None),
        ("foo_bar", Some(("", "foo_bar"))),
        ("foo_bar.com", Some(("", "foo_bar.com"))),
        ("foo_bar.com:8080", None),
        ("foo_bar.com:8080/app", None),
        ("foo.com/foo_bar", Some(("foo.com", "foo_bar"))),
        ("____/____", None),
        ("_docker/_docker", None),
        ("docker_/docker_", None),
        (
            "b.gcr.io/test.example.com/my-app",
            Some(("b.gcr.io", "test.example.com/my-app")),
        ),
        ("xn--n3h.com/myimage", Some(("xn--n3h.com", "myimage"))),
        ("xn--7o8h.com/myimage", Some(("xn--7o8h.com", "myimage"))),
        (
            "example.com/xn--7o8h.com/myimage",
            Some(("example.com", "xn--7o8h.com/myimage")),
        ),
        (
            "example.com/some_separator__underscore/myimage",
            Some(("example.com", "some_separator__underscore/myimage")),
        ),
        ("example.com/__underscore/myimage", None),
        ("example.com/..dots/myimage", None),
        ("example.com/.dots/myimage", None),
        ("example.com/nodouble..dots/myimage", None),
        ("docker./docker", None),
        (".docker/docker", None),
        ("docker-/docker", None),
        ("-docker/docker", None),
        ("do..cker/docker", None),
        ("do__cker:8080/docker", None),
        ("do__cker/docker", Some(("", "do__cker/docker"))),
        (
            "registry.io/foo/project--id.module--name.ver---sion--name",
            Some((
                "registry.io",
                "foo/project--id.module--name.ver---sion--name",
            )),
        ),
        ("Asdf.com/foo/bar", Some(("Asdf.com", "foo/bar"))),
        ("Foo/FarB", None),
    ];
    for (input, want) in cases {
        let got = ANCHORED_NAME.captures(input).map(|c| {
            (
                c.get(1).map_or("", |m| m.as_str()),
                c.get(2).map_or("", |m| m.as_str()),
            )
        });
        assert_eq!(got, want, "{input:?}");
    }
}

/// Upstream `TestReferenceRegexp`: `referenceRegexp`, with its captures.
#[test]
fn upstream_reference_regexp() {
    assert_eq!(REFERENCE.captures_len(), 4);
    let d = "sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912";
    /// (name, tag, digest) captured, or no match.
    type Captured<'a> = Option<(&'a str, &'a str, &'a str)>;
    let cases: Vec<(String, Captured)> = vec![
        (
            s("registry.com:8080/myapp:tag"),
            Some(("registry.com:8080/myapp", "tag", "")),
        ),
        (
            format!("registry.com:8080/myapp@{d}"),
            Some(("registry.com:8080/myapp", "", d)),
        ),
        (
            format!("registry.com:8080/myapp:tag2@{d}"),
            Some(("registry.com:8080/myapp", "tag2", d)),
        ),
        (s("registry.com:8080/myapp@sha256:badbadbadbad"), None),
        (s("registry.com:8080/myapp:invalid~tag"), None),
        (s("bad_hostname.com:8080/myapp:tag"), None),
        // localhost is a name here, and 8080 a tag.
        (
            format!("localhost:8080@{d}"),
            Some(("localhost", "8080", d)),
        ),
        (
            format!("localhost:8080/name@{d}"),
            Some(("localhost:8080/name", "", d)),
        ),
        (format!("localhost:http/name@{d}"), None),
        (format!("localhost@{d}"), Some(("localhost", "", d))),
        (s("registry.com:8080/myapp@bad"), None),
        (s("registry.com:8080/myapp@2bad"), None),
    ];
    for (input, want) in cases {
        let got = REFERENCE.captures(&input).map(|c| {
            (
                c.get(1).map_or("", |m| m.as_str()),
                c.get(2).map_or("", |m| m.as_str()),
                c.get(3).map_or("", |m| m.as_str()),
            )
        });
        assert_eq!(got, want, "{input:?}");
    }
}

/// Upstream `TestIdentifierRegexp`.
#[test]
fn upstream_identifier_regexp() {
    for (input, matches) in [
        (
            "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821",
            true,
        ),
        (
            "7EC43B381E5AEFE6E04EFB0B3F0693FF2A4A50652D64AEC573905F2DB5889A1C",
            false,
        ),
        (
            "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf",
            false,
        ),
        (
            "sha256:da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821",
            false,
        ),
        (
            "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf98218482",
            false,
        ),
    ] {
        assert_eq!(ANCHORED_IDENTIFIER.is_match(input), matches, "{input:?}");
    }
}

// ------------------------------------------------ go-digest digest_test.go

/// go-digest v1.0.0 `TestParseDigest` (sha384 registered, as in Docker; no
/// blake3, which go-digest v1.0.0 does not know).
#[test]
fn go_digest_parse_table() {
    let sha384 = "d3fc7881460b7e22e3d172954463dddd7866d17597e7248453c48b3e9d26d9596bf9c4a9cf8072c9d5bad76e19af801d";
    let cases: Vec<(String, Result<(), &str>)> = vec![
        (
            s("sha256:e58fcf7418d4390dec8e8fb69d88c06ec07039d651fedd3aa72af9972e7d046b"),
            Ok(()),
        ),
        (format!("sha384:{sha384}"), Ok(())),
        (format!("sha512:{}", "0123456789abcdef".repeat(8)), Ok(())),
        (
            s("blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"),
            Err("unsupported digest algorithm"),
        ),
        (s(""), Err("invalid checksum digest format")),
        (s("     "), Err("invalid checksum digest format")),
        (s("sha256:"), Err("invalid checksum digest format")),
        (
            format!("sha256:{}", " ".repeat(64)),
            Err("invalid checksum digest format"),
        ),
        (s(":"), Err("invalid checksum digest format")),
        (s(":abc"), Err("invalid checksum digest format")),
        (
            s("d41d8cd98f00b204e9800998ecf8427e"),
            Err("invalid checksum digest format"),
        ),
        (
            s("sha256:d41d8cd98f00b204e9800m98ecf8427e"),
            Err("invalid checksum digest length"),
        ),
        (
            s("sha256:abcdef0123456789"),
            Err("invalid checksum digest length"),
        ),
        (
            s("sha512:abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"),
            Err("invalid checksum digest length"),
        ),
        (
            s("foo:d41d8cd98f00b204e9800998ecf8427e"),
            Err("unsupported digest algorithm"),
        ),
        (
            format!("sha384__foo+bar:{sha384}"),
            Err("invalid checksum digest format"),
        ),
        (
            format!("sha384.foo+bar:{sha384}"),
            Err("unsupported digest algorithm"),
        ),
        (
            format!("sha384_foo+bar:{sha384}"),
            Err("unsupported digest algorithm"),
        ),
        (
            s("sha256+b64:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564"),
            Err("unsupported digest algorithm"),
        ),
        (
            s("sha256:E58FCF7418D4390DEC8E8FB69D88C06EC07039D651FEDD3AA72AF9972E7D046B"),
            Err("invalid checksum digest format"),
        ),
        // Edges: each length, one short and one long; an upper-case algorithm.
        (
            format!("sha256:{}", f(63)),
            Err("invalid checksum digest length"),
        ),
        (
            format!("sha256:{}", f(65)),
            Err("invalid checksum digest length"),
        ),
        (format!("sha384:{}", f(96)), Ok(())),
        (
            format!("sha384:{}", f(64)),
            Err("invalid checksum digest length"),
        ),
        (
            format!("sha512:{}", f(127)),
            Err("invalid checksum digest length"),
        ),
        (
            format!("SHA256:{}", f(64)),
            Err("invalid checksum digest format"),
        ),
        (
            format!("md5:{}", f(32)),
            Err("unsupported digest algorithm"),
        ),
    ];
    for (input, want) in cases {
        assert_eq!(
            validate_digest(&input).map_err(|e| e.to_string()),
            want.map_err(s),
            "{input:?}"
        );
    }
}

// ------------------------------------------------------------ grammar edges

/// Edges of the tag, length, identifier, case, domain and digest rules.
#[test]
fn grammar_edges() {
    let d = sha256_f();
    let tag128 = "t".repeat(128);
    let hub247 = "a".repeat(247);
    let hex = "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821";
    let hex_upper = "7EC43B381E5AEFE6E04EFB0B3F0693FF2A4A50652D64AEC573905F2DB5889A1C";
    let cases = vec![
        // Tags: 128 characters at most, a word character first.
        (
            format!("foo:{tag128}"),
            ok(
                "docker.io",
                "library/foo",
                Some(&tag128),
                None,
                &format!("foo:{tag128}"),
            ),
        ),
        (format!("foo:{tag128}t"), err(INVALID)),
        (
            s("foo:_x"),
            ok("docker.io", "library/foo", Some("_x"), None, "foo:_x"),
        ),
        (
            s("foo:V1.0-rc_1"),
            ok(
                "docker.io",
                "library/foo",
                Some("V1.0-rc_1"),
                None,
                "foo:V1.0-rc_1",
            ),
        ),
        (s("foo:-x"), err(INVALID)),
        (s("foo:.x"), err(INVALID)),
        (s("foo:é"), err(INVALID)),
        (s("foo:"), err(INVALID)),
        (s("foo:bar:baz"), err(INVALID)),
        (s("foo@bar@baz"), err(INVALID)),
        (s(" foo"), err(INVALID)),
        (s("foo "), err(INVALID)),
        // The path is at most 255 characters; the domain does not count, `library/` does.
        (
            format!("example.com/{}", "a".repeat(255)),
            ok(
                "example.com",
                &"a".repeat(255),
                None,
                None,
                &format!("example.com/{}", "a".repeat(255)),
            ),
        ),
        (format!("example.com/{}", "a".repeat(256)), err(TOO_LONG)),
        (
            hub247.clone(),
            ok(
                "docker.io",
                &format!("library/{hub247}"),
                None,
                None,
                &hub247,
            ),
        ),
        (format!("{hub247}a"), err(TOO_LONG)),
        (
            format!("{}/b", "a".repeat(253)),
            ok(
                "docker.io",
                &format!("{}/b", "a".repeat(253)),
                None,
                None,
                &format!("{}/b", "a".repeat(253)),
            ),
        ),
        (format!("{}/b", "a".repeat(254)), err(TOO_LONG)),
        // A 64-hex string is an identifier; with a tag, or one digit less or more, a name.
        (s(hex), err(&hex_identifier(hex))),
        (
            format!("{hex}:tag"),
            ok(
                "docker.io",
                &format!("library/{hex}"),
                Some("tag"),
                None,
                &format!("{hex}:tag"),
            ),
        ),
        (
            format!("{hex}a"),
            ok(
                "docker.io",
                &format!("library/{hex}a"),
                None,
                None,
                &format!("{hex}a"),
            ),
        ),
        (
            s(hex_upper),
            err(&not_lowercase(&format!("library/{hex_upper}"))),
        ),
        // Upper case: refused in the path, allowed in the domain and the tag.
        (s("Foo"), err(&not_lowercase("library/Foo"))),
        (s("docker.io/Foo"), err(&not_lowercase("library/Foo"))),
        (s("foo.com/Bar"), err(&not_lowercase("Bar"))),
        (s("foo.com/bar/Baz:tag"), err(&not_lowercase("bar/Baz"))),
        (
            s("Foo.com/bar"),
            ok("Foo.com", "bar", None, None, "Foo.com/bar"),
        ),
        (s("Foo/bar"), ok("Foo", "bar", None, None, "Foo/bar")),
        (
            s("fOO/bar:TAG"),
            ok("fOO", "bar", Some("TAG"), None, "fOO/bar:TAG"),
        ),
        // The path is what precedes the first ':', so an upper-case algorithm is in it.
        (
            format!("foo@SHA256:{}", f(64)),
            err(&not_lowercase("library/foo@SHA256")),
        ),
        (
            format!("foo:tag@SHA256:{}", f(64)),
            err("invalid checksum digest format"),
        ),
        // Go lower-cases rune by rune: KELVIN SIGN is `k`, U+0130 is `i`.
        (
            s("\u{212A}.com/foo"),
            err("repository name must be lowercase"),
        ),
        (
            s("\u{130}.com/foo"),
            err("repository name must be lowercase"),
        ),
        (s("\u{212A}/foo"), err("repository name must be lowercase")),
        (s("fo\u{212A}"), err(&not_lowercase("library/fo\u{212A}"))),
        (s("foo/\u{3A3}"), err(&not_lowercase("foo/\u{3A3}"))),
        // Domains.
        (
            s("index.docker.io/foo"),
            ok("docker.io", "library/foo", None, None, "foo"),
        ),
        (
            s("index.docker.io/library/foo:1"),
            ok("docker.io", "library/foo", Some("1"), None, "foo:1"),
        ),
        (
            s("index.docker.io/foo/bar"),
            ok("docker.io", "foo/bar", None, None, "foo/bar"),
        ),
        (
            s("docker.io/foo/bar"),
            ok("docker.io", "foo/bar", None, None, "foo/bar"),
        ),
        (
            s("registry-1.docker.io/foo"),
            ok(
                "registry-1.docker.io",
                "foo",
                None,
                None,
                "registry-1.docker.io/foo",
            ),
        ),
        (
            s("localhost/foo"),
            ok("localhost", "foo", None, None, "localhost/foo"),
        ),
        (
            s("localhost/library/foo"),
            ok(
                "localhost",
                "library/foo",
                None,
                None,
                "localhost/library/foo",
            ),
        ),
        (
            s("localhost:5000/foo"),
            ok("localhost:5000", "foo", None, None, "localhost:5000/foo"),
        ),
        (
            format!("localhost:5000/foo@{d}"),
            ok(
                "localhost:5000",
                "foo",
                None,
                Some(&d),
                &format!("localhost:5000/foo@{d}"),
            ),
        ),
        // Upstream's FIXME: a bare `localhost` or `example.com` is a Hub name.
        (
            s("localhost"),
            ok("docker.io", "library/localhost", None, None, "localhost"),
        ),
        (
            s("localhost:5000"),
            ok(
                "docker.io",
                "library/localhost",
                Some("5000"),
                None,
                "localhost:5000",
            ),
        ),
        (
            s("example.com"),
            ok(
                "docker.io",
                "library/example.com",
                None,
                None,
                "example.com",
            ),
        ),
        (
            s("localhostx/foo"),
            ok("docker.io", "localhostx/foo", None, None, "localhostx/foo"),
        ),
        (
            s("quay.io/library/foo"),
            ok("quay.io", "library/foo", None, None, "quay.io/library/foo"),
        ),
        (
            s("docker.io/library/foo/bar"),
            ok(
                "docker.io",
                "library/foo/bar",
                None,
                None,
                "library/foo/bar",
            ),
        ),
        (
            s("[::1]:5000/foo"),
            ok("[::1]:5000", "foo", None, None, "[::1]:5000/foo"),
        ),
        (
            s("[::1]/foo:tag"),
            ok("[::1]", "foo", Some("tag"), None, "[::1]/foo:tag"),
        ),
        (
            s("[FC00::1]:5000/foo"),
            ok("[FC00::1]:5000", "foo", None, None, "[FC00::1]:5000/foo"),
        ),
        (s("::1/foo"), err(INVALID)),
        (s("[::1]:/foo"), err(INVALID)),
        (s("example.com:http/foo"), err(INVALID)),
        (s("example.com:5000:6000/foo"), err(INVALID)),
        (s("https://example.com/foo"), err(INVALID)),
        (s("/foo"), err(INVALID)),
        (s("foo//bar"), err(INVALID)),
        // Digests.
        (
            format!("foo@{d}"),
            ok(
                "docker.io",
                "library/foo",
                None,
                Some(&d),
                &format!("foo@{d}"),
            ),
        ),
        (
            format!("foo:tag@{d}"),
            ok(
                "docker.io",
                "library/foo",
                Some("tag"),
                Some(&d),
                &format!("foo:tag@{d}"),
            ),
        ),
        (
            format!("foo@sha256:{}", f(63)),
            err("invalid checksum digest length"),
        ),
        (
            format!("foo@sha256:{}", f(65)),
            err("invalid checksum digest length"),
        ),
        (format!("foo@sha256:{}", f(31)), err(INVALID)),
        (
            format!("foo@sha256:{}", "F".repeat(64)),
            err("invalid checksum digest format"),
        ),
        (
            format!("foo@sha384:{}", f(96)),
            ok(
                "docker.io",
                "library/foo",
                None,
                Some(&format!("sha384:{}", f(96))),
                &format!("foo@sha384:{}", f(96)),
            ),
        ),
        (
            format!("foo@sha384:{}", f(64)),
            err("invalid checksum digest length"),
        ),
        (
            format!("foo@sha512:{}", f(127)),
            err("invalid checksum digest length"),
        ),
        (
            format!("foo@md5:{}", f(32)),
            err("unsupported digest algorithm"),
        ),
        (
            format!("foo@sha256+b64:{}", f(64)),
            err("unsupported digest algorithm"),
        ),
        (format!("foo@sha256:{}g", f(63)), err(INVALID)),
        (s("foo@sha256"), err(INVALID)),
        (s("foo@"), err(INVALID)),
    ];
    check_all(&cases);
}

/// A first component that `splitDockerDomain` takes for a domain (it holds a
/// `.`) but that the grammar reads only as a path component (a host has no
/// `_`) is refused. Upstream returns such a reference with an empty domain,
/// which names no registry. Found by the `reference_parse` fuzz target.
#[test]
fn a_domain_that_is_only_a_path_component_is_refused() {
    let d = sha256_f();
    for input in [
        s("index.d_cker.io/foo"),
        s("a_b.example.com/ns/app:1"),
        s("foo__bar.io/x"),
        format!("a.b_c/app@{d}"),
    ] {
        check(&input, &Want::Err(s(INVALID)));
    }
}

/// Names stay name-only: no implicit `latest`.
#[test]
fn no_implicit_latest() {
    for input in [
        "busybox",
        "library/busybox",
        "docker.io/busybox",
        "gcr.io/library/busybox",
    ] {
        let r = Reference::parse_normalized(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(r.tag(), None, "{input:?}");
        assert_eq!(r.digest(), None, "{input:?}");
        assert!(!r.to_string().ends_with(":latest"), "{input:?}");
    }
}

/// Docker's `ParseNamed`: only the normalized spelling is accepted.
#[test]
fn parse_named_requires_canonical() {
    let not_canonical = Err(ReferenceError::NameNotCanonical);
    assert_eq!(Reference::parse_named("ubuntu"), not_canonical);
    assert_eq!(Reference::parse_named("docker.io/ubuntu"), not_canonical);
    assert_eq!(
        Reference::parse_named("index.docker.io/library/ubuntu"),
        not_canonical
    );
    assert_eq!(
        Reference::parse_named("Ubuntu"),
        Err(ReferenceError::PathNotLowercase(s("library/Ubuntu")))
    );
    assert_eq!(
        Reference::parse_named("docker.io/library/ubuntu:22.04").map(|r| r.familiar()),
        Ok(s("ubuntu:22.04"))
    );
    assert_eq!(
        ReferenceError::NameNotCanonical.to_string(),
        "repository name must be canonical"
    );
}

/// `with_tag` and `with_digest` validate, replace, and keep the other part.
#[test]
fn with_tag_and_with_digest() {
    let d = sha256_f();
    let d2 = format!("sha256:{}", "e".repeat(64));
    let r = Reference::parse_normalized(&format!("foo:old@{d}")).unwrap_or_else(|e| panic!("{e}"));
    let tagged = r.with_tag("new").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tagged.to_string(), format!("docker.io/library/foo:new@{d}"));
    let digested = r.with_digest(&d2).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        digested.to_string(),
        format!("docker.io/library/foo:old@{d2}")
    );
    assert_eq!(r.repository().to_string(), "docker.io/library/foo");
    assert_eq!(r.repository().familiar(), "foo");

    let tag128 = "a".repeat(128);
    assert_eq!(
        r.with_tag(&tag128).map(|r| r.tag().map(str::len)),
        Ok(Some(128))
    );
    for bad in [
        "",
        "-x",
        ".x",
        "a b",
        "a/b",
        "a:b",
        "é",
        &format!("{tag128}a"),
    ] {
        assert_eq!(
            r.with_tag(bad),
            Err(ReferenceError::TagInvalidFormat),
            "{bad:?}"
        );
    }
    // Upstream's grammar check first ("invalid digest format")...
    for bad in [
        "",
        "foo",
        "sha256:abc",
        "sha256",
        &format!("@{d}"),
        &format!("{d} "),
    ] {
        assert_eq!(
            r.with_digest(bad),
            Err(ReferenceError::DigestInvalidFormat),
            "{bad:?}"
        );
    }
    // ...then go-digest's, as for a parsed reference (upstream's WithDigest skips it).
    let short = "sha256:1234567890098765432112345667890098765";
    assert_eq!(
        r.with_digest(short),
        Err(ReferenceError::ChecksumInvalidLength)
    );
    assert_eq!(
        r.with_digest(&format!("md5:{}", f(32))),
        Err(ReferenceError::DigestUnsupported)
    );
    assert_eq!(
        r.with_digest(&format!("sha256:{}", "F".repeat(64))),
        Err(ReferenceError::ChecksumInvalidFormat)
    );
}

/// `is_valid_tag` is Docker's tag grammar, ASCII word characters only.
#[test]
fn tag_grammar() {
    for tag in [
        "latest",
        "v1.0",
        "_x",
        "A",
        "0",
        "1.2.3-rc.1_b",
        &"a".repeat(128),
    ] {
        assert!(is_valid_tag(tag), "{tag:?}");
    }
    for tag in [
        "",
        "-x",
        ".x",
        "a b",
        "a/b",
        "a:b",
        "a@b",
        "é",
        "x\u{212A}",
        " a",
        "a\n",
        &"a".repeat(129),
    ] {
        assert!(!is_valid_tag(tag), "{tag:?}");
    }
}

/// The report's JSON: present fields only.
#[test]
fn parse_report_json() {
    let report = ParseReport::of("ubuntu:22.04");
    let json = serde_json::to_string(&report).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        json,
        r#"{"input":"ubuntu:22.04","valid":true,"name":"docker.io/library/ubuntu","domain":"docker.io","path":"library/ubuntu","tag":"22.04","familiar":"ubuntu:22.04"}"#
    );
    let back: ParseReport = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, report);

    let report = ParseReport::of("Foo");
    let json = serde_json::to_string(&report).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        json,
        r#"{"input":"Foo","valid":false,"error":"invalid reference format: repository name (library/Foo) must be lowercase"}"#
    );
    let back: ParseReport = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, report);

    let d = sha256_f();
    let report = ParseReport::of(&format!("localhost:5000/foo@{d}"));
    assert_eq!(report.tag, None);
    assert_eq!(report.digest.as_deref(), Some(d.as_str()));
    assert_eq!(report.familiar, Some(format!("localhost:5000/foo@{d}")));
}

/// Every error message, word for word as upstream.
#[test]
fn error_messages() {
    for (e, message) in [
        (ReferenceError::InvalidFormat, "invalid reference format"),
        (ReferenceError::TagInvalidFormat, "invalid tag format"),
        (ReferenceError::DigestInvalidFormat, "invalid digest format"),
        (
            ReferenceError::NameContainsUppercase,
            "repository name must be lowercase",
        ),
        (
            ReferenceError::NameEmpty,
            "repository name must have at least one component",
        ),
        (
            ReferenceError::NameTooLong,
            "repository name must not be more than 255 characters",
        ),
        (
            ReferenceError::NameNotCanonical,
            "repository name must be canonical",
        ),
        (
            ReferenceError::PathNotLowercase(s("library/Foo")),
            "invalid reference format: repository name (library/Foo) must be lowercase",
        ),
        (
            ReferenceError::HexIdentifier(s("ab")),
            "invalid repository name (ab), cannot specify 64-byte hexadecimal strings",
        ),
        (
            ReferenceError::ChecksumInvalidFormat,
            "invalid checksum digest format",
        ),
        (
            ReferenceError::ChecksumInvalidLength,
            "invalid checksum digest length",
        ),
        (
            ReferenceError::DigestUnsupported,
            "unsupported digest algorithm",
        ),
    ] {
        assert_eq!(e.to_string(), message);
    }
}
