//! The client address of a request, for per-token IP allowlists: the connection's peer by
//! default; behind configured trusted proxies, the rightmost untrusted hop of the forwarding
//! chain they write.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName};

use crate::ip::IpNet;

/// Most hops of a forwarding chain read; a longer chain is treated as malformed.
pub const MAX_FORWARDED_HOPS: usize = 32;

/// The header trusted proxies write the forwarding chain to. Name the one your proxy
/// writes: a client can send the other one, and it would pass through unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// RFC 7239 `Forwarded: for=192.0.2.60;proto=https, for="[2001:db8::1]:4711"`.
    Forwarded,
    /// The de facto `X-Forwarded-For: 192.0.2.60, 10.0.0.1`.
    XForwardedFor,
}

impl ForwardedHeader {
    fn name(self) -> HeaderName {
        match self {
            ForwardedHeader::Forwarded => header::FORWARDED,
            ForwardedHeader::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
        }
    }
}

/// The proxies whose forwarding header is believed, and which header they write.
#[derive(Clone, Debug)]
pub(crate) struct TrustedProxies {
    pub(crate) header: ForwardedHeader,
    pub(crate) nets: Arc<[IpNet]>,
}

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client of a request that arrived from `peer` (canonical form).
    ///
    /// `peer` not trusted: `peer`. Trusted: the forwarding chain read right to left, the
    /// first hop that is not a trusted proxy; every hop trusted: the leftmost one; no
    /// header: `peer` itself (a request made by the proxy). A malformed chain (or one
    /// naming an `unknown` or obfuscated hop before an untrusted one is found) is `None`:
    /// the client is unknown, and a restricted token fails closed.
    pub(crate) fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
        if !self.trusts(peer) {
            return Some(peer);
        }
        let mut hops: Vec<&str> = Vec::new();
        for value in headers.get_all(self.header.name()) {
            let s = value.to_str().ok()?;
            for hop in s.split(',') {
                hops.push(hop);
                if hops.len() > MAX_FORWARDED_HOPS {
                    return None;
                }
            }
        }
        let mut leftmost = None;
        for hop in hops.iter().rev() {
            let ip = match self.header {
                ForwardedHeader::Forwarded => forwarded_for(hop)?,
                ForwardedHeader::XForwardedFor => x_forwarded_for(hop)?,
            }
            .to_canonical();
            if !self.trusts(ip) {
                return Some(ip);
            }
            leftmost = Some(ip);
        }
        Some(leftmost.unwrap_or(peer))
    }
}

/// The peer address of the connection, from the request extensions: axum's
/// `ConnectInfo<SocketAddr>` (with feature `axum`, from
/// `into_make_service_with_connect_info::<SocketAddr>()`), or a plain [`SocketAddr`] that
/// a tower stack inserted itself.
pub(crate) fn peer(extensions: &http::Extensions) -> Option<IpAddr> {
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) =
        extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(addr.ip().to_canonical());
    }
    extensions
        .get::<SocketAddr>()
        .map(|addr| addr.ip().to_canonical())
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// One `X-Forwarded-For` hop: an address, or an address with a port (`192.0.2.1:80`,
/// `[2001:db8::1]:80`), with optional spaces or tabs around it.
fn x_forwarded_for(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim_matches(is_ows);
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// The `for` parameter of one RFC 7239 forwarded-element, as an address. `None` when the
/// element is malformed, has no or two `for` parameters, or names an `unknown` or
/// obfuscated node.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let mut found = None;
    for pair in element.split(';') {
        let pair = pair.trim_matches(is_ows);
        let (name, value) = pair.split_once('=')?;
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return None;
        }
        let value = unquote(value)?;
        if name.eq_ignore_ascii_case("for") {
            if found.is_some() {
                return None;
            }
            found = Some(node(value)?);
        }
    }
    found
}

/// RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A `token` or a `quoted-string` without escapes (no node needs one).
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(rest) => {
            let inner = rest.strip_suffix('"')?;
            (!inner.contains(['"', '\\'])).then_some(inner)
        }
        None => (!value.is_empty() && value.bytes().all(is_tchar_or_node)).then_some(value),
    }
}

/// What an unquoted node may hold in practice (`tchar` plus `:` `[` `]` that proxies send
/// for IPv6 without quotes, against the letter of RFC 7239).
fn is_tchar_or_node(b: u8) -> bool {
    is_tchar(b) || matches!(b, b':' | b'[' | b']')
}

/// RFC 7239 `node = nodename [ ":" node-port ]`, when the nodename is an address.
fn node(s: &str) -> Option<IpAddr> {
    if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let ip = v6.parse::<Ipv6Addr>().ok()?;
        return match after {
            "" => Some(IpAddr::V6(ip)),
            _ => port(after.strip_prefix(':')?).then_some(IpAddr::V6(ip)),
        };
    }
    let (name, p) = match s.split_once(':') {
        Some((name, p)) => (name, Some(p)),
        None => (s, None),
    };
    let ip = name.parse::<Ipv4Addr>().ok()?;
    p.is_none_or(port).then_some(IpAddr::V4(ip))
}

/// `node-port = port / obfport`: 1 to 5 digits, or `_` and letters, digits, `.`, `_`, `-`.
fn port(p: &str) -> bool {
    match p.strip_prefix('_') {
        Some(obf) => {
            !obf.is_empty()
                && obf
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        }
        None => (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(header: ForwardedHeader, nets: &[&str]) -> TrustedProxies {
        TrustedProxies {
            header,
            nets: crate::ip::parse_list(nets).unwrap().into(),
        }
    }

    fn headers(name: &str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_nodes_follow_rfc_7239() {
        assert_eq!(forwarded_for("for=192.0.2.60"), Some(ip("192.0.2.60")));
        assert_eq!(
            forwarded_for("For=\"[2001:db8:cafe::17]:4711\""),
            Some(ip("2001:db8:cafe::17"))
        );
        assert_eq!(
            forwarded_for("for=192.0.2.60;proto=http;by=203.0.113.43"),
            Some(ip("192.0.2.60"))
        );
        assert_eq!(
            forwarded_for(" proto=https; for=\"192.0.2.1:_port\""),
            Some(ip("192.0.2.1"))
        );
        for bad in [
            "for=unknown",
            "for=_hidden",
            "proto=http",
            "for=192.0.2.1;for=192.0.2.2",
            "for=\"192.0.2.1",
            "for=2001:db8::1",
            "for=\"[2001:db8::1\"",
            "for=192.0.2.1:123456",
            "for=\"a\\\"b\"",
            "=x",
            "",
        ] {
            assert_eq!(forwarded_for(bad), None, "{bad}");
        }
    }

    #[test]
    fn x_forwarded_for_hops() {
        assert_eq!(x_forwarded_for(" 192.0.2.1 "), Some(ip("192.0.2.1")));
        assert_eq!(x_forwarded_for("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(x_forwarded_for("[2001:db8::1]:80"), Some(ip("2001:db8::1")));
        assert_eq!(x_forwarded_for("192.0.2.1:80"), Some(ip("192.0.2.1")));
        assert_eq!(x_forwarded_for(""), None);
        assert_eq!(x_forwarded_for("unknown"), None);
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let p = proxies(ForwardedHeader::XForwardedFor, &["10.0.0.0/8"]);
        let h = headers(
            "x-forwarded-for",
            &["203.0.113.9, 198.51.100.7", "10.1.1.1"],
        );
        // Not from a trusted proxy: the header is ignored.
        assert_eq!(p.resolve(ip("192.0.2.1"), &h), Some(ip("192.0.2.1")));
        // From one: the spoofable leftmost entry is skipped.
        assert_eq!(p.resolve(ip("10.0.0.1"), &h), Some(ip("198.51.100.7")));
        // No header: the proxy itself.
        assert_eq!(
            p.resolve(ip("10.0.0.1"), &HeaderMap::new()),
            Some(ip("10.0.0.1"))
        );
        // All hops trusted: the leftmost.
        let h = headers("x-forwarded-for", &["10.3.3.3, 10.2.2.2"]);
        assert_eq!(p.resolve(ip("10.0.0.1"), &h), Some(ip("10.3.3.3")));
        // Malformed: unknown client.
        let h = headers("x-forwarded-for", &["198.51.100.7,, 10.1.1.1"]);
        assert_eq!(p.resolve(ip("10.0.0.1"), &h), None);
        // The other header is not read.
        let h = headers("forwarded", &["for=198.51.100.7"]);
        assert_eq!(p.resolve(ip("10.0.0.1"), &h), Some(ip("10.0.0.1")));
        // Too many hops: unknown.
        let long = vec!["10.0.0.2"; MAX_FORWARDED_HOPS + 1].join(",");
        let h = headers("x-forwarded-for", &[&long]);
        assert_eq!(p.resolve(ip("10.0.0.1"), &h), None);
    }

    #[test]
    fn forwarded_chains_and_mapped_addresses() {
        let p = proxies(ForwardedHeader::Forwarded, &["10.0.0.0/8", "fd00::/8"]);
        let h = headers(
            "forwarded",
            &["for=203.0.113.9, for=\"[2001:db8::5]:443\";proto=https, for=\"[fd00::1]\""],
        );
        assert_eq!(p.resolve(ip("10.0.0.1"), &h), Some(ip("2001:db8::5")));
        let h = headers("forwarded", &["for=unknown, for=10.2.2.2"]);
        assert_eq!(p.resolve(ip("10.0.0.1"), &h), None);
        let h = headers("forwarded", &["for=unknown, for=198.51.100.1"]);
        assert_eq!(
            p.resolve(ip("10.0.0.1"), &h),
            Some(ip("198.51.100.1")),
            "hops left of the client are never read"
        );
    }
}
