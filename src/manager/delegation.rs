//! Delegation: what a token acting on tokens may do, on every axis of a token.
//!
//! [`TokenManager::acting_as`](crate::TokenManager::acting_as) applies these rules to every
//! operation, so the admin API, the console, the command line and an application's own code
//! inherit the same ones. An acting token (the *actor*):
//!
//! - **Scopes and projects**: never grants a scope or a project it does not hold.
//! - **Owner**: creates tokens only for its own owner, and sees and manages only its owner's
//!   tokens, unless it holds [`tokens:any-owner`](crate::scope::ANY_OWNER) (which `tokens:*`
//!   and `*` include). Rotating another owner's token, and so receiving its secret, needs it.
//! - **Lifetime**: never creates a token, or moves a token's expiry (its own included),
//!   beyond its own expiry; `never` only from a token that never expires. Rotating a token
//!   that outlives the actor needs a new expiry within the actor's. The
//!   [`ExpiryPolicy`](crate::expiry::ExpiryPolicy) cap counts from issue or the last rotation
//!   (`TokenRecord::secret_issued_at`), whatever updates happen.
//! - **Request-time policy (IP ranges)**: a token restricted to client ranges
//!   ([`TokenRecord::allowed_ips`](crate::TokenRecord::allowed_ips)) gives a token it creates
//!   or updates only ranges each inside one of its own, never an empty list (any client);
//!   an unrestricted token may set any list. Updates that leave the list alone are not
//!   checked on this axis.
//! - **Attribution**: `created_by` is `token:<actor id>`, set by keygate; a request that
//!   names a creator is refused.
//! - **Visibility**: sees only tokens it could have created itself as far as owner, scopes
//!   and projects go: its owner's (or any, with the grant), scopes it grants, projects it
//!   covers. Others are "not found", and a listing pushes these bounds into the store's
//!   query ([`TokenFilter::within`](crate::store::TokenFilter::within)), so a page costs
//!   O(page). Lifetime bounds what it writes, not what it sees: a token sees its owner's
//!   longer-lived tokens (and may disable or revoke them), but cannot rotate one without
//!   bringing its expiry within its own.
//! - **Size**: the manager's [`Limits`](crate::record::Limits) hold for everyone.
//! - **Concurrency**: updates and rotations may name the version they expect; a stale one
//!   changes nothing.
//! - **Self-lockout**: a bulk action by filter never selects the actor itself, and no
//!   change may leave the store without an active `*` token unless made through
//!   [`TokenManager::allowing_no_admin`](crate::TokenManager::allowing_no_admin).
//!
//! Ids are global: creating a token with an id that exists answers "already exists" even if
//! the existing token is outside the actor's reach (see SECURITY.md).

use crate::error::AccessError;
use crate::expiry::Expiry;
use crate::ip::IpNet;
use crate::manager::VerifiedToken;
use crate::scope::{Projects, Scope, ScopeSet};
use crate::store::Reach;

/// What a request would give a token, on the axes the actor bounds. `None`: unchanged.
#[derive(Default)]
pub(super) struct Grant<'a> {
    pub(super) owner: Option<&'a str>,
    pub(super) scopes: Option<&'a ScopeSet>,
    pub(super) projects: Option<&'a Projects>,
    pub(super) expiry: Option<&'a Expiry>,
    pub(super) allowed_ips: Option<&'a [IpNet]>,
}

impl<'a> Grant<'a> {
    pub(super) fn expiry(expiry: &'a Expiry) -> Self {
        Grant {
            expiry: Some(expiry),
            ..Grant::default()
        }
    }
}

/// The tokens `actor` may see and manage: those it could have created.
pub(super) fn reach(actor: &VerifiedToken) -> Reach {
    let any_owner = actor.scopes().grants(&Scope::any_owner());
    Reach::new(
        (!any_owner).then(|| actor.owner().to_owned()),
        actor.scopes().clone(),
        actor.projects().clone(),
    )
}

/// `Ok` if `actor` may give a token what `grant` asks.
pub(super) fn check(actor: &VerifiedToken, grant: &Grant<'_>) -> Result<(), AccessError> {
    if let Some(missing) = grant.scopes.and_then(|s| actor.scopes().first_missing(s)) {
        return Err(AccessError::MissingScope(missing.clone()));
    }
    if grant.projects.is_some_and(|p| !actor.projects().covers(p)) {
        return Err(AccessError::ProjectsNotCovered);
    }
    if let Some(owner) = grant.owner {
        if owner != actor.owner() && !actor.scopes().grants(&Scope::any_owner()) {
            return Err(AccessError::OtherOwner);
        }
    }
    if grant.expiry.is_some_and(|e| !actor.expiry().covers(e)) {
        return Err(AccessError::BeyondLifetime);
    }
    if grant
        .allowed_ips
        .is_some_and(|ips| !crate::ip::covers(&actor.record().allowed_ips, ips))
    {
        return Err(AccessError::IpsNotCovered);
    }
    Ok(())
}
