//! Bulk actions: what to do, to which tokens, and the per-token outcome.

use crate::error::Error;
use crate::store::TokenFilter;
use crate::token::TokenId;

/// A bulk action (Zabbix mass enable/disable; mass revoke).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
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
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
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
