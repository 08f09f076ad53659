//! Where a webhook may go (docs/ARCHITECTURE.md §10): HTTPS to a public address, never inside.
//!
//! A tenant chooses its webhook URLs, so without this check sluice would POST wherever a
//! tenant pointed it: the instance metadata service (`169.254.169.254`, `fd00:ec2::254`),
//! `127.0.0.1`, or any address in the VPC. [`check_url`] refuses the scheme and any host that
//! is an address literal outside the public internet; [`check_address`] is applied again to
//! every address a name resolves to, by the resolver the HTTP client connects with, so a
//! name that resolves (or rebinds) inside is refused too. IPv4-mapped, IPv4-compatible, 6to4
//! and NAT64 forms of an address are judged by the IPv4 address they carry.
//!
//! Loopback is allowed only when an [`EgressPolicy`] says so: the local runner and the demo
//! deliver to receivers on 127.0.0.1; on AWS it is off.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What deliveries may reach beyond the public internet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Plain `http://` and loopback addresses (127.0.0.0/8, `::1`) are allowed: for the local
    /// runner and the demo only. Off by default.
    pub allow_loopback: bool,
}

impl EgressPolicy {
    /// Public HTTPS only: the default, and what runs on AWS.
    pub fn public_only() -> Self {
        Self {
            allow_loopback: false,
        }
    }

    /// Also loopback, over HTTP or HTTPS: the local runner and the demo.
    pub fn allowing_loopback() -> Self {
        Self {
            allow_loopback: true,
        }
    }
}

/// Why a webhook may not be delivered to. Final: never retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressRefusal {
    #[error("not a URL: {0}")]
    NotAUrl(String),
    #[error(
        "the scheme must be https (http only to loopback where the local runner or demo allows it), not `{0}`"
    )]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error("the URL carries a user name or password; put credentials in the signing secret")]
    Credentials,
    #[error("{host} is {address}, a {range} address: webhooks only go to public addresses")]
    Address {
        host: String,
        address: IpAddr,
        range: &'static str,
    },
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
}

/// The host of a checked URL: a name to resolve (and check again), or an address already
/// checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookHost {
    Name(String),
    Address(IpAddr),
}

/// A URL that passed [`check_url`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedUrl {
    pub url: url::Url,
    pub host: WebhookHost,
    pub port: u16,
}

/// Checks a webhook URL before anything is resolved or connected: the scheme, no
/// credentials, and a host literal that is public (or loopback where allowed).
pub fn check_url(raw: &str, policy: EgressPolicy) -> Result<CheckedUrl, EgressRefusal> {
    let url = url::Url::parse(raw).map_err(|e| EgressRefusal::NotAUrl(e.to_string()))?;
    let host = match url.host() {
        None => return Err(EgressRefusal::NoHost),
        Some(url::Host::Domain(name)) => {
            WebhookHost::Name(name.trim_end_matches('.').to_ascii_lowercase())
        }
        Some(url::Host::Ipv4(v4)) => WebhookHost::Address(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => WebhookHost::Address(IpAddr::V6(v6)),
    };
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_loopback && is_loopback_host(&host) => {}
        other => return Err(EgressRefusal::Scheme(other.to_owned())),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EgressRefusal::Credentials);
    }
    match &host {
        WebhookHost::Address(address) => check_address(&host_text(&url), *address, policy)?,
        // `localhost` and `*.localhost` always mean loopback (RFC 6761 §6.3): refused on
        // write, before any resolver is asked.
        WebhookHost::Name(_) if is_loopback_host(&host) && !policy.allow_loopback => {
            return Err(EgressRefusal::Address {
                host: host_text(&url),
                address: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                range: LOOPBACK,
            });
        }
        WebhookHost::Name(_) => {}
    }
    let port = url.port_or_known_default().unwrap_or(443);
    Ok(CheckedUrl { url, host, port })
}

fn host_text(url: &url::Url) -> String {
    url.host_str().unwrap_or_default().to_owned()
}

fn is_loopback_host(host: &WebhookHost) -> bool {
    match host {
        WebhookHost::Name(name) => name == "localhost" || name.ends_with(".localhost"),
        WebhookHost::Address(a) => non_public_range(*a) == Some(LOOPBACK),
    }
}

/// Refuses `address` (what `host` resolved to, or its literal) unless it is public, or
/// loopback where the policy allows it.
pub fn check_address(
    host: &str,
    address: IpAddr,
    policy: EgressPolicy,
) -> Result<(), EgressRefusal> {
    match non_public_range(address) {
        None => Ok(()),
        Some(LOOPBACK) if policy.allow_loopback => Ok(()),
        Some(range) => Err(EgressRefusal::Address {
            host: host.to_owned(),
            address,
            range,
        }),
    }
}

const LOOPBACK: &str = "loopback";

/// The special-purpose range `address` is in (IANA's registries), or `None` for a public
/// address.
pub fn non_public_range(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => v4_range(v4),
        IpAddr::V6(v6) => v6_range(v6),
    }
}

fn v4_range(a: Ipv4Addr) -> Option<&'static str> {
    let [o0, o1, o2, _] = a.octets();
    Some(match (o0, o1, o2) {
        (0, _, _) => "unspecified (0.0.0.0/8)",
        (10, _, _) => "private (10.0.0.0/8)",
        (100, 64..=127, _) => "shared CGNAT (100.64.0.0/10)",
        (127, _, _) => LOOPBACK,
        (169, 254, _) => "link-local (169.254.0.0/16, instance metadata)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 0, 0) => "IETF protocol assignment (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "6to4 relay anycast (192.88.99.0/24)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (224..=239, _, _) => "multicast (224.0.0.0/4)",
        (255, 255, 255) if a == Ipv4Addr::BROADCAST => "broadcast",
        (240..=255, _, _) => "reserved (240.0.0.0/4)",
        _ => return None,
    })
}

fn v6_range(a: Ipv6Addr) -> Option<&'static str> {
    let s = a.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if a.is_unspecified() {
        return Some("unspecified (::)");
    }
    if a.is_loopback() {
        return Some(LOOPBACK);
    }
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated): the IPv4 address.
    if s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0) {
        let v4 = embedded(s[6], s[7]);
        return match v4_range(v4) {
            Some(LOOPBACK) => Some(LOOPBACK),
            Some(_) => Some("IPv4-mapped form of a non-public address"),
            None if s[5] == 0 => Some("IPv4-compatible (deprecated, ::/96)"),
            None => None,
        };
    }
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address too.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return v4_range(embedded(s[6], s[7])).map(|_| "NAT64 form of a non-public address");
    }
    if s[0] == 0x2002 {
        return v4_range(embedded(s[1], s[2])).map(|_| "6to4 form of a non-public address");
    }
    Some(match s[0] {
        0x0064 if s[1] == 0xff9b && s[2] == 1 => "local-use NAT64 (64:ff9b:1::/48)",
        0x0100 if s[1..4] == [0, 0, 0] => "discard-only (100::/64)",
        0x2001 if s[1] < 0x0200 => "IETF protocol assignment (2001::/23, Teredo included)",
        0x2001 if s[1] == 0x0db8 => "documentation (2001:db8::/32)",
        0x3fff if s[1] < 0x1000 => "documentation (3fff::/20)",
        0xfc00..=0xfdff => "unique-local (fc00::/7, fd00:ec2::254 included)",
        0xfe80..=0xfebf => "link-local (fe80::/10)",
        0xfec0..=0xfeff => "site-local (fec0::/10, deprecated)",
        0xff00..=0xffff => "multicast (ff00::/8)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> EgressRefusal {
        match check_url(url, EgressPolicy::public_only()) {
            Err(e) => e,
            Ok(ok) => panic!("{url} was accepted: {ok:?}"),
        }
    }

    #[test]
    fn refuses_every_address_inside() {
        for url in [
            "https://169.254.169.254/latest/meta-data/",
            "https://127.0.0.1/",
            "https://127.1.2.3:8443/",
            "https://10.0.0.1/",
            "https://172.16.5.4/",
            "https://172.31.255.255/",
            "https://192.168.1.1/",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://255.255.255.255/",
            "https://224.0.0.1/",
            "https://192.0.2.1/",
            "https://198.18.0.1/",
            "https://240.0.0.1/",
            "https://[::1]/",
            "https://[::]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:169.254.169.254]/",
            "https://[::ffff:10.0.0.1]/",
            "https://[::127.0.0.1]/",
            "https://[64:ff9b::a9fe:a9fe]/",
            "https://[2002:7f00:1::]/",
            "https://[fd00:ec2::254]/",
            "https://[fc00::1]/",
            "https://[fe80::1]/",
            "https://[ff02::1]/",
            "https://[2001:db8::1]/",
            // Decimal, octal and hex spellings are parsed as the addresses they are.
            "https://2130706433/",
            "https://0x7f.1/",
            "https://0177.0.0.1/",
            // Names that mean loopback whatever a resolver says.
            "https://localhost/",
            "https://LOCALHOST./hook",
            "https://metadata.localhost/",
        ] {
            assert!(
                matches!(refused(url), EgressRefusal::Address { .. }),
                "{url}: {:?}",
                refused(url)
            );
        }
    }

    #[test]
    fn accepts_public_https() {
        for url in [
            "https://hooks.example.com/sluice",
            "https://93.184.216.34/x",
            "https://[2606:2800:220:1:248:1893:25c8:1946]/",
            "https://[::ffff:93.184.216.34]/",
            "https://[64:ff9b::5db8:d822]/",
            "https://172.32.0.1/",
        ] {
            assert!(check_url(url, EgressPolicy::public_only()).is_ok(), "{url}");
        }
    }

    #[test]
    fn refuses_plain_http_and_other_schemes_and_credentials() {
        assert_eq!(
            refused("http://hooks.example.com/"),
            EgressRefusal::Scheme("http".into())
        );
        assert_eq!(refused("ftp://x/"), EgressRefusal::Scheme("ftp".into()));
        assert!(matches!(
            refused("file:///etc/passwd"),
            EgressRefusal::NoHost | EgressRefusal::Scheme(_)
        ));
        assert_eq!(
            refused("https://u:p@example.com/"),
            EgressRefusal::Credentials
        );
        assert!(matches!(refused("not a url"), EgressRefusal::NotAUrl(_)));
    }

    #[test]
    fn loopback_only_where_the_policy_allows_it() {
        let local = EgressPolicy::allowing_loopback();
        assert!(check_url("http://127.0.0.1:8080/hook", local).is_ok());
        assert!(check_url("http://localhost:8080/hook", local).is_ok());
        assert!(check_url("https://[::ffff:127.0.0.1]/", local).is_ok());
        assert!(check_url("http://10.0.0.1/", local).is_err());
        assert!(check_url("https://169.254.169.254/", local).is_err());
        assert!(check_url("http://hooks.example.com/", local).is_err());
        assert!(check_url("http://127.0.0.1:8080/hook", EgressPolicy::default()).is_err());
    }

    #[test]
    fn a_name_is_checked_by_what_it_resolves_to() {
        let policy = EgressPolicy::public_only();
        assert!(check_address("x.example", "93.184.216.34".parse().expect("ip"), policy).is_ok());
        let err = check_address("localhost", "127.0.0.1".parse().expect("ip"), policy);
        assert!(
            matches!(&err, Err(e) if e.to_string().contains("localhost is 127.0.0.1, a loopback address")),
            "{err:?}"
        );
    }
}
