//! `ws://` and `http://` URLs: where to connect, and what to send as Host and path.

use std::net::{SocketAddr, SocketAddrV4, ToSocketAddrs};

use anyhow::{anyhow, bail, Context};

#[derive(Clone, Debug)]
pub struct Url {
    /// `host[:port]` as written, for the Host header.
    pub authority: String,
    /// Path and query, at least `/`.
    pub path: String,
    pub addr: SocketAddrV4,
}

impl Url {
    /// Parses `ws://…` (or `http://…` when `http` is true). TLS schemes are refused.
    pub fn parse(s: &str, http: bool) -> anyhow::Result<Url> {
        let (scheme, rest) = s.split_once("://").ok_or_else(|| {
            anyhow!(
                "{s:?}: not a URL (want {}://host:port/path)",
                scheme_of(http)
            )
        })?;
        let want = scheme_of(http);
        if !scheme.eq_ignore_ascii_case(want) {
            bail!("{s:?}: only {want}:// URLs are supported (no TLS)");
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.is_empty() {
            bail!("{s:?}: no host");
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .with_context(|| format!("{s:?}: cannot resolve {authority}"))?
            .find_map(|a| match a {
                SocketAddr::V4(v4) => Some(v4),
                SocketAddr::V6(_) => None,
            })
            .ok_or_else(|| anyhow!("{s:?}: {authority} has no IPv4 address"))?;
        Ok(Url {
            authority: authority.to_string(),
            path,
            addr,
        })
    }

    pub fn is_loopback(&self) -> bool {
        self.addr.ip().is_loopback()
    }
}

fn scheme_of(http: bool) -> &'static str {
    if http {
        "http"
    } else {
        "ws"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_and_ports() {
        let u = Url::parse("ws://127.0.0.1:7800/ws?systemId=demo", false).unwrap();
        assert_eq!(u.path, "/ws?systemId=demo");
        assert_eq!(u.addr.port(), 7800);
        let u = Url::parse("http://127.0.0.1:9", true).unwrap();
        assert_eq!(u.path, "/");
        let u = Url::parse("ws://127.0.0.1?x=1", false).unwrap();
        assert_eq!((u.path.as_str(), u.addr.port()), ("/?x=1", 80));
        assert!(Url::parse("wss://127.0.0.1/", false).is_err());
    }
}
