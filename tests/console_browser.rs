//! The web console in a real Chromium (Debian's `chromium` and `chromium-driver`), driven
//! over WebDriver: sign in, create, the shown-once page and its reload and Back, escaping
//! (no dialog fires), axe-core on every page (no serious or critical violation), and
//! screenshots of a 1280x800 viewport in `docs/console/`; then every operation (filter,
//! pages, toggle, mass disable, edit, regenerate with grace, revoke, delete), the create flow
//! by keyboard alone, and self-service kept to its owner's tokens, each checked through the
//! manager.
//!
//! Skips, saying so, when no browser is installed, unless `KEYGATE_REQUIRE_BROWSER=1`. axe-core
//! is read from `KEYGATE_AXE_JS` or `target/axe/node_modules/axe-core/axe.min.js`
//! (`npm install --prefix target/axe axe-core`); without it the accessibility check fails
//! under `KEYGATE_REQUIRE_BROWSER=1` and is skipped otherwise.

#![cfg(feature = "console")]
#![expect(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

use std::process::{Child, Command, Stdio};

use axum::Router;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use keygate::audit::MemoryActivity;
use keygate::axum::Keygate;
use keygate::console::{ConsoleConfig, ScopeEntry, ScopeTemplate};
use keygate::expiry::{Clock, ManualClock};
use keygate::{
    ExpiryPreset, IssueRequest, MemoryStore, ScopeSet, ServerKey, TokenManager, TokenStatus,
    VerifyError,
};
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

/// Sizes the window so that the page itself (the viewport) is 1280x800: the window's own
/// frame takes some of the size `set_window_size` gives.
async fn viewport_1280x800(c: &Client) {
    c.set_window_size(1280, 800).await.unwrap();
    let inner = c
        .execute("return [window.innerWidth, window.innerHeight];", vec![])
        .await
        .unwrap();
    let (w, h) = (inner[0].as_u64().unwrap(), inner[1].as_u64().unwrap());
    let (w, h) = (u32::try_from(w).unwrap(), u32::try_from(h).unwrap());
    c.set_window_size(1280 + (1280 - w.min(1280)), 800 + (800 - h.min(800)))
        .await
        .unwrap();
    let inner = c
        .execute("return [window.innerWidth, window.innerHeight];", vec![])
        .await
        .unwrap();
    assert_eq!(inner, serde_json::json!([1280, 800]), "the viewport");
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
    c.goto(&format!("{base}/tokens")).await.unwrap();
    viewport_1280x800(&c).await;
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

/// Presses and releases one key, sent to whatever has the focus (as a keyboard would).
async fn press(c: &Client, key: char) {
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    c.perform_actions(keys).await.unwrap();
}

async fn type_text(c: &Client, text: &str) {
    for ch in text.chars() {
        press(c, ch).await;
    }
}

/// The focused element: its id, or its tag and text when it has none.
async fn focused(c: &Client) -> String {
    c.execute(
        "const e = document.activeElement; return e.id || (e.tagName + ':' + e.textContent.trim());",
        vec![],
    )
    .await
    .unwrap()
    .as_str()
    .unwrap()
    .to_owned()
}

/// Tabs forward until `target` has the focus (at most 100 presses).
async fn tab_to(c: &Client, target: &str) {
    for _ in 0..100 {
        if focused(c).await == target {
            return;
        }
        press(c, Key::Tab.into()).await;
    }
    panic!("Tab never reached {target}");
}

/// Arrow keys within a radio group until `target` is focused (and so checked).
async fn arrow_to(c: &Client, target: &str) {
    for _ in 0..12 {
        if focused(c).await == target {
            return;
        }
        press(c, Key::Down.into()).await;
    }
    panic!("the arrow keys never reached {target}");
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Waits (at most 10 s) until the page that was current when marked is replaced and loaded.
async fn wait_for_next_page(c: &Client) {
    for _ in 0..200 {
        let done = c
            .execute(
                "return window.__keygate_old === undefined && document.readyState === 'complete';",
                vec![],
            )
            .await
            .unwrap_or(Value::Bool(false));
        if done == Value::Bool(true) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the next page never loaded");
}

/// Clicks a link or a submit button and waits for the page it loads.
async fn click_to_page(c: &Client, css: &str) {
    c.execute("window.__keygate_old = true;", vec![])
        .await
        .unwrap();
    click(c, css).await;
    wait_for_next_page(c).await;
}

/// Clicks a button that asks first (`data-confirm`), checks the question, says yes and
/// waits for the answer's page.
async fn click_confirmed(c: &Client, css: &str, question: &str) {
    c.execute("window.__keygate_old = true;", vec![])
        .await
        .unwrap();
    click(c, css).await;
    let text = c.get_alert_text().await.unwrap();
    assert!(text.contains(question), "the dialog says {text:?}");
    c.accept_alert().await.unwrap();
    wait_for_next_page(c).await;
}

async fn rows(c: &Client) -> Vec<String> {
    let mut names = Vec::new();
    for row in c.find_all(Locator::Css("main tbody tr")).await.unwrap() {
        names.push(
            row.find(Locator::Css("td:nth-child(2)"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    names
}

/// The first two cells of each row of the page's table.
async fn cells(c: &Client) -> Vec<[String; 2]> {
    let mut out = Vec::new();
    for row in c.find_all(Locator::Css("main tbody tr")).await.unwrap() {
        let tds = row.find_all(Locator::Css("td")).await.unwrap();
        out.push([tds[0].text().await.unwrap(), tds[1].text().await.unwrap()]);
    }
    out
}

async fn main_text(c: &Client) -> String {
    c.find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn sign_in(c: &Client, base: &str, token: &str) {
    c.goto(&format!("{base}/sign-in")).await.unwrap();
    c.find(Locator::Id("f-token"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    click_to_page(c, "form button[type=submit].primary").await;
}

/// Every operation of the list and details pages, made in the browser and checked through
/// the manager: filter, paginate, toggle, mass disable, edit, regenerate with grace, revoke,
/// delete, the create flow by keyboard alone, and self-service kept to its own tokens.
#[tokio::test]
async fn operating_tokens_in_chromium() {
    let Some((c, _driver, _profile)) = browser().await else {
        return;
    };
    let axe = axe_source();
    let clock = ManualClock::new(chrono::Utc::now());
    let manager = TokenManager::builder(MemoryStore::new())
        .server_key(ServerKey::generate())
        .clock(clock.clone())
        .build()
        .unwrap();
    let keygate = Keygate::new(manager);
    let m = keygate.manager().clone();
    let admin = m
        .issue(
            IssueRequest::new("admin", "admin")
                .scopes(ScopeSet::parse(["*"]).unwrap())
                .expiry(ExpiryPreset::Never),
        )
        .await
        .unwrap()
        .expose_secret()
        .to_owned();
    // 60 tokens of one owner: more than a page (50).
    let mut deploy = Vec::new();
    for i in 0..60 {
        clock.advance(std::time::Duration::from_secs(1));
        let t = m
            .issue(
                IssueRequest::new(format!("deploy {i:02}"), "ci")
                    .scopes(ScopeSet::parse(["projects:read"]).unwrap()),
            )
            .await
            .unwrap();
        deploy.push((t.id().clone(), t.expose_secret().to_owned()));
    }
    let alice = m
        .issue(
            IssueRequest::new("alice console", "alice").scopes(
                ScopeSet::parse(["tokens:console", "tokens:self", "projects:read"]).unwrap(),
            ),
        )
        .await
        .unwrap()
        .expose_secret()
        .to_owned();
    clock.advance(std::time::Duration::from_secs(1));
    m.issue(
        IssueRequest::new("alice laptop", "alice")
            .scopes(ScopeSet::parse(["projects:read"]).unwrap()),
    )
    .await
    .unwrap();
    let config = ConsoleConfig::new()
        .scope(ScopeEntry::new(
            "projects:read",
            "Read projects",
            "Projects",
        ))
        .scope(ScopeEntry::new(
            "projects:write",
            "Create projects",
            "Projects",
        ));
    let app = Router::new().nest("/console", keygate.console(config).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let base = format!("http://localhost:{port}/console");
    sign_in(&c, &base, &admin).await;
    let id_of = |i: usize| deploy[i].0.as_str().to_owned();
    let secret_of = |i: usize| deploy[i].1.clone();

    // Filter by name: exactly the ten "deploy 0x".
    c.goto(&format!("{base}/tokens")).await.unwrap();
    c.find(Locator::Id("q-name"))
        .await
        .unwrap()
        .send_keys("deploy 0")
        .await
        .unwrap();
    click_to_page(&c, "form.filters button[type=submit]").await;
    let mut names = rows(&c).await;
    names.sort();
    let expected: Vec<String> = (0..10).map(|i| format!("deploy {i:02}")).collect();
    assert_eq!(names, expected);

    // Paginate: 63 tokens, newest first, 50 then 13, no token twice, none left out.
    c.goto(&format!("{base}/tokens")).await.unwrap();
    let first = rows(&c).await;
    assert_eq!(first.len(), 50);
    assert_eq!(first[0], "alice laptop", "newest first");
    assert!(c.find(Locator::Css("a[rel=next]")).await.is_ok());
    click_to_page(&c, "a[rel=next]").await;
    let second = rows(&c).await;
    assert_eq!(second.len(), 13);
    assert!(
        c.find(Locator::Css("a[rel=next]")).await.is_err(),
        "a third page"
    );
    let mut all: Vec<String> = first.iter().chain(&second).cloned().collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 63);

    // Toggle a status with one click; the token stops working, then works again.
    c.goto(&format!("{base}/tokens?name=deploy+00"))
        .await
        .unwrap();
    click_to_page(&c, "button[aria-label='Disable deploy 00']").await;
    assert!(matches!(
        m.verify(&secret_of(0)).await,
        Err(VerifyError::Disabled)
    ));
    c.goto(&format!("{base}/tokens?name=deploy+00"))
        .await
        .unwrap();
    click_to_page(&c, "button[aria-label='Enable deploy 00']").await;
    assert!(m.verify(&secret_of(0)).await.is_ok());

    // Mass disable two of them, after a confirmation; the result is listed per token.
    c.goto(&format!("{base}/tokens?name=deploy+0"))
        .await
        .unwrap();
    click(&c, "input[aria-label='Select deploy 01']").await;
    click(&c, "input[aria-label='Select deploy 02']").await;
    click_confirmed(&c, "button[value=disable]", "Disable the selected tokens?").await;
    check_axe(&c, &axe, "bulk result").await;
    let mut result = cells(&c).await;
    result.sort();
    let mut expected = [
        [id_of(1), "changed".to_owned()],
        [id_of(2), "changed".to_owned()],
    ];
    expected.sort();
    assert_eq!(result, expected);
    for i in [1, 2] {
        assert!(matches!(
            m.verify(&secret_of(i)).await,
            Err(VerifyError::Disabled)
        ));
    }
    assert!(
        m.verify(&secret_of(3)).await.is_ok(),
        "an unticked token changed"
    );

    // Edit: rename and describe.
    c.goto(&format!("{base}/tokens/{}", id_of(3)))
        .await
        .unwrap();
    let name = c.find(Locator::Id("f-name")).await.unwrap();
    name.clear().await.unwrap();
    name.send_keys("renamed 03").await.unwrap();
    c.find(Locator::Id("f-description"))
        .await
        .unwrap()
        .send_keys("edited in a browser")
        .await
        .unwrap();
    click_to_page(&c, "main form[novalidate] button.primary[type=submit]").await;
    let r = m.get(&deploy[3].0).await.unwrap();
    assert_eq!(r.name, "renamed 03");
    assert_eq!(r.description, "edited in a browser");

    // Regenerate with a grace period of 1 hour: the old value works inside it, not after.
    c.goto(&format!("{base}/tokens/{}", id_of(4)))
        .await
        .unwrap();
    c.find(Locator::Id("f-grace"))
        .await
        .unwrap()
        .select_by_value("1h")
        .await
        .unwrap();
    click(&c, "#f-regen_expiry-30d").await;
    click_confirmed(
        &c,
        "form[action$='/regenerate'] button[type=submit]",
        "The current value stops working",
    )
    .await;
    let fresh = c
        .find(Locator::Id("token"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_ne!(fresh, secret_of(4));
    assert!(m.verify(&fresh).await.is_ok());
    assert!(
        m.verify(&secret_of(4)).await.is_ok(),
        "inside the grace period"
    );
    clock.advance(std::time::Duration::from_secs(3600 - 60));
    assert!(
        m.verify(&secret_of(4)).await.is_ok(),
        "inside the grace period"
    );
    clock.advance(std::time::Duration::from_secs(120));
    assert!(
        m.verify(&secret_of(4)).await.is_err(),
        "after the grace period"
    );
    assert!(m.verify(&fresh).await.is_ok());

    // Revoke, then delete, each after a confirmation.
    c.goto(&format!("{base}/tokens/{}", id_of(5)))
        .await
        .unwrap();
    click_confirmed(
        &c,
        "form[action$='/revoke'] button[type=submit]",
        "cannot be undone",
    )
    .await;
    assert_eq!(
        m.get(&deploy[5].0).await.unwrap().status,
        TokenStatus::Revoked
    );
    assert!(m.verify(&secret_of(5)).await.is_err());
    c.goto(&format!("{base}/tokens/{}", id_of(6)))
        .await
        .unwrap();
    click_confirmed(
        &c,
        "form[action$='/delete'] button[type=submit]",
        "cannot be undone",
    )
    .await;
    assert!(
        m.get(&deploy[6].0).await.is_err(),
        "the record is still there"
    );

    // Create by keyboard alone: Tab to each control, arrow keys in radio groups, Space to
    // tick, Enter to submit.
    c.goto(&format!("{base}/new")).await.unwrap();
    tab_to(&c, "f-name").await;
    type_text(&c, "typed by keyboard").await;
    tab_to(&c, "f-expiry-30d").await;
    arrow_to(&c, "f-expiry-90d").await;
    // "Specific permissions" is the default: Tab enters the group on it.
    tab_to(&c, "f-perm-specific").await;
    tab_to(&c, "f-scope-0").await;
    press(&c, ' ').await;
    tab_to(&c, "BUTTON:Create token").await;
    c.execute("window.__keygate_old = true;", vec![])
        .await
        .unwrap();
    press(&c, Key::Enter.into()).await;
    wait_for_next_page(&c).await;
    let typed = c
        .find(Locator::Id("token"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let v = m.verify(&typed).await.unwrap();
    let r = m.get(v.id()).await.unwrap();
    assert_eq!(r.name, "typed by keyboard");
    assert_eq!(r.scopes, ScopeSet::parse(["projects:read"]).unwrap());
    let days = (r.expiry.at().unwrap() - r.created_at).num_days();
    assert_eq!(days, 90);

    // Every expiry preset, and a custom date typed into the date field.
    let custom = (clock.now() + chrono::Duration::days(45)).date_naive();
    for preset in ["7d", "30d", "60d", "90d", "never", "custom"] {
        c.goto(&format!("{base}/new")).await.unwrap();
        c.find(Locator::Id("f-name"))
            .await
            .unwrap()
            .send_keys(&format!("preset {preset}"))
            .await
            .unwrap();
        click(&c, &format!("#f-expiry-{preset}")).await;
        if preset == "custom" {
            // Typed as a person would, in the en-US order the date field shows.
            c.find(Locator::Id("f-expiry_date"))
                .await
                .unwrap()
                .send_keys(&custom.format("%m%d%Y").to_string())
                .await
                .unwrap();
        }
        click(&c, "#f-scope-0").await;
        click_to_page(&c, "main form button.primary[type=submit]").await;
        let t = c
            .find(Locator::Id("token"))
            .await
            .unwrap_or_else(|e| panic!("preset {preset}: {e}"))
            .text()
            .await
            .unwrap();
        let v = m.verify(&t).await.unwrap();
        let r = m.get(v.id()).await.unwrap();
        assert_eq!(r.name, format!("preset {preset}"));
        let expected = match preset {
            "never" => keygate::Expiry::Never,
            "custom" => keygate::Expiry::At(custom.and_hms_opt(23, 59, 59).unwrap().and_utc()),
            days => keygate::Expiry::At(
                r.created_at + chrono::Duration::days(days.trim_end_matches('d').parse().unwrap()),
            ),
        };
        assert_eq!(r.expiry, expected, "preset {preset}");
    }

    // Self-service: alice sees and reaches only her own tokens.
    c.delete_all_cookies().await.unwrap();
    sign_in(&c, &base, &alice).await;
    c.goto(&format!("{base}/tokens")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/my"));
    let mut mine = rows(&c).await;
    mine.sort();
    assert_eq!(mine, ["alice console", "alice laptop"]);
    c.goto(&format!("{base}/tokens/{}", id_of(7)))
        .await
        .unwrap();
    let src = c.source().await.unwrap();
    assert!(!src.contains("deploy 07"), "another owner's token is shown");
    assert!(main_text(&c).await.contains("No such token."));
    c.goto(&format!("{base}/my?name=deploy")).await.unwrap();
    assert!(rows(&c).await.is_empty(), "a filter reaches another owner");
    c.close().await.unwrap();
}
