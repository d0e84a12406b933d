//! The admin API: a JSON router over the [`TokenManager`](crate::TokenManager), made by
//! [`Keygate::admin_router_at`], with its OpenAPI document generated from the handlers and
//! the types of their bodies ([`Keygate::admin_openapi`]).
//!
//! Every operation runs through [`TokenManager::acting_as`](crate::TokenManager::acting_as)
//! for the calling token, so the delegation rules of
//! [`keygate::manager::delegation`](crate::manager::delegation) hold here as everywhere: a
//! caller never grants scopes, projects, another owner (without `tokens:any-owner`) or a
//! lifetime beyond its own, and sees only the tokens it could have created (others are "not
//! found"). On top of that each route needs a scope:
//!
//! | route (after the prefix) | scope |
//! |---|---|
//! | `GET /`, `GET /{id}` | `tokens:read` |
//! | `POST /`, `PATCH /{id}`, `DELETE /{id}`, `POST /{id}/rotate`, `/{id}/enable`, `/{id}/disable`, `/{id}/revoke`, `POST /bulk` | `tokens:write` |
//! | `GET /self`, `POST /self`, `POST /self/{id}/rotate`, `POST /self/{id}/revoke` | `tokens:self` (or `tokens:read` / `tokens:write`); only tokens whose owner is the caller's owner |
//! | `POST /prune` | `*` |
//! | `GET /openapi.json` | none |
//!
//! `*` grants everything, `tokens:*` all of the above but `POST /prune`. Every token id is
//! addressable: `/self`, `/bulk` and `/prune` are routes, so the manager refuses them as ids
//! ([`RESERVED_IDS`](crate::manager::RESERVED_IDS)), and `openapi.json` is not a valid id.
//!
//! # Mounting
//!
//! [`Keygate::admin_router_at`] registers the routes at their full paths under the prefix it
//! is given, so it is merged, not nested: `.merge(keygate.admin_router_at("/api/tokens")?)`. The collection
//! answers at the prefix with and without a trailing slash (`/api/tokens` and
//! `/api/tokens/`). Each route authenticates its request itself (from the `Authorization:
//! Bearer` header, or the API-key header of the [`AuthConfig`](crate::http::AuthConfig) in
//! use), so the router can sit outside the [`RequireTokenLayer`](crate::tower::RequireTokenLayer)
//! of the rest of the application; it must, for `GET {prefix}/openapi.json` to answer
//! without credentials, which it does by design: the document holds no secret. Inside the
//! layer everything still works, but the document then needs a valid token.
//! ([`Keygate::admin_router`] is the same router at the root, for `nest`; its document
//! takes the mount point from axum's `NestedPath`.)
//!
//! The document ([`Keygate::admin_openapi`], served at `GET {prefix}/openapi.json`) is
//! OpenAPI 3.1. Its paths include the prefix, so each answers at the URL a generated client
//! calls; its security schemes are those of the `AuthConfig` (`bearer` always, `api_key`
//! when an API-key header is configured); its size limits are those of the manager's
//! [`Limits`](crate::record::Limits).
//!
//! # Bodies and errors
//!
//! Bodies are JSON with unknown fields refused, at most
//! [`Limits::max_request_body_bytes`](crate::record::Limits::max_request_body_bytes) (64 KiB
//! by default). Expiries are strings: `7d`, `30d`, `60d`, `90d`, `<N>d`, `<N>h`, `<N>m`,
//! `<N>s` (up to 100 years), `never` or an RFC 3339 instant in the future; without one a token gets 30 days, or the caller's own expiry if
//! sooner. Grace periods are `<N>d`, `<N>h`, `<N>m` or `<N>s`; while one runs, another
//! rotation needs `"end_grace": true`. `POST /{id}/revoke` with `{"children": true}` also
//! revokes every token the token created, and theirs in turn, answering with a bulk report.
//! `POST /prune` with `{"older_than": "90d"}` deletes the records of tokens revoked or expired
//! more than 90 days ago (the rule of
//! [`TokenRecord::is_prunable`](crate::TokenRecord::is_prunable)), in batches of
//! [`crate::manager::DEFAULT_PRUNE_BATCH`], each its own transaction and
//! audit event, answering `{"dry_run": false, "cutoff": ..., "count": <deleted>, "batches":
//! ...}`; with `"dry_run": true` it deletes nothing and `count` is how many it would delete.
//!
//! Token responses carry the record version as an `ETag` (`"3"`). `PATCH /{id}` and the
//! rotate routes honour `If-Match` with such a tag: a record at another version answers 412
//! and changes nothing, so of many concurrent rotations from one read exactly one wins.
//! Without `If-Match` a change applies to whatever version is stored (a rotation that
//! loses a race answers 409).
//!
//! Errors are `{"error": code, "message": text}` with 400 (malformed JSON, query, id or
//! `If-Match`), 403 (escalation), 404, 409 (conflict, revoked token, grace running, last
//! active `*` token, a bulk filter selecting more than one call may change), 412 (stale `If-Match`), 413 (body over the limit), 415 (not JSON), 422
//! (invalid values, expiry beyond policy, over a size limit, which the message names) or
//! 503 (store unavailable); authentication and scope refusals (400, 401, 403, 503) are the
//! RFC 6750 responses of [`crate::http`], `{"error": code}` with `WWW-Authenticate`. Every
//! response carries `Cache-Control: no-store`; creation and rotation return the plaintext
//! token once, in `token`.

use std::collections::BTreeMap;

use ::axum::Router;
use ::axum::body::Bytes;
use ::axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use ::axum::handler::Handler;
use ::axum::http::request::Parts;
use ::axum::http::{HeaderValue, StatusCode, header};
use ::axum::response::{IntoResponse, Response};
use ::axum::routing::{MethodFilter, on};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, ResponseBuilder};
use utoipa::{IntoParams, IntoResponses, OpenApi, PartialSchema, ToSchema};

mod limits;

use super::Keygate;
use crate::error::Error;
use crate::expiry::{ExpiryPreset, parse_duration};
use crate::http::AuthRejection;
use crate::manager::{
    BulkAction, BulkReport, DEFAULT_PRUNE_BATCH, IssueRequest, IssuedToken, RotateRequest,
    Selection, TokenUpdate, VerifiedToken,
};
use crate::record::{TokenRecord, TokenStatus, TokenView};
use crate::scope::{ProjectId, Projects, Scope, ScopeSet};
use crate::store::{Cursor, PageRequest, TokenFilter};
use crate::token::TokenId;

/// The HTTP methods the admin router uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Patch,
    Delete,
}

impl Method {
    fn filter(self) -> MethodFilter {
        match self {
            Method::Get => MethodFilter::GET,
            Method::Post => MethodFilter::POST,
            Method::Patch => MethodFilter::PATCH,
            Method::Delete => MethodFilter::DELETE,
        }
    }

    #[cfg(test)]
    fn name(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
            Method::Patch => "patch",
            Method::Delete => "delete",
        }
    }
}

/// Where the admin API is mounted: empty (the root), or `/`-separated segments of
/// `A-Z`, `a-z`, `0-9`, `-`, `.`, `_`, `~`, starting with `/` and not ending with one
/// (`/api/tokens`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Prefix(String);

impl Prefix {
    /// Routes at the root.
    pub(crate) fn root() -> Prefix {
        Prefix(String::new())
    }

    pub(crate) fn parse(prefix: &str) -> Result<Prefix, Error> {
        if prefix.is_empty() || prefix == "/" {
            return Ok(Prefix::root());
        }
        let Some(rest) = prefix.strip_prefix('/') else {
            return Err(Error::InvalidConfig(
                "admin API prefix: must start with `/` (e.g. `/api/tokens`)",
            ));
        };
        for segment in rest.split('/') {
            if segment.is_empty() {
                return Err(Error::InvalidConfig(
                    "admin API prefix: no empty segment and no trailing `/`",
                ));
            }
            if segment == "." || segment == ".." {
                return Err(Error::InvalidConfig(
                    "admin API prefix: no `.` or `..` segment",
                ));
            }
            if !segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
            {
                return Err(Error::InvalidConfig(
                    "admin API prefix: segments use only `A-Z`, `a-z`, `0-9`, `-`, `.`, `_`, `~`",
                ));
            }
        }
        Ok(Prefix(prefix.to_owned()))
    }

    /// The full path of a route of the router (`/` is the prefix itself).
    pub(crate) fn path(&self, route: &str) -> String {
        join(&self.0, route)
    }
}

/// `route` under `prefix` (no trailing `/`); the route `/` is the prefix itself.
fn join(prefix: &str, route: &str) -> String {
    {
        match (prefix, route) {
            ("", route) => route.to_owned(),
            (prefix, "/") => prefix.to_owned(),
            (prefix, route) => format!("{prefix}{route}"),
        }
    }
}

/// A router that records what it registers, so the route set can be checked against the
/// generated document.
struct Routes {
    router: Router<Keygate>,
    prefix: Prefix,
    table: Vec<(Method, &'static str)>,
}

impl Routes {
    fn add<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, Keygate>,
        T: 'static,
    {
        if path == "/" && !self.prefix.0.is_empty() {
            // The collection also answers with a trailing slash: `/api/tokens/`.
            let slash = format!("{}/", self.prefix.0);
            self.router = self
                .router
                .route(&slash, on(method.filter(), handler.clone()));
        }
        let full = self.prefix.path(path);
        self.router = self.router.route(&full, on(method.filter(), handler));
        self.table.push((method, path));
        self
    }
}

fn routes(prefix: Prefix) -> Routes {
    use Method::*;
    Routes {
        router: Router::new(),
        prefix,
        table: Vec::new(),
    }
    .add(Get, "/openapi.json", openapi)
    .add(Get, "/", list)
    .add(Post, "/", create)
    .add(Post, "/bulk", bulk)
    .add(Post, "/prune", prune)
    .add(Get, "/self", self_list)
    .add(Post, "/self", self_create)
    .add(Post, "/self/{id}/rotate", self_rotate)
    .add(Post, "/self/{id}/revoke", self_revoke)
    .add(Get, "/{id}", get_one)
    .add(Patch, "/{id}", update)
    .add(Delete, "/{id}", delete)
    .add(Post, "/{id}/rotate", rotate)
    .add(Post, "/{id}/enable", enable)
    .add(Post, "/{id}/disable", disable)
    .add(Post, "/{id}/revoke", revoke)
}

pub(super) fn router<S>(keygate: Keygate, prefix: Prefix) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let body_limit = keygate.manager().limits().max_request_body_bytes();
    let document = Arc::new(document(&keygate, &prefix));
    routes(prefix)
        .router
        .layer(::axum::Extension(OpenApiDocument(document)))
        .layer(::axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(::axum::middleware::map_response(no_store))
        .layer(::axum::middleware::from_fn(close_after_early_refusal))
        .with_state(keygate)
}

/// Authentication and scope are checked before a body is read: such a refusal (401, 403)
/// ends the connection, so the unread body is never taken for the next request.
async fn close_after_early_refusal(req: Request, next: ::axum::middleware::Next) -> Response {
    let body = crate::http::may_have_body(req.headers());
    let response = next.run(req).await;
    let early = matches!(
        response.status(),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    );
    crate::http::close_if_unread(body && early, response)
}

async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

// ----- errors --------------------------------------------------------------------------------

/// An admin API error: an authentication/authorisation rejection (RFC 6750) or a JSON error
/// `{"error": code, "message": text}`.
#[derive(Debug)]
enum ApiError {
    Auth(AuthRejection),
    Json {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Json {
            status,
            code,
            message: message.into(),
        }
    }

    fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message)
    }
}

impl From<AuthRejection> for ApiError {
    fn from(r: AuthRejection) -> Self {
        ApiError::Auth(r)
    }
}

/// The status and code of a management error.
fn classify(e: &Error) -> (StatusCode, &'static str) {
    match e {
        Error::InvalidId(_) => (StatusCode::BAD_REQUEST, "invalid_id"),
        Error::InvalidScope(_)
        | Error::InvalidProject(_)
        | Error::InvalidExpiry(_)
        | Error::InvalidField { .. }
        | Error::InvalidConfig(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
        Error::Policy(_) => (StatusCode::UNPROCESSABLE_ENTITY, "policy_violation"),
        Error::TooLarge { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "limit_exceeded"),
        Error::TooManyMatches { .. } => (StatusCode::CONFLICT, "too_many_matches"),
        Error::VersionMismatch { .. } => (StatusCode::PRECONDITION_FAILED, "precondition_failed"),
        Error::LastAdmin(_) => (StatusCode::CONFLICT, "last_admin"),
        Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        Error::AlreadyExists(_) => (StatusCode::CONFLICT, "already_exists"),
        Error::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
        Error::InvalidState { .. } => (StatusCode::CONFLICT, "invalid_state"),
        Error::Escalation(_) => (StatusCode::FORBIDDEN, "escalation_refused"),
        Error::Access(_) => (StatusCode::FORBIDDEN, "access_denied"),
        Error::Verify(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
        Error::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let (status, code) = classify(&e);
        if let Error::Store(source) = &e {
            tracing::warn!(target: "keygate", error = %source, "token store failed in the admin API");
        }
        ApiError::new(status, code, e.to_string())
    }
}

/// An error of the admin API.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ErrorBody<'a> {
    /// A short code: `invalid_input`, `not_found`, `escalation_refused`, ...
    error: &'a str,
    /// What is wrong, for a person.
    message: &'a str,
}

/// An authentication or scope refusal (RFC 6750), as [`AuthRejection::body`] writes it.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RejectionBody {
    /// `missing_credentials`, `invalid_token`, `invalid_request`, `insufficient_scope`,
    /// `project_denied` or `temporarily_unavailable`.
    error: String,
    /// With `insufficient_scope`: the scopes required, space-separated.
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    /// With `project_denied`: the project.
    #[serde(skip_serializing_if = "Option::is_none")]
    project: Option<String>,
    /// With `invalid_request`: what is malformed.
    #[serde(skip_serializing_if = "Option::is_none")]
    error_description: Option<String>,
}

/// Any error body: an [`ErrorBody`] or a [`RejectionBody`].
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[expect(dead_code, reason = "describes the error bodies, for the document")]
enum ErrorReply<'a> {
    Api(ErrorBody<'a>),
    Rejection(RejectionBody),
}

/// The error responses of the admin API, one description per status, shared by every
/// operation that can answer with it.
fn error_response(status: u16) -> (String, RefOr<utoipa::openapi::Response>) {
    let description = match status {
        400 => "Malformed credentials, or a malformed request (JSON, query, id, `If-Match`)",
        401 => "No credentials, or an invalid token (RFC 6750)",
        403 => "The token lacks the scope, or the request would escalate its rights",
        404 => "No such token within the caller's reach",
        409 => {
            "Conflict: the id exists, the token is revoked, a grace period runs, it is the \
             last active `*` token, or a filter selects more tokens than one call may change"
        }
        412 => "`If-Match` names another version",
        413 => "The body is over `Limits::max_request_body_bytes`",
        415 => "The body is not JSON",
        422 => "Invalid values, an expiry beyond the policy, or over a size limit",
        _ => "The token store is unavailable",
    };
    let response = ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorReply::name())))
                .build(),
        )
        .build();
    (status.to_string(), RefOr::T(response))
}

/// Declares a set of error responses for `#[utoipa::path(responses(...))]`.
macro_rules! error_responses {
    ($($(#[$doc:meta])* $name:ident: $($status:literal),+;)+) => {
        $(
            $(#[$doc])*
            struct $name;

            impl IntoResponses for $name {
                fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
                    [$($status),+].into_iter().map(error_response).collect()
                }
            }
        )+
    };
}

error_responses! {
    /// A listing.
    ListErrors: 400, 401, 403, 422, 503;
    /// A creation or bulk action, with a body.
    BodyErrors: 400, 401, 403, 409, 413, 415, 422, 503;
    /// A read of one token.
    ReadErrors: 400, 401, 403, 404, 503;
    /// A change of one token without a body.
    StatusErrors: 400, 401, 403, 404, 409, 503;
    /// A change of one token with a body.
    ChangeErrors: 400, 401, 403, 404, 409, 413, 415, 422, 503;
    /// A change of one token with a body and `If-Match`.
    VersionedChangeErrors: 400, 401, 403, 404, 409, 412, 413, 415, 422, 503;
}

/// The success responses that carry a token (and its version as `ETag`), declared once.
mod success {
    #![allow(
        dead_code,
        reason = "response types exist for the OpenAPI document only"
    )]

    use super::{IssuedView, RevokeReply, TokenView};

    /// 200: the token.
    #[derive(utoipa::IntoResponses)]
    #[response(status = 200, description = "The token", headers(("ETag" = String, description = "The record version as a strong entity tag, e.g. `\"3\"`")))]
    pub(super) struct TokenOk(TokenView<'static>);

    /// 201: a new token, its plaintext shown this once.
    #[derive(utoipa::IntoResponses)]
    #[response(status = 201, description = "The new token, its plaintext shown this once", headers(("ETag" = String, description = "The record version as a strong entity tag, e.g. `\"3\"`")))]
    pub(super) struct IssuedCreated(IssuedView<'static>);

    /// 200: a rotated token, its new plaintext shown this once.
    #[derive(utoipa::IntoResponses)]
    #[response(status = 200, description = "The token with its new secret, shown this once", headers(("ETag" = String, description = "The record version as a strong entity tag, e.g. `\"3\"`")))]
    pub(super) struct RotatedOk(IssuedView<'static>);

    /// 200: a revoked token, or with `children` the bulk report.
    #[derive(utoipa::IntoResponses)]
    #[response(status = 200, description = "The revoked token; with `children`, the bulk report", headers(("ETag" = String, description = "The record version as a strong entity tag, e.g. `\"3\"`")))]
    pub(super) struct RevokedOk(RevokeReply);
}
use success::{IssuedCreated, RevokedOk, RotatedOk, TokenOk};

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Auth(r) => r.into_response(),
            ApiError::Json {
                status,
                code,
                message,
            } => (
                status,
                ::axum::Json(ErrorBody {
                    error: code,
                    message: &message,
                }),
            )
                .into_response(),
        }
    }
}

type ApiResult<T = Response> = Result<T, ApiError>;

// ----- extractors ----------------------------------------------------------------------------

/// A JSON object body (an empty body or `null` is `{}`), with 400 for malformed JSON and
/// 422 for invalid values, unknown fields or another JSON type.
struct JsonBody<T>(T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let json = ct
                .to_str()
                .ok()
                .and_then(|s| s.split(';').next())
                .is_some_and(|m| {
                    let m = m.trim();
                    m.eq_ignore_ascii_case("application/json")
                        || (m.len() > 5 && m[m.len() - 5..].eq_ignore_ascii_case("+json"))
                });
            if !json {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "expected Content-Type: application/json",
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    e.status(),
                    "payload_too_large",
                    "the request body is over the limit (Limits::max_request_body_bytes)",
                )
            } else {
                ApiError::new(e.status(), "invalid_body", e.body_text())
            }
        })?;
        // No body, or `null`, is `{}`: every body field is optional where a body is.
        let blank = bytes.iter().all(u8::is_ascii_whitespace) || bytes.trim_ascii() == b"null";
        let input: &[u8] = if blank { b"{}" } else { &bytes };
        // An object, never an array: serde would read a struct from a sequence too.
        if input.trim_ascii_start().first() == Some(&b'[') {
            return Err(ApiError::unprocessable(
                "invalid type: array, expected a JSON object",
            ));
        }
        serde_json::from_slice(input).map(JsonBody).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Data => ApiError::unprocessable(e.to_string()),
                _ => ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()),
            }
        })
    }
}

/// The `{id}` path parameter as a [`TokenId`] (400 if invalid).
struct IdParam(TokenId);

impl<S: Send + Sync> FromRequestParts<S> for IdParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_id", e.body_text()))?;
        TokenId::new(&raw).map(IdParam).map_err(ApiError::from)
    }
}

/// The version named by `If-Match` (an ETag of a previous response), if any: exactly
/// [`IF_MATCH_PATTERN`]. `*` or no header: any version. Anything else is a 400.
struct IfMatch(Option<u64>);

/// What `If-Match` accepts: `*`, or one strong tag of a version (`"3"`; also without the
/// quotes, which clients often drop), with optional spaces and tabs around it.
const IF_MATCH_PATTERN: &str = r#"^[ \t]*(\*|"[0-9]{1,19}"|[0-9]{1,19})[ \t]*$"#;

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let mut values = parts.headers.get_all(header::IF_MATCH).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Ok(IfMatch(None));
        };
        let bad = || {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "If-Match: expected one ETag of this token (e.g. \"3\") or *",
            )
        };
        let value = value.to_str().map_err(|_| bad())?.trim_matches([' ', '\t']);
        if value == "*" {
            return Ok(IfMatch(None));
        }
        let digits = match value.strip_prefix('"') {
            Some(quoted) => quoted.strip_suffix('"').ok_or_else(bad)?,
            None => value,
        };
        if !(1..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        digits
            .parse::<u64>()
            .map(|v| IfMatch(Some(v)))
            .map_err(|_| bad())
    }
}

impl IntoParams for IfMatch {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name("If-Match")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "Apply only if the token is at this version: an `ETag` of an earlier \
                     response (`\"3\"`), or `*` for any",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(IF_MATCH_PATTERN)),
                ))
                .build(),
        ]
    }
}

impl IntoParams for IdParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name("id")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some("The token id"))
                .schema(Some(Ref::from_schema_name(TokenId::name())))
                .build(),
        ]
    }
}

/// A query string, unknown parameters refused (400).
struct QueryParams<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(q)| QueryParams(q))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))
    }
}

// ----- views ---------------------------------------------------------------------------------

/// A token with its plaintext, shown once.
#[derive(Serialize, ToSchema)]
struct IssuedView<'a> {
    token: &'a str,
    #[serde(flatten)]
    record: TokenView<'a>,
}

/// The entity tag of a record: its version, as a strong tag (`"3"`).
fn etag(r: &TokenRecord) -> [(header::HeaderName, String); 1] {
    [(header::ETAG, format!("\"{}\"", r.version))]
}

fn token_json(status: StatusCode, r: &TokenRecord, now: DateTime<Utc>) -> Response {
    (status, etag(r), ::axum::Json(TokenView::new(r, now))).into_response()
}

fn issued_json(status: StatusCode, issued: &IssuedToken, now: DateTime<Utc>) -> Response {
    (
        status,
        etag(issued.record()),
        ::axum::Json(IssuedView {
            token: issued.expose_secret(),
            record: TokenView::new(issued.record(), now),
        }),
    )
        .into_response()
}

/// A page of tokens.
#[derive(Serialize, ToSchema)]
struct ListView<'a> {
    items: Vec<TokenView<'a>>,
    /// The cursor of the next page (`after`), if there is one.
    next: Option<String>,
}

/// A token a bulk action could not change, and why.
#[derive(Serialize, ToSchema)]
struct BulkFailure<'a> {
    id: &'a TokenId,
    error: &'static str,
    message: String,
}

/// The report of a bulk action.
#[derive(Serialize, ToSchema)]
struct BulkView<'a> {
    changed: &'a [TokenId],
    unchanged: &'a [TokenId],
    failed: Vec<BulkFailure<'a>>,
}

// ----- requests ------------------------------------------------------------------------------

/// Which tokens a bulk action selects; every given criterion must hold.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct FilterParams {
    name: Option<String>,
    owner: Option<String>,
    created_by: Option<String>,
    status: Option<TokenStatus>,
    expires_before: Option<DateTime<Utc>>,
    expires_after: Option<DateTime<Utc>>,
    project: Option<ProjectId>,
    scope: Option<Scope>,
}

impl FilterParams {
    fn into_filter(self) -> TokenFilter {
        TokenFilter {
            name_contains: self.name,
            owner: self.owner,
            created_by: self.created_by,
            status: self.status,
            expires_before: self.expires_before,
            expires_after: self.expires_after,
            project: self.project,
            scope: self.scope,
            key_version: None,
            within: None,
        }
    }
}

/// Filters and paging of a listing; every given criterion must hold. (`GET /self` takes
/// the same without `owner`, which is the caller's.)
#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListParams {
    name: Option<String>,
    owner: Option<String>,
    created_by: Option<String>,
    status: Option<TokenStatus>,
    expires_before: Option<DateTime<Utc>>,
    expires_after: Option<DateTime<Utc>>,
    project: Option<ProjectId>,
    scope: Option<Scope>,
    /// At most this many tokens (1 to 1000, default 50).
    limit: Option<u64>,
    /// The `next` cursor of the previous page.
    after: Option<String>,
}

impl ListParams {
    fn split(self) -> ApiResult<(TokenFilter, PageRequest)> {
        let bad = |message: &str| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message.to_owned())
        };
        let limit = match self.limit {
            None => crate::store::DEFAULT_PAGE_LIMIT,
            Some(n) => usize::try_from(n)
                .ok()
                .filter(|n| (1..=crate::store::MAX_PAGE_LIMIT).contains(n))
                .ok_or_else(|| bad("limit: expected 1 to 1000"))?,
        };
        let after = match &self.after {
            Some(c) => Some(c.parse::<Cursor>().map_err(|e| bad(&e.to_string()))?),
            None => None,
        };
        let filter = FilterParams {
            name: self.name,
            owner: self.owner,
            created_by: self.created_by,
            status: self.status,
            expires_before: self.expires_before,
            expires_after: self.expires_after,
            project: self.project,
            scope: self.scope,
        }
        .into_filter();
        Ok((filter, PageRequest { limit, after }))
    }
}

/// A token to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    id: Option<TokenId>,
    name: String,
    #[serde(default)]
    description: String,
    owner: Option<String>,
    #[serde(default)]
    scopes: ScopeSet,
    /// Default: the caller's own projects.
    projects: Option<Projects>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    /// CIDR ranges the token may be used from (a bare address is its host range); default
    /// and `[]`: any client. Acting as a restricted token, each must lie inside one of its
    /// own ranges.
    #[serde(default)]
    #[schema(example = json!(["10.0.0.0/8", "2001:db8::/32"]))]
    allowed_ips: Vec<String>,
    /// Default: 30 days.
    expires: Option<String>,
    /// `false` creates the token disabled (enable it later). Default `true`.
    #[serde(default = "default_enabled")]
    #[schema(default = true)]
    enabled: bool,
}

fn default_enabled() -> bool {
    true
}

/// Changes to a token; absent fields stay as they are.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    name: Option<String>,
    description: Option<String>,
    scopes: Option<ScopeSet>,
    projects: Option<Projects>,
    metadata: Option<BTreeMap<String, String>>,
    /// Replaces the allowed CIDR ranges; `[]` lifts the restriction (any client).
    #[schema(example = json!(["10.0.0.0/8"]))]
    allowed_ips: Option<Vec<String>>,
    expires: Option<String>,
}

/// How to rotate a token.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    grace: Option<String>,
    expires: Option<String>,
    /// End a running grace period of the previous secret.
    #[serde(default)]
    end_grace: bool,
}

/// Which records to prune.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PruneBody {
    /// Prune the records of tokens revoked or expired more than this long ago: `<N>d`,
    /// `<N>h`, `<N>m` or `<N>s`.
    older_than: String,
    /// Count only, delete nothing.
    #[serde(default)]
    dry_run: bool,
}

/// What a prune did, or (dry run) would do.
#[derive(Serialize, ToSchema)]
struct PruneView {
    dry_run: bool,
    /// Records of tokens that ended strictly before this instant are pruned.
    cutoff: DateTime<Utc>,
    /// Records deleted, or (dry run) that would be.
    count: u64,
    /// Batches that deleted something (0 for a dry run).
    batches: u64,
}

/// How to revoke a token.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    /// Also revoke every token this one created, and theirs in turn.
    #[serde(default)]
    children: bool,
}

/// What a bulk action does.
#[derive(Deserialize, Clone, Copy, ToSchema)]
#[serde(rename_all = "lowercase")]
enum BulkActionParam {
    Enable,
    Disable,
    Revoke,
}

/// A bulk action: exactly one of `ids` and `filter`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BulkBody {
    action: BulkActionParam,
    ids: Option<Vec<TokenId>>,
    filter: Option<FilterParams>,
}

fn parse_expiry(s: &str) -> ApiResult<ExpiryPreset> {
    Ok(s.parse::<ExpiryPreset>()?)
}

fn parse_grace(s: &str) -> ApiResult<std::time::Duration> {
    parse_duration(s).ok_or_else(|| {
        ApiError::unprocessable(
            "invalid grace: expected <N>d, <N>h, <N>m or <N>s (at most 30 days)",
        )
    })
}

// ----- authorisation -------------------------------------------------------------------------

const READ: &str = "tokens:read";
const WRITE: &str = "tokens:write";
const SELF: &str = "tokens:self";

/// The scope a route needs: `SCOPE`, or `ALTERNATIVE` when set.
trait Need: Send + Sync + 'static {
    const SCOPE: &'static str;
    const ALTERNATIVE: Option<&'static str> = None;
}

struct Read;
impl Need for Read {
    const SCOPE: &'static str = READ;
}

struct Write;
impl Need for Write {
    const SCOPE: &'static str = WRITE;
}

struct SelfRead;
impl Need for SelfRead {
    const SCOPE: &'static str = SELF;
    const ALTERNATIVE: Option<&'static str> = Some(READ);
}

struct Admin;
impl Need for Admin {
    const SCOPE: &'static str = "*";
}

struct SelfWrite;
impl Need for SelfWrite {
    const SCOPE: &'static str = SELF;
    const ALTERNATIVE: Option<&'static str> = Some(WRITE);
}

/// The calling token, holding the scope `N` requires. Checked before the body is read, so
/// a caller without the scope learns nothing about input validation.
struct Caller<N>(VerifiedToken, std::marker::PhantomData<fn() -> N>);

impl<N: Need> FromRequestParts<Keygate> for Caller<N> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, kg: &Keygate) -> Result<Self, ApiError> {
        let caller = VerifiedToken::from_request_parts(parts, kg).await?;
        let scope = Scope::new(N::SCOPE)?;
        if let Some(alt) = N::ALTERNATIVE {
            if caller.grants(&Scope::new(alt)?) {
                return Ok(Caller(caller, std::marker::PhantomData));
            }
        }
        kg.authorize(&caller, &scope)?;
        Ok(Caller(caller, std::marker::PhantomData))
    }
}

/// Refuses a self-service operation on a token of another owner (as not found).
async fn own_token(kg: &Keygate, caller: &VerifiedToken, id: &TokenId) -> ApiResult<TokenRecord> {
    let record = kg.manager().acting_as(caller).get(id).await?;
    if record.owner != caller.owner() {
        return Err(Error::NotFound(id.clone()).into());
    }
    Ok(record)
}

// ----- handlers ------------------------------------------------------------------------------

/// The generated document, shared by the router's `openapi.json` route.
#[derive(Clone)]
struct OpenApiDocument(Arc<utoipa::openapi::OpenApi>);

/// This OpenAPI document. Needs no credentials.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    security(()),
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API", body = Object),
    )
)]
async fn openapi(
    ::axum::Extension(doc): ::axum::Extension<OpenApiDocument>,
    nested: Result<::axum::extract::NestedPath, ::axum::extract::rejection::NestedPathRejection>,
) -> Response {
    match nested {
        // Nested with `Router::nest`: the paths are under the mount point too.
        Ok(at) if !at.as_str().trim_end_matches('/').is_empty() => {
            let mut doc = (*doc.0).clone();
            let at = at.as_str().trim_end_matches('/');
            let paths = std::mem::take(&mut doc.paths.paths);
            for (path, item) in paths {
                doc.paths.paths.insert(join(at, &path), item);
            }
            ::axum::Json(doc).into_response()
        }
        _ => ::axum::Json(&*doc.0).into_response(),
    }
}

async fn list_tokens(
    kg: &Keygate,
    caller: &VerifiedToken,
    filter: TokenFilter,
    page: PageRequest,
) -> ApiResult {
    let page = kg.manager().acting_as(caller).list(&filter, &page).await?;
    let view = ListView {
        items: page
            .items
            .iter()
            .map(|r| TokenView::new(r, kg.manager().now()))
            .collect(),
        next: page.next.map(|c| c.to_string()),
    };
    Ok(::axum::Json(view).into_response())
}

/// Lists tokens (scope `tokens:read`).
///
/// Filters combine; pages follow `next`.
#[utoipa::path(
    get,
    path = "/",
    tag = "tokens",
    params(ListParams),
    responses(
        (status = 200, description = "A page of tokens, newest first", body = ListView),
        ListErrors,
    )
)]
async fn list(
    State(kg): State<Keygate>,
    Caller(caller, _): Caller<Read>,
    QueryParams(params): QueryParams<ListParams>,
) -> ApiResult {
    let (filter, page) = params.split()?;
    list_tokens(&kg, &caller, filter, page).await
}

/// Lists the caller's own tokens (scope `tokens:self` or `tokens:read`).
#[utoipa::path(
    get,
    path = "/self",
    tag = "self-service",
    params(ListParams),
    responses(
        (status = 200, description = "A page of tokens, newest first", body = ListView),
        ListErrors,
    )
)]
async fn self_list(
    State(kg): State<Keygate>,
    Caller(caller, _): Caller<SelfRead>,
    QueryParams(params): QueryParams<ListParams>,
) -> ApiResult {
    if params.owner.is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "unknown parameter `owner`: self-service lists only the caller's own tokens",
        ));
    }
    let (filter, page) = params.split()?;
    let filter = filter.owner(caller.owner());
    list_tokens(&kg, &caller, filter, page).await
}

async fn issue(kg: &Keygate, caller: &VerifiedToken, body: CreateBody) -> ApiResult {
    let owner = body.owner.unwrap_or_else(|| caller.owner().to_owned());
    let mut req = IssueRequest::new(body.name, owner)
        .description(body.description)
        .scopes(body.scopes)
        .projects(body.projects.unwrap_or_else(|| caller.projects().clone()));
    if let Some(id) = body.id {
        req = req.id(id);
    }
    if let Some(e) = body.expires {
        req = req.expiry(parse_expiry(&e)?);
    }
    for (k, v) in body.metadata {
        req = req.metadata(k, v);
    }
    req = req.allowed_ips(crate::ip::parse_list(&body.allowed_ips)?);
    if !body.enabled {
        req = req.disabled();
    }
    let issued = kg.manager().acting_as(caller).issue(req).await?;
    Ok(issued_json(
        StatusCode::CREATED,
        &issued,
        kg.manager().now(),
    ))
}

/// Creates a token (scope `tokens:write`).
#[utoipa::path(
    post,
    path = "/",
    tag = "tokens",
    request_body = CreateBody,
    responses(IssuedCreated, BodyErrors)
)]
async fn create(
    State(kg): State<Keygate>,
    Caller(caller, _): Caller<Write>,
    JsonBody(body): JsonBody<CreateBody>,
) -> ApiResult {
    issue(&kg, &caller, body).await
}

/// Creates a token for the caller's owner (scope `tokens:self` or `tokens:write`).
#[utoipa::path(
    post,
    path = "/self",
    tag = "self-service",
    request_body = CreateBody,
    responses(IssuedCreated, BodyErrors)
)]
async fn self_create(
    State(kg): State<Keygate>,
    Caller(caller, _): Caller<SelfWrite>,
    JsonBody(body): JsonBody<CreateBody>,
) -> ApiResult {
    if body.owner.as_deref().is_some_and(|o| o != caller.owner()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "escalation_refused",
            "self-service tokens belong to the caller's owner",
        ));
    }
    issue(&kg, &caller, body).await
}

/// Reads a token (scope `tokens:read`).
#[utoipa::path(
    get,
    path = "/{id}",
    tag = "tokens",
    params(IdParam),
    responses(TokenOk, ReadErrors,)
)]
async fn get_one(
    State(kg): State<Keygate>,
    Caller(caller, _): Caller<Read>,
    IdParam(id): IdParam,
) -> ApiResult {
    let record = kg.manager().acting_as(&caller).get(&id).await?;
    Ok(token_json(StatusCode::OK, &record, kg.manager().now()))
}

/// Changes a token (scope `tokens:write`).
#[utoipa::path(
    patch,
    path = "/{id}",
    tag = "tokens",
    params(IdParam, IfMatch),
    request_body = Option<UpdateBody>,
    responses(TokenOk, VersionedChangeErrors)
)]
async fn update(
    State(kg): State<Keygate>,
    Caller(caller, _): Caller<Write>,
    IdParam(id): IdParam,
    IfMatch(expected): IfMatch,
    JsonBody(body): JsonBody<UpdateBody>,
) -> ApiResult {
    let mut change = TokenUpdate::new();
    if let Some(v) = expected {
        change = change.expected_version(v);
    }
    if let Some(v) = body.name {
        change = change.name(v);
    }
    if let Some(v) = body.description {
        change = change.description(v);
    }
    if let Some(v) = body.scopes {
        change = change.scopes(v);
    }
    if let Some(v) = body.projects {
        change = change.projects(v);
    }
    if let Some(v) = body.metadata {
        change = change.metadata(v);
    }
    if let Some(v) = body.allowed_ips {
        change = change.allowed_ips(crate::ip::parse_list(&v)?);
    }
    if let Some(v) = body.expires {
        change = change.expiry(parse_expiry(&v)?);
    }
    let record = kg.manager().acting_as(&caller).update(&id, change).await?;
    Ok(token_json(StatusCode::OK, &record, kg.manager().now()))
}

/// Deletes a token (scope `tokens:write`).
#[utoipa::path(
    delete,
    path = "/{id}",
    tag = "tokens",
    params(IdParam),
    responses(
        (status = 204, description = "Deleted"),
        StatusErrors,
    )
)]
async fn delete(
    State(kg): State<Keygate>,
    Caller(caller, _): Caller<Write>,
    IdParam(id): IdParam,
) -> ApiResult {
    kg.manager().acting_as(&caller).delete(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Rotates `id` as `caller`, from the body and `If-Match` of a rotate request.
async fn rotate_token(
    kg: Keygate,
    caller: VerifiedToken,
    id: TokenId,
    expected: Option<u64>,
    body: RotateBody,
) -> ApiResult {
    let mut req = RotateRequest::new();
    if let Some(v) = expected {
        req = req.expected_version(v);
    }
    if body.end_grace {
        req = req.end_grace();
    }
    if let Some(g) = body.grace {
        req = req.grace(parse_grace(&g)?);
    }
    if let Some(e) = body.expires {
        req = req.expiry(parse_expiry(&e)?);
    }
    let issued = kg.manager().acting_as(&caller).rotate(&id, req).await?;
    Ok(issued_json(StatusCode::OK, &issued, kg.manager().now()))
}

/// Issues a new secret for a token (scope `tokens:write`).
#[utoipa::path(
    post,
    path = "/{id}/rotate",
    tag = "tokens",
    params(IdParam, IfMatch),
    request_body = Option<RotateBody>,
    responses(RotatedOk, VersionedChangeErrors)
)]
async fn rotate(
    State(kg): State<Keygate>,
    Caller(caller, _): Caller<Write>,
    IdParam(id): IdParam,
    IfMatch(expected): IfMatch,
    JsonBody(body): JsonBody<RotateBody>,
) -> ApiResult {
    rotate_token(kg, caller, id, expected, body).await
}

/// Rotates one of the caller's own tokens (scope `tokens:self` or `tokens:write`).
#[utoipa::path(
    post,
    path = "/self/{id}/rotate",
    tag = "self-service",
    params(IdParam, IfMatch),
    request_body = Option<RotateBody>,
    responses(RotatedOk, VersionedChangeErrors)
)]
async fn self_rotate(
    State(kg): State<Keygate>,
    Caller(caller, _): Caller<SelfWrite>,
    IdParam(id): IdParam,
    IfMatch(expected): IfMatch,
    JsonBody(body): JsonBody<RotateBody>,
) -> ApiResult {
    own_token(&kg, &caller, &id).await?;
    rotate_token(kg, caller, id, expected, body).await
}

async fn set_status(
    kg: Keygate,
    caller: VerifiedToken,
    id: TokenId,
    status: TokenStatus,
) -> ApiResult {
    let record = kg
        .manager()
        .acting_as(&caller)
        .set_status(&id, status)
        .await?;
    Ok(token_json(StatusCode::OK, &record, kg.manager().now()))
}

/// Declares an operation that sets a token's status, reversibly (scope `tokens:write`).
macro_rules! status_operation {
    ($(#[doc = $doc:literal])* $name:ident, $path:literal, $status:expr) => {
        $(#[doc = $doc])*
        #[utoipa::path(
            post,
            path = $path,
            tag = "tokens",
            params(IdParam),
            responses(TokenOk, StatusErrors)
        )]
        async fn $name(
            State(kg): State<Keygate>,
            Caller(caller, _): Caller<Write>,
            IdParam(id): IdParam,
        ) -> ApiResult {
            set_status(kg, caller, id, $status).await
        }
    };
}

status_operation!(
    /// Enables a disabled token (scope `tokens:write`).
    enable, "/{id}/enable", TokenStatus::Active
);
status_operation!(
    /// Disables a token, reversibly (scope `tokens:write`).
    disable, "/{id}/disable", TokenStatus::Disabled
);

/// Revokes a token for good (scope `tokens:write`).
#[utoipa::path(
    post,
    path = "/{id}/revoke",
    tag = "tokens",
    params(IdParam),
    request_body = Option<RevokeBody>,
    responses(RevokedOk, ChangeErrors)
)]
async fn revoke(
    State(kg): State<Keygate>,
    Caller(caller, _): Caller<Write>,
    IdParam(id): IdParam,
    JsonBody(body): JsonBody<RevokeBody>,
) -> ApiResult {
    if !body.children {
        return set_status(kg, caller, id, TokenStatus::Revoked).await;
    }
    let report = kg
        .manager()
        .acting_as(&caller)
        .revoke_with_children(&id)
        .await?;
    Ok(bulk_json(&report))
}

/// Revokes one of the caller's own tokens (scope `tokens:self` or `tokens:write`).
#[utoipa::path(
    post,
    path = "/self/{id}/revoke",
    tag = "self-service",
    params(IdParam),
    responses(TokenOk, StatusErrors)
)]
async fn self_revoke(
    State(kg): State<Keygate>,
    Caller(caller, _): Caller<SelfWrite>,
    IdParam(id): IdParam,
) -> ApiResult {
    own_token(&kg, &caller, &id).await?;
    set_status(kg, caller, id, TokenStatus::Revoked).await
}

/// Enables, disables or revokes many tokens, by ids or by filter (scope `tokens:write`).
#[utoipa::path(
    post,
    path = "/bulk",
    tag = "tokens",
    request_body = BulkBody,
    responses(
        (status = 200, description = "What changed, what was already so, and what failed", body = BulkView),
        BodyErrors,
    )
)]
async fn bulk(
    State(kg): State<Keygate>,
    Caller(caller, _): Caller<Write>,
    JsonBody(body): JsonBody<BulkBody>,
) -> ApiResult {
    let selection = match (body.ids, body.filter) {
        (Some(ids), None) => Selection::Ids(ids),
        (None, Some(filter)) => Selection::Filter(filter.into_filter()),
        _ => {
            return Err(ApiError::unprocessable(
                "give exactly one of `ids` and `filter`",
            ));
        }
    };
    let action = match body.action {
        BulkActionParam::Enable => BulkAction::Enable,
        BulkActionParam::Disable => BulkAction::Disable,
        BulkActionParam::Revoke => BulkAction::Revoke,
    };
    let report = kg
        .manager()
        .acting_as(&caller)
        .bulk(action, selection)
        .await?;
    Ok(bulk_json(&report))
}

/// Deletes the records of tokens revoked or expired more than `older_than` ago, or with
/// `dry_run` counts them (scope `*`).
#[utoipa::path(
    post,
    path = "/prune",
    tag = "tokens",
    request_body = PruneBody,
    responses(
        (status = 200, description = "How many records were (or, dry run, would be) deleted", body = PruneView),
        BodyErrors,
    )
)]
async fn prune(
    State(kg): State<Keygate>,
    Caller(caller, _): Caller<Admin>,
    JsonBody(body): JsonBody<PruneBody>,
) -> ApiResult {
    let older_than = parse_duration(&body.older_than).ok_or_else(|| {
        ApiError::unprocessable("invalid older_than: expected <N>d, <N>h, <N>m or <N>s")
    })?;
    let acting = kg.manager().acting_as(&caller);
    let view = if body.dry_run {
        let cutoff = crate::expiry::signed(older_than)
            .and_then(|d| kg.manager().now().checked_sub_signed(d))
            .ok_or_else(|| ApiError::unprocessable("older_than is out of range"))?;
        PruneView {
            dry_run: true,
            cutoff,
            count: acting.prunable(older_than).await?,
            batches: 0,
        }
    } else {
        let report = acting.prune(older_than, DEFAULT_PRUNE_BATCH).await?;
        PruneView {
            dry_run: false,
            cutoff: report.cutoff,
            count: report.deleted,
            batches: report.batches,
        }
    };
    Ok((StatusCode::OK, ::axum::Json(view)).into_response())
}

fn bulk_json(report: &BulkReport) -> Response {
    let view = BulkView {
        changed: &report.changed,
        unchanged: &report.unchanged,
        failed: report
            .failed
            .iter()
            .map(|(id, e)| BulkFailure {
                id,
                error: classify(e).1,
                message: e.to_string(),
            })
            .collect(),
    };
    ::axum::Json(view).into_response()
}

/// The reply of `POST /{id}/revoke`: the token, or with `children` the bulk report.
struct RevokeReply;

impl utoipa::PartialSchema for RevokeReply {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(Ref::from_schema_name(TokenView::name()))
            .item(Ref::from_schema_name(BulkView::name()))
            .into()
    }
}

impl ToSchema for RevokeReply {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        for (name, schema) in [
            (TokenView::name(), TokenView::schema()),
            (BulkView::name(), BulkView::schema()),
        ] {
            schemas.push((name.into(), schema));
        }
        <TokenView as ToSchema>::schemas(schemas);
        <BulkView as ToSchema>::schemas(schemas);
    }
}

// ----- the OpenAPI document ------------------------------------------------------------------

/// The operations and schemas, with paths relative to the prefix; [`document`] completes it.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "keygate admin API",
        description = "Issue, list, change, rotate, disable and revoke API tokens. See \
                       `keygate::axum::admin`."
    ),
    paths(
        openapi, list, create, bulk, prune, self_list, self_create, self_rotate, self_revoke, get_one,
        update, delete, rotate, enable, disable, revoke
    ),
    components(schemas(ErrorReply, TokenStatus, IssuedView, RevokeReply)),
    tags(
        (name = "tokens", description = "Tokens within the caller's reach"),
        (name = "self-service", description = "The caller's owner's own tokens"),
        (name = "meta", description = "This document"),
    )
)]
struct AdminDoc;

/// The security scheme of `Authorization: Bearer`, always accepted.
const BEARER: &str = "bearer";
/// The security scheme of the API-key header, when one is configured.
const API_KEY: &str = "api_key";

/// The document of the admin API as mounted at `prefix` with `keygate`'s configuration:
/// every path under the prefix, the security schemes the `AuthConfig` accepts, and the
/// manager's size limits.
pub(super) fn document(keygate: &Keygate, prefix: &Prefix) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::security::{
        ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
    };

    let mut doc = AdminDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.info.license = None;
    doc.info.contact = None;

    // Paths under the prefix.
    let relative = std::mem::take(&mut doc.paths.paths);
    for (path, item) in relative {
        doc.paths.paths.insert(prefix.path(&path), item);
    }

    // The credentials of the configuration in use: Bearer always, the API-key header if set.
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("`Authorization: Bearer <token>`"))
                .build(),
        ),
    );
    let mut security = vec![SecurityRequirement::new(BEARER, Vec::<String>::new())];
    if let Some(name) = keygate.config().api_key_header_name() {
        components.add_security_scheme(
            API_KEY,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                name.as_str(),
                "The bare token in this header",
            ))),
        );
        security.push(SecurityRequirement::new(API_KEY, Vec::<String>::new()));
    }
    doc.security = Some(security);
    // The document itself needs none.
    for item in doc.paths.paths.values_mut() {
        if let Some(op) = item.get.as_mut() {
            if op.security.as_ref().is_some_and(|s| s.len() == 1)
                && op.operation_id.as_deref() == Some("openapi")
            {
                op.security = Some(Vec::new());
            }
        }
    }

    let unplaced = limits::apply(&mut doc, keygate.manager().limits());
    debug_assert!(unplaced.is_empty(), "rules without a place: {unplaced:?}");
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn keygate() -> Keygate {
        let manager = crate::TokenManager::builder(crate::MemoryStore::new())
            .server_key(crate::ServerKey::generate())
            .build()
            .unwrap();
        Keygate::new(manager)
    }

    /// Every registered route is in the generated document, at its full path, and every
    /// documented operation is registered; so for every prefix.
    #[test]
    fn openapi_document_matches_routes() {
        for prefix in ["", "/api/tokens", "/v1"] {
            let prefix = Prefix::parse(prefix).unwrap();
            let doc = serde_json::to_value(document(&keygate(), &prefix)).unwrap();
            assert_eq!(
                doc["openapi"].as_str().unwrap().split('.').next(),
                Some("3")
            );
            let mut documented = BTreeSet::new();
            for (path, item) in doc["paths"].as_object().unwrap() {
                for method in item.as_object().unwrap().keys() {
                    if ["get", "post", "put", "patch", "delete", "head", "options"]
                        .contains(&method.as_str())
                    {
                        documented.insert((method.clone(), path.clone()));
                    }
                }
            }
            let table = routes(prefix.clone()).table;
            let registered: BTreeSet<(String, String)> = table
                .iter()
                .map(|(m, p)| (m.name().to_owned(), prefix.path(p)))
                .collect();
            assert_eq!(registered.len(), table.len(), "duplicate route");
            assert_eq!(registered.len(), 16);
            let missing: Vec<_> = registered.difference(&documented).collect();
            let extra: Vec<_> = documented.difference(&registered).collect();
            assert!(
                missing.is_empty(),
                "routes missing from the document: {missing:?}"
            );
            assert!(
                extra.is_empty(),
                "documented operations without a route: {extra:?}"
            );
        }
    }

    #[test]
    fn prefixes_are_checked() {
        for ok in ["", "/", "/api/tokens", "/v1", "/a-b/c.d/e_f/~g"] {
            assert!(Prefix::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(Prefix::parse("/").unwrap().path("/"), "/");
        assert_eq!(Prefix::parse("/api").unwrap().path("/"), "/api");
        assert_eq!(Prefix::parse("/api").unwrap().path("/{id}"), "/api/{id}");
        for bad in [
            "api", "/api/", "//api", "/api//x", "/{id}", "/*rest", "/a b", "/./a", "/a/..", "/a?b",
            "/a#b", "/%20",
        ] {
            assert!(
                matches!(Prefix::parse(bad), Err(Error::InvalidConfig(_))),
                "{bad}"
            );
        }
    }

    /// The security schemes follow the configuration in use.
    #[test]
    fn security_schemes_follow_the_config() {
        let prefix = Prefix::parse("/t").unwrap();
        let doc = serde_json::to_value(document(&keygate(), &prefix)).unwrap();
        let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
        assert_eq!(schemes.keys().collect::<Vec<_>>(), ["bearer"]);
        assert_eq!(doc["security"], serde_json::json!([{"bearer": []}]));
        assert_eq!(
            doc["paths"]["/t/openapi.json"]["get"]["security"],
            serde_json::json!([])
        );

        let config = crate::http::AuthConfig::new()
            .api_key_header(::axum::http::HeaderName::from_static("x-api-key"));
        let kg = Keygate::with_config(keygate().manager().clone(), config);
        let doc = serde_json::to_value(document(&kg, &prefix)).unwrap();
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["api_key"]["type"], "apiKey");
        assert_eq!(schemes["api_key"]["in"], "header");
        assert_eq!(schemes["api_key"]["name"], "x-api-key");
        assert_eq!(
            doc["security"],
            serde_json::json!([{"bearer": []}, {"api_key": []}])
        );
    }
}
