//! A store defined outside the crate (as a third party would) runs the conformance suite.
#![cfg(feature = "test-util")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keygate::digest::Digest;
use keygate::store::{Page, PageRequest, TokenFilter};
use keygate::{TokenId, TokenRecord, error::StoreError, store::TokenStore};
use tokio::sync::Mutex;

/// A deliberately different implementation: an async mutex over a map ordered by id, with
/// listing done by sorting on every call.
#[derive(Default)]
struct VecStore {
    records: Mutex<BTreeMap<TokenId, TokenRecord>>,
}

#[async_trait]
impl TokenStore for VecStore {
    async fn insert(&self, record: &TokenRecord) -> Result<(), StoreError> {
        let mut m = self.records.lock().await;
        if m.contains_key(&record.id) {
            return Err(StoreError::AlreadyExists);
        }
        m.insert(record.id.clone(), record.clone());
        Ok(())
    }

    async fn get(&self, id: &TokenId) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        Ok(self.records.lock().await.get(id).cloned().map(Arc::new))
    }

    // A scan: fine for a test, linear in the number of tokens.
    async fn find_by_digest(
        &self,
        digest: &Digest,
    ) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        let m = self.records.lock().await;
        let hit = m.values().find(|r| {
            r.digest.digest == *digest || r.retired.iter().any(|p| p.digest.digest == *digest)
        });
        Ok(hit.cloned().map(Arc::new))
    }

    async fn update(&self, record: &TokenRecord) -> Result<u64, StoreError> {
        let mut m = self.records.lock().await;
        let stored = m.get_mut(&record.id).ok_or(StoreError::NotFound)?;
        if stored.version != record.version {
            return Err(StoreError::Conflict);
        }
        let last_used = stored.last_used_at.max(record.last_used_at);
        *stored = record.clone();
        stored.version += 1;
        stored.last_used_at = last_used;
        Ok(stored.version)
    }

    async fn delete(&self, id: &TokenId) -> Result<bool, StoreError> {
        Ok(self.records.lock().await.remove(id).is_some())
    }

    async fn list(&self, filter: &TokenFilter, page: &PageRequest) -> Result<Page, StoreError> {
        let m = self.records.lock().await;
        let mut all: Vec<_> = m
            .values()
            .filter(|r| filter.matches(r))
            .filter(|r| page.after.as_ref().is_none_or(|c| c.precedes(r)))
            .cloned()
            .collect();
        all.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        let limit = page.effective_limit();
        let more = all.len() > limit;
        all.truncate(limit);
        Ok(Page::new(all, more))
    }

    async fn touch(&self, id: &TokenId, at: DateTime<Utc>) -> Result<(), StoreError> {
        if let Some(r) = self.records.lock().await.get_mut(id) {
            r.last_used_at = r.last_used_at.max(Some(at));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_party_store_conforms() {
    keygate::testing::run_all(Arc::new(VecStore::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_party_store_conforms_as_dyn() {
    let store: Arc<dyn TokenStore> = Arc::new(VecStore::default());
    keygate::testing::run_all(store).await;
}

/// A store that breaks the contract (update ignores the version) is caught by the suite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_catches_a_lost_update() {
    struct NoCas(VecStore);
    #[async_trait]
    impl TokenStore for NoCas {
        async fn insert(&self, r: &TokenRecord) -> Result<(), StoreError> {
            self.0.insert(r).await
        }
        async fn get(&self, id: &TokenId) -> Result<Option<Arc<TokenRecord>>, StoreError> {
            self.0.get(id).await
        }
        async fn find_by_digest(&self, d: &Digest) -> Result<Option<Arc<TokenRecord>>, StoreError> {
            self.0.find_by_digest(d).await
        }
        async fn update(&self, r: &TokenRecord) -> Result<u64, StoreError> {
            let mut m = self.0.records.lock().await;
            let stored = m.get_mut(&r.id).ok_or(StoreError::NotFound)?;
            let v = stored.version + 1;
            *stored = r.clone();
            stored.version = v;
            Ok(v)
        }
        async fn delete(&self, id: &TokenId) -> Result<bool, StoreError> {
            self.0.delete(id).await
        }
        async fn list(&self, f: &TokenFilter, p: &PageRequest) -> Result<Page, StoreError> {
            self.0.list(f, p).await
        }
        async fn touch(&self, id: &TokenId, at: DateTime<Utc>) -> Result<(), StoreError> {
            self.0.touch(id, at).await
        }
    }
    let store = Arc::new(NoCas(VecStore::default()));
    let outcome = tokio::spawn(keygate::testing::run_all(store)).await;
    assert!(
        outcome.is_err(),
        "the suite must reject a store without compare-and-swap"
    );
}

/// A store whose listing says "more" whenever a page is full, so that a client fetches an
/// empty page after an exactly full last one, is caught by the suite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_catches_a_next_cursor_after_the_last_page() {
    struct FullMeansMore(VecStore);
    #[async_trait]
    impl TokenStore for FullMeansMore {
        async fn insert(&self, r: &TokenRecord) -> Result<(), StoreError> {
            self.0.insert(r).await
        }
        async fn get(&self, id: &TokenId) -> Result<Option<Arc<TokenRecord>>, StoreError> {
            self.0.get(id).await
        }
        async fn find_by_digest(&self, d: &Digest) -> Result<Option<Arc<TokenRecord>>, StoreError> {
            self.0.find_by_digest(d).await
        }
        async fn update(&self, r: &TokenRecord) -> Result<u64, StoreError> {
            self.0.update(r).await
        }
        async fn delete(&self, id: &TokenId) -> Result<bool, StoreError> {
            self.0.delete(id).await
        }
        async fn list(&self, f: &TokenFilter, p: &PageRequest) -> Result<Page, StoreError> {
            let page = self.0.list(f, p).await?;
            let full = page.items.len() == p.effective_limit();
            Ok(Page::new(page.items, full))
        }
        async fn touch(&self, id: &TokenId, at: DateTime<Utc>) -> Result<(), StoreError> {
            self.0.touch(id, at).await
        }
    }
    let store = Arc::new(FullMeansMore(VecStore::default()));
    let outcome = tokio::spawn(keygate::testing::run_all(store)).await;
    assert!(
        outcome.is_err(),
        "the suite must reject a store that announces a page after the last one"
    );
}
