//! `AuthConfig::client_ip` behind a trusted proxy, on arbitrary `Forwarded` and
//! `X-Forwarded-For` values: never panics; without trust the peer always wins.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use http::header::{FORWARDED, HeaderMap, HeaderName, HeaderValue};
use keygate::http::{AuthConfig, ForwardedHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cut = data.len() / 2;
    let (fwd, xff) = data.split_at(cut);
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(fwd) {
        headers.append(FORWARDED, v);
    }
    if let Ok(v) = HeaderValue::from_bytes(xff) {
        headers.append(HeaderName::from_static("x-forwarded-for"), v);
    }
    let peer = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let mut ext = http::Extensions::new();
    ext.insert(SocketAddr::new(peer, 4711));
    assert_eq!(AuthConfig::new().client_ip(&headers, &ext), Some(peer));
    for header in [ForwardedHeader::Forwarded, ForwardedHeader::XForwardedFor] {
        let Ok(config) = AuthConfig::new().trusted_proxies(header, ["10.0.0.0/8"]) else {
            return;
        };
        let _ = config.client_ip(&headers, &ext);
    }
});
