//! Leaked-token reporting (feature `leak-report`): an unauthenticated endpoint where anyone
//! who finds a token in the open (a secret scanner, a partner program, a person) can report
//! it, so that it stops working, as GitHub's `POST /credentials/revoke` does.
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use keygate::axum::leak_report::{LeakNotifier, LeakReport};
//! use keygate::{MemoryStore, ServerKey, TokenManager, TokenRecord};
//!
//! struct MailOwner;
//!
//! #[async_trait::async_trait]
//! impl LeakNotifier for MailOwner {
//!     async fn token_leaked(&self, record: &TokenRecord) {
//!         // Tell `record.owner` that token `record.id` was found exposed and revoked.
//!         let _ = record;
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = TokenManager::builder(MemoryStore::new())
//!     .server_key(ServerKey::generate())
//!     .build()?;
//! let app = axum::Router::new()
//!     .merge(LeakReport::new(manager, MailOwner).router_at("/credentials/revoke")?);
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! // The client IP (for the rate limit) comes from the connection: serve with ConnectInfo.
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # The endpoint
//!
//! `POST {path}` with a JSON body `{"tokens": ["kg_...", ...]}`: at most
//! [`LeakReport::max_tokens`] strings (default 20, at most
//! [`MAX_LEAK_REPORT_TOKENS`]), in a body of at most 32 KiB; a string over 1024 bytes
//! cannot be a token and is skipped (the answer is the same). Each reported token that could still authenticate is
//! revoked by [`TokenManager::report_leaked`] (read it for the exact rule: disabled and
//! expired tokens are revoked too, a retired secret past its grace revokes nothing), audited
//! as `authn_token_leak_reported`, and passed to the application's [`LeakNotifier`] to tell
//! its owner. No reported string is ever logged.
//!
//! # No oracle
//!
//! A well-formed report is always answered `202 Accepted` with the same headers
//! (`content-type: application/json`, `cache-control: no-store`, the same
//! `content-length`) and the same body, `{"status":"received"}`, whether the tokens were
//! valid, unknown, malformed, already revoked, or a mix: the answer never tells which
//! tokens exist (the `leak_report` tests compare the replies byte for byte, apart from the
//! server's `date` header). The notifier runs on a task of its own after the answer, so a
//! slow notifier does not show in the answer either. What is not covered: the time of the
//! answer (a revocation is a store write, so a report of a live token takes longer; whoever
//! holds the token can use it directly anyway, which tells more), and a store failure, which
//! is answered `503` and could happen between the lookup and the revocation of a live
//! token only. A malformed request (`400` not JSON or unknown fields, `413` too large, `422`
//! too many tokens) is refused by its form alone, before any lookup.
//!
//! # Rate limit
//!
//! Per client IP (an IPv6 client by its /64 network, which one host usually holds whole),
//! with `governor`: a burst of [`LeakReport::per_minute`] requests (default 10), refilled at
//! that rate. Beyond it: `429 Too Many Requests` with `Retry-After` in seconds, before the
//! body is read. Every 1024 requests, the state of clients whose quota is full again (not
//! seen for about a minute) is dropped, so it stays bounded by the recently active clients.
//!
//! The client IP is the connection's peer address, from axum's
//! `ConnectInfo<SocketAddr>`: serve the application with
//! `into_make_service_with_connect_info::<SocketAddr>()`. Without it the endpoint cannot
//! rate limit and fails closed: it answers `500` with `{"error": "misconfigured"}` and
//! a message naming the fix, and logs one error (once per router) at target
//! `keygate::leak_report`. Behind a reverse proxy every client has the proxy's address, so
//! the limit is shared by all: rate limit at the proxy as well, by the client address it
//! sees.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ::axum::Router;
use ::axum::extract::{ConnectInfo, Request, State};
use ::axum::http::{HeaderValue, StatusCode, header};
use ::axum::response::{IntoResponse, Response};
use ::axum::routing::post;
use async_trait::async_trait;
use governor::clock::{Clock, MonotonicClock};
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use serde::Deserialize;

use super::admin::Prefix;
use crate::error::Error;
use crate::manager::{MAX_LEAK_REPORT_TOKENS, TokenManager};
use crate::record::TokenRecord;

/// Largest request body read, in bytes.
pub const MAX_BODY_BYTES: usize = 32 * 1024;
/// Longest reported string looked at, in bytes (longer ones cannot be tokens).
pub const MAX_TOKEN_BYTES: usize = 1024;

/// The application's hook to tell a token's owner that it was reported and revoked.
///
/// Called once per revoked token, on a task of its own, after the reporter was answered.
/// It gets the revoked record (id, name, owner, ...), never the reported plaintext.
#[async_trait]
pub trait LeakNotifier: Send + Sync + 'static {
    /// The token of `record` was reported leaked and is now revoked.
    async fn token_leaked(&self, record: &TokenRecord);
}

/// Tells no one (the revocation is still audited).
#[async_trait]
impl LeakNotifier for () {
    async fn token_leaked(&self, _: &TokenRecord) {}
}

type Limiter = RateLimiter<IpAddr, HashMapStateStore<IpAddr>, MonotonicClock>;

/// The leak report endpoint's configuration; [`router_at`](Self::router_at) makes the
/// router. See the [module](self) documentation.
pub struct LeakReport {
    manager: TokenManager,
    notifier: Arc<dyn LeakNotifier>,
    per_minute: NonZeroU32,
    max_tokens: usize,
}

impl std::fmt::Debug for LeakReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeakReport")
            .field("per_minute", &self.per_minute)
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

impl LeakReport {
    /// Reports revoke through `manager` and are told to `notifier` (`()` tells no one).
    pub fn new(manager: TokenManager, notifier: impl LeakNotifier) -> Self {
        LeakReport {
            manager,
            notifier: Arc::new(notifier),
            per_minute: NonZeroU32::MIN.saturating_add(9),
            max_tokens: 20,
        }
    }

    /// Requests per minute and client IP, also the burst (default 10).
    pub fn per_minute(mut self, requests: NonZeroU32) -> Self {
        self.per_minute = requests;
        self
    }

    /// Most tokens per report (default 20; clamped to 1..=[`MAX_LEAK_REPORT_TOKENS`]).
    pub fn max_tokens(mut self, max: usize) -> Self {
        self.max_tokens = max.clamp(1, MAX_LEAK_REPORT_TOKENS);
        self
    }

    /// The router, with the endpoint at `path` (e.g. `/credentials/revoke`; the same rules as
    /// the admin API's prefix). Merge it into the application's router.
    pub fn router_at<S>(self, path: &str) -> Result<Router<S>, Error>
    where
        S: Clone + Send + Sync + 'static,
    {
        let path = Prefix::parse(path)?.path("/");
        let quota = Quota::per_minute(self.per_minute);
        let clock = MonotonicClock;
        let state = Endpoint {
            manager: self.manager,
            notifier: self.notifier,
            limiter: Arc::new(RateLimiter::new(
                quota,
                HashMapStateStore::default(),
                clock.clone(),
            )),
            clock,
            max_tokens: self.max_tokens,
            requests: Arc::new(AtomicU64::new(0)),
            warned: Arc::new(AtomicBool::new(false)),
        };
        Ok(Router::new().route(&path, post(report)).with_state(state))
    }
}

#[derive(Clone)]
struct Endpoint {
    manager: TokenManager,
    notifier: Arc<dyn LeakNotifier>,
    limiter: Arc<Limiter>,
    clock: MonotonicClock,
    max_tokens: usize,
    requests: Arc<AtomicU64>,
    warned: Arc<AtomicBool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportBody {
    tokens: Vec<String>,
}

/// The rate-limit key of a client: an IPv4 address, or an IPv6 address's /64 network (an
/// IPv4-mapped IPv6 address is its IPv4 address).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let net = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(net))
            }
        },
    }
}

fn json(status: StatusCode, body: &'static str) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The one answer to every well-formed report.
const RECEIVED: &str = r#"{"status":"received"}"#;

async fn report(State(ep): State<Endpoint>, req: Request) -> Response {
    let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() else {
        if !ep.warned.swap(true, Ordering::Relaxed) {
            tracing::error!(
                target: "keygate::leak_report",
                "the leak report endpoint has no client address: serve the application with \
                 `into_make_service_with_connect_info::<SocketAddr>()`; every report is refused"
            );
        }
        return json(
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":"misconfigured","message":"the server does not pass client addresses (ConnectInfo<SocketAddr>) to this endpoint"}"#,
        );
    };
    // Drop the state of clients not seen lately, every 1024 requests.
    if ep.requests.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
        ep.limiter.retain_recent();
    }
    if let Err(not_until) = ep.limiter.check_key(&client_key(peer.ip())) {
        let wait = not_until.wait_time_from(ep.clock.now());
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut r = json(StatusCode::TOO_MANY_REQUESTS, r#"{"error":"rate_limited"}"#);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        return r;
    }
    let body = match ::axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => return json(StatusCode::PAYLOAD_TOO_LARGE, r#"{"error":"too_large"}"#),
    };
    let Ok(parsed) = serde_json::from_slice::<ReportBody>(&body) else {
        return json(
            StatusCode::BAD_REQUEST,
            r#"{"error":"invalid_request","message":"expected {\"tokens\": [\"...\"]}"}"#,
        );
    };
    if parsed.tokens.is_empty() || parsed.tokens.len() > ep.max_tokens {
        return json(
            StatusCode::UNPROCESSABLE_ENTITY,
            r#"{"error":"invalid_input","message":"give between 1 and the endpoint's maximum of tokens"}"#,
        );
    }
    // Longer strings cannot be tokens: not looked at (the parser bounds length as well).
    let tokens: Vec<&str> = parsed
        .tokens
        .iter()
        .map(String::as_str)
        .filter(|t| t.len() <= MAX_TOKEN_BYTES)
        .collect();
    let revoked = match ep.manager.report_leaked(&tokens).await {
        Ok(revoked) => revoked,
        Err(e) => {
            tracing::warn!(target: "keygate::leak_report", error = %e, "a leak report failed");
            let mut r = json(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":"temporarily_unavailable"}"#,
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return r;
        }
    };
    drop(parsed);
    if !revoked.is_empty() {
        let notifier = Arc::clone(&ep.notifier);
        tokio::spawn(async move {
            for record in &revoked {
                notifier.token_leaked(record).await;
            }
        });
    }
    json(StatusCode::ACCEPTED, RECEIVED)
}

#[cfg(test)]
mod tests {
    use super::client_key;
    use std::net::IpAddr;

    #[test]
    fn clients_are_keyed_by_ipv4_or_ipv6_network() {
        let key = |s: &str| client_key(s.parse::<IpAddr>().unwrap()).to_string();
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }
}
