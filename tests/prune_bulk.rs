//! Pruning 100,000 records on SQLite and on PostgreSQL, in batches of 1000: every ended
//! record goes (with its child rows), the live ones stay, each batch is one audit event, and
//! the store keeps serving issues and verifications while the batches run (no lock is held
//! longer than a batch). On PostgreSQL each deleted id is notified to other instances.
#![cfg(all(feature = "sqlite", feature = "postgres", feature = "test-util"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use chrono::{TimeZone, Utc};
use keygate::audit::{AuditEvent, AuditKind};
use keygate::expiry::ManualClock;
use keygate::store::TokenStore;
use keygate::store::outage::OutagePolicy;
use keygate::{ExpiryPreset, IssueRequest, ServerKey, SqliteStore, TokenManager};

const N: i64 = 100_000;
const BATCH: u64 = 1000;
const DAY: StdDuration = StdDuration::from_secs(86_400);

fn old_micros() -> i64 {
    Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0)
        .unwrap()
        .timestamp_micros()
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

type Events = Arc<Mutex<Vec<AuditEvent>>>;

/// An outage policy that waits 10 s for a verification read.
fn patient() -> OutagePolicy {
    OutagePolicy::new()
        .timeout(StdDuration::from_secs(10))
        .unwrap()
}

fn manager(store: impl TokenStore + 'static, events: &Events) -> TokenManager {
    let sink = Arc::clone(events);
    TokenManager::builder(store)
        .server_key(ServerKey::from_bytes([9u8; 32]).unwrap())
        .clock(ManualClock::new(now()))
        .audit_sink(move |e: &AuditEvent| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap()
}

/// Prunes while another task issues and verifies tokens; returns the longest of those
/// operations and how many ran. Checks the report and the audit events.
async fn prune_under_load(m: &TokenManager, events: &Events) -> (StdDuration, usize) {
    let live: Vec<_> = {
        let mut v = Vec::new();
        for i in 0..5 {
            let t = m
                .issue(IssueRequest::new(format!("live {i}"), "alice").expiry(ExpiryPreset::Days30))
                .await
                .unwrap();
            v.push(t.expose_secret().to_owned());
        }
        v
    };
    assert_eq!(m.prunable(30 * DAY).await.unwrap(), N as u64);
    let done = Arc::new(AtomicBool::new(false));
    let load = {
        let (m, done, events) = (m.clone(), Arc::clone(&done), Arc::clone(events));
        tokio::spawn(async move {
            let (mut longest, mut ops) = (StdDuration::ZERO, 0);
            let mut between_batches = false;
            while !done.load(Ordering::Relaxed) {
                let started = Instant::now();
                let t = m
                    .issue(IssueRequest::new("during", "bob").expiry(ExpiryPreset::Days7))
                    .await
                    .expect("issue while pruning");
                m.verify(t.expose_secret())
                    .await
                    .expect("verify while pruning");
                longest = longest.max(started.elapsed());
                ops += 1;
                // Done after some batches and before the last: the prune let it through.
                let batches = events
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|e| matches!(e.kind, AuditKind::Pruned { .. }))
                    .count() as u64;
                between_batches |= batches > 0 && batches < N as u64 / BATCH;
                tokio::time::sleep(StdDuration::from_millis(5)).await;
            }
            (longest, ops, between_batches)
        })
    };
    events.lock().unwrap().clear();
    let report = m.prune(30 * DAY, BATCH).await.unwrap();
    done.store(true, Ordering::Relaxed);
    let (longest, ops, between_batches) = load.await.unwrap();
    // No lock over the whole prune: writers ran between its batches.
    assert!(
        between_batches,
        "no issue and verify completed between two batches"
    );
    assert_eq!(report.deleted, N as u64);
    assert_eq!(report.batches, N as u64 / BATCH);
    let pruned: Vec<u64> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e.kind {
            AuditKind::Pruned { deleted } => Some(deleted),
            _ => None,
        })
        .collect();
    assert_eq!(pruned, vec![BATCH; (N as u64 / BATCH) as usize]);
    assert_eq!(m.prunable(30 * DAY).await.unwrap(), 0);
    for t in &live {
        m.verify(t).await.unwrap();
    }
    (longest, ops)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_prunes_100k_records_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("keygate.db").display());
    // This test is about batches, not outages: a verification waiting behind a batch on a
    // loaded machine must not count as the database being down.
    let store = SqliteStore::connect(&url)
        .await
        .unwrap()
        .with_outage_policy(patient());
    store.migrate().await.unwrap();
    let pool = store.pool().clone();
    // Half revoked in 2020, half expired then; every record has a scope row, one in ten a
    // retired secret whose grace ended in 2020 too.
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2) \
         INSERT INTO keygate_tokens (id, name, description, owner, created_by, created_at, \
         updated_at, secret_issued_at, expires_at, status, all_projects, metadata, digest, \
         key_version, last_used_at, version) \
         SELECT 'old-' || i, 'old ' || i, '', 'bulk', 'bulk', ?1, ?1, ?1, \
         CASE WHEN i % 2 = 0 THEN ?1 END, CASE WHEN i % 2 = 0 THEN 'active' ELSE 'revoked' END, \
         1, '{}', randomblob(32), 1, NULL, 1 FROM n",
    )
    .bind(old_micros())
    .bind(N)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO keygate_token_scopes (token_id, scope, created_at) \
         SELECT id, 'projects:read', created_at FROM keygate_tokens",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO keygate_token_retired_secrets (token_id, position, digest, key_version, \
         valid_until) SELECT id, 0, randomblob(32), 1, ?1 FROM keygate_tokens \
         WHERE rowid % 10 = 0",
    )
    .bind(old_micros())
    .execute(&pool)
    .await
    .unwrap();

    let events = Events::default();
    let m = manager(store.clone(), &events);
    let started = Instant::now();
    let (longest, ops) = prune_under_load(&m, &events).await;
    eprintln!(
        "sqlite: pruned {N} in {:?}; {ops} issue+verify meanwhile, the longest {longest:?}",
        started.elapsed()
    );
    assert!(ops > 0);
    for child in [
        "keygate_token_scopes",
        "keygate_token_retired_secrets",
        "keygate_token_projects",
    ] {
        let orphans: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {child} WHERE token_id NOT IN (SELECT id FROM keygate_tokens)"
        ))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(orphans, 0, "{child}");
    }
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM keygate_tokens WHERE owner = 'bulk'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_prunes_100k_records_in_batches_and_notifies() {
    let Some((schema, store)) = common::TestSchema::new().await else {
        return;
    };
    let store = store.with_outage_policy(patient());
    let pool = store.pool().clone();
    sqlx::query(&format!(
        "INSERT INTO \"{s}\".keygate_tokens (id, name, description, owner, created_by, \
         created_at, updated_at, secret_issued_at, expires_at, status, scopes, projects, \
         metadata, digest, key_version, retired_digests, retired_key_versions, \
         retired_valid_until, last_used_at, version) \
         SELECT 'old-' || i, 'old ' || i, '', 'bulk', 'bulk', $1, $1, $1, \
         CASE WHEN i % 2 = 0 THEN $1 END, CASE WHEN i % 2 = 0 THEN 'active' ELSE 'revoked' END, \
         ARRAY['projects:read'], NULL, '{{}}', \
         decode(md5(i::text) || md5((-i)::text), 'hex'), 1, \
         CASE WHEN i % 10 = 0 THEN ARRAY[decode(md5('r' || i) || md5('s' || i), 'hex')] \
         ELSE '{{}}' END, \
         CASE WHEN i % 10 = 0 THEN ARRAY[1::bigint] ELSE '{{}}' END, \
         CASE WHEN i % 10 = 0 THEN ARRAY[$1] ELSE '{{}}' END, NULL, 1 \
         FROM generate_series(1, $2) AS i",
        s = schema.name
    ))
    .bind(Utc.timestamp_micros(old_micros()).unwrap())
    .bind(N)
    .execute(&pool)
    .await
    .unwrap();

    // Another instance's listener hears every deleted id.
    let mut listener = sqlx::postgres::PgListener::connect(&schema.url)
        .await
        .unwrap();
    listener
        .listen(&format!("keygate.{}", schema.name))
        .await
        .unwrap();
    let heard = tokio::spawn(async move {
        let mut ids = std::collections::HashSet::new();
        while let Ok(Ok(n)) =
            tokio::time::timeout(StdDuration::from_secs(10), listener.recv()).await
        {
            if n.payload().starts_with("old-") {
                ids.insert(n.payload().to_owned());
                if ids.len() == N as usize {
                    break;
                }
            }
        }
        ids.len()
    });

    let events = Events::default();
    let m = manager(store.clone(), &events);
    let started = Instant::now();
    let (longest, ops) = prune_under_load(&m, &events).await;
    eprintln!(
        "postgres: pruned {N} in {:?}; {ops} issue+verify meanwhile, the longest {longest:?}",
        started.elapsed()
    );
    assert!(ops > 0);
    assert_eq!(heard.await.unwrap(), N as usize);
    let left: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{}\".keygate_tokens WHERE owner = 'bulk'",
        schema.name
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(left, 0);
}

/// A prune on one instance reaches another instance's verification cache through
/// `LISTEN`/`NOTIFY`: a token the other instance verified (and cached) before it expired
/// becomes unknown there within the notification latency, long before the cache TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_reaches_another_instances_cache() {
    let Some((schema, store_a)) = common::TestSchema::new().await else {
        return;
    };
    let store_b = schema.store().await;
    let clock = ManualClock::new(now());
    let key = [5u8; 32];
    let a = TokenManager::builder(store_a)
        .server_key(ServerKey::from_bytes(key).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    let b = TokenManager::builder(store_b.clone())
        .server_key(ServerKey::from_bytes(key).unwrap())
        .clock(clock.clone())
        .cache(
            keygate::cache::CacheConfig::new()
                .ttl(StdDuration::from_secs(60))
                .unwrap(),
        )
        .build()
        .unwrap();
    let _listener = store_b
        .spawn_invalidation_listener(b.clone())
        .await
        .unwrap();
    let token = a
        .issue(IssueRequest::new("short", "alice").expiry(ExpiryPreset::Days7))
        .await
        .unwrap();
    b.verify(token.expose_secret()).await.unwrap();
    clock.set(now() + chrono::Duration::days(30));
    // From b's cache: the record is still there, and expired.
    assert!(matches!(
        b.verify(token.expose_secret()).await,
        Err(keygate::VerifyError::Expired)
    ));
    assert_eq!(a.prune(DAY, BATCH).await.unwrap().deleted, 1);
    let started = Instant::now();
    loop {
        match b.verify(token.expose_secret()).await {
            Err(keygate::VerifyError::Unknown) => break,
            Err(keygate::VerifyError::Expired) => {
                assert!(
                    started.elapsed() < StdDuration::from_secs(5),
                    "the other instance still serves the pruned record from its cache"
                );
                tokio::time::sleep(StdDuration::from_millis(5)).await;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
