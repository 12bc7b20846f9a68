//! The server under test: a loopback `http://` address, checked before any connection.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A relay's base URL, `http://<loopback address>:<port>`.
///
/// Only loopback addresses are accepted: the benchmark runs its servers on this machine, and
/// a load test must never send traffic anywhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub addr: SocketAddr,
}

/// Error from parsing a target URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the target URL {url:?} does not start with http://; only plain HTTP is supported")]
    UnsupportedScheme { url: String },

    #[error("the target URL {url:?} has a path; give only http://<address>:<port>")]
    HasPath { url: String },

    #[error("the target URL {url:?} has no port; give http://<address>:<port>")]
    MissingPort { url: String },

    #[error("invalid port {port:?} in the target URL")]
    InvalidPort { port: String },

    #[error("invalid host {host:?}: give an IP address or localhost")]
    InvalidHost { host: String },

    #[error(
        "the target address {ip} is not a loopback address; only 127.0.0.0/8 and ::1 are allowed"
    )]
    NotLoopback { ip: IpAddr },
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let Some(authority) = url.strip_prefix("http://") else {
            return Err(TargetError::UnsupportedScheme { url: url.into() });
        };
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        if authority.contains(['/', '?', '#']) {
            return Err(TargetError::HasPath { url: url.into() });
        }

        let (host, port) = split_host_port(authority)
            .ok_or_else(|| TargetError::MissingPort { url: url.into() })?;
        let port: u16 = port
            .parse()
            .map_err(|_| TargetError::InvalidPort { port: port.into() })?;
        let ip = parse_host(host)?;
        if !ip.is_loopback() {
            return Err(TargetError::NotLoopback { ip });
        }
        Ok(Self {
            addr: SocketAddr::new(ip, port),
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}", self.addr)
    }
}

impl Target {
    /// Returns the value of the `Host` header for requests to this target.
    pub fn host_header(&self) -> String {
        self.addr.to_string()
    }
}

/// Splits `host:port` or `[v6]:port`; returns `None` when there is no port.
fn split_host_port(authority: &str) -> Option<(&str, &str)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return Some((host, after.strip_prefix(':')?));
    }
    authority.rsplit_once(':')
}

fn parse_host(host: &str) -> Result<IpAddr, TargetError> {
    // Resolving "localhost" through the system resolver could yield a non-loopback address
    // from a hosts file; its meaning here is fixed instead.
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    host.parse().map_err(|_| TargetError::InvalidHost {
        host: host.chars().take(64).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_accepts_loopback_urls() {
        let cases = [
            ("http://127.0.0.1:8080", "127.0.0.1:8080"),
            ("http://127.3.2.1:80/", "127.3.2.1:80"),
            ("http://localhost:9000", "127.0.0.1:9000"),
            ("http://[::1]:8080", "[::1]:8080"),
        ];
        for (url, addr) in cases {
            let target: Target = url.parse().unwrap();
            assert_eq!(target.addr.to_string(), addr, "{url}");
        }
    }

    #[test]
    fn target_rejects_other_addresses() {
        for url in [
            "http://10.0.0.1:80",
            "http://192.168.1.1:8080",
            "http://0.0.0.0:8080",
            "http://[2001:db8::1]:80",
        ] {
            let error = url.parse::<Target>().unwrap_err();
            assert!(
                matches!(error, TargetError::NotLoopback { .. }),
                "{url}: {error}"
            );
        }
    }

    #[test]
    fn target_rejects_malformed_urls() {
        assert!(matches!(
            "https://127.0.0.1:443".parse::<Target>(),
            Err(TargetError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            "http://127.0.0.1:8080/sub".parse::<Target>(),
            Err(TargetError::HasPath { .. })
        ));
        assert!(matches!(
            "http://127.0.0.1".parse::<Target>(),
            Err(TargetError::MissingPort { .. })
        ));
        assert!(matches!(
            "http://127.0.0.1:99999".parse::<Target>(),
            Err(TargetError::InvalidPort { .. })
        ));
        assert!(matches!(
            "http://example.invalid:80".parse::<Target>(),
            Err(TargetError::InvalidHost { .. })
        ));
    }
}
