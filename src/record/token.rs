//! [`TokenRecord`] and [`TokenStatus`], exported at the crate root.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};

use super::RetiredSecret;
use crate::digest::StoredDigest;
use crate::expiry::Expiry;
use crate::scope::{Projects, ScopeSet};
use crate::token::TokenId;

/// The lifecycle state of a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema))]
pub enum TokenStatus {
    /// Usable.
    Active,
    /// Temporarily unusable; can be enabled again (Zabbix).
    Disabled,
    /// Permanently unusable; the record is kept for audit.
    Revoked,
}

impl TokenStatus {
    /// `"active"`, `"disabled"` or `"revoked"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            TokenStatus::Active => "active",
            TokenStatus::Disabled => "disabled",
            TokenStatus::Revoked => "revoked",
        }
    }
}

impl fmt::Display for TokenStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TokenStatus {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, crate::Error> {
        match s {
            "active" => Ok(TokenStatus::Active),
            "disabled" => Ok(TokenStatus::Disabled),
            "revoked" => Ok(TokenStatus::Revoked),
            _ => Err(crate::Error::InvalidField {
                field: "status",
                reason: "expected active, disabled or revoked",
            }),
        }
    }
}

/// Everything a store keeps about one token.
///
/// Stores persist every field and give it back unchanged (timestamps at microsecond
/// precision). The record holds digests, never the secret; its `Debug` output redacts them.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TokenRecord {
    /// Public id: the key of every management operation (verification finds a token by its
    /// digest).
    pub id: TokenId,
    /// Human-readable name.
    pub name: String,
    /// Free-form description.
    pub description: String,
    /// The user or service the token acts for.
    pub owner: String,
    /// Who created the token (a user, `system`, or the id of the acting token).
    pub created_by: String,
    /// Creation instant.
    pub created_at: DateTime<Utc>,
    /// Last change to the record (not counting `last_used_at`).
    pub updated_at: DateTime<Utc>,
    /// When the current secret was issued: at creation, or by the last rotation. The
    /// [`ExpiryPolicy`](crate::expiry::ExpiryPolicy) lifetime cap counts from here, whatever
    /// updates happen in between.
    pub secret_issued_at: DateTime<Utc>,
    /// When the token expires.
    pub expiry: Expiry,
    /// Active, disabled or revoked.
    pub status: TokenStatus,
    /// What the token may do.
    pub scopes: ScopeSet,
    /// Which projects it may act on.
    pub projects: Projects,
    /// Free-form string metadata.
    pub metadata: BTreeMap<String, String>,
    /// The client addresses the token may be used from (see [`crate::ip`]): empty for any
    /// client, else only from inside one of these ranges, stored normalised (each range
    /// truncated to its network address, sorted, without duplicates).
    #[cfg_attr(feature = "serde", serde(default))]
    pub allowed_ips: Vec<crate::ip::IpNet>,
    /// Digest of the current secret and its key version.
    pub digest: StoredDigest,
    /// Secrets replaced by rotations, newest first, at most [`MAX_RETIRED_SECRETS`](super::MAX_RETIRED_SECRETS). A
    /// store finds the record by any of their digests, so that using any retired secret
    /// is recognised (`authn_token_reuse`) rather than unknown. At most the newest one can
    /// still be inside its grace period: a rotation while a grace period runs must end it.
    pub retired: Vec<RetiredSecret>,
    /// The last expiry notice sent for this token (by
    /// [`TokenManager::notify_expiring`](crate::TokenManager::notify_expiring)), if any.
    /// Stores keep its window in whole seconds, as [`ExpiryWindows`](crate::expiry::ExpiryWindows)
    /// makes them. Boxed: most records never hold one, and a record in a memory store stays
    /// 24 bytes smaller for it.
    #[cfg_attr(feature = "serde", serde(default))]
    pub expiry_notice: Option<Box<crate::expiry::ExpiryNotice>>,
    /// Last successful verification (updated at most once per interval; may lag).
    pub last_used_at: Option<DateTime<Utc>>,
    /// Optimistic-concurrency version: starts at 1, incremented by every `update`.
    pub version: u64,
}
