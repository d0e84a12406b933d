//! Per-token IP allowlists: [`TokenRecord::allowed_ips`](crate::TokenRecord::allowed_ips).
//!
//! A token's allowlist is a list of CIDR ranges ([`IpNet`], IPv4 and IPv6, from the
//! [`ipnet`] crate, re-exported here). An empty list allows any client; a non-empty one
//! allows a verification only from a client address inside one of its ranges, and refuses
//! it, failing closed, when the client address is unknown
//! ([`VerifyError::IpNotAllowed`](crate::VerifyError::IpNotAllowed)).
//!
//! - **Normalised**: the manager stores each range truncated to its network address
//!   (`10.1.2.3/8` becomes `10.0.0.0/8`), sorted and without duplicates.
//! - **Bounded**: at most [`Limits::max_allowed_ips`](crate::record::Limits::max_allowed_ips)
//!   ranges per token (32 by default).
//! - **IPv4-mapped IPv6** client addresses (`::ffff:10.0.0.1`, what a dual-stack socket
//!   reports for an IPv4 peer) are compared as the IPv4 address they carry.
//! - **Delegation**: a token restricted to ranges can give another token only ranges each
//!   contained in one of its own, never an empty (unrestricted) list.
//!
//! ```
//! use keygate::ip::{IpNet, allows};
//! let list: Vec<IpNet> = vec!["10.0.0.0/8".parse()?, "2001:db8::/32".parse()?];
//! assert!(allows(&list, Some("10.1.2.3".parse()?)));
//! assert!(allows(&list, Some("::ffff:10.1.2.3".parse()?)));
//! assert!(!allows(&list, Some("192.0.2.1".parse()?)));
//! assert!(!allows(&list, None), "a restricted token fails closed without a client address");
//! assert!(allows(&[], None), "an empty list allows any client");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::net::IpAddr;

pub use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Does `list` allow a client at `client`? An empty list allows anyone (even an unknown
/// client); a non-empty list needs a known client address inside one of its ranges.
pub fn allows(list: &[IpNet], client: Option<IpAddr>) -> bool {
    if list.is_empty() {
        return true;
    }
    let Some(ip) = client else {
        return false;
    };
    let ip = ip.to_canonical();
    list.iter().any(|net| net.contains(&ip))
}

/// Is every client that `requested` allows also allowed by `own`? An empty `own` covers
/// everything; an empty `requested` (anyone) is covered only by an empty `own`.
pub fn covers(own: &[IpNet], requested: &[IpNet]) -> bool {
    if own.is_empty() {
        return true;
    }
    !requested.is_empty() && requested.iter().all(|r| own.iter().any(|o| o.contains(r)))
}

/// The stored form of a list: each range truncated to its network address, sorted,
/// duplicates removed.
pub fn normalize(list: &[IpNet]) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = list.iter().map(IpNet::trunc).collect();
    out.sort();
    out.dedup();
    out
}

/// Parses CIDR ranges (`10.0.0.0/8`, `2001:db8::/32`; a bare address is its host range,
/// `/32` or `/128`), normalised as stored. The first string that is not a range is named
/// in the error.
pub fn parse_list<I, S>(items: I) -> Result<Vec<IpNet>, crate::Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = Vec::new();
    for item in items {
        out.push(parse_net(item.as_ref())?);
    }
    Ok(normalize(&out))
}

/// One range, or a bare address as its host range. IPv4 octets and prefix lengths have no
/// leading zeros; IPv6 is written in hex groups: the mixed notation with a dotted IPv4 tail
/// (`::ffff:10.0.0.1`) is refused. So the one grammar the admin API's document states (dotted decimal, and
/// [RFC 4291] forms 1 and 2) is the whole rule.
///
/// [RFC 4291]: https://www.rfc-editor.org/rfc/rfc4291#section-2.2
pub(crate) fn parse_net(s: &str) -> Result<IpNet, crate::Error> {
    let s = s.trim();
    let (address, prefix) = s.split_once('/').unwrap_or((s, ""));
    let leading_zero = |n: &str| n.len() > 1 && n.starts_with('0');
    // A dotted IPv4 tail in IPv6, an IPv4 octet with a leading zero (read as octal by some
    // tools), or a prefix length with one, is refused.
    let refused = (s.contains(':') && s.contains('.'))
        || leading_zero(prefix)
        || (!s.contains(':') && address.split('.').any(leading_zero));
    Some(s)
        .filter(|_| !refused)
        .ok_or(())
        .and_then(|s| s.parse::<IpNet>().map_err(|_| ()))
        .or_else(|_| {
            (!refused)
                .then(|| s.parse::<IpAddr>().ok())
                .flatten()
                .map(IpNet::from)
                .ok_or(())
        })
        .map_err(|_| crate::Error::InvalidField {
            field: "allowed_ips",
            reason: "expected CIDR ranges such as 10.0.0.0/8 or 2001:db8::/32",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn covers_needs_containment_and_never_widens() {
        let own = nets(&["10.0.0.0/8", "2001:db8::/32"]);
        assert!(covers(&own, &nets(&["10.1.0.0/16"])));
        assert!(covers(&own, &nets(&["10.0.0.0/8", "2001:db8:1::/48"])));
        assert!(!covers(&own, &nets(&["0.0.0.0/0"])));
        assert!(!covers(&own, &nets(&["11.0.0.0/8"])));
        assert!(!covers(&own, &[]), "unrestricted is wider than any list");
        assert!(covers(&[], &[]));
        assert!(covers(&[], &own));
    }

    #[test]
    fn normalize_truncates_sorts_and_dedups() {
        let got = normalize(&nets(&["10.1.2.3/8", "10.0.0.0/8", "::1/128"]));
        assert_eq!(got, nets(&["10.0.0.0/8", "::1/128"]));
    }

    #[test]
    fn parse_list_accepts_bare_addresses_and_names_the_field() {
        assert_eq!(
            parse_list(["192.0.2.7", " 2001:db8::1 "]).unwrap(),
            nets(&["192.0.2.7/32", "2001:db8::1/128"])
        );
        assert!(parse_list(["10.0.0.0/33"]).is_err());
        assert!(parse_list(["example.com"]).is_err());
    }
}
