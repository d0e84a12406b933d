//! SQL store benchmarks: verify with PostgreSQL (uncached, cached) against the memory
//! store; issue and filtered first-page listing on 100,000 tokens with SQLite and
//! PostgreSQL. Prints the query plans of the filtered listings first.
//!
//! Needs the PostgreSQL server named by `KEYGATE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); uses the schema `keygate_bench`, recreated on
//! each run.
#![allow(clippy::expect_used, missing_docs, reason = "benchmark harness")]

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use keygate::cache::CacheConfig;
use keygate::{
    IssueRequest, MemoryStore, PostgresStore, Projects, Scope, ScopeSet, ServerKey, SqliteStore,
    TokenManager, scope::ProjectId, store::PageRequest, store::TokenFilter, store::TokenStore,
};

const TOKENS: usize = 100_000;
const SCHEMA: &str = "keygate_bench";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn url() -> String {
    std::env::var("KEYGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn manager(store: impl TokenStore + 'static, key: &ServerKey, cache: bool) -> TokenManager {
    let key = ServerKey::from_bytes(key.expose_hex().as_bytes().to_vec()).expect("key");
    let b = TokenManager::builder(store).server_key(key);
    let b = if cache {
        b.cache(CacheConfig::new())
    } else {
        b
    };
    b.build().expect("manager")
}

fn request(i: usize) -> IssueRequest {
    let mut scopes = vec!["projects:read"];
    if i % 100 == 0 {
        scopes.push("reports:read");
    }
    let projects = if i % 3 == 0 {
        Projects::All
    } else {
        Projects::only([format!("p-{}", i % 500)]).expect("project")
    };
    IssueRequest::new(format!("token {i}"), format!("owner-{}", i % 1000))
        .scopes(ScopeSet::parse(scopes).expect("scopes"))
        .projects(projects)
        .metadata("n", i.to_string())
}

async fn seed(m: &TokenManager) {
    let tasks = 8;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let m = m.clone();
        handles.push(tokio::spawn(async move {
            for i in (t..TOKENS).step_by(tasks) {
                m.issue(request(i)).await.expect("seed");
            }
        }));
    }
    for h in handles {
        h.await.expect("join");
    }
}

fn filters() -> Vec<(&'static str, TokenFilter)> {
    vec![
        ("owner", TokenFilter::new().owner("owner-7")),
        (
            "scope",
            TokenFilter::new().scope(Scope::new("reports:read").expect("scope")),
        ),
        (
            "scope_held_by_all",
            TokenFilter::new().scope(Scope::new("projects:read").expect("scope")),
        ),
        (
            "project",
            TokenFilter::new().project(ProjectId::new("p-7").expect("project")),
        ),
    ]
}

async fn print_plans(pg: &PostgresStore, sqlite: &SqliteStore) {
    let t = format!("\"{SCHEMA}\".keygate_tokens");
    let cols = "t.*";
    for (what, cond) in [
        ("owner", "t.owner = 'owner-7'".to_owned()),
        (
            "scope",
            "t.scopes @> ARRAY['reports:read'::text]".to_owned(),
        ),
        (
            "project",
            "(t.projects IS NULL OR t.projects @> ARRAY['p-7'::text])".to_owned(),
        ),
    ] {
        let sql = format!(
            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT {cols} FROM {t} t \
             WHERE TRUE AND {cond} ORDER BY t.created_at DESC, t.id DESC LIMIT 51"
        );
        let plan: Vec<String> = sqlx::query_scalar(&sql)
            .fetch_all(pg.pool())
            .await
            .expect("explain");
        println!("PostgreSQL, filter {what}:\n  {}", plan.join("\n  "));
    }
    let inner_scope = "SELECT t.rowid FROM keygate_token_scopes s JOIN keygate_tokens t \
        ON t.id = s.token_id WHERE s.scope = 'reports:read' \
        ORDER BY s.created_at DESC, s.token_id DESC LIMIT 51";
    let inner = |cond: &str| {
        format!(
            "SELECT t.rowid FROM keygate_tokens t WHERE 1 = 1 AND {cond} \
             ORDER BY t.created_at DESC, t.id DESC LIMIT 51"
        )
    };
    for (what, inner) in [
        ("owner", inner("t.owner = 'owner-7'")),
        ("scope", inner_scope.to_owned()),
        (
            "project",
            inner(
                "(t.all_projects = 1 OR t.id IN (SELECT token_id FROM keygate_token_projects \
                 WHERE project = 'p-7'))",
            ),
        ),
    ] {
        let sql = format!(
            "EXPLAIN QUERY PLAN SELECT o.*, (SELECT json_group_array(s.scope) FROM \
             keygate_token_scopes s WHERE s.token_id = o.id) FROM keygate_tokens o \
             WHERE o.rowid IN ({inner}) ORDER BY o.created_at DESC, o.id DESC"
        );
        let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(&sql)
            .fetch_all(sqlite.pool())
            .await
            .expect("explain");
        println!("SQLite, filter {what}:");
        for r in rows {
            println!("  {}", r.3);
        }
    }
}

fn benches(c: &mut Criterion) {
    let rt = runtime();
    let key = ServerKey::generate();
    let dir = tempfile::tempdir().expect("tempdir");

    let (pg, sqlite) = rt.block_on(async {
        let admin = PostgresStore::connect(&url()).await.expect("postgres");
        sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{SCHEMA}\" CASCADE"))
            .execute(admin.pool())
            .await
            .expect("drop");
        let pg = admin.with_schema(SCHEMA).expect("schema");
        pg.migrate().await.expect("migrate");
        let sqlite = SqliteStore::open(dir.path().join("bench.db"))
            .await
            .expect("sqlite");
        sqlite.migrate().await.expect("migrate");
        (pg, sqlite)
    });

    // ----- verify ---------------------------------------------------------------------
    let memory = manager(MemoryStore::new(), &key, false);
    let pg_plain = manager(pg.clone(), &key, false);
    let pg_cached = manager(pg.clone(), &key, true);
    let (mem_token, pg_token) = rt.block_on(async {
        let a = memory.issue(request(1)).await.expect("issue");
        let b = pg_plain.issue(request(1)).await.expect("issue");
        (a.expose_secret().to_owned(), b.expose_secret().to_owned())
    });
    let mut g = c.benchmark_group("verify");
    g.sample_size(30)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(1));
    g.bench_function("memory", |b| {
        b.to_async(&rt)
            .iter(|| async { memory.verify(&mem_token).await.expect("verify") })
    });
    g.bench_function("postgres_uncached", |b| {
        b.to_async(&rt)
            .iter(|| async { pg_plain.verify(&pg_token).await.expect("verify") })
    });
    g.bench_function("postgres_cached", |b| {
        b.to_async(&rt)
            .iter(|| async { pg_cached.verify(&pg_token).await.expect("verify") })
    });
    g.finish();

    // ----- 100,000 tokens -------------------------------------------------------------
    let pg_m = manager(pg.clone(), &key, false);
    let sqlite_m = manager(sqlite.clone(), &key, false);
    rt.block_on(async {
        let t = std::time::Instant::now();
        seed(&sqlite_m).await;
        println!("seeded {TOKENS} tokens into SQLite in {:?}", t.elapsed());
        let t = std::time::Instant::now();
        seed(&pg_m).await;
        println!(
            "seeded {TOKENS} tokens into PostgreSQL in {:?}",
            t.elapsed()
        );
        sqlx::query(&format!("ANALYZE \"{SCHEMA}\".keygate_tokens"))
            .execute(pg.pool())
            .await
            .expect("analyze");
        sqlx::query("ANALYZE")
            .execute(sqlite.pool())
            .await
            .expect("analyze");
        print_plans(&pg, &sqlite).await;
    });

    let mut g = c.benchmark_group("issue_100k");
    g.sample_size(30)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(1));
    let mut n = TOKENS;
    g.bench_function("sqlite", |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            let req = request(n);
            let m = &sqlite_m;
            async move { m.issue(req).await.expect("issue") }
        })
    });
    g.bench_function("postgres", |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            let req = request(n);
            let m = &pg_m;
            async move { m.issue(req).await.expect("issue") }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("list_100k_first_page");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    let page = PageRequest::first(50);
    for (what, filter) in filters() {
        let sqlite = sqlite.clone();
        let pg = pg.clone();
        let f = filter.clone();
        let p = page.clone();
        g.bench_function(format!("sqlite_{what}"), |b| {
            b.to_async(&rt)
                .iter(|| async { sqlite.list(&f, &p).await.expect("list") })
        });
        g.bench_function(format!("postgres_{what}"), |b| {
            b.to_async(&rt)
                .iter(|| async { pg.list(&filter, &page).await.expect("list") })
        });
    }
    g.finish();
}

criterion_group!(store, benches);
criterion_main!(store);
