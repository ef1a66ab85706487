//! The SSRF policy of outbound webhooks (see
//! [`imagestreams_common::config::WebhookConfig`]): which addresses a
//! delivery may reach. Public addresses always; loopback and private ranges
//! only when configured; link-local (where cloud metadata lives) and
//! reserved ranges never. A URL is checked before any lookup, and the
//! connection's own resolver ([`PolicyResolver`]) keeps only allowed
//! addresses, so no DNS rebinding slips between the check and the connect.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use imagestreams_common::config::WebhookConfig;
use reqwest::{
    Url,
    dns::{Addrs, Name, Resolve, Resolving},
};

/// What kind of address a target is, for the SSRF policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Routable.
    Public,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10/8`, `172.16/12`, `192.168/16`, `100.64/10` (CGNAT), `fc00::/7`.
    Private,
    /// `169.254/16`, `fe80::/10` (cloud metadata lives here).
    LinkLocal,
    /// Unspecified, broadcast, multicast, documentation and other reserved ranges.
    Reserved,
}

/// Classifies an address; IPv4-mapped IPv6 addresses count as their IPv4.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        AddressClass::Loopback
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        AddressClass::Private
    } else if ip.is_link_local() {
        AddressClass::LinkLocal
    } else if ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
    {
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        AddressClass::Loopback
    } else if first & 0xfe00 == 0xfc00 {
        AddressClass::Private
    } else if first & 0xffc0 == 0xfe80 {
        AddressClass::LinkLocal
    } else if ip.is_unspecified()
        || ip.is_multicast()
        || first == 0x2001 && ip.segments()[1] == 0x0db8
    {
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

/// Which targets deliveries may reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SsrfPolicy {
    /// Allow private ranges.
    pub allow_private: bool,
    /// Allow loopback.
    pub allow_loopback: bool,
}

impl SsrfPolicy {
    /// The policy of a webhook configuration.
    pub fn of(cfg: &WebhookConfig) -> Self {
        SsrfPolicy {
            allow_private: cfg.allow_private,
            allow_loopback: cfg.allow_loopback,
        }
    }

    /// Why `ip` is refused, if it is.
    pub fn refusal(&self, ip: IpAddr) -> Option<String> {
        match classify(ip) {
            AddressClass::Public => None,
            AddressClass::Loopback if self.allow_loopback => None,
            AddressClass::Private if self.allow_private => None,
            AddressClass::Loopback => Some(format!(
                "{ip} is a loopback address, refused by the SSRF policy (trigger.webhook.allow_loopback)"
            )),
            AddressClass::Private => Some(format!(
                "{ip} is a private address, refused by the SSRF policy (trigger.webhook.allow_private)"
            )),
            AddressClass::LinkLocal => Some(format!(
                "{ip} is a link-local address, always refused by the SSRF policy"
            )),
            AddressClass::Reserved => Some(format!(
                "{ip} is a reserved address, always refused by the SSRF policy"
            )),
        }
    }

    /// Checks a URL without resolving names: http(s), and when the host is an
    /// IP literal or `localhost`, the address. `Err` says why it is refused.
    pub fn check_url(&self, url: &str) -> Result<Url, String> {
        let parsed = Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("must be an http or https URL".into());
        }
        match parsed.host() {
            None => Err("has no host".into()),
            Some(url::Host::Ipv4(ip)) => self.refusal(IpAddr::V4(ip)).map_or(Ok(()), Err),
            Some(url::Host::Ipv6(ip)) => self.refusal(IpAddr::V6(ip)).map_or(Ok(()), Err),
            Some(url::Host::Domain(d))
                if d.eq_ignore_ascii_case("localhost") || d.ends_with(".localhost") =>
            {
                self.refusal(IpAddr::V4(Ipv4Addr::LOCALHOST))
                    .map_or(Ok(()), Err)
            }
            Some(url::Host::Domain(_)) => Ok(()),
        }?;
        Ok(parsed)
    }

    /// The addresses of `host:port` that the policy allows; `Err` when the
    /// name does not resolve or every address is refused.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| ResolveError::Lookup(format!("cannot resolve {host}: {e}")))?
            .collect();
        let mut refusals = Vec::new();
        let allowed: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| match self.refusal(a.ip()) {
                None => true,
                Some(why) => {
                    refusals.push(why);
                    false
                }
            })
            .collect();
        if allowed.is_empty() {
            return Err(match refusals.into_iter().next() {
                Some(why) => ResolveError::Refused(format!("{host}: {why}")),
                None => ResolveError::Lookup(format!("{host} has no address")),
            });
        }
        Ok(allowed)
    }
}

/// Why a webhook host yields no address to connect to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The name did not resolve (retried).
    #[error("{0}")]
    Lookup(String),
    /// Every address is refused by the SSRF policy (final).
    #[error("{0}")]
    Refused(String),
}

/// reqwest's resolver: only addresses the policy allows, so the connection
/// goes where the check said (no DNS rebinding between check and connect).
#[derive(Debug, Clone)]
pub(crate) struct PolicyResolver(pub(crate) SsrfPolicy);

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = policy.resolve(&host, 0).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ssrf_policy_refuses_internal_targets_by_default() {
        let strict = SsrfPolicy::default();
        for ip in [
            "127.0.0.1",
            "::1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "fe80::1",
            "fd00::1",
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "::ffff:127.0.0.1",
            "255.255.255.255",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(strict.refusal(ip).is_some(), "{ip} should be refused");
        }
        assert!(strict.refusal("93.184.216.34".parse().unwrap()).is_none());
        assert!(
            strict
                .refusal("2606:2800:220:1::1".parse().unwrap())
                .is_none()
        );
        let loopback = SsrfPolicy {
            allow_loopback: true,
            allow_private: false,
        };
        assert!(loopback.refusal("127.0.0.1".parse().unwrap()).is_none());
        assert!(loopback.refusal("10.0.0.1".parse().unwrap()).is_some());
        assert!(
            loopback
                .refusal("169.254.169.254".parse().unwrap())
                .is_some()
        );
        let private = SsrfPolicy {
            allow_loopback: false,
            allow_private: true,
        };
        assert!(private.refusal("10.0.0.1".parse().unwrap()).is_none());
        assert!(
            private
                .refusal("169.254.169.254".parse().unwrap())
                .is_some()
        );
    }

    #[test]
    fn urls_are_checked_before_any_lookup() {
        let strict = SsrfPolicy::default();
        assert!(strict.check_url("http://127.0.0.1:8080/hook").is_err());
        assert!(strict.check_url("http://localhost/hook").is_err());
        assert!(strict.check_url("http://[::1]/hook").is_err());
        assert!(strict.check_url("ftp://example.com/").is_err());
        assert!(strict.check_url("https://ci.example.com/hook").is_ok());
    }
}
