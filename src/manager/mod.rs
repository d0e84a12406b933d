//! [`TokenManager`]: issue, verify, rotate, enable, disable, revoke, delete, update, list.

pub mod delegation;

use delegation::Grant;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, SubsecRound, Utc};
use subtle::{Choice, ConstantTimeEq};

use crate::audit::{AuditEvent, AuditKind, AuditSink, TracingSink};
use crate::cache::{CacheConfig, VerifyCache};
use crate::digest::{Digest, Keyring, ServerKey, StoredDigest};
use crate::error::{AccessError, Error, StoreError, VerifyError};
use crate::expiry::{Clock, Expiry, ExpiryPolicy, ExpiryPreset, SystemClock};
use crate::record::{Limits, MAX_RETIRED_SECRETS, RetiredSecret, TokenRecord, TokenStatus};
use crate::scope::{ProjectId, Projects, Scope, ScopeSet};
use crate::store::{Page, PageRequest, TokenFilter, TokenStore};
use crate::token::{TokenFormat, TokenId, TokenSecret};

/// Default interval between two `last_used_at` writes for one token.
pub const DEFAULT_TOUCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
/// Ids no new token may take: the admin API's routes use them (`/self`, `/bulk`), so a token
/// with such an id could not be addressed by id.
pub const RESERVED_IDS: [&str; 2] = ["self", "bulk"];
/// The expiry of a token issued without one.
pub const DEFAULT_EXPIRY: ExpiryPreset = ExpiryPreset::Days30;
/// Longest rotation grace period accepted.
pub const MAX_ROTATION_GRACE: Duration = Duration::days(30);
/// Retries of an idempotent change (enable, disable, revoke, update) after a version conflict.
const CONFLICT_RETRIES: usize = 8;

/// Issues, verifies and manages API tokens over a [`TokenStore`].
///
/// Cheap to clone (an `Arc` inside); share one per process.
#[derive(Clone)]
pub struct TokenManager {
    inner: Arc<Inner>,
    /// Refuse changes that would leave no active `*` token (off only through
    /// [`TokenManager::allowing_no_admin`]).
    guard_admin: bool,
}

struct Inner {
    store: Arc<dyn TokenStore>,
    keyring: Keyring,
    format: TokenFormat,
    policy: ExpiryPolicy,
    clock: Arc<dyn Clock>,
    audit: Arc<dyn AuditSink>,
    touch: Toucher,
    cache: Option<VerifyCache>,
    limits: Limits,
}

impl fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenManager")
            .field("prefix", &self.inner.format.prefix())
            .field("keyring", &self.inner.keyring)
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

/// Configures a [`TokenManager`]. Start with [`TokenManager::builder`].
pub struct TokenManagerBuilder {
    store: Arc<dyn TokenStore>,
    keyring: Option<Keyring>,
    format: TokenFormat,
    policy: ExpiryPolicy,
    clock: Arc<dyn Clock>,
    audit: Arc<dyn AuditSink>,
    touch_interval: std::time::Duration,
    cache: Option<CacheConfig>,
    limits: Limits,
    error: Option<Error>,
}

impl fmt::Debug for TokenManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenManagerBuilder")
            .field("keyring", &self.keyring)
            .field("format", &self.format)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl TokenManagerBuilder {
    /// Uses a single server key as key version 1.
    pub fn server_key(mut self, key: ServerKey) -> Self {
        self.keyring = Some(Keyring::new(1, key));
        self
    }

    /// Uses a versioned keyring (for server-key rotation).
    pub fn keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// Sets the token prefix (default `kg`); see [`TokenFormat::new`] for the rules.
    pub fn prefix(mut self, prefix: &str) -> Self {
        match TokenFormat::new(prefix).and_then(|f| f.with_secret_chars(self.format.secret_chars()))
        {
            Ok(f) => self.format = f,
            Err(e) => self.error = Some(e),
        }
        self
    }

    /// Sets the whole token format (prefix and secret length).
    pub fn format(mut self, format: TokenFormat) -> Self {
        self.format = format;
        self
    }

    /// Sets the expiry policy (default: unrestricted).
    pub fn expiry_policy(mut self, policy: ExpiryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the clock (default: [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Sets the audit sink (default: [`TracingSink`]).
    pub fn audit_sink(mut self, sink: impl AuditSink) -> Self {
        self.audit = Arc::new(sink);
        self
    }

    /// Sets the minimum interval between two `last_used_at` writes per token (default 60 s).
    pub fn touch_interval(mut self, interval: std::time::Duration) -> Self {
        self.touch_interval = interval;
        self
    }

    /// Turns on the verification cache (off by default); see [`crate::cache`] for the
    /// staleness bound.
    pub fn cache(mut self, config: CacheConfig) -> Self {
        self.cache = Some(config);
        self
    }

    /// Sets the size limits (default: [`Limits::default`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Builds the manager. Fails if no server key was given or a setting was invalid.
    pub fn build(self) -> Result<TokenManager, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.limits.validate()?;
        let keyring = self.keyring.ok_or(Error::InvalidServerKey(
            "a server key is required (TokenManagerBuilder::server_key)",
        ))?;
        let interval = Duration::from_std(self.touch_interval)
            .map_err(|_| Error::InvalidConfig("touch interval out of range"))?;
        Ok(TokenManager {
            inner: Arc::new(Inner {
                store: self.store,
                keyring,
                format: self.format,
                policy: self.policy,
                clock: self.clock,
                audit: self.audit,
                touch: Toucher::new(interval),
                cache: self.cache.map(VerifyCache::new),
                limits: self.limits,
            }),
            guard_admin: true,
        })
    }
}

/// What to issue. Create with [`IssueRequest::new`] and refine with the builder methods.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct IssueRequest {
    /// A caller-chosen id; generated when `None`. [`RESERVED_IDS`] are refused.
    pub id: Option<TokenId>,
    /// Human-readable name (required; at most 128 bytes by default [`Limits`]).
    pub name: String,
    /// Description (at most 1024 bytes by default).
    pub description: String,
    /// The user or service the token acts for (required, at most 128 bytes by default).
    /// Acting as a token, only that token's owner unless it holds
    /// [`tokens:any-owner`](crate::scope::ANY_OWNER).
    pub owner: String,
    /// Who creates it; defaults to `system`. Acting as a token it is always `token:<id>`,
    /// set by keygate: a request that names a creator is refused.
    pub created_by: Option<String>,
    /// Scopes (default: none).
    pub scopes: ScopeSet,
    /// Projects (default: all).
    pub projects: Projects,
    /// Metadata (at most 32 entries by default).
    pub metadata: BTreeMap<String, String>,
    /// Expiry. `None` (the default): 30 days, or, acting as a token that expires sooner,
    /// that token's own expiry.
    pub expiry: Option<ExpiryPreset>,
}

impl IssueRequest {
    /// A request for a token named `name` acting for `owner`, with no scopes, all projects,
    /// and the default expiry ([`DEFAULT_EXPIRY`], 30 days).
    pub fn new(name: impl Into<String>, owner: impl Into<String>) -> Self {
        IssueRequest {
            id: None,
            name: name.into(),
            description: String::new(),
            owner: owner.into(),
            created_by: None,
            scopes: ScopeSet::new(),
            projects: Projects::All,
            metadata: BTreeMap::new(),
            expiry: None,
        }
    }

    /// Uses this id instead of a generated one.
    pub fn id(mut self, id: TokenId) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Sets the creator (not accepted when acting as a token).
    pub fn created_by(mut self, who: impl Into<String>) -> Self {
        self.created_by = Some(who.into());
        self
    }

    /// Sets the scopes.
    pub fn scopes(mut self, scopes: ScopeSet) -> Self {
        self.scopes = scopes;
        self
    }

    /// Sets the projects.
    pub fn projects(mut self, projects: Projects) -> Self {
        self.projects = projects;
        self
    }

    /// Adds a metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Sets the expiry.
    pub fn expiry(mut self, expiry: ExpiryPreset) -> Self {
        self.expiry = Some(expiry);
        self
    }
}

/// How to rotate ("regenerate") a token.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct RotateRequest {
    /// How long the old secret stays valid (default zero: it stops at once). At most 30 days.
    pub grace: Duration,
    /// A new expiry; `None` keeps the current one.
    pub expiry: Option<ExpiryPreset>,
    /// End the grace period of the last rotation's secret now, if it still runs (without
    /// this, such a rotation is refused).
    pub end_grace: bool,
    /// The record version the caller read; another stored version refuses the rotation
    /// with [`Error::VersionMismatch`]. `None`: rotate whatever version is stored.
    pub expected_version: Option<u64>,
}

impl RotateRequest {
    /// Rotation with no grace period, keeping the expiry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the grace period of the old secret.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Sets a new expiry.
    pub fn expiry(mut self, expiry: ExpiryPreset) -> Self {
        self.expiry = Some(expiry);
        self
    }

    /// Ends a running grace period of the previous secret (see [`TokenManager::rotate`]).
    pub fn end_grace(mut self) -> Self {
        self.end_grace = true;
        self
    }

    /// Rotates only if the stored record is at `version`.
    pub fn expected_version(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }
}

/// A change to a token's settings; `None` fields are left as they are.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct TokenUpdate {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New scopes (replacing the old set).
    pub scopes: Option<ScopeSet>,
    /// New projects.
    pub projects: Option<Projects>,
    /// New metadata (replacing the old map).
    pub metadata: Option<BTreeMap<String, String>>,
    /// New expiry.
    pub expiry: Option<ExpiryPreset>,
    /// The record version the caller read; another stored version refuses the change with
    /// [`Error::VersionMismatch`]. `None`: change whatever version is stored.
    pub expected_version: Option<u64>,
}

impl TokenUpdate {
    /// An empty change.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Sets the description.
    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.description = Some(d.into());
        self
    }
    /// Sets the scopes.
    pub fn scopes(mut self, scopes: ScopeSet) -> Self {
        self.scopes = Some(scopes);
        self
    }
    /// Sets the projects.
    pub fn projects(mut self, projects: Projects) -> Self {
        self.projects = Some(projects);
        self
    }
    /// Replaces the metadata.
    pub fn metadata(mut self, metadata: BTreeMap<String, String>) -> Self {
        self.metadata = Some(metadata);
        self
    }
    /// Sets the expiry.
    pub fn expiry(mut self, expiry: ExpiryPreset) -> Self {
        self.expiry = Some(expiry);
        self
    }
    /// Applies the change only if the stored record is at `version`.
    pub fn expected_version(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }
}

/// A freshly issued or rotated token: the record and the plaintext, shown once.
///
/// No `Clone`; `Debug` redacts the secret; the secret is zeroized on drop.
#[derive(Debug)]
pub struct IssuedToken {
    record: TokenRecord,
    secret: TokenSecret,
}

impl IssuedToken {
    /// The token id.
    pub fn id(&self) -> &TokenId {
        &self.record.id
    }

    /// The stored record (without the secret).
    pub fn record(&self) -> &TokenRecord {
        &self.record
    }

    /// The plaintext token to hand to the user, once.
    pub fn expose_secret(&self) -> &str {
        self.secret.expose_secret()
    }

    /// Splits into the record and the secret.
    pub fn into_parts(self) -> (TokenRecord, TokenSecret) {
        (self.record, self.secret)
    }
}

/// A token that passed verification: who it acts for and what it may do.
///
/// Cheap to clone; holds no secret.
#[derive(Clone)]
pub struct VerifiedToken {
    record: Arc<TokenRecord>,
    via_previous: bool,
}

impl VerifiedToken {
    /// The token id.
    pub fn id(&self) -> &TokenId {
        &self.record.id
    }
    /// The token name.
    pub fn name(&self) -> &str {
        &self.record.name
    }
    /// The user or service the token acts for.
    pub fn owner(&self) -> &str {
        &self.record.owner
    }
    /// Who created the token.
    pub fn created_by(&self) -> &str {
        &self.record.created_by
    }
    /// The token's scopes.
    pub fn scopes(&self) -> &ScopeSet {
        &self.record.scopes
    }
    /// The token's projects.
    pub fn projects(&self) -> &Projects {
        &self.record.projects
    }
    /// The token's metadata.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.record.metadata
    }
    /// The token's expiry.
    pub fn expiry(&self) -> Expiry {
        self.record.expiry
    }
    /// `true` if the request used the previous secret inside its rotation grace period.
    pub fn used_previous_secret(&self) -> bool {
        self.via_previous
    }
    /// Does the token grant `scope`?
    pub fn grants(&self, scope: &Scope) -> bool {
        self.record.scopes.grants(scope)
    }
    /// `Ok` if the token grants `scope`.
    pub fn require_scope(&self, scope: &Scope) -> Result<(), AccessError> {
        self.record.scopes.require(scope)
    }
    /// `Ok` if the token may act on `project`.
    pub fn require_project(&self, project: &ProjectId) -> Result<(), AccessError> {
        self.record.projects.require(project)
    }
    /// The record as it was when verified (digests inside are redacted in `Debug`).
    pub fn record(&self) -> &TokenRecord {
        &self.record
    }
}

impl fmt::Debug for VerifiedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedToken")
            .field("id", &self.record.id)
            .field("owner", &self.record.owner)
            .field("scopes", &self.record.scopes)
            .field("projects", &self.record.projects)
            .field("expiry", &self.record.expiry)
            .field("via_previous", &self.via_previous)
            .finish()
    }
}

/// A bulk action (Zabbix mass enable/disable; mass revoke).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BulkAction {
    /// Enable every selected token (revoked ones fail).
    Enable,
    /// Disable every selected token (revoked ones fail).
    Disable,
    /// Revoke every selected token.
    Revoke,
}

/// Which tokens a bulk action applies to.
#[derive(Clone, Debug)]
pub enum Selection {
    /// These ids.
    Ids(Vec<TokenId>),
    /// Every token matching the filter (at the time of the call).
    Filter(TokenFilter),
}

/// The outcome of a bulk action, per token. A failure for one token does not stop the others.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct BulkReport {
    /// Tokens whose status changed.
    pub changed: Vec<TokenId>,
    /// Tokens already in the target state.
    pub unchanged: Vec<TokenId>,
    /// Tokens that could not be changed, and why.
    pub failed: Vec<(TokenId, Error)>,
}

/// Management on behalf of a verified token. See [`TokenManager::acting_as`].
#[derive(Clone, Debug)]
pub struct ActingAs<'a> {
    manager: &'a TokenManager,
    actor: VerifiedToken,
}

macro_rules! delegate {
    ($( $(#[$m:meta])* fn $name:ident => $inner:ident(&self $(, $arg:ident : $ty:ty)*) -> $ret:ty; )*) => {
        $(
            $(#[$m])*
            pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
                self.manager.$inner(Some(&self.actor) $(, $arg)*).await
            }
        )*
    };
}

impl ActingAs<'_> {
    /// The acting token.
    pub fn actor(&self) -> &VerifiedToken {
        &self.actor
    }

    delegate! {
        /// Like [`TokenManager::issue`], refusing what the actor may not grant.
        fn issue => issue_as(&self, req: IssueRequest) -> Result<IssuedToken, Error>;
        /// Like [`TokenManager::get`], for tokens visible to the actor.
        fn get => get_as(&self, id: &TokenId) -> Result<TokenRecord, Error>;
        /// Like [`TokenManager::list`], returning only tokens visible to the actor.
        fn list => list_as(&self, filter: &TokenFilter, page: &PageRequest) -> Result<Page, Error>;
        /// Like [`TokenManager::rotate`], for tokens visible to the actor.
        fn rotate => rotate_as(&self, id: &TokenId, req: RotateRequest) -> Result<IssuedToken, Error>;
        /// Like [`TokenManager::update`], refusing what the actor may not grant.
        fn update => update_as(&self, id: &TokenId, change: TokenUpdate) -> Result<TokenRecord, Error>;
        /// Like [`TokenManager::set_status`], for tokens visible to the actor.
        fn set_status => set_status_as(&self, id: &TokenId, status: TokenStatus) -> Result<TokenRecord, Error>;
        /// Like [`TokenManager::delete`], for tokens visible to the actor.
        fn delete => delete_as(&self, id: &TokenId) -> Result<(), Error>;
        /// Like [`TokenManager::bulk`]: tokens not visible to the actor fail as not found,
        /// and a filter never selects the actor itself.
        fn bulk => bulk_as(&self, action: BulkAction, selection: Selection) -> Result<BulkReport, Error>;
        /// Like [`TokenManager::revoke_with_children`], within the actor's reach, never
        /// taking in the actor unless it is the token named.
        fn revoke_with_children => revoke_with_children_as(&self, id: &TokenId) -> Result<BulkReport, Error>;
    }
}

impl TokenManager {
    /// Starts configuring a manager over `store`. A server key is required.
    ///
    /// `store` may be any [`TokenStore`], including `Arc<dyn TokenStore>` and `Arc<S>`.
    pub fn builder(store: impl TokenStore + 'static) -> TokenManagerBuilder {
        TokenManagerBuilder {
            store: Arc::new(store),
            keyring: None,
            format: TokenFormat::default(),
            policy: ExpiryPolicy::default(),
            clock: Arc::new(SystemClock),
            audit: Arc::new(TracingSink),
            touch_interval: DEFAULT_TOUCH_INTERVAL,
            cache: None,
            limits: Limits::default(),
            error: None,
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.inner.store
    }

    /// The token format (prefix, secret length).
    pub fn format(&self) -> &TokenFormat {
        &self.inner.format
    }

    /// The expiry policy.
    pub fn expiry_policy(&self) -> &ExpiryPolicy {
        &self.inner.policy
    }

    /// The size limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The current time by the manager's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// Management on behalf of `actor`, bounded on every axis of a token (no escalation):
    /// scopes, projects, owner, lifetime, attribution, visibility and size, as the
    /// [`delegation`] module states. A change beyond the actor's bounds is refused with
    /// [`Error::Escalation`]; tokens outside its reach are reported as not found.
    ///
    /// Which operations an actor may perform at all (e.g. requiring `tokens:write`) is the
    /// caller's policy; the admin router of feature `axum` enforces one.
    pub fn acting_as(&self, actor: &VerifiedToken) -> ActingAs<'_> {
        ActingAs {
            manager: self,
            actor: actor.clone(),
        }
    }

    /// Drops any cached verification of `id`, so the next verification reads the store.
    /// Called for every change made through this manager; call it when a change was made
    /// elsewhere (the PostgreSQL store's listener does). A no-op without a cache.
    pub fn invalidate(&self, id: &TokenId) {
        if let Some(c) = &self.inner.cache {
            c.remove(id);
        }
    }

    /// Drops every cached verification. A no-op without a cache.
    pub fn invalidate_all(&self) {
        if let Some(c) = &self.inner.cache {
            c.clear();
        }
    }

    fn audit(&self, event: AuditEvent) {
        self.inner.audit.record(&event);
    }

    fn event(&self, kind: AuditKind, record: &TokenRecord, actor: Option<&VerifiedToken>) {
        self.audit(
            AuditEvent::new(kind, self.now())
                .token(&record.id)
                .owner(&record.owner)
                .actor(Some(actor_name(actor))),
        );
    }

    // ----- verification -------------------------------------------------------------------

    /// Verifies a presented token string.
    ///
    /// Order: length bound and parse (no store access for malformed input or a bad
    /// checksum); the digest of the presented token under each server-key version, current
    /// first, each looked up with [`TokenStore::find_by_digest`] (through the cache, if on)
    /// until a record holds it; the digest compared again in constant time, with the id and
    /// the key version; then revoked, disabled, expired, and rotated-out secret past its
    /// grace period. An unknown id and a wrong secret are the same miss
    /// ([`VerifyError::Unknown`]), with the same work. A store failure is
    /// [`VerifyError::Store`], never "invalid". Failures are reported to the audit sink as
    /// `authn_login_fail` (and `authn_token_reuse` for a rotated-out secret).
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, VerifyError> {
        let parsed = match self.inner.format.parse(token) {
            Ok(p) => p,
            Err(e) => {
                self.audit_verify_failure(None, &e);
                return Err(e);
            }
        };
        let id = TokenId::from_parsed(&parsed);
        let result = self.verify_parsed(&id, parsed.secret()).await;
        if let Err(e) = &result {
            self.audit_verify_failure(Some(id), e);
        }
        result
    }

    async fn verify_parsed(
        &self,
        id: &TokenId,
        secret: &str,
    ) -> Result<VerifiedToken, VerifyError> {
        // The token is found by its digest, not by its id: an unknown id and a wrong secret
        // are then the same miss, doing the same work. One digest per server-key version,
        // the current key first; a valid token stops at the version it was stored under.
        for version in self.inner.keyring.versions_newest_first() {
            let Some(digest) = self.inner.keyring.digest(version, id.as_str(), secret) else {
                continue;
            };
            if let Some(found) = self.find(&digest).await? {
                if let Some(result) = self.check_found(id, secret, version, &digest, found).await {
                    return result;
                }
            }
        }
        Err(VerifyError::Unknown)
    }

    /// The record holding `digest`: from the cache, else from the store.
    async fn find(&self, digest: &Digest) -> Result<Option<Found>, VerifyError> {
        let inner = &*self.inner;
        let Some(cache) = inner.cache.as_ref() else {
            let r = inner.store.find_by_digest(digest).await;
            return Ok(r.map_err(VerifyError::Store)?.map(|record| Found {
                record,
                fresh: None,
            }));
        };
        if let Some(record) = cache.get(digest) {
            return Ok(Some(Found {
                record,
                fresh: None,
            }));
        }
        let epoch = cache.epoch();
        let fetched = std::time::Instant::now();
        let r = inner.store.find_by_digest(digest).await;
        Ok(r.map_err(VerifyError::Store)?.map(|record| Found {
            record,
            fresh: Some((epoch, fetched)),
        }))
    }

    /// Decides on a record found by the digest of the presented token under key `version`.
    /// `None`: the record does not hold this digest under this key for this id after all (a
    /// store answering loosely, or a digest collision); it is not accepted.
    async fn check_found(
        &self,
        id: &TokenId,
        secret: &str,
        version: u32,
        digest: &Digest,
        found: Found,
    ) -> Option<Result<VerifiedToken, VerifyError>> {
        let inner = &*self.inner;
        let record = found.record;
        // Constant time, though the store matched on these bytes already: keygate does not
        // rely on a store's comparison to accept a token.
        let cur_match = bool::from(
            digest.ct_eq(&record.digest.digest)
                & Choice::from(u8::from(record.digest.key_version == version)),
        );
        // Which retired secret, if any, the presented one is (each compared in constant
        // time; at most MAX_RETIRED_SECRETS of them).
        let retired = record.retired.iter().find(|p| {
            bool::from(
                digest.ct_eq(&p.digest.digest)
                    & Choice::from(u8::from(p.digest.key_version == version)),
            )
        });
        if record.id != *id || !(cur_match || retired.is_some()) {
            return None;
        }

        match record.status {
            TokenStatus::Revoked => return Some(Err(VerifyError::Revoked)),
            TokenStatus::Disabled => return Some(Err(VerifyError::Disabled)),
            TokenStatus::Active => {}
        }
        let now = inner.clock.now();
        if record.expiry.is_expired_at(now) {
            return Some(Err(VerifyError::Expired));
        }
        let via_previous = !cur_match;
        if via_previous && retired.is_none_or(|p| now >= p.valid_until) {
            return Some(Err(VerifyError::RotatedOut));
        }

        if cur_match && version != inner.keyring.current_version() {
            self.rehash(&record, id.as_str(), secret).await;
        }
        if inner.touch.due(&record, now) {
            inner.touch.schedule(&inner.store, &record.id, now);
        }
        if let (Some(cache), Some((epoch, fetched))) = (&inner.cache, found.fresh) {
            cache.insert(*digest, Arc::clone(&record), fetched, epoch);
        }
        Some(Ok(VerifiedToken {
            record,
            via_previous,
        }))
    }

    async fn rehash(&self, record: &TokenRecord, id: &str, secret: &str) {
        let mut r = record.clone();
        r.digest = self.inner.keyring.digest_current(id, secret);
        match self.inner.store.update(&r).await {
            Ok(_) => {
                self.invalidate(&record.id);
                self.event(AuditKind::Rehashed, record, None);
            }
            // A concurrent change wins; the next verification re-hashes again.
            Err(StoreError::Conflict | StoreError::NotFound) => {}
            Err(e) => tracing::warn!(
                target: "keygate::audit",
                token_id = record.id.as_str(),
                error = %e,
                "re-hash under the current server key failed"
            ),
        }
    }

    fn audit_verify_failure(&self, id: Option<TokenId>, e: &VerifyError) {
        let now = self.now();
        let reuse = matches!(e, VerifyError::RotatedOut).then(|| id.clone());
        let mut event = AuditEvent::new(AuditKind::VerifyFailed { reason: e.code() }, now);
        event.token_id = id;
        self.audit(event);
        if let Some(id) = reuse {
            let mut event = AuditEvent::new(AuditKind::Reuse, now);
            event.token_id = id;
            self.audit(event);
        }
    }

    /// Checks that a verified token grants `scope`, reporting `authz_fail` if not.
    pub fn authorize(&self, token: &VerifiedToken, scope: &Scope) -> Result<(), AccessError> {
        token
            .require_scope(scope)
            .inspect_err(|e| self.deny(token, e))
    }

    /// Checks that a verified token may act on `project`, reporting `authz_fail` if not.
    pub fn authorize_project(
        &self,
        token: &VerifiedToken,
        project: &ProjectId,
    ) -> Result<(), AccessError> {
        token
            .require_project(project)
            .inspect_err(|e| self.deny(token, e))
    }

    fn deny(&self, token: &VerifiedToken, e: &AccessError) {
        self.event(
            AuditKind::AccessDenied {
                missing: e.to_string(),
            },
            token.record(),
            Some(token),
        );
    }

    // ----- management ---------------------------------------------------------------------

    /// Issues a token. The plaintext is in the returned value only.
    ///
    /// Fails with a clear [`Error`] for invalid fields, sizes over the [`Limits`], an expiry
    /// outside the policy, or an id that exists; nothing is stored then.
    pub async fn issue(&self, req: IssueRequest) -> Result<IssuedToken, Error> {
        self.issue_as(None, req).await
    }

    async fn issue_as(
        &self,
        actor: Option<&VerifiedToken>,
        req: IssueRequest,
    ) -> Result<IssuedToken, Error> {
        let limits = &self.inner.limits;
        Limits::check_text("name", &req.name, limits.max_name_bytes(), true)?;
        Limits::check_text(
            "description",
            &req.description,
            limits.max_description_bytes(),
            false,
        )?;
        Limits::check_text("owner", &req.owner, limits.max_principal_bytes(), true)?;
        if let Some(c) = &req.created_by {
            Limits::check_text("created_by", c, limits.max_principal_bytes(), true)?;
            if actor.is_some() {
                return Err(Error::InvalidField {
                    field: "created_by",
                    reason: "is set by keygate when acting as a token",
                });
            }
        }
        limits.check_metadata(&req.metadata)?;
        limits.check_scopes(&req.scopes)?;
        limits.check_projects(&req.projects)?;
        let now = self.micros_now();
        let expiry = match req.expiry {
            Some(preset) => preset.resolve(now)?,
            None => {
                let default = DEFAULT_EXPIRY.resolve(now)?;
                match actor.map(VerifiedToken::expiry) {
                    Some(own) if !own.covers(&default) => own,
                    _ => default,
                }
            }
        };
        self.inner.policy.check(now, now, &expiry)?;
        if let Some(actor) = actor {
            let grant = Grant {
                owner: Some(&req.owner),
                scopes: Some(&req.scopes),
                projects: Some(&req.projects),
                expiry: Some(&expiry),
            };
            self.check_grant(actor, &grant)?;
        }

        if req
            .id
            .as_ref()
            .is_some_and(|id| RESERVED_IDS.contains(&id.as_str()))
        {
            return Err(Error::InvalidId(
                "`self` and `bulk` are reserved: the admin API's routes use them",
            ));
        }
        let id = req.id.unwrap_or_else(TokenId::generate);
        let (secret, digest) = self.new_secret(&id)?;
        let record = TokenRecord {
            id: id.clone(),
            name: req.name,
            description: req.description,
            owner: req.owner,
            created_by: req.created_by.unwrap_or_else(|| actor_name(actor)),
            created_at: now,
            updated_at: now,
            secret_issued_at: now,
            expiry,
            status: TokenStatus::Active,
            scopes: req.scopes,
            projects: req.projects,
            metadata: req.metadata,
            digest,
            retired: Vec::new(),
            last_used_at: None,
            version: 1,
        };
        self.inner
            .store
            .insert(&record)
            .await
            .map_err(|e| match e {
                StoreError::AlreadyExists => Error::AlreadyExists(id),
                e => Error::Store(e),
            })?;
        self.event(AuditKind::Created, &record, actor);
        Ok(IssuedToken { record, secret })
    }

    fn new_secret(&self, id: &TokenId) -> Result<(TokenSecret, StoredDigest), Error> {
        let secret = self.inner.format.generate(id)?;
        let parsed = self
            .inner
            .format
            .parse(secret.expose_secret())
            .map_err(|_| Error::InvalidConfig("token format does not round-trip"))?;
        let digest = self
            .inner
            .keyring
            .digest_current(id.as_str(), parsed.secret());
        Ok((secret, digest))
    }

    fn micros_now(&self) -> DateTime<Utc> {
        self.inner.clock.now().trunc_subsecs(6)
    }

    /// Refuses what `actor` may not grant (see [`delegation`]), reporting `authz_fail`.
    fn check_grant(&self, actor: &VerifiedToken, grant: &Grant<'_>) -> Result<(), Error> {
        delegation::check(actor, grant).map_err(|e| {
            self.deny(actor, &e);
            Error::Escalation(e)
        })
    }

    /// Reads a token's record.
    pub async fn get(&self, id: &TokenId) -> Result<TokenRecord, Error> {
        self.get_as(None, id).await
    }

    async fn get_as(
        &self,
        actor: Option<&VerifiedToken>,
        id: &TokenId,
    ) -> Result<TokenRecord, Error> {
        let record = self.load(actor, id).await?;
        Ok(TokenRecord::clone(&record))
    }

    /// The record, if it exists and is within the actor's reach; otherwise not found.
    async fn load(
        &self,
        actor: Option<&VerifiedToken>,
        id: &TokenId,
    ) -> Result<Arc<TokenRecord>, Error> {
        match self.inner.store.get(id).await? {
            Some(r) if actor.is_none_or(|a| delegation::reach(a).contains(&r)) => Ok(r),
            _ => Err(Error::NotFound(id.clone())),
        }
    }

    /// Lists tokens matching `filter`, newest first, one page at a time.
    pub async fn list(&self, filter: &TokenFilter, page: &PageRequest) -> Result<Page, Error> {
        self.list_as(None, filter, page).await
    }

    async fn list_as(
        &self,
        actor: Option<&VerifiedToken>,
        filter: &TokenFilter,
        page: &PageRequest,
    ) -> Result<Page, Error> {
        let Some(actor) = actor else {
            return Ok(self.inner.store.list(filter, page).await?);
        };
        // The actor's reach goes into the store's query, so a page costs O(page) however
        // many tokens lie outside it.
        if filter.within.is_some() {
            return Err(Error::InvalidField {
                field: "within",
                reason: "is set by keygate when acting as a token",
            });
        }
        let mut filter = filter.clone();
        filter.within = Some(delegation::reach(actor));
        Ok(self.inner.store.list(&filter, page).await?)
    }

    /// Rotates ("regenerates") a token: a new secret for the same id and settings, optionally
    /// a new expiry. The old secret stays valid for `req.grace` (default zero); presenting it
    /// afterwards fails with [`VerifyError::RotatedOut`] and is audited as
    /// `authn_token_reuse`, and so does every earlier retired secret (the record keeps the
    /// last [`MAX_RETIRED_SECRETS`]).
    ///
    /// Only one secret can be in a grace period: while the last rotation's grace runs, a
    /// rotation is refused ([`Error::InvalidState`]) unless `req` says
    /// [`end_grace`](RotateRequest::end_grace), which ends that grace now.
    ///
    /// Rotation is never retried: if the token changed concurrently (another rotation won)
    /// this returns [`Error::Conflict`] and nothing is changed. With
    /// [`RotateRequest::expected_version`], a record at another version is refused with
    /// [`Error::VersionMismatch`] before anything is written. Revoked tokens cannot be
    /// rotated.
    pub async fn rotate(&self, id: &TokenId, req: RotateRequest) -> Result<IssuedToken, Error> {
        self.rotate_as(None, id, req).await
    }

    async fn rotate_as(
        &self,
        actor: Option<&VerifiedToken>,
        id: &TokenId,
        req: RotateRequest,
    ) -> Result<IssuedToken, Error> {
        if req.grace < Duration::zero() || req.grace > MAX_ROTATION_GRACE {
            return Err(Error::InvalidConfig(
                "rotation grace must be between zero and 30 days",
            ));
        }
        let current = self.load(actor, id).await?;
        check_version(&current, req.expected_version)?;
        if current.status == TokenStatus::Revoked {
            return Err(Error::InvalidState {
                id: id.clone(),
                status: current.status,
                reason: "a revoked token cannot be rotated",
            });
        }
        let now = self.micros_now();
        let mut r = TokenRecord::clone(&current);
        if let Some(expiry) = req.expiry {
            let expiry = expiry.resolve(now)?;
            self.inner.policy.check(now, now, &expiry)?;
            r.expiry = expiry;
        }
        if let Some(actor) = actor {
            // The new secret lives until the (new or kept) expiry: never beyond the actor.
            self.check_grant(actor, &Grant::expiry(&r.expiry))?;
        }
        if let Some(running) = r.retired.first_mut().filter(|p| now < p.valid_until) {
            if !req.end_grace {
                return Err(Error::InvalidState {
                    id: id.clone(),
                    status: current.status,
                    reason: "the last rotation's grace period is still running; \
                             rotate with end_grace to end it now",
                });
            }
            running.valid_until = now;
        }
        let (secret, digest) = self.new_secret(id)?;
        r.retired.insert(
            0,
            RetiredSecret {
                digest: current.digest,
                valid_until: now + req.grace,
            },
        );
        r.retired.truncate(MAX_RETIRED_SECRETS);
        r.digest = digest;
        r.secret_issued_at = now;
        r.updated_at = now;
        r.version = self
            .store_update(&r)
            .await
            .map_err(|e| stale(e, req.expected_version))?;
        self.event(AuditKind::Rotated, &r, actor);
        Ok(IssuedToken { record: r, secret })
    }

    async fn store_update(&self, r: &TokenRecord) -> Result<u64, Error> {
        let result = self.inner.store.update(r).await;
        // Invalidate whatever the outcome: on a conflict the cached record is stale too.
        self.invalidate(&r.id);
        result.map_err(|e| match e {
            StoreError::Conflict => Error::Conflict(r.id.clone()),
            StoreError::NotFound => Error::NotFound(r.id.clone()),
            e => Error::Store(e),
        })
    }

    /// Applies `change` to a fresh read of the record, retrying on version conflicts unless
    /// the caller named the version it expects. `change` returns `Ok(false)` when there is
    /// nothing to write. A change that would retire the last active `*` token is refused
    /// (see [`allowing_no_admin`](Self::allowing_no_admin)).
    async fn modify<F>(
        &self,
        actor: Option<&VerifiedToken>,
        id: &TokenId,
        expected: Option<u64>,
        mut change: F,
    ) -> Result<(TokenRecord, bool), Error>
    where
        F: FnMut(&mut TokenRecord, DateTime<Utc>) -> Result<bool, Error>,
    {
        let mut attempts = 0;
        loop {
            let current = self.load(actor, id).await?;
            check_version(&current, expected)?;
            let now = self.micros_now();
            let mut r = TokenRecord::clone(&current);
            if !change(&mut r, now)? {
                return Ok((r, false));
            }
            self.keep_an_admin(&current, Some(&r)).await?;
            r.updated_at = now;
            match self.store_update(&r).await {
                Ok(version) => {
                    r.version = version;
                    return Ok((r, true));
                }
                Err(Error::Conflict(_)) if expected.is_none() && attempts < CONFLICT_RETRIES => {
                    attempts += 1
                }
                Err(e) => return Err(stale(e, expected)),
            }
        }
    }

    /// Refuses to turn `before`, an active `*` token, into `after` (`None`: deleted) that is
    /// not one, when no other active `*` token exists. Checked before the write: two
    /// concurrent changes of the last two such tokens can both pass.
    async fn keep_an_admin(
        &self,
        before: &TokenRecord,
        after: Option<&TokenRecord>,
    ) -> Result<(), Error> {
        let now = self.now();
        let is_admin = |r: &TokenRecord| {
            r.status == TokenStatus::Active && r.scopes.is_admin() && !r.expiry.is_expired_at(now)
        };
        if !self.guard_admin || !is_admin(before) || after.is_some_and(is_admin) {
            return Ok(());
        }
        let filter = TokenFilter::new()
            .scope(Scope::admin())
            .status(TokenStatus::Active)
            .expires_after(now);
        let mut page = PageRequest::first(2);
        loop {
            let got = self.inner.store.list(&filter, &page).await?;
            if got.items.iter().any(|r| r.id != before.id && is_admin(r)) {
                return Ok(());
            }
            match got.next {
                Some(c) => page = page.next(c),
                None => return Err(Error::LastAdmin(before.id.clone())),
            }
        }
    }

    /// A handle to the same manager whose changes may leave the store without an active
    /// token holding `*` (revoking, disabling, deleting or narrowing the last one), which
    /// every other handle refuses with [`Error::LastAdmin`]. For deliberate use, such as a
    /// command line that asked its operator.
    pub fn allowing_no_admin(&self) -> TokenManager {
        TokenManager {
            inner: Arc::clone(&self.inner),
            guard_admin: false,
        }
    }

    /// Sets a token's status: `Disabled` (reversible), `Active` (enable; refused for revoked
    /// tokens) or `Revoked` (terminal; the record is kept). Setting the status a token
    /// already has changes nothing and succeeds.
    pub async fn set_status(
        &self,
        id: &TokenId,
        status: TokenStatus,
    ) -> Result<TokenRecord, Error> {
        self.set_status_as(None, id, status).await
    }

    async fn set_status_as(
        &self,
        actor: Option<&VerifiedToken>,
        id: &TokenId,
        status: TokenStatus,
    ) -> Result<TokenRecord, Error> {
        self.set_status_report(actor, id, status)
            .await
            .map(|(r, _)| r)
    }

    async fn set_status_report(
        &self,
        actor: Option<&VerifiedToken>,
        id: &TokenId,
        status: TokenStatus,
    ) -> Result<(TokenRecord, bool), Error> {
        let (r, changed) = self
            .modify(actor, id, None, |r, _| {
                if r.status == status {
                    return Ok(false);
                }
                if r.status == TokenStatus::Revoked {
                    return Err(Error::InvalidState {
                        id: r.id.clone(),
                        status: r.status,
                        reason: "revocation is permanent",
                    });
                }
                r.status = status;
                Ok(true)
            })
            .await?;
        if changed {
            let kind = match status {
                TokenStatus::Active => AuditKind::Enabled,
                TokenStatus::Disabled => AuditKind::Disabled,
                TokenStatus::Revoked => AuditKind::Revoked,
            };
            self.event(kind, &r, actor);
        }
        Ok((r, changed))
    }

    /// Disables a token (reversible with [`enable`](Self::enable)).
    pub async fn disable(&self, id: &TokenId) -> Result<TokenRecord, Error> {
        self.set_status(id, TokenStatus::Disabled).await
    }

    /// Enables a disabled token. A revoked token cannot be enabled.
    pub async fn enable(&self, id: &TokenId) -> Result<TokenRecord, Error> {
        self.set_status(id, TokenStatus::Active).await
    }

    /// Revokes a token for good. The record is kept for audit; use [`delete`](Self::delete)
    /// to remove it.
    pub async fn revoke(&self, id: &TokenId) -> Result<TokenRecord, Error> {
        self.set_status(id, TokenStatus::Revoked).await
    }

    /// Revokes a token and every token it created, and theirs in turn (by `created_by =
    /// token:<id>`), so that a leaked token's offspring die with it. Works on a token that
    /// is revoked already. The report lists the token itself first.
    ///
    /// Everything to revoke is collected first: if it is more than
    /// [`Limits::max_bulk_ids`], nothing is changed ([`Error::TooLarge`]).
    pub async fn revoke_with_children(&self, id: &TokenId) -> Result<BulkReport, Error> {
        self.revoke_with_children_as(None, id).await
    }

    async fn revoke_with_children_as(
        &self,
        actor: Option<&VerifiedToken>,
        id: &TokenId,
    ) -> Result<BulkReport, Error> {
        self.load(actor, id).await?;
        let max = self.inner.limits.max_bulk_ids();
        let mut tree = vec![id.clone()];
        let mut seen: HashSet<TokenId> = tree.iter().cloned().collect();
        let mut next = 0;
        while next < tree.len() {
            let filter = TokenFilter::new().created_by(actor_name_of(&tree[next]));
            next += 1;
            for child in self.all_ids(actor, &filter, max + 1 - tree.len()).await? {
                // Like a filter, the tree never takes in the acting token unless it is the
                // token named.
                if actor.is_some_and(|a| *a.id() == child) || !seen.insert(child.clone()) {
                    continue;
                }
                tree.push(child);
                if tree.len() > max {
                    return Err(Error::TooLarge {
                        field: "ids",
                        max,
                        unit: "tokens",
                    });
                }
            }
        }
        self.apply_status(actor, tree, TokenStatus::Revoked).await
    }

    /// The ids of up to `max` tokens matching `filter` (within the actor's reach); one
    /// more than `max` if more match.
    async fn all_ids(
        &self,
        actor: Option<&VerifiedToken>,
        filter: &TokenFilter,
        max: usize,
    ) -> Result<Vec<TokenId>, Error> {
        let mut ids = Vec::new();
        let mut page = PageRequest::first((max + 1).min(crate::store::MAX_PAGE_LIMIT));
        loop {
            let got = self.list_as(actor, filter, &page).await?;
            ids.extend(got.items.into_iter().map(|r| r.id));
            match got.next {
                Some(c) if ids.len() <= max => page = page.next(c),
                _ => return Ok(ids),
            }
        }
    }

    /// Deletes a token's record. Its token stops verifying (as unknown).
    pub async fn delete(&self, id: &TokenId) -> Result<(), Error> {
        self.delete_as(None, id).await
    }

    async fn delete_as(&self, actor: Option<&VerifiedToken>, id: &TokenId) -> Result<(), Error> {
        let record = self.load(actor, id).await?;
        self.keep_an_admin(&record, None).await?;
        let deleted = self.inner.store.delete(id).await;
        self.invalidate(id);
        if !deleted? {
            return Err(Error::NotFound(id.clone()));
        }
        self.event(AuditKind::Deleted, &record, actor);
        Ok(())
    }

    /// Changes a token's name, description, scopes, projects, metadata or expiry. Revoked
    /// tokens cannot be changed. Invalid input changes nothing.
    ///
    /// A new expiry is checked against the policy's lifetime cap from
    /// [`TokenRecord::secret_issued_at`] (issue or the last rotation), so updates never
    /// stretch one secret past the cap. Without
    /// [`expected_version`](TokenUpdate::expected_version) the change applies to whatever
    /// version is stored (retrying on concurrent writes); with it, a record at another
    /// version is refused with [`Error::VersionMismatch`].
    pub async fn update(&self, id: &TokenId, change: TokenUpdate) -> Result<TokenRecord, Error> {
        self.update_as(None, id, change).await
    }

    async fn update_as(
        &self,
        actor: Option<&VerifiedToken>,
        id: &TokenId,
        change: TokenUpdate,
    ) -> Result<TokenRecord, Error> {
        let limits = &self.inner.limits;
        if let Some(n) = &change.name {
            Limits::check_text("name", n, limits.max_name_bytes(), true)?;
        }
        if let Some(d) = &change.description {
            Limits::check_text("description", d, limits.max_description_bytes(), false)?;
        }
        if let Some(m) = &change.metadata {
            limits.check_metadata(m)?;
        }
        if let Some(s) = &change.scopes {
            limits.check_scopes(s)?;
        }
        if let Some(p) = &change.projects {
            limits.check_projects(p)?;
        }
        if let Some(actor) = actor {
            let grant = Grant {
                scopes: change.scopes.as_ref(),
                projects: change.projects.as_ref(),
                ..Grant::default()
            };
            self.check_grant(actor, &grant)?;
        }
        let (r, changed) = self
            .modify(actor, id, change.expected_version, |r, now| {
                if r.status == TokenStatus::Revoked {
                    return Err(Error::InvalidState {
                        id: r.id.clone(),
                        status: r.status,
                        reason: "a revoked token cannot be changed",
                    });
                }
                let before = r.clone();
                if let Some(expiry) = change.expiry {
                    let expiry = expiry.resolve(now)?;
                    self.inner.policy.check(r.secret_issued_at, now, &expiry)?;
                    if let Some(actor) = actor {
                        self.check_grant(actor, &Grant::expiry(&expiry))?;
                    }
                    r.expiry = expiry;
                }
                if let Some(n) = &change.name {
                    r.name.clone_from(n);
                }
                if let Some(d) = &change.description {
                    r.description.clone_from(d);
                }
                if let Some(s) = &change.scopes {
                    r.scopes.clone_from(s);
                }
                if let Some(p) = &change.projects {
                    r.projects.clone_from(p);
                }
                if let Some(m) = &change.metadata {
                    r.metadata.clone_from(m);
                }
                Ok(*r != before)
            })
            .await?;
        if changed {
            self.event(AuditKind::Updated, &r, actor);
        }
        Ok(r)
    }

    /// Enables, disables or revokes many tokens (by ids or by filter). Each token is handled
    /// on its own; the report says which changed, which already were in the target state,
    /// and which failed and why.
    ///
    /// At most [`Limits::max_bulk_ids`] tokens per call: more ids, or a filter matching
    /// more, is refused with [`Error::TooLarge`] before anything changes. Acting as a token,
    /// a filter never selects the acting token itself (name its id to include it). A token
    /// whose change would retire the last active `*` token fails with
    /// [`Error::LastAdmin`].
    pub async fn bulk(
        &self,
        action: BulkAction,
        selection: Selection,
    ) -> Result<BulkReport, Error> {
        self.bulk_as(None, action, selection).await
    }

    async fn bulk_as(
        &self,
        actor: Option<&VerifiedToken>,
        action: BulkAction,
        selection: Selection,
    ) -> Result<BulkReport, Error> {
        let max = self.inner.limits.max_bulk_ids();
        let too_many = Error::TooLarge {
            field: "ids",
            max,
            unit: "tokens",
        };
        let ids = match selection {
            Selection::Ids(ids) if ids.len() > max => return Err(too_many),
            Selection::Ids(ids) => ids,
            Selection::Filter(filter) => {
                let mut ids = self.all_ids(actor, &filter, max).await?;
                if ids.len() > max {
                    return Err(too_many);
                }
                if let Some(a) = actor {
                    ids.retain(|id| id != a.id());
                }
                ids
            }
        };
        let status = match action {
            BulkAction::Enable => TokenStatus::Active,
            BulkAction::Disable => TokenStatus::Disabled,
            BulkAction::Revoke => TokenStatus::Revoked,
        };
        self.apply_status(actor, ids, status).await
    }

    async fn apply_status(
        &self,
        actor: Option<&VerifiedToken>,
        ids: Vec<TokenId>,
        status: TokenStatus,
    ) -> Result<BulkReport, Error> {
        let mut report = BulkReport::default();
        let mut seen = HashSet::new();
        for id in ids {
            if !seen.insert(id.clone()) {
                continue;
            }
            match self.set_status_report(actor, &id, status).await {
                Ok((_, true)) => report.changed.push(id),
                Ok((_, false)) => report.unchanged.push(id),
                // A store failure stops the whole operation: the caller must know.
                Err(Error::Store(e)) => return Err(Error::Store(e)),
                Err(e) => report.failed.push((id, e)),
            }
        }
        Ok(report)
    }
}

/// `Ok` if `expected` is unset or is the record's version.
fn check_version(current: &TokenRecord, expected: Option<u64>) -> Result<(), Error> {
    match expected {
        Some(v) if v != current.version => Err(Error::VersionMismatch {
            id: current.id.clone(),
            expected: v,
        }),
        _ => Ok(()),
    }
}

/// A lost compare-and-swap is a version mismatch when the caller named a version.
fn stale(e: Error, expected: Option<u64>) -> Error {
    match (e, expected) {
        (Error::Conflict(id), Some(expected)) => Error::VersionMismatch { id, expected },
        (e, _) => e,
    }
}

/// A record found by digest, and whether it came from the store (with the cache epoch and
/// the instant of the read, to cache it) or from the cache.
struct Found {
    record: Arc<TokenRecord>,
    fresh: Option<(u64, std::time::Instant)>,
}

/// Who acts: `token:<id>` for an acting token, `system` for the manager itself.
fn actor_name(actor: Option<&VerifiedToken>) -> String {
    actor.map_or_else(|| "system".to_owned(), |a| actor_name_of(a.id()))
}

/// The `created_by` of tokens created by the token `id`.
fn actor_name_of(id: &TokenId) -> String {
    format!("token:{id}")
}

/// Rate-limits `last_used_at` writes: at most one per token per interval, scheduled off the
/// request path.
struct Toucher {
    interval: Duration,
    recent: Mutex<HashMap<TokenId, DateTime<Utc>>>,
}

const TOUCH_MAP_PRUNE_AT: usize = 65_536;

impl Toucher {
    fn new(interval: Duration) -> Self {
        Toucher {
            interval,
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// Cheap check against the record itself: is a write due at all?
    fn due(&self, record: &TokenRecord, now: DateTime<Utc>) -> bool {
        record.last_used_at.is_none_or(|t| now - t >= self.interval)
    }

    /// Writes `last_used_at = now` in a background task, unless a write for this token was
    /// scheduled within the interval. Without a tokio runtime the write is skipped.
    fn schedule(&self, store: &Arc<dyn TokenStore>, id: &TokenId, now: DateTime<Utc>) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if recent.get(id).is_some_and(|t| now - *t < self.interval) {
                return;
            }
            if recent.len() >= TOUCH_MAP_PRUNE_AT {
                let interval = self.interval;
                recent.retain(|_, t| now - *t < interval);
            }
            recent.insert(id.clone(), now);
        }
        let store = Arc::clone(store);
        let id = id.clone();
        handle.spawn(async move {
            if let Err(e) = store.touch(&id, now.trunc_subsecs(6)).await {
                tracing::debug!(target: "keygate", token_id = id.as_str(), error = %e, "last_used_at write failed");
            }
        });
    }
}
