//! The admin API over a real socket: happy paths, show-once and `no-store`, filters and
//! pagination, self-service, every escalation attempt, invalid input, store failures, and
//! the OpenAPI document against the routes. Every reply is checked against the served
//! OpenAPI document (status documented, body valid against its schema).

#![cfg(all(feature = "axum", feature = "test-util"))]
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a test failure"
)]

mod http_support;

use keygate::testing::{Fault, FaultHandle};

use std::collections::BTreeSet;

use axum::Router;
use chrono::Duration;
use http_support::openapi::Contract;
use http_support::{Server, client, faulty_store};
use keygate::axum::Keygate;
use keygate::expiry::ExpiryPolicy;
use keygate::store::PageRequest;
use keygate::{IssueRequest, Projects, ScopeSet, ServerKey, TokenId, TokenManager, TokenStatus};
use reqwest::Method;
use serde_json::{Value, json};

struct Api {
    keygate: Keygate,
    faults: FaultHandle,
    server: Server,
    /// A `*` token owned by `root`.
    root: String,
    /// The served OpenAPI document: every reply is checked against it.
    contract: Contract,
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
    text: String,
}

impl Api {
    async fn start() -> Api {
        Self::with_policy(ExpiryPolicy::unrestricted()).await
    }

    async fn with_policy(policy: ExpiryPolicy) -> Api {
        let (store, faults) = faulty_store();
        let manager = TokenManager::builder(store)
            .server_key(ServerKey::generate())
            .expiry_policy(policy)
            .build()
            .unwrap();
        let keygate = Keygate::new(manager);
        let root = keygate
            .manager()
            .issue(
                IssueRequest::new("root", "root")
                    .scopes(ScopeSet::parse(["*"]).unwrap())
                    .expiry(match policy.lifetime_cap() {
                        // The longest the policy allows: what the root may hand on.
                        Some(cap) => keygate::ExpiryPreset::In(cap),
                        None => keygate::ExpiryPreset::Never,
                    }),
            )
            .await
            .unwrap()
            .expose_secret()
            .to_owned();
        // As the README mounts it: the application behind the layer, the admin API beside.
        let app = Router::new()
            .route("/api/whoami", axum::routing::get(|| async { "me" }))
            .layer(keygate.layer())
            .merge(keygate.admin_router_at("/api/tokens").unwrap());
        let server = Server::start(app).await;
        // The document needs no credentials.
        let resp = client()
            .get(server.url("/api/tokens/openapi.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let contract = Contract::new(resp.json().await.unwrap());
        Api {
            keygate,
            faults,
            server,
            root,
            contract,
        }
    }

    /// Issues a token directly through the manager.
    async fn token(&self, owner: &str, scopes: &[&str], projects: Projects) -> (TokenId, String) {
        let issued = self
            .keygate
            .manager()
            .issue(
                IssueRequest::new(format!("{owner} token"), owner)
                    .scopes(ScopeSet::parse(scopes).unwrap())
                    .projects(projects),
            )
            .await
            .unwrap();
        (issued.id().clone(), issued.expose_secret().to_owned())
    }

    async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Reply {
        // `/` of the admin router is the mount point itself.
        let path = match path.strip_prefix('/') {
            Some(rest) if rest.is_empty() || rest.starts_with('?') => rest,
            _ => path,
        };
        let mut req = client()
            .request(method, self.server.url(&format!("/api/tokens{path}")))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(req).await
    }

    /// Sends `req` and checks the reply against the document: a documented operation
    /// answers with a documented status and a body valid against its schema; anything else
    /// is 404 or 405.
    async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let (http, request) = req.build_split();
        let request = request.unwrap();
        let method = request.method().clone();
        let path = request.url().path().to_owned();
        let resp = http.execute(request).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let content_type = headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let documented = self.contract.template(&path).is_some_and(|t| {
            self.contract.document()["paths"][&t][method.as_str().to_lowercase()].is_object()
        });
        if documented {
            if let Err(e) = self.contract.check(
                method.as_str(),
                &path,
                status,
                content_type.as_deref(),
                &text,
            ) {
                panic!("the reply contradicts the OpenAPI document: {e}");
            }
        } else {
            assert!(
                matches!(status, 404 | 405),
                "{method} {path}: undocumented, yet answered {status}"
            );
        }
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, token, None).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// Every token in the store, as the manager sees it (no actor).
    async fn all_ids(&self) -> BTreeSet<String> {
        let page = self
            .keygate
            .manager()
            .list(&Default::default(), &PageRequest::first(1000))
            .await
            .unwrap();
        page.items.iter().map(|r| r.id.to_string()).collect()
    }
}

fn ids(reply: &Reply) -> BTreeSet<String> {
    reply.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn create_shows_the_plaintext_once_with_no_store() {
    let api = Api::start().await;
    let r = api
        .post(
            "/",
            &api.root,
            json!({
                "name": "ci deploy",
                "description": "deploys from CI",
                "owner": "alice",
                "scopes": ["projects:read", "projects:write"],
                "projects": ["website"],
                "metadata": {"team": "web"},
                "expires": "7d"
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.headers["cache-control"], "no-store");
    let plaintext = r.body["token"].as_str().unwrap().to_owned();
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert!(plaintext.starts_with(&format!("kg_{id}_")));
    assert_eq!(r.body["owner"], "alice");
    assert_eq!(
        r.body["created_by"],
        format!("token:{}", api.root.split('_').nth(1).unwrap())
    );
    assert_eq!(r.body["scopes"], json!(["projects:read", "projects:write"]));
    assert_eq!(r.body["projects"], json!(["website"]));
    assert_eq!(r.body["metadata"], json!({"team": "web"}));
    assert_eq!(r.body["status"], "active");
    assert!(r.body["expires_at"].is_string());
    assert!(r.body.get("digest").is_none());

    // The plaintext works.
    let verified = api.keygate.manager().verify(&plaintext).await.unwrap();
    assert_eq!(verified.owner(), "alice");

    // Never shown again: not by get, not by list, no digest anywhere.
    let got = api.get(&format!("/{id}"), &api.root).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["cache-control"], "no-store");
    assert!(got.body.get("token").is_none());
    let secret_part = plaintext.rsplit('_').next().unwrap();
    for reply in [&got, &api.get("/", &api.root).await] {
        assert!(!reply.text.contains(secret_part));
        assert!(!reply.text.contains("digest"));
    }
}

#[tokio::test]
async fn list_filters_and_cursor_pagination() {
    let api = Api::start().await;
    let mut created = Vec::new();
    for i in 0..7 {
        let r = api
            .post(
                "/",
                &api.root,
                json!({
                    "name": format!("{} {i}", if i % 2 == 0 { "deploy" } else { "read" }),
                    "owner": if i < 4 { "alice" } else { "bob" },
                    "scopes": if i % 2 == 0 { json!(["projects:write"]) } else { json!(["projects:read"]) },
                    "projects": if i == 6 { json!(["billing"]) } else { json!("*") },
                    "expires": if i == 5 { "never" } else { "7d" },
                }),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        created.push(r.body["id"].as_str().unwrap().to_owned());
    }
    let disabled = &created[1];
    assert_eq!(
        api.post(&format!("/{disabled}/disable"), &api.root, json!({}))
            .await
            .status,
        200
    );

    let q = |query: &str| format!("/?{query}");
    let set = |items: &[usize]| -> BTreeSet<String> {
        items.iter().map(|i| created[*i].clone()).collect()
    };
    assert_eq!(
        ids(&api.get(&q("owner=alice"), &api.root).await),
        set(&[0, 1, 2, 3])
    );
    assert_eq!(
        ids(&api.get(&q("name=DEPLOY"), &api.root).await),
        set(&[0, 2, 4, 6])
    );
    assert_eq!(
        ids(&api.get(&q("status=disabled"), &api.root).await),
        set(&[1])
    );
    assert_eq!(
        ids(&api
            .get(&q("scope=projects:read&owner=bob"), &api.root)
            .await),
        set(&[5])
    );
    // Tokens with all projects, plus the one restricted to billing.
    assert_eq!(
        ids(&api.get(&q("project=billing"), &api.root).await).len(),
        8
    );
    assert_eq!(
        ids(&api.get(&q("project=website&owner=bob"), &api.root).await),
        set(&[4, 5])
    );
    let far = (chrono::Utc::now() + Duration::days(8)).format("%Y-%m-%dT%H:%M:%SZ");
    assert_eq!(
        ids(&api
            .get(&q(&format!("expires_after={far}&owner=bob")), &api.root)
            .await),
        set(&[5])
    );
    assert_eq!(
        ids(&api
            .get(&q(&format!("expires_before={far}&owner=bob")), &api.root)
            .await),
        set(&[4, 6])
    );
    let root_id = api.root.split('_').nth(1).unwrap();
    assert_eq!(
        ids(&api
            .get(&q(&format!("created_by=token:{root_id}")), &api.root)
            .await)
        .len(),
        7
    );

    // Pages of 3 over the 8 tokens: no repeat, no gap, newest first.
    let mut seen = Vec::new();
    let mut path = q("limit=3");
    loop {
        let page = api.get(&path, &api.root).await;
        assert_eq!(page.status, 200);
        let items = page.body["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|t| t["id"].as_str().unwrap().to_owned()));
        match page.body["next"].as_str() {
            Some(next) => path = q(&format!("limit=3&after={next}")),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 8);
    assert_eq!(seen[0], created[6]);
}

#[tokio::test]
async fn get_update_rotate_status_and_delete() {
    let api = Api::start().await;
    let created = api
        .post("/", &api.root, json!({"name": "svc", "scopes": ["a:read"]}))
        .await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let first = created.body["token"].as_str().unwrap().to_owned();

    let r = api
        .call(
            Method::PATCH,
            &format!("/{id}"),
            &api.root,
            Some(json!({
                "name": "svc renamed",
                "description": "now documented",
                "scopes": ["a:read", "a:write"],
                "projects": ["p1"],
                "metadata": {"k": "v"},
                "expires": "90d"
            })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["name"], "svc renamed");
    assert_eq!(r.body["description"], "now documented");
    assert_eq!(r.body["scopes"], json!(["a:read", "a:write"]));
    assert_eq!(r.body["projects"], json!(["p1"]));
    assert_eq!(r.body["metadata"], json!({"k": "v"}));
    assert_eq!(r.body["version"], 2);

    // Rotate with grace and a new expiry: both secrets work during the grace period.
    let r = api
        .post(
            &format!("/{id}/rotate"),
            &api.root,
            json!({"grace": "1h", "expires": "7d"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.headers["cache-control"], "no-store");
    let second = r.body["token"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    let m = api.keygate.manager();
    assert!(m.verify(&first).await.unwrap().used_previous_secret());
    assert!(m.verify(&second).await.is_ok());
    // While that grace runs, another rotation must say it ends it; an empty body is
    // refused and changes nothing.
    let r = api
        .call(Method::POST, &format!("/{id}/rotate"), &api.root, None)
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(m.verify(&first).await.unwrap().used_previous_secret());
    // Ending it, without grace: both older secrets stop at once.
    let r = api
        .post(
            &format!("/{id}/rotate"),
            &api.root,
            json!({"end_grace": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let third = r.body["token"].as_str().unwrap().to_owned();
    assert!(m.verify(&second).await.is_err());
    assert!(matches!(
        m.verify(&first).await,
        Err(keygate::VerifyError::RotatedOut)
    ));
    assert!(m.verify(&third).await.is_ok());

    for (action, status) in [
        ("disable", "disabled"),
        ("enable", "active"),
        ("revoke", "revoked"),
    ] {
        let r = api
            .post(&format!("/{id}/{action}"), &api.root, json!({}))
            .await;
        assert_eq!(r.status, 200, "{action}: {}", r.text);
        assert_eq!(r.body["status"], status);
    }
    assert!(m.verify(&third).await.is_err());
    // Revocation is permanent.
    let r = api
        .post(&format!("/{id}/enable"), &api.root, json!({}))
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.body["error"], "invalid_state");

    let r = api
        .call(Method::DELETE, &format!("/{id}"), &api.root, None)
        .await;
    assert_eq!(r.status, 204);
    let r = api.get(&format!("/{id}"), &api.root).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["error"], "not_found");
}

#[tokio::test]
async fn bulk_actions() {
    let api = Api::start().await;
    let (a, _) = api.token("alice", &["x:read"], Projects::All).await;
    let (b, _) = api.token("alice", &["x:read"], Projects::All).await;
    let (c, _) = api.token("bob", &["x:read"], Projects::All).await;
    let r = api
        .post(
            "/bulk",
            &api.root,
            json!({"action": "disable", "ids": [a.as_str(), b.as_str(), "missing"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["changed"], json!([a.as_str(), b.as_str()]));
    assert_eq!(r.body["failed"][0]["id"], "missing");
    assert_eq!(r.body["failed"][0]["error"], "not_found");

    let r = api
        .post(
            "/bulk",
            &api.root,
            json!({"action": "revoke", "filter": {"owner": "alice"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["changed"].as_array().unwrap().len(), 2);
    let m = api.keygate.manager();
    assert_eq!(m.get(&a).await.unwrap().status, TokenStatus::Revoked);
    assert_eq!(m.get(&c).await.unwrap().status, TokenStatus::Active);

    let r = api
        .post("/bulk", &api.root, json!({"action": "enable"}))
        .await;
    assert_eq!(r.status, 422);
    let r = api
        .post("/bulk", &api.root, json!({"action": "explode", "ids": []}))
        .await;
    assert_eq!(r.status, 422);
}

#[tokio::test]
async fn self_service_manages_only_own_tokens() {
    let api = Api::start().await;
    let (_, bob_self) = api
        .token("bob", &["tokens:self", "projects:read"], Projects::All)
        .await;
    let (bob_other, _) = api.token("bob", &["projects:read"], Projects::All).await;
    let (alice_tok, _) = api.token("alice", &["projects:read"], Projects::All).await;

    // The general routes are closed to tokens:self.
    let r = api.get("/", &bob_self).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.headers["www-authenticate"],
        r#"Bearer realm="api", error="insufficient_scope", scope="tokens:read""#
    );

    let r = api.get("/self", &bob_self).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mine = ids(&r);
    assert!(mine.contains(bob_other.as_str()));
    assert!(!mine.contains(alice_tok.as_str()));
    assert!(
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["owner"] == "bob")
    );
    // `owner` is not a parameter of the caller's own listing, even with the caller's owner.
    assert_eq!(api.get("/self?owner=alice", &bob_self).await.status, 400);
    assert_eq!(api.get("/self?owner=bob", &bob_self).await.status, 400);

    let r = api
        .post(
            "/self",
            &bob_self,
            json!({"name": "laptop", "scopes": ["projects:read"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.body["owner"], "bob");
    let new_id = r.body["id"].as_str().unwrap().to_owned();

    let r = api
        .post(&format!("/self/{new_id}/rotate"), &bob_self, json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["token"].is_string());
    let r = api
        .post(&format!("/self/{new_id}/revoke"), &bob_self, json!({}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "revoked");

    // Someone else's token: not found, and unchanged.
    for action in ["rotate", "revoke"] {
        let r = api
            .post(&format!("/self/{alice_tok}/{action}"), &bob_self, json!({}))
            .await;
        assert_eq!(r.status, 404, "{action}");
    }
    let alice = api.keygate.manager().get(&alice_tok).await.unwrap();
    assert_eq!(alice.status, TokenStatus::Active);
    assert_eq!(alice.version, 1);
    // A token for someone else, or beyond its own scopes: refused.
    let before = api.all_ids().await;
    let r = api
        .post("/self", &bob_self, json!({"name": "x", "owner": "alice"}))
        .await;
    assert_eq!(r.status, 403);
    let r = api
        .post(
            "/self",
            &bob_self,
            json!({"name": "x", "scopes": ["projects:write"]}),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body["error"], "escalation_refused");
    assert_eq!(api.all_ids().await, before);
}

#[tokio::test]
async fn every_escalation_attempt_is_refused() {
    let api = Api::start().await;
    let (writer_id, writer) = api
        .token(
            "ops",
            &["tokens:read", "tokens:write", "projects:read"],
            Projects::only(["website"]).unwrap(),
        )
        .await;
    let (_, reader) = api.token("ops", &["tokens:read"], Projects::All).await;
    let root_id = api.root.split('_').nth(1).unwrap().to_owned();
    let (peer_id, _) = api
        .token(
            "ops",
            &["projects:read"],
            Projects::only(["website"]).unwrap(),
        )
        .await;
    let before = api.all_ids().await;

    // Creating beyond the caller's scopes or projects.
    for body in [
        json!({"name": "x", "scopes": ["projects:write"]}),
        json!({"name": "x", "scopes": ["*"]}),
        json!({"name": "x", "scopes": ["projects:*"]}),
        json!({"name": "x", "scopes": ["tokens:write", "tokens:admin"]}),
        json!({"name": "x", "projects": "*"}),
        json!({"name": "x", "projects": ["website", "billing"]}),
    ] {
        let r = api.post("/", &writer, body.clone()).await;
        assert_eq!(r.status, 403, "{body}: {}", r.text);
        assert_eq!(r.body["error"], "escalation_refused", "{body}");
    }
    // Within its own: allowed (defaulting to the caller's projects).
    let r = api
        .post(
            "/",
            &writer,
            json!({"name": "ok", "scopes": ["projects:read"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["projects"], json!(["website"]));
    let ok_id = r.body["id"].as_str().unwrap().to_owned();

    // Updating a visible token beyond the caller's scopes or projects.
    for body in [
        json!({"scopes": ["projects:write"]}),
        json!({"scopes": ["*"]}),
        json!({"projects": "*"}),
    ] {
        let r = api
            .call(
                Method::PATCH,
                &format!("/{peer_id}"),
                &writer,
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.status, 403, "{body}");
    }
    let peer = api.keygate.manager().get(&peer_id).await.unwrap();
    assert_eq!(peer.version, 1);

    // The admin token is invisible: not listed, not found, unchanged.
    assert!(!ids(&api.get("/?limit=1000", &writer).await).contains(&root_id));
    assert_eq!(api.get(&format!("/{root_id}"), &writer).await.status, 404);
    for action in ["rotate", "disable", "revoke", "enable"] {
        let r = api
            .post(&format!("/{root_id}/{action}"), &writer, json!({}))
            .await;
        assert_eq!(r.status, 404, "{action}");
    }
    let r = api
        .call(
            Method::PATCH,
            &format!("/{root_id}"),
            &writer,
            Some(json!({"name": "pwned"})),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        api.call(Method::DELETE, &format!("/{root_id}"), &writer, None)
            .await
            .status,
        404
    );
    let r = api
        .post(
            "/bulk",
            &writer,
            json!({"action": "revoke", "ids": [root_id.as_str()]}),
        )
        .await;
    assert_eq!(r.body["failed"][0]["error"], "not_found");
    let r = api
        .post("/bulk", &writer, json!({"action": "disable", "filter": {}}))
        .await;
    assert_eq!(r.status, 200);
    let disabled: BTreeSet<&str> = r.body["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // Only what the writer could have created; not root, not the reader (all projects),
    // and not the writer itself: a filter never selects the acting token.
    assert_eq!(disabled, BTreeSet::from([peer_id.as_str(), ok_id.as_str()]));
    let writer_record = api
        .keygate
        .manager()
        .get(&TokenId::new(&writer_id).unwrap())
        .await
        .unwrap();
    assert_eq!(writer_record.status, TokenStatus::Active);
    let root = api
        .keygate
        .manager()
        .get(&TokenId::new(&root_id).unwrap())
        .await
        .unwrap();
    assert_eq!((root.status, root.version), (TokenStatus::Active, 1));

    // A reader may not write at all.
    let r = api.post("/", &reader, json!({"name": "x"})).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body["error"], "insufficient_scope");
    assert_eq!(
        api.call(Method::DELETE, &format!("/{peer_id}"), &reader, None)
            .await
            .status,
        403
    );
    assert_eq!(
        api.post(&format!("/{peer_id}/revoke"), &reader, json!({}))
            .await
            .status,
        403
    );
    // No token at all.
    let r = api.send(client().get(api.server.url("/api/tokens"))).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error"], "missing_credentials");

    let mut after = api.all_ids().await;
    after.remove(&ok_id);
    assert_eq!(after, before);
}

#[tokio::test]
async fn invalid_input_is_refused_and_changes_nothing() {
    let api = Api::with_policy(
        ExpiryPolicy::unrestricted().max_lifetime(std::time::Duration::from_secs(7776000)),
    )
    .await;
    let (id, _) = api.token("alice", &["a:read"], Projects::All).await;
    let before = api.all_ids().await;
    let cases = [
        (
            json!({"name": "x", "scopes": ["Bad Scope"]}),
            422,
            "invalid_input",
        ),
        (
            json!({"name": "x", "scopes": ["a:*:b"]}),
            422,
            "invalid_input",
        ),
        (
            json!({"name": "x", "expires": "365d"}),
            422,
            "policy_violation",
        ),
        (
            json!({"name": "x", "expires": "never"}),
            422,
            "policy_violation",
        ),
        (
            json!({"name": "x", "expires": "tomorrow"}),
            422,
            "invalid_input",
        ),
        (
            json!({"name": "x", "expires": "2000-01-01T00:00:00Z"}),
            422,
            "invalid_input",
        ),
        (json!({"name": "x", "colour": "red"}), 422, "invalid_input"),
        (json!({"name": ""}), 422, "invalid_input"),
        (
            json!({"name": "x", "id": "Not An Id"}),
            422,
            "invalid_input",
        ),
        (
            json!({"name": "x", "projects": ["BAD"]}),
            422,
            "invalid_input",
        ),
        (json!({"scopes": []}), 422, "invalid_input"),
    ];
    for (body, status, code) in cases {
        let r = api.post("/", &api.root, body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.text);
        assert_eq!(r.body["error"], code, "{body}");
        assert!(!r.body["message"].as_str().unwrap().is_empty());
    }
    // Malformed JSON and a wrong media type.
    let r = api
        .send(
            client()
                .post(api.server.url("/api/tokens"))
                .bearer_auth(&api.root)
                .header("content-type", "application/json")
                .body("{\"name\": "),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = api
        .send(
            client()
                .post(api.server.url("/api/tokens"))
                .bearer_auth(&api.root)
                .header("content-type", "text/plain")
                .body("{\"name\": \"x\"}"),
        )
        .await;
    assert_eq!(r.status, 415);

    // Bad ids, queries and cursors.
    assert_eq!(api.get("/Bad%20Id", &api.root).await.status, 400);
    assert_eq!(
        api.get(&format!("/{}", "a".repeat(65)), &api.root)
            .await
            .status,
        400
    );
    assert_eq!(api.get("/?colour=red", &api.root).await.status, 400);
    assert_eq!(api.get("/?status=sleeping", &api.root).await.status, 400);
    // Paging: a malformed cursor or a limit outside 1..=1000 is a malformed query.
    for query in [
        "after=garbage",
        "after=",
        "after=1.Bad",
        "after=1234567890123456789.a",
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=99999999999999999999999",
    ] {
        let r = api.get(&format!("/?{query}"), &api.root).await;
        assert_eq!((query, r.status), (query, 400), "{}", r.text);
        assert_eq!(r.body["error"], "invalid_query");
    }
    assert_eq!(api.get("/?limit=1000", &api.root).await.status, 200);
    assert_eq!(api.get("/?limit=1", &api.root).await.status, 200);

    // Updates and rotations with invalid input leave the record as it was.
    for body in [
        json!({"scopes": ["Nope"]}),
        json!({"expires": "365d"}),
        json!({"name": "x", "owner": "mallory"}),
        json!({"metadata": {"": "empty key"}}),
    ] {
        let r = api
            .call(
                Method::PATCH,
                &format!("/{id}"),
                &api.root,
                Some(body.clone()),
            )
            .await;
        assert!(matches!(r.status, 400 | 422), "{body}: {}", r.text);
    }
    for body in [
        json!({"grace": "31d"}),
        json!({"grace": "soon"}),
        json!({"expires": "365d"}),
    ] {
        let r = api
            .post(&format!("/{id}/rotate"), &api.root, body.clone())
            .await;
        assert_eq!(r.status, 422, "{body}: {}", r.text);
    }
    let record = api.keygate.manager().get(&id).await.unwrap();
    assert_eq!(record.version, 1);
    assert_eq!(api.all_ids().await, before);

    // An empty body and `null` are `{}`; another JSON type is refused.
    let rotate = |body: &'static str| {
        client()
            .post(api.server.url(&format!("/api/tokens/{id}/rotate")))
            .bearer_auth(&api.root)
            .header("content-type", "application/json")
            .body(body)
    };
    for body in ["", "null", " null "] {
        let r = api.send(rotate(body)).await;
        assert_eq!(r.status, 200, "{body:?}: {}", r.text);
    }
    for body in ["[]", "[null, null]", " [false]", "5", "\"x\"", "true"] {
        let r = api.send(rotate(body)).await;
        assert_eq!(r.status, 422, "{body:?}: {}", r.text);
    }
}

#[tokio::test]
async fn store_failure_is_503_and_changes_nothing() {
    let api = Api::start().await;
    let (id, _) = api.token("alice", &[], Projects::All).await;
    api.faults.set(Fault::Error);
    let r = api.get("/", &api.root).await;
    assert_eq!(r.status, 503);
    let r = api
        .post(&format!("/{id}/revoke"), &api.root, json!({}))
        .await;
    assert_eq!(r.status, 503);
    api.faults.set(Fault::None);
    assert_eq!(
        api.keygate.manager().get(&id).await.unwrap().status,
        TokenStatus::Active
    );
}

#[tokio::test]
async fn openapi_document_is_served_and_every_operation_is_routed() {
    let api = Api::start().await;
    let (id, _) = api.token("alice", &[], Projects::All).await;
    // A valid token without any scope: every operation answers, none is "no such route".
    let (_, nobody) = api.token("nobody", &[], Projects::All).await;
    let r = api.get("/openapi.json", &api.root).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/json");
    let doc = r.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let method: Method = method.to_uppercase().parse().unwrap();
            // The paths are where a client calls them: under the mount point.
            assert!(path.starts_with("/api/tokens"), "{path}");
            let concrete = path.replace("{id}", id.as_str());
            let r = api
                .send(
                    client()
                        .request(method.clone(), api.server.url(&concrete))
                        .bearer_auth(&nobody),
                )
                .await;
            let documented: Vec<&String> = op["responses"].as_object().unwrap().keys().collect();
            assert!(
                documented.contains(&&r.status.to_string()),
                "{method} {path}: status {} not documented ({documented:?})",
                r.status
            );
            assert!(r.status != 405, "{method} {path}: no such method");
            assert!(
                r.status != 404 || r.body["error"] == "not_found",
                "{method} {path}: no such route"
            );
            operations += 1;
        }
    }
    assert_eq!(operations, 16);
    // The collection answers with a trailing slash too.
    for path in ["/api/tokens", "/api/tokens/"] {
        let r = api
            .send(client().get(api.server.url(path)).bearer_auth(&api.root))
            .await;
        assert_eq!(r.status, 200, "{path}");
    }
    // An undocumented route does not exist.
    assert_eq!(api.get("/no/such/route", &api.root).await.status, 404);
    assert_eq!(
        api.call(Method::PUT, "/", &api.root, None).await.status,
        405
    );
}

#[tokio::test]
async fn prune_counts_then_deletes_ended_tokens_for_admins_only() {
    let api = Api::start().await;
    let (writer_id, writer) = api.token("ops", &["tokens:*"], Projects::All).await;
    let (revoked, _) = api.token("alice", &[], Projects::All).await;
    let (active, _) = api.token("alice", &[], Projects::All).await;
    api.keygate.manager().revoke(&revoked).await.unwrap();

    // `tokens:*` is not enough: pruning concerns every owner's tokens.
    let r = api
        .post(
            "/prune",
            &writer,
            json!({"older_than": "0s", "dry_run": true}),
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );

    let r = api
        .post(
            "/prune",
            &api.root,
            json!({"older_than": "0s", "dry_run": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.body["dry_run"].as_bool(), r.body["count"].as_u64()),
        (Some(true), Some(1))
    );
    assert!(
        api.all_ids().await.contains(revoked.as_str()),
        "a dry run deletes nothing"
    );

    // Revoked just now: not more than a day ago.
    let r = api
        .post("/prune", &api.root, json!({"older_than": "1d"}))
        .await;
    assert_eq!((r.status, r.body["count"].as_u64()), (200, Some(0)));

    let r = api
        .post("/prune", &api.root, json!({"older_than": "0s"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["dry_run"], false);
    assert_eq!(
        (r.body["count"].as_u64(), r.body["batches"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(r.body["cutoff"].is_string());
    let ids = api.all_ids().await;
    assert!(!ids.contains(revoked.as_str()));
    assert!(ids.contains(active.as_str()) && ids.contains(writer_id.as_str()));

    for bad in [
        json!({"older_than": "90"}),
        json!({"older_than": "-1d"}),
        json!({}),
    ] {
        let r = api.post("/prune", &api.root, bad.clone()).await;
        assert!(matches!(r.status, 400 | 422), "{bad}: {}", r.status);
    }
}

#[tokio::test]
async fn create_disabled_makes_a_token_that_refuses_until_enabled() {
    let api = Api::start().await;
    let r = api
        .post("/", &api.root, json!({"name": "later", "enabled": false}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["status"], "disabled");
    let plaintext = r.body["token"].as_str().unwrap().to_owned();
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert!(api.keygate.manager().verify(&plaintext).await.is_err());
    let r = api
        .post(&format!("/{id}/enable"), &api.root, json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(api.keygate.manager().verify(&plaintext).await.is_ok());
    // Without the field, enabled; a non-boolean is invalid input and creates nothing.
    let r = api.post("/", &api.root, json!({"name": "now"})).await;
    assert_eq!(r.body["status"], "active");
    let before = api.all_ids().await;
    let r = api
        .post("/", &api.root, json!({"name": "bad", "enabled": "no"}))
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(api.all_ids().await, before);
}

#[tokio::test]
async fn allowed_ips_are_set_shown_normalised_changed_and_lifted() {
    let api = Api::start().await;
    let r = api
        .post(
            "/",
            &api.root,
            json!({
                "name": "office only",
                "allowed_ips": ["10.1.2.3/8", "2001:db8::/32", "127.0.0.1"]
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        r.body["allowed_ips"],
        json!(["10.0.0.0/8", "127.0.0.1/32", "2001:db8::/32"])
    );
    let id = r.body["id"].as_str().unwrap().to_owned();
    let token = r.body["token"].as_str().unwrap().to_owned();
    // The server sees 127.0.0.1: inside the list.
    assert_eq!(
        api.get("/self", &token).await.status,
        403,
        "no tokens:self scope"
    );
    let got = api.get(&format!("/{id}"), &api.root).await;
    assert_eq!(got.body["allowed_ips"], r.body["allowed_ips"]);

    // Replace, then lift; absent leaves the list alone.
    let path = format!("/{id}");
    let patch = |body: Value| api.call(Method::PATCH, &path, &api.root, Some(body));
    let r = patch(json!({"allowed_ips": ["192.0.2.0/24"]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["allowed_ips"], json!(["192.0.2.0/24"]));
    let r = patch(json!({"name": "renamed"})).await;
    assert_eq!(r.body["allowed_ips"], json!(["192.0.2.0/24"]));
    let r = patch(json!({"allowed_ips": []})).await;
    assert_eq!(r.body["allowed_ips"], json!([]));
    // A token never restricted shows an empty list.
    let plain = api.post("/", &api.root, json!({"name": "any"})).await;
    assert_eq!(plain.body["allowed_ips"], json!([]));

    // Invalid ranges and too many are refused, naming the field, and change nothing.
    for bad in [
        json!(["10.0.0.0/33"]),
        json!(["example.com"]),
        json!("10.0.0.0/8"),
    ] {
        let r = patch(json!({"allowed_ips": bad})).await;
        assert!(
            r.status == 400 || r.status == 422,
            "{bad}: {} {}",
            r.status,
            r.text
        );
    }
    let r = patch(json!({"allowed_ips": ["10.0.0.0/33"]})).await;
    assert!(r.text.contains("allowed_ips"), "{}", r.text);
    let many: Vec<String> = (0..33).map(|i| format!("10.{i}.0.0/16")).collect();
    let r = patch(json!({ "allowed_ips": many })).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.body["error"], "limit_exceeded");
    let got = api.get(&format!("/{id}"), &api.root).await;
    assert_eq!(got.body["allowed_ips"], json!([]));
}

#[tokio::test]
async fn the_document_states_allowed_ips_and_its_limit() {
    let api = Api::start().await;
    let doc = api.contract.document();
    let text = doc.to_string();
    for component in ["CreateBody", "UpdateBody", "TokenView"] {
        let schema = &doc["components"]["schemas"][component];
        assert!(
            schema.to_string().contains("allowed_ips"),
            "{component} must name allowed_ips: {schema}"
        );
    }
    assert!(text.contains("2001:db8::/32"), "an example of the format");
    assert!(
        text.contains(r#""maxItems":32"#),
        "the count limit is stated"
    );
}
