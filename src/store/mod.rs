//! The [`TokenStore`] trait, the types of its list API, and picking a SQL store by URL. The
//! stores themselves ([`MemoryStore`](crate::MemoryStore), and `SqliteStore` / `PostgresStore` with their
//! features) are at the crate root.
//!
//! A store keeps [`TokenRecord`]s. It never sees a plaintext token. Each method's doc
//! comment is its contract; `keygate::testing` (feature `test-util`) has one conformance
//! case per sentence, and every store in this crate runs it.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::digest::Digest;
use crate::error::{Error, StoreError};
use crate::record::{TokenRecord, TokenStatus};
use crate::scope::{ProjectId, Projects, Scope, ScopeSet};
use crate::token::TokenId;

pub(crate) mod memory;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod outage;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
mod prune;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;

#[cfg(feature = "postgres")]
pub use postgres::ListenerHandle;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::{SqlStore, connect};

/// Persistent storage for token records.
///
/// Object safe: `Arc<dyn TokenStore>` works, and `Arc<S>` / `Box<S>` of a store are stores.
/// Implementations must be safe to call from many tasks at once.
///
/// A store that wraps another (to add logging, faults, a backend switch) forwards every
/// method, the provided ones too: a provided method it leaves to its default answers for
/// the wrapper, not for the wrapped store (a wrapper that does not forward
/// [`claim_key_fingerprint`](Self::claim_key_fingerprint) turns the server-key check off).
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Stores a new record exactly as given.
    ///
    /// Returns `Err(StoreError::AlreadyExists)` if a record with the same id exists; the
    /// existing record is left unchanged.
    async fn insert(&self, record: &TokenRecord) -> Result<(), StoreError>;

    /// Returns the record with this id, equal to what was last written.
    ///
    /// Returns `Ok(None)` if there is no record with this id.
    async fn get(&self, id: &TokenId) -> Result<Option<Arc<TokenRecord>>, StoreError>;

    /// Returns the record whose current digest (`record.digest.digest`) or one of whose
    /// retired digests (`record.retired`, kept after rotations whatever their
    /// `valid_until`) equals `digest`, equal to what was last written. The key version is
    /// not compared.
    ///
    /// Returns `Ok(None)` if no record holds this digest. Verification finds tokens this way,
    /// so that an unknown id and a wrong secret are the same miss; a store should answer from
    /// an index on every digest, since a scan makes every verification linear in the number
    /// of tokens. Digests are keyed hashes (uniformly distributed, unique in practice); if
    /// several records hold the same digest, any one of them may be returned.
    async fn find_by_digest(&self, digest: &Digest)
    -> Result<Option<Arc<TokenRecord>>, StoreError>;

    /// [`find_by_digest`](Self::find_by_digest) answered at once, without a future, by a
    /// store that holds its records in memory: `Some` with exactly the answer
    /// `find_by_digest` would give, or `None` (the default) when `find_by_digest` must be
    /// asked.
    ///
    /// Verification asks this first, so that a lookup in memory allocates nothing (the
    /// future of an `#[async_trait]` method is boxed). A store that waits for anything (a
    /// connection, a lock held across I/O) keeps the default. The conformance suite checks
    /// that a store answering `Some` answers as `find_by_digest` does.
    fn find_by_digest_ready(
        &self,
        digest: &Digest,
    ) -> Option<Result<Option<Arc<TokenRecord>>, StoreError>> {
        let _ = digest;
        None
    }

    /// Compare-and-swap: replaces the stored record by `record` if the stored version equals
    /// `record.version`, stores it with version `record.version + 1` and returns that
    /// new version.
    ///
    /// Returns `Err(StoreError::Conflict)` if the stored version differs, leaving the stored
    /// record unchanged. Returns `Err(StoreError::NotFound)` if there is no record with this
    /// id. The stored `last_used_at` never moves backwards: if it is later than
    /// `record.last_used_at`, it is kept.
    async fn update(&self, record: &TokenRecord) -> Result<u64, StoreError>;

    /// Removes the record with this id.
    ///
    /// Returns `Ok(true)` if a record was removed and `Ok(false)` if there was none.
    async fn delete(&self, id: &TokenId) -> Result<bool, StoreError>;

    /// Returns the records matching `filter` (as [`TokenFilter::matches`] defines), newest
    /// first: by `created_at` descending, then by id descending.
    ///
    /// Returns at most `page.limit` records, all of them strictly after `page.after` in that
    /// order when a cursor is given. `Page::next` is `Some` if and only if more matching
    /// records follow, and passing it back continues the listing without skipping or
    /// repeating a record, even when records were inserted in between.
    async fn list(&self, filter: &TokenFilter, page: &PageRequest) -> Result<Page, StoreError>;

    /// Records a use: sets `last_used_at` to `at` if the stored value is absent or earlier.
    ///
    /// Never moves `last_used_at` backwards, and changes neither `version` nor `updated_at`.
    /// Returns `Ok(())` if there is no record with this id.
    async fn touch(&self, id: &TokenId, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Keeps `fingerprint` as the fingerprint of server-key version `key_version` unless
    /// one is kept already, and returns the one kept afterwards: `fingerprint` the first
    /// time, the first one ever given after that (an insert-if-absent; two instances racing
    /// agree on one).
    ///
    /// Returns `Ok(None)` if the store keeps no fingerprints: the default, for stores
    /// written before this method; [`TokenManager::check_server_keys`] then checks nothing.
    ///
    /// [`TokenManager::check_server_keys`]: crate::TokenManager::check_server_keys
    async fn claim_key_fingerprint(
        &self,
        key_version: u32,
        fingerprint: &Digest,
    ) -> Result<Option<Digest>, StoreError> {
        let _ = (key_version, fingerprint);
        Ok(None)
    }

    /// Deletes at most `limit` records that are prunable at `cutoff` (as
    /// [`TokenRecord::is_prunable`] defines) and returns how many it deleted.
    ///
    /// Returns `Ok(0)` if no record is prunable (or `limit` is 0). Never deletes a record that
    /// is not prunable. A deleted record is gone entirely, as after
    /// [`delete`](Self::delete): `get` and `find_by_digest` no longer find it. Callers delete
    /// in batches by calling again until fewer than `limit` were deleted, so that a store can
    /// do each call as one short transaction.
    ///
    /// The default implementation walks [`list`](Self::list) and calls
    /// [`delete`](Self::delete) per record (correct for any store, not atomic per batch, and
    /// linear in the number of records); the stores in this crate override it with one
    /// transaction per call.
    async fn prune(&self, cutoff: DateTime<Utc>, limit: u64) -> Result<u64, StoreError> {
        if limit == 0 {
            return Ok(0);
        }
        let mut ids = Vec::new();
        let mut page = PageRequest::first(MAX_PAGE_LIMIT);
        'walk: loop {
            let found = self.list(&TokenFilter::new(), &page).await?;
            for r in &found.items {
                if r.is_prunable(cutoff) {
                    ids.push(r.id.clone());
                    if ids.len() as u64 == limit {
                        break 'walk;
                    }
                }
            }
            match found.next {
                Some(next) => page = page.next(next),
                None => break,
            }
        }
        let mut deleted = 0;
        for id in &ids {
            if self.delete(id).await? {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Returns how many records are prunable at `cutoff` (as [`TokenRecord::is_prunable`]
    /// defines): what [`prune`](Self::prune) calls would delete if nothing changed meanwhile.
    ///
    /// The default implementation walks [`list`](Self::list).
    async fn count_prunable(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut count = 0;
        let mut page = PageRequest::first(MAX_PAGE_LIMIT);
        loop {
            let found = self.list(&TokenFilter::new(), &page).await?;
            count += found.items.iter().filter(|r| r.is_prunable(cutoff)).count() as u64;
            match found.next {
                Some(next) => page = page.next(next),
                None => return Ok(count),
            }
        }
    }
}

/// The boxed future every [`TokenStore`] method returns (what `#[async_trait]` expands to).
type StoreFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 'a>>;

// Smart pointers to a store are stores. The methods hand back the inner store's future as it
// is (no second box, no extra poll layer), so `Arc<S>` costs nothing over `S`.
macro_rules! forward_store {
    ($ty:ty) => {
        impl<S: TokenStore + ?Sized> TokenStore for $ty {
            fn insert<'a, 'b, 'f>(&'a self, record: &'b TokenRecord) -> StoreFuture<'f, ()>
            where
                'a: 'f,
                'b: 'f,
                Self: 'f,
            {
                (**self).insert(record)
            }
            fn get<'a, 'b, 'f>(
                &'a self,
                id: &'b TokenId,
            ) -> StoreFuture<'f, Option<Arc<TokenRecord>>>
            where
                'a: 'f,
                'b: 'f,
                Self: 'f,
            {
                (**self).get(id)
            }
            fn find_by_digest<'a, 'b, 'f>(
                &'a self,
                digest: &'b Digest,
            ) -> StoreFuture<'f, Option<Arc<TokenRecord>>>
            where
                'a: 'f,
                'b: 'f,
                Self: 'f,
            {
                (**self).find_by_digest(digest)
            }
            fn find_by_digest_ready(
                &self,
                digest: &Digest,
            ) -> Option<Result<Option<Arc<TokenRecord>>, StoreError>> {
                (**self).find_by_digest_ready(digest)
            }
            fn update<'a, 'b, 'f>(&'a self, record: &'b TokenRecord) -> StoreFuture<'f, u64>
            where
                'a: 'f,
                'b: 'f,
                Self: 'f,
            {
                (**self).update(record)
            }
            fn delete<'a, 'b, 'f>(&'a self, id: &'b TokenId) -> StoreFuture<'f, bool>
            where
                'a: 'f,
                'b: 'f,
                Self: 'f,
            {
                (**self).delete(id)
            }
            fn list<'a, 'b, 'c, 'f>(
                &'a self,
                filter: &'b TokenFilter,
                page: &'c PageRequest,
            ) -> StoreFuture<'f, Page>
            where
                'a: 'f,
                'b: 'f,
                'c: 'f,
                Self: 'f,
            {
                (**self).list(filter, page)
            }
            fn touch<'a, 'b, 'f>(
                &'a self,
                id: &'b TokenId,
                at: DateTime<Utc>,
            ) -> StoreFuture<'f, ()>
            where
                'a: 'f,
                'b: 'f,
                Self: 'f,
            {
                (**self).touch(id, at)
            }
            fn claim_key_fingerprint<'a, 'b, 'f>(
                &'a self,
                key_version: u32,
                fingerprint: &'b Digest,
            ) -> StoreFuture<'f, Option<Digest>>
            where
                'a: 'f,
                'b: 'f,
                Self: 'f,
            {
                (**self).claim_key_fingerprint(key_version, fingerprint)
            }

            fn prune<'a, 'f>(&'a self, cutoff: DateTime<Utc>, limit: u64) -> StoreFuture<'f, u64>
            where
                'a: 'f,
                Self: 'f,
            {
                (**self).prune(cutoff, limit)
            }
            fn count_prunable<'a, 'f>(&'a self, cutoff: DateTime<Utc>) -> StoreFuture<'f, u64>
            where
                'a: 'f,
                Self: 'f,
            {
                (**self).count_prunable(cutoff)
            }
        }
    };
}

forward_store!(Arc<S>);
forward_store!(Box<S>);

/// Which records to list. Every set field must match; an empty filter matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct TokenFilter {
    /// The name contains this text, ignoring ASCII case.
    pub name_contains: Option<String>,
    /// The owner is exactly this.
    pub owner: Option<String>,
    /// The creator is exactly this.
    pub created_by: Option<String>,
    /// The status is this.
    pub status: Option<TokenStatus>,
    /// The token has an expiry, strictly before this instant.
    pub expires_before: Option<DateTime<Utc>>,
    /// The token expires strictly after this instant, or never.
    pub expires_after: Option<DateTime<Utc>>,
    /// The token may act on this project (it has all projects, or this one among them).
    pub project: Option<ProjectId>,
    /// The token holds exactly this scope string (not merely a wildcard that grants it).
    pub scope: Option<Scope>,
    /// The current secret's digest is under this server-key version: the tokens that stop
    /// verifying if that key is dropped from the keyring (a rotated-out secret still in its
    /// grace period is not counted: dropping its key ends that grace early).
    pub key_version: Option<u32>,
    /// Only tokens within this reach: what an acting token could have created itself
    /// (set by [`TokenManager::acting_as`](crate::TokenManager::acting_as) listings).
    pub within: Option<Reach>,
}

/// The tokens an acting token may see and manage: those it could have created itself.
///
/// A record is within reach when its owner is [`owner`](Self::owner) (any owner when
/// `None`), every one of its scopes is granted by [`scopes`](Self::scopes) (as
/// [`ScopeSet::grants_all`] says, wildcards included), and its projects are covered by
/// [`projects`](Self::projects) ([`Projects::covers`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Reach {
    /// Only this owner's tokens; `None`: every owner's.
    pub owner: Option<String>,
    /// Only tokens whose every scope this set grants.
    pub scopes: ScopeSet,
    /// Only tokens whose projects this covers.
    pub projects: Projects,
}

impl Reach {
    /// A reach of exactly these bounds.
    pub fn new(owner: Option<String>, scopes: ScopeSet, projects: Projects) -> Self {
        Reach {
            owner,
            scopes,
            projects,
        }
    }

    /// Is `r` within this reach?
    pub fn contains(&self, r: &TokenRecord) -> bool {
        self.owner.as_ref().is_none_or(|o| *o == r.owner)
            && self.scopes.grants_all(&r.scopes)
            && self.projects.covers(&r.projects)
    }
}

impl TokenFilter {
    /// An empty filter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`name_contains`](Self::name_contains).
    pub fn name_contains(mut self, text: impl Into<String>) -> Self {
        self.name_contains = Some(text.into());
        self
    }

    /// Sets [`owner`](Self::owner).
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// Sets [`created_by`](Self::created_by).
    pub fn created_by(mut self, creator: impl Into<String>) -> Self {
        self.created_by = Some(creator.into());
        self
    }

    /// Sets [`status`](Self::status).
    pub fn status(mut self, status: TokenStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Sets [`expires_before`](Self::expires_before).
    pub fn expires_before(mut self, at: DateTime<Utc>) -> Self {
        self.expires_before = Some(at);
        self
    }

    /// Sets [`expires_after`](Self::expires_after).
    pub fn expires_after(mut self, at: DateTime<Utc>) -> Self {
        self.expires_after = Some(at);
        self
    }

    /// Sets [`project`](Self::project).
    pub fn project(mut self, project: ProjectId) -> Self {
        self.project = Some(project);
        self
    }

    /// Sets [`scope`](Self::scope).
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = Some(scope);
        self
    }

    /// Sets [`key_version`](Self::key_version).
    pub fn key_version(mut self, version: u32) -> Self {
        self.key_version = Some(version);
        self
    }

    /// Sets [`within`](Self::within).
    pub fn within(mut self, reach: Reach) -> Self {
        self.within = Some(reach);
        self
    }

    /// The reference semantics of the filter, which every store must follow.
    pub fn matches(&self, r: &TokenRecord) -> bool {
        if let Some(text) = &self.name_contains {
            if !contains_ignore_ascii_case(&r.name, text) {
                return false;
            }
        }
        if self.owner.as_ref().is_some_and(|o| *o != r.owner) {
            return false;
        }
        if self.created_by.as_ref().is_some_and(|c| *c != r.created_by) {
            return false;
        }
        if self.status.is_some_and(|s| s != r.status) {
            return false;
        }
        if let Some(before) = self.expires_before {
            if r.expiry.at().is_none_or(|at| at >= before) {
                return false;
            }
        }
        if let Some(after) = self.expires_after {
            if r.expiry.at().is_some_and(|at| at <= after) {
                return false;
            }
        }
        if self.project.as_ref().is_some_and(|p| !r.projects.allows(p)) {
            return false;
        }
        if self.scope.as_ref().is_some_and(|s| !r.scopes.contains(s)) {
            return false;
        }
        if self.key_version.is_some_and(|v| v != r.digest.key_version) {
            return false;
        }
        self.within.as_ref().is_none_or(|w| w.contains(r))
    }
}

fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// Default page size.
pub const DEFAULT_PAGE_LIMIT: usize = 50;
/// Largest page size.
pub const MAX_PAGE_LIMIT: usize = 1000;

/// A position in a listing: the `(created_at, id)` of the last record of a page.
///
/// Its string form is opaque to clients and round-trips through [`Display`](fmt::Display)
/// and [`FromStr`](std::str::FromStr). It is exactly [`Cursor::PATTERN`]: `{micros}.{id}`,
/// the microseconds since the Unix epoch (at most 18 digits, so always a representable
/// instant) and the token id; anything else is refused.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// `created_at` of the last record returned.
    pub created_at: DateTime<Utc>,
    /// id of the last record returned.
    pub id: TokenId,
}

impl Cursor {
    /// The regular expression of the string form (for API documents).
    pub const PATTERN: &'static str = r"^-?[0-9]{1,18}\.[a-z0-9_-]{1,64}$";

    /// The cursor that continues after `record`.
    pub fn after(record: &TokenRecord) -> Self {
        Cursor {
            created_at: record.created_at,
            id: record.id.clone(),
        }
    }

    /// Is `record` strictly after this cursor in newest-first order?
    pub fn precedes(&self, record: &TokenRecord) -> bool {
        (record.created_at, &record.id) < (self.created_at, &self.id)
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.created_at.timestamp_micros(), self.id)
    }
}

impl std::str::FromStr for Cursor {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::InvalidField {
            field: "cursor",
            reason: "not a cursor returned by a listing",
        };
        let (micros, id) = s.split_once('.').ok_or_else(bad)?;
        let digits = micros.strip_prefix('-').unwrap_or(micros);
        if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let micros: i64 = micros.parse().map_err(|_| bad())?;
        let created_at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
        let id = TokenId::new(id).map_err(|_| bad())?;
        Ok(Cursor { created_at, id })
    }
}

#[cfg(feature = "serde")]
mod serde_impls {
    use super::Cursor;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// The cursor's opaque string form.
    impl Serialize for Cursor {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(self)
        }
    }
    impl<'de> Deserialize<'de> for Cursor {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        }
    }
}

/// One page request: how many records, and where to continue.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct PageRequest {
    /// At most this many records (1..=1000; out-of-range values are clamped).
    pub limit: usize,
    /// Continue after this cursor (from [`Page::next`]).
    pub after: Option<Cursor>,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest {
            limit: DEFAULT_PAGE_LIMIT,
            after: None,
        }
    }
}

impl PageRequest {
    /// The first page with `limit` records.
    pub fn first(limit: usize) -> Self {
        PageRequest { limit, after: None }
    }

    /// The page after `cursor`, keeping the limit.
    pub fn next(&self, cursor: Cursor) -> Self {
        PageRequest {
            limit: self.limit,
            after: Some(cursor),
        }
    }

    /// The limit clamped to 1..=1000.
    pub fn effective_limit(&self) -> usize {
        self.limit.clamp(1, MAX_PAGE_LIMIT)
    }
}

/// A page of a listing.
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Page {
    /// The records, newest first.
    pub items: Vec<TokenRecord>,
    /// Where the next page starts, if more records follow.
    pub next: Option<Cursor>,
}

impl Page {
    /// A page of `items` (newest first); `more` tells whether further matching records
    /// follow, in which case [`next`](Self::next) continues after the last item.
    pub fn new(items: Vec<TokenRecord>, more: bool) -> Self {
        let next = if more {
            items.last().map(Cursor::after)
        } else {
            None
        };
        Page { items, next }
    }
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    /// The string form is exactly `Cursor::PATTERN`, and round-trips.
    #[test]
    fn cursors_parse_exactly_their_pattern() {
        let c: Cursor = "1764000000123456.ci-deploy".parse().unwrap();
        assert_eq!(c.to_string(), "1764000000123456.ci-deploy");
        assert_eq!(c.id.as_str(), "ci-deploy");
        for ok in [
            "0.a",
            "-5.a_b",
            "999999999999999999.x",
            "-999999999999999999.x",
        ] {
            let c: Cursor = ok.parse().unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(c.to_string().parse::<Cursor>().unwrap(), c);
        }
        for bad in [
            "",
            ".",
            "1.",
            ".a",
            "+1.a",
            "1 .a",
            " 1.a",
            "1.a ",
            "1.A",
            "1.a.b",
            "1234567890123456789.a",
            "--1.a",
            "-.a",
            "1e3.a",
            "١.a",
        ] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad:?} parsed");
        }
    }
}
