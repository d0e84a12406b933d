//! The console's token list over 10,000 tokens in SQLite, first page of 50, as the server
//! sees it (the router called in process, no socket): session lookup, the signed-in token's
//! verification, the listing query and the page's rendering. Before the timing, it prints
//! the page's weight with its assets (the list page, `console.css`, `console.js`), which is
//! everything the browser loads for it.
#![allow(clippy::expect_used, missing_docs, reason = "benchmark harness")]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use criterion::{Criterion, criterion_group, criterion_main};
use keygate::axum::Keygate;
use keygate::console::{ConsoleConfig, ScopeEntry};
use keygate::{ExpiryPreset, IssueRequest, ScopeSet, ServerKey, SqliteStore, TokenManager};
use tower::ServiceExt;

const TOKENS: usize = 10_000;

async fn body_of(app: &Router, req: Request<Body>) -> (Option<String>, String) {
    let resp = app.clone().oneshot(req).await.expect("response");
    let cookie = resp
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (cookie, String::from_utf8(bytes.to_vec()).expect("utf-8"))
}

fn get(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .expect("request")
}

fn console_list(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, cookie) = rt.block_on(async {
        let store = SqliteStore::open(dir.path().join("console.db"))
            .await
            .expect("sqlite");
        store.migrate().await.expect("migrate");
        let manager = TokenManager::builder(store)
            .server_key(ServerKey::generate())
            .build()
            .expect("manager");
        for i in 0..TOKENS {
            manager
                .issue(
                    IssueRequest::new(format!("service {i}"), format!("team-{}", i % 40))
                        .description("a token of the bench")
                        .scopes(
                            ScopeSet::parse(["projects:read", "deploys:write"]).expect("scopes"),
                        ),
                )
                .await
                .expect("issue");
        }
        let admin = manager
            .issue(
                IssueRequest::new("admin", "admin")
                    .scopes(ScopeSet::parse(["*"]).expect("scopes"))
                    .expiry(ExpiryPreset::Never),
            )
            .await
            .expect("issue")
            .expose_secret()
            .to_owned();
        let config = ConsoleConfig::new()
            .scope(ScopeEntry::new(
                "projects:read",
                "Read projects",
                "Projects",
            ))
            .scope(ScopeEntry::new("deploys:write", "Deploy", "Deploys"));
        let app: Router = Router::new().nest(
            "/console",
            Keygate::new(manager).console(config).expect("console"),
        );
        // Sign in as a browser would: the form's CSRF token, then the pasted token.
        let (cookie, page) = body_of(
            &app,
            Request::get("/console/sign-in")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        let cookie = cookie.expect("a session cookie");
        let csrf = page
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("a csrf field")
            .to_owned();
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("csrf", &csrf)
            .append_pair("token", &admin)
            .finish();
        let (signed_in, _) = body_of(
            &app,
            Request::post("/console/sign-in")
                .header(header::COOKIE, &cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form))
                .expect("request"),
        )
        .await;
        (app, signed_in.unwrap_or(cookie))
    });

    // The page's weight: the HTML of the first page of 50 and the assets it loads.
    let (html, css, js) = rt.block_on(async {
        let (_, html) = body_of(&app, get("/console/tokens", &cookie)).await;
        assert_eq!(
            html.matches("<tr>").count(),
            51,
            "the first page holds 50 rows and a header"
        );
        let (_, css) = body_of(&app, get("/console/assets/console.css", &cookie)).await;
        let (_, js) = body_of(&app, get("/console/assets/console.js", &cookie)).await;
        (html.len(), css.len(), js.len())
    });
    println!(
        "console list page weight: html {html} B + css {css} B + js {js} B = {} B (target <= 102400 B)",
        html + css + js
    );

    let mut g = c.benchmark_group("console_list_sqlite_10k");
    g.bench_function("first_page_of_50", |b| {
        b.to_async(&rt)
            .iter(|| async { body_of(&app, get("/console/tokens", &cookie)).await })
    });
    g.bench_function("filtered_by_name", |b| {
        b.to_async(&rt)
            .iter(|| async { body_of(&app, get("/console/tokens?name=service+99", &cookie)).await })
    });
    g.finish();
}

criterion_group!(benches, console_list);
criterion_main!(benches);
