//! The in-memory store.

use std::borrow::Borrow;
use std::collections::{BTreeSet, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Cursor, Page, PageRequest, TokenFilter, TokenStore};
use crate::error::StoreError;
use crate::record::TokenRecord;
use crate::scope::ScopeSet;
use crate::token::TokenId;

/// A [`TokenStore`] in process memory: for tests, development and single-process services
/// that can afford to lose their tokens on restart.
///
/// Safe under concurrency (one lock, never held across an `.await`); compare-and-swap
/// updates lose nothing. Identical scope sets are shared between records to keep memory per
/// token small (the pool of distinct scope sets is never shrunk).
#[derive(Default)]
pub struct MemoryStore {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Records, hashed by id (the id lives only in the record).
    records: HashSet<Entry>,
    /// `(created_at, id)` in ascending order; listings walk it backwards.
    order: BTreeSet<(DateTime<Utc>, TokenId)>,
    /// Interned scope sets.
    scope_sets: HashSet<ScopeSet>,
}

/// A record in the id-hashed set: equality and hash are those of its id.
struct Entry(Arc<TokenRecord>);

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for Entry {}

impl Hash for Entry {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.id.hash(state)
    }
}

impl Borrow<TokenId> for Entry {
    fn borrow(&self) -> &TokenId {
        &self.0.id
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.read().records.len()
    }

    /// `true` if the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.read().records.is_empty()
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-updated (every mutation is
        // a single insert/remove), so a poisoned lock is safe to keep using.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("records", &self.len())
            .finish()
    }
}

impl Inner {
    fn intern(&mut self, record: &TokenRecord) -> TokenRecord {
        let mut r = record.clone();
        match self.scope_sets.get(&record.scopes) {
            Some(shared) => r.scopes = shared.clone(),
            None => {
                self.scope_sets.insert(record.scopes.clone());
            }
        }
        r.name.shrink_to_fit();
        r.description.shrink_to_fit();
        r.owner.shrink_to_fit();
        r.created_by.shrink_to_fit();
        r
    }
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn insert(&self, record: &TokenRecord) -> Result<(), StoreError> {
        let mut inner = self.write();
        if inner.records.contains(&record.id) {
            return Err(StoreError::AlreadyExists);
        }
        let r = inner.intern(record);
        inner.order.insert((r.created_at, r.id.clone()));
        inner.records.insert(Entry(Arc::new(r)));
        Ok(())
    }

    async fn get(&self, id: &TokenId) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        Ok(self.read().records.get(id).map(|e| Arc::clone(&e.0)))
    }

    async fn update(&self, record: &TokenRecord) -> Result<u64, StoreError> {
        let mut inner = self.write();
        let stored = inner
            .records
            .get(&record.id)
            .map(|e| Arc::clone(&e.0))
            .ok_or(StoreError::NotFound)?;
        if stored.version != record.version {
            return Err(StoreError::Conflict);
        }
        let mut r = inner.intern(record);
        r.version = record.version + 1;
        r.last_used_at = r.last_used_at.max(stored.last_used_at);
        if r.created_at != stored.created_at {
            inner.order.remove(&(stored.created_at, stored.id.clone()));
            inner.order.insert((r.created_at, r.id.clone()));
        }
        let version = r.version;
        inner.records.replace(Entry(Arc::new(r)));
        Ok(version)
    }

    async fn delete(&self, id: &TokenId) -> Result<bool, StoreError> {
        let mut inner = self.write();
        match inner.records.take(id) {
            Some(Entry(r)) => {
                inner.order.remove(&(r.created_at, r.id.clone()));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn list(&self, filter: &TokenFilter, page: &PageRequest) -> Result<Page, StoreError> {
        let limit = page.effective_limit();
        let inner = self.read();
        let upper = match &page.after {
            Some(Cursor { created_at, id }) => std::ops::Bound::Excluded((*created_at, id.clone())),
            None => std::ops::Bound::Unbounded,
        };
        let mut items = Vec::with_capacity(limit.min(64));
        let mut more = false;
        for (_, id) in inner.order.range((std::ops::Bound::Unbounded, upper)).rev() {
            let Some(r) = inner.records.get(id) else {
                continue;
            };
            if !filter.matches(&r.0) {
                continue;
            }
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(TokenRecord::clone(&r.0));
        }
        Ok(Page::new(items, more))
    }

    async fn touch(&self, id: &TokenId, at: DateTime<Utc>) -> Result<(), StoreError> {
        let mut inner = self.write();
        let due = inner
            .records
            .get(id)
            .is_some_and(|e| e.0.last_used_at.is_none_or(|t| t < at));
        if due {
            if let Some(Entry(mut r)) = inner.records.take(id) {
                Arc::make_mut(&mut r).last_used_at = Some(at);
                inner.records.insert(Entry(r));
            }
        }
        Ok(())
    }
}
