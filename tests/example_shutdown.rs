//! The example service drains on SIGTERM: the real binary, under load from concurrent
//! clients creating tokens, gets SIGTERM; it exits by itself (status 0) once the requests in
//! flight are answered, and every token it committed had its 201 delivered (the number of
//! tokens in the database equals the number of 201s the clients received, plus the admin).
#![cfg(all(unix, feature = "axum", feature = "sqlite", feature = "postgres"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The example binary, built (or found up to date) by cargo with this test's features, in
/// this test's target directory (`target/<profile>/examples/server`).
fn example_binary() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--example", "server", "--all-features"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "cargo build --example server");
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let path = profile_dir.join("examples").join("server");
    assert!(path.exists(), "{} is missing", path.display());
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_response() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tokens.db");
    let mut child = Command::new(example_binary())
        .env("KEYGATE_ADDR", "127.0.0.1:0")
        .env("KEYGATE_DATABASE_URL", format!("sqlite:{}", db.display()))
        .env("KEYGATE_PEPPER", "ab".repeat(32))
        .env("RUST_LOG", "warn")
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The address, then the admin token shown once.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut base = None;
    let mut admin = None;
    while admin.is_none() {
        let line = lines
            .next()
            .expect("the service printed its address")
            .unwrap();
        if let Some(addr) = line.strip_prefix("keygate example service listening on ") {
            base = Some(addr.trim().to_owned());
        }
        if line == "Admin token (shown once, keep it safe):" {
            admin = Some(lines.next().unwrap().unwrap().trim().to_owned());
        }
    }
    let (base, admin) = (base.unwrap(), admin.unwrap());
    std::thread::spawn(move || for _ in lines {});

    let created = Arc::new(AtomicUsize::new(0));
    let after_signal = Arc::new(AtomicUsize::new(0));
    let signalled = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..24 {
        let (base, admin) = (base.clone(), admin.clone());
        let (created, after_signal, signalled) = (
            Arc::clone(&created),
            Arc::clone(&after_signal),
            Arc::clone(&signalled),
        );
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::builder().no_proxy().build().unwrap();
            for i in 0.. {
                let sent_after = signalled.load(Ordering::SeqCst);
                let r = http
                    .post(format!("{base}/api/tokens"))
                    .bearer_auth(&admin)
                    .json(&serde_json::json!({"name": format!("c{c}-{i}"), "scopes": ["projects:read"], "expires": "7d"}))
                    .send()
                    .await;
                match r {
                    Ok(resp) => {
                        assert_eq!(resp.status().as_u16(), 201);
                        created.fetch_add(1, Ordering::SeqCst);
                        if signalled.load(Ordering::SeqCst) && !sent_after {
                            after_signal.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    // Refused or closed once the service stops accepting.
                    Err(_) if signalled.load(Ordering::SeqCst) => return,
                    Err(e) => panic!("request failed before the signal: {e}"),
                }
            }
        }));
    }
    // Let the load build up, then SIGTERM.
    let started = Instant::now();
    while created.load(Ordering::SeqCst) < 100 {
        assert!(started.elapsed() < Duration::from_secs(30), "no load");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    signalled.store(true, Ordering::SeqCst);
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "the service exits by itself after draining: {status:?}"
    );
    for c in clients {
        c.await.unwrap();
    }

    let store = keygate::SqliteStore::open(&db).await.unwrap();
    let (stored,): (i64,) = sqlx::query_as("SELECT count(*) FROM keygate_tokens")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let created = created.load(Ordering::SeqCst);
    println!(
        "SIGTERM under load: {created} tokens created, {} answered after the signal, {stored} stored",
        after_signal.load(Ordering::SeqCst)
    );
    assert_eq!(
        stored as usize,
        created + 1,
        "every committed token (and the admin token) had its 201 delivered"
    );
}
