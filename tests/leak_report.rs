//! Leaked-token reports: `TokenManager::report_leaked`'s rule, and the `leak_report` router
//! over a real socket (a real token is revoked and then refused, a fake one gets a
//! byte-identical answer, a flood is refused with `Retry-After`, a server without
//! `ConnectInfo` is refused clearly).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

#[cfg(feature = "leak-report")]
mod log_capture;

use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use keygate::audit::{AuditEvent, AuditKind};
use keygate::expiry::ManualClock;
use keygate::{
    ExpiryPreset, IssueRequest, MemoryStore, RotateRequest, ScopeSet, ServerKey, TokenManager,
    TokenStatus, VerifyError,
};

type Events = Arc<Mutex<Vec<AuditEvent>>>;

fn manager(events: &Events) -> (TokenManager, ManualClock) {
    let sink = Arc::clone(events);
    let clock = ManualClock::new(chrono::Utc::now());
    let m = TokenManager::builder(MemoryStore::new())
        .server_key(ServerKey::from_bytes([3u8; 32]).unwrap())
        .clock(clock.clone())
        .audit_sink(move |e: &AuditEvent| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    (m, clock)
}

async fn issue(m: &TokenManager, name: &str, scopes: &[&str]) -> (keygate::TokenId, String) {
    let t = m
        .issue(
            IssueRequest::new(name, "alice")
                .scopes(ScopeSet::parse(scopes).unwrap())
                .expiry(ExpiryPreset::Never),
        )
        .await
        .unwrap();
    (t.id().clone(), t.expose_secret().to_owned())
}

/// Changes the last character of the secret (keeping the checksum wrong, or right for a
/// different secret): a well-formed but unknown token is made by issuing and deleting.
async fn unknown_token(m: &TokenManager) -> String {
    let (id, token) = issue(m, "deleted", &[]).await;
    m.delete(&id).await.unwrap();
    token
}

#[tokio::test]
async fn report_leaked_revokes_what_could_still_authenticate() {
    let events = Events::default();
    let (m, clock) = manager(&events);
    let (admin, admin_token) = issue(&m, "the only admin", &["*"]).await;
    let (live, live_token) = issue(&m, "live", &[]).await;
    let (disabled, disabled_token) = issue(&m, "disabled", &[]).await;
    m.disable(&disabled).await.unwrap();
    let (rotated, old_secret) = issue(&m, "rotated", &[]).await;
    let new_secret = m
        .rotate(
            &rotated,
            RotateRequest::new().grace(StdDuration::from_secs(3600)),
        )
        .await
        .unwrap()
        .expose_secret()
        .to_owned();
    let (graced, graced_old) = issue(&m, "in grace", &[]).await;
    m.rotate(
        &graced,
        RotateRequest::new().grace(StdDuration::from_secs(7200)),
    )
    .await
    .unwrap();
    clock.advance(StdDuration::from_secs(3601));
    let unknown = unknown_token(&m).await;
    events.lock().unwrap().clear();

    let reported = [
        live_token.as_str(),
        live_token.as_str(), // twice: revoked once
        disabled_token.as_str(),
        old_secret.as_str(), // past its grace: revokes nothing
        graced_old.as_str(), // in its grace: revokes its token
        admin_token.as_str(),
        unknown.as_str(),
        "kg_not-a-token",
        "",
    ];
    let revoked = m.report_leaked(&reported).await.unwrap();
    let mut ids: Vec<_> = revoked.iter().map(|r| r.id.to_string()).collect();
    ids.sort();
    let mut want = vec![
        live.to_string(),
        disabled.to_string(),
        graced.to_string(),
        admin.to_string(),
    ];
    want.sort();
    assert_eq!(ids, want);
    assert!(revoked.iter().all(|r| r.status == TokenStatus::Revoked));
    assert!(matches!(
        m.verify(&live_token).await,
        Err(VerifyError::Revoked)
    ));
    // The rotated token's current secret still works: an old secret past grace is harmless.
    m.verify(&new_secret).await.unwrap();
    assert_eq!(m.get(&rotated).await.unwrap().status, TokenStatus::Active);

    let events = std::mem::take(&mut *events.lock().unwrap());
    let leak_events: Vec<_> = events
        .iter()
        .filter(|e| e.kind == AuditKind::LeakReported)
        .collect();
    assert_eq!(leak_events.len(), 4);
    assert!(
        leak_events
            .iter()
            .all(|e| e.actor.as_deref() == Some("leak-report")
                && e.kind.owasp_name() == "authn_token_leak_reported")
    );
    // No event holds a reported string.
    let text = format!("{events:?}");
    for token in &reported[..7] {
        let secret = token.rsplit('_').next().unwrap();
        assert!(
            !text.contains(secret),
            "an audit event holds a reported secret"
        );
    }

    // Reporting again changes nothing; too many strings are refused whole.
    assert!(m.report_leaked(&reported).await.unwrap().is_empty());
    let many = vec![live_token.as_str(); keygate::manager::MAX_LEAK_REPORT_TOKENS + 1];
    assert!(matches!(
        m.report_leaked(&many).await,
        Err(keygate::Error::TooLarge { .. })
    ));
}

#[cfg(feature = "leak-report")]
mod http {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::num::NonZeroU32;

    use keygate::TokenRecord;
    use keygate::axum::leak_report::{LeakNotifier, LeakReport};

    struct Told(tokio::sync::mpsc::UnboundedSender<TokenRecord>);

    #[async_trait::async_trait]
    impl LeakNotifier for Told {
        async fn token_leaked(&self, record: &TokenRecord) {
            let _ = self.0.send(record.clone());
        }
    }

    struct Server {
        base: String,
    }

    async fn serve(app: axum::Router, connect_info: bool) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            if connect_info {
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .await
                .unwrap();
            } else {
                axum::serve(listener, app).await.unwrap();
            }
        });
        Server {
            base: format!("http://{addr}/credentials/revoke"),
        }
    }

    /// Status, headers but `date`, and body bytes.
    async fn post(
        client: &reqwest::Client,
        url: &str,
        body: &serde_json::Value,
    ) -> (u16, Vec<(String, Vec<u8>)>, Vec<u8>) {
        let r = client.post(url).json(body).send().await.unwrap();
        let status = r.status().as_u16();
        let mut headers: Vec<(String, Vec<u8>)> = r
            .headers()
            .iter()
            .filter(|(k, _)| *k != "date")
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        headers.sort();
        (status, headers, r.bytes().await.unwrap().to_vec())
    }

    fn client_from(ip: Ipv4Addr) -> reqwest::Client {
        reqwest::Client::builder()
            .local_address(IpAddr::V4(ip))
            .build()
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_real_token_is_revoked_and_a_fake_one_answered_identically() {
        let events = Events::default();
        let (m, _) = manager(&events);
        let (id, token) = issue(&m, "leaked", &["projects:read"]).await;
        let (_, bystander) = issue(&m, "bystander", &[]).await;
        let unknown = unknown_token(&m).await;
        let (tx, mut told) = tokio::sync::mpsc::unbounded_channel();
        let app = LeakReport::new(m.clone(), Told(tx))
            .per_minute(NonZeroU32::new(100).unwrap())
            .router_at("/credentials/revoke")
            .unwrap();
        let server = serve(app, true).await;
        let client = client_from(Ipv4Addr::LOCALHOST);

        let real = post(
            &client,
            &server.base,
            &serde_json::json!({"tokens": [token]}),
        )
        .await;
        assert_eq!(real.0, 202);
        assert_eq!(real.2, br#"{"status":"received"}"#);
        assert!(
            real.1
                .contains(&("cache-control".into(), b"no-store".to_vec()))
        );
        assert!(matches!(m.verify(&token).await, Err(VerifyError::Revoked)));
        m.verify(&bystander).await.unwrap();
        let record = tokio::time::timeout(StdDuration::from_secs(5), told.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (record.id.clone(), record.status),
            (id, TokenStatus::Revoked)
        );

        // Unknown, malformed, already revoked, a mix: the same bytes.
        let checksum_broken = {
            let mut t = bystander.clone();
            let last = t.pop().unwrap();
            t.push(if last == 'a' { 'b' } else { 'a' });
            t
        };
        for body in [
            serde_json::json!({"tokens": [unknown]}),
            serde_json::json!({"tokens": ["kg_nothing_here"]}),
            serde_json::json!({"tokens": [checksum_broken]}),
            serde_json::json!({"tokens": [token]}),
            serde_json::json!({"tokens": ["x".repeat(5000), unknown, token]}),
        ] {
            let fake = post(&client, &server.base, &body).await;
            assert_eq!(fake, real, "{body}");
        }
        m.verify(&bystander).await.unwrap();
        assert!(told.try_recv().is_err(), "no one is told of a fake report");

        // Refused by form alone.
        for (body, status) in [
            (serde_json::json!({"tokens": []}), 422),
            (serde_json::json!({"tokens": vec!["a"; 21]}), 422),
            (serde_json::json!({"token": "a"}), 400),
            (serde_json::json!({"tokens": ["a"], "more": 1}), 400),
            (serde_json::json!({"tokens": ["a".repeat(40_000)]}), 413),
        ] {
            assert_eq!(post(&client, &server.base, &body).await.0, status, "{body}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_from_one_ip_is_refused_with_retry_after() {
        let events = Events::default();
        let (m, _) = manager(&events);
        let app = LeakReport::new(m, ())
            .per_minute(NonZeroU32::new(5).unwrap())
            .router_at("/credentials/revoke")
            .unwrap();
        let server = serve(app, true).await;
        let flooder = client_from(Ipv4Addr::new(127, 0, 0, 1));
        let body = serde_json::json!({"tokens": ["kg_a_b"]});
        for _ in 0..5 {
            assert_eq!(post(&flooder, &server.base, &body).await.0, 202);
        }
        for _ in 0..20 {
            let r = flooder.post(&server.base).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 429);
            let secs: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=60).contains(&secs), "{secs}");
        }
        // Another client address is not held back by the flood.
        let other = client_from(Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(post(&other, &server.base, &body).await.0, 202);
    }

    /// Under a TRACE subscriber capturing everything (one thread, so the server's tasks log
    /// into it too): reports of live and fake tokens leave no reported secret in any form in
    /// the logs, and the audit events are there.
    #[tokio::test]
    async fn reported_tokens_never_reach_the_logs() {
        let capture = log_capture::Capture::default();
        let _guard = tracing::subscriber::set_default(log_capture::subscriber(&capture));
        let m = TokenManager::builder(MemoryStore::new())
            .server_key(ServerKey::generate())
            .build()
            .unwrap();
        let (_, live) = issue(&m, "live", &[]).await;
        let unknown = unknown_token(&m).await;
        let app = LeakReport::new(m.clone(), ())
            .router_at("/credentials/revoke")
            .unwrap();
        let server = serve(app, true).await;
        let client = client_from(Ipv4Addr::LOCALHOST);
        let r = post(
            &client,
            &server.base,
            &serde_json::json!({"tokens": [live, unknown]}),
        )
        .await;
        assert_eq!(r.0, 202);
        assert!(matches!(m.verify(&live).await, Err(VerifyError::Revoked)));
        let logs = capture.bytes();
        assert!(String::from_utf8_lossy(&logs).contains("authn_token_leak_reported"));
        for token in [&live, &unknown] {
            let secret = token.rsplit('_').next().unwrap();
            let mut needles = log_capture::forms("token", token.as_bytes());
            needles.extend(log_capture::forms("secret", secret.as_bytes()));
            let leaks = log_capture::found(&logs, &needles);
            assert!(leaks.is_empty(), "{leaks:?}");
        }
    }

    /// Without `ConnectInfo`: one error in the logs, however many requests are refused.
    #[tokio::test]
    async fn a_missing_connect_info_is_logged_once() {
        let capture = log_capture::Capture::default();
        let _guard = tracing::subscriber::set_default(log_capture::subscriber(&capture));
        let events = Events::default();
        let (m, _) = manager(&events);
        let app = LeakReport::new(m, ())
            .router_at("/credentials/revoke")
            .unwrap();
        let server = serve(app, false).await;
        let client = reqwest::Client::new();
        for _ in 0..3 {
            let r = post(&client, &server.base, &serde_json::json!({"tokens": ["x"]})).await;
            assert_eq!(r.0, 500);
        }
        let logs = String::from_utf8_lossy(&capture.bytes()).into_owned();
        assert_eq!(
            logs.matches("into_make_service_with_connect_info").count(),
            1,
            "{logs}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_connect_info_reports_are_refused_clearly() {
        let events = Events::default();
        let (m, _) = manager(&events);
        let (_, token) = issue(&m, "kept", &[]).await;
        let app = LeakReport::new(m.clone(), ())
            .router_at("/credentials/revoke")
            .unwrap();
        let server = serve(app, false).await;
        let client = reqwest::Client::new();
        let r = post(
            &client,
            &server.base,
            &serde_json::json!({"tokens": [token]}),
        )
        .await;
        assert_eq!(r.0, 500);
        let body: serde_json::Value = serde_json::from_slice(&r.2).unwrap();
        assert_eq!(body["error"], "misconfigured");
        assert!(body["message"].as_str().unwrap().contains("ConnectInfo"));
        // Fails closed: nothing was revoked.
        m.verify(&token).await.unwrap();
    }
}
