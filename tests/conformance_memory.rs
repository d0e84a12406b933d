//! The memory store passes the conformance suite, directly and through `Arc<dyn TokenStore>`.
#![cfg(feature = "test-util")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

use std::sync::Arc;

use keygate::{MemoryStore, store::TokenStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms() {
    keygate::testing::run_all(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms_as_dyn() {
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    keygate::testing::run_all(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boxed_store_conforms() {
    let store: Arc<Box<dyn TokenStore>> = Arc::new(Box::new(MemoryStore::new()));
    keygate::testing::run_all(store).await;
}
