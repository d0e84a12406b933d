//! Property tests of the client-address resolution behind IP allowlists (the proptest twin
//! of the `forwarded_header` fuzz target): arbitrary `Forwarded` and `X-Forwarded-For`
//! values never panic it; without a trusted proxy the connection's address always wins;
//! behind trusted proxies the client is the rightmost hop that is not one, whichever header
//! carries the chain.
#![cfg(feature = "tower")]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use http::header::{FORWARDED, HeaderMap, HeaderName, HeaderValue};
use keygate::http::{AuthConfig, ForwardedHeader};
use proptest::prelude::*;

const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");

fn extensions(peer: IpAddr) -> http::Extensions {
    let mut ext = http::Extensions::new();
    ext.insert(SocketAddr::new(peer, 40_000));
    ext
}

fn trusting(header: ForwardedHeader) -> AuthConfig {
    AuthConfig::new()
        .trusted_proxies(header, ["10.0.0.0/8", "fd00::/8"])
        .unwrap_or_else(|e| panic!("{e}"))
}

fn untrusted_ip() -> impl Strategy<Value = IpAddr> {
    any::<IpAddr>().prop_filter("not a trusted proxy", |ip| match ip.to_canonical() {
        IpAddr::V4(v4) => v4.octets()[0] != 10,
        IpAddr::V6(v6) => v6.segments()[0] & 0xff00 != 0xfd00,
    })
}

fn proxy_ip() -> impl Strategy<Value = IpAddr> {
    (any::<[u8; 3]>()).prop_map(|[a, b, c]| IpAddr::V4(Ipv4Addr::new(10, a, b, c)))
}

fn forwarded_node(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("for={v4}"),
        IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn resolution_is_total_and_the_peer_wins_without_trust(
        forwarded in prop::collection::vec(any::<u8>(), 0..200),
        xff in "[ -~]{0,200}",
        peer in any::<IpAddr>(),
    ) {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(&forwarded) {
            headers.append(FORWARDED, v);
        }
        if let Ok(v) = HeaderValue::from_str(&xff) {
            headers.append(XFF, v);
        }
        let ext = extensions(peer);
        prop_assert_eq!(
            AuthConfig::new().client_ip(&headers, &ext),
            Some(peer.to_canonical())
        );
        for header in [ForwardedHeader::Forwarded, ForwardedHeader::XForwardedFor] {
            let _ = trusting(header).client_ip(&headers, &ext);
        }
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client(
        clients in prop::collection::vec(untrusted_ip(), 1..6),
        proxies in prop::collection::vec(proxy_ip(), 0..4),
        peer in proxy_ip(),
    ) {
        let chain: Vec<IpAddr> = clients.iter().chain(&proxies).copied().collect();
        let expected = clients.last().map(|ip| ip.to_canonical());
        let ext = extensions(peer);

        let mut headers = HeaderMap::new();
        let list = chain.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        headers.insert(XFF, HeaderValue::from_str(&list).unwrap_or_else(|e| panic!("{e}")));
        prop_assert_eq!(trusting(ForwardedHeader::XForwardedFor).client_ip(&headers, &ext), expected);

        let mut headers = HeaderMap::new();
        let list = chain.iter().map(forwarded_node).collect::<Vec<_>>().join(", ");
        headers.insert(FORWARDED, HeaderValue::from_str(&list).unwrap_or_else(|e| panic!("{e}")));
        prop_assert_eq!(trusting(ForwardedHeader::Forwarded).client_ip(&headers, &ext), expected);

        // The same chain from an untrusted peer: the peer.
        let outsider = clients[0];
        prop_assert_eq!(
            trusting(ForwardedHeader::Forwarded).client_ip(&headers, &extensions(outsider)),
            Some(outsider.to_canonical())
        );
    }
}
