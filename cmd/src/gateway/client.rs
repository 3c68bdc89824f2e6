//! Who is on the other end: the client's address, for rate limits, lockouts and the audit
//! trail. The peer of the TCP connection, unless that peer is a proxy the operator named
//! (`--trusted-proxies`): then the address that proxy saw, from `X-Forwarded-For`. Headers
//! from any other peer are ignored, so a client cannot pick its own address.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

/// An address block: `10.0.0.0/8`, `fd00::/8`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    base: IpAddr,
    prefix: u8,
}

impl FromStr for Network {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let raw = raw.trim();
        let (addr, prefix) = raw.split_once('/').map_or((raw, None), |(a, p)| (a, Some(p)));
        let base: IpAddr = addr.parse().map_err(|_| format!("{raw:?} is not an address or address/prefix"))?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("{raw:?}: bad prefix"))?,
        };
        Ok(Self { base, prefix })
    }
}

impl Network {
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        match (self.base, addr) {
            (IpAddr::V4(base), IpAddr::V4(addr)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(base) & mask == u32::from(addr) & mask
            }
            (IpAddr::V6(base), IpAddr::V6(addr)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(base) & mask == u128::from(addr) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4 client on a dual-stack socket arrives as `::ffff:a.b.c.d`.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<Vec<Network>>);

impl TrustedProxies {
    pub fn new(networks: Vec<Network>) -> Self {
        Self(Arc::new(networks))
    }

    fn trusts(&self, addr: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(addr))
    }

    /// The client's address: walking `X-Forwarded-For` from the right (what the nearest
    /// proxy appended) past trusted proxies, the first address that is not one.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer);
        if !self.trusts(client) {
            return client;
        }
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            let Ok(addr) = hop.trim().parse::<IpAddr>() else { break };
            client = canonical(addr);
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

/// The resolved client address of the request being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Resolves the client address once per request (before rate limits and handlers).
pub async fn resolve(
    axum::extract::State(trusted): axum::extract::State<TrustedProxies>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    if let Some(peer) = peer {
        let client = trusted.client(peer, request.headers());
        request.extensions_mut().insert(ClientAddr(client));
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        headers
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_match_their_addresses_only() {
        let net: Network = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")), "v4-mapped addresses count as v4");
        assert!("fd00::/8".parse::<Network>().unwrap().contains(ip("fd12::1")));
        assert!("0.0.0.0/0".parse::<Network>().unwrap().contains(ip("8.8.8.8")));
        assert!("10.0.0.0/33".parse::<Network>().is_err());
        assert!("proxy".parse::<Network>().is_err());
    }

    #[test]
    fn an_untrusted_peer_cannot_name_its_own_address() {
        let trusted = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        assert_eq!(trusted.client(ip("203.0.113.9"), &forwarded("1.2.3.4")), ip("203.0.113.9"));
        assert_eq!(TrustedProxies::default().client(ip("127.0.0.1"), &forwarded("1.2.3.4")), ip("127.0.0.1"));
    }

    #[test]
    fn behind_trusted_proxies_the_first_untrusted_hop_from_the_right_is_the_client() {
        let trusted = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        // The client forged the first entry; the proxy appended the address it saw.
        let headers = forwarded("6.6.6.6, 198.51.100.7, 10.0.0.3");
        assert_eq!(trusted.client(ip("10.0.0.2"), &headers), ip("198.51.100.7"));
        assert_eq!(trusted.client(ip("10.0.0.2"), &HeaderMap::new()), ip("10.0.0.2"));
        assert_eq!(trusted.client(ip("10.0.0.2"), &forwarded("garbage")), ip("10.0.0.2"));
    }
}
