//! Delegation over HTTP (a real socket): the admin API inherits the manager's rules on
//! owner, lifetime, children, size, concurrency (`ETag` / `If-Match`) and self-lockout.

#![cfg(all(feature = "axum", feature = "test-util"))]
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a test failure"
)]

mod http_support;

use axum::Router;
use http_support::{Server, client};
use keygate::axum::Keygate;
use keygate::{
    ExpiryPreset, IssueRequest, MemoryStore, ScopeSet, ServerKey, TokenId, TokenManager,
};
use reqwest::Method;
use serde_json::{Value, json};

struct Api {
    keygate: Keygate,
    server: Server,
    http: reqwest::Client,
}

struct Reply {
    status: u16,
    etag: Option<String>,
    body: Value,
}

impl Api {
    async fn start() -> Api {
        let manager = TokenManager::builder(MemoryStore::new())
            .server_key(ServerKey::generate())
            .build()
            .unwrap();
        let keygate = Keygate::new(manager);
        let app = Router::new()
            .nest("/api/tokens", keygate.admin_router())
            .layer(keygate.layer());
        let server = Server::start(app).await;
        Api {
            keygate,
            server,
            http: client(),
        }
    }

    async fn token(&self, owner: &str, scopes: &[&str], expiry: ExpiryPreset) -> (String, String) {
        let issued = self
            .keygate
            .manager()
            .issue(
                IssueRequest::new("t", owner)
                    .scopes(ScopeSet::parse(scopes.iter().copied()).unwrap())
                    .expiry(expiry),
            )
            .await
            .unwrap();
        (issued.id().to_string(), issued.expose_secret().to_owned())
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Reply {
        // The collection is the mount point itself (`/api/tokens`, no trailing slash).
        let path = if path == "/" { "" } else { path };
        let mut req = self
            .http
            .request(method, self.server.url(&format!("/api/tokens{path}")))
            .bearer_auth(token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let etag = resp
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, etag, body }
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.send(
            Method::POST,
            path,
            token,
            &[],
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    async fn version(&self, id: &str) -> u64 {
        let id = TokenId::new(id).unwrap();
        self.keygate.manager().get(&id).await.unwrap().version
    }
}

#[tokio::test]
async fn owner_and_lifetime_bound_what_a_caller_may_do() {
    let api = Api::start().await;
    let (_, alice) = api
        .token(
            "alice",
            &["tokens:read", "tokens:write", "a"],
            ExpiryPreset::In(std::time::Duration::from_secs(3600)),
        )
        .await;
    let (bob_id, _) = api.token("bob", &["a"], ExpiryPreset::Never).await;
    let (_, root) = api.token("root", &["*"], ExpiryPreset::Never).await;

    // Root (holding `*`, hence tokens:any-owner) may create for bob; alice may not.
    let body = json!({"name": "x", "owner": "bob", "scopes": ["a"], "expires": "10m"});
    assert_eq!(api.post("/", &root, body.clone()).await.status, 201);
    let r = api.post("/", &alice, body).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (403, Some("escalation_refused"))
    );
    // Bob's token is not found for alice, whatever she tries; it stays at version 1.
    for action in ["rotate", "disable", "revoke"] {
        let r = api
            .post(&format!("/{bob_id}/{action}"), &alice, json!({}))
            .await;
        assert_eq!(r.status, 404, "{action}");
    }
    assert_eq!(
        api.send(Method::DELETE, &format!("/{bob_id}"), &alice, &[], None)
            .await
            .status,
        404
    );
    assert_eq!(api.version(&bob_id).await, 1);
    // Alice's one-hour token cannot create a never-expiring one, nor a 30-day one; without
    // an expiry her token's own is used.
    for expires in ["never", "30d"] {
        let r = api
            .post("/", &alice, json!({"name": "x", "expires": expires}))
            .await;
        assert_eq!(r.status, 403, "{expires}");
    }
    let r = api.post("/", &alice, json!({"name": "x"})).await;
    assert_eq!(r.status, 201);
    // The creator is set by keygate; a body naming one is refused as an unknown field.
    assert!(r.body["created_by"].as_str().unwrap().starts_with("token:"));
    let r = api
        .post("/", &alice, json!({"name": "x", "created_by": "system"}))
        .await;
    assert_eq!(r.status, 422);
}

#[tokio::test]
async fn revoke_with_children_over_http() {
    let api = Api::start().await;
    let (parent_id, parent) = api
        .token("ops", &["tokens:write", "a"], ExpiryPreset::Never)
        .await;
    let (_, root) = api.token("root", &["*"], ExpiryPreset::Never).await;
    let child = api
        .post("/", &parent, json!({"name": "c", "scopes": ["a"]}))
        .await;
    assert_eq!(child.status, 201);
    let child_token = child.body["token"].as_str().unwrap().to_owned();
    let r = api
        .post(
            &format!("/{parent_id}/revoke"),
            &root,
            json!({"children": true}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["changed"].as_array().unwrap().len(), 2, "{}", r.body);
    assert!(api.keygate.manager().verify(&child_token).await.is_err());
}

#[tokio::test]
async fn requests_over_a_limit_name_it_and_change_nothing() {
    let api = Api::start().await;
    let (_, root) = api.token("root", &["*"], ExpiryPreset::Never).await;
    let count = || async {
        api.keygate
            .manager()
            .list(
                &Default::default(),
                &keygate::store::PageRequest::first(1000),
            )
            .await
            .unwrap()
            .items
            .len()
    };
    let before = count().await;
    // 100,000 projects: the body alone is over the 64 KiB limit.
    let projects: Vec<String> = (0..100_000).map(|i| format!("p{i}")).collect();
    let r = api
        .post("/", &root, json!({"name": "x", "projects": projects}))
        .await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (413, Some("payload_too_large"))
    );
    // 300 projects fit the body but not the 256 per token.
    let r = api
        .post(
            "/",
            &root,
            json!({"name": "x", "projects": projects[..300].to_vec()}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (422, Some("limit_exceeded"))
    );
    assert!(
        r.body["message"].as_str().unwrap().contains("256"),
        "{}",
        r.body
    );
    let ids: Vec<String> = (0..1001).map(|i| format!("t{i}")).collect();
    let r = api
        .post("/bulk", &root, json!({"action": "disable", "ids": ids}))
        .await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (422, Some("limit_exceeded"))
    );
    assert_eq!(count().await, before);
}

#[tokio::test]
async fn if_match_makes_one_of_many_concurrent_rotations_win() {
    let api = Api::start().await;
    let (_, root) = api.token("root", &["*"], ExpiryPreset::Never).await;
    let (id, _) = api.token("svc", &["a"], ExpiryPreset::Never).await;
    let got = api
        .send(Method::GET, &format!("/{id}"), &root, &[], None)
        .await;
    assert_eq!(got.etag.as_deref(), Some("\"1\""));

    let api = std::sync::Arc::new(api);
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (api, root, id) = (api.clone(), root.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            api.send(
                Method::POST,
                &format!("/{id}/rotate"),
                &root,
                &[("if-match", "\"1\"")],
                None,
            )
            .await
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            200 => winners.push(r),
            412 => assert_eq!(r.body["error"], "precondition_failed"),
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one rotation wins");
    let secret = winners[0].body["token"].as_str().unwrap();
    assert!(api.keygate.manager().verify(secret).await.is_ok());
    assert_eq!(winners[0].etag.as_deref(), Some("\"2\""));

    // A stale If-Match on PATCH changes nothing; a malformed one is a 400; `*` is any.
    let patch = |tag: &'static str| {
        let api = api.clone();
        let (root, id) = (root.clone(), id.clone());
        async move {
            api.send(
                Method::PATCH,
                &format!("/{id}"),
                &root,
                &[("if-match", tag)],
                Some(br#"{"name": "renamed"}"#.to_vec()),
            )
            .await
        }
    };
    assert_eq!(patch("\"1\"").await.status, 412);
    assert_eq!(
        patch(" 1\t").await.status,
        412,
        "a bare version is the same tag"
    );
    for malformed in [
        "W/\"2\" junk",
        "W/\"2\"",
        "\"2",
        "2\"",
        "\"\"",
        "\"+2\"",
        "\"2\", \"3\"",
        "\"12345678901234567890\"",
    ] {
        assert_eq!(patch(malformed).await.status, 400, "{malformed}");
    }
    assert_eq!(api.version(&id).await, 2);
    let r = patch("\"2\"").await;
    assert_eq!((r.status, r.etag.as_deref()), (200, Some("\"3\"")));
    assert_eq!(patch("*").await.status, 200);
}

#[tokio::test]
async fn the_last_admin_and_the_caller_survive_bulk_actions() {
    let api = Api::start().await;
    let (root_id, root) = api.token("root", &["*"], ExpiryPreset::Never).await;
    let (other, _) = api.token("root", &["a"], ExpiryPreset::Never).await;
    let r = api
        .post("/bulk", &root, json!({"action": "revoke", "filter": {}}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["changed"], json!([other]));
    let r = api
        .post(&format!("/{root_id}/revoke"), &root, json!({}))
        .await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (409, Some("last_admin"))
    );
    assert!(api.keygate.manager().verify(&root).await.is_ok());
}

#[tokio::test]
async fn reserved_ids_are_refused_over_http() {
    let api = Api::start().await;
    let (_, root) = api.token("root", &["*"], ExpiryPreset::Never).await;
    for id in ["self", "bulk", "prune"] {
        let r = api.post("/", &root, json!({"name": "x", "id": id})).await;
        assert_eq!(
            (r.status, r.body["error"].as_str()),
            (400, Some("invalid_id")),
            "{id}"
        );
    }
}

#[tokio::test]
async fn a_caller_restricted_to_ranges_gives_no_wider_ones() {
    let api = Api::start().await;
    let issued = api
        .keygate
        .manager()
        .issue(
            IssueRequest::new("ops", "alice")
                .scopes(ScopeSet::parse(["tokens:read", "tokens:write", "a"]).unwrap())
                .expiry(ExpiryPreset::Never)
                .allowed_ips(keygate::ip::parse_list(["127.0.0.0/8", "::1/128"]).unwrap()),
        )
        .await
        .unwrap();
    let caller = issued.expose_secret().to_owned();
    let create = |ips: Value| {
        api.post(
            "/",
            &caller,
            json!({"name": "child", "scopes": ["a"], "expires": "7d", "allowed_ips": ips}),
        )
    };
    for wider in [
        json!([]),
        json!(["0.0.0.0/0"]),
        json!(["127.0.0.0/7"]),
        json!(["10.0.0.0/8"]),
    ] {
        let r = create(wider.clone()).await;
        assert_eq!(r.status, 403, "{wider}: {}", r.body);
        assert_eq!(r.body["error"], "escalation_refused", "{wider}");
    }
    let r = api
        .post(
            "/",
            &caller,
            json!({"name": "child", "scopes": ["a"], "expires": "7d"}),
        )
        .await;
    assert_eq!(
        r.status, 403,
        "absent is unrestricted, which is wider: {}",
        r.body
    );
    let r = create(json!(["127.0.0.1"])).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["allowed_ips"], json!(["127.0.0.1/32"]));
    let path = format!("/{id}");
    let patch = |ips: Value| {
        api.send(
            Method::PATCH,
            &path,
            &caller,
            &[],
            Some(json!({ "allowed_ips": ips }).to_string().into_bytes()),
        )
    };
    assert_eq!(patch(json!([])).await.status, 403);
    assert_eq!(patch(json!(["::/0"])).await.status, 403);
    let r = patch(json!(["::1"])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["allowed_ips"], json!(["::1/128"]));
}
