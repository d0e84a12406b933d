//! Shared HTTP credential parsing and RFC 6750 responses (feature `tower`).
//!
//! Both the tower layer ([`crate::tower::RequireToken`]) and the axum extractors use this
//! module, so they read credentials and answer failures the same way:
//!
//! - Credentials come from `Authorization: Bearer <token>` (the scheme is matched without
//!   regard to case) and, when configured with [`AuthConfig::api_key_header`], from a named
//!   header carrying the bare token (`api-token`, `X-API-Key`). Tokens in the query string
//!   are never read.
//! - A header longer than [`AuthConfig::max_header_len`] is refused before any other work.
//! - Two credentials at once (two `Authorization` headers, two API-key headers, or both
//!   kinds) are an `invalid_request`, never a choice made on the client's behalf.
//!
//! - The client address, for tokens restricted to IP ranges
//!   ([`TokenRecord::allowed_ips`](crate::TokenRecord::allowed_ips)), is the connection's
//!   peer: axum's `ConnectInfo<SocketAddr>` in the request extensions (serve with
//!   `into_make_service_with_connect_info::<SocketAddr>()`), or a plain `SocketAddr` a tower
//!   stack inserted. Forwarding headers are never read unless
//!   [`AuthConfig::trusted_proxies`] names the proxies and the header they write; then the
//!   client is the rightmost hop that is not a trusted proxy. No known address: a
//!   restricted token is refused (fail closed).
//!
//! [`AuthRejection`] renders RFC 6750 responses:
//!
//! | reason | status | `WWW-Authenticate` |
//! |--------|--------|--------------------|
//! | no credentials | 401 | `Bearer realm="..."` |
//! | malformed, unknown, wrong secret, expired, disabled, revoked, rotated out | 401 | `Bearer realm="...", error="invalid_token"` (byte-identical for all) |
//! | missing scope or project | 403 | `Bearer realm="...", error="insufficient_scope", scope="..."` |
//! | valid token, client address outside its allowed IP ranges (or unknown) | 403 `ip_not_allowed` | none: another token would not help the client here |
//! | malformed header, two credentials, over-long header | 400 | `Bearer realm="...", error="invalid_request"` |
//! | store failure | 503 | none: nothing was decided |
//!
//! Every body is a small JSON object with a short error code (`{"error":"invalid_token"}`);
//! none ever contains the presented token.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use crate::error::{Error, StoreError, VerifyError};
use crate::manager::{TokenManager, VerifiedToken, VerifyContext};

mod client_ip;

use crate::scope::{ProjectId, ScopeSet};
use client_ip::TrustedProxies;
pub use client_ip::{ForwardedHeader, MAX_FORWARDED_HOPS};

/// The realm used when none is configured.
pub const DEFAULT_REALM: &str = "api";
/// The longest credential header accepted by default, in bytes.
pub const DEFAULT_MAX_HEADER_LEN: usize = 1024;
/// The default name of the response header carrying a verified token's expiry
/// (GitHub sends the same information as `GitHub-Authentication-Token-Expiration`).
pub const DEFAULT_EXPIRY_HEADER: &str = "token-expiration";

/// Where credentials are read from, and how responses look. Shared by the tower layer and
/// the axum extractors.
///
/// ```
/// # use keygate::http::AuthConfig;
/// let config = AuthConfig::new()
///     .api_key_header(http::HeaderName::from_static("x-api-key"))
///     .realm("projects")?
///     .optional(true);
/// assert!(config.is_optional());
/// # Ok::<(), keygate::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct AuthConfig {
    api_key_header: Option<HeaderName>,
    optional: bool,
    realm: Option<Arc<str>>,
    expiry_header: Option<HeaderName>,
    max_header_len: usize,
    trusted_proxies: Option<TrustedProxies>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            api_key_header: None,
            optional: false,
            realm: None,
            expiry_header: Some(HeaderName::from_static(DEFAULT_EXPIRY_HEADER)),
            max_header_len: DEFAULT_MAX_HEADER_LEN,
            trusted_proxies: None,
        }
    }
}

impl AuthConfig {
    /// `Authorization: Bearer` only, authentication required, realm `api`, expiry header
    /// on, 1024-byte header cap.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also reads the bare token from this header (e.g. `api-token`, `x-api-key`).
    /// `authorization` itself is ignored here: it is always read.
    pub fn api_key_header(mut self, name: HeaderName) -> Self {
        self.api_key_header = (name != header::AUTHORIZATION).then_some(name);
        self
    }

    /// Optional authentication: a request without credentials passes through
    /// unauthenticated; a request with bad credentials is still refused. An `Authorization`
    /// header with another scheme (`Basic ...`) counts as no credentials, so such a request
    /// also passes through without a [`VerifiedToken`] in its extensions.
    pub fn optional(mut self, optional: bool) -> Self {
        self.optional = optional;
        self
    }

    /// Sets the realm of the `WWW-Authenticate` challenge: 1 to 64 printable ASCII
    /// characters without `"` or `\`.
    pub fn realm(mut self, realm: &str) -> Result<Self, Error> {
        if realm.is_empty()
            || realm.len() > 64
            || !realm
                .bytes()
                .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
        {
            return Err(Error::InvalidConfig(
                "realm must be 1 to 64 printable ASCII characters without `\"` or `\\`",
            ));
        }
        self.realm = Some(realm.into());
        Ok(self)
    }

    /// Sets the response header that carries a verified token's expiry (RFC 3339, UTC), or
    /// turns it off with `None`. On by default as `token-expiration`. Tokens that never
    /// expire get no header.
    pub fn expiry_header(mut self, name: Option<HeaderName>) -> Self {
        self.expiry_header = name;
        self
    }

    /// Sets the longest credential header accepted, in bytes (clamped to 300..=8192;
    /// tokens are at most 256 characters).
    pub fn max_header_len(mut self, max: usize) -> Self {
        self.max_header_len = max.clamp(300, 8192);
        self
    }

    /// Believes the forwarding `header` of requests whose connection comes from one of
    /// these proxies (CIDR ranges, or bare addresses), for the client address that tokens
    /// restricted to IP ranges are checked against: the client is then the rightmost hop of
    /// the chain that is not itself one of these proxies. Off by default: without it no
    /// forwarding header is ever read, so a client cannot claim another address.
    ///
    /// A range that does not parse is an [`Error::InvalidField`] here, when the
    /// configuration is built; an empty list turns the feature off.
    ///
    /// ```
    /// use keygate::http::{AuthConfig, ForwardedHeader};
    /// let config = AuthConfig::new()
    ///     .trusted_proxies(ForwardedHeader::XForwardedFor, ["10.0.0.0/8", "fd00::/8"])?;
    /// assert!(AuthConfig::new().trusted_proxies(ForwardedHeader::Forwarded, ["10.0.0.0/33"]).is_err());
    /// # Ok::<(), keygate::Error>(())
    /// ```
    pub fn trusted_proxies<I, S>(
        mut self,
        header: ForwardedHeader,
        proxies: I,
    ) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nets = crate::ip::parse_list(proxies)?;
        self.trusted_proxies = (!nets.is_empty()).then(|| TrustedProxies {
            header,
            nets: nets.into(),
        });
        Ok(self)
    }

    /// The client address of a request with these headers and extensions: the
    /// connection's peer (see the [module docs](self)), or, when it is a
    /// [trusted proxy](Self::trusted_proxies), the rightmost untrusted hop of the
    /// forwarding header. `None` when unknown: no peer address in the extensions, or a
    /// malformed forwarding header from a trusted proxy.
    pub fn client_ip(&self, headers: &HeaderMap, extensions: &http::Extensions) -> Option<IpAddr> {
        let peer = client_ip::peer(extensions)?;
        match &self.trusted_proxies {
            Some(proxies) => proxies.resolve(peer, headers),
            None => Some(peer),
        }
    }

    /// The API-key header, if any.
    pub fn api_key_header_name(&self) -> Option<&HeaderName> {
        self.api_key_header.as_ref()
    }

    /// Is authentication optional?
    pub fn is_optional(&self) -> bool {
        self.optional
    }

    /// The realm.
    pub fn realm_name(&self) -> &str {
        self.realm.as_deref().unwrap_or(DEFAULT_REALM)
    }

    /// The expiry header, if on.
    pub fn expiry_header_name(&self) -> Option<&HeaderName> {
        self.expiry_header.as_ref()
    }

    /// The header length cap.
    pub fn header_len_cap(&self) -> usize {
        self.max_header_len
    }

    /// A rejection carrying this configuration's realm.
    pub fn reject(&self, reason: RejectionReason) -> AuthRejection {
        AuthRejection {
            reason,
            realm: self.realm.clone(),
        }
    }

    /// Reads the credential of a request, without verifying it.
    ///
    /// `Ok(None)` when there is none (no `Authorization` header, or one with another scheme
    /// such as `Basic`, and no API-key header). Refuses over-long and malformed headers and
    /// two credentials at once with [`RejectionReason::InvalidRequest`].
    pub fn extract(&self, headers: &HeaderMap) -> Result<Option<Credential>, AuthRejection> {
        self.extract_inner(headers)
            .map_err(|e| self.reject(RejectionReason::InvalidRequest(e)))
    }

    fn extract_inner(&self, headers: &HeaderMap) -> Result<Option<Credential>, InvalidRequest> {
        let bearer = match single(headers, &header::AUTHORIZATION)? {
            Some(value) => parse_bearer(value, self.max_header_len)?.map(|start| Credential {
                value: value.clone(),
                start,
            }),
            None => None,
        };
        let api_key = match &self.api_key_header {
            Some(name) => match single(headers, name)? {
                Some(value) => {
                    check_len(value, self.max_header_len)?;
                    let s = value
                        .to_str()
                        .map_err(|_| InvalidRequest::MalformedHeader)?;
                    if !is_b64token(s) {
                        return Err(InvalidRequest::MalformedHeader);
                    }
                    Some(Credential {
                        value: value.clone(),
                        start: 0,
                    })
                }
                None => None,
            },
            None => None,
        };
        match (bearer, api_key) {
            (Some(_), Some(_)) => Err(InvalidRequest::MultipleCredentials),
            (b, k) => Ok(b.or(k)),
        }
    }

    /// Reads and verifies the credential of a request: `Ok(None)` when there is none. The
    /// client address comes from `extensions` and `headers` (see
    /// [`client_ip`](Self::client_ip)).
    pub async fn authenticate(
        &self,
        manager: &TokenManager,
        headers: &HeaderMap,
        extensions: &http::Extensions,
    ) -> Result<Option<VerifiedToken>, AuthRejection> {
        match self.extract(headers)? {
            Some(credential) => {
                let client_ip = self.client_ip(headers, extensions);
                self.verify(manager, &credential, client_ip).await.map(Some)
            }
            None => Ok(None),
        }
    }

    /// Verifies an extracted credential for a client at `client_ip` (`None`: unknown, and
    /// a token restricted to IP ranges is refused), mapping failures to rejections.
    pub async fn verify(
        &self,
        manager: &TokenManager,
        credential: &Credential,
        client_ip: Option<IpAddr>,
    ) -> Result<VerifiedToken, AuthRejection> {
        let mut ctx = VerifyContext::new();
        ctx.client_ip = client_ip;
        manager
            .verify_with(credential.token(), &ctx)
            .await
            .map_err(|e| self.reject(e.into()))
    }

    /// The expiry header for a verified token: `None` when turned off or when the token
    /// never expires.
    pub fn expiry_header_for(&self, token: &VerifiedToken) -> Option<(HeaderName, HeaderValue)> {
        let name = self.expiry_header.as_ref()?;
        let at = token.expiry().at()?;
        Some((name.clone(), expiry_value(at)?))
    }
}

/// The single value of `name`: `Err` if there are several.
fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a HeaderValue>, InvalidRequest> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(InvalidRequest::MultipleCredentials);
    }
    Ok(first)
}

fn check_len(value: &HeaderValue, max: usize) -> Result<(), InvalidRequest> {
    if value.len() > max {
        Err(InvalidRequest::HeaderTooLong)
    } else {
        Ok(())
    }
}

/// `Some(offset of the token)` for a well-formed `Bearer` credential, `None` for another
/// scheme.
fn parse_bearer(value: &HeaderValue, max: usize) -> Result<Option<usize>, InvalidRequest> {
    check_len(value, max)?;
    let s = value
        .to_str()
        .map_err(|_| InvalidRequest::MalformedHeader)?;
    // The scheme ends at the first space or tab. RFC 6750 separates `Bearer` from its token
    // by spaces only: `Bearer<TAB>token` is a malformed Bearer credential, not another
    // scheme.
    let end = s.find([' ', '\t']).unwrap_or(s.len());
    let (scheme, rest) = s.split_at(end);
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    if rest.starts_with('\t') {
        return Err(InvalidRequest::MalformedHeader);
    }
    let token = rest.trim_start_matches(' ');
    if !is_b64token(token) {
        return Err(InvalidRequest::MalformedHeader);
    }
    Ok(Some(s.len() - token.len()))
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// The header value for an expiry instant, memoised per thread: consecutive requests with the
/// same token (the common case) reuse the value instead of formatting and allocating again.
fn expiry_value(at: chrono::DateTime<chrono::Utc>) -> Option<HeaderValue> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(i64, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    let key = at.timestamp();
    LAST.with(|last| {
        let mut last = last.try_borrow_mut().ok()?;
        if let Some((k, v)) = &*last {
            if *k == key {
                return Some(v.clone());
            }
        }
        let value = format_instant(at)?;
        *last = Some((key, value.clone()));
        Some(value)
    })
}

/// `2026-12-23T15:00:00Z`, written without a format string.
fn format_instant(at: chrono::DateTime<chrono::Utc>) -> Option<HeaderValue> {
    use chrono::{Datelike, Timelike};
    let year = u32::try_from(at.year()).ok().filter(|y| *y <= 9999)?;
    let mut buf = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, n: u32, width: usize| {
        let mut n = n;
        for i in (0..width).rev() {
            buf[at + i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, year, 4);
    put(5, at.month(), 2);
    put(8, at.day(), 2);
    put(11, at.hour(), 2);
    put(14, at.minute(), 2);
    put(17, at.second(), 2);
    HeaderValue::from_bytes(&buf).ok()
}

/// A credential read from a request header, not yet verified.
///
/// Holds the header value (a cheap reference-counted copy); `Debug` redacts it.
#[derive(Clone)]
pub struct Credential {
    value: HeaderValue,
    start: usize,
}

impl Credential {
    /// The presented token string. Handle with care: this is the credential.
    pub fn token(&self) -> &str {
        self.value
            .as_bytes()
            .get(self.start..)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credential(<redacted>)")
    }
}

/// Why a request was an `invalid_request` (400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidRequest {
    /// The header is not a well-formed credential (`Bearer` without a token, characters
    /// outside RFC 6750's `b64token`, non-ASCII bytes).
    MalformedHeader,
    /// Two credentials at once.
    MultipleCredentials,
    /// The credential header is longer than the configured cap.
    HeaderTooLong,
}

impl InvalidRequest {
    fn description(self) -> &'static str {
        match self {
            InvalidRequest::MalformedHeader => "malformed credential header",
            InvalidRequest::MultipleCredentials => "more than one credential",
            InvalidRequest::HeaderTooLong => "credential header too long",
        }
    }
}

/// Why a request was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum RejectionReason {
    /// No credentials (401, no error attribute).
    MissingCredentials,
    /// A malformed request (400 `invalid_request`).
    InvalidRequest(InvalidRequest),
    /// The token is not valid (401 `invalid_token`); the precise reason is for logs only
    /// and never changes the response. Never [`VerifyError::Store`].
    InvalidToken(VerifyError),
    /// The token is valid, but the client's address is outside its allowed IP ranges, or
    /// unknown (403 `ip_not_allowed`, no `WWW-Authenticate`).
    IpNotAllowed,
    /// The token lacks scopes (403 `insufficient_scope`): the scopes required.
    InsufficientScope(ScopeSet),
    /// The token may not act on this project (403 `insufficient_scope`).
    ProjectDenied(ProjectId),
    /// The store failed; nothing was authorised (503).
    StoreUnavailable(StoreError),
    /// The route's requirement is itself invalid, e.g. a bad scope string (500).
    Misconfigured(Error),
}

impl From<VerifyError> for RejectionReason {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Store(e) => RejectionReason::StoreUnavailable(e),
            VerifyError::IpNotAllowed => RejectionReason::IpNotAllowed,
            e => RejectionReason::InvalidToken(e),
        }
    }
}

/// A refused request: the reason and how to answer it (RFC 6750).
///
/// With feature `axum` it is an `IntoResponse`; with `tower` alone,
/// [`into_http_response`](Self::into_http_response) builds the response.
pub struct AuthRejection {
    reason: RejectionReason,
    realm: Option<Arc<str>>,
}

impl AuthRejection {
    /// A rejection with the default realm.
    pub fn new(reason: RejectionReason) -> Self {
        AuthRejection {
            reason,
            realm: None,
        }
    }

    /// Why.
    pub fn reason(&self) -> &RejectionReason {
        &self.reason
    }

    /// Consumes the rejection, giving the reason.
    pub fn into_reason(self) -> RejectionReason {
        self.reason
    }

    /// The HTTP status: 400, 401, 403, 500 or 503.
    pub fn status(&self) -> StatusCode {
        match &self.reason {
            RejectionReason::MissingCredentials | RejectionReason::InvalidToken(_) => {
                StatusCode::UNAUTHORIZED
            }
            RejectionReason::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            RejectionReason::InsufficientScope(_)
            | RejectionReason::ProjectDenied(_)
            | RejectionReason::IpNotAllowed => StatusCode::FORBIDDEN,
            RejectionReason::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            RejectionReason::Misconfigured(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The short error code of the body (`invalid_token`, `insufficient_scope`, ...).
    pub fn code(&self) -> &'static str {
        match &self.reason {
            RejectionReason::MissingCredentials => "missing_credentials",
            RejectionReason::InvalidRequest(_) => "invalid_request",
            RejectionReason::InvalidToken(_) => "invalid_token",
            RejectionReason::InsufficientScope(_) => "insufficient_scope",
            RejectionReason::ProjectDenied(_) => "project_denied",
            RejectionReason::IpNotAllowed => "ip_not_allowed",
            RejectionReason::StoreUnavailable(_) => "temporarily_unavailable",
            RejectionReason::Misconfigured(_) => "server_error",
        }
    }

    /// The `WWW-Authenticate` challenge, if the response carries one.
    pub fn www_authenticate(&self) -> Option<HeaderValue> {
        let realm = self.realm.as_deref().unwrap_or(DEFAULT_REALM);
        let challenge = match &self.reason {
            RejectionReason::MissingCredentials => format!("Bearer realm=\"{realm}\""),
            RejectionReason::InvalidToken(_) => {
                format!("Bearer realm=\"{realm}\", error=\"invalid_token\"")
            }
            RejectionReason::InvalidRequest(_) => {
                format!("Bearer realm=\"{realm}\", error=\"invalid_request\"")
            }
            RejectionReason::InsufficientScope(scopes) => format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{}\"",
                join_scopes(scopes)
            ),
            RejectionReason::ProjectDenied(_) => {
                format!("Bearer realm=\"{realm}\", error=\"insufficient_scope\"")
            }
            RejectionReason::StoreUnavailable(_)
            | RejectionReason::Misconfigured(_)
            | RejectionReason::IpNotAllowed => {
                return None;
            }
        };
        // Realms, scopes and codes are validated printable ASCII.
        HeaderValue::try_from(challenge).ok()
    }

    /// The JSON body. Scopes and project ids are validated to JSON-safe characters.
    pub fn body(&self) -> String {
        match &self.reason {
            RejectionReason::InsufficientScope(scopes) => format!(
                "{{\"error\":\"insufficient_scope\",\"scope\":\"{}\"}}",
                join_scopes(scopes)
            ),
            RejectionReason::ProjectDenied(p) => {
                format!("{{\"error\":\"project_denied\",\"project\":\"{p}\"}}")
            }
            RejectionReason::InvalidRequest(e) => format!(
                "{{\"error\":\"invalid_request\",\"error_description\":\"{}\"}}",
                e.description()
            ),
            _ => format!("{{\"error\":\"{}\"}}", self.code()),
        }
    }

    /// Builds the response: status, `WWW-Authenticate`, `Content-Type: application/json`
    /// and the body.
    pub fn into_http_response<B: From<String>>(self) -> Response<B> {
        if let RejectionReason::StoreUnavailable(e) = &self.reason {
            tracing::warn!(target: "keygate", error = %e, "token store unavailable; request refused");
        }
        let mut response = Response::new(B::from(self.body()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(challenge) = self.www_authenticate() {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// May a request with these headers carry a body (a non-zero `Content-Length`, or any
/// `Transfer-Encoding`)?
pub(crate) fn may_have_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// A refusal sent before the request's body was read ends the connection
/// (`Connection: close`): what is left of the body on the wire must not be taken for the
/// client's next request on a kept-alive connection.
pub(crate) fn close_if_unread<B>(body_unread: bool, mut response: Response<B>) -> Response<B> {
    if body_unread {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn join_scopes(scopes: &ScopeSet) -> String {
    let mut out = String::new();
    for s in scopes {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(s.as_str());
    }
    out
}

impl fmt::Debug for AuthRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthRejection")
            .field("reason", &self.reason)
            .field("status", &self.status().as_u16())
            .finish()
    }
}

impl fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            RejectionReason::MissingCredentials => f.write_str("no credentials"),
            RejectionReason::InvalidRequest(e) => f.write_str(e.description()),
            RejectionReason::InvalidToken(e) => write!(f, "invalid token: {e}"),
            RejectionReason::InsufficientScope(s) => {
                write!(f, "insufficient scope: requires {}", join_scopes(s))
            }
            RejectionReason::ProjectDenied(p) => write!(f, "project `{p}` denied"),
            RejectionReason::IpNotAllowed => {
                f.write_str("client address not allowed for this token")
            }
            RejectionReason::StoreUnavailable(_) => f.write_str("token store unavailable"),
            RejectionReason::Misconfigured(e) => write!(f, "misconfigured requirement: {e}"),
        }
    }
}

impl std::error::Error for AuthRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.reason {
            RejectionReason::InvalidToken(e) => Some(e),
            RejectionReason::StoreUnavailable(e) => Some(e),
            RejectionReason::Misconfigured(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn reason(r: Result<Option<Credential>, AuthRejection>) -> Option<InvalidRequest> {
        match r.err()?.into_reason() {
            RejectionReason::InvalidRequest(e) => Some(e),
            _ => None,
        }
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let c = AuthConfig::new();
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let got = c
                .extract(&headers(&[("authorization", &format!("{scheme} kg_a_b"))]))
                .unwrap()
                .unwrap();
            assert_eq!(got.token(), "kg_a_b");
        }
    }

    #[test]
    fn other_schemes_and_absence_are_no_credentials() {
        let c = AuthConfig::new();
        assert!(c.extract(&HeaderMap::new()).unwrap().is_none());
        assert!(
            c.extract(&headers(&[("authorization", "Basic YWxhZGRpbjpvcGVu")]))
                .unwrap()
                .is_none()
        );
        // Without configuration, an API-key header is not read.
        assert!(
            c.extract(&headers(&[("x-api-key", "kg_a_b")]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn malformed_headers_are_invalid_request() {
        let c = AuthConfig::new();
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a,b",
            "Bearer =",
            "Bearer a=b",
            "Bearer\tkg_a_b",
            "bearer\t kg_a_b",
            "Bearer \tkg_a_b",
        ] {
            assert_eq!(
                reason(c.extract(&headers(&[("authorization", bad)]))),
                Some(InvalidRequest::MalformedHeader),
                "{bad:?}"
            );
        }
        let non_ascii = HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, non_ascii);
        assert_eq!(reason(c.extract(&h)), Some(InvalidRequest::MalformedHeader));
    }

    #[test]
    fn two_credentials_are_invalid_request() {
        let c = AuthConfig::new().api_key_header(HeaderName::from_static("x-api-key"));
        let two = [
            vec![("authorization", "Bearer a"), ("authorization", "Bearer b")],
            vec![("x-api-key", "a"), ("x-api-key", "b")],
            vec![("authorization", "Bearer a"), ("x-api-key", "a")],
        ];
        for h in two {
            assert_eq!(
                reason(c.extract(&headers(&h))),
                Some(InvalidRequest::MultipleCredentials)
            );
        }
        // A Basic header beside an API key is one bearer credential.
        let got = c
            .extract(&headers(&[
                ("authorization", "Basic eA=="),
                ("x-api-key", "kg_x"),
            ]))
            .unwrap()
            .unwrap();
        assert_eq!(got.token(), "kg_x");
    }

    #[test]
    fn over_long_header_is_refused_first() {
        let c = AuthConfig::new();
        // Over-long and malformed at once: the length decides.
        let long = format!("Bearer {}", " ".repeat(2000));
        assert_eq!(
            reason(c.extract(&headers(&[("authorization", &long)]))),
            Some(InvalidRequest::HeaderTooLong)
        );
    }

    #[test]
    fn rendering() {
        let r = AuthConfig::new()
            .realm("acme")
            .unwrap()
            .reject(RejectionReason::MissingCredentials);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.www_authenticate().unwrap(), "Bearer realm=\"acme\"");
        let r = AuthRejection::new(RejectionReason::InsufficientScope(
            ScopeSet::parse(["b:write", "a:read"]).unwrap(),
        ));
        assert_eq!(
            r.www_authenticate().unwrap(),
            "Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"a:read b:write\""
        );
        assert_eq!(
            r.body(),
            r#"{"error":"insufficient_scope","scope":"a:read b:write"}"#
        );
        let r = AuthRejection::new(VerifyError::Store(StoreError::NotFound).into());
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.www_authenticate().is_none());
        assert!(AuthConfig::new().realm("a\"b").is_err());
        assert!(AuthConfig::new().realm("").is_err());
    }

    #[test]
    fn expiry_format() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-02-03T04:05:06.789Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(format_instant(at).unwrap(), "2026-02-03T04:05:06Z");
        // Memoised: the same instant twice, then another one.
        assert_eq!(expiry_value(at).unwrap(), "2026-02-03T04:05:06Z");
        assert_eq!(expiry_value(at).unwrap(), "2026-02-03T04:05:06Z");
        let later = at + chrono::Duration::seconds(61);
        assert_eq!(expiry_value(later).unwrap(), "2026-02-03T04:06:07Z");
        let far = chrono::DateTime::parse_from_rfc3339("+10000-01-01T00:00:00Z");
        if let Ok(far) = far {
            assert!(expiry_value(far.with_timezone(&chrono::Utc)).is_none());
        }
    }
}
