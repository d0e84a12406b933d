//! Several instances on one PostgreSQL: two managers with their own pools and verification
//! caches. A revoke, disable, rotate or delete on A is seen by B within the notification
//! latency with the invalidation listener, and within the cache TTL without it. The
//! database going away makes every verification a store error, and service resumes when it
//! returns.
//!
//! Timings are printed (run with `--nocapture`); assertions use only bounds generous
//! enough never to flake.
#![cfg(all(feature = "postgres", feature = "test-util"))]
#![allow(clippy::expect_used, reason = "test helpers panic on setup failure")]

mod common;

use std::time::{Duration, Instant};

use keygate::cache::CacheConfig;
use keygate::{IssueRequest, PostgresStore, RotateRequest, ServerKey, TokenManager, VerifyError};

use common::{Proxy, TestSchema, percentile};

fn manager(store: PostgresStore, key: &ServerKey, ttl: Duration) -> TokenManager {
    TokenManager::builder(store)
        .server_key(ServerKey::from_bytes(key.expose_hex().as_bytes().to_vec()).expect("key"))
        .cache(CacheConfig::new().ttl(ttl).expect("ttl"))
        .build()
        .expect("manager")
}

#[derive(Clone, Copy, Debug)]
enum Change {
    Revoke,
    Disable,
    Rotate,
    Delete,
}

/// One trial: issue on A, verify on B (cached), change on A, then time until B rejects.
///
/// Also checks the cache's hard bound: B's entry was read from the store before
/// `cached_by`, so no verification that starts `ttl` after `cached_by` may accept the token.
async fn trial(
    a: &TokenManager,
    b: &TokenManager,
    change: Change,
    ttl: Duration,
    limit: Duration,
) -> Duration {
    let issued = a
        .issue(IssueRequest::new("trial", "alice"))
        .await
        .expect("issue");
    let token = issued.expose_secret();
    b.verify(token).await.expect("B verifies (and caches)");
    let cached_by = Instant::now();
    b.verify(token).await.expect("B verifies from its cache");
    match change {
        Change::Revoke => drop(a.revoke(issued.id()).await.expect("revoke")),
        Change::Disable => drop(a.disable(issued.id()).await.expect("disable")),
        Change::Rotate => drop(
            a.rotate(issued.id(), RotateRequest::new())
                .await
                .expect("rotate"),
        ),
        Change::Delete => a.delete(issued.id()).await.expect("delete"),
    }
    let changed = Instant::now();
    loop {
        let started = Instant::now();
        match b.verify(token).await {
            Ok(_) => {
                assert!(
                    started < cached_by + ttl,
                    "B served an entry older than the TTL after a {change:?} on A"
                );
                assert!(
                    changed.elapsed() < limit,
                    "B still accepts the token {:?} after a {change:?} on A",
                    changed.elapsed()
                );
                tokio::task::yield_now().await;
            }
            Err(e) => {
                let expected = match change {
                    Change::Revoke => matches!(e, VerifyError::Revoked),
                    Change::Disable => matches!(e, VerifyError::Disabled),
                    Change::Rotate => matches!(e, VerifyError::RotatedOut),
                    Change::Delete => matches!(e, VerifyError::Unknown),
                };
                assert!(
                    expected,
                    "after a {change:?} on A, B must reject for that reason, got {e:?}"
                );
                return changed.elapsed();
            }
        }
    }
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "{what}: n={} p50={:?} p99={:?} max={:?}",
        times.len(),
        percentile(&times, 50),
        percentile(&times, 99),
        times.last().copied().unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_on_one_instance_reach_the_other_through_notifications() {
    let Some((schema, store_a)) = TestSchema::new().await else {
        return;
    };
    let store_b = schema.store().await;
    let key = ServerKey::generate();
    let ttl = Duration::from_secs(5);
    let a = manager(store_a, &key, ttl);
    let b = manager(store_b.clone(), &key, ttl);
    let listener = store_b
        .spawn_invalidation_listener(b.clone())
        .await
        .expect("listener");
    let changes = [
        Change::Revoke,
        Change::Disable,
        Change::Rotate,
        Change::Delete,
    ];
    let mut times = Vec::new();
    for i in 0..200 {
        times.push(trial(&a, &b, changes[i % 4], ttl, ttl + Duration::from_secs(1)).await);
    }
    assert!(listener.is_running());
    let mut sorted = times.clone();
    sorted.sort();
    report("with notifications, time until B rejects", times);
    // The guaranteed bound is the TTL; with notifications the median is far below it (a
    // generous bound that still fails if notifications did nothing: without them every
    // trial would wait for the TTL).
    assert!(
        percentile(&sorted, 50) < ttl / 5,
        "the median must be far below the TTL with notifications: {:?}",
        percentile(&sorted, 50)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_notifications_the_ttl_bounds_staleness() {
    let Some((schema, store_a)) = TestSchema::new().await else {
        return;
    };
    let store_b = schema.store().await;
    let key = ServerKey::generate();
    let ttl = Duration::from_millis(300);
    let a = manager(store_a, &key, ttl);
    let b = manager(store_b, &key, ttl);
    let mut times = Vec::new();
    for i in 0..20 {
        let change = [
            Change::Revoke,
            Change::Disable,
            Change::Rotate,
            Change::Delete,
        ][i % 4];
        times.push(trial(&a, &b, change, ttl, ttl + Duration::from_secs(1)).await);
    }
    report(
        "without notifications (TTL 300 ms), time until B rejects",
        times,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_lost_while_disconnected_is_covered_by_the_reconnect() {
    let Some((schema, store_a)) = TestSchema::new().await else {
        return;
    };
    let proxy = Proxy::start(&schema.url).await;
    // B talks to the database through the proxy; A directly.
    let store_b = schema.store_at(&proxy.url(&schema.url)).await;
    let key = ServerKey::generate();
    let ttl = Duration::from_secs(60);
    let a = manager(store_a, &key, ttl);
    let b = manager(store_b.clone(), &key, ttl);
    let _listener = store_b
        .spawn_invalidation_listener(b.clone())
        .await
        .expect("listener");
    let issued = a
        .issue(IssueRequest::new("ci", "alice"))
        .await
        .expect("issue");
    b.verify(issued.expose_secret()).await.expect("B caches");
    proxy.cut();
    a.revoke(issued.id())
        .await
        .expect("revoke while B is cut off");
    // B's cache still holds the token (its TTL is 60 s): that is the documented bound.
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.restore();
    let restored = Instant::now();
    loop {
        match b.verify(issued.expose_secret()).await {
            Err(VerifyError::Revoked) => break,
            Ok(_) | Err(VerifyError::Store(_)) => {
                assert!(
                    restored.elapsed() < Duration::from_secs(20),
                    "after reconnecting, B must drop its cache long before the 60 s TTL"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    println!(
        "lost notification: B rejects {:?} after the database returns",
        restored.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_going_away_fails_closed_and_service_resumes() {
    let Some((schema, direct)) = TestSchema::new().await else {
        return;
    };
    let proxy = Proxy::start(&schema.url).await;
    let store = schema.store_at(&proxy.url(&schema.url)).await;
    let key = ServerKey::generate();
    let plain = TokenManager::builder(store.clone())
        .server_key(ServerKey::from_bytes(key.expose_hex().as_bytes().to_vec()).expect("key"))
        .build()
        .expect("manager");
    let ttl = Duration::from_millis(300);
    let cached = manager(store.clone(), &key, ttl);
    let _ = direct;
    let mut tokens = Vec::new();
    for i in 0..5 {
        let t = plain
            .issue(IssueRequest::new(format!("t{i}"), "alice"))
            .await
            .expect("issue");
        plain.verify(t.expose_secret()).await.expect("verifies");
        cached
            .verify(t.expose_secret())
            .await
            .expect("verifies and caches");
        tokens.push(t);
    }

    proxy.cut();
    // Without a cache: every verification is a store error; none is authorised.
    let started = Instant::now();
    let mut refused = 0;
    while started.elapsed() < Duration::from_secs(1) {
        for t in &tokens {
            match plain.verify(t.expose_secret()).await {
                Err(VerifyError::Store(_)) => refused += 1,
                other => panic!("during the outage a verification must fail closed, got {other:?}"),
            }
        }
    }
    assert!(refused >= tokens.len(), "the outage was exercised");
    // With a cache: once the TTL has passed, nothing is served from it either.
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    for t in &tokens {
        let got = cached.verify(t.expose_secret()).await;
        assert!(
            matches!(got, Err(VerifyError::Store(_))),
            "an entry past its TTL must never be served when the store fails, got {got:?}"
        );
    }
    // Management fails with a store error too.
    assert!(matches!(
        plain.revoke(tokens[0].id()).await,
        Err(keygate::Error::Store(_))
    ));

    proxy.restore();
    let restored = Instant::now();
    for m in [&plain, &cached] {
        loop {
            match m.verify(tokens[1].expose_secret()).await {
                Ok(_) => break,
                Err(VerifyError::Store(_)) => {
                    assert!(
                        restored.elapsed() < Duration::from_secs(20),
                        "service must resume once the database is back"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
    }
    println!(
        "outage: {refused} verifications refused; resumed {:?} after restore",
        restored.elapsed()
    );
}
