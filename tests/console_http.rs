//! The web console over a real socket, without a browser: sign-in, CSRF, show-once, escaping,
//! and forged form posts refused with nothing changed.

#![cfg(feature = "console")]
#![expect(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

use axum::Router;
use keygate::audit::MemoryActivity;
use keygate::axum::Keygate;
use keygate::console::{ConsoleConfig, ScopeEntry};
use keygate::store::PageRequest;
use keygate::{IssueRequest, MemoryStore, ScopeSet, ServerKey, TokenId, TokenManager, TokenStatus};

struct Console {
    keygate: Keygate,
    base: String,
    http: reqwest::Client,
}

/// A browser-like session: its cookie and the last CSRF token seen.
struct Browser<'a> {
    console: &'a Console,
    cookie: String,
    csrf: String,
}

struct Page {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

async fn start() -> Console {
    let activity = MemoryActivity::new(20, 1000);
    let manager = TokenManager::builder(MemoryStore::new())
        .server_key(ServerKey::generate())
        .audit_sink(activity.clone())
        .build()
        .unwrap();
    let keygate = Keygate::new(manager);
    let config = ConsoleConfig::new()
        .scope(ScopeEntry::new(
            "projects:read",
            "Read projects",
            "Projects",
        ))
        .scope(ScopeEntry::new(
            "projects:write",
            "Change projects",
            "Projects",
        ))
        .project("website", "Website")
        .activity(activity);
    let app = Router::new().nest("/console", keygate.console(config).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap()
    });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Console {
        keygate,
        base: format!("http://{addr}/console"),
        http,
    }
}

impl Console {
    async fn token(&self, owner: &str, scopes: &[&str]) -> String {
        self.keygate
            .manager()
            .issue(
                IssueRequest::new(format!("{owner} console"), owner)
                    .scopes(ScopeSet::parse(scopes).unwrap())
                    .expiry(keygate::ExpiryPreset::Never),
            )
            .await
            .unwrap()
            .expose_secret()
            .to_owned()
    }

    async fn browser(&self) -> Browser<'_> {
        let mut b = Browser {
            console: self,
            cookie: String::new(),
            csrf: String::new(),
        };
        let p = b.get("/sign-in").await;
        assert_eq!(p.status, 200);
        b
    }

    async fn signed_in(&self, token: &str) -> Browser<'_> {
        let mut b = self.browser().await;
        let p = b.post("/sign-in", &[("token", token)]).await;
        assert_eq!(p.status, 303, "{}", p.text);
        b
    }

    async fn all(&self) -> Vec<keygate::TokenRecord> {
        self.keygate
            .manager()
            .list(&Default::default(), &PageRequest::first(1000))
            .await
            .unwrap()
            .items
    }
}

fn csrf_of(text: &str) -> Option<String> {
    let at = text.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    Some(text[at..].split('"').next()?.to_owned())
}

impl Browser<'_> {
    fn take(&mut self, resp: &reqwest::Response) {
        if let Some(c) = resp.headers().get("set-cookie") {
            let c = c.to_str().unwrap();
            assert!(c.starts_with("__Host-keygate-console="), "{c}");
            for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
                assert!(c.contains(attr), "{c} lacks {attr}");
            }
            self.cookie = c.split(';').next().unwrap().to_owned();
        }
    }

    async fn finish(&mut self, resp: reqwest::Response) -> Page {
        self.take(&resp);
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        if let Some(c) = csrf_of(&text) {
            self.csrf = c;
        }
        Page {
            status,
            headers,
            text,
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let resp = self
            .console
            .http
            .get(format!("{}{path}", self.console.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        self.finish(resp).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.csrf.clone();
        let mut all: Vec<(&str, &str)> = vec![("csrf", &csrf)];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    async fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let resp = self
            .console
            .http
            .post(format!("{}{path}", self.console.base))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        self.finish(resp).await
    }
}

fn location(p: &Page) -> String {
    p.headers["location"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_page_has_the_security_headers_and_sign_in_needs_the_console_scope() {
    let c = start().await;
    let mut b = c.browser().await;
    let p = b.get("/sign-in").await;
    let csp = p.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"));
    assert_eq!(p.headers["referrer-policy"], "no-referrer");
    assert_eq!(p.headers["cache-control"], "no-store");
    // Not signed in: the pages send to sign-in.
    assert!(location(&b.get("/tokens").await).ends_with("/console/sign-in"));
    // A valid token without tokens:console is refused, and so is garbage.
    let plain = c.token("alice", &["tokens:read", "tokens:write"]).await;
    for t in [plain.as_str(), "kg_nope_nope"] {
        let p = b.post("/sign-in", &[("token", t)]).await;
        assert_eq!(p.status, 401);
        assert!(!p.text.contains(t), "the pasted token is echoed");
    }
    let op = c.token("alice", &["tokens:*"]).await;
    let old_cookie = b.cookie.clone();
    let p = b.post("/sign-in", &[("token", &op)]).await;
    assert_eq!(p.status, 303);
    assert_ne!(b.cookie, old_cookie, "signing in starts a new session id");
    assert!(!location(&p).contains(&op));
    let p = b.get("/tokens").await;
    assert_eq!(p.status, 200);
    assert!(p.text.contains("Signed in as"));
    // Sign out ends the session.
    let p = b.post("/sign-out", &[]).await;
    assert_eq!(p.status, 303);
    assert!(location(&b.get("/tokens").await).ends_with("/sign-in"));
}

#[tokio::test]
async fn a_session_ends_when_its_token_is_disabled() {
    let c = start().await;
    let op = c.token("alice", &["tokens:*"]).await;
    let mut b = c.signed_in(&op).await;
    assert_eq!(b.get("/tokens").await.status, 200);
    let id = TokenId::new(op.split('_').nth(1).unwrap()).unwrap();
    c.keygate
        .manager()
        .allowing_no_admin()
        .disable(&id)
        .await
        .unwrap();
    assert_eq!(b.get("/tokens").await.status, 303);
}

#[tokio::test]
async fn missing_or_wrong_csrf_is_403_and_changes_nothing() {
    let c = start().await;
    let op = c.token("alice", &["tokens:*"]).await;
    let mut b = c.signed_in(&op).await;
    b.get("/new").await;
    let before = c.all().await.len();
    let fields = [("name", "x"), ("owner", "alice"), ("expiry", "7d")];
    let p = b.post_raw("/new", &fields).await;
    assert_eq!(p.status, 403);
    let mut wrong = vec![("csrf", "AAAA")];
    wrong.extend_from_slice(&fields);
    assert_eq!(b.post_raw("/new", &wrong).await.status, 403);
    assert_eq!(c.all().await.len(), before);
    // The sign-in form is protected too.
    let mut fresh = c.browser().await;
    let p = fresh.post_raw("/sign-in", &[("token", &op)]).await;
    assert_eq!(p.status, 403);
}

#[tokio::test]
async fn create_shows_the_token_once_never_in_a_url() {
    let c = start().await;
    let op = c.token("alice", &["tokens:*", "projects:*"]).await;
    let mut b = c.signed_in(&op).await;
    b.get("/new").await;
    for preset in ["7d", "30d", "60d", "90d", "never", "custom"] {
        let name = format!("ci {preset}");
        let p = b
            .post(
                "/new",
                &[
                    ("name", &name),
                    ("owner", "bob"),
                    ("expiry", preset),
                    ("expiry_date", "2099-01-31"),
                    ("permissions", "specific"),
                    ("scope", "projects:read"),
                    ("projects", "all"),
                    ("enabled", "on"),
                ],
            )
            .await;
        assert_eq!(p.status, 303, "{preset}: {}", p.text);
        let shown = location(&p);
        assert!(shown.contains("/shown/"));
        let p = b.get(&shown.replacen("/console", "", 1)).await;
        assert_eq!(p.headers["cache-control"], "no-store");
        assert!(p.text.contains("cannot be viewed again"));
        let token = p
            .text
            .split("<code id=\"token\">")
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap()
            .to_owned();
        assert!(!shown.contains(&token));
        assert!(c.keygate.manager().verify(&token).await.is_ok());
        // Reload (or Back, which refetches a no-store page): no token.
        let again = b.get(&shown.replacen("/console", "", 1)).await;
        assert!(!again.text.contains(&token));
        assert!(again.text.contains("Token not shown"));
        b.get("/new").await;
    }
    let created: Vec<_> = c
        .all()
        .await
        .into_iter()
        .filter(|r| r.owner == "bob")
        .collect();
    assert_eq!(created.len(), 6);
    // Created disabled.
    let p = b
        .post(
            "/new",
            &[("name", "later"), ("owner", "bob"), ("expiry", "7d")],
        )
        .await;
    assert_eq!(p.status, 303);
    let later = c
        .all()
        .await
        .into_iter()
        .find(|r| r.name == "later")
        .unwrap();
    assert_eq!(later.status, TokenStatus::Disabled);
}

#[tokio::test]
async fn bad_input_reshows_the_form_at_the_field_and_writes_nothing() {
    let c = start().await;
    let op = c.token("alice", &["tokens:*", "projects:read"]).await;
    let mut b = c.signed_in(&op).await;
    b.get("/new").await;
    let before = c.all().await.len();
    for (fields, field) in [
        (vec![("name", ""), ("owner", "alice")], "name"),
        (
            vec![("name", "n"), ("owner", "alice"), ("id", "Bad Id")],
            "id",
        ),
        (
            vec![
                ("name", "n"),
                ("owner", "alice"),
                ("expiry", "custom"),
                ("expiry_date", "soon"),
            ],
            "expiry",
        ),
        // Wider than the operator: a scope it does not hold, forged into the form.
        (
            vec![
                ("name", "n"),
                ("owner", "alice"),
                ("scope", "projects:write"),
            ],
            "scopes",
        ),
        (
            vec![
                ("name", "n"),
                ("owner", "alice"),
                ("scope", "billing:admin"),
            ],
            "scopes",
        ),
    ] {
        let p = b.post("/new", &fields).await;
        assert_eq!(p.status, 422, "{field}");
        assert!(
            p.text.contains(&format!("id=\"e-{field}\"")),
            "{field}: {}",
            p.text
        );
        assert_eq!(c.all().await.len(), before, "{field}");
    }
}

#[tokio::test]
async fn self_service_cannot_see_or_touch_another_owners_token() {
    let c = start().await;
    let bobs = c
        .keygate
        .manager()
        .issue(IssueRequest::new("bob's", "bob"))
        .await
        .unwrap();
    let bob_id = bobs.id().as_str().to_owned();
    let me = c
        .token("alice", &["tokens:self", "tokens:console", "projects:read"])
        .await;
    let mut b = c.signed_in(&me).await;
    assert!(location(&b.get("/tokens").await).ends_with("/my"));
    let p = b.get("/my").await;
    assert!(!p.text.contains(&bob_id));
    assert_eq!(b.get(&format!("/tokens/{bob_id}")).await.status, 404);
    for (path, fields) in [
        (format!("/tokens/{bob_id}/status"), vec![("to", "disabled")]),
        (
            format!("/tokens/{bob_id}/revoke"),
            vec![("confirmed", "yes")],
        ),
        (
            format!("/tokens/{bob_id}/delete"),
            vec![("confirmed", "yes")],
        ),
        (
            format!("/tokens/{bob_id}/regenerate"),
            vec![("confirmed", "yes")],
        ),
        (format!("/tokens/{bob_id}"), vec![("name", "mine now")]),
    ] {
        let p = b.post(&path, &fields).await;
        assert_eq!(p.status, 404, "{path}");
    }
    let p = b
        .post(
            "/tokens/bulk",
            &[("action", "revoke"), ("id", &bob_id), ("confirmed", "yes")],
        )
        .await;
    assert!(p.text.contains("failed"));
    let r = c.keygate.manager().get(bobs.id()).await.unwrap();
    assert_eq!(
        (r.status, r.name.as_str(), r.version),
        (TokenStatus::Active, "bob's", 1)
    );
    // Forged owner on create: the owner is always the signed-in one.
    b.get("/new").await;
    let p = b
        .post(
            "/new",
            &[
                ("name", "forged"),
                ("owner", "bob"),
                ("expiry", "7d"),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(p.status, 303);
    let forged = c
        .all()
        .await
        .into_iter()
        .find(|r| r.name == "forged")
        .unwrap();
    assert_eq!(forged.owner, "alice");
}

#[tokio::test]
async fn names_and_metadata_render_as_text() {
    let c = start().await;
    c.keygate
        .manager()
        .issue(
            IssueRequest::new("<script>alert(1)</script>", "o\"wner").description("\"quoted' <b>"),
        )
        .await
        .unwrap();
    let op = c.token("alice", &["*"]).await;
    let mut b = c.signed_in(&op).await;
    let p = b.get("/tokens").await;
    assert!(!p.text.contains("<script>alert(1)"));
    assert!(p.text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(p.text.contains("o&quot;wner"));
}

#[tokio::test]
async fn regenerate_with_grace_revoke_and_delete_through_the_pages() {
    let c = start().await;
    let op = c.token("alice", &["*"]).await;
    let issued = c
        .keygate
        .manager()
        .issue(IssueRequest::new("svc", "alice"))
        .await
        .unwrap();
    let old = issued.expose_secret().to_owned();
    let id = issued.id().as_str().to_owned();
    let mut b = c.signed_in(&op).await;
    b.get(&format!("/tokens/{id}")).await;
    // Without confirmation: a confirmation page, nothing done.
    let p = b
        .post(
            &format!("/tokens/{id}/regenerate"),
            &[("grace", "1h"), ("regen_expiry", "keep")],
        )
        .await;
    assert_eq!(p.status, 200);
    assert!(p.text.contains("stops working"));
    assert!(c.keygate.manager().verify(&old).await.is_ok());
    let p = b
        .post(
            &format!("/tokens/{id}/regenerate"),
            &[
                ("grace", "1h"),
                ("regen_expiry", "keep"),
                ("confirmed", "yes"),
            ],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.text);
    let shown = b.get(&location(&p).replacen("/console", "", 1)).await;
    let new = shown
        .text
        .split("<code id=\"token\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_owned();
    assert!(c.keygate.manager().verify(&new).await.is_ok());
    let v = c.keygate.manager().verify(&old).await.unwrap();
    assert!(v.used_previous_secret(), "the old value works inside grace");
    // Edit, then the activity shows it.
    b.get(&format!("/tokens/{id}")).await;
    let p = b
        .post(
            &format!("/tokens/{id}"),
            &[("name", "renamed"), ("expiry", "keep"), ("projects", "all")],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.text);
    let p = b.get(&format!("/tokens/{id}")).await;
    assert!(
        p.text.contains("renamed")
            && p.text.contains("authz_change")
            && p.text.contains("authn_token_rotated")
    );
    // Revoke, then delete.
    let p = b
        .post(&format!("/tokens/{id}/revoke"), &[("confirmed", "yes")])
        .await;
    assert_eq!(p.status, 303);
    assert!(c.keygate.manager().verify(&new).await.is_err());
    b.get(&format!("/tokens/{id}")).await;
    let p = b
        .post(&format!("/tokens/{id}/delete"), &[("confirmed", "yes")])
        .await;
    assert_eq!(p.status, 303);
    assert!(
        c.keygate
            .manager()
            .get(&TokenId::new(&id).unwrap())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn list_filters_paginates_toggles_and_mass_disables() {
    let c = start().await;
    let op = c.token("alice", &["*"]).await;
    for i in 0..60 {
        c.keygate
            .manager()
            .issue(IssueRequest::new(format!("bulk {i:02}"), "carol"))
            .await
            .unwrap();
    }
    let mut b = c.signed_in(&op).await;
    let p = b.get("/tokens?owner=carol").await;
    assert_eq!(p.text.matches("name=\"id\"").count(), 50);
    assert!(
        p.text.contains("bulk 59") && !p.text.contains("bulk 09"),
        "newest first"
    );
    let next = p
        .text
        .split("rel=\"next\"")
        .next()
        .unwrap()
        .rsplit("href=\"")
        .next()
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let p2 = b.get(&next.replacen("/console", "", 1)).await;
    assert_eq!(p2.text.matches("name=\"id\"").count(), 10);
    let p = b.get("/tokens?name=bulk+07").await;
    assert_eq!(p.text.matches("name=\"id\"").count(), 1);
    // Toggle one, mass-disable two.
    let all = c.all().await;
    let ids: Vec<String> = all
        .iter()
        .filter(|r| r.owner == "carol")
        .take(3)
        .map(|r| r.id.as_str().to_owned())
        .collect();
    let p = b
        .post(
            &format!("/tokens/{}/status", ids[0]),
            &[("to", "disabled"), ("back", "/tokens")],
        )
        .await;
    assert_eq!(p.status, 303);
    let p = b
        .post(
            "/tokens/bulk",
            &[
                ("action", "disable"),
                ("id", &ids[1]),
                ("id", &ids[2]),
                ("confirmed", "yes"),
            ],
        )
        .await;
    assert_eq!(p.text.matches("changed").count(), 2, "{}", p.text);
    let p = b.get("/tokens?status=disabled").await;
    assert_eq!(p.text.matches("name=\"id\"").count(), 3);
}

#[tokio::test]
async fn allowed_ips_are_shown_and_edited_on_the_details_page() {
    let c = start().await;
    let nets = |s: &[&str]| keygate::ip::parse_list(s).unwrap();
    let op = c.token("alice", &["*"]).await;
    let issued = c
        .keygate
        .manager()
        .issue(IssueRequest::new("svc", "alice"))
        .await
        .unwrap();
    let id = issued.id().clone();
    let path = format!("/tokens/{}", id.as_str());
    let mut b = c.signed_in(&op).await;
    let p = b.get(&path).await;
    assert!(p.text.contains("any client"), "{}", p.text);
    let edit = |ips: &'static str| {
        vec![
            ("name", "svc"),
            ("description", ""),
            ("expiry", "keep"),
            ("permissions", "specific"),
            ("projects", "all"),
            ("allowed_ips", ips),
        ]
    };
    let p = b.post(&path, &edit("10.1.2.3/8, 2001:db8::/32")).await;
    assert_eq!(p.status, 303, "{}", p.text);
    let stored = c.keygate.manager().get(&id).await.unwrap();
    assert_eq!(stored.allowed_ips, nets(&["10.0.0.0/8", "2001:db8::/32"]));
    let p = b.get(&path).await;
    assert!(p.text.contains("10.0.0.0/8, 2001:db8::/32"), "{}", p.text);

    // A bad range re-shows the form at the field and changes nothing.
    let p = b.post(&path, &edit("10.0.0.0/33")).await;
    assert_eq!(p.status, 422);
    assert!(p.text.contains("id=\"e-allowed_ips\""), "{}", p.text);
    assert_eq!(c.keygate.manager().get(&id).await.unwrap(), stored);

    // An operator restricted to loopback signs in from 127.0.0.1, may not widen a list or
    // lift it, but edits other fields of an unrestricted token (the list is unchanged).
    let restricted = c
        .keygate
        .manager()
        .issue(
            IssueRequest::new("ops", "alice")
                .scopes(ScopeSet::parse(["tokens:*"]).unwrap())
                .expiry(keygate::ExpiryPreset::Never)
                .allowed_ips(nets(&["127.0.0.0/8"])),
        )
        .await
        .unwrap();
    let mut r = c.signed_in(restricted.expose_secret()).await;
    r.get(&path).await;
    let p = r.post(&path, &edit("0.0.0.0/0")).await;
    assert_eq!(p.status, 422, "{}", p.text);
    assert!(p.text.contains("id=\"e-allowed_ips\""), "{}", p.text);
    assert!(p.text.contains("IP ranges"), "{}", p.text);
    let p = r.post(&path, &edit("")).await;
    assert_eq!(
        p.status, 422,
        "lifting the restriction is wider: {}",
        p.text
    );
    let p = r.post(&path, &edit("127.0.0.1")).await;
    assert_eq!(p.status, 303, "{}", p.text);
    assert_eq!(
        c.keygate.manager().get(&id).await.unwrap().allowed_ips,
        nets(&["127.0.0.1/32"])
    );
    let free = c
        .keygate
        .manager()
        .issue(IssueRequest::new("free", "alice"))
        .await
        .unwrap();
    let free_path = format!("/tokens/{}", free.id().as_str());
    r.get(&free_path).await;
    let mut rename = edit("");
    rename[0] = ("name", "free renamed");
    let p = r.post(&free_path, &rename).await;
    assert_eq!(p.status, 303, "{}", p.text);

    // Creating: the form starts with the operator's own ranges; wider is refused at the field.
    let p = r.get("/new").await;
    assert!(
        p.text.contains(r#"name="allowed_ips" value="127.0.0.0/8""#),
        "{}",
        p.text
    );
    let create =
        |ips: &'static str| vec![("name", "child"), ("owner", "alice"), ("allowed_ips", ips)];
    let before = c.all().await.len();
    let p = r.post("/new", &create("")).await;
    assert_eq!(p.status, 422, "{}", p.text);
    assert!(p.text.contains("id=\"e-allowed_ips\""), "{}", p.text);
    assert_eq!(c.all().await.len(), before);
    r.get("/new").await;
    let p = r.post("/new", &create("127.0.0.0/8")).await;
    assert_eq!(p.status, 303, "to the shown-once page: {}", p.text);
    assert_eq!(c.all().await.len(), before + 1);

    // An operator restricted elsewhere cannot sign in from here.
    let elsewhere = c
        .keygate
        .manager()
        .issue(
            IssueRequest::new("far", "alice")
                .scopes(ScopeSet::parse(["tokens:*"]).unwrap())
                .allowed_ips(nets(&["10.0.0.0/8"])),
        )
        .await
        .unwrap();
    let mut far = c.browser().await;
    let p = far
        .post("/sign-in", &[("token", elsewhere.expose_secret())])
        .await;
    assert_eq!(p.status, 401);
}
