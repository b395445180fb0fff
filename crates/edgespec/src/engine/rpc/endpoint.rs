//! Where an RPC server is, and whether edgespec may talk to it.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use super::RpcError;

/// An RPC server's `HOST:PORT` (a name, an IPv4 address or `[IPv6]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RpcEndpoint {
    host: String,
    port: u16,
}

impl RpcEndpoint {
    /// The host part as written.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every address the host resolves to.
    pub fn resolve(&self) -> Result<Vec<SocketAddr>, RpcError> {
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| RpcError::Unresolved {
                endpoint: self.to_string(),
                reason: e.to_string(),
            })?
            .collect();
        if addrs.is_empty() {
            return Err(RpcError::Unresolved {
                endpoint: self.to_string(),
                reason: "no address".into(),
            });
        }
        Ok(addrs)
    }

    /// The addresses to use: refused unless every one is a loopback
    /// address or `insecure` says the caller accepts an unauthenticated,
    /// unencrypted link (ggml RPC has neither).
    pub fn checked_addresses(&self, insecure: bool) -> Result<Vec<SocketAddr>, RpcError> {
        let addrs = self.resolve()?;
        if !insecure && addrs.iter().any(|a| !a.ip().is_loopback()) {
            return Err(RpcError::NotLoopback {
                endpoint: self.to_string(),
            });
        }
        Ok(addrs)
    }
}

impl fmt::Display for RpcEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for RpcEndpoint {
    type Err = RpcError;

    fn from_str(text: &str) -> Result<Self, RpcError> {
        let bad = |reason: &'static str| RpcError::BadEndpoint {
            text: text.to_owned(),
            reason,
        };
        let (host, port) = text.rsplit_once(':').ok_or(bad("expected HOST:PORT"))?;
        let host = match host.strip_prefix('[') {
            Some(inner) => inner.strip_suffix(']').ok_or(bad("unclosed '['"))?,
            None if host.contains(':') => return Err(bad("write an IPv6 host as [ADDRESS]")),
            None => host,
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c))
        {
            return Err(bad(
                "the host holds a character no host name or address has",
            ));
        }
        let port: u16 = port.parse().map_err(|_| bad("the port is not 1..65535"))?;
        if port == 0 {
            return Err(bad("the port is not 1..65535"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

/// Parses `HOST:PORT[,HOST:PORT…]`: at least one, no repeats.
pub fn parse_endpoints(text: &str) -> Result<Vec<RpcEndpoint>, RpcError> {
    let mut out: Vec<RpcEndpoint> = Vec::new();
    for part in text.split(',') {
        let endpoint: RpcEndpoint = part.trim().parse()?;
        if out.contains(&endpoint) {
            return Err(RpcError::BadEndpoint {
                text: text.to_owned(),
                reason: "a server is named twice",
            });
        }
        out.push(endpoint);
    }
    if out.len() > MAX_SERVERS {
        return Err(RpcError::BadEndpoint {
            text: text.to_owned(),
            reason: "more than 16 servers (ggml's limit)",
        });
    }
    Ok(out)
}

/// ggml's `GGML_RPC_MAX_SERVERS`.
const MAX_SERVERS: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_ports_and_lists() {
        let e: RpcEndpoint = "127.0.0.1:50052".parse().unwrap();
        assert_eq!((e.host(), e.port()), ("127.0.0.1", 50052));
        let e: RpcEndpoint = "[::1]:9".parse().unwrap();
        assert_eq!(
            (e.host(), e.port(), e.to_string().as_str()),
            ("::1", 9, "[::1]:9")
        );
        let list = parse_endpoints("localhost:1, 10.0.0.2:2").unwrap();
        assert_eq!(list.len(), 2);
        for bad in [
            "", "host", "host:", ":5", "h:0", "h:70000", "::1:5", "[::1:5", "a b:5", "h:5,h:5",
        ] {
            assert!(parse_endpoints(bad).is_err(), "{bad:?} accepted");
        }
        let many = (1..=17)
            .map(|p| format!("h:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(parse_endpoints(&many).is_err());
    }

    #[test]
    fn only_loopback_without_the_opt_in() {
        let local: RpcEndpoint = "127.0.0.1:7".parse().unwrap();
        assert!(local.checked_addresses(false).is_ok());
        let remote: RpcEndpoint = "10.1.2.3:7".parse().unwrap();
        assert!(matches!(
            remote.checked_addresses(false),
            Err(RpcError::NotLoopback { .. })
        ));
        assert!(remote.checked_addresses(true).is_ok());
        let any: RpcEndpoint = "0.0.0.0:7".parse().unwrap();
        assert!(any.checked_addresses(false).is_err());
    }
}
