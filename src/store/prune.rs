//! When a record may be pruned: the rule every [`TokenStore`](super::TokenStore) follows in
//! [`prune`](super::TokenStore::prune) and [`count_prunable`](super::TokenStore::count_prunable).

use chrono::{DateTime, Utc};

use crate::record::{TokenRecord, TokenStatus};

impl TokenRecord {
    /// The reference rule of pruning, which every store must follow: is this record
    /// finished, and was it finished strictly before `cutoff`?
    ///
    /// A record is prunable at `cutoff` when both hold:
    ///
    /// - it **ended** before `cutoff`: it is revoked and its `updated_at` (the instant of the
    ///   revocation, since a revoked record is never changed again) is before `cutoff`, or it
    ///   has an expiry before `cutoff` (whatever its status: an expired token, active or
    ///   disabled, never verifies again);
    /// - **no retired secret's grace lasts** until `cutoff`: every
    ///   [`RetiredSecret::valid_until`](crate::record::RetiredSecret::valid_until) is before
    ///   `cutoff`. A record whose rotation grace was still running at the cutoff is kept, so
    ///   that a late use of its old secret is still recognised (and audited as
    ///   `authn_token_reuse`) for the whole retention period after the grace ends.
    ///
    /// "Before" is strict: a record that ended exactly at `cutoff` is kept. Active and disabled
    /// tokens that have not expired, and tokens that never expire and are not revoked, are
    /// never prunable. The managers call this with `cutoff = now - older_than`.
    pub fn is_prunable(&self, cutoff: DateTime<Utc>) -> bool {
        let revoked_before = self.status == TokenStatus::Revoked && self.updated_at < cutoff;
        let expired_before = self.expiry.at().is_some_and(|at| at < cutoff);
        (revoked_before || expired_before) && self.retired.iter().all(|r| r.valid_until < cutoff)
    }
}
