//! [`TokenRecord`]: everything a store keeps about a token. Never the plaintext.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};

use crate::digest::StoredDigest;
use crate::expiry::Expiry;
use crate::scope::{Projects, ScopeSet};
use crate::token::TokenId;

/// The lifecycle state of a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
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

/// Most retired secrets a record keeps (see [`TokenRecord::retired`]).
pub const MAX_RETIRED_SECRETS: usize = 8;

/// The digest of a secret replaced by a rotation, and when it stops being accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetiredSecret {
    /// Digest of the old secret.
    pub digest: StoredDigest,
    /// The old secret is accepted strictly before this instant (the end of its rotation
    /// grace period). Using it at or after this instant is reported as `authn_token_reuse`.
    pub valid_until: DateTime<Utc>,
}

/// Everything a store keeps about one token.
///
/// Stores persist every field and give it back unchanged (timestamps at microsecond
/// precision). The record holds digests, never the secret; its `Debug` output redacts them.
#[derive(Clone, Debug, PartialEq)]
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
    /// [`ExpiryPolicy`](crate::ExpiryPolicy) lifetime cap counts from here, whatever
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
    /// Digest of the current secret and its key version.
    pub digest: StoredDigest,
    /// Secrets replaced by rotations, newest first, at most [`MAX_RETIRED_SECRETS`]. A
    /// store finds the record by any of their digests, so that using any retired secret
    /// is recognised (`authn_token_reuse`) rather than unknown. At most the newest one can
    /// still be inside its grace period: a rotation while a grace period runs must end it.
    pub retired: Vec<RetiredSecret>,
    /// Last successful verification (updated at most once per interval; may lag).
    pub last_used_at: Option<DateTime<Utc>>,
    /// Optimistic-concurrency version: starts at 1, incremented by every `update`.
    pub version: u64,
}

/// Limits on the free-form text fields.
pub mod limits {
    /// Longest `name`, in bytes.
    pub const NAME_MAX: usize = 128;
    /// Longest `description`, in bytes.
    pub const DESCRIPTION_MAX: usize = 1024;
    /// Longest `owner` or `created_by`, in bytes.
    pub const PRINCIPAL_MAX: usize = 128;
    /// Most metadata entries.
    pub const METADATA_ENTRIES_MAX: usize = 32;
    /// Longest metadata key, in bytes.
    pub const METADATA_KEY_MAX: usize = 64;
    /// Longest metadata value, in bytes.
    pub const METADATA_VALUE_MAX: usize = 1024;
}

pub(crate) fn check_text(
    field: &'static str,
    value: &str,
    max: usize,
    required: bool,
) -> Result<(), crate::Error> {
    if required && value.trim().is_empty() {
        return Err(crate::Error::InvalidField {
            field,
            reason: "must not be empty",
        });
    }
    if value.len() > max {
        return Err(crate::Error::InvalidField {
            field,
            reason: "too long",
        });
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(crate::Error::InvalidField {
            field,
            reason: "must not contain control characters",
        });
    }
    Ok(())
}

pub(crate) fn check_metadata(md: &BTreeMap<String, String>) -> Result<(), crate::Error> {
    use limits::*;
    if md.len() > METADATA_ENTRIES_MAX {
        return Err(crate::Error::InvalidField {
            field: "metadata",
            reason: "at most 32 entries",
        });
    }
    for (k, v) in md {
        check_text("metadata key", k, METADATA_KEY_MAX, true)?;
        check_text("metadata value", v, METADATA_VALUE_MAX, false)?;
    }
    Ok(())
}
