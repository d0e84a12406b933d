//! The example service's whole life (start, issue, verify ok, verify wrong, rotate, reuse,
//! revoke, verify revoked), over a real socket, with a `tracing` subscriber at TRACE capturing
//! everything: no plaintext token, secret part, server key or digest ever reaches the logs,
//! and the OWASP event names do.
#![cfg(all(feature = "axum", feature = "sqlite", feature = "postgres"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod log_capture;
#[allow(dead_code, reason = "the example's `main` is not called by the tests")]
#[path = "../examples/server.rs"]
mod server;

use keygate::{ServerKey, TokenId, store::TokenStore};
use log_capture::{Capture, forms, found, subscriber};
use serde_json::{Value, json};

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url),
        }
        .bearer_auth(token);
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

#[test]
fn example_service_life_leaks_nothing_into_logs() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(subscriber(&capture));
    let key_bytes: Vec<u8> = (200u8..=255).collect();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("tokens.db").display());

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (secrets, digests) = rt.block_on(async {
        let service = server::start(
            &url,
            None,
            ServerKey::from_bytes(key_bytes.clone()).unwrap(),
        )
        .await
        .unwrap();
        let admin = service
            .admin_token
            .clone()
            .expect("first start creates an admin token");
        let app = server::app(service.keygate.clone()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let serve = tokio::spawn(async move { axum::serve(listener, app).await });
        let c = Client {
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            base,
        };

        // Issue.
        let (status, body) = c
            .call(
                "POST",
                "/api/tokens",
                &admin,
                Some(
                    json!({"id": "ci", "name": "ci", "scopes": ["projects:read"], "expires": "7d"}),
                ),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let issued = body["token"].as_str().unwrap().to_owned();
        // Verify ok, and wrong.
        assert_eq!(c.call("GET", "/api/projects", &issued, None).await.0, 200);
        let format = service.keygate.manager().format().clone();
        let wrong = format
            .format(&TokenId::new("ci").unwrap(), &"W".repeat(43))
            .unwrap();
        assert_eq!(
            c.call("GET", "/api/projects", wrong.expose_secret(), None)
                .await
                .0,
            401
        );
        // Rotate (no grace), reuse the old secret, revoke, verify revoked.
        let (status, body) = c
            .call("POST", "/api/tokens/ci/rotate", &admin, Some(json!({})))
            .await;
        assert_eq!(status, 200, "{body}");
        let rotated = body["token"].as_str().unwrap().to_owned();
        assert_eq!(c.call("GET", "/api/projects", &issued, None).await.0, 401);
        assert_eq!(c.call("GET", "/api/projects", &rotated, None).await.0, 200);
        let (status, body) = c.call("POST", "/api/tokens/ci/revoke", &admin, None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(c.call("GET", "/api/projects", &rotated, None).await.0, 401);

        let record = service
            .keygate
            .manager()
            .store()
            .get(&TokenId::new("ci").unwrap())
            .await
            .unwrap()
            .unwrap();
        let mut digests = vec![record.digest.digest.as_bytes().to_vec()];
        digests.extend(
            record
                .retired
                .iter()
                .map(|p| p.digest.digest.as_bytes().to_vec()),
        );
        serve.abort();
        let secrets = vec![admin, issued, rotated, wrong.expose_secret().to_owned()];
        (secrets, digests)
    });

    let logs = capture.bytes();
    let text = String::from_utf8_lossy(&logs);
    let mut needles = forms("server key", &key_bytes);
    for (i, token) in secrets.iter().enumerate() {
        let parsed = keygate::token::TokenFormat::new("kg").unwrap();
        let secret_part = parsed.parse(token).unwrap().secret().to_owned();
        needles.push((format!("token {i}"), token.as_bytes().to_vec()));
        needles.push((format!("secret part {i}"), secret_part.into_bytes()));
    }
    for (i, d) in digests.iter().enumerate() {
        needles.extend(forms(&format!("digest {i}"), d));
    }
    let leaks = found(&logs, &needles);
    assert!(leaks.is_empty(), "secrets in the logs: {leaks:?}");
    for name in [
        "authn_token_created",
        "authn_login_fail",
        "authn_token_rotated",
        "authn_token_reuse",
        "authn_token_revoked",
    ] {
        assert!(text.contains(name), "{name} missing from the logs:\n{text}");
    }
    // The capture really records at TRACE (else the check above proves little).
    assert!(text.contains("TRACE") || text.contains("DEBUG"), "{text}");
}

/// Restarted with another `KEYGATE_PEPPER`, the example service stops at startup with an
/// error naming the key, instead of serving while refusing every token; with its own pepper
/// it starts again.
#[test]
fn example_service_refuses_another_pepper_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("tokens.db").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let key = || ServerKey::from_bytes([5u8; 32]).unwrap();
        let first = server::start(&url, None, key()).await.unwrap();
        assert!(first.admin_token.is_some());
        drop(first);
        let err = match server::start(&url, None, ServerKey::from_bytes([6u8; 32]).unwrap()).await {
            Ok(_) => panic!("started with another pepper"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("KEYGATE_PEPPER") && err.contains("server key version 1"),
            "{err}"
        );
        let again = server::start(&url, None, key()).await.unwrap();
        assert!(
            again.admin_token.is_none(),
            "the first admin token still stands"
        );
    });
}

/// The example service tells owners of tokens entering an expiry window at start (and
/// hourly) by logging `token expires soon` with the token id, once per window: a second
/// start on the same database tells no one again.
#[test]
fn example_service_logs_expiry_notices_once() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(subscriber(&capture));
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("tokens.db").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let logged = |id: &str| {
        let text = String::from_utf8_lossy(&capture.bytes()).into_owned();
        text.lines()
            .filter(|l| l.contains("token expires soon") && l.contains(id))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    rt.block_on(async {
        let key = || ServerKey::from_bytes([5u8; 32]).unwrap();
        let first = server::start(&url, None, key()).await.unwrap();
        let soon =
            first
                .keygate
                .manager()
                .issue(keygate::IssueRequest::new("deploy", "alice").expiry(
                    keygate::ExpiryPreset::In(std::time::Duration::from_secs(3 * 86_400)),
                ))
                .await
                .unwrap();
        let id = soon.id().as_str().to_owned();
        drop(first);
        for start in ["second", "third"] {
            let service = server::start(&url, None, key()).await.unwrap();
            // The first check runs on a task of its own, right after the start.
            for _ in 0..100 {
                if !logged(&id).is_empty() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let lines = logged(&id);
            assert_eq!(lines.len(), 1, "{start} start: {lines:?}");
            assert!(
                lines[0].contains("window_days=7") && lines[0].contains("owner=\"alice\""),
                "{}",
                lines[0]
            );
            drop(service);
        }
    });
}
