//! [`FaultyStore`]: a store wrapper that injects errors and timeouts, switchable at run time,
//! and counts every call. **Not semver-stable.**
//!
//! Use it to show that a component fails closed (nothing is authorised while the store
//! fails, and service resumes when it recovers) and that cheap rejections never reach the
//! store (the call counters stay at zero):
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use keygate::testing::{Fault, FaultyStore, StoreOp};
//! use keygate::{IssueRequest, MemoryStore, ServerKey, TokenManager};
//!
//! let (store, faults) = FaultyStore::new(MemoryStore::new());
//! let manager = TokenManager::builder(store)
//!     .server_key(ServerKey::generate())
//!     .build()
//!     .unwrap();
//! let issued = manager.issue(IssueRequest::new("ci", "alice")).await.unwrap();
//!
//! faults.set(Fault::Error);
//! assert!(manager.verify(issued.expose_secret()).await.is_err());
//! faults.set(Fault::None);
//! assert!(manager.verify(issued.expose_secret()).await.is_ok());
//!
//! assert!(manager.verify("kg_not_a_token").await.is_err());
//! // The malformed token never reached the store.
//! assert_eq!(faults.calls(StoreOp::FindByDigest), 2);
//! # }
//! ```
//!
//! The HTTP layer's tests can wrap the store of the manager they serve the same way and
//! expect 503 while a fault is set.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::digest::Digest;
use crate::error::StoreError;
use crate::record::TokenRecord;
use crate::store::{Page, PageRequest, TokenFilter, TokenStore};
use crate::token::TokenId;

/// What the wrapped store does on each call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Pass every call through (the default).
    #[default]
    None,
    /// Fail every call at once with [`StoreError::Backend`] (an I/O "connection refused").
    Error,
    /// Wait this long, then fail with [`StoreError::Backend`] (an I/O "timed out"): a store
    /// that answers too slowly and is cut off by its own timeout. Needs a tokio runtime with
    /// the time driver.
    Timeout(Duration),
    /// Never answer: the call stays pending until the caller gives up (a caller's own
    /// timeout, or dropping the future).
    Hang,
}

/// One [`TokenStore`] method, for [`FaultHandle::calls`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreOp {
    /// [`TokenStore::insert`].
    Insert,
    /// [`TokenStore::get`].
    Get,
    /// [`TokenStore::find_by_digest`]: what verification calls.
    FindByDigest,
    /// [`TokenStore::update`].
    Update,
    /// [`TokenStore::delete`].
    Delete,
    /// [`TokenStore::list`].
    List,
    /// [`TokenStore::touch`].
    Touch,
    /// [`TokenStore::claim_key_fingerprint`].
    ClaimKeyFingerprint,
    /// [`TokenStore::prune`].
    Prune,
    /// [`TokenStore::count_prunable`].
    CountPrunable,
}

const OPS: usize = 10;

impl StoreOp {
    fn index(self) -> usize {
        match self {
            StoreOp::Insert => 0,
            StoreOp::Get => 1,
            StoreOp::Update => 2,
            StoreOp::Delete => 3,
            StoreOp::List => 4,
            StoreOp::Touch => 5,
            StoreOp::FindByDigest => 6,
            StoreOp::ClaimKeyFingerprint => 7,
            StoreOp::Prune => 8,
            StoreOp::CountPrunable => 9,
        }
    }
}

#[derive(Default)]
struct State {
    fault: Mutex<Fault>,
    calls: [AtomicU64; OPS],
    injected: AtomicU64,
}

/// Switches the faults of a [`FaultyStore`] and reads its counters. Cheap to clone; every
/// clone controls the same store.
#[derive(Clone, Default)]
pub struct FaultHandle {
    state: Arc<State>,
}

impl FaultHandle {
    /// Sets what every following call does.
    pub fn set(&self, fault: Fault) {
        *self.state.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// The fault in force.
    pub fn fault(&self) -> Fault {
        *self.state.fault.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls of `op` received so far (passed through or failed).
    pub fn calls(&self, op: StoreOp) -> u64 {
        self.state.calls[op.index()].load(Ordering::SeqCst)
    }

    /// Calls of every method received so far.
    pub fn total_calls(&self) -> u64 {
        self.state
            .calls
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .sum()
    }

    /// Calls that were failed (or left hanging) by an injected fault.
    pub fn injected(&self) -> u64 {
        self.state.injected.load(Ordering::SeqCst)
    }

    /// Sets every counter back to zero.
    pub fn reset_counts(&self) {
        for c in &self.state.calls {
            c.store(0, Ordering::SeqCst);
        }
        self.state.injected.store(0, Ordering::SeqCst);
    }

    /// Counts the call, then applies the fault in force: `Ok(())` to pass it through.
    async fn enter(&self, op: StoreOp) -> Result<(), StoreError> {
        self.state.calls[op.index()].fetch_add(1, Ordering::SeqCst);
        let fault = self.fault();
        if fault != Fault::None {
            self.state.injected.fetch_add(1, Ordering::SeqCst);
        }
        match fault {
            Fault::None => Ok(()),
            Fault::Error => Err(StoreError::backend(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "injected store failure",
            ))),
            Fault::Timeout(after) => {
                tokio::time::sleep(after).await;
                Err(StoreError::backend(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "injected store timeout",
                )))
            }
            Fault::Hang => std::future::pending().await,
        }
    }
}

impl std::fmt::Debug for FaultHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultHandle")
            .field("fault", &self.fault())
            .field("total_calls", &self.total_calls())
            .field("injected", &self.injected())
            .finish()
    }
}

/// A [`TokenStore`] wrapper that counts every call and injects the [`Fault`] set through its
/// [`FaultHandle`]. With [`Fault::None`] it is a transparent, counting store.
#[derive(Debug)]
pub struct FaultyStore<S> {
    inner: S,
    handle: FaultHandle,
}

impl<S: TokenStore> FaultyStore<S> {
    /// Wraps `inner`, passing calls through until a fault is set; returns the wrapper and
    /// the handle that controls it.
    pub fn new(inner: S) -> (Self, FaultHandle) {
        let handle = FaultHandle::default();
        (
            FaultyStore {
                inner,
                handle: handle.clone(),
            },
            handle,
        )
    }

    /// Another handle to this store's faults and counters.
    pub fn handle(&self) -> FaultHandle {
        self.handle.clone()
    }

    /// The wrapped store.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

#[async_trait]
impl<S: TokenStore> TokenStore for FaultyStore<S> {
    async fn insert(&self, record: &TokenRecord) -> Result<(), StoreError> {
        self.handle.enter(StoreOp::Insert).await?;
        self.inner.insert(record).await
    }

    async fn get(&self, id: &TokenId) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        self.handle.enter(StoreOp::Get).await?;
        self.inner.get(id).await
    }

    async fn find_by_digest(
        &self,
        digest: &Digest,
    ) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        self.handle.enter(StoreOp::FindByDigest).await?;
        self.inner.find_by_digest(digest).await
    }

    async fn update(&self, record: &TokenRecord) -> Result<u64, StoreError> {
        self.handle.enter(StoreOp::Update).await?;
        self.inner.update(record).await
    }

    async fn delete(&self, id: &TokenId) -> Result<bool, StoreError> {
        self.handle.enter(StoreOp::Delete).await?;
        self.inner.delete(id).await
    }

    async fn list(&self, filter: &TokenFilter, page: &PageRequest) -> Result<Page, StoreError> {
        self.handle.enter(StoreOp::List).await?;
        self.inner.list(filter, page).await
    }

    async fn touch(&self, id: &TokenId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.handle.enter(StoreOp::Touch).await?;
        self.inner.touch(id, at).await
    }

    async fn claim_key_fingerprint(
        &self,
        key_version: u32,
        fingerprint: &Digest,
    ) -> Result<Option<Digest>, StoreError> {
        self.handle.enter(StoreOp::ClaimKeyFingerprint).await?;
        self.inner
            .claim_key_fingerprint(key_version, fingerprint)
            .await
    }

    async fn prune(&self, cutoff: DateTime<Utc>, limit: u64) -> Result<u64, StoreError> {
        self.handle.enter(StoreOp::Prune).await?;
        self.inner.prune(cutoff, limit).await
    }

    async fn count_prunable(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        self.handle.enter(StoreOp::CountPrunable).await?;
        self.inner.count_prunable(cutoff).await
    }

    // `find_by_digest_ready` keeps its default (`None`): every lookup goes through
    // `find_by_digest`, where the faults are.
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    #[tokio::test]
    async fn passes_through_counts_and_fails_on_demand() {
        let (store, faults) = FaultyStore::new(MemoryStore::new());
        let id = TokenId::new("x").unwrap();
        assert!(store.get(&id).await.unwrap().is_none());
        faults.set(Fault::Error);
        assert!(matches!(store.get(&id).await, Err(StoreError::Backend(_))));
        assert!(matches!(
            store.touch(&id, Utc::now()).await,
            Err(StoreError::Backend(_))
        ));
        let digest = Digest::from_bytes([7; 32]);
        assert!(matches!(
            store.find_by_digest(&digest).await,
            Err(StoreError::Backend(_))
        ));
        faults.set(Fault::Timeout(Duration::from_millis(1)));
        assert!(matches!(
            store.delete(&id).await,
            Err(StoreError::Backend(_))
        ));
        faults.set(Fault::None);
        assert!(!store.delete(&id).await.unwrap());
        assert_eq!(faults.calls(StoreOp::Get), 2);
        assert_eq!(faults.calls(StoreOp::Delete), 2);
        assert_eq!(faults.calls(StoreOp::FindByDigest), 1);
        assert_eq!(faults.total_calls(), 6);
        assert_eq!(faults.injected(), 4);
        faults.reset_counts();
        assert_eq!(faults.total_calls(), 0);
    }

    #[tokio::test]
    async fn hang_stays_pending() {
        let (store, faults) = FaultyStore::new(MemoryStore::new());
        faults.set(Fault::Hang);
        let id = TokenId::new("x").unwrap();
        let r = tokio::time::timeout(Duration::from_millis(20), store.get(&id)).await;
        assert!(r.is_err(), "a hanging store must not answer");
        assert_eq!(faults.injected(), 1);
    }
}
