//! Background `last_used_at` writes are bounded: against a store whose `touch` never
//! answers, each write is abandoned after the touch timeout, so pending background tasks do
//! not pile up however long the store hangs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keygate::digest::Digest;
use keygate::store::{Page, PageRequest, TokenFilter, TokenStore};
use keygate::{
    IssueRequest, MemoryStore, ServerKey, TokenId, TokenManager, TokenRecord, error::StoreError,
};

/// A memory store whose `touch` hangs forever; counts the touches started.
struct HangingTouch {
    inner: MemoryStore,
    touches: AtomicU64,
}

#[async_trait]
impl TokenStore for HangingTouch {
    async fn insert(&self, record: &TokenRecord) -> Result<(), StoreError> {
        self.inner.insert(record).await
    }
    async fn get(&self, id: &TokenId) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        self.inner.get(id).await
    }
    async fn find_by_digest(
        &self,
        digest: &Digest,
    ) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        self.inner.find_by_digest(digest).await
    }
    async fn update(&self, record: &TokenRecord) -> Result<u64, StoreError> {
        self.inner.update(record).await
    }
    async fn delete(&self, id: &TokenId) -> Result<bool, StoreError> {
        self.inner.delete(id).await
    }
    async fn list(&self, filter: &TokenFilter, page: &PageRequest) -> Result<Page, StoreError> {
        self.inner.list(filter, page).await
    }
    async fn touch(&self, _id: &TokenId, _at: DateTime<Utc>) -> Result<(), StoreError> {
        self.touches.fetch_add(1, Ordering::SeqCst);
        std::future::pending().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_touches_are_abandoned_after_the_timeout() {
    let store = Arc::new(HangingTouch {
        inner: MemoryStore::new(),
        touches: AtomicU64::new(0),
    });
    let manager = TokenManager::builder(Arc::clone(&store))
        .server_key(ServerKey::generate())
        .touch_interval(Duration::from_millis(1))
        .touch_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let mut tokens = Vec::new();
    for i in 0..50 {
        let t = manager
            .issue(IssueRequest::new(format!("t{i}"), "alice"))
            .await
            .unwrap();
        tokens.push(t.expose_secret().to_owned());
    }
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    // Verify every token repeatedly for a while: each verification after the interval
    // schedules a write that hangs.
    let until = std::time::Instant::now() + Duration::from_millis(600);
    let mut peak = 0;
    while std::time::Instant::now() < until {
        for t in &tokens {
            manager.verify(t).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        peak = peak.max(metrics.num_alive_tasks().saturating_sub(baseline));
    }
    let started = store.touches.load(Ordering::SeqCst);
    assert!(
        started > 200,
        "the writes must have been scheduled (and hung): {started}"
    );
    // Within the timeout (200 ms) a token gets at most one write per interval; pending
    // writes are those started within the last timeout, far fewer than all started.
    assert!(
        (peak as u64) < started,
        "pending writes must be bounded by the timeout: peak {peak} of {started} started"
    );
    // Once verifications stop, every hung write ends within the timeout.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let left = metrics.num_alive_tasks().saturating_sub(baseline);
    assert_eq!(left, 0, "hung writes must be abandoned after the timeout");
}

#[test]
fn zero_touch_timeout_refused() {
    assert!(
        TokenManager::builder(MemoryStore::new())
            .server_key(ServerKey::generate())
            .touch_timeout(Duration::ZERO)
            .build()
            .is_err()
    );
}
