//! axum extractors, rejection and the admin router (feature `axum`).
//!
//! - [`Keygate`] bundles a [`TokenManager`] and an [`AuthConfig`]; it is the state the
//!   extractors and the admin router read (`Keygate: FromRef<YourState>`), and it makes the
//!   [`RequireTokenLayer`] ([`Keygate::layer`]).
//! - [`VerifiedToken`] is an extractor: it takes the token verified by the layer from the
//!   request extensions, or, when no layer is installed, verifies the request's credential
//!   itself. `Option<VerifiedToken>` is `None` without credentials and still refuses bad
//!   ones.
//! - [`Scoped<R>`] requires the scopes of a [`ScopeRequirement`] as a typed extractor;
//!   [`Keygate::require_scopes`] does the same as a route layer (inside the `RequireToken`
//!   layer). Both audit a refusal as `authz_fail`.
//!   [`Keygate::authorize_project`] checks a project for handlers that act on one.
//! - [`AuthRejection`] is the one rejection type; it renders RFC 6750 responses (see
//!   [`crate::http`]).
//! - [`Keygate::admin_router_at`] is the JSON admin API and [`Keygate::admin_openapi`] its
//!   OpenAPI document, generated from the handlers' types (see [`admin`]).
//! - `leak_report` (feature `leak-report`) is an unauthenticated endpoint where leaked
//!   tokens are reported and revoked, rate limited per client IP.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use keygate::axum::Keygate;
//! use keygate::{MemoryStore, ServerKey, TokenManager, VerifiedToken};
//!
//! async fn whoami(token: VerifiedToken) -> String {
//!     token.owner().to_owned()
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = TokenManager::builder(MemoryStore::new())
//!     .server_key(ServerKey::generate())
//!     .build()?;
//! let keygate = Keygate::new(manager);
//! let app = Router::new()
//!     .route("/api/projects", get(|| async { "[]" }))
//!     .route_layer(keygate.require_scopes(["projects:read"]))
//!     .route("/api/whoami", get(whoami))
//!     .layer(keygate.layer())
//!     // Outside the layer: it authenticates each request itself, and serves its
//!     // OpenAPI document at /api/tokens/openapi.json without credentials.
//!     .merge(keygate.admin_router_at("/api/tokens")?)
//!     .with_state(keygate);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```

use std::marker::PhantomData;
use std::sync::Arc;

use ::axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use ::axum::http::request::Parts;
use ::axum::response::{IntoResponse, Response};

use crate::http::{AuthConfig, AuthRejection, RejectionReason};
use crate::manager::{TokenManager, VerifiedToken};
use crate::scope::{ProjectId, Scope, ScopeSet};
use crate::tower::{RequireScopesLayer, RequireTokenLayer, ScopePolicy};

pub mod admin;
#[cfg(feature = "leak-report")]
#[cfg_attr(docsrs, doc(cfg(feature = "leak-report")))]
pub mod leak_report;
mod schema;

/// A token manager and the HTTP configuration: the state keygate's extractors and admin
/// router read. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Keygate {
    manager: TokenManager,
    config: Arc<AuthConfig>,
}

impl Keygate {
    /// With the default [`AuthConfig`] (`Authorization: Bearer`, realm `api`).
    pub fn new(manager: TokenManager) -> Self {
        Self::with_config(manager, AuthConfig::default())
    }

    /// With `config`.
    pub fn with_config(manager: TokenManager, config: AuthConfig) -> Self {
        Keygate {
            manager,
            config: Arc::new(config),
        }
    }

    /// The manager.
    pub fn manager(&self) -> &TokenManager {
        &self.manager
    }

    /// The HTTP configuration.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// The [`RequireTokenLayer`] with this manager and configuration.
    pub fn layer(&self) -> RequireTokenLayer {
        RequireTokenLayer::with_shared_config(self.manager.clone(), Arc::clone(&self.config))
    }

    /// A route layer requiring every listed scope of the verified token (see
    /// [`crate::tower::require_scopes`]), answering with this configuration's realm and
    /// auditing refusals as `authz_fail`.
    ///
    /// # Panics
    ///
    /// If a string is not a valid scope, when the layer is made.
    pub fn require_scopes<I, T>(&self, scopes: I) -> RequireScopesLayer<ScopePolicy>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        RequireScopesLayer::new(
            ScopePolicy::parse(self.manager.clone(), scopes).with_config(Arc::clone(&self.config)),
        )
    }

    /// Reads and verifies the credential of a request: `Ok(None)` without one. The client
    /// address, for tokens restricted to IP ranges, comes from the request's
    /// `ConnectInfo<SocketAddr>` (see [`AuthConfig::client_ip`]).
    pub async fn authenticate(
        &self,
        parts: &Parts,
    ) -> Result<Option<VerifiedToken>, AuthRejection> {
        self.config
            .authenticate(&self.manager, &parts.headers, &parts.extensions)
            .await
    }

    /// `Ok` if `token` grants `scope`; a 403 `insufficient_scope` otherwise (audited as
    /// `authz_fail`).
    pub fn authorize(&self, token: &VerifiedToken, scope: &Scope) -> Result<(), AuthRejection> {
        self.manager.authorize(token, scope).map_err(|_| {
            self.config
                .reject(RejectionReason::InsufficientScope(ScopeSet::from_iter([
                    scope.clone(),
                ])))
        })
    }

    /// `Ok` if `token` may act on `project`; a 403 otherwise (audited as `authz_fail`).
    pub fn authorize_project(
        &self,
        token: &VerifiedToken,
        project: &ProjectId,
    ) -> Result<(), AuthRejection> {
        self.manager.authorize_project(token, project).map_err(|_| {
            self.config
                .reject(RejectionReason::ProjectDenied(project.clone()))
        })
    }

    /// The admin API with its routes under `prefix` (e.g. `/api/tokens`, or `""` for the
    /// root), to [`merge`](::axum::Router::merge) into the application; the collection
    /// answers at `{prefix}` and `{prefix}/`. Merge it outside the application's
    /// [`layer`](Self::layer), so that `GET {prefix}/openapi.json` needs no credentials:
    /// every other route authenticates its request itself. See [`admin`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) if `prefix` is not empty and
    /// not `/`-separated segments of `A-Z`, `a-z`, `0-9`, `-`, `.`, `_`, `~` starting with
    /// `/` and not ending with one.
    ///
    /// ```
    /// # use keygate::{MemoryStore, ServerKey, TokenManager};
    /// # use keygate::axum::Keygate;
    /// # let manager = TokenManager::builder(MemoryStore::new())
    /// #     .server_key(ServerKey::generate())
    /// #     .build()
    /// #     .unwrap();
    /// let keygate = Keygate::new(manager);
    /// let app: axum::Router = axum::Router::new()
    ///     .route("/api/whoami", axum::routing::get(|| async { "me" }))
    ///     .layer(keygate.layer())
    ///     .merge(keygate.admin_router_at("/api/tokens").unwrap());
    /// assert!(keygate.admin_router_at::<()>("api/tokens").is_err());
    /// assert!(keygate.admin_router_at::<()>("/api/tokens/").is_err());
    /// assert!(keygate.admin_router_at::<()>("/api/{tokens}").is_err());
    /// ```
    pub fn admin_router_at<S>(&self, prefix: &str) -> Result<::axum::Router<S>, crate::Error>
    where
        S: Clone + Send + Sync + 'static,
    {
        Ok(admin::router(self.clone(), admin::Prefix::parse(prefix)?))
    }

    /// The admin API with its routes at the root, to
    /// [`nest`](::axum::Router::nest): `.nest("/api/tokens", keygate.admin_router())`. Its
    /// document learns the mount point from axum's
    /// [`NestedPath`](::axum::extract::NestedPath). Prefer
    /// [`admin_router_at`](Self::admin_router_at): axum's `nest` does not route
    /// `{mount}/` to the collection, and a router nested inside the application's
    /// [`layer`](Self::layer) serves its document only with a valid token.
    pub fn admin_router<S>(&self) -> ::axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        admin::router(self.clone(), admin::Prefix::root())
    }

    /// The OpenAPI 3.1 document of the admin API as
    /// [`admin_router_at`](Self::admin_router_at) mounts it at `prefix` and serves it at
    /// `GET {prefix}/openapi.json`: generated from the handlers and the types of their
    /// bodies, with every path under `prefix`, the security schemes of this
    /// [`AuthConfig`] (`bearer`, and `api_key` when an API-key header is configured) and
    /// the manager's size limits. Serialize it with `serde_json`, or merge it into an
    /// application's own `utoipa` document.
    ///
    /// # Errors
    ///
    /// As [`admin_router_at`](Self::admin_router_at), for an invalid `prefix`.
    ///
    /// ```
    /// # use keygate::{MemoryStore, ServerKey, TokenManager};
    /// # use keygate::axum::Keygate;
    /// # let manager = TokenManager::builder(MemoryStore::new())
    /// #     .server_key(ServerKey::generate())
    /// #     .build()
    /// #     .unwrap();
    /// let keygate = Keygate::new(manager);
    /// let doc = keygate.admin_openapi("/api/tokens").unwrap();
    /// assert!(doc.paths.paths.contains_key("/api/tokens/{id}/rotate"));
    /// ```
    pub fn admin_openapi(&self, prefix: &str) -> Result<utoipa::openapi::OpenApi, crate::Error> {
        Ok(admin::document(self, &admin::Prefix::parse(prefix)?))
    }
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        self.into_http_response()
    }
}

impl<S> FromRequestParts<S> for VerifiedToken
where
    S: Send + Sync,
    Keygate: FromRef<S>,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(token) = parts.extensions.get::<VerifiedToken>() {
            return Ok(token.clone());
        }
        let keygate = Keygate::from_ref(state);
        match keygate.authenticate(parts).await? {
            Some(token) => {
                parts.extensions.insert(token.clone());
                Ok(token)
            }
            None => Err(keygate.config.reject(RejectionReason::MissingCredentials)),
        }
    }
}

impl<S> OptionalFromRequestParts<S> for VerifiedToken
where
    S: Send + Sync,
    Keygate: FromRef<S>,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        if let Some(token) = parts.extensions.get::<VerifiedToken>() {
            return Ok(Some(token.clone()));
        }
        let keygate = Keygate::from_ref(state);
        let token = keygate.authenticate(parts).await?;
        if let Some(t) = &token {
            parts.extensions.insert(t.clone());
        }
        Ok(token)
    }
}

/// Scopes a [`Scoped`] extractor requires (every one of them).
///
/// ```
/// use keygate::axum::{ScopeRequirement, Scoped};
///
/// struct ProjectsWrite;
/// impl ScopeRequirement for ProjectsWrite {
///     const SCOPES: &'static [&'static str] = &["projects:write"];
/// }
///
/// async fn create_project(token: Scoped<ProjectsWrite>) -> String {
///     format!("created by {}", token.owner())
/// }
/// ```
pub trait ScopeRequirement: Send + Sync + 'static {
    /// The required scopes. Checked when the program is compiled: an invalid scope string
    /// fails the build of any program that uses [`Scoped`] with this requirement.
    ///
    /// ```compile_fail
    /// use keygate::axum::{ScopeRequirement, Scoped};
    ///
    /// struct Typo;
    /// impl ScopeRequirement for Typo {
    ///     const SCOPES: &'static [&'static str] = &["Projects:read"];
    /// }
    /// async fn handler(_token: Scoped<Typo>) {}
    ///
    /// let _app: axum::Router<keygate::axum::Keygate> =
    ///     axum::Router::new().route("/", axum::routing::get(handler));
    /// ```
    const SCOPES: &'static [&'static str];

    #[doc(hidden)]
    /// Evaluated for every `Scoped<Self>` in use: fails compilation on an invalid scope.
    const VALID: () = assert!(
        crate::scope::all_valid(Self::SCOPES),
        "keygate: ScopeRequirement::SCOPES holds an invalid scope"
    );
}

/// A verified token that holds every scope of `R` (403 `insufficient_scope` otherwise).
/// Dereferences to [`VerifiedToken`].
pub struct Scoped<R> {
    token: VerifiedToken,
    _requirement: PhantomData<fn() -> R>,
}

impl<R> Scoped<R> {
    /// The verified token.
    pub fn into_inner(self) -> VerifiedToken {
        self.token
    }
}

impl<R> std::ops::Deref for Scoped<R> {
    type Target = VerifiedToken;
    fn deref(&self) -> &VerifiedToken {
        &self.token
    }
}

impl<R> std::fmt::Debug for Scoped<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Scoped").field(&self.token).finish()
    }
}

impl<S, R> FromRequestParts<S> for Scoped<R>
where
    S: Send + Sync,
    Keygate: FromRef<S>,
    R: ScopeRequirement,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // Compile-time check of the requirement's scopes.
        #[allow(clippy::let_unit_value, reason = "forces the constant's evaluation")]
        let () = R::VALID;
        let token =
            <VerifiedToken as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        let keygate = Keygate::from_ref(state);
        // Valid by `R::VALID`; a failure here would still fail closed.
        let required = ScopeSet::parse(R::SCOPES)
            .map_err(|e| keygate.config.reject(RejectionReason::Misconfigured(e)))?;
        if !token.scopes().grants_all(&required) {
            if let Some(missing) = token.scopes().first_missing(&required) {
                // Audited as `authz_fail`.
                let _ = keygate.manager.authorize(&token, missing);
            }
            return Err(keygate
                .config
                .reject(RejectionReason::InsufficientScope(required)));
        }
        Ok(Scoped {
            token,
            _requirement: PhantomData,
        })
    }
}
