//! [`TokenManager`], exported at the crate root.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{
    ActingAs, DEFAULT_TOUCH_INTERVAL, TokenManagerBuilder, Toucher, VerifiedToken, actor_name,
};
use crate::audit::{AuditEvent, AuditKind, AuditSink, TracingSink};
use crate::cache::VerifyCache;
use crate::digest::Keyring;
use crate::expiry::{Clock, ExpiryPolicy, SystemClock};
use crate::record::{Limits, TokenRecord};
use crate::store::{PageRequest, TokenFilter, TokenStore};
use crate::token::{TokenFormat, TokenId};

/// Issues, verifies and manages API tokens over a [`TokenStore`].
///
/// Cheap to clone (an `Arc` inside); share one per process.
#[derive(Clone)]
pub struct TokenManager {
    pub(super) inner: Arc<Inner>,
    /// Refuse changes that would leave no active `*` token (off only through
    /// [`TokenManager::allowing_no_admin`]).
    pub(super) guard_admin: bool,
}

pub(super) struct Inner {
    pub(super) store: Arc<dyn TokenStore>,
    pub(super) keyring: Keyring,
    pub(super) format: TokenFormat,
    pub(super) policy: ExpiryPolicy,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) audit: Arc<dyn AuditSink>,
    pub(super) touch: Toucher,
    pub(super) cache: Option<VerifyCache>,
    pub(super) limits: Limits,
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
            touch_timeout: super::touch::DEFAULT_TOUCH_TIMEOUT,
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
    /// [`delegation`](super::delegation) module states. A change beyond the actor's bounds is refused with
    /// [`Error::Escalation`](crate::Error::Escalation); tokens outside its reach are reported as not found.
    ///
    /// Which operations an actor may perform at all (e.g. requiring `tokens:write`) is the
    /// caller's policy; the admin router of feature `axum` enforces one.
    pub fn acting_as(&self, actor: &VerifiedToken) -> ActingAs<'_> {
        ActingAs {
            manager: self,
            actor: actor.clone(),
        }
    }

    /// Checks every server key of the keyring against the fingerprint the store keeps for
    /// its version, keeping the fingerprint of a version the store has none for: call it
    /// once at startup, before serving.
    ///
    /// Returns [`Error::ServerKeyMismatch`](crate::Error::ServerKeyMismatch) for the first
    /// version whose key differs from the one first checked against this store (the
    /// fingerprints are compared in constant time; they reveal nothing of the keys), and a
    /// store error if the store cannot be reached. A store that keeps no fingerprints
    /// ([`TokenStore::claim_key_fingerprint`] answers `None`) passes unchecked.
    ///
    /// The first check against a store that already holds tokens trusts the key it is given:
    /// the store had no fingerprint to compare with.
    pub async fn check_server_keys(&self) -> Result<(), crate::Error> {
        let keyring = &self.inner.keyring;
        for version in keyring.versions() {
            let Some(mine) = keyring.fingerprint(version) else {
                continue;
            };
            let kept = self
                .inner
                .store
                .claim_key_fingerprint(version, &mine)
                .await?;
            if kept.is_some_and(|kept| kept != mine) {
                return Err(crate::Error::ServerKeyMismatch(version));
            }
        }
        Ok(())
    }

    /// Whether any token's current secret is digested under server-key `version`: if not,
    /// that key can be dropped from the keyring without a token stopping to verify (a
    /// rotated-out secret still in its grace period under it would end its grace early).
    /// One listing of at most one record.
    pub async fn key_in_use(&self, version: u32) -> Result<bool, crate::Error> {
        let filter = TokenFilter::new().key_version(version);
        let page = PageRequest {
            limit: 1,
            after: None,
        };
        let found = self.inner.store.list(&filter, &page).await?;
        Ok(!found.items.is_empty())
    }

    /// How many tokens have their current secret digested under each server-key version,
    /// for the versions that have any (what [`key_in_use`](Self::key_in_use) answers for one
    /// version, counted). Walks every record, a page at a time: an operator's question, not
    /// a request path's.
    pub async fn tokens_per_key_version(
        &self,
    ) -> Result<std::collections::BTreeMap<u32, u64>, crate::Error> {
        let mut counts = std::collections::BTreeMap::new();
        let mut page = PageRequest::first(crate::store::MAX_PAGE_LIMIT);
        loop {
            let found = self.inner.store.list(&TokenFilter::new(), &page).await?;
            for r in &found.items {
                *counts.entry(r.digest.key_version).or_insert(0) += 1;
            }
            match found.next {
                Some(next) => page = page.next(next),
                None => return Ok(counts),
            }
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

    pub(super) fn audit(&self, event: AuditEvent) {
        self.inner.audit.record(&event);
    }

    pub(super) fn event(
        &self,
        kind: AuditKind,
        record: &TokenRecord,
        actor: Option<&VerifiedToken>,
    ) {
        self.audit(
            AuditEvent::new(kind, self.now())
                .token(&record.id)
                .owner(&record.owner)
                .actor(Some(actor_name(actor))),
        );
    }
}
