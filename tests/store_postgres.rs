//! The PostgreSQL store passes the conformance suite on the real server (each test in a
//! schema of its own, dropped at the end), notifies exactly the committed changes, and
//! reports database failures as store errors.
#![cfg(all(feature = "postgres", feature = "test-util"))]
#![allow(clippy::expect_used, reason = "test helpers panic on setup failure")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use keygate::store::SqlStore;
use keygate::testing::sample_record;
use keygate::{
    IssueRequest, ServerKey, TokenManager, VerifyError, error::StoreError, store::TokenFilter,
    store::TokenStore,
};
use sqlx::postgres::PgListener;

use common::TestSchema;

/// A manager over `store` with a fresh server key.
fn manager_over<S: TokenStore + Clone + 'static>(store: &S) -> TokenManager {
    TokenManager::builder(store.clone())
        .server_key(ServerKey::generate())
        .build()
        .expect("manager")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms() {
    let Some((_schema, store)) = TestSchema::new().await else {
        return;
    };
    keygate::testing::run_all(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms_as_dyn() {
    let Some((_schema, store)) = TestSchema::new().await else {
        return;
    };
    let store: Arc<dyn TokenStore> = Arc::new(SqlStore::Postgres(store));
    keygate::testing::run_all(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_is_idempotent_and_refuses_a_newer_schema() {
    let Some((schema, store)) = TestSchema::new().await else {
        return;
    };
    // Concurrent migrations from several instances serialise on the advisory lock.
    let others: Vec<_> = futures_join(vec![schema.store().await, schema.store().await]).await;
    for r in others {
        r.expect("concurrent migrate");
    }
    let versions: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT version FROM \"{}\".keygate_schema_migrations ORDER BY version",
        schema.name
    ))
    .fetch_all(store.pool())
    .await
    .expect("versions");
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6, 7]);
    // Version 4: the trigram index of the folded name (pg_trgm is available on the test
    // server).
    let trgm: Option<String> = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = 'keygate_tokens_name_trgm'",
    )
    .bind(&schema.name)
    .fetch_optional(store.pool())
    .await
    .expect("indexes");
    let trgm = trgm.expect("the name filter's trigram index exists");
    assert!(
        trgm.contains("gin") && trgm.contains("gin_trgm_ops"),
        "{trgm}"
    );
    sqlx::query(&format!(
        "INSERT INTO \"{}\".keygate_schema_migrations (version, name) VALUES (99, 'future')",
        schema.name
    ))
    .execute(store.pool())
    .await
    .expect("record a future version");
    let err = store
        .migrate()
        .await
        .expect_err("a newer schema must be refused");
    assert!(
        std::error::Error::source(&err).is_some_and(|s| s.to_string().contains("newer")),
        "the error must say why: {err:?}"
    );
}

async fn futures_join(stores: Vec<keygate::PostgresStore>) -> Vec<Result<(), StoreError>> {
    let handles: Vec<_> = stores
        .into_iter()
        .map(|s| tokio::spawn(async move { s.migrate().await }))
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("join"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_updates_and_deletes_notify_their_id_and_failed_ones_do_not() {
    let Some((_schema, store)) = TestSchema::new().await else {
        return;
    };
    let mut listener = PgListener::connect_with(store.pool())
        .await
        .expect("listener");
    listener.listen(store.channel()).await.expect("listen");
    let r = sample_record("alice", 1, chrono::Utc::now());
    store.insert(&r).await.expect("insert");
    // A conflicting update and a touch change nothing a cache holds: no notification.
    let mut stale = r.clone();
    stale.version = 7;
    assert!(matches!(
        store.update(&stale).await,
        Err(StoreError::Conflict)
    ));
    store.touch(&r.id, chrono::Utc::now()).await.expect("touch");
    // A committed update notifies.
    store.update(&r).await.expect("update");
    let n = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("a notification within 5 s")
        .expect("recv");
    assert_eq!(
        n.payload(),
        r.id.as_str(),
        "the first notification is the update's"
    );
    assert!(store.delete(&r.id).await.expect("delete"));
    let n = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("a notification within 5 s")
        .expect("recv");
    assert_eq!(n.payload(), r.id.as_str());
    // Deleting a missing record notifies nothing.
    assert!(!store.delete(&r.id).await.expect("delete again"));
    let none = tokio::time::timeout(Duration::from_millis(300), listener.recv()).await;
    assert!(
        none.is_err(),
        "no notification for a delete that removed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_is_stored_and_digests_are_bytes() {
    let Some((schema, store)) = TestSchema::new().await else {
        return;
    };
    let manager = manager_over(&store);
    let issued = manager
        .issue(IssueRequest::new("ci", "alice").metadata("k", "v"))
        .await
        .expect("issue");
    let token = issued.expose_secret().to_owned();
    let secret_part = &token[token.len() - 20..];
    let (row_text, digest_len): (String, i32) = sqlx::query_as(&format!(
        "SELECT t::text, octet_length(digest) FROM \"{}\".keygate_tokens t",
        schema.name
    ))
    .fetch_one(store.pool())
    .await
    .expect("dump");
    assert!(
        !row_text.contains(secret_part),
        "no column holds the plaintext"
    );
    assert_eq!(digest_len, 32, "the digest is stored as 32 raw bytes");
    assert!(manager.verify(&token).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_row_is_a_backend_error_not_a_panic() {
    let Some((schema, store)) = TestSchema::new().await else {
        return;
    };
    let manager = manager_over(&store);
    let t = format!("\"{}\".keygate_tokens", schema.name);
    let corruptions = [
        format!("UPDATE {t} SET scopes = ARRAY['not a scope!'] WHERE id = $1"),
        format!("UPDATE {t} SET projects = ARRAY['Bad Project'] WHERE id = $1"),
        format!("UPDATE {t} SET metadata = '{{\"k\": 1}}' WHERE id = $1"),
        format!("UPDATE {t} SET version = -1 WHERE id = $1"),
        format!(
            "UPDATE {t} SET retired_digests = ARRAY[digest], retired_key_versions = ARRAY[-5::bigint], \
             retired_valid_until = ARRAY[now()] WHERE id = $1"
        ),
        format!(
            "UPDATE {t} SET retired_digests = ARRAY[NULL::bytea], retired_key_versions = ARRAY[1::bigint], \
             retired_valid_until = ARRAY[now()] WHERE id = $1"
        ),
        format!(
            "UPDATE {t} SET retired_digests = ARRAY['\\x00'::bytea], retired_key_versions = ARRAY[1::bigint], \
             retired_valid_until = ARRAY[now()] WHERE id = $1"
        ),
    ];
    for (i, corruption) in corruptions.iter().enumerate() {
        let owner = format!("owner-{i}");
        let issued = manager
            .issue(IssueRequest::new("ci", owner.as_str()))
            .await
            .expect("issue");
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

/// A timestamp keygate cannot represent (`infinity`, `-infinity`, or beyond chrono's range,
/// which PostgreSQL's exceeds) in any timestamp column is a backend error naming the column,
/// from `get`, `list` and `find_by_digest` alike, and verification fails closed: no panic
/// (sqlx's own decoding panics on these).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrepresentable_timestamp_is_a_backend_error_naming_its_column() {
    use keygate::{RotateRequest, store::PageRequest};
    let Some((schema, store)) = TestSchema::new().await else {
        return;
    };
    let manager = manager_over(&store);
    let t = format!("\"{}\".keygate_tokens", schema.name);
    let columns = [
        "created_at",
        "updated_at",
        "secret_issued_at",
        "expires_at",
        "last_used_at",
        "retired_valid_until",
    ];
    let values = ["infinity", "-infinity", "294276-12-31 23:59:59.999999+00"];
    for (i, column) in columns.iter().enumerate() {
        for (j, value) in values.iter().enumerate() {
            let owner = format!("owner-{i}-{j}");
            let issued = manager
                .issue(IssueRequest::new("ci", owner.as_str()))
                .await
                .expect("issue");
            // A retired secret inside its grace period, so both digests are found.
            let rotated = manager
                .rotate(
                    issued.id(),
                    RotateRequest::new().grace(std::time::Duration::from_secs(3600)),
                )
                .await
                .expect("rotate");
            let set = if *column == "retired_valid_until" {
                format!("{column} = ARRAY[$1::timestamptz]")
            } else {
                format!("{column} = $1::timestamptz")
            };
            sqlx::query(&format!("UPDATE {t} SET {set} WHERE id = $2"))
                .bind(value)
                .bind(issued.id().as_str())
                .execute(store.pool())
                .await
                .expect("write the timestamp");
            let what = format!("{column} = {value}");
            let names_column = |e: &StoreError| {
                matches!(e, StoreError::Backend(_))
                    && std::error::Error::source(e)
                        .is_some_and(|s| s.to_string().contains(&format!("`{column}`")))
            };
            let got = store.get(issued.id()).await;
            assert!(
                got.as_ref().is_err_and(names_column),
                "{what}: get must be a backend error naming the column, got {got:?}"
            );
            let record = written_record(&store, issued.id()).await;
            for digest in [record.0, record.1] {
                let found = store.find_by_digest(&digest).await;
                assert!(
                    found.as_ref().is_err_and(names_column),
                    "{what}: find_by_digest must be a backend error naming the column, got {found:?}"
                );
            }
            let listed = store
                .list(&TokenFilter::new().owner(owner), &PageRequest::first(10))
                .await;
            assert!(
                listed.as_ref().is_err_and(names_column),
                "{what}: list must be a backend error naming the column, got {listed:?}"
            );
            for token in [issued.expose_secret(), rotated.expose_secret()] {
                let verified = manager.verify(token).await;
                assert!(
                    matches!(verified, Err(VerifyError::Store(StoreError::Backend(_)))),
                    "{what}: verify must fail closed, got {verified:?}"
                );
            }
        }
    }
}

/// The current and newest retired digest of a token, read as raw bytes (the record itself
/// may not decode).
async fn written_record(
    store: &keygate::PostgresStore,
    id: &keygate::TokenId,
) -> (keygate::digest::Digest, keygate::digest::Digest) {
    let (current, retired): (Vec<u8>, Vec<u8>) = sqlx::query_as(&format!(
        "SELECT digest, retired_digests[1] FROM \"{}\".keygate_tokens WHERE id = $1",
        store.schema()
    ))
    .bind(id.as_str())
    .fetch_one(store.pool())
    .await
    .expect("digests");
    let digest = |b: &[u8]| keygate::digest::Digest::from_slice(b).expect("32 bytes");
    (digest(&current), digest(&retired))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pool_fails_closed() {
    let Some((_schema, store)) = TestSchema::new().await else {
        return;
    };
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
async fn connect_picks_postgres_by_scheme() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    // Only checks the backend choice and the connection; migrations on `public` are
    // exercised by the per-schema tests.
    let store = keygate::PostgresStore::connect(&url)
        .await
        .expect("connect");
    assert_eq!(store.schema(), "public");
    let err = SqlStore::connect("mysql://root@127.0.0.1/x").await;
    assert!(matches!(err, Err(keygate::Error::InvalidConfig(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impossible_version_is_a_conflict_or_not_found() {
    let Some((_schema, store)) = TestSchema::new().await else {
        return;
    };
    let mut r = sample_record("alice", 1, chrono::Utc::now());
    r.version = u64::MAX;
    assert!(matches!(store.update(&r).await, Err(StoreError::NotFound)));
    r.version = 1;
    store.insert(&r).await.expect("insert");
    r.version = u64::MAX;
    assert!(matches!(store.update(&r).await, Err(StoreError::Conflict)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_store_starts_the_listener_for_postgres() {
    let Some((_schema, store)) = TestSchema::new().await else {
        return;
    };
    let manager = manager_over(&store);
    let handle = SqlStore::Postgres(store)
        .spawn_invalidation_listener(manager)
        .await
        .expect("listener");
    assert!(handle.is_some_and(|h| h.is_running()));
}

/// The migrations of schema versions 1 and 2, as older builds applied them.
const OLD_MIGRATIONS: [(i64, &str, &str); 2] = [
    (
        1,
        "create_tokens",
        include_str!("../src/store/migrations/postgres/0001_create_tokens.sql"),
    ),
    (
        2,
        "index_digests",
        include_str!("../src/store/migrations/postgres/0002_index_digests.sql"),
    ),
];

/// A schema at version 1 or 2 is upgraded by `migrate()`: a token rotated under the old
/// schema keeps its previous secret (element 1 of the retired arrays, found by its digest,
/// still verifying inside its grace period), `secret_issued_at` becomes `created_at`, and
/// the digest lookup can use both digest indexes.
async fn upgrade_keeps_rotated_tokens(from: i64) {
    use keygate::{Projects, RotateRequest, ScopeSet};
    let Some((schema, current)) = TestSchema::new().await else {
        return;
    };
    // The old schema, dropped at the end like the current one.
    let old_schema = TestSchema {
        url: schema.url.clone(),
        name: format!("{}_old", schema.name),
    };
    let (s, o) = (&schema.name, &old_schema.name);
    let pool = current.pool();
    for sql in [
        format!("CREATE SCHEMA \"{o}\""),
        format!(
            "CREATE TABLE \"{o}\".keygate_schema_migrations (version BIGINT NOT NULL PRIMARY KEY, \
             name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        ),
    ] {
        sqlx::query(&sql).execute(pool).await.expect("old schema");
    }
    for (v, name, sql) in OLD_MIGRATIONS.iter().filter(|m| m.0 <= from) {
        sqlx::raw_sql(&sql.replace("{schema}", &format!("\"{o}\"")))
            .execute(pool)
            .await
            .expect("old migration");
        sqlx::query(&format!(
            "INSERT INTO \"{o}\".keygate_schema_migrations (version, name) VALUES ($1, $2)"
        ))
        .bind(v)
        .bind(name)
        .execute(pool)
        .await
        .expect("record old version");
    }

    let key = [42u8; 32];
    let manager_for = |store: &keygate::PostgresStore| {
        TokenManager::builder(store.clone())
            .server_key(ServerKey::from_bytes(key).expect("key"))
            .build()
            .expect("manager")
    };
    // Tokens as the old build wrote them: issued and rotated (with a grace period) by the
    // current code, then copied into the old schema, `previous_*` holding the newest
    // retired secret.
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
    tokio::time::sleep(Duration::from_millis(5)).await;
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
    sqlx::query(&format!(
        "INSERT INTO \"{o}\".keygate_tokens (id, name, description, owner, created_by, \
         created_at, updated_at, expires_at, status, scopes, projects, metadata, digest, \
         key_version, previous_digest, previous_key_version, previous_valid_until, \
         last_used_at, version) \
         SELECT id, name, description, owner, created_by, created_at, updated_at, expires_at, \
         status, scopes, projects, metadata, digest, key_version, retired_digests[1], \
         retired_key_versions[1], retired_valid_until[1], last_used_at, version \
         FROM \"{s}\".keygate_tokens"
    ))
    .execute(pool)
    .await
    .expect("write old rows");

    let old = old_schema.store().await;
    old.migrate().await.expect("upgrade");
    let versions: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT version FROM \"{o}\".keygate_schema_migrations ORDER BY version"
    ))
    .fetch_all(old.pool())
    .await
    .expect("versions");
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
    keygate::testing::run_all(Arc::new(old.clone())).await;

    // A table this small is scanned; forbid that to see which indexes the lookup can use.
    let mut conn = old.pool().acquire().await.expect("connection");
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .expect("set");
    let plan: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN SELECT t.id FROM \"{o}\".keygate_tokens t \
         WHERE t.digest = $1 OR t.retired_digests @> ARRAY[$1::bytea] LIMIT 1"
    ))
    .bind(&[0u8; 32][..])
    .fetch_all(&mut *conn)
    .await
    .expect("explain");
    sqlx::query("RESET enable_seqscan")
        .execute(&mut *conn)
        .await
        .expect("reset");
    for index in ["keygate_tokens_digest", "keygate_tokens_retired_digests"] {
        assert!(
            plan.iter().any(|l| l.contains(index)),
            "the digest lookup must use {index}: {plan:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_from_version_1_keeps_rotated_tokens() {
    upgrade_keeps_rotated_tokens(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_from_version_2_keeps_rotated_tokens() {
    upgrade_keeps_rotated_tokens(2).await;
}

/// A schema at version 4 is upgraded to 6 by `migrate()`: its tokens keep every field and
/// allow any client (`allowed_ips` empty), still verify, and take an allowlist afterwards,
/// which the store then keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_from_version_4_adds_empty_allowlists() {
    use keygate::{Projects, ScopeSet, TokenUpdate};
    let Some((schema, current)) = TestSchema::new().await else {
        return;
    };
    let old_schema = TestSchema {
        url: schema.url.clone(),
        name: format!("{}_old", schema.name),
    };
    let (s, o) = (&schema.name, &old_schema.name);
    let pool = current.pool();
    for sql in [
        format!("CREATE SCHEMA \"{o}\""),
        format!(
            "CREATE TABLE \"{o}\".keygate_schema_migrations (version BIGINT NOT NULL PRIMARY KEY, \
             name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        ),
    ] {
        sqlx::query(&sql).execute(pool).await.expect("old schema");
    }
    let scripts = [
        (
            1,
            "create_tokens",
            include_str!("../src/store/migrations/postgres/0001_create_tokens.sql"),
        ),
        (
            2,
            "index_digests",
            include_str!("../src/store/migrations/postgres/0002_index_digests.sql"),
        ),
        (
            3,
            "retired_secrets",
            include_str!("../src/store/migrations/postgres/0003_retired_secrets.sql"),
        ),
        (
            4,
            "index_names",
            include_str!("../src/store/migrations/postgres/0004_index_names.sql"),
        ),
    ];
    for (v, name, sql) in scripts {
        sqlx::raw_sql(&sql.replace("{schema}", &format!("\"{o}\"")))
            .execute(pool)
            .await
            .expect("old migration");
        sqlx::query(&format!(
            "INSERT INTO \"{o}\".keygate_schema_migrations (version, name) VALUES ($1, $2)"
        ))
        .bind(v as i64)
        .bind(name)
        .execute(pool)
        .await
        .expect("record old version");
    }
    let key = ServerKey::from_bytes([42u8; 32]).expect("key");
    let manager_for = |store: &keygate::PostgresStore| {
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
    sqlx::query(&format!(
        "INSERT INTO \"{o}\".keygate_tokens (id, name, description, owner, created_by, \
         created_at, updated_at, secret_issued_at, expires_at, status, scopes, projects, \
         metadata, digest, key_version, retired_digests, retired_key_versions, \
         retired_valid_until, last_used_at, version) \
         SELECT id, name, description, owner, created_by, created_at, updated_at, \
         secret_issued_at, expires_at, status, scopes, projects, metadata, digest, \
         key_version, retired_digests, retired_key_versions, retired_valid_until, \
         last_used_at, version FROM \"{s}\".keygate_tokens"
    ))
    .execute(pool)
    .await
    .expect("write version-4 rows");

    let old = old_schema.store().await;
    old.migrate().await.expect("upgrade");
    let versions: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT version FROM \"{o}\".keygate_schema_migrations ORDER BY version"
    ))
    .fetch_all(pool)
    .await
    .expect("read versions");
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6, 7]);
    let upgraded = old.get(issued.id()).await.expect("get").expect("record");
    assert_eq!(
        upgraded, written,
        "every field survives; allowed_ips is empty"
    );
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
