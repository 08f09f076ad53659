//! The resolver the webhook client connects with (docs/ARCHITECTURE.md §10): it resolves a
//! webhook's host itself and hands the connector only addresses that pass
//! [`check_address`], so the address connected to is the address checked. A name that
//! resolves to anything inside (loopback, private, link-local, …) is refused outright, even
//! if it also resolves outside: a DNS answer that changes between a check and the connection
//! (rebinding) has nothing to change, since there is no second lookup.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use sluice_core::alerting::egress::{EgressPolicy, EgressRefusal, check_address};

/// Turns a host name into addresses: the system's resolver, or a test's.
#[async_trait]
pub trait Lookup: Send + Sync + std::fmt::Debug {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>>;
}

/// The operating system's resolver (`getaddrinfo`, through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

#[async_trait]
impl Lookup for SystemLookup {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        Ok(tokio::net::lookup_host((host, 0))
            .await?
            .map(|a| a.ip())
            .collect())
    }
}

/// Resolves, then refuses every answer that is not all public (or loopback where allowed).
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: EgressPolicy,
    lookup: Arc<dyn Lookup>,
}

impl GuardedResolver {
    pub fn new(policy: EgressPolicy, lookup: Arc<dyn Lookup>) -> Self {
        Self { policy, lookup }
    }

    /// The checked addresses of `host`, or why there are none to connect to.
    pub async fn resolve_checked(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let addresses = self
            .lookup
            .lookup(host)
            .await
            .map_err(ResolveError::Lookup)?;
        if addresses.is_empty() {
            return Err(ResolveError::Refused(EgressRefusal::NoAddress {
                host: host.to_owned(),
            }));
        }
        for address in &addresses {
            check_address(host, *address, self.policy).map_err(|refusal| {
                tracing::warn!(host, %address, %refusal, "webhook host resolves inside; refused");
                ResolveError::Refused(refusal)
            })?;
        }
        Ok(addresses)
    }
}

/// Why a webhook host gave no address to connect to.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Resolving failed (worth retrying).
    #[error("resolving: {0}")]
    Lookup(#[source] std::io::Error),
    /// It resolved somewhere webhooks may not go (final).
    #[error(transparent)]
    Refused(EgressRefusal),
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        Box::pin(async move {
            match this.resolve_checked(name.as_str()).await {
                Ok(addresses) => {
                    let addrs: Addrs = Box::new(
                        addresses
                            .into_iter()
                            .map(|ip| SocketAddr::new(ip, 0))
                            .collect::<Vec<_>>()
                            .into_iter(),
                    );
                    Ok(addrs)
                }
                // The refusal itself, so the poster finds it in the error's chain.
                Err(ResolveError::Refused(refusal)) => Err(Box::new(refusal) as _),
                Err(e) => Err(Box::new(e) as _),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(Vec<IpAddr>);

    #[async_trait]
    impl Lookup for Fixed {
        async fn lookup(&self, _: &str) -> std::io::Result<Vec<IpAddr>> {
            Ok(self.0.clone())
        }
    }

    fn resolver(addresses: &[&str], policy: EgressPolicy) -> GuardedResolver {
        let ips = addresses.iter().filter_map(|a| a.parse().ok()).collect();
        GuardedResolver::new(policy, Arc::new(Fixed(ips)))
    }

    #[tokio::test]
    async fn a_name_resolving_partly_inside_is_refused_entirely() {
        let r = resolver(&["93.184.216.34", "10.0.0.7"], EgressPolicy::public_only());
        let err = r.resolve_checked("mixed.example").await;
        assert!(
            matches!(&err, Err(ResolveError::Refused(EgressRefusal::Address { range, .. })) if range.contains("private")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_public_name_gives_exactly_the_checked_addresses() {
        let r = resolver(&["93.184.216.34"], EgressPolicy::public_only());
        let ok = r.resolve_checked("hooks.example").await;
        assert!(
            matches!(&ok, Ok(a) if a == &vec!["93.184.216.34".parse::<IpAddr>().expect("ip")]),
            "{ok:?}"
        );
    }

    #[tokio::test]
    async fn a_name_with_no_address_is_refused() {
        let r = resolver(&[], EgressPolicy::public_only());
        assert!(matches!(
            r.resolve_checked("nothing.example").await,
            Err(ResolveError::Refused(EgressRefusal::NoAddress { .. }))
        ));
    }
}
