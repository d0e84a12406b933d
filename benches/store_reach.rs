//! A listing within an acting token's reach, pushed into the SQL query: one page (50) for a
//! narrowly scoped actor (owner `alice`, scope `tokens:read`, four projects, an expiry
//! bound) among 200,000 tokens, against the same store's unrestricted first page (and the
//! first page of alice's tokens, for reference), and the first page of a name-substring
//! filter (a rare and a common substring), with SQLite (a file in a temporary
//! directory) and PostgreSQL.
//!
//! Alice holds 3,125 of the tokens, about an eighth of them within the reach; the others
//! belong to 997 other owners, with wider scopes. The rows are written in batches of raw SQL
//! in one transaction per store (checked against what the store itself reads back), and
//! every benchmarked page is first checked against [`TokenFilter::matches`].
//!
//! Needs the PostgreSQL server named by `KEYGATE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); uses the schema `keygate_bench_reach`,
//! recreated on each run.
#![allow(clippy::expect_used, missing_docs, reason = "benchmark harness")]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use keygate::digest::StoredDigest;
use keygate::store::Reach;
use keygate::{
    Expiry, PostgresStore, Projects, ScopeSet, SqliteStore, TokenId, TokenRecord, TokenStatus,
    store::PageRequest, store::TokenFilter, store::TokenStore,
};
use sqlx::QueryBuilder;

const TOKENS: usize = 200_000;
/// Every 64th token is alice's.
const ALICE_EVERY: usize = 64;
const BATCH: usize = 1000;
const SCHEMA: &str = "keygate_bench_reach";

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

fn scopes(list: &[&str]) -> ScopeSet {
    ScopeSet::parse(list.iter().copied()).expect("scopes")
}

/// Token `i` of the data set. Alice's tokens vary on every axis of the reach (about 1 in
/// 8 is within it); everyone else's hold wide scopes.
fn record(i: usize, now: DateTime<Utc>) -> TokenRecord {
    let created_at = now - chrono::Duration::days(400) + chrono::Duration::seconds(i as i64 * 60);
    let mut digest = [0u8; 32];
    digest[..8].copy_from_slice(&(i as u64).to_be_bytes());
    digest[8] = 0xA5;
    let (owner, scope_set, projects, expiry) = if i % ALICE_EVERY == 0 {
        let k = i / ALICE_EVERY;
        let scope_set = match k % 4 {
            0 | 1 => scopes(&["tokens:read"]),
            2 => scopes(&["tokens:read", "tokens:write"]),
            _ => scopes(&["projects:read"]),
        };
        let projects = match k % 5 {
            0 => Projects::All,
            _ => Projects::only([format!("p-{}", k % 7)]).expect("projects"),
        };
        let expiry = match k % 6 {
            0 => Expiry::Never,
            _ => Expiry::At(now + chrono::Duration::days((k % 90) as i64 + 1)),
        };
        ("alice".to_owned(), scope_set, projects, expiry)
    } else {
        let scope_set = match i % 3 {
            0 => scopes(&["*"]),
            1 => scopes(&["projects:*", "tokens:*"]),
            _ => scopes(&["reports:read", "tokens:read", "tokens:write"]),
        };
        let projects = match i % 4 {
            0 => Projects::All,
            _ => Projects::only([format!("p-{}", i % 500), format!("p-{}", i % 7)])
                .expect("projects"),
        };
        let expiry = match i % 5 {
            0 => Expiry::Never,
            _ => Expiry::At(now + chrono::Duration::days((i % 365) as i64 + 1)),
        };
        (format!("owner-{}", i % 997), scope_set, projects, expiry)
    };
    let mut metadata = BTreeMap::new();
    metadata.insert("n".to_owned(), i.to_string());
    TokenRecord {
        id: TokenId::new(format!("tok-{i:07}")).expect("id"),
        name: format!("token {i}"),
        description: String::new(),
        owner,
        created_by: "bench".to_owned(),
        created_at,
        updated_at: created_at,
        secret_issued_at: created_at,
        expiry,
        status: TokenStatus::Active,
        scopes: scope_set,
        projects,
        metadata,
        digest: StoredDigest {
            digest: keygate::digest::Digest::from_bytes(digest),
            key_version: 1,
        },
        allowed_ips: Vec::new(),
        retired: Vec::new(),
        expiry_notice: None,
        last_used_at: None,
        version: 1,
    }
}

fn reach() -> TokenFilter {
    TokenFilter::new().within(Reach::new(
        Some("alice".to_owned()),
        scopes(&["tokens:read"]),
        Projects::only(["p-0", "p-1", "p-2", "p-3"]).expect("projects"),
    ))
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// Writes the records as `SqliteStore` lays them out, in one transaction.
async fn seed_sqlite(store: &SqliteStore, records: &[TokenRecord]) {
    let mut tx = store.pool().begin().await.expect("begin");
    for chunk in records.chunks(BATCH) {
        let mut q = QueryBuilder::new(
            "INSERT INTO keygate_tokens (id, name, description, owner, created_by, created_at, \
             updated_at, secret_issued_at, expires_at, status, all_projects, metadata, digest, \
             key_version, last_used_at, version) ",
        );
        q.push_values(chunk, |mut b, r| {
            b.push_bind(r.id.as_str().to_owned())
                .push_bind(r.name.clone())
                .push_bind(r.description.clone())
                .push_bind(r.owner.clone())
                .push_bind(r.created_by.clone())
                .push_bind(micros(r.created_at))
                .push_bind(micros(r.updated_at))
                .push_bind(micros(r.secret_issued_at))
                .push_bind(r.expiry.at().map(micros))
                .push_bind(r.status.as_str())
                .push_bind(matches!(r.projects, Projects::All) as i64)
                .push_bind(serde_json::to_string(&r.metadata).expect("json"))
                .push_bind(r.digest.digest.as_bytes().to_vec())
                .push_bind(i64::from(r.digest.key_version))
                .push_bind(None::<i64>)
                .push_bind(r.version as i64);
        });
        q.build().execute(&mut *tx).await.expect("insert tokens");
        let scope_rows: Vec<_> = chunk
            .iter()
            .flat_map(|r| r.scopes.iter().map(move |s| (r, s.as_str().to_owned())))
            .collect();
        let mut q =
            QueryBuilder::new("INSERT INTO keygate_token_scopes (token_id, scope, created_at) ");
        q.push_values(&scope_rows, |mut b, (r, s)| {
            b.push_bind(r.id.as_str().to_owned())
                .push_bind(s.clone())
                .push_bind(micros(r.created_at));
        });
        q.build().execute(&mut *tx).await.expect("insert scopes");
        let project_rows: Vec<_> = chunk
            .iter()
            .flat_map(|r| match &r.projects {
                Projects::All => Vec::new(),
                Projects::Only(set) => set
                    .iter()
                    .map(|p| (r.id.as_str().to_owned(), p.as_str().to_owned()))
                    .collect(),
            })
            .collect();
        if !project_rows.is_empty() {
            let mut q =
                QueryBuilder::new("INSERT INTO keygate_token_projects (token_id, project) ");
            q.push_values(&project_rows, |mut b, (id, p)| {
                b.push_bind(id.clone()).push_bind(p.clone());
            });
            q.build().execute(&mut *tx).await.expect("insert projects");
        }
    }
    tx.commit().await.expect("commit");
}

/// Writes the records as `PostgresStore` lays them out, in one transaction.
async fn seed_postgres(store: &PostgresStore, records: &[TokenRecord]) {
    let mut tx = store.pool().begin().await.expect("begin");
    for chunk in records.chunks(BATCH) {
        let mut q = QueryBuilder::new(format!(
            "INSERT INTO \"{SCHEMA}\".keygate_tokens (id, name, description, owner, created_by, \
             created_at, updated_at, secret_issued_at, expires_at, status, scopes, projects, \
             metadata, digest, key_version, retired_digests, retired_key_versions, \
             retired_valid_until, last_used_at, version) "
        ));
        q.push_values(chunk, |mut b, r| {
            b.push_bind(r.id.as_str().to_owned())
                .push_bind(r.name.clone())
                .push_bind(r.description.clone())
                .push_bind(r.owner.clone())
                .push_bind(r.created_by.clone())
                .push_bind(r.created_at)
                .push_bind(r.updated_at)
                .push_bind(r.secret_issued_at)
                .push_bind(r.expiry.at())
                .push_bind(r.status.as_str())
                .push_bind(
                    r.scopes
                        .iter()
                        .map(|s| s.as_str().to_owned())
                        .collect::<Vec<_>>(),
                )
                .push_bind(match &r.projects {
                    Projects::All => None,
                    Projects::Only(set) => Some(
                        set.iter()
                            .map(|p| p.as_str().to_owned())
                            .collect::<Vec<_>>(),
                    ),
                })
                .push_bind(sqlx::types::Json(r.metadata.clone()))
                .push_bind(r.digest.digest.as_bytes().to_vec())
                .push_bind(i64::from(r.digest.key_version))
                .push_bind(Vec::<Vec<u8>>::new())
                .push_bind(Vec::<i64>::new())
                .push_bind(Vec::<DateTime<Utc>>::new())
                .push_bind(None::<DateTime<Utc>>)
                .push_bind(r.version as i64);
        });
        q.build().execute(&mut *tx).await.expect("insert tokens");
    }
    tx.commit().await.expect("commit");
}

/// The written rows read back through the store equal the records, and every benchmarked
/// page equals the reference semantics' page.
async fn check(
    store: &dyn TokenStore,
    name: &str,
    records: &[TokenRecord],
    filters: &[(&str, TokenFilter)],
) {
    for i in [0, 1, ALICE_EVERY * 7, TOKENS - 1] {
        let got = store
            .get(&records[i].id)
            .await
            .expect("get")
            .expect("present");
        assert_eq!(*got, records[i], "{name}: token {i} as the store reads it");
    }
    let page = PageRequest::first(50);
    for (what, filter) in filters {
        let mut expected: Vec<&TokenRecord> =
            records.iter().filter(|r| filter.matches(r)).collect();
        let matching = expected.len();
        expected.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        let expected: Vec<_> = expected.iter().take(50).map(|r| r.id.clone()).collect();
        let got = store.list(filter, &page).await.expect("list");
        let got: Vec<_> = got.items.iter().map(|r| r.id.clone()).collect();
        assert_eq!(got, expected, "{name}: the {what} page");
        println!("{name}: {what}: {matching} of {TOKENS} tokens match");
    }
}

async fn print_plans(pg: &PostgresStore, sqlite: &SqliteStore, now: DateTime<Utc>) {
    let bound = now + chrono::Duration::days(60);
    let sql = format!(
        "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) SELECT t.id FROM \"{SCHEMA}\".keygate_tokens t \
         WHERE TRUE AND t.owner = 'alice' AND NOT EXISTS (SELECT 1 FROM unnest(t.scopes) AS rs(scope) \
         WHERE rs.scope <> ALL('{{tokens:read}}'::text[]) AND NOT EXISTS (SELECT 1 FROM \
         unnest('{{}}'::text[]) AS rw(prefix) WHERE starts_with(rs.scope, rw.prefix) AND \
         length(rs.scope) > length(rw.prefix))) AND t.projects <@ '{{p-0,p-1,p-2,p-3}}'::text[] \
         AND t.expires_at <= $1 ORDER BY t.created_at DESC, t.id DESC LIMIT 51"
    );
    let plan: Vec<String> = sqlx::query_scalar(&sql)
        .bind(bound)
        .fetch_all(pg.pool())
        .await
        .expect("explain");
    println!("PostgreSQL, reach page:\n  {}", plan.join("\n  "));
    let sql = "EXPLAIN QUERY PLAN SELECT t.rowid FROM keygate_tokens t WHERE 1 = 1 \
        AND t.owner = 'alice' AND NOT EXISTS (SELECT 1 FROM keygate_token_scopes rs \
        WHERE rs.token_id = t.id AND NOT (0 OR rs.scope IN ('tokens:read'))) \
        AND t.all_projects = 0 AND NOT EXISTS (SELECT 1 FROM keygate_token_projects rp \
        WHERE rp.token_id = t.id AND rp.project NOT IN ('p-0', 'p-1', 'p-2', 'p-3')) \
        AND t.expires_at <= ? ORDER BY t.created_at DESC, t.id DESC LIMIT 51";
    let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(sql)
        .bind(micros(bound))
        .fetch_all(sqlite.pool())
        .await
        .expect("explain");
    println!("SQLite, reach page (inner query):");
    for r in rows {
        println!("  {}", r.3);
    }
}

fn benches(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let now = Utc::now().trunc_subsecs(6);
    let records: Vec<TokenRecord> = (0..TOKENS).map(|i| record(i, now)).collect();
    let filters = vec![
        ("reach", reach()),
        ("unrestricted", TokenFilter::new()),
        ("owner_only", TokenFilter::new().owner("alice")),
        // One token's name (a rare substring) and a substring of ~11% of the names.
        (
            "name_rare",
            TokenFilter::new().name_contains("Token 123457"),
        ),
        ("name_common", TokenFilter::new().name_contains("n 1")),
    ];

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

        let t = Instant::now();
        seed_sqlite(&sqlite, &records).await;
        println!("seeded {TOKENS} tokens into SQLite in {:?}", t.elapsed());
        let t = Instant::now();
        seed_postgres(&pg, &records).await;
        sqlx::query(&format!("ANALYZE \"{SCHEMA}\".keygate_tokens"))
            .execute(pg.pool())
            .await
            .expect("analyze");
        println!(
            "seeded {TOKENS} tokens into PostgreSQL in {:?}",
            t.elapsed()
        );
        check(&sqlite, "SQLite", &records, &filters).await;
        check(&pg, "PostgreSQL", &records, &filters).await;
        print_plans(&pg, &sqlite, now).await;
        (pg, sqlite)
    });
    drop(records);

    let mut g = c.benchmark_group("list_200k_first_page");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    let page = PageRequest::first(50);
    for (what, filter) in &filters {
        g.bench_function(format!("sqlite_{what}"), |b| {
            b.to_async(&rt)
                .iter(|| async { sqlite.list(filter, &page).await.expect("list") })
        });
        g.bench_function(format!("postgres_{what}"), |b| {
            b.to_async(&rt)
                .iter(|| async { pg.list(filter, &page).await.expect("list") })
        });
    }
    g.finish();
}

criterion_group!(store_reach, benches);
criterion_main!(store_reach);
