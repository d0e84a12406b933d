//! The `RequireToken` tower layer (feature `tower`).
//!
//! [`RequireToken`] reads the request's credential (see [`crate::http`]), verifies it
//! through the [`TokenManager`], and on success puts the [`VerifiedToken`] into the request
//! extensions and calls the inner service; on failure it answers with the RFC 6750 response
//! of the [`AuthRejection`] without calling the inner service. A store failure is a 503:
//! nothing is authorised.
//!
//! ```
//! use keygate::http::AuthConfig;
//! use keygate::tower::{RequireToken, RequireTokenLayer};
//! use keygate::{MemoryStore, ServerKey, TokenManager};
//!
//! # fn main() -> Result<(), keygate::Error> {
//! let manager = TokenManager::builder(MemoryStore::new())
//!     .server_key(ServerKey::generate())
//!     .build()?;
//! let config = AuthConfig::new()
//!     .api_key_header(http::HeaderName::from_static("api-token"))
//!     .realm("projects")?;
//! let layer = RequireTokenLayer::with_config(manager, config);
//! // `layer` goes to `ServiceBuilder::layer`, `Router::layer`, ...; or wrap by hand:
//! let service: RequireToken<()> = tower_layer::Layer::layer(&layer, ());
//! assert_eq!(service.get_ref(), &());
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ::http::{Request, Response};
use ::tower_layer::Layer;
use ::tower_service::Service;

use crate::http::{AuthConfig, AuthRejection, RejectionReason, close_if_unread, may_have_body};
use crate::manager::{TokenManager, VerifiedToken};
use crate::scope::{Scope, ScopeSet};

/// Applies [`RequireToken`] to a service.
#[derive(Clone, Debug)]
pub struct RequireTokenLayer {
    manager: TokenManager,
    config: Arc<AuthConfig>,
}

impl RequireTokenLayer {
    /// Requires a valid token, read from `Authorization: Bearer`, with the default
    /// [`AuthConfig`].
    pub fn new(manager: TokenManager) -> Self {
        Self::with_config(manager, AuthConfig::default())
    }

    /// Uses `config` for credential sources, optional authentication, realm and the expiry
    /// header.
    pub fn with_config(manager: TokenManager, config: AuthConfig) -> Self {
        RequireTokenLayer {
            manager,
            config: Arc::new(config),
        }
    }

    /// Shares an existing configuration.
    pub fn with_shared_config(manager: TokenManager, config: Arc<AuthConfig>) -> Self {
        RequireTokenLayer { manager, config }
    }

    /// The configuration.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }
}

impl<S> Layer<S> for RequireTokenLayer {
    type Service = RequireToken<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireToken {
            inner,
            shared: Arc::new(Shared {
                manager: self.manager.clone(),
                config: Arc::clone(&self.config),
            }),
        }
    }
}

/// What a request's future needs, behind one reference count.
#[derive(Debug)]
struct Shared {
    manager: TokenManager,
    config: Arc<AuthConfig>,
}

/// Verifies the request's token before calling the inner service; see the
/// [module documentation](self).
#[derive(Clone, Debug)]
pub struct RequireToken<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> RequireToken<S> {
    /// Wraps `inner`, requiring a valid token with the default [`AuthConfig`].
    pub fn new(inner: S, manager: TokenManager) -> Self {
        RequireTokenLayer::new(manager).layer(inner)
    }

    /// A layer wrapping services in `RequireToken`.
    pub fn layer(manager: TokenManager) -> RequireTokenLayer {
        RequireTokenLayer::new(manager)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, giving the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The response future of [`RequireToken`].
pub type ResponseFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireToken<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<Response<ResBody>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // The clone that was driven to readiness is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = &self.shared.config;
        let body = may_have_body(req.headers());
        let refuse = move |r: AuthRejection| close_if_unread(body, r.into_http_response());
        let credential = match config.extract(req.headers()) {
            Ok(Some(c)) => c,
            Ok(None) if config.is_optional() => return Box::pin(inner.call(req)),
            Ok(None) => {
                let r = config.reject(RejectionReason::MissingCredentials);
                return Box::pin(std::future::ready(Ok(refuse(r))));
            }
            Err(r) => return Box::pin(std::future::ready(Ok(refuse(r)))),
        };
        let client_ip = config.client_ip(req.headers(), req.extensions());
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let Shared { manager, config } = &*shared;
            let verified = match config.verify(manager, &credential, client_ip).await {
                Ok(v) => v,
                Err(r) => return Ok(refuse(r)),
            };
            drop(credential);
            let expiry = config.expiry_header_for(&verified);
            req.extensions_mut().insert(verified);
            let mut response = inner.call(req).await?;
            if let Some((name, value)) = expiry {
                response.headers_mut().insert(name, value);
            }
            Ok(response)
        })
    }
}

/// A check run on a verified token before the inner service (see [`RequireScopes`]).
///
/// Closures `Fn(&VerifiedToken) -> Result<(), AuthRejection>` are policies.
pub trait TokenPolicy: Clone + Send + Sync + 'static {
    /// `Ok` lets the request through; `Err` answers with the rejection.
    fn check(&self, token: &VerifiedToken) -> Result<(), AuthRejection>;

    /// The answer when the request carries no verified token.
    fn missing(&self) -> AuthRejection {
        AuthRejection::new(RejectionReason::MissingCredentials)
    }
}

impl<F> TokenPolicy for F
where
    F: Fn(&VerifiedToken) -> Result<(), AuthRejection> + Clone + Send + Sync + 'static,
{
    fn check(&self, token: &VerifiedToken) -> Result<(), AuthRejection> {
        self(token)
    }
}

/// Applies [`RequireScopes`] to a service.
#[derive(Clone, Debug)]
pub struct RequireScopesLayer<P> {
    policy: P,
}

impl<P: TokenPolicy> RequireScopesLayer<P> {
    /// Runs `policy` on the [`VerifiedToken`] that [`RequireToken`] put into the request
    /// extensions. A request without one (no `RequireToken` outside, or optional
    /// authentication and no credentials) gets a 401 without credentials.
    pub fn new(policy: P) -> Self {
        RequireScopesLayer { policy }
    }
}

impl<S, P: Clone> Layer<S> for RequireScopesLayer<P> {
    type Service = RequireScopes<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScopes {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// Checks the verified token in the request extensions against a policy (typically
/// required scopes) before calling the inner service. Runs inside [`RequireToken`].
#[derive(Clone, Debug)]
pub struct RequireScopes<S, P> {
    inner: S,
    policy: P,
}

impl<S, P> RequireScopes<S, P> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, giving the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, P, ReqBody, ResBody> Service<Request<ReqBody>> for RequireScopes<S, P>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    P: TokenPolicy,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = futures_util::future::Either<
        std::future::Ready<Result<Response<ResBody>, S::Error>>,
        S::Future,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        use futures_util::future::Either;
        let verdict = match req.extensions().get::<VerifiedToken>() {
            Some(token) => self.policy.check(token),
            None => Err(self.policy.missing()),
        };
        match verdict {
            Ok(()) => Either::Right(self.inner.call(req)),
            Err(r) => Either::Left(std::future::ready(Ok(close_if_unread(
                may_have_body(req.headers()),
                r.into_http_response(),
            )))),
        }
    }
}

/// Requires every scope of a set (see [`require_scopes`]); a refusal is audited as
/// `authz_fail` through the manager's audit sink.
#[derive(Clone, Debug)]
pub struct ScopePolicy {
    required: ScopeSet,
    manager: TokenManager,
    config: Option<Arc<AuthConfig>>,
}

impl ScopePolicy {
    /// Requires every scope of `scopes`, auditing refusals through `manager`.
    pub fn new(manager: TokenManager, scopes: ScopeSet) -> Self {
        ScopePolicy {
            required: scopes,
            manager,
            config: None,
        }
    }

    /// Parses scope strings written in code.
    ///
    /// # Panics
    ///
    /// If a string is not a valid scope: a typo such as `Projects:read` is a programming
    /// error, caught when the router is built (as axum's `route_layer` does for its own
    /// misuse), not a 500 on every request.
    pub fn parse<I, T>(manager: TokenManager, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let mut set = ScopeSet::new();
        for s in scopes {
            let s = s.as_ref();
            match Scope::new(s) {
                Ok(scope) => {
                    set.insert(scope);
                }
                Err(e) => panic!("keygate: invalid scope {s:?} in a route requirement: {e}"),
            }
        }
        Self::new(manager, set)
    }

    /// Uses the realm of `config` in responses.
    pub fn with_config(mut self, config: Arc<AuthConfig>) -> Self {
        self.config = Some(config);
        self
    }

    /// The required scopes.
    pub fn required(&self) -> &ScopeSet {
        &self.required
    }

    fn reject(&self, reason: RejectionReason) -> AuthRejection {
        match &self.config {
            Some(c) => c.reject(reason),
            None => AuthRejection::new(reason),
        }
    }
}

impl TokenPolicy for ScopePolicy {
    fn check(&self, token: &VerifiedToken) -> Result<(), AuthRejection> {
        match token.scopes().first_missing(&self.required) {
            None => Ok(()),
            Some(missing) => {
                // Audited as `authz_fail`, as every refusal of a scope is.
                let _ = self.manager.authorize(token, missing);
                Err(self.reject(RejectionReason::InsufficientScope(self.required.clone())))
            }
        }
    }

    fn missing(&self) -> AuthRejection {
        self.reject(RejectionReason::MissingCredentials)
    }
}

/// A route layer requiring every listed scope of the verified token that an outer
/// [`RequireToken`] put into the request extensions: 403 `insufficient_scope` (listing the
/// required scopes) if one is missing, 401 if there is no verified token.
///
/// With axum: `.route_layer(require_scopes(&manager, ["projects:write"]))`, or
/// [`Keygate::require_scopes`](crate::axum::Keygate::require_scopes).
///
/// # Panics
///
/// If a string is not a valid scope (see [`ScopePolicy::parse`]), when the layer is made.
pub fn require_scopes<I, T>(manager: &TokenManager, scopes: I) -> RequireScopesLayer<ScopePolicy>
where
    I: IntoIterator<Item = T>,
    T: AsRef<str>,
{
    RequireScopesLayer::new(ScopePolicy::parse(manager.clone(), scopes))
}
