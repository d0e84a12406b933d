//! The example service's `/metrics`, parsed as Prometheus' text format by a parser of its
//! own (`prometheus-parse`): the verification counters move by exactly the requests made,
//! by outcome, and the latency metrics are there.
#![cfg(all(
    feature = "console",
    feature = "sqlite",
    feature = "postgres",
    feature = "metrics"
))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

#[allow(dead_code, reason = "the example's `main` is not called by the tests")]
#[path = "../examples/server.rs"]
mod server;

use keygate::ServerKey;
use prometheus_parse::{Scrape, Value};

async fn scrape(http: &reqwest::Client, base: &str) -> Scrape {
    let resp = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "/metrics needs no credentials");
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = resp.text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// The counter `name` with `label=value`, 0 if absent.
fn counter(s: &Scrape, name: &str, label: &str, value: &str) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name && x.labels.get(label) == Some(value))
        .map(|x| match x.value {
            Value::Counter(v) | Value::Untyped(v) => v,
            _ => panic!("{name} is not a counter"),
        })
        .sum()
}

fn has(s: &Scrape, name: &str) -> bool {
    s.samples.iter().any(|x| x.metric.starts_with(name))
}

#[test]
fn metrics_count_verifications_by_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("tokens.db").display());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let service = server::start(&url, None, ServerKey::generate())
            .await
            .unwrap();
        let admin = service.admin_token.clone().unwrap();
        let app = server::app(service.keygate.clone()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let serve = tokio::spawn(async move { axum::serve(listener, app).await });
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let whoami = |token: String| {
            let req = http.get(format!("{base}/api/whoami")).bearer_auth(token);
            async move { req.send().await.unwrap().status().as_u16() }
        };

        let before = scrape(&http, &base).await;
        for _ in 0..3 {
            assert_eq!(whoami(admin.clone()).await, 200);
        }
        assert_eq!(whoami("not-a-token".into()).await, 401);
        assert_eq!(
            whoami("kg_nosuchid_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA000000".into()).await,
            401
        );
        let mut unknown = admin.clone();
        // Another secret under the same id and a valid checksum: an unknown token.
        let format = service.keygate.manager().format().clone();
        let parsed = format.parse(&admin).unwrap();
        let id = keygate::TokenId::new(parsed.id()).unwrap();
        let secret: String = parsed.secret().chars().rev().collect();
        unknown.clear();
        unknown.push_str(format.format(&id, &secret).unwrap().expose_secret());
        assert_eq!(whoami(unknown).await, 401);
        let after = scrape(&http, &base).await;

        let delta = |outcome: &str| {
            counter(&after, keygate::metrics::VERIFICATIONS, "outcome", outcome)
                - counter(&before, keygate::metrics::VERIFICATIONS, "outcome", outcome)
        };
        assert_eq!(delta("valid"), 3.0);
        assert_eq!(delta("malformed") + delta("bad_checksum"), 2.0);
        assert_eq!(delta("unknown"), 1.0);
        assert!(has(&after, keygate::metrics::VERIFICATION_SECONDS));
        assert!(has(&after, keygate::metrics::STORE_SECONDS));

        // An expiry notice sent, and one whose notifier failed.
        let manager = service.keygate.manager();
        for name in ["soon", "also soon"] {
            manager
                .issue(
                    keygate::IssueRequest::new(name, "alice").expiry(keygate::ExpiryPreset::In(
                        std::time::Duration::from_secs(2 * 86_400),
                    )),
                )
                .await
                .unwrap();
        }
        let report = manager
            .notify_expiring(
                &keygate::expiry::ExpiryWindows::default(),
                &FailSecond::default(),
            )
            .await
            .unwrap();
        assert_eq!((report.sent, report.failed), (1, 1));
        let notified = scrape(&http, &base).await;
        let notices = |outcome: &str| {
            counter(
                &notified,
                keygate::metrics::EXPIRY_NOTICES,
                "outcome",
                outcome,
            ) - counter(&after, keygate::metrics::EXPIRY_NOTICES, "outcome", outcome)
        };
        assert_eq!((notices("sent"), notices("failed")), (1.0, 1.0));
        serve.abort();
    });
}

/// Takes the first notice, fails every later one.
#[derive(Default)]
struct FailSecond(std::sync::atomic::AtomicUsize);

#[async_trait::async_trait]
impl keygate::expiry::ExpiryNotifier for FailSecond {
    async fn token_expiring(
        &self,
        _: &keygate::TokenRecord,
        _: &keygate::expiry::ExpiryNotice,
    ) -> Result<(), keygate::error::BoxError> {
        match self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            0 => Ok(()),
            _ => Err("the mail server is down".into()),
        }
    }
}
