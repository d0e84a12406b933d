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
    IssueRequest, ServerKey, StoreError, TokenFilter, TokenManager, TokenStore, VerifyError,
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
    assert_eq!(versions, vec![1, 2]);
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
            "UPDATE {t} SET previous_digest = digest, previous_key_version = -5, previous_valid_until = now() WHERE id = $1"
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

/// A schema at version 1 (no digest indexes) is upgraded by `migrate()`: its tokens keep
/// verifying, and the digest lookup can then use the new indexes, current and previous.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_from_version_1_indexes_the_digests() {
    let Some((schema, store)) = TestSchema::new().await else {
        return;
    };
    let manager = manager_over(&store);
    let issued = manager
        .issue(IssueRequest::new("old", "o"))
        .await
        .expect("issue");
    let s = &schema.name;
    for sql in [
        format!("DROP INDEX \"{s}\".keygate_tokens_digest"),
        format!("DROP INDEX \"{s}\".keygate_tokens_previous_digest"),
        format!("DELETE FROM \"{s}\".keygate_schema_migrations WHERE version = 2"),
    ] {
        sqlx::query(&sql)
            .execute(store.pool())
            .await
            .expect("back to version 1");
    }
    store.migrate().await.expect("upgrade");
    let versions: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT version FROM \"{s}\".keygate_schema_migrations ORDER BY version"
    ))
    .fetch_all(store.pool())
    .await
    .expect("versions");
    assert_eq!(versions, vec![1, 2]);
    assert!(manager.verify(issued.expose_secret()).await.is_ok());

    // A table this small is scanned; forbid that to see which indexes the lookup can use.
    let mut conn = store.pool().acquire().await.expect("connection");
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .expect("set");
    let plan: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN SELECT t.id FROM \"{s}\".keygate_tokens t \
         WHERE t.digest = '\\x0000000000000000000000000000000000000000000000000000000000000000'::bytea OR t.previous_digest = '\\x0000000000000000000000000000000000000000000000000000000000000000'::bytea LIMIT 1"
    ))
    .fetch_all(&mut *conn)
    .await
    .expect("explain");
    sqlx::query("RESET enable_seqscan")
        .execute(&mut *conn)
        .await
        .expect("reset");
    for index in ["keygate_tokens_digest", "keygate_tokens_previous_digest"] {
        assert!(
            plan.iter().any(|l| l.contains(index)),
            "the digest lookup must use {index}: {plan:?}"
        );
    }
}
