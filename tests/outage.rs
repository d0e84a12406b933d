//! A database that stops answering or goes away, through the in-test TCP proxy: a
//! verification answers `VerifyError::Store` within the outage timeout, at once while the
//! store is known to be down, and service resumes once the database is back; cached
//! verifications are served up to their TTL and never beyond; the invalidation listener
//! clears the cache after it listens again.
//!
//! Timings are printed (run with `--nocapture`). Assertions check the error's cause (which
//! proves which path answered) and use only time bounds generous enough never to flake.
#![cfg(all(feature = "postgres", feature = "sqlite", feature = "test-util"))]
#![allow(clippy::expect_used, reason = "test helpers panic on setup failure")]

mod common;

use std::time::{Duration, Instant};

use keygate::cache::CacheConfig;
use keygate::error::StoreError;
use keygate::store::outage::{DEFAULT_OUTAGE_TIMEOUT, OutageError};
use keygate::{IssueRequest, ServerKey, SqliteStore, TokenManager, VerifyError};

use common::{Proxy, TestSchema, percentile};

fn manager(store: impl keygate::store::TokenStore + 'static, key: &ServerKey) -> TokenManager {
    TokenManager::builder(store)
        .server_key(ServerKey::from_bytes(key.expose_hex().as_bytes().to_vec()).expect("key"))
        .build()
        .expect("manager")
}

fn cached(
    store: impl keygate::store::TokenStore + 'static,
    key: &ServerKey,
    ttl: Duration,
) -> TokenManager {
    TokenManager::builder(store)
        .server_key(ServerKey::from_bytes(key.expose_hex().as_bytes().to_vec()).expect("key"))
        .cache(CacheConfig::new().ttl(ttl).expect("ttl"))
        .build()
        .expect("manager")
}

/// The outage cause of a verification's store error, if it has one.
fn outage_of(r: &Result<keygate::VerifiedToken, VerifyError>) -> Option<OutageError> {
    match r {
        Err(VerifyError::Store(StoreError::Backend(e))) => e.downcast_ref::<OutageError>().copied(),
        _ => None,
    }
}

/// Verifies until the token is accepted again; returns how long that took.
async fn until_accepted(m: &TokenManager, token: &str) -> Duration {
    let since = Instant::now();
    loop {
        match m.verify(token).await {
            Ok(_) => return since.elapsed(),
            Err(VerifyError::Store(_)) => {
                assert!(
                    since.elapsed() < Duration::from_secs(10),
                    "service must resume once the database is back"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
}

/// Fast failures while down: every one is `OutageError::Down`; returns their p50 and p99.
async fn fail_fast(m: &TokenManager, token: &str, n: usize) -> (Duration, Duration) {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = m.verify(token).await;
        times.push(t.elapsed());
        assert_eq!(
            outage_of(&r),
            Some(OutageError::Down),
            "while the store is down a verification fails at once, closed: {r:?}"
        );
    }
    times.sort();
    (percentile(&times, 50), percentile(&times, 99))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_database_answers_within_the_bound_then_at_once_and_service_resumes() {
    let Some((schema, direct)) = TestSchema::new().await else {
        return;
    };
    let proxy = Proxy::start(&schema.url).await;
    let store = schema.store_at(&proxy.url(&schema.url)).await;
    let key = ServerKey::generate();
    let issuer = manager(direct, &key);
    let m = manager(store, &key);
    let issued = issuer
        .issue(IssueRequest::new("ci", "alice"))
        .await
        .expect("issue");
    let token = issued.expose_secret();
    m.verify(token).await.expect("verifies before the outage");

    proxy.stall();
    let t = Instant::now();
    let first = m.verify(token).await;
    let first_took = t.elapsed();
    assert_eq!(
        outage_of(&first),
        Some(OutageError::TimedOut(DEFAULT_OUTAGE_TIMEOUT)),
        "a hung database is a store error after the timeout: {first:?}"
    );
    assert!(first_took < Duration::from_secs(2), "{first_took:?}");
    let (p50, p99) = fail_fast(&m, token, 1000).await;

    proxy.restore();
    let resumed = until_accepted(&m, token).await;
    println!(
        "hung database: first answer {first_took:?} (bound {DEFAULT_OUTAGE_TIMEOUT:?}); \
         while down p50 {p50:?} p99 {p99:?}; resumed {resumed:?} after restore"
    );
    assert!(resumed < Duration::from_secs(5), "{resumed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_refuses_connections_fails_fast_and_service_resumes() {
    let Some((schema, direct)) = TestSchema::new().await else {
        return;
    };
    let proxy = Proxy::start(&schema.url).await;
    let store = schema.store_at(&proxy.url(&schema.url)).await;
    let key = ServerKey::generate();
    let issuer = manager(direct, &key);
    let m = manager(store, &key);
    let issued = issuer
        .issue(IssueRequest::new("ci", "alice"))
        .await
        .expect("issue");
    let token = issued.expose_secret();
    m.verify(token).await.expect("verifies before the outage");

    proxy.cut();
    let t = Instant::now();
    let first = m.verify(token).await;
    let first_took = t.elapsed();
    assert!(
        matches!(first, Err(VerifyError::Store(_))),
        "fail closed: {first:?}"
    );
    assert!(first_took < Duration::from_secs(2), "{first_took:?}");
    // The broken connection or the refused reconnect marked the store down.
    if outage_of(&first) != Some(OutageError::Down) {
        let second = m.verify(token).await;
        assert!(matches!(second, Err(VerifyError::Store(_))), "{second:?}");
    }
    let (p50, p99) = fail_fast(&m, token, 1000).await;
    // Management fails at once too, with a store error.
    assert!(matches!(
        m.revoke(issued.id()).await,
        Err(keygate::Error::Store(_))
    ));

    proxy.restore();
    let resumed = until_accepted(&m, token).await;
    println!(
        "refused connections: first answer {first_took:?}; while down p50 {p50:?} p99 {p99:?}; \
         resumed {resumed:?} after restore"
    );
    assert!(resumed < Duration::from_secs(5), "{resumed:?}");
    // Resumed for good: the connections the outage broke were discarded by the probe.
    for _ in 0..50 {
        m.verify(token).await.expect("verifies after the outage");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_verifications_are_served_during_an_outage_up_to_their_ttl() {
    let Some((schema, direct)) = TestSchema::new().await else {
        return;
    };
    let proxy = Proxy::start(&schema.url).await;
    let store = schema.store_at(&proxy.url(&schema.url)).await;
    let key = ServerKey::generate();
    let issuer = manager(direct, &key);
    let ttl = Duration::from_millis(1500);
    let m = cached(store.clone(), &key, ttl);
    let _listener = store
        .spawn_invalidation_listener(m.clone())
        .await
        .expect("listener");
    let hot = issuer
        .issue(IssueRequest::new("hot", "alice"))
        .await
        .expect("issue");
    let cold = issuer
        .issue(IssueRequest::new("cold", "alice"))
        .await
        .expect("issue");
    let cached_at = Instant::now();
    m.verify(hot.expose_secret()).await.expect("caches");

    proxy.cut();
    // The listener lost its connection too: that alone does not drop the cache.
    tokio::time::sleep(Duration::from_millis(100)).await;
    m.verify(hot.expose_secret())
        .await
        .expect("a cached entry within its TTL is served during the outage");
    let got = m.verify(cold.expose_secret()).await;
    assert!(
        matches!(got, Err(VerifyError::Store(_))),
        "an uncached token fails closed: {got:?}"
    );
    let garbage = format!("{}x", &hot.expose_secret()[..hot.expose_secret().len() - 1]);
    assert!(
        m.verify(&garbage).await.is_err(),
        "nothing unknown is accepted"
    );
    while cached_at.elapsed() < ttl + Duration::from_millis(50) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = m.verify(hot.expose_secret()).await;
    assert!(
        matches!(got, Err(VerifyError::Store(_))),
        "an entry past its TTL is never served: {got:?}"
    );
    proxy.restore();
    until_accepted(&m, hot.expose_secret()).await;
}

/// A revoke committed while the listener is reconnecting, for a token cached while the
/// listener was away: the listener clears the cache once it listens again, so the revoke is
/// seen long before the 60 s TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_clears_entries_cached_while_it_was_reconnecting() {
    let Some((schema, direct_a)) = TestSchema::new().await else {
        return;
    };
    let proxy = Proxy::start(&schema.url).await;
    let key = ServerKey::generate();
    let a = manager(direct_a, &key);
    // B reads directly; only its listener goes through the proxy.
    let b = cached(schema.store().await, &key, Duration::from_secs(60));
    let via_proxy = schema.store_at(&proxy.url(&schema.url)).await;
    let listener = via_proxy
        .spawn_invalidation_listener(b.clone())
        .await
        .expect("listener");
    let issued = a
        .issue(IssueRequest::new("ci", "alice"))
        .await
        .expect("issue");

    // The listener's connection drops; its reconnect takes 700 ms to reach the server.
    proxy.delay_new_connections(Duration::from_millis(700));
    proxy.drop_connections();
    tokio::time::sleep(Duration::from_millis(150)).await;
    // While it is away: B caches the token, A revokes it (the notification is lost).
    b.verify(issued.expose_secret()).await.expect("B caches");
    a.revoke(issued.id()).await.expect("revoke");
    let revoked = Instant::now();
    loop {
        match b.verify(issued.expose_secret()).await {
            Err(VerifyError::Revoked) => break,
            Ok(_) => {
                assert!(
                    revoked.elapsed() < Duration::from_secs(15),
                    "the entry cached during the reconnect must be dropped once the listener \
                     listens again, not live to its 60 s TTL"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!(listener.is_running());
    println!(
        "entry cached during the listener's reconnect dropped {:?} after the revoke",
        revoked.elapsed()
    );
}

#[tokio::test]
async fn sqlite_a_closed_pool_marks_the_store_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("k.db"))
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    let key = ServerKey::generate();
    let m = manager(store.clone(), &key);
    let issued = m
        .issue(IssueRequest::new("ci", "alice"))
        .await
        .expect("issue");
    m.verify(issued.expose_secret()).await.expect("verifies");
    store.pool().close().await;
    let first = m.verify(issued.expose_secret()).await;
    assert!(matches!(first, Err(VerifyError::Store(_))), "{first:?}");
    let second = m.verify(issued.expose_secret()).await;
    assert_eq!(outage_of(&second), Some(OutageError::Down), "{second:?}");
}

#[test]
fn the_default_bound_is_at_most_250_ms() {
    assert!(DEFAULT_OUTAGE_TIMEOUT <= Duration::from_millis(250));
}
