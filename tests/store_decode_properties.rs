//! Record decoding of the SQLite store is total: whatever a column holds (any integer, text or
//! blob that the schema's constraints let through), reading the row gives the record or a
//! `StoreError::Backend`, never a panic, and verification of its token fails closed. The
//! proptest twin of a fuzz target for the stores' record decoding; it runs in CI.
#![cfg(all(feature = "sqlite", feature = "test-util"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

use keygate::SqliteStore;
use keygate::{
    IssueRequest, Projects, RotateRequest, ScopeSet, ServerKey, TokenManager, error::StoreError,
    store::TokenStore,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Value {
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
    Null,
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::Int),
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(i64::MAX),
            Just(i64::MIN),
            Just(253_402_300_800_000_000)
        ]
        .prop_map(Value::Int),
        ".{0,40}".prop_map(Value::Text),
        prop_oneof![
            Just("active"),
            Just("*"),
            Just("{}"),
            Just("[]"),
            Just("{\"a\":1}"),
            Just("a:*")
        ]
        .prop_map(|s| Value::Text(s.to_owned())),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Value::Blob),
        Just(Value::Null),
    ]
}

const RETIRED_COLUMNS: &[&str] = &["position", "digest", "key_version", "valid_until"];

const COLUMNS: &[&str] = &[
    "name",
    "description",
    "owner",
    "created_by",
    "created_at",
    "updated_at",
    "secret_issued_at",
    "expires_at",
    "status",
    "all_projects",
    "metadata",
    "digest",
    "key_version",
    "last_used_at",
    "version",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_column_value_decodes_or_fails_closed(
        column in prop::sample::select(COLUMNS),
        retired_column in prop::sample::select(RETIRED_COLUMNS),
        scope_value in value(),
        v in value(),
        child in 0u8..4,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
            store.migrate().await.unwrap();
            let manager = TokenManager::builder(store.clone())
                .server_key(ServerKey::generate())
                .build()
                .unwrap();
            let issued = manager
                .issue(
                    IssueRequest::new("t", "o")
                        .scopes(ScopeSet::parse(["a:b"]).unwrap())
                        .projects(Projects::only(["p"]).unwrap()),
                )
                .await
                .unwrap();
            // A rotation with a grace period: the old secret is a retired row, still valid.
            let issued = manager
                .rotate(issued.id(), RotateRequest::new().grace(std::time::Duration::from_secs(3600)))
                .await
                .unwrap();
            let id = issued.id().as_str().to_owned();
            let (sql, bound) = match child {
                0 => (format!("UPDATE keygate_tokens SET {column} = ? WHERE id = ?"), v),
                1 => ("UPDATE keygate_token_scopes SET scope = ? WHERE token_id = ?".to_owned(), scope_value),
                2 => ("UPDATE keygate_token_projects SET project = ? WHERE token_id = ?".to_owned(), scope_value),
                _ => (format!("UPDATE keygate_token_retired_secrets SET {retired_column} = ? WHERE token_id = ?"), v),
            };
            let q = sqlx::query(&sql);
            let q = match bound {
                Value::Int(i) => q.bind(i),
                Value::Text(t) => q.bind(t),
                Value::Blob(b) => q.bind(b),
                Value::Null => q.bind(Option::<i64>::None),
            };
            // The schema's constraints may refuse the value: then there is nothing to read.
            if q.bind(&id).execute(store.pool()).await.is_err() {
                return;
            }
            match store.get(issued.id()).await {
                Ok(_) | Err(StoreError::Backend(_)) => {}
                Err(e) => panic!("unexpected error {e:?}"),
            }
            match store.list(&Default::default(), &Default::default()).await {
                Ok(_) | Err(StoreError::Backend(_)) => {}
                Err(e) => panic!("unexpected error {e:?}"),
            }
            // Whatever the row holds, verification never panics.
            let _ = manager.verify(issued.expose_secret()).await;
        });
    }
}
