//! The lifecycle of tokens: issue, read, list, rotate, change status, revoke with children,
//! delete, update and bulk actions, each for the manager itself or an acting token.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};

use super::delegation::{self, Grant};
use super::{
    BulkAction, BulkReport, CONFLICT_RETRIES, DEFAULT_EXPIRY, IssueRequest, IssuedToken,
    MAX_ROTATION_GRACE, RESERVED_IDS, RotateRequest, Selection, TokenManager, TokenUpdate,
    VerifiedToken, actor_name, actor_name_of,
};
use crate::audit::AuditKind;
use crate::digest::StoredDigest;
use crate::error::{Error, StoreError};
use crate::record::{Limits, MAX_RETIRED_SECRETS, RetiredSecret, TokenRecord, TokenStatus};
use crate::scope::Scope;
use crate::store::{Page, PageRequest, TokenFilter};
use crate::token::{TokenId, TokenRandomness, TokenSecret};

impl TokenManager {
    // ----- management ---------------------------------------------------------------------

    /// Issues a token. The plaintext is in the returned value only.
    ///
    /// Fails with a clear [`Error`] for invalid fields, sizes over the [`Limits`], an expiry
    /// outside the policy, or an id that exists; nothing is stored then.
    pub async fn issue(&self, req: IssueRequest) -> Result<IssuedToken, Error> {
        self.issue_as(None, req).await
    }

    pub(super) async fn issue_as(
        &self,
        actor: Option<&VerifiedToken>,
        req: IssueRequest,
    ) -> Result<IssuedToken, Error> {
        let limits = &self.inner.limits;
        Limits::check_text("name", &req.name, limits.max_name_chars(), true)?;
        Limits::check_text(
            "description",
            &req.description,
            limits.max_description_chars(),
            false,
        )?;
        Limits::check_text("owner", &req.owner, limits.max_principal_chars(), true)?;
        if let Some(c) = &req.created_by {
            Limits::check_text("created_by", c, limits.max_principal_chars(), true)?;
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
        limits.check_allowed_ips(&req.allowed_ips)?;
        let allowed_ips = crate::ip::normalize(&req.allowed_ips);
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
                allowed_ips: Some(&allowed_ips),
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
        // One fetch of OS randomness for the id and the secret.
        let mut rng = TokenRandomness::new();
        let id = req.id.unwrap_or_else(|| TokenId::generate_with(&mut rng));
        let (secret, digest) = self.new_secret(&id, &mut rng)?;
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
            status: if req.enabled {
                TokenStatus::Active
            } else {
                TokenStatus::Disabled
            },
            scopes: req.scopes,
            projects: req.projects,
            metadata: req.metadata,
            allowed_ips,
            digest,
            retired: Vec::new(),
            expiry_notice: None,
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

    fn new_secret(
        &self,
        id: &TokenId,
        rng: &mut TokenRandomness,
    ) -> Result<(TokenSecret, StoredDigest), Error> {
        let (token, secret) = self.inner.format.generate(id, rng)?;
        let digest = self.inner.keyring.digest_current(id.as_str(), &secret);
        Ok((token, digest))
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

    pub(super) async fn get_as(
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

    pub(super) async fn list_as(
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
    /// afterwards fails with [`VerifyError::RotatedOut`](crate::VerifyError::RotatedOut) and is audited as
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

    pub(super) async fn rotate_as(
        &self,
        actor: Option<&VerifiedToken>,
        id: &TokenId,
        req: RotateRequest,
    ) -> Result<IssuedToken, Error> {
        let grace = match crate::expiry::signed(req.grace) {
            Some(grace) if req.grace <= MAX_ROTATION_GRACE => grace,
            _ => {
                return Err(Error::InvalidConfig(
                    "rotation grace must be at most 30 days",
                ));
            }
        };
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
        let (secret, digest) = self.new_secret(id, &mut TokenRandomness::new())?;
        r.retired.insert(
            0,
            RetiredSecret {
                digest: current.digest,
                valid_until: now + grace,
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

    pub(super) async fn set_status_as(
        &self,
        actor: Option<&VerifiedToken>,
        id: &TokenId,
        status: TokenStatus,
    ) -> Result<TokenRecord, Error> {
        self.set_status_report(actor, id, status)
            .await
            .map(|(r, _)| r)
    }

    pub(super) async fn set_status_report(
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

    pub(super) async fn revoke_with_children_as(
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

    pub(super) async fn delete_as(
        &self,
        actor: Option<&VerifiedToken>,
        id: &TokenId,
    ) -> Result<(), Error> {
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

    /// Changes a token's name, description, scopes, projects, metadata, allowed IP ranges or
    /// expiry. Revoked
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

    pub(super) async fn update_as(
        &self,
        actor: Option<&VerifiedToken>,
        id: &TokenId,
        change: TokenUpdate,
    ) -> Result<TokenRecord, Error> {
        let limits = &self.inner.limits;
        if let Some(n) = &change.name {
            Limits::check_text("name", n, limits.max_name_chars(), true)?;
        }
        if let Some(d) = &change.description {
            Limits::check_text("description", d, limits.max_description_chars(), false)?;
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
        if let Some(ips) = &change.allowed_ips {
            limits.check_allowed_ips(ips)?;
        }
        let allowed_ips = change.allowed_ips.as_deref().map(crate::ip::normalize);
        if let Some(actor) = actor {
            let grant = Grant {
                scopes: change.scopes.as_ref(),
                projects: change.projects.as_ref(),
                allowed_ips: allowed_ips.as_deref(),
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
                if let Some(ips) = &allowed_ips {
                    r.allowed_ips.clone_from(ips);
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
    /// At most [`Limits::max_bulk_ids`] tokens per call: more ids are refused with
    /// [`Error::TooLarge`], a filter matching more with [`Error::TooManyMatches`], before
    /// anything changes. Acting as a token,
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

    pub(super) async fn bulk_as(
        &self,
        actor: Option<&VerifiedToken>,
        action: BulkAction,
        selection: Selection,
    ) -> Result<BulkReport, Error> {
        let max = self.inner.limits.max_bulk_ids();
        let ids = match selection {
            Selection::Ids(ids) if ids.len() > max => {
                return Err(Error::TooLarge {
                    field: "ids",
                    max,
                    unit: "tokens",
                });
            }
            Selection::Ids(ids) => ids,
            Selection::Filter(filter) => {
                let mut ids = self.all_ids(actor, &filter, max).await?;
                if ids.len() > max {
                    return Err(Error::TooManyMatches { max });
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
