//! The client address of a request, and the key that per-client limits count against.
//!
//! Behind a reverse proxy every connection comes from the proxy, so the client address is
//! taken from `X-Forwarded-For`. The relay reads that header only on connections from proxies
//! the operator listed as trusted, because any other client could write any address into it.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use actix_web::HttpRequest;
use ipnet::IpNet;

/// Maximum `X-Forwarded-For` entries examined, counted from the nearest proxy.
const MAX_FORWARDED_HOPS: usize = 16;

/// The networks whose `X-Forwarded-For` header is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Trusts the given networks; an empty list trusts no proxy.
    pub fn new(networks: Vec<IpNet>) -> Self {
        Self(networks)
    }

    fn contains(&self, address: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(&address))
    }

    /// Returns the client address of `request`: the peer address, or, when the peer is a
    /// trusted proxy, the nearest `X-Forwarded-For` entry that is not itself a trusted proxy.
    pub fn client_address(&self, request: &HttpRequest) -> Option<IpAddr> {
        let forwarded = request
            .headers()
            .get_all("x-forwarded-for")
            .map(|value| value.as_bytes());
        Some(self.resolve(request.peer_addr()?.ip(), forwarded))
    }

    /// Returns whether `X-Forwarded-For` headers from `peer` are read at all.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.contains(canonical(peer))
    }

    /// Returns the client address of a request from `peer` that carried the `X-Forwarded-For`
    /// header values `forwarded`, in the order received. See [`Self::client_address`].
    pub fn resolve<'a>(&self, peer: IpAddr, forwarded: impl Iterator<Item = &'a [u8]>) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }

        // Each proxy appends the address it received the request from, so the entries are read
        // from the right, past the trusted proxies, to the first address no trusted proxy added.
        let mut client = peer;
        let entries = forwarded
            .filter_map(visible_ascii)
            .flat_map(|value| value.split(','))
            .collect::<Vec<_>>();
        for entry in entries.iter().rev().take(MAX_FORWARDED_HOPS) {
            let Ok(address) = entry.trim().parse::<IpAddr>() else {
                // A malformed entry ends the chain: nothing left of it can be trusted.
                break;
            };
            client = canonical(address);
            if !self.contains(client) {
                break;
            }
        }
        client
    }
}

/// Returns a header value as text when it contains only visible ASCII and tabs, as
/// `HeaderValue::to_str` in the `http` crate accepts it.
pub fn visible_ascii(value: &[u8]) -> Option<&str> {
    let visible = value
        .iter()
        .all(|&b| (b' '..0x7f).contains(&b) || b == b'\t');
    // Every byte passed the check above, and ASCII is valid UTF-8, so this cannot fail.
    visible.then(|| std::str::from_utf8(value).ok()).flatten()
}

/// Writes IPv4-mapped IPv6 addresses as IPv4, so one client has one form.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The key of per-client limits: an IPv4 address, or an IPv6 /64 network, because one IPv6
/// client usually controls a whole /64 and could otherwise take a fresh address per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    /// Returns the key of a client address.
    pub fn of(address: IpAddr) -> Self {
        match canonical(address) {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                Self(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
            v4 => Self(v4),
        }
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
            v4 => write!(f, "{v4}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn request(peer: &str, forwarded: Option<&str>) -> HttpRequest {
        let mut request = TestRequest::get().peer_addr(format!("{peer}:4000").parse().unwrap());
        if let Some(forwarded) = forwarded {
            request = request.insert_header(("X-Forwarded-For", forwarded));
        }
        request.to_http_request()
    }

    fn address(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn untrusted_peer_header_ignored() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let spoofed = request("192.0.2.7", Some("203.0.113.1"));
        assert_eq!(trusted.client_address(&spoofed), address("192.0.2.7"));
        let none_trusted = proxies(&[]);
        let proxied = request("10.0.0.1", Some("203.0.113.1"));
        assert_eq!(none_trusted.client_address(&proxied), address("10.0.0.1"));
    }

    #[test]
    fn trusted_proxy_chain_is_walked() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let one_hop = request("10.0.0.1", Some("203.0.113.1"));
        assert_eq!(trusted.client_address(&one_hop), address("203.0.113.1"));

        // The client wrote a fake entry first; the inner proxy 10.1.1.1 added the real one.
        let two_hops = request("10.0.0.1", Some("198.51.100.9, 203.0.113.1, 10.1.1.1"));
        assert_eq!(trusted.client_address(&two_hops), address("203.0.113.1"));

        let malformed = request("10.0.0.1", Some("203.0.113.1, junk"));
        assert_eq!(trusted.client_address(&malformed), address("10.0.0.1"));
        let missing = request("10.0.0.1", None);
        assert_eq!(trusted.client_address(&missing), address("10.0.0.1"));
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let first = ClientKey::of("2001:db8:1:2:aaaa::1".parse().unwrap());
        let second = ClientKey::of("2001:db8:1:2:bbbb::9".parse().unwrap());
        let other = ClientKey::of("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(first, second);
        assert_ne!(first, other);
        assert_eq!(first.to_string(), "2001:db8:1:2::/64");
        let mapped = ClientKey::of("::ffff:192.0.2.1".parse().unwrap());
        assert_eq!(mapped.to_string(), "192.0.2.1");
    }
}
