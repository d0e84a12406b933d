//! The admin API: a JSON router over the [`TokenManager`](crate::TokenManager), made by
//! [`Keygate::admin_router`].
//!
//! Every operation runs through [`TokenManager::acting_as`](crate::TokenManager::acting_as)
//! for the calling token, so the delegation rules of
//! [`keygate::manager::delegation`](crate::manager::delegation) hold here as everywhere: a
//! caller never grants scopes, projects, another owner (without `tokens:any-owner`) or a
//! lifetime beyond its own, and sees only the tokens it could have created (others are "not
//! found"). On top of that each route needs a scope:
//!
//! | route (relative to the mount point) | scope |
//! |---|---|
//! | `GET /`, `GET /{id}` | `tokens:read` |
//! | `POST /`, `PATCH /{id}`, `DELETE /{id}`, `POST /{id}/rotate`, `/{id}/enable`, `/{id}/disable`, `/{id}/revoke`, `POST /bulk` | `tokens:write` |
//! | `GET /self`, `POST /self`, `POST /self/{id}/rotate`, `POST /self/{id}/revoke` | `tokens:self` (or `tokens:read` / `tokens:write`); only tokens whose owner is the caller's owner |
//! | `GET /openapi.json` | none |
//!
//! `*` grants everything, `tokens:*` all of the above. Every token id is addressable: `/self`
//! and `/bulk` are routes, so the manager refuses them as ids
//! ([`RESERVED_IDS`](crate::manager::RESERVED_IDS)), and `openapi.json` is not a valid id.
//!
//! Bodies are JSON with unknown fields refused, at most
//! [`Limits::max_request_body_bytes`](crate::record::Limits::max_request_body_bytes) (64 KiB
//! by default). Expiries are strings: `7d`, `30d`, `60d`, `90d`, `<N>d`, `<N>h`, `never` or
//! an RFC 3339 instant; without one a token gets 30 days, or the caller's own expiry if
//! sooner. Grace periods are `<N>d`, `<N>h`, `<N>m` or `<N>s`; while one runs, another
//! rotation needs `"end_grace": true`. `POST /{id}/revoke` with `{"children": true}` also
//! revokes every token the token created, and theirs in turn, answering with a bulk report.
//!
//! Token responses carry the record version as an `ETag` (`"3"`). `PATCH /{id}` and the
//! rotate routes honour `If-Match` with such a tag: a record at another version answers 412
//! and changes nothing, so of many concurrent rotations from one read exactly one wins.
//! Without `If-Match` a change applies to whatever version is stored (a rotation that
//! loses a race answers 409).
//!
//! Errors are `{"error": code, "message": text}` with 400 (malformed JSON, query, id or
//! `If-Match`), 403 (missing scope, escalation), 404, 409 (conflict, revoked token, grace
//! running, last active `*` token), 412 (stale `If-Match`), 413 (body over the limit), 422
//! (invalid values, expiry beyond policy, over a size limit, which the message names) or
//! 503 (store unavailable). Every response carries `Cache-Control: no-store`; creation and
//! rotation return the plaintext token once, in `token`.

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

use super::Keygate;
use crate::error::Error;
use crate::expiry::{ExpiryPreset, parse_duration};
use crate::http::AuthRejection;
use crate::manager::{
    BulkAction, BulkReport, IssueRequest, IssuedToken, RotateRequest, Selection, TokenUpdate,
    VerifiedToken,
};
use crate::record::{TokenRecord, TokenStatus};
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

/// A router that records what it registers, so the OpenAPI document can be checked against
/// the real routes.
struct Routes {
    router: Router<Keygate>,
    table: Vec<(Method, &'static str)>,
}

impl Routes {
    fn add<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, Keygate>,
        T: 'static,
    {
        self.router = self.router.route(path, on(method.filter(), handler));
        self.table.push((method, path));
        self
    }
}

fn routes() -> Routes {
    use Method::*;
    Routes {
        router: Router::new(),
        table: Vec::new(),
    }
    .add(Get, "/openapi.json", openapi)
    .add(Get, "/", list)
    .add(Post, "/", create)
    .add(Post, "/bulk", bulk)
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

pub(super) fn router<S>(keygate: Keygate) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let body_limit = keygate.manager().limits().max_request_body_bytes();
    routes()
        .router
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

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

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

/// A JSON body (an empty body is `{}`), with 400 for malformed JSON and 422 for invalid
/// values or unknown fields.
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
        let input: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
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

/// The version named by `If-Match` (an ETag of a previous response), if any. `*` or no
/// header: any version. Anything else is a 400.
struct IfMatch(Option<u64>);

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
        let value = value.to_str().map_err(|_| bad())?.trim();
        if value == "*" {
            return Ok(IfMatch(None));
        }
        let version = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(bad)?;
        Ok(IfMatch(Some(version)))
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

/// The JSON view of a token. Never a digest.
#[derive(Serialize)]
struct TokenView<'a> {
    id: &'a TokenId,
    name: &'a str,
    description: &'a str,
    owner: &'a str,
    created_by: &'a str,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    status: TokenStatus,
    scopes: &'a ScopeSet,
    projects: &'a Projects,
    metadata: &'a BTreeMap<String, String>,
    last_used_at: Option<DateTime<Utc>>,
    version: u64,
}

impl<'a> From<&'a TokenRecord> for TokenView<'a> {
    fn from(r: &'a TokenRecord) -> Self {
        TokenView {
            id: &r.id,
            name: &r.name,
            description: &r.description,
            owner: &r.owner,
            created_by: &r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
            expires_at: r.expiry.at(),
            status: r.status,
            scopes: &r.scopes,
            projects: &r.projects,
            metadata: &r.metadata,
            last_used_at: r.last_used_at,
            version: r.version,
        }
    }
}

/// A token with its plaintext, shown once.
#[derive(Serialize)]
struct IssuedView<'a> {
    token: &'a str,
    #[serde(flatten)]
    record: TokenView<'a>,
}

/// The entity tag of a record: its version, as a strong tag (`"3"`).
fn etag(r: &TokenRecord) -> [(header::HeaderName, String); 1] {
    [(header::ETAG, format!("\"{}\"", r.version))]
}

fn token_json(status: StatusCode, r: &TokenRecord) -> Response {
    (status, etag(r), ::axum::Json(TokenView::from(r))).into_response()
}

fn issued_json(status: StatusCode, issued: &IssuedToken) -> Response {
    (
        status,
        etag(issued.record()),
        ::axum::Json(IssuedView {
            token: issued.expose_secret(),
            record: TokenView::from(issued.record()),
        }),
    )
        .into_response()
}

#[derive(Serialize)]
struct ListView<'a> {
    items: Vec<TokenView<'a>>,
    next: Option<String>,
}

#[derive(Serialize)]
struct BulkFailure<'a> {
    id: &'a TokenId,
    error: &'static str,
    message: String,
}

#[derive(Serialize)]
struct BulkView<'a> {
    changed: &'a [TokenId],
    unchanged: &'a [TokenId],
    failed: Vec<BulkFailure<'a>>,
}

// ----- requests ------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
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
            within: None,
        }
    }
}

#[derive(Deserialize, Default)]
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
    limit: Option<usize>,
    after: Option<String>,
}

impl ListParams {
    fn split(self) -> ApiResult<(TokenFilter, PageRequest)> {
        let page = PageRequest {
            limit: self.limit.unwrap_or(crate::store::DEFAULT_PAGE_LIMIT),
            after: match &self.after {
                Some(c) => Some(c.parse::<Cursor>()?),
                None => None,
            },
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
        Ok((filter, page))
    }
}

#[derive(Deserialize)]
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
    /// Default: 30 days.
    expires: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    name: Option<String>,
    description: Option<String>,
    scopes: Option<ScopeSet>,
    projects: Option<Projects>,
    metadata: Option<BTreeMap<String, String>>,
    expires: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    grace: Option<String>,
    expires: Option<String>,
    /// End a running grace period of the previous secret.
    #[serde(default)]
    end_grace: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    /// Also revoke every token this one created, and theirs in turn.
    #[serde(default)]
    children: bool,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum BulkActionParam {
    Enable,
    Disable,
    Revoke,
}

#[derive(Deserialize)]
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

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        super::OPENAPI_JSON,
    )
        .into_response()
}

async fn list_tokens(
    kg: &Keygate,
    caller: &VerifiedToken,
    filter: TokenFilter,
    page: PageRequest,
) -> ApiResult {
    let page = kg.manager().acting_as(caller).list(&filter, &page).await?;
    let view = ListView {
        items: page.items.iter().map(TokenView::from).collect(),
        next: page.next.map(|c| c.to_string()),
    };
    Ok(::axum::Json(view).into_response())
}

async fn list(
    State(kg): State<Keygate>,
    Caller(caller, _): Caller<Read>,
    QueryParams(params): QueryParams<ListParams>,
) -> ApiResult {
    let (filter, page) = params.split()?;
    list_tokens(&kg, &caller, filter, page).await
}

async fn self_list(
    State(kg): State<Keygate>,
    Caller(caller, _): Caller<SelfRead>,
    QueryParams(params): QueryParams<ListParams>,
) -> ApiResult {
    if params.owner.as_deref().is_some_and(|o| o != caller.owner()) {
        return Err(ApiError::unprocessable(
            "owner: self-service lists only the caller's own tokens",
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
    let issued = kg.manager().acting_as(caller).issue(req).await?;
    Ok(issued_json(StatusCode::CREATED, &issued))
}

async fn create(
    State(kg): State<Keygate>,
    Caller(caller, _): Caller<Write>,
    JsonBody(body): JsonBody<CreateBody>,
) -> ApiResult {
    issue(&kg, &caller, body).await
}

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

async fn get_one(
    State(kg): State<Keygate>,
    Caller(caller, _): Caller<Read>,
    IdParam(id): IdParam,
) -> ApiResult {
    let record = kg.manager().acting_as(&caller).get(&id).await?;
    Ok(token_json(StatusCode::OK, &record))
}

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
    if let Some(v) = body.expires {
        change = change.expiry(parse_expiry(&v)?);
    }
    let record = kg.manager().acting_as(&caller).update(&id, change).await?;
    Ok(token_json(StatusCode::OK, &record))
}

async fn delete(
    State(kg): State<Keygate>,
    Caller(caller, _): Caller<Write>,
    IdParam(id): IdParam,
) -> ApiResult {
    kg.manager().acting_as(&caller).delete(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn rotate_request(body: RotateBody, expected: Option<u64>) -> ApiResult<RotateRequest> {
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
    Ok(req)
}

async fn rotate(
    State(kg): State<Keygate>,
    Caller(caller, _): Caller<Write>,
    IdParam(id): IdParam,
    IfMatch(expected): IfMatch,
    JsonBody(body): JsonBody<RotateBody>,
) -> ApiResult {
    let req = rotate_request(body, expected)?;
    let issued = kg.manager().acting_as(&caller).rotate(&id, req).await?;
    Ok(issued_json(StatusCode::OK, &issued))
}

async fn self_rotate(
    State(kg): State<Keygate>,
    Caller(caller, _): Caller<SelfWrite>,
    IdParam(id): IdParam,
    IfMatch(expected): IfMatch,
    JsonBody(body): JsonBody<RotateBody>,
) -> ApiResult {
    let req = rotate_request(body, expected)?;
    own_token(&kg, &caller, &id).await?;
    let issued = kg.manager().acting_as(&caller).rotate(&id, req).await?;
    Ok(issued_json(StatusCode::OK, &issued))
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
    Ok(token_json(StatusCode::OK, &record))
}

async fn enable(
    State(kg): State<Keygate>,
    Caller(caller, _): Caller<Write>,
    IdParam(id): IdParam,
) -> ApiResult {
    set_status(kg, caller, id, TokenStatus::Active).await
}

async fn disable(
    State(kg): State<Keygate>,
    Caller(caller, _): Caller<Write>,
    IdParam(id): IdParam,
) -> ApiResult {
    set_status(kg, caller, id, TokenStatus::Disabled).await
}

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

async fn self_revoke(
    State(kg): State<Keygate>,
    Caller(caller, _): Caller<SelfWrite>,
    IdParam(id): IdParam,
) -> ApiResult {
    own_token(&kg, &caller, &id).await?;
    let record = kg
        .manager()
        .acting_as(&caller)
        .set_status(&id, TokenStatus::Revoked)
        .await?;
    Ok(token_json(StatusCode::OK, &record))
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Every registered route is in the OpenAPI document and every documented operation is
    /// registered.
    #[test]
    fn openapi_document_matches_routes() {
        let doc: serde_json::Value = serde_json::from_str(super::super::OPENAPI_JSON).unwrap();
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
        let registered: BTreeSet<(String, String)> = routes()
            .table
            .iter()
            .map(|(m, p)| (m.name().to_owned(), (*p).to_owned()))
            .collect();
        assert_eq!(registered.len(), routes().table.len(), "duplicate route");
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
