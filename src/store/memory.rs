//! The in-memory store.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Cursor, Page, PageRequest, TokenFilter, TokenStore};
use crate::digest::Digest;
use crate::error::StoreError;
use crate::record::TokenRecord;
use crate::scope::ScopeSet;
use crate::token::TokenId;

/// A [`TokenStore`] in process memory: for tests, development and single-process services
/// that can afford to lose their tokens on restart.
///
/// Safe under concurrency (one lock, never held across an `.await`); compare-and-swap
/// updates lose nothing. Identical scope sets are shared between records to keep memory per
/// token small (the pool of distinct scope sets is never shrunk). Records are indexed by id
/// and by digest (current and retired): the digest index is a table of pointers to the
/// records, a few bytes per digest.
#[derive(Default)]
pub struct MemoryStore {
    inner: RwLock<Inner>,
}

struct Inner {
    /// Records, hashed by id (the id lives only in the record).
    records: HashSet<Entry>,
    /// The same records, hashed by their current and retired digests.
    digests: DigestIndex,
    /// The same records by `(created_at, id)`, ascending; listings walk it backwards.
    order: BTreeSet<Ordered>,
    /// Interned scope sets.
    scope_sets: HashSet<ScopeSet>,
    /// Server-key fingerprints by key version.
    fingerprints: BTreeMap<u32, Digest>,
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

/// What the listing order compares: `(created_at, id)`. Records and cursors have it, so a
/// cursor finds its place in the order without a record being built.
trait OrderKey {
    fn order_key(&self) -> (DateTime<Utc>, &str);
}

impl OrderKey for TokenRecord {
    fn order_key(&self) -> (DateTime<Utc>, &str) {
        (self.created_at, self.id.as_str())
    }
}

impl OrderKey for Cursor {
    fn order_key(&self) -> (DateTime<Utc>, &str) {
        (self.created_at, self.id.as_str())
    }
}

impl PartialEq for dyn OrderKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.order_key() == other.order_key()
    }
}

impl Eq for dyn OrderKey + '_ {}

impl PartialOrd for dyn OrderKey + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn OrderKey + '_ {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order_key().cmp(&other.order_key())
    }
}

/// A record in the listing order: a pointer, ordered by the record's `(created_at, id)`.
struct Ordered(Arc<TokenRecord>);

impl Ordered {
    fn key(&self) -> &(dyn OrderKey + 'static) {
        &*self.0
    }
}

impl Borrow<dyn OrderKey> for Ordered {
    fn borrow(&self) -> &(dyn OrderKey + 'static) {
        self.key()
    }
}

impl PartialEq for Ordered {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Ordered {}

impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ordered {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(other.key())
    }
}

/// Records hashed by their digests: the current one (slot 0) and each retired one (slot
/// `i + 1` for `retired[i]`). Several records may hold the same digest (a store takes
/// whatever records it is given), so entries are told apart by identity and slot.
struct DigestIndex {
    table: hashbrown::HashTable<(Arc<TokenRecord>, u8)>,
    hasher: RandomState,
}

/// The digest a record holds in `slot`.
fn digest_at(record: &TokenRecord, slot: u8) -> Option<&Digest> {
    match slot {
        0 => Some(&record.digest.digest),
        n => record
            .retired
            .get(usize::from(n) - 1)
            .map(|r| &r.digest.digest),
    }
}

/// The slots a record fills: its current digest and each retired one.
fn slots(record: &TokenRecord) -> impl Iterator<Item = u8> {
    // A record keeps at most `MAX_RETIRED_SECRETS` (8) retired digests; a store is given
    // what it is given, so more are indexed too, up to what a slot number holds.
    (0..=record.retired.len().min(usize::from(u8::MAX) - 1)).map(|n| n as u8)
}

impl DigestIndex {
    fn new() -> Self {
        DigestIndex {
            table: hashbrown::HashTable::new(),
            hasher: RandomState::new(),
        }
    }

    fn hash(&self, digest: &Digest) -> u64 {
        self.hasher.hash_one(digest.as_bytes())
    }

    fn find(&self, digest: &Digest) -> Option<&Arc<TokenRecord>> {
        // Byte equality, not constant time: the digest is a keyed hash of the presented
        // token, so where it first differs from a stored one says nothing about a secret.
        self.table
            .find(self.hash(digest), |(r, slot)| {
                digest_at(r, *slot).is_some_and(|d| d.as_bytes() == digest.as_bytes())
            })
            .map(|(r, _)| r)
    }

    fn insert(&mut self, record: &Arc<TokenRecord>) {
        for slot in slots(record) {
            if let Some(d) = digest_at(record, slot) {
                let hasher = &self.hasher;
                let hash = self.hash(d);
                self.table
                    .insert_unique(hash, (Arc::clone(record), slot), |(r, slot)| {
                        digest_at(r, *slot).map_or(0, |d| hasher.hash_one(d.as_bytes()))
                    });
            }
        }
    }

    fn remove(&mut self, record: &Arc<TokenRecord>) {
        for slot in slots(record) {
            if let Some(d) = digest_at(record, slot) {
                if let Ok(entry) = self
                    .table
                    .find_entry(self.hash(d), |(r, s)| *s == slot && Arc::ptr_eq(r, record))
                {
                    entry.remove();
                }
            }
        }
    }
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            records: HashSet::new(),
            digests: DigestIndex::new(),
            order: BTreeSet::new(),
            scope_sets: HashSet::new(),
            fingerprints: BTreeMap::new(),
        }
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
    /// Adds a record to every index. Each holds a pointer to the one copy of the record.
    fn link(&mut self, record: Arc<TokenRecord>) {
        self.digests.insert(&record);
        self.order.insert(Ordered(Arc::clone(&record)));
        self.records.insert(Entry(record));
    }

    /// Removes the record with this id from every index.
    fn unlink(&mut self, id: &TokenId) -> Option<Arc<TokenRecord>> {
        let Entry(r) = self.records.take(id)?;
        self.digests.remove(&r);
        self.order.remove(&*r as &dyn OrderKey);
        Some(r)
    }

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
        inner.link(Arc::new(r));
        Ok(())
    }

    async fn get(&self, id: &TokenId) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        Ok(self.read().records.get(id).map(|e| Arc::clone(&e.0)))
    }

    async fn find_by_digest(
        &self,
        digest: &Digest,
    ) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        let inner = self.read();
        Ok(inner.digests.find(digest).map(Arc::clone))
    }

    fn find_by_digest_ready(
        &self,
        digest: &Digest,
    ) -> Option<Result<Option<Arc<TokenRecord>>, StoreError>> {
        let inner = self.read();
        Some(Ok(inner.digests.find(digest).map(Arc::clone)))
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
        let version = r.version;
        inner.unlink(&record.id);
        inner.link(Arc::new(r));
        Ok(version)
    }

    async fn delete(&self, id: &TokenId) -> Result<bool, StoreError> {
        let mut inner = self.write();
        Ok(inner.unlink(id).is_some())
    }

    /// Finds the batch under the read lock (a scan of every record), then takes the write
    /// lock only to unlink it, checking each record again.
    async fn prune(&self, cutoff: DateTime<Utc>, limit: u64) -> Result<u64, StoreError> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        if limit == 0 {
            return Ok(0);
        }
        let batch: Vec<TokenId> = self
            .read()
            .records
            .iter()
            .filter(|e| e.0.is_prunable(cutoff))
            .take(limit)
            .map(|e| e.0.id.clone())
            .collect();
        let mut inner = self.write();
        let mut deleted = 0;
        for id in &batch {
            let still = inner
                .records
                .get(id)
                .is_some_and(|e| e.0.is_prunable(cutoff));
            if still && inner.unlink(id).is_some() {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    async fn count_prunable(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let inner = self.read();
        Ok(inner
            .records
            .iter()
            .filter(|e| e.0.is_prunable(cutoff))
            .count() as u64)
    }

    async fn list(&self, filter: &TokenFilter, page: &PageRequest) -> Result<Page, StoreError> {
        let limit = page.effective_limit();
        let inner = self.read();
        let upper: Bound<&dyn OrderKey> = match &page.after {
            Some(cursor) => Bound::Excluded(cursor),
            None => Bound::Unbounded,
        };
        let mut items = Vec::with_capacity(limit.min(64));
        let mut more = false;
        for r in inner
            .order
            .range::<dyn OrderKey, _>((Bound::Unbounded, upper))
            .rev()
        {
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
            if let Some(mut r) = inner.unlink(id) {
                Arc::make_mut(&mut r).last_used_at = Some(at);
                inner.link(r);
            }
        }
        Ok(())
    }

    async fn claim_key_fingerprint(
        &self,
        key_version: u32,
        fingerprint: &Digest,
    ) -> Result<Option<Digest>, StoreError> {
        let mut inner = self.write();
        Ok(Some(
            *inner
                .fingerprints
                .entry(key_version)
                .or_insert(*fingerprint),
        ))
    }
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    use super::*;
    use crate::testing::sample_record;

    /// Two records holding the same digest (a store keeps whatever it is given): each is
    /// found while it exists, and removing one leaves the other findable.
    #[tokio::test]
    async fn records_sharing_a_digest_are_indexed_apart() {
        let store = MemoryStore::new();
        let a = sample_record("o", 1, Utc::now());
        let mut b = sample_record("o", 2, Utc::now());
        b.digest = a.digest;
        store.insert(&a).await.unwrap();
        store.insert(&b).await.unwrap();
        let found = store.find_by_digest(&a.digest.digest).await.unwrap();
        assert!(found.is_some_and(|r| r.id == a.id || r.id == b.id));
        assert!(store.delete(&a.id).await.unwrap());
        let found = store.find_by_digest(&a.digest.digest).await.unwrap();
        assert_eq!(found.map(|r| r.id.clone()), Some(b.id.clone()));
        assert!(store.delete(&b.id).await.unwrap());
        assert!(
            store
                .find_by_digest(&a.digest.digest)
                .await
                .unwrap()
                .is_none()
        );
    }
}
