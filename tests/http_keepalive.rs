//! Refusals sent before a request's body is read end the connection, so the unread body is
//! never taken for the client's next request on a kept-alive connection.

#![cfg(all(feature = "axum", feature = "test-util"))]
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a test failure"
)]

mod http_support;

use axum::Router;
use axum::routing::post;
use http_support::{Server, client};
use keygate::axum::Keygate;
use keygate::{IssueRequest, MemoryStore, ScopeSet, ServerKey, TokenManager};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start() -> (Server, String) {
    let manager = TokenManager::builder(MemoryStore::new())
        .server_key(ServerKey::generate())
        .build()
        .unwrap();
    let keygate = Keygate::new(manager);
    let token = keygate
        .manager()
        .issue(IssueRequest::new("t", "o").scopes(ScopeSet::parse(["*"]).unwrap()))
        .await
        .unwrap()
        .expose_secret()
        .to_owned();
    let app = Router::new()
        .route(
            "/echo",
            post(|body: String| async move { body.len().to_string() }),
        )
        .layer(keygate.require_scopes(["echo:write"]))
        .nest("/api/tokens", keygate.admin_router())
        .layer(keygate.layer());
    (Server::start(app).await, token)
}

/// The raw response to `request` on a fresh connection, read until the server closes it
/// (or 2 s pass), and whether it closed.
async fn exchange(server: &Server, request: &[u8]) -> (String, bool) {
    let mut conn = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(2), conn.read(&mut buf)).await {
            Ok(Ok(0)) => break true,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(_)) => break true,
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

#[tokio::test]
async fn an_early_refusal_of_a_request_with_a_body_closes_the_connection() {
    let (server, _) = start().await;
    let body = "x".repeat(60_000);
    for path in ["/echo", "/api/tokens"] {
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        let (response, closed) = exchange(&server, request.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 401"), "{path}: {response}");
        assert!(
            response.to_ascii_lowercase().contains("connection: close"),
            "{path}: {response}"
        );
        assert!(closed, "{path}: the server must close the connection");
    }
    // Without a body the connection stays open.
    let (response, closed) = exchange(&server, b"GET /echo HTTP/1.1\r\nhost: t\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert!(!response.to_ascii_lowercase().contains("connection: close"));
    assert!(!closed);
}

#[tokio::test]
async fn clients_keep_working_after_refusals() {
    let (server, token) = start().await;
    let server = std::sync::Arc::new(server);
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (server, token) = (server.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let http = client();
            let body = "y".repeat(30_000);
            for _ in 0..3 {
                let refused = http
                    .post(server.url("/echo"))
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(refused.status(), 401);
                let ok = http
                    .post(server.url("/echo"))
                    .bearer_auth(&token)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(ok.status(), 200);
                assert_eq!(ok.text().await.unwrap(), "30000");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
