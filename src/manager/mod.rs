//! [`TokenManager`]: issue, verify, rotate, enable, disable, revoke, delete, update, list.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, SubsecRound, Utc};
use subtle::{Choice, ConstantTimeEq};

use crate::audit::{AuditEvent, AuditKind, AuditSink, TracingSink};
use crate::cache::{CacheConfig, VerifyCache};
use crate::digest::{Digest, Keyring, ServerKey, StoredDigest};
use crate::error::{AccessError, Error, StoreError, VerifyError};
use crate::expiry::{Clock, Expiry, ExpiryPolicy, ExpiryPreset, SystemClock};
use crate::record::{MAX_RETIRED_SECRETS, RetiredSecret, TokenRecord, TokenStatus, check_metadata, check_text, limits};
use crate::scope::{ProjectId, Projects, Scope, ScopeSet};
use crate::store::{Cursor, Page, PageRequest, TokenFilter, TokenStore};
use crate::token::{TokenFormat, TokenId, TokenSecret};

/// Default interval between two `last_used_at` writes for one token.
pub const DEFAULT_TOUCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
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

    /// Builds the manager. Fails if no server key was given or a setting was invalid.
    pub fn build(self) -> Result<TokenManager, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
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
            }),
        })
    }
}

/// What to issue. Create with [`IssueRequest::new`] and refine with the builder methods.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct IssueRequest {
    /// A caller-chosen id; generated when `None`.
    pub id: Option<TokenId>,
    /// Human-readable name (required, at most 128 bytes).
    pub name: String,
    /// Description (at most 1024 bytes).
    pub description: String,
    /// The user or service the token acts for (required, at most 128 bytes).
    pub owner: String,
    /// Who creates it; defaults to `system`, or `token:<id>` when acting on behalf of a token.
    pub created_by: Option<String>,
    /// Scopes (default: none).
    pub scopes: ScopeSet,
    /// Projects (default: all).
    pub projects: Projects,
    /// Metadata (at most 32 entries).
    pub metadata: BTreeMap<String, String>,
    /// Expiry (default: 30 days).
    pub expiry: ExpiryPreset,
}

impl IssueRequest {
    /// A request for a token named `name` acting for `owner`, with no scopes, all projects,
    /// and a 30-day expiry.
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
            expiry: ExpiryPreset::Days30,
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

    /// Sets the creator.
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
        self.expiry = expiry;
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
        /// Like [`TokenManager::issue`], refusing scopes or projects beyond the actor's.
        fn issue => issue_as(&self, req: IssueRequest) -> Result<IssuedToken, Error>;
        /// Like [`TokenManager::get`], for tokens visible to the actor.
        fn get => get_as(&self, id: &TokenId) -> Result<TokenRecord, Error>;
        /// Like [`TokenManager::list`], returning only tokens visible to the actor.
        fn list => list_as(&self, filter: &TokenFilter, page: &PageRequest) -> Result<Page, Error>;
        /// Like [`TokenManager::rotate`], for tokens visible to the actor.
        fn rotate => rotate_as(&self, id: &TokenId, req: RotateRequest) -> Result<IssuedToken, Error>;
        /// Like [`TokenManager::update`], refusing scopes or projects beyond the actor's.
        fn update => update_as(&self, id: &TokenId, change: TokenUpdate) -> Result<TokenRecord, Error>;
        /// Like [`TokenManager::set_status`], for tokens visible to the actor.
        fn set_status => set_status_as(&self, id: &TokenId, status: TokenStatus) -> Result<TokenRecord, Error>;
        /// Like [`TokenManager::delete`], for tokens visible to the actor.
        fn delete => delete_as(&self, id: &TokenId) -> Result<(), Error>;
        /// Like [`TokenManager::bulk`], skipping (as not found) tokens not visible to the actor.
        fn bulk => bulk_as(&self, action: BulkAction, selection: Selection) -> Result<BulkReport, Error>;
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

    /// The current time by the manager's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// Management on behalf of `actor`: every change is refused if it would give a token
    /// scopes or projects the actor does not hold (no escalation), and tokens whose scopes or
    /// projects exceed the actor's are invisible to it (reported as not found).
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
    /// Fails with a clear [`Error`] for invalid fields, an expiry outside the policy, or an
    /// id that exists; nothing is stored then.
    pub async fn issue(&self, req: IssueRequest) -> Result<IssuedToken, Error> {
        self.issue_as(None, req).await
    }

    async fn issue_as(
        &self,
        actor: Option<&VerifiedToken>,
        req: IssueRequest,
    ) -> Result<IssuedToken, Error> {
        check_text("name", &req.name, limits::NAME_MAX, true)?;
        check_text(
            "description",
            &req.description,
            limits::DESCRIPTION_MAX,
            false,
        )?;
        check_text("owner", &req.owner, limits::PRINCIPAL_MAX, true)?;
        if let Some(c) = &req.created_by {
            check_text("created_by", c, limits::PRINCIPAL_MAX, true)?;
        }
        check_metadata(&req.metadata)?;
        self.check_no_escalation(actor, Some(&req.scopes), Some(&req.projects))?;
        let now = self.micros_now();
        let expiry = req.expiry.resolve(now)?;
        self.inner.policy.check(now, &expiry)?;

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

    fn check_no_escalation(
        &self,
        actor: Option<&VerifiedToken>,
        scopes: Option<&ScopeSet>,
        projects: Option<&Projects>,
    ) -> Result<(), Error> {
        let Some(actor) = actor else { return Ok(()) };
        let result = if let Some(missing) = scopes.and_then(|s| actor.scopes().first_missing(s)) {
            Err(AccessError::MissingScope(missing.clone()))
        } else if projects.is_some_and(|p| !actor.projects().covers(p)) {
            Err(AccessError::ProjectsNotCovered)
        } else {
            Ok(())
        };
        result.map_err(|e| {
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

    async fn load(
        &self,
        actor: Option<&VerifiedToken>,
        id: &TokenId,
    ) -> Result<Arc<TokenRecord>, Error> {
        match self.inner.store.get(id).await? {
            Some(r) if visible(actor, &r) => Ok(r),
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
        if actor.is_none() {
            return Ok(self.inner.store.list(filter, page).await?);
        }
        // Keep fetching until the page is full of visible records or the listing ends.
        let limit = page.effective_limit();
        let mut items = Vec::new();
        let mut req = page.clone();
        loop {
            let got = self.inner.store.list(filter, &req).await?;
            for r in got.items {
                if visible(actor, &r) {
                    items.push(r);
                    if items.len() == limit {
                        break;
                    }
                }
            }
            if items.len() == limit {
                // More may follow: a further page answers that (possibly empty).
                let next = items.last().map(Cursor::after);
                let more = match &next {
                    Some(c) => self.has_visible_after(actor, filter, c).await?,
                    None => false,
                };
                return Ok(Page {
                    items,
                    next: if more { next } else { None },
                });
            }
            match got.next {
                Some(next) => req = req.next(next),
                None => return Ok(Page { items, next: None }),
            }
        }
    }

    async fn has_visible_after(
        &self,
        actor: Option<&VerifiedToken>,
        filter: &TokenFilter,
        cursor: &Cursor,
    ) -> Result<bool, Error> {
        let mut req = PageRequest {
            limit: 100,
            after: Some(cursor.clone()),
        };
        loop {
            let got = self.inner.store.list(filter, &req).await?;
            if got.items.iter().any(|r| visible(actor, r)) {
                return Ok(true);
            }
            match got.next {
                Some(next) => req = req.next(next),
                None => return Ok(false),
            }
        }
    }

    /// Rotates ("regenerates") a token: a new secret for the same id and settings, optionally
    /// a new expiry. The old secret stays valid for `req.grace` (default zero); presenting it
    /// afterwards fails with [`VerifyError::RotatedOut`] and is audited as
    /// `authn_token_reuse`.
    ///
    /// Rotation is never retried: if the token changed concurrently (another rotation won)
    /// this returns [`Error::Conflict`] and nothing is changed. Revoked tokens cannot be
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
            self.inner.policy.check(now, &expiry)?;
            r.expiry = expiry;
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
        r.version = self.store_update(&r).await?;
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

    /// Applies `change` to a fresh read of the record, retrying on version conflicts.
    /// `change` returns `Ok(false)` when there is nothing to write.
    async fn modify<F>(
        &self,
        actor: Option<&VerifiedToken>,
        id: &TokenId,
        mut change: F,
    ) -> Result<(TokenRecord, bool), Error>
    where
        F: FnMut(&mut TokenRecord, DateTime<Utc>) -> Result<bool, Error>,
    {
        let mut attempts = 0;
        loop {
            let current = self.load(actor, id).await?;
            let now = self.micros_now();
            let mut r = TokenRecord::clone(&current);
            if !change(&mut r, now)? {
                return Ok((r, false));
            }
            r.updated_at = now;
            match self.store_update(&r).await {
                Ok(version) => {
                    r.version = version;
                    return Ok((r, true));
                }
                Err(Error::Conflict(_)) if attempts < CONFLICT_RETRIES => attempts += 1,
                Err(e) => return Err(e),
            }
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
            .modify(actor, id, |r, _| {
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

    /// Deletes a token's record. Its token stops verifying (as unknown).
    pub async fn delete(&self, id: &TokenId) -> Result<(), Error> {
        self.delete_as(None, id).await
    }

    async fn delete_as(&self, actor: Option<&VerifiedToken>, id: &TokenId) -> Result<(), Error> {
        let record = self.load(actor, id).await?;
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
    pub async fn update(&self, id: &TokenId, change: TokenUpdate) -> Result<TokenRecord, Error> {
        self.update_as(None, id, change).await
    }

    async fn update_as(
        &self,
        actor: Option<&VerifiedToken>,
        id: &TokenId,
        change: TokenUpdate,
    ) -> Result<TokenRecord, Error> {
        if let Some(n) = &change.name {
            check_text("name", n, limits::NAME_MAX, true)?;
        }
        if let Some(d) = &change.description {
            check_text("description", d, limits::DESCRIPTION_MAX, false)?;
        }
        if let Some(m) = &change.metadata {
            check_metadata(m)?;
        }
        self.check_no_escalation(actor, change.scopes.as_ref(), change.projects.as_ref())?;
        let (r, changed) = self
            .modify(actor, id, |r, now| {
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
                    self.inner.policy.check(now, &expiry)?;
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
        let ids = match selection {
            Selection::Ids(ids) => ids,
            Selection::Filter(filter) => {
                let mut ids = Vec::new();
                let mut page = PageRequest::first(crate::store::MAX_PAGE_LIMIT);
                loop {
                    let got = self.list_as(actor, &filter, &page).await?;
                    ids.extend(got.items.into_iter().map(|r| r.id));
                    match got.next {
                        Some(c) => page = page.next(c),
                        None => break,
                    }
                }
                ids
            }
        };
        let status = match action {
            BulkAction::Enable => TokenStatus::Active,
            BulkAction::Disable => TokenStatus::Disabled,
            BulkAction::Revoke => TokenStatus::Revoked,
        };
        let mut report = BulkReport::default();
        let mut seen = std::collections::HashSet::new();
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

/// A record found by digest, and whether it came from the store (with the cache epoch and
/// the instant of the read, to cache it) or from the cache.
struct Found {
    record: Arc<TokenRecord>,
    fresh: Option<(u64, std::time::Instant)>,
}

fn actor_name(actor: Option<&VerifiedToken>) -> String {
    match actor {
        Some(a) => format!("token:{}", a.id()),
        None => "system".to_owned(),
    }
}

/// Can `actor` see `record`? Only tokens it could have created itself.
fn visible(actor: Option<&VerifiedToken>, record: &TokenRecord) -> bool {
    match actor {
        None => true,
        Some(a) => a.scopes().grants_all(&record.scopes) && a.projects().covers(&record.projects),
    }
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
