//! The optional verification cache of [`TokenManager`](crate::TokenManager).
//!
//! It keeps records of tokens that verified successfully (positive entries only: an unknown
//! token or a failure is never cached) for at most its TTL, so a hot token costs no store
//! round trip. Entries are keyed by the digest of the presented token, as the store is, so
//! an unknown id and a wrong secret miss the cache alike. The constant-time digest
//! comparison, status and expiry checks still run on every request against the cached
//! record.
//!
//! Bound on staleness: a change made through the same manager (revoke, disable, rotate,
//! update, delete) removes the entry at once. A change made elsewhere (another instance, the
//! command line) is seen once the entry's TTL has passed (default 5 s, at most 60 s), or
//! sooner when something calls [`TokenManager::invalidate`](crate::TokenManager::invalidate),
//! as the PostgreSQL store's LISTEN/NOTIFY listener does. An entry within its TTL is served
//! also while the store is down (the same bound; see `store::outage` for the SQL stores); an
//! expired entry is never served, not even when the store fails.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::digest::Digest;
use crate::error::Error;
use crate::record::TokenRecord;
use crate::token::TokenId;

/// Default time-to-live of a cache entry.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(5);
/// Longest TTL accepted.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(60);
/// Default number of entries.
pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;

/// Settings of the verification cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct CacheConfig {
    ttl: Duration,
    capacity: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl: DEFAULT_CACHE_TTL,
            capacity: DEFAULT_CACHE_CAPACITY,
        }
    }
}

impl CacheConfig {
    /// A cache with the default TTL (5 s) and capacity (100,000 entries).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the TTL: more than zero, at most 60 s.
    pub fn ttl(mut self, ttl: Duration) -> Result<Self, Error> {
        if ttl.is_zero() || ttl > MAX_CACHE_TTL {
            return Err(Error::InvalidConfig("cache TTL must be in (0, 60 s]"));
        }
        self.ttl = ttl;
        Ok(self)
    }

    /// Sets the most entries kept (at least 1). When full, expired entries are dropped; if
    /// it is still full, new entries are not cached.
    pub fn capacity(mut self, capacity: usize) -> Result<Self, Error> {
        if capacity == 0 {
            return Err(Error::InvalidConfig("cache capacity must be at least 1"));
        }
        self.capacity = capacity;
        Ok(self)
    }

    /// The TTL.
    pub fn time_to_live(&self) -> Duration {
        self.ttl
    }
}

pub(crate) struct VerifyCache {
    config: CacheConfig,
    entries: RwLock<Entries>,
    /// Bumped by every invalidation. A record read before an invalidation is not cached
    /// after it, so a verification racing with a revoke cannot re-insert the old record.
    epoch: AtomicU64,
}

#[derive(Default)]
struct Entries {
    /// By the digest the record was found with (current or previous secret).
    by_digest: HashMap<[u8; 32], (Arc<TokenRecord>, Instant)>,
    /// The digests cached for each id, to invalidate by id.
    by_id: HashMap<TokenId, Vec<[u8; 32]>>,
}

impl Entries {
    fn retain_fresh(&mut self, ttl: Duration) {
        self.by_digest.retain(|_, (_, at)| at.elapsed() < ttl);
        let by_digest = &self.by_digest;
        self.by_id.retain(|_, ds| {
            ds.retain(|d| by_digest.contains_key(d));
            !ds.is_empty()
        });
    }
}

impl VerifyCache {
    pub(crate) fn new(config: CacheConfig) -> Self {
        VerifyCache {
            config,
            entries: RwLock::new(Entries::default()),
            epoch: AtomicU64::new(0),
        }
    }

    /// The invalidation epoch; capture it before reading the store.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// A fresh entry for this digest, if any. Expired entries are never returned.
    pub(crate) fn get(&self, digest: &Digest) -> Option<Arc<TokenRecord>> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let (record, at) = entries.by_digest.get(digest.as_bytes())?;
        (at.elapsed() < self.config.ttl).then(|| Arc::clone(record))
    }

    /// Caches a record that just verified with `digest`, read from the store at `fetched`
    /// in `epoch`.
    pub(crate) fn insert(
        &self,
        digest: Digest,
        record: Arc<TokenRecord>,
        fetched: Instant,
        epoch: u64,
    ) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        let key = *digest.as_bytes();
        if entries.by_digest.len() >= self.config.capacity && !entries.by_digest.contains_key(&key)
        {
            entries.retain_fresh(self.config.ttl);
            if entries.by_digest.len() >= self.config.capacity {
                return;
            }
        }
        let ids = entries.by_id.entry(record.id.clone()).or_default();
        if !ids.contains(&key) {
            ids.push(key);
        }
        entries.by_digest.insert(key, (record, fetched));
    }

    pub(crate) fn remove(&self, id: &TokenId) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for d in entries.by_id.remove(id).unwrap_or_default() {
            entries.by_digest.remove(&d);
        }
    }

    pub(crate) fn clear(&self) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        self.epoch.fetch_add(1, Ordering::AcqRel);
        entries.by_digest.clear();
        entries.by_id.clear();
    }
}
