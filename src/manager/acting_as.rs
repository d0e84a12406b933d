//! [`ActingAs`]: management on behalf of a verified token.

use super::{
    BulkAction, BulkReport, IssueRequest, IssuedToken, PruneReport, RotateRequest, Selection,
    TokenManager, TokenUpdate, VerifiedToken,
};
use crate::error::Error;
use crate::record::{TokenRecord, TokenStatus};
use crate::store::{Page, PageRequest, TokenFilter};
use crate::token::TokenId;

/// Management on behalf of a verified token. See [`TokenManager::acting_as`].
#[derive(Clone, Debug)]
pub struct ActingAs<'a> {
    pub(super) manager: &'a TokenManager,
    pub(super) actor: VerifiedToken,
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

    /// Like [`TokenManager::prunable`], for a `*` actor only.
    pub async fn prunable(&self, older_than: std::time::Duration) -> Result<u64, Error> {
        self.manager.prunable_as(&self.actor, older_than).await
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
        /// Like [`TokenManager::prune`], for a `*` actor only (pruning concerns every
        /// owner's tokens); any other actor is refused with [`Error::Escalation`].
        fn prune => prune_as(&self, older_than: std::time::Duration, batch: u64) -> Result<PruneReport, Error>;
    }
}
