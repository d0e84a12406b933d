//! Verification: parse, look up by digest, decide, in one fixed order.
//!
//! The order, encoded here and nowhere else:
//!
//! 1. **format**: length bound and parse ([`VerifyError::Malformed`]);
//! 2. **checksum** ([`VerifyError::BadChecksum`]); no store access before this point;
//! 3. **lookup** by the keyed digest under each server-key version, then a constant-time
//!    comparison with the id and key version ([`VerifyError::Unknown`] for an unknown id
//!    and a wrong secret alike);
//! 4. **status**: revoked, disabled;
//! 5. **expiry**, then a rotated-out secret past its **grace** period;
//! 6. **client IP** against the token's allowlist ([`VerifyError::IpNotAllowed`]; only
//!    reachable once the digest matched, so it is no oracle for whether a token exists; a
//!    restricted token and no known client address fails closed);
//! 7. **scope** and project: [`TokenManager::authorize`] and the HTTP layers, on the
//!    [`VerifiedToken`] this returns; the request-time policies still to come (rate limit,
//!    quota) belong after the IP check, in [`TokenManager::verify_with`], so that a refused
//!    request never spends them;
//! 8. only then the side effects: re-hash under the current server key, `last_used_at`,
//!    caching.

use std::sync::Arc;

use subtle::{Choice, ConstantTimeEq};

use super::{TokenManager, VerifiedToken, observe};
use crate::audit::{AuditEvent, AuditKind};
use crate::digest::Digest;
use crate::error::{AccessError, StoreError, VerifyError};
use crate::record::{TokenRecord, TokenStatus};
use crate::scope::{ProjectId, Scope};
use crate::token::TokenId;

impl TokenManager {
    // ----- verification -------------------------------------------------------------------

    /// Verifies a presented token string.
    ///
    /// Order: length bound and parse (no store access for malformed input or a bad
    /// checksum); the digest of the presented token under each server-key version, current
    /// first, each looked up with [`TokenStore::find_by_digest`](crate::store::TokenStore::find_by_digest) (through the cache, if on)
    /// until a record holds it; the digest compared again in constant time, with the id and
    /// the key version; then revoked, disabled, expired, and rotated-out secret past its
    /// grace period. An unknown id and a wrong secret are the same miss
    /// ([`VerifyError::Unknown`]), with the same work. A store failure is
    /// [`VerifyError::Store`], never "invalid". Failures are reported to the audit sink as
    /// `authn_login_fail` (and `authn_token_reuse` for a rotated-out secret).
    ///
    /// Without a client address, a token restricted to IP ranges is refused with
    /// [`VerifyError::IpNotAllowed`]; use [`verify_with`](Self::verify_with) to pass it.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, VerifyError> {
        self.verify_with(token, &VerifyContext::new()).await
    }

    /// Verifies a presented token string for a request described by `ctx` (its client
    /// address), in the order of [`verify`](Self::verify) and then the token's request-time
    /// policy: a client outside the token's [`allowed_ips`](crate::TokenRecord::allowed_ips),
    /// or an unknown client for a restricted token, is [`VerifyError::IpNotAllowed`],
    /// reported as `authz_fail` with the reason `ip_not_allowed`; `last_used_at` is not
    /// touched then.
    ///
    /// ```
    /// # use keygate::{IssueRequest, MemoryStore, ServerKey, TokenManager, VerifyError};
    /// # use keygate::manager::VerifyContext;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let manager = TokenManager::builder(MemoryStore::new()).server_key(ServerKey::generate()).build()?;
    /// let issued = manager
    ///     .issue(IssueRequest::new("ci", "alice").allowed_ips(["10.0.0.0/8".parse()?]))
    ///     .await?;
    /// let inside = VerifyContext::new().client_ip("10.1.2.3".parse()?);
    /// assert!(manager.verify_with(issued.expose_secret(), &inside).await.is_ok());
    /// let outside = VerifyContext::new().client_ip("192.0.2.1".parse()?);
    /// assert!(matches!(
    ///     manager.verify_with(issued.expose_secret(), &outside).await,
    ///     Err(VerifyError::IpNotAllowed)
    /// ));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn verify_with(
        &self,
        token: &str,
        ctx: &VerifyContext,
    ) -> Result<VerifiedToken, VerifyError> {
        let started = observe::start();
        let result = self.verify_presented(token, ctx).await;
        observe::verification(started, &result);
        result
    }

    async fn verify_presented(
        &self,
        token: &str,
        ctx: &VerifyContext,
    ) -> Result<VerifiedToken, VerifyError> {
        let parsed = match self.inner.format.parse(token) {
            Ok(p) => p,
            Err(e) => {
                self.audit_verify_failure(None, &e);
                return Err(e);
            }
        };
        // The id is borrowed from the presented string; it is copied only to report a
        // failure, so a valid verification allocates nothing.
        let result = self.verify_parsed(parsed.id(), parsed.secret(), ctx).await;
        if let Err(e) = &result {
            self.audit_verify_failure(Some(TokenId::from_parsed(&parsed)), e);
        }
        result
    }

    async fn verify_parsed(
        &self,
        id: &str,
        secret: &str,
        ctx: &VerifyContext,
    ) -> Result<VerifiedToken, VerifyError> {
        // The token is found by its digest, not by its id: an unknown id and a wrong secret
        // are then the same miss, doing the same work. One digest per server-key version,
        // the current key first; a valid token stops at the version it was stored under.
        for version in self.inner.keyring.versions_newest_first() {
            let Some(digest) = self.inner.keyring.digest(version, id, secret) else {
                continue;
            };
            if let Some(found) = self.find(&digest).await? {
                if let Some(result) = self
                    .check_found(id, secret, version, &digest, found, ctx)
                    .await
                {
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
            let r = self.lookup(digest).await;
            return Ok(r.map_err(VerifyError::Store)?.map(|record| Found {
                record,
                fresh: None,
            }));
        };
        let cached = cache.get(digest);
        observe::cache_lookup(cached.is_some());
        if let Some(record) = cached {
            return Ok(Some(Found {
                record,
                fresh: None,
            }));
        }
        let epoch = cache.epoch();
        let fetched = std::time::Instant::now();
        let r = self.lookup(digest).await;
        Ok(r.map_err(VerifyError::Store)?.map(|record| Found {
            record,
            fresh: Some((epoch, fetched)),
        }))
    }

    /// The store's answer for `digest`: at once from a store in memory, else awaited.
    async fn lookup(&self, digest: &Digest) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        let store = &self.inner.store;
        let started = observe::start();
        let answer = match store.find_by_digest_ready(digest) {
            Some(answer) => answer,
            None => store.find_by_digest(digest).await,
        };
        observe::store_operation(started, observe::StoreOperation::FindByDigest);
        answer
    }

    /// Decides on a record found by the digest of the presented token under key `version`.
    /// `None`: the record does not hold this digest under this key for this id after all (a
    /// store answering loosely, or a digest collision); it is not accepted.
    async fn check_found(
        &self,
        id: &str,
        secret: &str,
        version: u32,
        digest: &Digest,
        found: Found,
        ctx: &VerifyContext,
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
        if record.id.as_str() != id || !(cur_match || retired.is_some()) {
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
        // Request-time policy, after everything that decides whether the credential is
        // valid and before anything with a side effect.
        if !crate::ip::allows(&record.allowed_ips, ctx.client_ip) {
            return Some(Err(VerifyError::IpNotAllowed));
        }

        if cur_match && version != inner.keyring.current_version() {
            self.rehash(&record, id, secret).await;
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
        if matches!(e, VerifyError::IpNotAllowed) {
            // A valid credential refused by its policy: an authorization failure.
            let mut event = AuditEvent::new(
                AuditKind::AccessDenied {
                    missing: e.code().to_owned(),
                },
                now,
            );
            event.token_id = id;
            self.audit(event);
            return;
        }
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
            .scopes()
            .require(scope)
            .inspect_err(|e| self.deny(token, e))
    }

    /// Checks that a verified token may act on `project`, reporting `authz_fail` if not.
    pub fn authorize_project(
        &self,
        token: &VerifiedToken,
        project: &ProjectId,
    ) -> Result<(), AccessError> {
        token
            .projects()
            .require(project)
            .inspect_err(|e| self.deny(token, e))
    }

    pub(super) fn deny(&self, token: &VerifiedToken, e: &AccessError) {
        self.event(
            AuditKind::AccessDenied {
                missing: e.to_string(),
            },
            token.record(),
            Some(token),
        );
    }
}

/// A record found by digest, and whether it came from the store (with the cache epoch and
/// the instant of the read, to cache it) or from the cache.
struct Found {
    record: Arc<TokenRecord>,
    fresh: Option<(u64, std::time::Instant)>,
}

/// What verification knows about the request besides the token: its client address, for
/// the token's IP allowlist (see [`TokenManager::verify_with`]). The HTTP layers fill it
/// from the connection, and from trusted proxies' forwarding headers when configured (see
/// `keygate::http`, feature `tower`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyContext {
    /// The client's address; `None` when unknown (a restricted token then fails closed).
    pub client_ip: Option<std::net::IpAddr>,
}

impl VerifyContext {
    /// No client address known.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the client address.
    pub fn client_ip(mut self, ip: std::net::IpAddr) -> Self {
        self.client_ip = Some(ip);
        self
    }
}
