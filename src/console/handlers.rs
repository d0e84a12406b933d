//! The console's routes: session and CSRF middleware, then one handler per page or action.

use std::sync::Arc;

use ::axum::Router;
use ::axum::body::Body;
use ::axum::extract::{Extension, Path, Request, State};
use ::axum::http::{HeaderValue, StatusCode, header};
use ::axum::middleware::Next;
use ::axum::response::{IntoResponse, Redirect, Response};
use ::axum::routing::{get, post};
use chrono::{DateTime, NaiveDate, Utc};
use maud::{Markup, html};
use zeroize::Zeroizing;

use super::pages::{self, csrf, field_error, has_error, layout};
use super::session::{self, Session};
use super::{CONSOLE_SCOPE, Console, Mode, Operator};
use crate::error::{AccessError, Error};
use crate::expiry::{Expiry, ExpiryPreset};
use crate::manager::{BulkAction, Selection};
use crate::record::{TokenRecord, TokenStatus};
use crate::scope::{ProjectId, Projects, Scope, ScopeSet};
use crate::store::{Cursor, PageRequest, TokenFilter};
use crate::token::TokenId;
use crate::{IssueRequest, RotateRequest, TokenUpdate};

type Shared = Arc<Console>;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const PAGE_SIZE: usize = 50;
const MAX_FORM_BYTES: usize = 64 * 1024;
const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

pub(super) fn router<S>(console: Shared) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/", get(home))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/tokens", get(list_all))
        .route("/tokens/bulk", post(bulk))
        .route("/my", get(list_mine))
        .route("/new", get(new_page).post(create))
        .route("/shown/{id}", get(shown_once))
        .route("/tokens/{id}", get(details).post(edit))
        .route("/tokens/{id}/status", post(set_status))
        .route("/tokens/{id}/regenerate", post(regenerate))
        .route("/tokens/{id}/revoke", post(revoke))
        .route("/tokens/{id}/delete", post(delete))
        .layer(::axum::middleware::from_fn_with_state(
            Arc::clone(&console),
            session_layer,
        ))
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
        .layer(::axum::middleware::map_response(security_headers))
        .with_state(console)
}

// ----- context -------------------------------------------------------------------------------

/// What every page knows about its request.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(super) base: String,
    pub(super) sid: String,
    pub(super) csrf: String,
    pub(super) operator: Option<Operator>,
    pub(super) token_sign_in: bool,
    /// The client address (for tokens restricted to IP ranges), as the keygate
    /// configuration reads it.
    pub(super) client_ip: Option<std::net::IpAddr>,
}

/// A submitted form, after its CSRF token was checked.
#[derive(Clone, Default)]
struct Form(Vec<(String, String)>);

impl Form {
    fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    fn confirmed(&self) -> bool {
        self.get("confirmed") == "yes"
    }
}

fn parse_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Finds or starts the session, checks the CSRF token of every POST (403, nothing done),
/// finds the operator, and hands the page a [`Ctx`] (and the [`Form`]).
async fn session_layer(State(c): State<Shared>, req: Request, next: Next) -> Response {
    let now = c.keygate.manager().now();
    let base = req
        .extensions()
        .get::<::axum::extract::NestedPath>()
        .map(|p| p.as_str().trim_end_matches('/').to_owned())
        .unwrap_or_default();
    let existing = session::cookie(req.headers(), session::COOKIE).map(str::to_owned);
    let found = existing.as_ref().and_then(|sid| {
        c.sessions
            .with(sid, now, |s: &mut Session| {
                (s.csrf.clone(), s.token.clone())
            })
            .map(|(csrf, token)| (sid.clone(), csrf, token))
    });
    let (sid, csrf_token, token, new_cookie) = match found {
        Some((sid, csrf, token)) => (sid, csrf, token, None),
        None => {
            let expires = now + c.session_lifetime;
            let (sid, csrf) = c.sessions.create(expires, now);
            let cookie = session::set_cookie(Some(&sid), expires, now);
            (sid, csrf, None, Some(cookie))
        }
    };

    let (mut parts, mut body) = req.into_parts();
    if parts.method == ::axum::http::Method::POST {
        let taken = std::mem::replace(&mut body, Body::empty());
        let Ok(bytes) = ::axum::body::to_bytes(taken, MAX_FORM_BYTES).await else {
            return (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response();
        };
        let form = Form(parse_pairs(&bytes));
        let given = form.get("csrf");
        if new_cookie.is_some() || !session::csrf_matches(&csrf_token, given) {
            let ctx = Ctx {
                base,
                sid,
                csrf: csrf_token,
                operator: None,
                token_sign_in: c.operators.is_none(),
                client_ip: None,
            };
            let page = layout(
                &ctx,
                "Form expired",
                &c.title,
                html! {
                    h1 { "This form has expired" }
                    p { "Nothing was changed. Go back, reload the page and try again." }
                    p { a href={ (ctx.base) "/" } { "Back to the console" } }
                },
            );
            return with_cookie(
                (
                    StatusCode::FORBIDDEN,
                    ::axum::response::Html(page.into_string()),
                )
                    .into_response(),
                new_cookie,
            );
        }
        parts.extensions.insert(form);
    }

    let client_ip = c
        .keygate
        .config()
        .client_ip(&parts.headers, &parts.extensions);
    let operator = match &c.operators {
        Some(ops) => match ops.operator(&parts).await {
            Ok(op) => op,
            Err(_) => return unavailable(),
        },
        None => match token {
            Some(t) => match token_operator(&c, &t, client_ip).await {
                Ok(op) => op,
                Err(TokenSignIn::Unavailable) => return unavailable(),
                Err(TokenSignIn::Refused) => {
                    // Expired, disabled, revoked or stripped of the scope: signed out.
                    c.sessions.with(&sid, now, |s| s.token = None);
                    None
                }
            },
            None => None,
        },
    };
    parts.extensions.insert(Ctx {
        base,
        sid,
        csrf: csrf_token,
        operator,
        token_sign_in: c.operators.is_none(),
        client_ip,
    });
    let response = next.run(Request::from_parts(parts, body)).await;
    with_cookie(response, new_cookie)
}

fn with_cookie(mut r: Response, cookie: Option<String>) -> Response {
    if let Some(c) = cookie {
        if !r.headers().contains_key(header::SET_COOKIE) {
            if let Ok(v) = HeaderValue::from_str(&c) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
        }
    }
    r
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "The token store is unavailable; try again shortly.",
    )
        .into_response()
}

enum TokenSignIn {
    Refused,
    Unavailable,
}

/// The operator a signed-in token makes: it must grant [`CONSOLE_SCOPE`]; with
/// `tokens:read` and `tokens:write` it operates, with `tokens:self` it serves itself.
async fn token_operator(
    c: &Console,
    token: &str,
    client_ip: Option<std::net::IpAddr>,
) -> Result<Option<Operator>, TokenSignIn> {
    let mut vctx = crate::manager::VerifyContext::new();
    vctx.client_ip = client_ip;
    let verified = match c.keygate.manager().verify_with(token, &vctx).await {
        Ok(v) => v,
        Err(crate::VerifyError::Store(_)) => return Err(TokenSignIn::Unavailable),
        Err(_) => return Err(TokenSignIn::Refused),
    };
    let has = |s: &str| Scope::new(s).is_ok_and(|s| verified.grants(&s));
    if !has(CONSOLE_SCOPE) {
        return Err(TokenSignIn::Refused);
    }
    let mode = if has("tokens:read") && has("tokens:write") {
        Mode::Operator
    } else if has("tokens:self") {
        Mode::SelfService
    } else {
        return Err(TokenSignIn::Refused);
    };
    let name = verified.owner().to_owned();
    Ok(Some(Operator::new(name, verified, mode)))
}

/// The operator, or a redirect to sign in.
#[expect(
    clippy::result_large_err,
    reason = "the error is the response itself, returned at once"
)]
fn signed_in(c: &Console, ctx: &Ctx) -> Result<Operator, Response> {
    match &ctx.operator {
        Some(op) => Ok(op.clone()),
        None => Err(match &c.operators {
            Some(ops) => Redirect::to(&ops.sign_in_url()).into_response(),
            None => Redirect::to(&format!("{}/sign-in", ctx.base)).into_response(),
        }),
    }
}

fn page(c: &Console, ctx: &Ctx, title: &str, body: Markup) -> Response {
    ::axum::response::Html(layout(ctx, title, &c.title, body).into_string()).into_response()
}

fn message(c: &Console, ctx: &Ctx, status: StatusCode, title: &str, text: &str) -> Response {
    let body = html! {
        h1 { (title) }
        p { (text) }
        p { a href={ (ctx.base) "/" } { "Back to the tokens" } }
    };
    (status, page(c, ctx, title, body)).into_response()
}

fn error_page(c: &Console, ctx: &Ctx, e: &Error) -> Response {
    let (status, title) = match e {
        Error::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
        Error::Escalation(_) | Error::Access(_) => (StatusCode::FORBIDDEN, "Not allowed"),
        Error::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable"),
        Error::VersionMismatch { .. } | Error::Conflict(_) => {
            (StatusCode::CONFLICT, "Changed meanwhile")
        }
        Error::LastAdmin(_) | Error::InvalidState { .. } => (StatusCode::CONFLICT, "Refused"),
        _ => (StatusCode::UNPROCESSABLE_ENTITY, "Refused"),
    };
    let text = match e {
        Error::Store(_) => "The token store is unavailable; nothing was changed.".to_owned(),
        Error::NotFound(_) => "No such token.".to_owned(),
        e => format!("{e}. Nothing was changed."),
    };
    message(c, ctx, status, title, &text)
}

/// Reads a token the operator may manage; self-service: only its owner's.
async fn load(c: &Console, op: &Operator, id: &str) -> Result<TokenRecord, Error> {
    let id = TokenId::new(id).map_err(|_| Error::NotFound(TokenId::generate()))?;
    let r = c.keygate.manager().acting_as(op.actor()).get(&id).await?;
    if op.mode() == Mode::SelfService && r.owner != op.actor().owner() {
        return Err(Error::NotFound(id));
    }
    Ok(r)
}

/// The signed-in operator and the token `id` they may manage, or the page that says why not
/// (sign in, or "not found").
async fn operator_and_token(
    c: &Console,
    ctx: &Ctx,
    id: &str,
) -> Result<(Operator, TokenRecord), Response> {
    let op = signed_in(c, ctx)?;
    match load(c, &op, id).await {
        Ok(r) => Ok((op, r)),
        Err(e) => Err(error_page(c, ctx, &e)),
    }
}

/// Shows a confirmation page that re-posts `form` with `confirmed=yes` (without JavaScript).
fn confirm_page(c: &Console, ctx: &Ctx, action: &str, form: &Form, text: &str) -> Response {
    let body = html! {
        h1 { "Please confirm" }
        p { (text) }
        form method="post" action=(action) {
            @for (k, v) in &form.0 {
                @if k != "confirmed" { input type="hidden" name=(k) value=(v); }
            }
            input type="hidden" name="confirmed" value="yes";
            div.actions {
                button.danger type="submit" { "Confirm" }
                a.button href={ (ctx.base) "/" } { "Cancel" }
            }
        }
    };
    page(c, ctx, "Please confirm", body)
}

// ----- sign in -------------------------------------------------------------------------------

async fn home(State(c): State<Shared>, Extension(ctx): Extension<Ctx>) -> Response {
    match signed_in(&c, &ctx) {
        Ok(op) if op.mode() == Mode::Operator => {
            Redirect::to(&format!("{}/tokens", ctx.base)).into_response()
        }
        Ok(_) => Redirect::to(&format!("{}/my", ctx.base)).into_response(),
        Err(r) => r,
    }
}

fn sign_in_form(c: &Console, ctx: &Ctx, error: Option<&str>) -> Response {
    let body = html! {
        div.signin {
            h1 { "Sign in" }
            p { "Paste a token that holds the " code { (CONSOLE_SCOPE) } " scope. It stays on the server for this session." }
            form method="post" action={ (ctx.base) "/sign-in" } {
                (csrf(ctx))
                label for="f-token" { "Token" }
                input #f-token type="password" name="token" autocomplete="off" required
                    aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| "e-token")];
                @if let Some(e) = error { p.error #e-token role="alert" { (e) } }
                div.actions { button.primary type="submit" { "Sign in" } }
            }
        }
    };
    page(c, ctx, "Sign in", body)
}

async fn sign_in_page(State(c): State<Shared>, Extension(ctx): Extension<Ctx>) -> Response {
    if let Some(ops) = &c.operators {
        return Redirect::to(&ops.sign_in_url()).into_response();
    }
    if ctx.operator.is_some() {
        return Redirect::to(&format!("{}/", ctx.base)).into_response();
    }
    sign_in_form(&c, &ctx, None)
}

async fn sign_in(
    State(c): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Extension(form): Extension<Form>,
) -> Response {
    if c.operators.is_some() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let token = Zeroizing::new(form.get("token").trim().to_owned());
    let op = match token_operator(&c, &token, ctx.client_ip).await {
        Ok(Some(op)) => op,
        Err(TokenSignIn::Unavailable) => return unavailable(),
        _ => {
            return (
                StatusCode::UNAUTHORIZED,
                sign_in_form(
                    &c,
                    &ctx,
                    Some("Not signed in: the token is not valid, or it lacks the tokens:console scope."),
                ),
            )
                .into_response();
        }
    };
    // A new session id at sign-in; the session ends no later than the token.
    let now = c.keygate.manager().now();
    let mut expires = now + c.session_lifetime;
    if let Expiry::At(at) = op.actor().expiry() {
        expires = expires.min(at);
    }
    c.sessions.remove(&ctx.sid);
    let (sid, _) = c.sessions.create(expires, now);
    c.sessions
        .with(&sid, now, |s| s.token = Some(token.clone()));
    let mut r = Redirect::to(&format!("{}/", ctx.base)).into_response();
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(Some(&sid), expires, now)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn sign_out(State(c): State<Shared>, Extension(ctx): Extension<Ctx>) -> Response {
    c.sessions.remove(&ctx.sid);
    let now = c.keygate.manager().now();
    let mut r = Redirect::to(&format!("{}/sign-in", ctx.base)).into_response();
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(None, now, now)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

// ----- list ----------------------------------------------------------------------------------

async fn list_all(
    State(c): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    uri: ::axum::http::Uri,
) -> Response {
    let op = match signed_in(&c, &ctx) {
        Ok(op) => op,
        Err(r) => return r,
    };
    if op.mode() == Mode::SelfService {
        return Redirect::to(&format!("{}/my", ctx.base)).into_response();
    }
    list(&c, &ctx, &op, uri.query().unwrap_or(""), false).await
}

async fn list_mine(
    State(c): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    uri: ::axum::http::Uri,
) -> Response {
    let op = match signed_in(&c, &ctx) {
        Ok(op) => op,
        Err(r) => return r,
    };
    list(&c, &ctx, &op, uri.query().unwrap_or(""), true).await
}

/// The filter of a list query; errors name the field.
fn filter_of(q: &Form, now: DateTime<Utc>) -> (TokenFilter, Vec<(&'static str, String)>) {
    let mut f = TokenFilter::new();
    let mut errors = Vec::new();
    let text = |k: &str| Some(q.get(k).trim()).filter(|s| !s.is_empty());
    if let Some(v) = text("name") {
        f = f.name_contains(v);
    }
    if let Some(v) = text("owner") {
        f = f.owner(v);
    }
    if let Some(v) = text("created_by") {
        f = f.created_by(v);
    }
    if let Some(v) = text("status") {
        match v {
            "enabled" => f = f.status(TokenStatus::Active),
            "disabled" => f = f.status(TokenStatus::Disabled),
            "revoked" => f = f.status(TokenStatus::Revoked),
            _ => errors.push(("status", "Pick a status from the list.".to_owned())),
        }
    }
    if let Some(v) = text("expires") {
        let days = chrono::Duration::days;
        match v {
            "expired" => f = f.expires_before(now),
            "7d" => f = f.expires_after(now).expires_before(now + days(7)),
            "30d" => f = f.expires_after(now).expires_before(now + days(30)),
            _ => errors.push(("expires", "Pick an expiry window from the list.".to_owned())),
        }
    }
    if let Some(v) = text("project") {
        match ProjectId::new(v) {
            Ok(p) => f = f.project(p),
            Err(_) => errors.push(("project", "Not a project id.".to_owned())),
        }
    }
    if let Some(v) = text("scope") {
        match Scope::new(v) {
            Ok(s) => f = f.scope(s),
            Err(_) => errors.push(("scope", "Not a scope (e.g. projects:read).".to_owned())),
        }
    }
    (f, errors)
}

async fn list(c: &Console, ctx: &Ctx, op: &Operator, query: &str, mine: bool) -> Response {
    let now = c.keygate.manager().now();
    let q = Form(parse_pairs(query.as_bytes()));
    let (mut filter, mut errors) = filter_of(&q, now);
    if mine {
        filter = filter.owner(op.actor().owner());
    }
    let after = match q.get("after") {
        "" => None,
        a => match a.parse::<Cursor>() {
            Ok(c) => Some(c),
            Err(_) => {
                errors.push((
                    "after",
                    "That page link is not valid; showing the first page.".to_owned(),
                ));
                None
            }
        },
    };
    let page_req = PageRequest {
        limit: PAGE_SIZE,
        after,
    };
    let page_res = if errors.iter().any(|(f, _)| *f != "after") {
        None
    } else {
        match c
            .keygate
            .manager()
            .acting_as(op.actor())
            .list(&filter, &page_req)
            .await
        {
            Ok(p) => Some(p),
            Err(e) => return error_page(c, ctx, &e),
        }
    };
    let here = if mine { "/my" } else { "/tokens" };
    let next_link = page_res.as_ref().and_then(|p| p.next.as_ref()).map(|cur| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &q.0 {
            if k != "after" && !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        s.append_pair("after", &cur.to_string());
        format!("{}{here}?{}", ctx.base, s.finish())
    });
    let title = if mine { "My tokens" } else { "Tokens" };
    let text_filter = |name: &'static str, label: &str| {
        html! {
            div {
                label for={ "q-" (name) } { (label) }
                input type="text" id={ "q-" (name) } name=(name) value=(q.get(name))
                    aria-invalid=[has_error(&errors, name).then_some("true")];
                (field_error(&errors, name))
            }
        }
    };
    let select = |name: &'static str, label: &str, options: &[(&str, &str)]| {
        html! {
            div {
                label for={ "q-" (name) } { (label) }
                select id={ "q-" (name) } name=(name) {
                    option value="" { "any" }
                    @for (v, l) in options {
                        option value=(v) selected[q.get(name) == *v] { (l) }
                    }
                }
                (field_error(&errors, name))
            }
        }
    };
    let body = html! {
        h1 { (title) }
        form.filters method="get" action={ (ctx.base) (here) } role="search" aria-label="Filter tokens" {
            (text_filter("name", "Name"))
            @if !mine { (text_filter("owner", "Owner")) }
            (text_filter("created_by", "Created by"))
            (select("status", "Status", &[("enabled", "enabled"), ("disabled", "disabled"), ("revoked", "revoked")]))
            (select("expires", "Expiry", &[("expired", "expired"), ("7d", "within 7 days"), ("30d", "within 30 days")]))
            (text_filter("project", "Project"))
            (text_filter("scope", "Scope"))
            div { button type="submit" { "Filter" } " " a href={ (ctx.base) (here) } { "Clear" } }
        }
        (field_error(&errors, "after"))
        @if let Some(p) = &page_res {
            form method="post" action={ (ctx.base) "/tokens/bulk" } {
                (csrf(ctx))
                input type="hidden" name="back" value=(here);
                div.actions {
                    span { "With the selected tokens:" }
                    button type="submit" name="action" value="enable" data-confirm="Enable the selected tokens?" { "Enable" }
                    button type="submit" name="action" value="disable" data-confirm="Disable the selected tokens? They stop working until enabled." { "Disable" }
                    button.danger type="submit" name="action" value="revoke" data-confirm="Revoke the selected tokens? This cannot be undone." { "Revoke" }
                    a.button href={ (ctx.base) "/new" } { "Create token" }
                }
                table {
                    caption.visually-hidden { (title) }
                    thead { tr {
                        th scope="col" {
                            input #select-all type="checkbox" aria-label="Select all" hidden;
                        }
                        th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Owner" }
                        th scope="col" { "Status" } th scope="col" { "Scopes" } th scope="col" { "Projects" }
                        th scope="col" { "Expires" } th scope="col" { "Last used" } th scope="col" { "Created by" }
                    } }
                    tbody {
                        @for r in &p.items {
                            tr {
                                td { input type="checkbox" name="id" value=(r.id.as_str()) aria-label={ "Select " (r.name) }; }
                                td { a href={ (ctx.base) "/tokens/" (r.id.as_str()) } { (r.name) } }
                                td.mono { (r.id.as_str()) }
                                td { (r.owner) }
                                td {
                                    (pages::status_badge(r))
                                    @if r.status != TokenStatus::Revoked {
                                        " "
                                        @let to = if r.status == TokenStatus::Active { "disabled" } else { "enabled" };
                                        button.link type="submit" formaction={ (ctx.base) "/tokens/" (r.id.as_str()) "/status" }
                                            name="to" value=(to)
                                            aria-label={ (if to == "disabled" { "Disable " } else { "Enable " }) (r.name) } {
                                            (if to == "disabled" { "disable" } else { "enable" })
                                        }
                                    }
                                }
                                td.mono { @for s in r.scopes.iter() { (s.as_str()) " " } }
                                td { (pages::projects(&r.projects)) }
                                td { (pages::expiry(&r.expiry, now)) }
                                td { @match r.last_used_at { Some(at) => (pages::relative(at, now)), None => "never" } }
                                td.mono { (r.created_by) }
                            }
                        }
                    }
                }
                @if p.items.is_empty() { p { "No tokens match." } }
            }
            div.actions {
                @if !q.get("after").is_empty() {
                    a href={ (ctx.base) (here) } { "First page" }
                }
                @if let Some(n) = &next_link { a href=(n) rel="next" { "Next page" } }
            }
        }
    };
    page(c, ctx, title, body)
}

async fn bulk(
    State(c): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Extension(form): Extension<Form>,
) -> Response {
    let op = match signed_in(&c, &ctx) {
        Ok(op) => op,
        Err(r) => return r,
    };
    let action = match form.get("action") {
        "enable" => BulkAction::Enable,
        "disable" => BulkAction::Disable,
        "revoke" => BulkAction::Revoke,
        _ => {
            return message(
                &c,
                &ctx,
                StatusCode::UNPROCESSABLE_ENTITY,
                "Refused",
                "Unknown action; nothing was changed.",
            );
        }
    };
    let mut ids = Vec::new();
    for raw in form.all("id") {
        match TokenId::new(raw) {
            Ok(id) => ids.push(id),
            Err(_) => {
                return message(
                    &c,
                    &ctx,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Refused",
                    "A selected id is not valid; nothing was changed.",
                );
            }
        }
    }
    if ids.is_empty() {
        return message(
            &c,
            &ctx,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Nothing selected",
            "Tick the tokens to change first.",
        );
    }
    if !form.confirmed() {
        let verb = form.get("action");
        return confirm_page(
            &c,
            &ctx,
            &format!("{}/tokens/bulk", ctx.base),
            &form,
            &format!(
                "{verb} {} token(s)?{}",
                ids.len(),
                if action == BulkAction::Revoke {
                    " Revoking cannot be undone."
                } else {
                    ""
                }
            ),
        );
    }
    // Self-service: another owner's token fails as not found, without being touched.
    let mut foreign = Vec::new();
    if op.mode() == Mode::SelfService {
        let mut own = Vec::new();
        for id in ids {
            match load(&c, &op, id.as_str()).await {
                Ok(_) => own.push(id),
                Err(_) => foreign.push(id),
            }
        }
        ids = own;
    }
    let report = if ids.is_empty() {
        crate::manager::BulkReport::default()
    } else {
        match c
            .keygate
            .manager()
            .acting_as(op.actor())
            .bulk(action, Selection::Ids(ids))
            .await
        {
            Ok(r) => r,
            Err(e) => return error_page(&c, &ctx, &e),
        }
    };
    let back = if form.get("back") == "/my" {
        "/my"
    } else {
        "/tokens"
    };
    let body = html! {
        h1 { "Result" }
        table {
            thead { tr { th scope="col" { "Token" } th scope="col" { "Result" } } }
            tbody {
                @for id in &report.changed { tr { td.mono { (id.as_str()) } td.active { "changed" } } }
                @for id in &report.unchanged { tr { td.mono { (id.as_str()) } td { "already so" } } }
                @for (id, e) in &report.failed { tr { td.mono { (id.as_str()) } td.revoked { "failed: " (e.to_string()) } } }
                @for id in &foreign { tr { td.mono { (id.as_str()) } td.revoked { "failed: not found" } } }
            }
        }
        p { a href={ (ctx.base) (back) } { "Back to the list" } }
    };
    page(&c, &ctx, "Result", body)
}

// ----- create --------------------------------------------------------------------------------

/// What a create or edit form shows: the values submitted (or the defaults).
struct Draft<'a> {
    form: &'a Form,
    errors: Vec<(&'static str, String)>,
}

fn expiry_choice(
    form: &Form,
    field: &str,
    date_field: &str,
    keep: bool,
) -> Result<Option<ExpiryPreset>, String> {
    Ok(Some(match form.get(field) {
        "keep" if keep => return Ok(None),
        "" if keep => return Ok(None),
        "7d" => ExpiryPreset::Days7,
        "30d" | "" => ExpiryPreset::Days30,
        "60d" => ExpiryPreset::Days60,
        "90d" => ExpiryPreset::Days90,
        "never" => ExpiryPreset::Never,
        "custom" => {
            let d = NaiveDate::parse_from_str(form.get(date_field).trim(), "%Y-%m-%d")
                .map_err(|_| "Pick a date for the custom expiry.".to_owned())?;
            let at = d
                .and_hms_opt(23, 59, 59)
                .ok_or_else(|| "Pick a date for the custom expiry.".to_owned())?
                .and_utc();
            ExpiryPreset::At(at)
        }
        _ => return Err("Pick an expiry from the list.".to_owned()),
    }))
}

/// The scopes a form asks for: super admin, or the ticked catalogue scopes and templates.
/// `kept`: scopes outside the catalogue the token already holds (edit).
fn scopes_of(c: &Console, form: &Form, kept: &ScopeSet) -> Result<ScopeSet, String> {
    if form.get("permissions") == "admin" {
        return Ok(ScopeSet::from_iter([Scope::admin()]));
    }
    let mut set = ScopeSet::new();
    for raw in form.all("scope") {
        let s = Scope::new(raw).map_err(|_| format!("`{raw}` is not a scope."))?;
        if !c.catalogue.iter().any(|e| e.scope == s) && !kept.contains(&s) {
            return Err(format!("`{raw}` is not offered here."));
        }
        set.insert(s);
    }
    for name in form.all("template") {
        let Some((_, t)) = c.templates.iter().find(|(n, _)| n == name) else {
            return Err("Unknown template.".to_owned());
        };
        for s in t.iter() {
            set.insert(s.clone());
        }
    }
    Ok(set)
}

fn projects_of(c: &Console, form: &Form) -> Result<Projects, String> {
    if form.get("projects") != "some" {
        return Ok(Projects::All);
    }
    let mut ids = Vec::new();
    for raw in form.all("project") {
        let p = ProjectId::new(raw).map_err(|_| format!("`{raw}` is not a project."))?;
        if !c.projects.iter().any(|(id, _)| *id == p) {
            return Err(format!("`{raw}` is not offered here."));
        }
        ids.push(p);
    }
    if ids.is_empty() {
        return Err("Tick at least one project, or choose all projects.".to_owned());
    }
    Projects::only(ids.iter().map(|p| p.as_str())).map_err(|e| e.to_string())
}

/// The field an error of the manager belongs to.
fn field_of(e: &Error) -> &'static str {
    match e {
        Error::InvalidId(_) | Error::AlreadyExists(_) => "id",
        Error::InvalidField { field, .. } | Error::TooLarge { field, .. } => match *field {
            "name" => "name",
            "description" => "description",
            "owner" => "owner",
            "scopes" => "scopes",
            "projects" => "projects",
            "allowed_ips" => "allowed_ips",
            _ => "form",
        },
        Error::InvalidExpiry(_) | Error::Policy(_) => "expiry",
        Error::InvalidScope(_) => "scopes",
        Error::InvalidProject(_) => "projects",
        Error::Escalation(a) | Error::Access(a) => match a {
            AccessError::MissingScope(_) => "scopes",
            AccessError::ProjectsNotCovered | AccessError::ProjectDenied(_) => "projects",
            AccessError::OtherOwner => "owner",
            AccessError::BeyondLifetime => "expiry",
            AccessError::IpsNotCovered => "allowed_ips",
        },
        _ => "form",
    }
}

fn message_of(e: &Error) -> String {
    match e {
        Error::AlreadyExists(_) => "This id is taken; choose another.".to_owned(),
        Error::Escalation(AccessError::MissingScope(s)) => {
            format!("You may not grant `{}`: you do not hold it.", s.as_str())
        }
        Error::Escalation(AccessError::OtherOwner) => {
            "You may create tokens only for yourself.".to_owned()
        }
        Error::Escalation(AccessError::BeyondLifetime) => {
            "You may not grant a lifetime beyond your own token's.".to_owned()
        }
        Error::Escalation(AccessError::ProjectsNotCovered) => {
            "You may not grant projects beyond your own.".to_owned()
        }
        Error::Escalation(AccessError::IpsNotCovered) => {
            "You may allow only addresses inside your own token's IP ranges.".to_owned()
        }
        e => e.to_string(),
    }
}

fn expiry_fields(
    c: &Console,
    op: &Operator,
    form: &Form,
    errors: &[(&'static str, String)],
    keep: bool,
    field: &'static str,
) -> Markup {
    let policy = c.keygate.manager().expiry_policy();
    let never_ok = !policy.requires_expiry() && op.actor().expiry() == Expiry::Never;
    let current = match form.get(field) {
        "" if keep => "keep",
        "" => "30d",
        v => v,
    };
    let date_field = if field == "expiry" {
        "expiry_date"
    } else {
        "regen_date"
    };
    let mut options: Vec<(&str, &str)> = Vec::new();
    if keep {
        options.push(("keep", "keep the current expiry"));
    }
    options.extend([
        ("7d", "7 days"),
        ("30d", "30 days"),
        ("60d", "60 days"),
        ("90d", "90 days"),
        ("custom", "custom date"),
    ]);
    if never_ok {
        options.push(("never", "never"));
    }
    html! {
        fieldset aria-describedby={ "h-" (field) } {
            legend { "Expiry" }
            @for (v, l) in &options {
                span.choice {
                    input type="radio" name=(field) id={ "f-" (field) "-" (v) } value=(v) checked[current == *v];
                    label.inline for={ "f-" (field) "-" (v) } { (l) }
                }
            }
            div {
                label for={ "f-" (date_field) } { "Custom date" }
                input type="date" id={ "f-" (date_field) } name=(date_field) value=(form.get(date_field));
            }
            p.hint id={ "h-" (field) } {
                @if let Some(cap) = policy.lifetime_cap() {
                    "The policy allows at most " (cap.as_secs() / 86_400) " days. "
                }
                @if let Expiry::At(at) = op.actor().expiry() {
                    "Your own token expires " (at.format("%Y-%m-%d %H:%M UTC").to_string()) "; no later than that."
                }
            }
            (field_error(errors, field))
        }
    }
}

fn scope_fields(
    c: &Console,
    op: &Operator,
    form: &Form,
    errors: &[(&'static str, String)],
    extra: &ScopeSet,
) -> Markup {
    let actor = op.actor().scopes();
    let admin_ok = actor.is_admin();
    let specific = form.get("permissions") != "admin";
    let mut groups: Vec<&str> = Vec::new();
    for e in &c.catalogue {
        if !groups.contains(&e.group.as_str()) {
            groups.push(&e.group);
        }
    }
    let ticked: Vec<&str> = form.all("scope");
    html! {
        fieldset aria-describedby="e-scopes" {
            legend { "Permissions" }
            @if admin_ok {
                input type="radio" name="permissions" id="f-perm-admin" value="admin" checked[!specific];
                label.inline for="f-perm-admin" { "Super admin (every scope)" }
            }
            input type="radio" name="permissions" id="f-perm-specific" value="specific" checked[specific];
            label.inline for="f-perm-specific" { "Specific permissions" }
            @if !c.templates.is_empty() {
                fieldset {
                    legend { "Templates" }
                    @for (name, set) in &c.templates {
                        @if actor.grants_all(set) {
                            @let sid = format!("f-tpl-{}", c.templates.iter().position(|(n, _)| n == name).unwrap_or(0));
                            input type="checkbox" name="template" id=(sid) value=(name)
                                data-scopes=(set.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "))
                                checked[form.all("template").contains(&name.as_str())];
                            label.inline for=(sid) { (name) " " span.hint { "(" (set.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")) ")" } }
                        }
                    }
                }
            }
            @for g in &groups {
                fieldset {
                    legend { (g) }
                    @for (i, e) in c.catalogue.iter().enumerate() {
                        @if e.group == *g && actor.grants(&e.scope) {
                            div {
                                input type="checkbox" name="scope" id={ "f-scope-" (i) } value=(e.scope.as_str())
                                    checked[ticked.contains(&e.scope.as_str())];
                                label.inline for={ "f-scope-" (i) } { (e.label) " " code { (e.scope.as_str()) } }
                                @if !e.description.is_empty() { p.hint { (e.description) } }
                            }
                        }
                    }
                }
            }
            @for (i, s) in extra.iter().enumerate() {
                @if !c.catalogue.iter().any(|e| e.scope == *s) && !s.is_admin() {
                    div {
                        input type="checkbox" name="scope" id={ "f-kept-" (i) } value=(s.as_str())
                            checked[ticked.contains(&s.as_str())];
                        label.inline for={ "f-kept-" (i) } { code { (s.as_str()) } }
                    }
                }
            }
            (field_error(errors, "scopes"))
        }
    }
}

const ALLOWED_IPS_HINT: &str =
    "Comma-separated CIDR ranges, e.g. 10.0.0.0/8, 2001:db8::/32. Empty: any client.";

/// The `allowed_ips` field: comma-separated CIDR ranges (or bare addresses), empty for any.
fn allowed_ips_of(form: &Form) -> Result<Vec<crate::ip::IpNet>, String> {
    let ranges = form
        .get("allowed_ips")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty());
    crate::ip::parse_list(ranges)
        .map_err(|_| "Not a list of CIDR ranges (e.g. 10.0.0.0/8, 2001:db8::/32).".to_owned())
}

fn project_fields(c: &Console, form: &Form, errors: &[(&'static str, String)]) -> Markup {
    let some = form.get("projects") == "some";
    let ticked = form.all("project");
    html! {
        fieldset aria-describedby="e-projects" {
            legend { "Projects" }
            input type="radio" name="projects" id="f-proj-all" value="all" checked[!some];
            label.inline for="f-proj-all" { "All projects" }
            @if !c.projects.is_empty() {
                input type="radio" name="projects" id="f-proj-some" value="some" checked[some];
                label.inline for="f-proj-some" { "Only these:" }
                @for (i, (id, label)) in c.projects.iter().enumerate() {
                    input type="checkbox" name="project" id={ "f-project-" (i) } value=(id.as_str())
                        checked[ticked.contains(&id.as_str())];
                    label.inline for={ "f-project-" (i) } { (label) }
                }
            }
            (field_error(errors, "projects"))
        }
    }
}

fn text_field(
    name: &'static str,
    label: &str,
    value: &str,
    errors: &[(&'static str, String)],
    required: bool,
    hint: Option<&str>,
) -> Markup {
    let bad = has_error(errors, name);
    let described = match (bad, hint.is_some()) {
        (true, _) => Some(format!("e-{name}")),
        (false, true) => Some(format!("h-{name}")),
        _ => None,
    };
    html! {
        label for={ "f-" (name) } { (label) @if !required { " " span.hint { "(optional)" } } }
        @if name == "description" {
            textarea id={ "f-" (name) } name=(name) aria-invalid=[bad.then_some("true")] aria-describedby=[described.clone()] { (value) }
        } @else {
            input type="text" id={ "f-" (name) } name=(name) value=(value) required[required]
                pattern=[(name == "id").then_some("[a-z0-9_\\-]+")]
                aria-invalid=[bad.then_some("true")] aria-describedby=[described];
        }
        @if let Some(h) = hint { p.hint id={ "h-" (name) } { (h) } }
        @if name == "id" { p.error id="f-id-live" aria-live="polite" {} }
        (field_error(errors, name))
    }
}

fn new_form(c: &Console, ctx: &Ctx, op: &Operator, d: &Draft<'_>) -> Response {
    let f = d.form;
    let enabled = f.0.is_empty() || f.get("enabled") == "on";
    let body = html! {
        h1 { "Create token" }
        @if has_error(&d.errors, "form") { div.banner.bad role="alert" { @for (k, m) in &d.errors { @if *k == "form" { (m) } } } }
        form method="post" action={ (ctx.base) "/new" } novalidate {
            (csrf(ctx))
            div.grid2 {
                div {
                    (text_field("name", "Name", f.get("name"), &d.errors, true, None))
                    (text_field("id", "Id", f.get("id"), &d.errors, false, Some("Lower-case letters, digits, - and _; generated when empty.")))
                    (text_field("description", "Description", f.get("description"), &d.errors, false, None))
                    @if op.mode() == Mode::Operator {
                        (text_field("owner", "Owner", if f.0.is_empty() { op.actor().owner() } else { f.get("owner") }, &d.errors, true, Some("The user or service the token acts for.")))
                    } @else {
                        p { "Owner: " strong { (op.actor().owner()) } }
                    }
                    div {
                        input type="checkbox" id="f-enabled" name="enabled" checked[enabled];
                        label.inline for="f-enabled" { "Enabled (untick to create it disabled)" }
                    }
                    (expiry_fields(c, op, f, &d.errors, false, "expiry"))
                    (text_field("allowed_ips", "Allowed IP ranges",
                        &if f.0.is_empty() { pages::allowed_ips(&op.actor().record().allowed_ips) } else { f.get("allowed_ips").to_owned() },
                        &d.errors, false, Some(ALLOWED_IPS_HINT)))
                }
                div {
                    (scope_fields(c, op, f, &d.errors, &ScopeSet::new()))
                    (project_fields(c, f, &d.errors))
                }
            }
            div.actions { button.primary type="submit" { "Create token" } a href={ (ctx.base) "/" } { "Cancel" } }
        }
    };
    let status = if d.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (status, page(c, ctx, "Create token", body)).into_response()
}

async fn new_page(State(c): State<Shared>, Extension(ctx): Extension<Ctx>) -> Response {
    let op = match signed_in(&c, &ctx) {
        Ok(op) => op,
        Err(r) => return r,
    };
    new_form(
        &c,
        &ctx,
        &op,
        &Draft {
            form: &Form::default(),
            errors: Vec::new(),
        },
    )
}

async fn create(
    State(c): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Extension(form): Extension<Form>,
) -> Response {
    let op = match signed_in(&c, &ctx) {
        Ok(op) => op,
        Err(r) => return r,
    };
    let mut errors = Vec::new();
    let name = form.get("name").trim();
    if name.is_empty() {
        errors.push(("name", "Give the token a name.".to_owned()));
    }
    let id = match form.get("id").trim() {
        "" => None,
        raw => match TokenId::new(raw) {
            Ok(id) => Some(id),
            Err(_) => {
                errors.push((
                    "id",
                    "Use lower-case letters, digits, - and _ only.".to_owned(),
                ));
                None
            }
        },
    };
    let owner = match op.mode() {
        Mode::SelfService => op.actor().owner().to_owned(),
        Mode::Operator => form.get("owner").trim().to_owned(),
    };
    if owner.is_empty() {
        errors.push(("owner", "Name the owner.".to_owned()));
    }
    let expiry = expiry_choice(&form, "expiry", "expiry_date", false).unwrap_or_else(|e| {
        errors.push(("expiry", e));
        None
    });
    let scopes = scopes_of(&c, &form, &ScopeSet::new()).unwrap_or_else(|e| {
        errors.push(("scopes", e));
        ScopeSet::new()
    });
    let projects = projects_of(&c, &form).unwrap_or_else(|e| {
        errors.push(("projects", e));
        Projects::All
    });
    let allowed_ips = allowed_ips_of(&form).unwrap_or_else(|e| {
        errors.push(("allowed_ips", e));
        Vec::new()
    });
    if !errors.is_empty() {
        return new_form(
            &c,
            &ctx,
            &op,
            &Draft {
                form: &form,
                errors,
            },
        );
    }
    let mut req = IssueRequest::new(name, owner)
        .description(form.get("description").trim())
        .scopes(scopes)
        .projects(projects)
        .allowed_ips(allowed_ips);
    if let Some(id) = id {
        req = req.id(id);
    }
    if let Some(e) = expiry {
        req = req.expiry(e);
    }
    if form.get("enabled") != "on" {
        req = req.disabled();
    }
    match c.keygate.manager().acting_as(op.actor()).issue(req).await {
        Ok(issued) => show_next(&c, &ctx, issued),
        Err(e @ Error::Store(_)) => error_page(&c, &ctx, &e),
        Err(e) => {
            let errors = vec![(field_of(&e), message_of(&e))];
            new_form(
                &c,
                &ctx,
                &op,
                &Draft {
                    form: &form,
                    errors,
                },
            )
        }
    }
}

/// Keeps the plaintext in the session and sends the browser to the page that shows it once.
fn show_next(c: &Console, ctx: &Ctx, issued: crate::IssuedToken) -> Response {
    let now = c.keygate.manager().now();
    let id = issued.id().clone();
    let secret = Zeroizing::new(issued.expose_secret().to_owned());
    c.sessions
        .with(&ctx.sid, now, |s| s.shown_once = Some((id.clone(), secret)));
    Redirect::to(&format!("{}/shown/{}", ctx.base, id.as_str())).into_response()
}

async fn shown_once(
    State(c): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = signed_in(&c, &ctx) {
        return r;
    }
    let now = c.keygate.manager().now();
    let secret = c
        .sessions
        .with(&ctx.sid, now, |s| match &s.shown_once {
            Some((shown, _)) if shown.as_str() == id => s.shown_once.take().map(|(_, t)| t),
            _ => None,
        })
        .flatten();
    let body = html! {
        @match &secret {
            Some(t) => {
                h1 { "Your new token" }
                div.banner.ok role="status" { "Copy it now: it cannot be viewed again." }
                div.secret {
                    code #token { (t.as_str()) }
                    button type="button" data-copy="token" data-status="copy-status" hidden { "Copy" }
                    span #copy-status aria-live="polite" {}
                }
                p { "Store it somewhere safe, such as your CI's secret store. If it is lost, regenerate it." }
            }
            None => {
                h1 { "Token not shown" }
                p { "A token is shown only once, right after it is created or regenerated. It cannot be viewed again." }
            }
        }
        p { a href={ (ctx.base) "/tokens/" (id) } { "Go to the token's details" } }
    };
    page(&c, &ctx, "Token", body)
}

// ----- details -------------------------------------------------------------------------------

async fn details(
    State(c): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Response {
    let (op, r) = match operator_and_token(&c, &ctx, &id).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let form = record_form(&r);
    details_page(&c, &ctx, &op, &r, &form, Vec::new(), StatusCode::OK).await
}

/// The edit form's values for a record.
fn record_form(r: &TokenRecord) -> Form {
    let mut v = vec![
        ("name".to_owned(), r.name.clone()),
        ("description".to_owned(), r.description.clone()),
        ("allowed_ips".to_owned(), pages::allowed_ips(&r.allowed_ips)),
        (
            "permissions".to_owned(),
            if r.scopes.is_admin() {
                "admin"
            } else {
                "specific"
            }
            .to_owned(),
        ),
    ];
    for s in r.scopes.iter() {
        v.push(("scope".to_owned(), s.as_str().to_owned()));
    }
    match &r.projects {
        Projects::All => v.push(("projects".to_owned(), "all".to_owned())),
        Projects::Only(set) => {
            v.push(("projects".to_owned(), "some".to_owned()));
            for p in set {
                v.push(("project".to_owned(), p.as_str().to_owned()));
            }
        }
    }
    Form(v)
}

async fn details_page(
    c: &Console,
    ctx: &Ctx,
    op: &Operator,
    r: &TokenRecord,
    form: &Form,
    errors: Vec<(&'static str, String)>,
    status: StatusCode,
) -> Response {
    let now = c.keygate.manager().now();
    let activity = match &c.activity {
        Some(a) => Some(a.recent(&r.id, 20).await),
        None => None,
    };
    let base = format!("{}/tokens/{}", ctx.base, r.id.as_str());
    let revoked = r.status == TokenStatus::Revoked;
    let body = html! {
        h1 { (r.name) " " (pages::status_badge(r)) }
        @if has_error(&errors, "form") { div.banner.bad role="alert" { @for (k, m) in &errors { @if *k == "form" { (m) } } } }
        dl.facts {
            dt { "Id" } dd.mono { (r.id.as_str()) }
            dt { "Owner" } dd { (r.owner) }
            dt { "Created by" } dd.mono { (r.created_by) }
            dt { "Created" } dd { (pages::instant(r.created_at, now)) }
            dt { "Expires" } dd { (pages::expiry(&r.expiry, now)) }
            dt { "Last used" } dd { @match r.last_used_at { Some(at) => (pages::instant(at, now)), None => "never" } }
            dt { "Scopes" } dd.mono { @for s in r.scopes.iter() { (s.as_str()) " " } }
            dt { "Projects" } dd { (pages::projects(&r.projects)) }
            dt { "Allowed IPs" } dd.mono { @if r.allowed_ips.is_empty() { "any client" } @else { (pages::allowed_ips(&r.allowed_ips)) } }
        }
        @if !revoked {
            h2 { "Status" }
            form method="post" action={ (base) "/status" } {
                (csrf(ctx))
                @if r.status == TokenStatus::Active {
                    input type="hidden" name="to" value="disabled";
                    button type="submit" { "Disable" }
                } @else {
                    input type="hidden" name="to" value="enabled";
                    button type="submit" { "Enable" }
                }
            }
            h2 { "Edit" }
            form method="post" action=(base) novalidate {
                (csrf(ctx))
                input type="hidden" name="version" value=(r.version);
                div.grid2 {
                    div {
                        (text_field("name", "Name", form.get("name"), &errors, true, None))
                        (text_field("description", "Description", form.get("description"), &errors, false, None))
                        (expiry_fields(c, op, form, &errors, true, "expiry"))
                        (text_field("allowed_ips", "Allowed IP ranges", form.get("allowed_ips"), &errors, false,
                            Some(ALLOWED_IPS_HINT)))
                    }
                    div {
                        (scope_fields(c, op, form, &errors, &r.scopes))
                        (project_fields(c, form, &errors))
                    }
                }
                div.actions { button.primary type="submit" { "Save changes" } }
            }
            h2 { "Regenerate" }
            form method="post" action={ (base) "/regenerate" } {
                (csrf(ctx))
                input type="hidden" name="version" value=(r.version);
                (expiry_fields(c, op, &Form::default(), &errors, true, "regen_expiry"))
                label for="f-grace" { "Grace period of the current value" }
                select #f-grace name="grace" aria-describedby="h-grace" {
                    option value="0s" { "none: it stops working now" }
                    option value="1h" { "1 hour" }
                    option value="24h" { "24 hours" }
                    option value="7d" { "7 days" }
                }
                p.hint #h-grace { "The current value keeps working only during the grace period." }
                (field_error(&errors, "grace"))
                div.actions {
                    button type="submit" data-confirm="Regenerate this token? The current value stops working (after the grace period, if any)." { "Regenerate" }
                }
            }
            h2 { "Revoke" }
            form method="post" action={ (base) "/revoke" } {
                (csrf(ctx))
                p { "A revoked token stops working for good; its record stays for the audit." }
                button.danger type="submit" data-confirm="Revoke this token? This cannot be undone." { "Revoke" }
            }
        }
        h2 { "Delete" }
        form method="post" action={ (base) "/delete" } {
            (csrf(ctx))
            p { "Deleting removes the record." }
            button.danger type="submit" data-confirm="Delete this token? This cannot be undone." { "Delete" }
        }
        h2 { "Recent activity" }
        @match &activity {
            None => p.hint { "Activity is not recorded here." }
            Some(Err(_)) => p.error { "The activity log is unavailable." }
            Some(Ok(events)) if events.is_empty() => p { "No recent activity." }
            Some(Ok(events)) => table {
                thead { tr { th scope="col" { "When" } th scope="col" { "Event" } th scope="col" { "By" } } }
                tbody {
                    @for e in events {
                        tr {
                            td { (e.at.format("%Y-%m-%d %H:%M:%S UTC").to_string()) }
                            td.mono { (e.kind.owasp_name()) }
                            td.mono { (e.actor.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    };
    (status, page(c, ctx, &r.name, body)).into_response()
}

async fn edit(
    State(c): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Extension(form): Extension<Form>,
    Path(id): Path<String>,
) -> Response {
    let (op, r) = match operator_and_token(&c, &ctx, &id).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let mut errors = Vec::new();
    let name = form.get("name").trim();
    if name.is_empty() {
        errors.push(("name", "Give the token a name.".to_owned()));
    }
    let expiry = expiry_choice(&form, "expiry", "expiry_date", true).unwrap_or_else(|e| {
        errors.push(("expiry", e));
        None
    });
    let scopes = scopes_of(&c, &form, &r.scopes).unwrap_or_else(|e| {
        errors.push(("scopes", e));
        ScopeSet::new()
    });
    let projects = projects_of(&c, &form).unwrap_or_else(|e| {
        errors.push(("projects", e));
        Projects::All
    });
    let allowed_ips = allowed_ips_of(&form).unwrap_or_else(|e| {
        errors.push(("allowed_ips", e));
        r.allowed_ips.clone()
    });
    let version = form.get("version").parse::<u64>().ok();
    if !errors.is_empty() {
        return details_page(
            &c,
            &ctx,
            &op,
            &r,
            &form,
            errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let mut change = TokenUpdate::new()
        .name(name)
        .description(form.get("description").trim())
        .scopes(scopes)
        .projects(projects);
    // Only a changed list is sent: an unchanged one needs no delegation check.
    if allowed_ips != r.allowed_ips {
        change = change.allowed_ips(allowed_ips);
    }
    if let Some(e) = expiry {
        change = change.expiry(e);
    }
    if let Some(v) = version {
        change = change.expected_version(v);
    }
    match c
        .keygate
        .manager()
        .acting_as(op.actor())
        .update(&r.id, change)
        .await
    {
        Ok(_) => Redirect::to(&format!("{}/tokens/{}", ctx.base, r.id.as_str())).into_response(),
        Err(e @ Error::Store(_)) => error_page(&c, &ctx, &e),
        Err(e) => {
            let msg = match &e {
                Error::VersionMismatch { .. } => {
                    "The token changed meanwhile; reload and try again.".to_owned()
                }
                e => message_of(e),
            };
            let field = field_of(&e);
            details_page(
                &c,
                &ctx,
                &op,
                &r,
                &form,
                vec![(field, msg)],
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

async fn set_status(
    State(c): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Extension(form): Extension<Form>,
    Path(id): Path<String>,
) -> Response {
    let (op, r) = match operator_and_token(&c, &ctx, &id).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let to = match form.get("to") {
        "enabled" => TokenStatus::Active,
        "disabled" => TokenStatus::Disabled,
        _ => {
            return message(
                &c,
                &ctx,
                StatusCode::UNPROCESSABLE_ENTITY,
                "Refused",
                "Unknown status; nothing was changed.",
            );
        }
    };
    match c
        .keygate
        .manager()
        .acting_as(op.actor())
        .set_status(&r.id, to)
        .await
    {
        Ok(_) => {
            let back = match form.get("back") {
                "/my" => format!("{}/my", ctx.base),
                "/tokens" if op.mode() == Mode::Operator => format!("{}/tokens", ctx.base),
                _ => format!("{}/tokens/{}", ctx.base, r.id.as_str()),
            };
            Redirect::to(&back).into_response()
        }
        Err(e) => error_page(&c, &ctx, &e),
    }
}

async fn regenerate(
    State(c): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Extension(form): Extension<Form>,
    Path(id): Path<String>,
) -> Response {
    let (op, r) = match operator_and_token(&c, &ctx, &id).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let expiry = match expiry_choice(&form, "regen_expiry", "regen_date", true) {
        Ok(e) => e,
        Err(m) => {
            return details_page(
                &c,
                &ctx,
                &op,
                &r,
                &record_form(&r),
                vec![("regen_expiry", m)],
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    let grace = match crate::expiry::parse_duration(form.get("grace")) {
        Some(g) => g,
        None if form.get("grace").is_empty() => std::time::Duration::ZERO,
        None => {
            return details_page(
                &c,
                &ctx,
                &op,
                &r,
                &record_form(&r),
                vec![("grace", "Pick a grace period from the list.".to_owned())],
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    if !form.confirmed() {
        return confirm_page(
            &c,
            &ctx,
            &format!("{}/tokens/{}/regenerate", ctx.base, r.id.as_str()),
            &form,
            "Regenerate this token? The current value stops working (after the grace period, if any).",
        );
    }
    let mut req = RotateRequest::new().grace(grace).end_grace();
    if let Some(e) = expiry {
        req = req.expiry(e);
    }
    if let Ok(v) = form.get("version").parse::<u64>() {
        req = req.expected_version(v);
    }
    match c
        .keygate
        .manager()
        .acting_as(op.actor())
        .rotate(&r.id, req)
        .await
    {
        Ok(issued) => show_next(&c, &ctx, issued),
        Err(e @ Error::Store(_)) => error_page(&c, &ctx, &e),
        Err(e) => {
            let field = match field_of(&e) {
                "expiry" => "regen_expiry",
                _ => "form",
            };
            details_page(
                &c,
                &ctx,
                &op,
                &r,
                &record_form(&r),
                vec![(field, message_of(&e))],
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

async fn revoke(
    State(c): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Extension(form): Extension<Form>,
    Path(id): Path<String>,
) -> Response {
    for_good(&c, &ctx, &form, &id, ForGood::Revoke).await
}

async fn delete(
    State(c): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Extension(form): Extension<Form>,
    Path(id): Path<String>,
) -> Response {
    for_good(&c, &ctx, &form, &id, ForGood::Delete).await
}

/// The two changes that cannot be undone.
#[derive(Clone, Copy)]
enum ForGood {
    Revoke,
    Delete,
}

/// Revokes or deletes, once confirmed (by the dialog's `confirmed=yes` or the page).
async fn for_good(c: &Console, ctx: &Ctx, form: &Form, id: &str, what: ForGood) -> Response {
    let (op, r) = match operator_and_token(c, ctx, id).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let (path, question) = match what {
        ForGood::Revoke => (
            "revoke",
            "Revoke this token? It stops working for good. This cannot be undone.",
        ),
        ForGood::Delete => (
            "delete",
            "Delete this token? Its record is removed. This cannot be undone.",
        ),
    };
    if !form.confirmed() {
        let action = format!("{}/tokens/{}/{path}", ctx.base, r.id.as_str());
        return confirm_page(c, ctx, &action, form, question);
    }
    let manager = c.keygate.manager().acting_as(op.actor());
    let done = match what {
        ForGood::Revoke => manager
            .set_status(&r.id, TokenStatus::Revoked)
            .await
            .map(|_| format!("{}/tokens/{}", ctx.base, r.id.as_str())),
        ForGood::Delete => manager
            .delete(&r.id)
            .await
            .map(|()| format!("{}/", ctx.base)),
    };
    match done {
        Ok(to) => Redirect::to(&to).into_response(),
        Err(e) => error_page(c, ctx, &e),
    }
}
