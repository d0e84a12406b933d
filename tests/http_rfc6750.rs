//! The tower layer and the axum extractors over a real socket: RFC 6750 responses, credential
//! sources, optional authentication, scopes, projects, the expiry header, store failures.

#![cfg(all(feature = "axum", feature = "test-util"))]
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a test failure"
)]

mod http_support;

use keygate::testing::{Fault, FaultHandle};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderName;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use http_support::{Server, client, faulty_store, snapshot};
use keygate::axum::{Keygate, ScopeRequirement, Scoped};
use keygate::http::AuthConfig;
use keygate::{
    ExpiryPreset, IssueRequest, Projects, RotateRequest, ScopeSet, ServerKey, TokenId,
    TokenManager, VerifiedToken, expiry::ManualClock, scope::ProjectId,
};

const INVALID_TOKEN: &str = r#"Bearer realm="test", error="invalid_token""#;

struct ProjectsWrite;
impl ScopeRequirement for ProjectsWrite {
    const SCOPES: &'static [&'static str] = &["projects:write"];
}

struct Fixture {
    faults: FaultHandle,
    clock: ManualClock,
    keygate: Keygate,
    /// Calls that reached a handler.
    hits: Arc<AtomicUsize>,
}

impl Fixture {
    fn new(config: AuthConfig) -> Fixture {
        let (store, faults) = faulty_store();
        let clock = ManualClock::new(Utc::now());
        let manager = TokenManager::builder(store)
            .server_key(ServerKey::generate())
            .clock(clock.clone())
            .build()
            .unwrap();
        Fixture {
            faults,
            clock,
            keygate: Keygate::with_config(manager, config),
            hits: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn manager(&self) -> &TokenManager {
        self.keygate.manager()
    }

    async fn token(&self, scopes: &[&str]) -> String {
        self.issue(IssueRequest::new("t", "alice").scopes(ScopeSet::parse(scopes).unwrap()))
            .await
    }

    async fn issue(&self, req: IssueRequest) -> String {
        self.manager()
            .issue(req)
            .await
            .unwrap()
            .expose_secret()
            .to_owned()
    }

    /// `/hello` (any token), `/write` (route layer `projects:write`), `/typed` (typed
    /// extractor `projects:write`), `/projects/{id}` (project check), `/maybe` (optional
    /// token), all behind the layer.
    fn app(&self) -> Router {
        let hits = Arc::clone(&self.hits);
        let hello = move |token: VerifiedToken| {
            let hits = Arc::clone(&hits);
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                format!("hello {}", token.owner())
            }
        };
        Router::new()
            .route("/write", get(|| async { "written" }))
            .route_layer(self.keygate.require_scopes(["projects:write"]))
            .route("/hello", get(hello))
            .route(
                "/typed",
                get(|t: Scoped<ProjectsWrite>| async move { format!("typed {}", t.owner()) }),
            )
            .route("/projects/{id}", get(project))
            .route("/maybe", get(maybe))
            .layer(self.keygate.layer())
            .with_state(self.keygate.clone())
    }

    /// The same routes without the layer: the extractors verify from state.
    fn app_without_layer(&self) -> Router {
        Router::new()
            .route(
                "/hello",
                get(|t: VerifiedToken| async move { format!("hello {}", t.owner()) }),
            )
            .route("/maybe", get(maybe))
            .route(
                "/typed",
                get(|t: Scoped<ProjectsWrite>| async move { format!("typed {}", t.owner()) }),
            )
            .with_state(self.keygate.clone())
    }
}

async fn project(
    State(kg): State<Keygate>,
    token: VerifiedToken,
    Path(id): Path<String>,
) -> Response {
    let id = ProjectId::new(id).unwrap();
    match kg.authorize_project(&token, &id) {
        Ok(()) => format!("project {id}").into_response(),
        Err(r) => r.into_response(),
    }
}

async fn maybe(token: Option<VerifiedToken>) -> String {
    match token {
        Some(t) => format!("hello {}", t.owner()),
        None => "hello anonymous".to_owned(),
    }
}

fn config() -> AuthConfig {
    AuthConfig::new()
        .realm("test")
        .unwrap()
        .api_key_header(HeaderName::from_static("x-api-key"))
}

fn www(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn valid_token_passes_with_any_scheme_case() {
    let f = Fixture::new(config());
    let token = f.token(&[]).await;
    let server = Server::start(f.app()).await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let resp = client()
            .get(server.url("/hello"))
            .header("authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{scheme}");
        assert_eq!(resp.text().await.unwrap(), "hello alice");
    }
}

#[tokio::test]
async fn no_credentials_is_401_without_error_attribute() {
    let f = Fixture::new(config());
    let server = Server::start(f.app()).await;
    let cases: [&[(&str, &str)]; 3] = [
        &[],
        &[("authorization", "Basic YWxpY2U6c2VjcmV0")],
        &[("authorization", "Token abc")],
    ];
    for headers in cases {
        let mut req = client().get(server.url("/hello"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{headers:?}");
        assert_eq!(www(&resp).as_deref(), Some(r#"Bearer realm="test""#));
        assert!(!resp.text().await.unwrap().contains("invalid_token"));
    }
    assert_eq!(f.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn every_invalid_token_gets_the_same_401() {
    let f = Fixture::new(config());
    let format = f.manager().format().clone();
    let valid = f.token(&[]).await;

    // Malformed, bad checksum, unknown id, wrong secret.
    let mut bad_checksum = valid.clone();
    let last = bad_checksum.pop().unwrap();
    bad_checksum.push(if last == 'A' { 'B' } else { 'A' });
    let unknown = format
        .format(&TokenId::new("nosuchtoken").unwrap(), &"x".repeat(43))
        .unwrap()
        .expose_secret()
        .to_owned();
    let valid_id = valid.split('_').nth(1).unwrap();
    let wrong_secret = format
        .format(&TokenId::new(valid_id).unwrap(), &"y".repeat(43))
        .unwrap()
        .expose_secret()
        .to_owned();

    // Expired, disabled, revoked, rotated out.
    let expiring = f
        .issue(
            IssueRequest::new("e", "alice")
                .expiry(ExpiryPreset::In(std::time::Duration::from_secs(3600))),
        )
        .await;
    let disabled = f.token(&[]).await;
    let revoked = f.token(&[]).await;
    let rotated = f.token(&[]).await;
    let id = |t: &str| TokenId::new(t.split('_').nth(1).unwrap()).unwrap();
    f.manager().disable(&id(&disabled)).await.unwrap();
    f.manager().revoke(&id(&revoked)).await.unwrap();
    f.manager()
        .rotate(&id(&rotated), RotateRequest::new())
        .await
        .unwrap();
    f.clock.advance(std::time::Duration::from_secs(7200));

    let server = Server::start(f.app()).await;
    let mut snapshots = Vec::new();
    for (reason, token) in [
        ("malformed", "kg_not-a-token".to_owned()),
        ("foreign prefix", valid.replacen("kg_", "xx_", 1)),
        ("bad checksum", bad_checksum),
        ("unknown", unknown),
        ("wrong secret", wrong_secret),
        ("expired", expiring),
        ("disabled", disabled),
        ("revoked", revoked),
        ("rotated out", rotated),
    ] {
        let resp = client()
            .get(server.url("/hello"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{reason}");
        assert_eq!(www(&resp).as_deref(), Some(INVALID_TOKEN), "{reason}");
        let snap = snapshot(resp).await;
        assert_eq!(snap.2, br#"{"error":"invalid_token"}"#, "{reason}");
        assert!(!String::from_utf8_lossy(&snap.2).contains(&token));
        snapshots.push((reason, snap));
    }
    let (first_reason, first) = &snapshots[0];
    for (reason, snap) in &snapshots[1..] {
        assert_eq!(snap, first, "{reason} differs from {first_reason}");
    }
    // The valid token still works: the cases above were refused for their own reasons.
    let resp = client()
        .get(server.url("/hello"))
        .bearer_auth(&valid)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(f.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn malformed_double_and_over_long_headers_are_400() {
    let f = Fixture::new(config());
    let token = f.token(&[]).await;
    let server = Server::start(f.app()).await;
    let long = format!("Bearer {}", "a".repeat(5000));
    let bearer = format!("Bearer {token}");
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("no token", vec![("authorization", "Bearer")]),
        ("space in token", vec![("authorization", "Bearer abc def")]),
        ("bad characters", vec![("authorization", "Bearer a,b;c")]),
        (
            "two authorization headers",
            vec![("authorization", &bearer), ("authorization", &bearer)],
        ),
        (
            "bearer and api key",
            vec![("authorization", &bearer), ("x-api-key", &token)],
        ),
        (
            "two api keys",
            vec![("x-api-key", &token), ("x-api-key", &token)],
        ),
        ("bad api key", vec![("x-api-key", "a b")]),
        ("over-long", vec![("authorization", &long)]),
    ];
    for (name, headers) in cases {
        let mut req = client().get(server.url("/hello"));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 400, "{name}");
        assert_eq!(
            www(&resp).as_deref(),
            Some(r#"Bearer realm="test", error="invalid_request""#),
            "{name}"
        );
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{name}");
    }
    assert_eq!(f.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn custom_header_is_read_and_query_string_never() {
    let f = Fixture::new(config());
    let token = f.token(&[]).await;
    let server = Server::start(f.app()).await;
    let resp = client()
        .get(server.url("/hello"))
        .header("X-API-Key", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "hello alice");

    for param in ["access_token", "token", "api-token", "x-api-key"] {
        let resp = client()
            .get(server.url(&format!("/hello?{param}={token}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{param}");
        assert_eq!(www(&resp).as_deref(), Some(r#"Bearer realm="test""#));
    }

    // Without configuration the custom header is not a credential.
    let plain = Fixture::new(AuthConfig::new());
    let token = plain.token(&[]).await;
    let server = Server::start(plain.app()).await;
    let resp = client()
        .get(server.url("/hello"))
        .header("x-api-key", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn missing_scope_is_403_insufficient_scope() {
    let f = Fixture::new(config());
    let reader = f.token(&["projects:read"]).await;
    let writer = f.token(&["projects:write"]).await;
    let wildcard = f.token(&["projects:*"]).await;
    let server = Server::start(f.app()).await;
    for path in ["/write", "/typed"] {
        let resp = client()
            .get(server.url(path))
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{path}");
        assert_eq!(
            www(&resp).as_deref(),
            Some(r#"Bearer realm="test", error="insufficient_scope", scope="projects:write""#),
            "{path}"
        );
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "insufficient_scope");
        assert_eq!(body["scope"], "projects:write");
        for token in [&writer, &wildcard] {
            let resp = client()
                .get(server.url(path))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{path}");
        }
    }
}

#[tokio::test]
async fn project_check() {
    let f = Fixture::new(config());
    let token = f
        .issue(IssueRequest::new("p", "alice").projects(Projects::only(["website"]).unwrap()))
        .await;
    let server = Server::start(f.app()).await;
    let get = |p: &'static str| client().get(server.url(p)).bearer_auth(&token).send();
    assert_eq!(get("/projects/website").await.unwrap().status(), 200);
    let resp = get("/projects/billing").await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        www(&resp).as_deref(),
        Some(r#"Bearer realm="test", error="insufficient_scope""#)
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "project_denied");
}

#[tokio::test]
async fn store_failure_is_503_and_nothing_is_authorised() {
    let f = Fixture::new(config());
    let token = f.token(&[]).await;
    let server = Server::start(f.app()).await;
    f.faults.set(Fault::Error);
    for path in ["/hello", "/maybe", "/write"] {
        let resp = client()
            .get(server.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 503, "{path}");
        assert!(www(&resp).is_none());
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "temporarily_unavailable");
    }
    assert_eq!(f.hits.load(Ordering::SeqCst), 0);

    // Without the layer, the extractors fail closed the same way.
    let bare = Server::start(f.app_without_layer()).await;
    for path in ["/hello", "/maybe", "/typed"] {
        let resp = client()
            .get(bare.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 503, "{path}");
    }
    // A flood while the store fails, then while it times out: every request 503, none
    // reaches a handler.
    for fault in [
        Fault::Error,
        Fault::Timeout(std::time::Duration::from_millis(20)),
    ] {
        f.faults.set(fault);
        let requests = (0..50).map(|_| {
            client()
                .get(server.url("/hello"))
                .bearer_auth(&token)
                .send()
        });
        for resp in futures_join(requests).await {
            assert_eq!(resp.unwrap().status(), 503, "{fault:?}");
        }
    }
    assert_eq!(f.hits.load(Ordering::SeqCst), 0);
    f.faults.set(Fault::None);
    let resp = client()
        .get(server.url("/hello"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn expiry_header_on_verified_responses() {
    let f = Fixture::new(config());
    let expiring = f
        .issue(IssueRequest::new("e", "alice").expiry(ExpiryPreset::Days7))
        .await;
    let never = f
        .issue(IssueRequest::new("n", "alice").expiry(ExpiryPreset::Never))
        .await;
    let record = f.manager().verify(&expiring).await.unwrap();
    let expected = record
        .expiry()
        .at()
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let server = Server::start(f.app()).await;
    let resp = client()
        .get(server.url("/hello"))
        .bearer_auth(&expiring)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["token-expiration"], expected.as_str());
    let resp = client()
        .get(server.url("/hello"))
        .bearer_auth(&never)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("token-expiration").is_none());
    // Not on refusals.
    let resp = client().get(server.url("/hello")).send().await.unwrap();
    assert!(resp.headers().get("token-expiration").is_none());

    // Configurable: another name, or off.
    let renamed = Fixture::new(
        AuthConfig::new().expiry_header(Some(HeaderName::from_static("x-token-expires"))),
    );
    let t = renamed
        .issue(IssueRequest::new("e", "alice").expiry(ExpiryPreset::Days7))
        .await;
    let server = Server::start(renamed.app()).await;
    let resp = client()
        .get(server.url("/hello"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("x-token-expires").is_some());
    assert!(resp.headers().get("token-expiration").is_none());
    let off = Fixture::new(AuthConfig::new().expiry_header(None));
    let t = off
        .issue(IssueRequest::new("e", "alice").expiry(ExpiryPreset::Days7))
        .await;
    let server = Server::start(off.app()).await;
    let resp = client()
        .get(server.url("/hello"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("token-expiration").is_none());
}

#[tokio::test]
async fn optional_authentication() {
    let f = Fixture::new(config().optional(true));
    let token = f.token(&[]).await;
    let server = Server::start(f.app()).await;
    let resp = client().get(server.url("/maybe")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "hello anonymous");
    let resp = client()
        .get(server.url("/maybe"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "hello alice");
    // A bad token is still refused.
    let resp = client()
        .get(server.url("/maybe"))
        .bearer_auth("kg_nope_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(www(&resp).as_deref(), Some(INVALID_TOKEN));
    // A route that needs a token still refuses an anonymous request.
    let resp = client().get(server.url("/hello")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = client().get(server.url("/write")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(www(&resp).as_deref(), Some(r#"Bearer realm="test""#));
}

#[tokio::test]
async fn extractors_verify_from_state_without_the_layer() {
    let f = Fixture::new(config());
    let token = f.token(&["projects:write"]).await;
    let reader = f.token(&["projects:read"]).await;
    let server = Server::start(f.app_without_layer()).await;
    let resp = client()
        .get(server.url("/hello"))
        .header("authorization", format!("BEARER {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // No layer, no expiry header.
    assert!(resp.headers().get("token-expiration").is_none());
    let resp = client().get(server.url("/hello")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(www(&resp).as_deref(), Some(r#"Bearer realm="test""#));
    let resp = client()
        .get(server.url("/hello"))
        .bearer_auth("kg_nope_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(www(&resp).as_deref(), Some(INVALID_TOKEN));
    let resp = client().get(server.url("/maybe")).send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "hello anonymous");
    let resp = client()
        .get(server.url("/maybe"))
        .bearer_auth("kg_nope_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = client()
        .get(server.url("/typed"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = client()
        .get(server.url("/typed"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "typed alice");
}

/// Runs the futures concurrently and collects their outputs in order.
async fn futures_join<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// A typo in a route's scope requirement is caught when the router is built, not answered
/// with a 500 on every request.
#[test]
#[should_panic(expected = "invalid scope \"Projects:read\" in a route requirement")]
fn a_typo_in_require_scopes_panics_at_construction() {
    let manager = TokenManager::builder(keygate::MemoryStore::new())
        .server_key(ServerKey::generate())
        .build()
        .unwrap();
    let _ = keygate::tower::require_scopes(&manager, ["projects:write", "Projects:read"]);
}

/// The positive twin of the `compile_fail` example on `ScopeRequirement::SCOPES`: the same
/// program with a valid scope builds.
#[test]
fn a_valid_scope_requirement_builds_a_router() {
    struct Fine;
    impl ScopeRequirement for Fine {
        const SCOPES: &'static [&'static str] = &["projects:read"];
    }
    async fn handler(_token: Scoped<Fine>) {}
    let _app: Router<Keygate> = Router::new().route("/", get(handler));
}

/// A refusal by the scope layer is audited as `authz_fail`, like every other scope check.
#[tokio::test]
async fn the_scope_layer_audits_its_refusals() {
    let events: Arc<std::sync::Mutex<Vec<keygate::audit::AuditEvent>>> = Arc::default();
    let sink = Arc::clone(&events);
    let manager = TokenManager::builder(keygate::MemoryStore::new())
        .server_key(ServerKey::generate())
        .audit_sink(move |e: &keygate::audit::AuditEvent| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let token = manager
        .issue(IssueRequest::new("t", "o").scopes(ScopeSet::parse(["projects:read"]).unwrap()))
        .await
        .unwrap();
    let keygate = Keygate::new(manager);
    let app = Router::new()
        .route(
            "/w",
            get(|| async { "ok" }).route_layer(keygate.require_scopes(["projects:write"])),
        )
        .layer(keygate.layer())
        .with_state(keygate);
    let server = Server::start(app).await;
    let r = client()
        .get(server.url("/w"))
        .bearer_auth(token.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let denied: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(&e.kind, keygate::audit::AuditKind::AccessDenied { missing } if missing.contains("projects:write")))
        .cloned()
        .collect();
    assert_eq!(denied.len(), 1, "one authz_fail for the refused request");
    assert_eq!(denied[0].kind.owasp_name(), "authz_fail");
}
