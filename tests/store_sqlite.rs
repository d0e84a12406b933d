//! The SQLite store passes the conformance suite on a real database file, directly and
//! through `Arc<dyn TokenStore>`, and its table prefix, migrations and error handling do
//! what they promise.
#![cfg(all(feature = "sqlite", feature = "test-util"))]
#![allow(clippy::expect_used, reason = "test helpers panic on setup failure")]

use std::sync::Arc;

use keygate::store::SqlStore;
use keygate::testing::sample_record;
use keygate::{
    IssueRequest, ServerKey, SqliteStore, TokenManager, VerifyError, error::StoreError,
    store::TokenFilter, store::TokenStore,
};

async fn store_in(dir: &tempfile::TempDir) -> SqliteStore {
    let url = format!("sqlite:{}", dir.path().join("keygate.db").display());
    let store = SqliteStore::connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
}

/// A manager over `store` with a fresh server key.
fn manager_over<S: TokenStore + Clone + 'static>(store: &S) -> TokenManager {
    TokenManager::builder(store.clone())
        .server_key(ServerKey::generate())
        .build()
        .expect("manager")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    keygate::testing::run_all(Arc::new(store_in(&dir).await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_conforms_as_dyn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn TokenStore> = Arc::new(store_in(&dir).await);
    keygate::testing::run_all(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_creates_the_file_and_migrate_is_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("new.db");
    assert!(!path.exists());
    let store = SqlStore::connect(path.to_str().expect("utf-8 path"))
        .await
        .expect("connect a plain path");
    assert!(path.exists(), "connect must create the database file");
    assert!(matches!(store, SqlStore::Sqlite(_)));
    let SqlStore::Sqlite(sqlite) = store else {
        unreachable!()
    };
    sqlite.migrate().await.expect("second migrate is a no-op");
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM keygate_schema_migrations ORDER BY version")
            .fetch_all(sqlite.pool())
            .await
            .expect("read versions");
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6, 7]);
    // WAL mode, for concurrent readers and a writer.
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(sqlite.pool())
        .await
        .expect("pragma");
    assert_eq!(mode, "wal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_prefixes_coexist_in_one_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = store_in(&dir).await;
    let b = a.clone().with_table_prefix("tenant_b_").expect("prefix");
    b.migrate().await.expect("migrate b");
    let ra = sample_record("alice", 1, chrono::Utc::now());
    let rb = sample_record("alice", 2, chrono::Utc::now());
    a.insert(&ra).await.expect("insert a");
    b.insert(&rb).await.expect("insert b");
    assert!(a.get(&ra.id).await.expect("get").is_some());
    assert!(a.get(&rb.id).await.expect("get").is_none());
    assert!(b.get(&rb.id).await.expect("get").is_some());
    assert!(b.get(&ra.id).await.expect("get").is_none());
    let listed = b
        .list(&TokenFilter::new().owner("alice"), &Default::default())
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 1);
    // The same id may exist under both prefixes.
    let mut same = rb.clone();
    same.id = ra.id.clone();
    b.insert(&same).await.expect("same id under another prefix");
    // And the prefixed store passes the whole suite too.
    keygate::testing::run_all(Arc::new(b)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_prefix_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(&dir).await;
    for bad in [
        "x; DROP TABLE keygate_tokens; --",
        "Tenant",
        "1abc",
        "a-b",
        "a\"b",
    ] {
        assert!(
            store.clone().with_table_prefix(bad).is_err(),
            "{bad:?} must be refused"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(&dir).await;
    sqlx::query("INSERT INTO keygate_schema_migrations (version, name, applied_at) VALUES (99, 'future', 0)")
        .execute(store.pool())
        .await
        .expect("record a future version");
    let err = store
        .migrate()
        .await
        .expect_err("a newer schema must be refused");
    assert!(matches!(err, StoreError::Backend(_)));
    assert!(
        std::error::Error::source(&err).is_some_and(|s| s.to_string().contains("newer")),
        "the error must say why: {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_is_stored_and_digests_are_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(&dir).await;
    let manager = manager_over(&store);
    let issued = manager
        .issue(IssueRequest::new("ci", "alice"))
        .await
        .expect("issue");
    let token = issued.expose_secret().to_owned();
    let secret_part = &token[token.len() - 20..];
    let dump: Vec<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT name || description || owner || created_by || metadata, digest FROM keygate_tokens",
    )
    .fetch_all(store.pool())
    .await
    .expect("dump");
    assert_eq!(dump.len(), 1);
    assert!(!dump[0].0.contains(secret_part));
    assert_eq!(dump[0].1.len(), 32, "the digest is stored as 32 raw bytes");
    let file = std::fs::read(dir.path().join("keygate.db")).unwrap_or_default();
    let wal = std::fs::read(dir.path().join("keygate.db-wal")).unwrap_or_default();
    for bytes in [file, wal] {
        assert!(
            !bytes
                .windows(secret_part.len())
                .any(|w| w == secret_part.as_bytes()),
            "the plaintext secret must not be anywhere in the database files"
        );
    }
    assert!(manager.verify(&token).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_row_is_a_backend_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(&dir).await;
    let manager = manager_over(&store);
    let corruptions = [
        "INSERT INTO keygate_token_scopes (token_id, scope, created_at) VALUES (?, 'not a scope!', 0)",
        "INSERT INTO keygate_token_projects (token_id, project) VALUES (?, 'Bad Project')",
        "UPDATE keygate_tokens SET all_projects = 0, metadata = '{not json' WHERE id = ?",
        "UPDATE keygate_tokens SET version = -1 WHERE id = ?",
        "UPDATE keygate_tokens SET created_at = 9223372036854775807 WHERE id = ?",
        "UPDATE keygate_tokens SET secret_issued_at = -9223372036854775808 WHERE id = ?",
        "INSERT INTO keygate_token_retired_secrets (token_id, position, digest, key_version, \
         valid_until) VALUES (?, 0, zeroblob(32), 1, 9223372036854775807)",
        "INSERT INTO keygate_token_retired_secrets (token_id, position, digest, key_version, \
         valid_until) VALUES (?, 0, zeroblob(32), 1.5, 0)",
        "INSERT INTO keygate_token_retired_secrets (token_id, position, digest, key_version, \
         valid_until) VALUES (?, 0, zeroblob(32), 1, 'soon')",
    ];
    for (i, corruption) in corruptions.into_iter().enumerate() {
        let owner = format!("owner-{i}");
        let mut req = IssueRequest::new("ci", owner.as_str());
        if i == 1 {
            req = req.projects(keygate::Projects::only(["alpha"]).expect("projects"));
        }
        let issued = manager.issue(req).await.expect("issue");
        sqlx::query(corruption)
            .bind(issued.id().as_str())
            .execute(store.pool())
            .await
            .expect(corruption);
        let got = manager.verify(issued.expose_secret()).await;
        assert!(
            matches!(got, Err(VerifyError::Store(StoreError::Backend(_)))),
            "{corruption}: verify must fail closed with a store error, got {got:?}"
        );
        let listed = store
            .list(&TokenFilter::new().owner(owner), &Default::default())
            .await;
        assert!(
            matches!(listed, Err(StoreError::Backend(_))),
            "{corruption}: list must report the bad row, got {listed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pool_fails_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(&dir).await;
    let manager = manager_over(&store);
    let issued = manager
        .issue(IssueRequest::new("ci", "alice"))
        .await
        .expect("issue");
    store.pool().close().await;
    let got = manager.verify(issued.expose_secret()).await;
    assert!(
        matches!(&got, Err(VerifyError::Store(StoreError::Backend(e))) if e.is::<sqlx::Error>()),
        "a closed pool must be a store error keeping its sqlx source, got {got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impossible_version_is_a_conflict_or_not_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(&dir).await;
    let mut r = sample_record("alice", 1, chrono::Utc::now());
    r.version = u64::MAX;
    assert!(matches!(store.update(&r).await, Err(StoreError::NotFound)));
    r.version = 1;
    store.insert(&r).await.expect("insert");
    r.version = u64::MAX;
    assert!(matches!(store.update(&r).await, Err(StoreError::Conflict)));
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_store_needs_no_listener_for_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqlStore::Sqlite(store_in(&dir).await);
    let manager = manager_over(&store);
    let handle = store
        .spawn_invalidation_listener(manager)
        .await
        .expect("no-op");
    assert!(handle.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_database_keeps_its_tables() {
    let store = SqlStore::connect("sqlite::memory:").await.expect("connect");
    let manager = TokenManager::builder(store)
        .server_key(ServerKey::generate())
        .build()
        .expect("manager");
    // Concurrent use must see the migrated tables (one shared connection).
    let mut handles = Vec::new();
    for i in 0..8 {
        let m = manager.clone();
        handles.push(tokio::spawn(async move {
            let t = m
                .issue(IssueRequest::new(format!("t{i}"), "alice"))
                .await
                .expect("issue");
            m.verify(t.expose_secret()).await.expect("verify");
        }));
    }
    for h in handles {
        h.await.expect("join");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_listings_page_in_order_and_follow_updates() {
    use chrono::Duration;
    use keygate::{Scope, store::PageRequest};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(&dir).await;
    let t0 = chrono::Utc::now() - Duration::hours(1);
    let t0 = t0 - Duration::nanoseconds(i64::from(t0.timestamp_subsec_nanos() % 1000));
    let scope = Scope::new("reports:read").expect("scope");
    let mut records = Vec::new();
    for i in 0..13 {
        // Pairs share an instant, to exercise the id tie-break across pages.
        let mut r = sample_record("alice", i, t0 + Duration::seconds((i / 2) as i64));
        if i % 4 != 3 {
            r.scopes = [scope.clone()].into_iter().collect();
        }
        store.insert(&r).await.expect("insert");
        records.push(r);
    }
    // Moving a record's created_at moves it in the scope listing too.
    let mut moved = records[0].clone();
    moved.created_at = t0 + Duration::minutes(30);
    store.update(&moved).await.expect("update");
    moved.version += 1;
    records[0] = moved;
    let filter = TokenFilter::new().owner("alice").scope(scope);
    let mut expected: Vec<_> = records.iter().filter(|r| filter.matches(r)).collect();
    expected.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    let expected: Vec<_> = expected.iter().map(|r| r.id.clone()).collect();
    let mut seen = Vec::new();
    let mut page = PageRequest::first(3);
    loop {
        let got = store.list(&filter, &page).await.expect("list");
        seen.extend(got.items.iter().map(|r| r.id.clone()));
        match got.next {
            Some(c) => page = page.next(c),
            None => break,
        }
    }
    assert_eq!(seen, expected);
    assert_eq!(expected.first(), Some(&records[0].id));
}

/// The migrations of schema versions 1 and 2, as older builds applied them.
const OLD_MIGRATIONS: [(i64, &str, &str); 2] = [
    (
        1,
        "create_tokens",
        include_str!("../src/store/migrations/sqlite/0001_create_tokens.sql"),
    ),
    (
        2,
        "index_digests",
        include_str!("../src/store/migrations/sqlite/0002_index_digests.sql"),
    ),
];

/// Creates keygate's tables under `prefix` at schema `version` (1 or 2), as the build of
/// that version did.
async fn create_schema_at(pool: &sqlx::SqlitePool, prefix: &str, version: i64) {
    sqlx::query(&format!(
        "CREATE TABLE {prefix}schema_migrations (version INTEGER NOT NULL PRIMARY KEY, \
         name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
    ))
    .execute(pool)
    .await
    .expect("migrations table");
    for (v, name, sql) in OLD_MIGRATIONS.iter().filter(|m| m.0 <= version) {
        sqlx::raw_sql(&sql.replace("{prefix}", prefix))
            .execute(pool)
            .await
            .expect("old migration");
        sqlx::query(&format!(
            "INSERT INTO {prefix}schema_migrations (version, name, applied_at) VALUES (?, ?, 0)"
        ))
        .bind(v)
        .bind(name)
        .execute(pool)
        .await
        .expect("record old version");
    }
}

/// A database at schema version 1 or 2 is upgraded by `migrate()`: a token rotated under
/// the old schema keeps its previous secret (position 0 of `retired`, found by its digest,
/// still verifying inside its grace period), its scopes and projects survive the rebuild of
/// the tokens table, `secret_issued_at` becomes `created_at`, and the digest lookup uses
/// both digest indexes.
async fn upgrade_keeps_rotated_tokens(from: i64) {
    use keygate::{Projects, RotateRequest, ScopeSet};
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:{}", dir.path().join("keygate.db").display());
    let current = SqliteStore::connect(&url)
        .await
        .expect("connect")
        .with_table_prefix("current_")
        .expect("prefix");
    current.migrate().await.expect("migrate current");
    let key = [42u8; 32];
    let manager_for = |store: &SqliteStore| {
        TokenManager::builder(store.clone())
            .server_key(ServerKey::from_bytes(key).expect("key"))
            .build()
            .expect("manager")
    };
    // Tokens as the old build wrote them: issued and rotated (with a grace period) by the
    // current code, then copied into tables of the old schema, `previous_*` holding the
    // newest retired secret.
    let writer = manager_for(&current);
    let rotated = writer
        .issue(
            IssueRequest::new("rotated", "alice")
                .scopes(ScopeSet::parse(["reports:read", "tokens:*"]).expect("scopes"))
                .projects(Projects::only(["alpha", "beta"]).expect("projects"))
                .metadata("team", "ops"),
        )
        .await
        .expect("issue");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let new_secret = writer
        .rotate(
            rotated.id(),
            RotateRequest::new().grace(std::time::Duration::from_secs(3600)),
        )
        .await
        .expect("rotate");
    let plain = writer
        .issue(IssueRequest::new("plain", "bob"))
        .await
        .expect("issue");
    let written = current
        .get(rotated.id())
        .await
        .expect("get")
        .expect("rotated record");
    assert_eq!(written.retired.len(), 1);
    assert!(written.secret_issued_at > written.created_at);

    let old = current
        .clone()
        .with_table_prefix("keygate_")
        .expect("prefix");
    create_schema_at(old.pool(), "keygate_", from).await;
    for sql in [
        "INSERT INTO keygate_tokens (id, name, description, owner, created_by, created_at, \
         updated_at, expires_at, status, all_projects, metadata, digest, key_version, \
         previous_digest, previous_key_version, previous_valid_until, last_used_at, version) \
         SELECT t.id, t.name, t.description, t.owner, t.created_by, t.created_at, \
         t.updated_at, t.expires_at, t.status, t.all_projects, t.metadata, t.digest, \
         t.key_version, r.digest, r.key_version, r.valid_until, t.last_used_at, t.version \
         FROM current_tokens t LEFT JOIN current_token_retired_secrets r \
         ON r.token_id = t.id AND r.position = 0",
        "INSERT INTO keygate_token_scopes SELECT * FROM current_token_scopes",
        "INSERT INTO keygate_token_projects SELECT * FROM current_token_projects",
    ] {
        sqlx::query(sql)
            .execute(old.pool())
            .await
            .expect("write old rows");
    }

    old.migrate().await.expect("upgrade");
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM keygate_schema_migrations ORDER BY version")
            .fetch_all(old.pool())
            .await
            .expect("read versions");
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6, 7]);

    let expected = keygate::TokenRecord {
        secret_issued_at: written.created_at,
        ..(*written).clone()
    };
    for digest in [written.digest.digest, written.retired[0].digest.digest] {
        let found = old.find_by_digest(&digest).await.expect("find");
        assert_eq!(
            found.as_deref(),
            Some(&expected),
            "the upgraded record, found by its current or previous digest"
        );
    }
    let plain_record = old.get(plain.id()).await.expect("get").expect("plain");
    assert!(plain_record.retired.is_empty());
    assert_eq!(plain_record.secret_issued_at, plain_record.created_at);
    let reader = manager_for(&old);
    let by_old = reader
        .verify(rotated.expose_secret())
        .await
        .expect("the previous secret verifies inside its grace period");
    assert!(by_old.used_previous_secret());
    reader
        .verify(new_secret.expose_secret())
        .await
        .expect("the new secret verifies");
    reader
        .verify(plain.expose_secret())
        .await
        .expect("a token never rotated verifies");
    // The store stays fully functional on the rebuilt tables (and their foreign keys).
    keygate::testing::run_all(Arc::new(old.clone())).await;

    // EXPLAIN compiles against the connection's cached schema without checking it is
    // current; a real statement first makes the connection load the upgraded schema.
    let mut conn = old.pool().acquire().await.expect("connection");
    sqlx::query("SELECT count(*) FROM keygate_tokens")
        .execute(&mut *conn)
        .await
        .expect("refresh schema");
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN SELECT o.id FROM keygate_tokens o WHERE o.id IN \
         (SELECT d.id FROM keygate_tokens d WHERE d.digest = ?1 \
         UNION ALL SELECT r.token_id FROM keygate_token_retired_secrets r WHERE r.digest = ?1) \
         LIMIT 1",
    )
    .bind(&[0u8; 32][..])
    .fetch_all(&mut *conn)
    .await
    .expect("explain");
    let plan: Vec<String> = plan.into_iter().map(|r| r.3).collect();
    for index in [
        "keygate_tokens_digest",
        "keygate_token_retired_secrets_digest",
    ] {
        assert!(
            plan.iter().any(|l| l.contains(index)),
            "the digest lookup must use {index}: {plan:?}"
        );
    }
    assert!(
        !plan.iter().any(|l| l.starts_with("SCAN")),
        "the digest lookup must not scan a table: {plan:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_from_version_1_keeps_rotated_tokens() {
    upgrade_keeps_rotated_tokens(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_from_version_2_keeps_rotated_tokens() {
    upgrade_keeps_rotated_tokens(2).await;
}

/// `migrate()` switches foreign key enforcement off for the upgrade and back on after it,
/// on the connection it used (here the only one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_leaves_foreign_keys_enforced() {
    let store = SqliteStore::connect("sqlite::memory:")
        .await
        .expect("connect");
    for _ in 0..2 {
        store.migrate().await.expect("migrate");
        let on: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(store.pool())
            .await
            .expect("pragma");
        assert_eq!(on, 1);
    }
    // Also after a failed migration.
    sqlx::query(
        "INSERT INTO keygate_schema_migrations (version, name, applied_at) VALUES (99, 'future', 0)",
    )
    .execute(store.pool())
    .await
    .expect("record a future version");
    assert!(store.migrate().await.is_err());
    let on: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(store.pool())
        .await
        .expect("pragma");
    assert_eq!(on, 1);
    // Enforced: a child row without its token is refused.
    let orphan = sqlx::query(
        "INSERT INTO keygate_token_retired_secrets (token_id, position, digest, key_version, \
         valid_until) VALUES ('nobody', 0, zeroblob(32), 1, 0)",
    )
    .execute(store.pool())
    .await;
    assert!(orphan.is_err(), "foreign keys must be enforced again");
}

/// A reach combines with the scope filter, whose listing walks the scope rows: same
/// answer as the reference semantics, page after page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reach_combines_with_the_scope_filter() {
    use chrono::Duration;
    use keygate::store::Reach;
    use keygate::{Expiry, Projects, Scope, ScopeSet, store::PageRequest};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(&dir).await;
    let t0 = chrono::Utc::now() - Duration::hours(1);
    let t0 = t0 - Duration::nanoseconds(i64::from(t0.timestamp_subsec_nanos() % 1000));
    let mut records = Vec::new();
    for i in 0..40 {
        let mut r = sample_record(if i % 5 == 4 { "bob" } else { "alice" }, i, t0);
        r.created_at = t0 + Duration::seconds(i as i64 / 2);
        r.scopes = match i % 4 {
            0 => ScopeSet::parse(["reports:read"]),
            1 => ScopeSet::parse(["reports:read", "reports:write:own"]),
            2 => ScopeSet::parse(["reports:read", "admin:all"]),
            _ => ScopeSet::parse(["reports:*"]),
        }
        .expect("scopes");
        r.projects = match i % 3 {
            0 => Projects::All,
            1 => Projects::only(["alpha"]).expect("projects"),
            _ => Projects::only(["alpha", "gamma"]).expect("projects"),
        };
        r.expiry = match i % 7 {
            0 => Expiry::Never,
            k => Expiry::At(t0 + Duration::days(k as i64)),
        };
        store.insert(&r).await.expect("insert");
        records.push(r);
    }
    let filter = TokenFilter::new()
        .scope(Scope::new("reports:read").expect("scope"))
        .within(Reach::new(
            Some("alice".to_owned()),
            ScopeSet::parse(["reports:*"]).expect("scopes"),
            Projects::only(["alpha", "beta"]).expect("projects"),
        ));
    let mut expected: Vec<_> = records.iter().filter(|r| filter.matches(r)).collect();
    expected.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    let expected: Vec<_> = expected.iter().map(|r| r.id.clone()).collect();
    assert!(expected.len() >= 3, "the case must select something");
    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let got = store.list(&filter, &page).await.expect("list");
        seen.extend(got.items.iter().map(|r| r.id.clone()));
        match got.next {
            Some(c) => page = page.next(c),
            None => break,
        }
    }
    assert_eq!(seen, expected);
}

/// A database at schema version 4 is upgraded to 6 by `migrate()`: its tokens keep every
/// field and allow any client (`allowed_ips` empty), still verify, and take an allowlist
/// afterwards, which the store then keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_from_version_4_adds_empty_allowlists() {
    use keygate::{Projects, ScopeSet, TokenUpdate};
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:{}", dir.path().join("keygate.db").display());
    let current = SqliteStore::connect(&url)
        .await
        .expect("connect")
        .with_table_prefix("current_")
        .expect("prefix");
    current.migrate().await.expect("migrate current");
    let key = ServerKey::from_bytes([42u8; 32]).expect("key");
    let manager_for = |store: &SqliteStore| {
        TokenManager::builder(store.clone())
            .server_key(key.clone())
            .build()
            .expect("manager")
    };
    let issued = manager_for(&current)
        .issue(
            IssueRequest::new("old", "alice")
                .scopes(ScopeSet::parse(["reports:read"]).expect("scopes"))
                .projects(Projects::only(["alpha"]).expect("projects")),
        )
        .await
        .expect("issue");
    let written = current
        .get(issued.id())
        .await
        .expect("get")
        .expect("record");

    let old = current
        .clone()
        .with_table_prefix("keygate_")
        .expect("prefix");
    let scripts = [
        include_str!("../src/store/migrations/sqlite/0001_create_tokens.sql"),
        include_str!("../src/store/migrations/sqlite/0002_index_digests.sql"),
        include_str!("../src/store/migrations/sqlite/0003_retired_secrets.sql"),
        include_str!("../src/store/migrations/sqlite/0004_index_names.sql"),
    ];
    sqlx::query(
        "CREATE TABLE keygate_schema_migrations (version INTEGER NOT NULL PRIMARY KEY, \
         name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )
    .execute(old.pool())
    .await
    .expect("migrations table");
    let names = [
        "create_tokens",
        "index_digests",
        "retired_secrets",
        "index_names",
    ];
    for (i, (sql, name)) in scripts.iter().zip(names).enumerate() {
        sqlx::raw_sql(&sql.replace("{prefix}", "keygate_"))
            .execute(old.pool())
            .await
            .expect("old migration");
        sqlx::query(
            "INSERT INTO keygate_schema_migrations (version, name, applied_at) VALUES (?, ?, 0)",
        )
        .bind(i as i64 + 1)
        .bind(name)
        .execute(old.pool())
        .await
        .expect("record old version");
    }
    for sql in [
        "INSERT INTO keygate_tokens (id, name, description, owner, created_by, created_at, \
         updated_at, secret_issued_at, expires_at, status, all_projects, metadata, digest, \
         key_version, last_used_at, version) \
         SELECT id, name, description, owner, created_by, created_at, updated_at, \
         secret_issued_at, expires_at, status, all_projects, metadata, digest, key_version, \
         last_used_at, version FROM current_tokens",
        "INSERT INTO keygate_token_scopes SELECT * FROM current_token_scopes",
        "INSERT INTO keygate_token_projects SELECT * FROM current_token_projects",
    ] {
        sqlx::query(sql)
            .execute(old.pool())
            .await
            .expect("write version-4 rows");
    }

    old.migrate().await.expect("upgrade");
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM keygate_schema_migrations ORDER BY version")
            .fetch_all(old.pool())
            .await
            .expect("read versions");
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6, 7]);
    let upgraded = old.get(issued.id()).await.expect("get").expect("record");
    assert_eq!(
        upgraded, written,
        "every field survives; allowed_ips is empty"
    );
    assert!(upgraded.allowed_ips.is_empty());
    let reader = manager_for(&old);
    reader
        .verify(issued.expose_secret())
        .await
        .expect("an upgraded token allows any client");
    let ranges = keygate::ip::parse_list(["10.0.0.0/8", "2001:db8::/32"]).expect("ranges");
    let changed = reader
        .update(issued.id(), TokenUpdate::new().allowed_ips(ranges.clone()))
        .await
        .expect("restrict");
    let stored = old.get(issued.id()).await.expect("get").expect("record");
    assert_eq!(stored.allowed_ips, ranges);
    assert_eq!(stored.version, changed.version);
    keygate::testing::run_all(Arc::new(old.clone())).await;
}
