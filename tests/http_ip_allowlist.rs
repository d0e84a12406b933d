//! Per-token IP allowlists over real sockets (IPv4 on 127.0.0.1, IPv6 on [::1]), through the
//! tower layer and the axum extractor: the client address comes from the connection, a
//! forwarding header is believed only from a configured trusted proxy, a refusal is a 403
//! `ip_not_allowed` that does not touch `last_used_at`, and an unknown token stays a 401
//! whatever the address.

#![cfg(all(feature = "axum", feature = "test-util"))]
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a test failure"
)]

mod http_support;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http_support::{client, snapshot};
use keygate::axum::Keygate;
use keygate::http::{AuthConfig, ForwardedHeader};
use keygate::ip::parse_list;
use keygate::{IssueRequest, MemoryStore, ServerKey, TokenManager, VerifiedToken};

fn keygate(config: AuthConfig) -> Keygate {
    let manager = TokenManager::builder(MemoryStore::new())
        .server_key(ServerKey::generate())
        .build()
        .unwrap();
    Keygate::with_config(manager, config)
}

/// `/layer` behind the tower layer, `/extractor` with the axum extractor, served with the
/// connection's address in `ConnectInfo`, on `bind` (`127.0.0.1:0` or `[::1]:0`).
async fn serve(kg: &Keygate, bind: &str) -> SocketAddr {
    let app = Router::new()
        .route("/layer", get(|| async { "ok" }).layer(kg.layer()))
        .route(
            "/extractor",
            get(|t: VerifiedToken| async move { t.owner().to_owned() }),
        )
        .with_state(kg.clone());
    let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

async fn issue(kg: &Keygate, ranges: &[&str]) -> String {
    kg.manager()
        .issue(IssueRequest::new("t", "alice").allowed_ips(parse_list(ranges).unwrap()))
        .await
        .unwrap()
        .expose_secret()
        .to_owned()
}

async fn get_with(
    addr: SocketAddr,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = client()
        .get(format!("http://{addr}{path}"))
        .bearer_auth(token);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

async fn status(addr: SocketAddr, path: &str, token: &str, headers: &[(&str, &str)]) -> u16 {
    get_with(addr, path, token, headers).await.status().as_u16()
}

/// The 403 of an IP refusal: JSON code `ip_not_allowed`, no challenge.
async fn assert_ip_refused(resp: reqwest::Response) {
    let (code, headers, body) = snapshot(resp).await;
    assert_eq!(code, 403);
    assert!(
        !headers.iter().any(|(k, _)| k == "www-authenticate"),
        "{headers:?}"
    );
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == b"application/json")
    );
    assert_eq!(body, br#"{"error":"ip_not_allowed"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_and_ipv6_ranges_decide_by_the_connection() {
    let kg = keygate(AuthConfig::new());
    let v4 = serve(&kg, "127.0.0.1:0").await;
    let v6 = serve(&kg, "[::1]:0").await;
    let loopback_v4 = issue(&kg, &["127.0.0.0/8"]).await;
    let loopback_v6 = issue(&kg, &["::1/128"]).await;
    let elsewhere_v4 = issue(&kg, &["10.0.0.0/8"]).await;
    let elsewhere_v6 = issue(&kg, &["2001:db8::/32"]).await;
    let both = issue(&kg, &["127.0.0.1/32", "::1/128"]).await;
    let any = issue(&kg, &[]).await;

    for path in ["/layer", "/extractor"] {
        for (addr, allowed, refused) in [
            (
                v4,
                [&loopback_v4, &both, &any],
                [&elsewhere_v4, &loopback_v6, &elsewhere_v6],
            ),
            (
                v6,
                [&loopback_v6, &both, &any],
                [&elsewhere_v6, &loopback_v4, &elsewhere_v4],
            ),
        ] {
            for token in allowed {
                assert_eq!(
                    status(addr, path, token, &[]).await,
                    200,
                    "{path} on {addr}"
                );
            }
            for token in refused {
                assert_ip_refused(get_with(addr, path, token, &[]).await).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_count_only_from_trusted_proxies() {
    let spoof = [("x-forwarded-for", "203.0.113.5")];
    // No trusted proxy (the default): the header is ignored, the connection decides.
    let plain = keygate(AuthConfig::new());
    let addr = serve(&plain, "127.0.0.1:0").await;
    let remote = issue(&plain, &["203.0.113.0/24"]).await;
    let local = issue(&plain, &["127.0.0.1/32"]).await;
    for path in ["/layer", "/extractor"] {
        assert_ip_refused(get_with(addr, path, &remote, &spoof).await).await;
        assert_eq!(status(addr, path, &local, &spoof).await, 200);
    }

    // 127.0.0.1 is a trusted proxy writing X-Forwarded-For: its header decides.
    let config = AuthConfig::new()
        .trusted_proxies(ForwardedHeader::XForwardedFor, ["127.0.0.1"])
        .unwrap();
    let proxied = keygate(config);
    let addr = serve(&proxied, "127.0.0.1:0").await;
    let remote = issue(&proxied, &["203.0.113.0/24"]).await;
    let local = issue(&proxied, &["127.0.0.1/32"]).await;
    for path in ["/layer", "/extractor"] {
        assert_eq!(status(addr, path, &remote, &spoof).await, 200, "{path}");
        assert_ip_refused(get_with(addr, path, &local, &spoof).await).await;
        // The client put 203.0.113.5 in front of what the proxy saw: the rightmost
        // untrusted hop (198.51.100.1) is the client.
        let chain = [("x-forwarded-for", "203.0.113.5, 198.51.100.1")];
        assert_ip_refused(get_with(addr, path, &remote, &chain).await).await;
        // Two header lines are one list.
        let lines = [
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-for", "203.0.113.5"),
        ];
        assert_eq!(status(addr, path, &remote, &lines).await, 200);
        // The header the proxy does not write is not read.
        let other = [("forwarded", "for=203.0.113.5")];
        assert_ip_refused(get_with(addr, path, &remote, &other).await).await;
        // A malformed chain from a trusted proxy: unknown client, restricted tokens refused.
        let bad = [("x-forwarded-for", "203.0.113.5, not-an-ip")];
        assert_ip_refused(get_with(addr, path, &remote, &bad).await).await;
        // No header: the request is the proxy's own.
        assert_eq!(status(addr, path, &local, &[]).await, 200);
    }

    // RFC 7239 `Forwarded`, IPv6 client behind an IPv4 proxy.
    let config = AuthConfig::new()
        .trusted_proxies(ForwardedHeader::Forwarded, ["127.0.0.0/8"])
        .unwrap();
    let proxied = keygate(config);
    let addr = serve(&proxied, "127.0.0.1:0").await;
    let remote = issue(&proxied, &["2001:db8::/32"]).await;
    let fwd = [("forwarded", r#"for="[2001:db8::7]:4711";proto=https"#)];
    assert_eq!(status(addr, "/layer", &remote, &fwd).await, 200);
    let xff = [("x-forwarded-for", "2001:db8::7")];
    assert_ip_refused(get_with(addr, "/layer", &remote, &xff).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_by_ip_does_not_touch_last_used() {
    let kg = keygate(AuthConfig::new());
    let addr = serve(&kg, "127.0.0.1:0").await;
    let issued = kg
        .manager()
        .issue(IssueRequest::new("t", "alice").allowed_ips(parse_list(["10.0.0.0/8"]).unwrap()))
        .await
        .unwrap();
    for path in ["/layer", "/extractor"] {
        assert_ip_refused(get_with(addr, path, issued.expose_secret(), &[]).await).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let record = kg.manager().get(issued.id()).await.unwrap();
    assert_eq!(record.last_used_at, None, "a refused request is not a use");

    // The same token, once allowed from here, is used (and touched) by one request.
    kg.manager()
        .update(
            issued.id(),
            keygate::TokenUpdate::new().allowed_ips(parse_list(["127.0.0.0/8"]).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(
        status(addr, "/layer", issued.expose_secret(), &[]).await,
        200
    );
    let mut touched = false;
    for _ in 0..50 {
        if kg
            .manager()
            .get(issued.id())
            .await
            .unwrap()
            .last_used_at
            .is_some()
        {
            touched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(touched, "an allowed request updates last_used_at");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_token_from_a_foreign_address_is_still_401() {
    let kg = keygate(AuthConfig::new().realm("test").unwrap());
    let addr = serve(&kg, "127.0.0.1:0").await;
    let gone = kg
        .manager()
        .issue(IssueRequest::new("t", "alice").allowed_ips(parse_list(["10.0.0.0/8"]).unwrap()))
        .await
        .unwrap();
    kg.manager().delete(gone.id()).await.unwrap();
    let never = kg
        .manager()
        .issue(IssueRequest::new("t", "bob"))
        .await
        .unwrap();
    kg.manager().delete(never.id()).await.unwrap();
    for path in ["/layer", "/extractor"] {
        let restricted_gone = snapshot(get_with(addr, path, gone.expose_secret(), &[]).await).await;
        let plain_gone = snapshot(get_with(addr, path, never.expose_secret(), &[]).await).await;
        assert_eq!(restricted_gone.0, 401, "{path}");
        assert_eq!(
            restricted_gone, plain_gone,
            "an unknown token is one 401, whatever allowlist it once had"
        );
        assert!(
            restricted_gone
                .1
                .iter()
                .any(|(k, v)| k == "www-authenticate"
                    && v == br#"Bearer realm="test", error="invalid_token""#)
        );
    }
}
