//! Nothing secret reaches the logs: a token's whole life at the manager level (issue, verify
//! ok, verify wrong, rotate, reuse after grace, disable, enable, scope denial, revoke, verify
//! revoked) under a `tracing` subscriber at TRACE that captures everything into a buffer.
//!
//! The buffer must contain no plaintext token, no secret part, no server key (hex, base64 or
//! raw) and no digest (hex or base64), and must contain the OWASP event names. A control
//! shows the same capture and search find a token that is logged.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a panic is a test failure"
)]

mod log_capture;

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use keygate::{
    IssueRequest, MemoryStore, RotateRequest, Scope, ScopeSet, ServerKey, TokenId, TokenManager,
    VerifyError, expiry::ManualClock, store::TokenStore, token::TokenFormat,
};

use log_capture::{Capture, forms, found, subscriber};

fn token_forms(name: &str, token: &str) -> Vec<(String, Vec<u8>)> {
    let p = TokenFormat::new("acme").unwrap().parse(token).unwrap();
    vec![
        (format!("{name} token"), token.as_bytes().to_vec()),
        (format!("{name} secret"), p.secret().as_bytes().to_vec()),
    ]
}

// A printable key, so that a raw leak would show up as text in the log.
const KEY: &[u8] = b"log-test server key: 0123456789abcdefghij";

#[tokio::test]
async fn whole_life_logs_nothing_secret() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(subscriber(&capture));

    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let key = ServerKey::from_bytes(KEY.to_vec()).unwrap();
    let manager = TokenManager::builder(store.clone())
        .server_key(key.clone())
        .prefix("acme")
        .clock(clock.clone())
        .build()
        .unwrap();
    let id = TokenId::new("log-life").unwrap();

    let issued = manager
        .issue(
            IssueRequest::new("deploy", "alice")
                .id(id.clone())
                .scopes(ScopeSet::parse(["projects:read"]).unwrap()),
        )
        .await
        .unwrap();
    let first = issued.expose_secret().to_owned();
    let digest_1 = store.get(&id).await.unwrap().unwrap().digest.digest;

    let verified = manager.verify(&first).await.unwrap();
    let format = TokenFormat::new("acme").unwrap();
    let wrong = format.format(&id, &"W".repeat(43)).unwrap();
    assert!(matches!(
        manager.verify(wrong.expose_secret()).await,
        Err(VerifyError::Unknown)
    ));
    assert!(
        manager
            .authorize(&verified, &Scope::new("tokens:write").unwrap())
            .is_err()
    );

    let rotated = manager
        .rotate(
            &id,
            RotateRequest::new().grace(std::time::Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    let second = rotated.expose_secret().to_owned();
    let digest_2 = store.get(&id).await.unwrap().unwrap().digest.digest;
    assert!(manager.verify(&first).await.unwrap().used_previous_secret());
    assert!(manager.verify(&second).await.is_ok());
    clock.advance(std::time::Duration::from_secs(7200));
    assert!(matches!(
        manager.verify(&first).await,
        Err(VerifyError::RotatedOut)
    ));

    manager.disable(&id).await.unwrap();
    assert!(matches!(
        manager.verify(&second).await,
        Err(VerifyError::Disabled)
    ));
    manager.enable(&id).await.unwrap();
    manager.revoke(&id).await.unwrap();
    assert!(matches!(
        manager.verify(&second).await,
        Err(VerifyError::Revoked)
    ));
    assert!(matches!(
        manager.verify("acme_log-life_garbage").await,
        Err(VerifyError::Malformed)
    ));
    // Let the background `last_used_at` writes run (and log, if they log anything).
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }

    // Debug output of every type a user might log holds nothing secret either.
    tracing::trace!(?issued, ?rotated, ?verified, ?key, "debug of values");
    tracing::trace!(?digest_1, ?digest_2, ?manager, "debug of values");

    let log = capture.bytes();
    let mut secrets = Vec::new();
    secrets.extend(token_forms("first", &first));
    secrets.extend(token_forms("second", &second));
    secrets.extend(token_forms("wrong", wrong.expose_secret()));
    secrets.extend(forms("server key", KEY));
    secrets.extend(forms("digest 1", digest_1.as_bytes()));
    secrets.extend(forms("digest 2", digest_2.as_bytes()));
    let leaks = found(&log, &secrets);
    assert!(leaks.is_empty(), "secrets in the log: {leaks:?}");

    let text = String::from_utf8_lossy(&log);
    for name in [
        "authn_token_created",
        "authn_login_fail",
        "authz_fail",
        "authn_token_rotated",
        "authn_token_reuse",
        "authn_token_disabled",
        "authn_token_enabled",
        "authn_token_revoked",
    ] {
        assert!(text.contains(name), "event {name} missing from the log");
    }
    for reason in [
        "reason=\"unknown\"",
        "rotated_out",
        "disabled",
        "revoked",
        "malformed",
    ] {
        assert!(text.contains(reason), "failure reason {reason} missing");
    }
    // The public id is logged: the capture works and the search sees the ids.
    assert!(found(&log, &[("id".into(), b"log-life".to_vec())]) == ["id"]);
}

/// Control: the same capture and search report a token, a secret part, a key and a digest
/// that are logged.
#[tokio::test]
async fn control_logged_secrets_are_found() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(subscriber(&capture));
    let manager = TokenManager::builder(MemoryStore::new())
        .server_key(ServerKey::from_bytes(KEY.to_vec()).unwrap())
        .prefix("acme")
        .build()
        .unwrap();
    let issued = manager
        .issue(IssueRequest::new("leak", "alice"))
        .await
        .unwrap();
    let token = issued.expose_secret().to_owned();
    let secret = TokenFormat::new("acme")
        .unwrap()
        .parse(&token)
        .unwrap()
        .secret()
        .to_owned();
    let digest = manager
        .store()
        .get(issued.id())
        .await
        .unwrap()
        .unwrap()
        .digest
        .digest;
    tracing::trace!(leaked = %token, "a careless log line");
    tracing::trace!("secret {secret}");
    tracing::trace!("key {}", String::from_utf8_lossy(KEY));
    tracing::trace!("digest {}", hex::encode(digest.as_bytes()));

    let log = capture.bytes();
    let mut secrets = token_forms("t", &token);
    secrets.extend(forms("server key", KEY));
    secrets.extend(forms("digest", digest.as_bytes()));
    let leaks = found(&log, &secrets);
    for expected in ["t token", "t secret", "server key (raw)", "digest (hex)"] {
        assert!(leaks.contains(&expected), "{expected} not found: {leaks:?}");
    }
}
