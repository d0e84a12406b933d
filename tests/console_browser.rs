//! The web console in a real Chromium (Debian's `chromium` and `chromium-driver`), driven
//! over WebDriver: sign in, create, the shown-once page and its reload and Back, escaping
//! (no dialog fires), axe-core on every page (no serious or critical violation), and
//! screenshots at 1280x800 in `docs/console/`.
//!
//! Skips, saying so, when no browser is installed, unless `KEYGATE_REQUIRE_BROWSER=1`. axe-core
//! is read from `KEYGATE_AXE_JS` or `target/axe/node_modules/axe-core/axe.min.js`
//! (`npm install --prefix target/axe axe-core`); without it the accessibility check fails
//! under `KEYGATE_REQUIRE_BROWSER=1` and is skipped otherwise.

#![cfg(feature = "console")]
#![expect(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

use std::process::{Child, Command, Stdio};

use axum::Router;
use fantoccini::{Client, ClientBuilder, Locator};
use keygate::audit::MemoryActivity;
use keygate::axum::Keygate;
use keygate::console::{ConsoleConfig, ScopeEntry, ScopeTemplate};
use keygate::{ExpiryPreset, IssueRequest, MemoryStore, ScopeSet, ServerKey, TokenManager};
use serde_json::Value;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn required() -> bool {
    std::env::var("KEYGATE_REQUIRE_BROWSER").is_ok_and(|v| v == "1")
}

fn which(name: &str) -> Option<String> {
    let path = std::env::var("PATH").ok()?;
    path.split(':')
        .map(|d| format!("{d}/{name}"))
        .find(|p| std::path::Path::new(p).exists())
}

async fn browser() -> Option<(Client, Driver, tempfile::TempDir)> {
    let (Some(driver), Some(chromium)) = (which("chromedriver"), which("chromium")) else {
        assert!(
            !required(),
            "KEYGATE_REQUIRE_BROWSER=1 but chromium or chromedriver is missing"
        );
        eprintln!(
            "SKIPPED: no chromium/chromedriver installed (apt-get install chromium chromium-driver)"
        );
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = Driver(child);
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run",
                     "--disable-dev-shm-usage", "--window-size=1280,800",
                     format!("--user-data-dir={}", profile.path().display())],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let mut last = None;
    for _ in 0..50 {
        match ClientBuilder::new(connector.clone())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => return Some((c, guard, profile)),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("chromedriver did not start: {last:?}");
}

fn axe_source() -> Option<String> {
    let path = std::env::var("KEYGATE_AXE_JS").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/target/axe/node_modules/axe-core/axe.min.js"
        )
        .to_owned()
    });
    std::fs::read_to_string(path).ok()
}

/// Runs axe-core on the current page: no serious or critical violation.
async fn check_axe(c: &Client, axe: &Option<String>, page: &str) {
    let Some(src) = axe else {
        assert!(
            !required(),
            "KEYGATE_REQUIRE_BROWSER=1 but axe-core is not installed"
        );
        eprintln!("SKIPPED axe-core on {page}: not installed");
        return;
    };
    // Injected through WebDriver, not the page: the console's CSP does not allow it to load.
    c.execute(src, vec![]).await.unwrap();
    let result = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document).then(r => done(r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                 .map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(result, Value::Array(vec![]), "axe-core on {page}");
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/console");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(format!("{dir}/{name}.png"), png).unwrap();
}

#[tokio::test]
async fn the_console_in_chromium() {
    let Some((c, _driver, _profile)) = browser().await else {
        return;
    };
    let axe = axe_source();
    let activity = MemoryActivity::new(20, 1000);
    let manager = TokenManager::builder(MemoryStore::new())
        .server_key(ServerKey::generate())
        .audit_sink(activity.clone())
        .build()
        .unwrap();
    let keygate = Keygate::new(manager);
    let admin = keygate
        .manager()
        .issue(
            IssueRequest::new("admin", "admin")
                .scopes(ScopeSet::parse(["*"]).unwrap())
                .expiry(ExpiryPreset::Never),
        )
        .await
        .unwrap()
        .expose_secret()
        .to_owned();
    keygate
        .manager()
        .issue(
            IssueRequest::new("<script>alert(1)</script>", "o\"wner")
                .description("it's \"quoted\""),
        )
        .await
        .unwrap();
    for i in 0..5 {
        keygate
            .manager()
            .issue(
                IssueRequest::new(format!("deploy {i}"), "ci")
                    .scopes(ScopeSet::parse(["projects:read"]).unwrap()),
            )
            .await
            .unwrap();
    }
    let config = ConsoleConfig::new()
        .scope(
            ScopeEntry::new("projects:read", "Read projects", "Projects")
                .description("List and read projects."),
        )
        .scope(ScopeEntry::new(
            "projects:write",
            "Create projects",
            "Projects",
        ))
        .scope(ScopeEntry::new(
            "tokens:self",
            "Manage own tokens",
            "Tokens",
        ))
        .template(ScopeTemplate::new("read-only client", ["projects:read"]))
        .project("website", "Website")
        .project("billing", "Billing")
        .activity(activity);
    let app = Router::new().nest("/console", keygate.console(config).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    // `localhost`: a secure context, where the browser keeps the `__Host-` cookie over HTTP.
    let base = format!("http://localhost:{port}/console");
    c.set_window_size(1280, 800).await.unwrap();

    c.goto(&format!("{base}/tokens")).await.unwrap();
    assert!(
        c.current_url()
            .await
            .unwrap()
            .as_str()
            .ends_with("/sign-in")
    );
    check_axe(&c, &axe, "sign-in").await;
    shot(&c, "sign-in").await;
    c.find(Locator::Id("f-token"))
        .await
        .unwrap()
        .send_keys(&admin)
        .await
        .unwrap();
    c.find(Locator::Css("form button[type=submit].primary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The list: the script-named token renders as text; no dialog fired.
    c.goto(&format!("{base}/tokens")).await.unwrap();
    assert!(c.get_alert_text().await.is_err(), "a dialog fired");
    let text = c
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("<script>alert(1)</script>"));
    check_axe(&c, &axe, "tokens").await;
    shot(&c, "tokens").await;

    // Create by keyboard-reachable controls, then the shown-once page.
    c.goto(&format!("{base}/new")).await.unwrap();
    check_axe(&c, &axe, "create").await;
    shot(&c, "create").await;
    c.find(Locator::Id("f-name"))
        .await
        .unwrap()
        .send_keys("browser made")
        .await
        .unwrap();
    c.find(Locator::Id("f-expiry-7d"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Id("f-scope-0"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Css("form button.primary[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let shown_url = c.current_url().await.unwrap();
    assert!(shown_url.path().contains("/shown/"));
    let token = c
        .find(Locator::Id("token"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(keygate.manager().verify(&token).await.is_ok());
    assert!(!shown_url.as_str().contains(&token));
    check_axe(&c, &axe, "shown-once").await;
    shot(&c, "shown-once").await;
    c.refresh().await.unwrap();
    let src = c.source().await.unwrap();
    assert!(!src.contains(&token), "reload shows the token");
    c.goto(&format!("{base}/my")).await.unwrap();
    c.back().await.unwrap();
    let src = c.source().await.unwrap();
    assert!(!src.contains(&token), "Back shows the token");

    // Details.
    let id = shown_url.path().rsplit('/').next().unwrap().to_owned();
    c.goto(&format!("{base}/tokens/{id}")).await.unwrap();
    check_axe(&c, &axe, "details").await;
    shot(&c, "details").await;
    c.goto(&format!("{base}/my")).await.unwrap();
    check_axe(&c, &axe, "my-tokens").await;
    shot(&c, "my-tokens").await;
    c.close().await.unwrap();
}
