//! Faults served by the fake registry, each ending in its reason with a bounded number of requests.

use std::time::{Duration, Instant};

use futures::future::join_all;
use imagestreams_integration::fake_registry::{FakeRegistry, MANY_TAGS};
use imagestreams_registry_client::{Credential, Keyring, Limits, select_tags};

use crate::{client, expect_reason, fast_limits, repo};

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times() -> anyhow::Result<()> {
    let fake = FakeRegistry::start().await?;
    let limits = fast_limits();
    let c = client(limits.clone());
    let r = repo(&c, &fake.host(), "error500/app", &Keyring::new());
    let e = expect_reason(c.digest(&r, "latest").await, "InternalError");
    assert!(e.to_string().contains("500"), "{e}");
    let e = expect_reason(c.list_tags(&r).await, "InternalError");
    assert!(e.to_string().contains("injected failure"), "{e}");
    let tries = limits.max_retries as usize + 1;
    assert_eq!(fake.count("/v2/error500/app/manifests/"), tries);
    assert_eq!(fake.count("/v2/error500/app/tags/list"), tries);

    // A single 503 is retried away.
    let r = repo(&c, &fake.host(), "error503once/app", &Keyring::new());
    let d = c.digest(&r, "latest").await?;
    assert_eq!(d.digest, FakeRegistry::manifest().1);
    assert_eq!(fake.count("/v2/error503once/app/manifests/"), 2);
    Ok(())
}

#[tokio::test]
async fn retry_after_is_honoured_and_bounded() -> anyhow::Result<()> {
    let fake = FakeRegistry::start().await?;
    let limits = fast_limits();
    let tries = limits.max_retries + 1;

    // Always 429 with Retry-After: 1: each retry waits a second, then the error.
    let c = client(limits.clone());
    let r = repo(&c, &fake.host(), "ratelimited/app", &Keyring::new());
    let start = Instant::now();
    let e = expect_reason(c.digest(&r, "latest").await, "TooManyRequests");
    let elapsed = start.elapsed();
    assert_eq!(fake.count("/v2/ratelimited/app/"), tries as usize);
    assert!(
        elapsed >= Duration::from_secs(u64::from(limits.max_retries)),
        "Retry-After was not honoured: {elapsed:?}"
    );
    assert!(elapsed < crate::TEST_BOUND, "{elapsed:?}");
    assert!(e.to_string().contains(&format!("{tries} attempt")), "{e}");

    // Retry-After beyond max_retry_after: no waiting an hour, no second request.
    let c = client(limits.clone());
    let r = repo(&c, &fake.host(), "ratelimitedlong/app", &Keyring::new());
    let start = Instant::now();
    expect_reason(c.list_tags(&r).await, "TooManyRequests");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(fake.count("/v2/ratelimitedlong/app/"), 1);

    // One 429 with an HTTP-date Retry-After, then success after waiting for it.
    let c = client(limits);
    let r = repo(&c, &fake.host(), "ratelimitedonce/app", &Keyring::new());
    let start = Instant::now();
    let d = c.digest(&r, "v1").await?;
    assert_eq!(d.digest, FakeRegistry::manifest().1);
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(fake.count("/v2/ratelimitedonce/app/"), 2);
    Ok(())
}

#[tokio::test]
async fn rate_limit_remaining_zero_pauses_the_registry() -> anyhow::Result<()> {
    let fake = FakeRegistry::start().await?;
    let c = client(fast_limits());
    let r = repo(&c, &fake.host(), "quota/app", &Keyring::new());
    c.digest(&r, "latest").await?;
    let start = Instant::now();
    c.digest(&r, "v1").await?;
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "RateLimit-Reset: 1 was not waited for: {:?}",
        start.elapsed()
    );

    // A reset an hour away: the next request is not sent at all.
    let c = client(fast_limits());
    let r = repo(&c, &fake.host(), "quotalong/app", &Keyring::new());
    c.digest(&r, "latest").await?;
    expect_reason(c.digest(&r, "v1").await, "TooManyRequests");
    assert_eq!(fake.count("/v2/quotalong/app/"), 1);
    Ok(())
}

#[tokio::test]
async fn a_registry_that_never_answers_times_out() -> anyhow::Result<()> {
    let fake = FakeRegistry::start().await?;
    let limits = fast_limits();
    let c = client(limits.clone());
    let r = repo(&c, &fake.host(), "hang/app", &Keyring::new());
    let start = Instant::now();
    let e = expect_reason(c.digest(&r, "latest").await, "Timeout");
    let elapsed = start.elapsed();
    let tries = limits.max_retries as usize + 1;
    assert_eq!(fake.count("/v2/hang/app/"), tries, "{e}");
    assert!(
        elapsed >= limits.request_timeout() * tries as u32,
        "{elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    Ok(())
}

#[tokio::test]
async fn a_trickling_body_times_out() -> anyhow::Result<()> {
    let fake = FakeRegistry::start().await?;
    let limits = Limits {
        max_retries: 1,
        ..fast_limits()
    };
    let c = client(limits);
    let r = repo(&c, &fake.host(), "slow/app", &Keyring::new());
    let start = Instant::now();
    expect_reason(c.list_tags(&r).await, "Timeout");
    expect_reason(c.manifest(&r, "latest").await, "Timeout");
    assert_eq!(fake.count("/v2/slow/app/tags/list"), 2);
    assert_eq!(fake.count("/v2/slow/app/manifests/"), 2);
    assert!(start.elapsed() < Duration::from_secs(5));
    Ok(())
}

#[tokio::test]
async fn truncated_json_is_an_invalid_response_not_retried() -> anyhow::Result<()> {
    let fake = FakeRegistry::start().await?;
    let c = client(fast_limits());
    let r = repo(&c, &fake.host(), "truncated/app", &Keyring::new());
    let e = expect_reason(c.list_tags(&r).await, "InternalError");
    assert!(e.to_string().contains("not a tag list"), "{e}");
    assert_eq!(fake.count("/v2/truncated/app/tags/list"), 1);
    // A truncated manifest does not hash to its announced digest.
    let e = expect_reason(c.manifest(&r, "latest").await, "InternalError");
    assert!(e.to_string().contains("digest mismatch"), "{e}");
    Ok(())
}

#[tokio::test]
async fn a_huge_body_is_cut_off() -> anyhow::Result<()> {
    let fake = FakeRegistry::start().await?;
    let limits = Limits {
        max_body_bytes: 1024 * 1024,
        request_timeout_ms: 5_000,
        ..fast_limits()
    };
    let c = client(limits);
    let r = repo(&c, &fake.host(), "big/app", &Keyring::new());
    let e = expect_reason(c.list_tags(&r).await, "InternalError");
    assert!(e.to_string().contains("exceeds the limit"), "{e}");
    assert_eq!(fake.count("/v2/big/app/tags/list"), 1);
    Ok(())
}

#[tokio::test]
async fn a_link_to_another_host_is_never_followed() -> anyhow::Result<()> {
    let fake = FakeRegistry::start().await?;
    let foreign = FakeRegistry::start().await?;
    fake.set_foreign_origin(&foreign.url());
    let c = client(fast_limits());
    let r = repo(&c, &fake.host(), "foreignlink/app", &Keyring::new());
    let e = expect_reason(c.list_tags(&r).await, "InternalError");
    assert!(e.to_string().contains(&foreign.host()), "{e}");
    assert_eq!(fake.count("/v2/foreignlink/app/tags/list"), 1);
    assert!(
        foreign.requests().is_empty(),
        "the foreign host was asked: {:?}",
        foreign.requests()
    );
    Ok(())
}

#[tokio::test]
async fn a_hundred_thousand_tags_are_paged_and_capped() -> anyhow::Result<()> {
    let fake = FakeRegistry::start().await?;

    // Capped by tags: 5 pages of 1,000.
    let c = client(Limits {
        max_listed_tags: 5_000,
        tag_page_size: Some(1_000),
        ..fast_limits()
    });
    let r = repo(&c, &fake.host(), "many/app", &Keyring::new());
    let list = c.list_tags(&r).await?;
    assert_eq!(list.tags.len(), 5_000);
    assert!(list.truncated);
    assert_eq!(list.pages, 5);
    assert_eq!(fake.count("/v2/many/app/tags/list"), 5);
    assert_eq!(list.tags[4_999], "t04999");

    // Capped by pages.
    let c = client(Limits {
        max_tag_pages: 3,
        ..fast_limits()
    });
    let list = c.list_tags(&r).await?;
    assert_eq!(
        (list.tags.len(), list.pages, list.truncated),
        (3_000, 3, true)
    );
    assert_eq!(fake.count("/v2/many/app/tags/list"), 8);

    // Not capped: all of them, by Link, in 100 pages.
    let c = client(fast_limits());
    let start = Instant::now();
    let list = c.list_tags(&r).await?;
    assert_eq!(list.tags.len(), MANY_TAGS);
    assert_eq!(list.pages, 100);
    assert!(!list.truncated);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    // The import cap keeps 50, in OpenShift's order.
    let picked = select_tags(&list.tags, c.limits().max_tags_per_import);
    assert_eq!(picked.len(), 50);
    assert_eq!(picked[0], "t00000");
    Ok(())
}

#[tokio::test]
async fn head_without_a_digest_falls_back_to_get() -> anyhow::Result<()> {
    let fake = FakeRegistry::start().await?;
    let c = client(fast_limits());
    let r = repo(&c, &fake.host(), "noheader/app", &Keyring::new());
    let d = c.digest(&r, "latest").await?;
    assert_eq!(d.digest, FakeRegistry::manifest().1);
    let methods: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|q| q.path.starts_with("/v2/noheader/"))
        .map(|q| q.method)
        .collect();
    assert_eq!(methods, ["HEAD", "GET"]);
    // Every manifest request accepts the four manifest types.
    for q in fake.requests() {
        let accept = q.accept.unwrap_or_default();
        for t in [
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        ] {
            assert!(accept.contains(t), "{accept}");
        }
    }

    let r = repo(&c, &fake.host(), "baddigest/app", &Keyring::new());
    let e = expect_reason(c.digest(&r, "latest").await, "InternalError");
    assert!(e.to_string().contains("digest mismatch"), "{e}");
    Ok(())
}

#[tokio::test]
async fn bearer_tokens_are_fetched_once_and_never_leak_the_password() -> anyhow::Result<()> {
    let fake = FakeRegistry::start().await?;
    let mut keyring = Keyring::new();
    keyring.insert(
        &fake.host(),
        Credential::basic(FakeRegistry::USER, FakeRegistry::PASSWORD),
    )?;
    let c = client(fast_limits());
    let r = repo(&c, &fake.host(), "private/app", &keyring);
    let list = c.list_tags(&r).await?;
    assert_eq!(list.tags, ["latest", "v1"]);
    let digests = join_all(["latest", "v1", "latest"].map(|t| c.digest(&r, t))).await;
    for d in digests {
        assert_eq!(d?.digest, FakeRegistry::manifest().1);
    }
    assert_eq!(fake.count("/token"), 1, "one token per scope, cached");
    for q in fake.requests() {
        let auth = q.authorization.unwrap_or_default();
        if q.path == "/token" {
            assert!(auth.starts_with("Basic "), "{auth}");
        } else {
            assert!(!auth.starts_with("Basic "), "{} got {auth}", q.path);
        }
    }

    // Wrong password: the token server refuses it; no credentials: the registry does.
    let mut wrong = Keyring::new();
    wrong.insert(
        &fake.host(),
        Credential::basic(FakeRegistry::USER, "not-the-password"),
    )?;
    let r = repo(&c, &fake.host(), "private/app", &wrong);
    let e = expect_reason(c.digest(&r, "latest").await, "Unauthorized");
    assert!(!format!("{e} {e:?}").contains("not-the-password"), "{e}");
    let r = repo(&c, &fake.host(), "private/app", &Keyring::new());
    let e = expect_reason(c.list_tags(&r).await, "Unauthorized");
    assert!(!format!("{e} {e:?} {r:?}").contains(FakeRegistry::PASSWORD));
    Ok(())
}

#[tokio::test]
async fn basic_auth_is_sent_after_the_first_challenge() -> anyhow::Result<()> {
    let fake = FakeRegistry::start().await?;
    let mut keyring = Keyring::new();
    keyring.insert(
        &fake.host(),
        Credential::basic(FakeRegistry::USER, FakeRegistry::PASSWORD),
    )?;
    let c = client(fast_limits());
    let r = repo(&c, &fake.host(), "basic/app", &keyring);
    assert_eq!(c.list_tags(&r).await?.tags, ["latest", "v1"]);
    for tag in ["latest", "v1"] {
        c.digest(&r, tag).await?;
    }
    let anonymous = fake
        .requests()
        .iter()
        .filter(|q| q.authorization.is_none())
        .count();
    assert_eq!(
        anonymous, 1,
        "only the first request goes without credentials"
    );
    assert_eq!(fake.requests().len(), 4);
    let e = expect_reason(
        c.list_tags(&repo(&c, &fake.host(), "basic/app", &Keyring::new()))
            .await,
        "Unauthorized",
    );
    assert!(e.to_string().contains("no credentials"), "{e}");
    Ok(())
}

#[tokio::test]
async fn concurrency_and_rate_are_bounded_per_registry() -> anyhow::Result<()> {
    let fake = FakeRegistry::start().await?;
    let c = client(Limits {
        max_concurrency: 4,
        ..fast_limits()
    });
    let r = repo(&c, &fake.host(), "delay/app", &Keyring::new());
    let results = join_all((0..40).map(|_| c.digest(&r, "latest"))).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(fake.max_in_flight(), 4);

    let c = client(Limits {
        requests_per_second: 20.0,
        burst: 1,
        ..fast_limits()
    });
    let r = repo(&c, &fake.host(), "ok/app", &Keyring::new());
    let start = Instant::now();
    let results = join_all((0..11).map(|_| c.digest(&r, "latest"))).await;
    assert!(results.iter().all(Result::is_ok));
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(480),
        "11 requests at 20/s: {elapsed:?}"
    );
    Ok(())
}

#[tokio::test]
async fn an_unreachable_registry_is_reported_after_bounded_retries() -> anyhow::Result<()> {
    // A port nothing listens on.
    let port = imagestreams_integration::free_port()?;
    let c = client(fast_limits());
    let before = c.requests_sent();
    let r = repo(&c, &format!("127.0.0.1:{port}"), "a/b", &Keyring::new());
    let e = expect_reason(c.list_tags(&r).await, "ServiceUnavailable");
    assert_eq!(c.requests_sent() - before, 3, "{e}");
    Ok(())
}
