//! Pruning: deleting the records of tokens that ended long ago, in bounded batches.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{TokenManager, VerifiedToken, actor_name};
use crate::audit::{AuditEvent, AuditKind};
use crate::error::{AccessError, Error};
use crate::scope::Scope;

/// Default number of records one [`TokenManager::prune`] batch deletes.
pub const DEFAULT_PRUNE_BATCH: u64 = 1000;

/// What a [`TokenManager::prune`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PruneReport {
    /// Records that ended strictly before this instant were pruned (`now - older_than`).
    pub cutoff: DateTime<Utc>,
    /// How many records were deleted.
    pub deleted: u64,
    /// How many batches deleted something (one audit event each).
    pub batches: u64,
}

impl TokenManager {
    /// The cutoff of `older_than`: now (by the manager's clock) minus `older_than`.
    fn prune_cutoff(&self, older_than: Duration) -> Result<DateTime<Utc>, Error> {
        crate::expiry::signed(older_than)
            .and_then(|d| self.now().checked_sub_signed(d))
            .ok_or(Error::InvalidField {
                field: "older_than",
                reason: "out of range",
            })
    }

    /// How many records [`prune`](Self::prune) with this `older_than` would delete now: the
    /// records that ended (were revoked, or expired) more than `older_than` ago and whose
    /// rotation grace, if any, also ended more than `older_than` ago, as
    /// [`TokenRecord::is_prunable`](crate::TokenRecord::is_prunable) states at the cutoff
    /// `now - older_than`.
    pub async fn prunable(&self, older_than: Duration) -> Result<u64, Error> {
        let cutoff = self.prune_cutoff(older_than)?;
        Ok(self.inner.store.count_prunable(cutoff).await?)
    }

    /// Deletes the records that ended more than `older_than` ago (see
    /// [`prunable`](Self::prunable) for the rule), at most `batch` per store call, calling
    /// again until a batch comes back short.
    ///
    /// The cutoff is fixed once, at the start (so the loop ends even while tokens keep
    /// expiring). Each batch is one [`TokenStore::prune`](crate::store::TokenStore::prune)
    /// call, which the SQL stores run as one transaction: no lock is held longer than a
    /// batch, and a failure leaves the batches before it done. Each batch that deleted
    /// something is one audit event, [`AuditKind::Pruned`] with its count (actor
    /// `system`), and drops the verification cache, so that no cached verification
    /// outlives its record. `batch` must be at least 1.
    pub async fn prune(&self, older_than: Duration, batch: u64) -> Result<PruneReport, Error> {
        self.prune_as(None, older_than, batch).await
    }

    pub(super) async fn prune_as(
        &self,
        actor: Option<&VerifiedToken>,
        older_than: Duration,
        batch: u64,
    ) -> Result<PruneReport, Error> {
        if batch == 0 {
            return Err(Error::InvalidField {
                field: "batch",
                reason: "must be at least 1",
            });
        }
        if let Some(actor) = actor {
            self.require_admin(actor)?;
        }
        let cutoff = self.prune_cutoff(older_than)?;
        let mut report = PruneReport {
            cutoff,
            deleted: 0,
            batches: 0,
        };
        loop {
            let deleted = self.inner.store.prune(cutoff, batch).await?;
            if deleted > 0 {
                self.invalidate_all();
                super::observe::pruned(deleted);
                report.deleted += deleted;
                report.batches += 1;
                self.audit(
                    AuditEvent::new(AuditKind::Pruned { deleted }, self.now())
                        .actor(Some(actor_name(actor))),
                );
            }
            if deleted < batch {
                return Ok(report);
            }
        }
    }

    pub(super) async fn prunable_as(
        &self,
        actor: &VerifiedToken,
        older_than: Duration,
    ) -> Result<u64, Error> {
        self.require_admin(actor)?;
        self.prunable(older_than).await
    }

    /// Pruning concerns every owner's tokens: only a `*` token may do it.
    fn require_admin(&self, actor: &VerifiedToken) -> Result<(), Error> {
        if actor.scopes().is_admin() {
            return Ok(());
        }
        let e = AccessError::MissingScope(Scope::admin());
        self.deny(actor, &e);
        Err(Error::Escalation(e))
    }
}
