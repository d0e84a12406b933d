//! SQLite: an uncached `TokenManager::verify` against an indexed SQLite lookup, in the same
//! run and on the same database file (10,000 tokens issued through the manager):
//!
//! - `keygate_verify`: the whole verification (parse, digest, `find_by_digest`, checks);
//! - `find_by_digest`: the store's lookup alone (the query with its child-table subqueries,
//!   row decoding);
//! - `sqlx_indexed_lookup`: `SELECT id ... WHERE digest = ?` through the same sqlx pool (what
//!   any sqlx user pays: a pool acquire and a hop to the connection's worker thread);
//! - `sqlx_select_1`: `SELECT 1` through the pool: the fixed cost of a sqlx SQLite query.
#![allow(clippy::expect_used, missing_docs, reason = "benchmark harness")]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use keygate::store::TokenStore;
use keygate::{IssueRequest, ServerKey, SqliteStore, TokenManager};

const TOKENS: usize = 10_000;

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let key = ServerKey::generate();
    let (store, manager, token, digest) = rt.block_on(async {
        let store = SqliteStore::open(dir.path().join("bench.db"))
            .await
            .expect("sqlite");
        store.migrate().await.expect("migrate");
        let manager = TokenManager::builder(store.clone())
            .server_key(key)
            .build()
            .expect("manager");
        let mut token = None;
        for i in 0..TOKENS {
            let t = manager
                .issue(IssueRequest::new(format!("t{i}"), "bench"))
                .await
                .expect("issue");
            if i == TOKENS / 2 {
                token = Some(t.expose_secret().to_owned());
            }
        }
        let token = token.expect("token");
        let v = manager.verify(&token).await.expect("verify");
        let digest = v.record().digest.digest;
        sqlx::query("ANALYZE")
            .execute(store.pool())
            .await
            .expect("analyze");
        (store, manager, token, digest)
    });

    let mut g = c.benchmark_group("sqlite_verify_10k");
    g.measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    g.bench_function("keygate_verify", |b| {
        b.to_async(&rt)
            .iter(|| async { manager.verify(&token).await.expect("verify") })
    });
    g.bench_function("find_by_digest", |b| {
        b.to_async(&rt).iter(|| async {
            store
                .find_by_digest(&digest)
                .await
                .expect("find")
                .expect("found")
        })
    });
    g.bench_function("sqlx_indexed_lookup", |b| {
        b.to_async(&rt).iter(|| async {
            let id: Option<String> =
                sqlx::query_scalar("SELECT id FROM keygate_tokens WHERE digest = ?")
                    .bind(&digest.as_bytes()[..])
                    .fetch_optional(store.pool())
                    .await
                    .expect("lookup");
            id.expect("found")
        })
    });
    g.bench_function("sqlx_select_1", |b| {
        b.to_async(&rt).iter(|| async {
            let one: i64 = sqlx::query_scalar("SELECT 1")
                .fetch_one(store.pool())
                .await
                .expect("select");
            one
        })
    });
    g.finish();
}

criterion_group!(sqlite_verify, benches);
criterion_main!(sqlite_verify);
