//! What goes with a [`TokenRecord`] (at the crate root, with [`TokenStatus`]): the chain of
//! retired secrets, and the size [`Limits`] the manager enforces on what a record holds.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::digest::StoredDigest;
use crate::scope::{Projects, ScopeSet};

pub(crate) mod token;

pub(crate) use token::{TokenRecord, TokenStatus};

/// Most retired secrets a record keeps (see [`TokenRecord::retired`]).
pub const MAX_RETIRED_SECRETS: usize = 8;

/// The digest of a secret replaced by a rotation, and when it stops being accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RetiredSecret {
    /// Digest of the old secret.
    pub digest: StoredDigest,
    /// The old secret is accepted strictly before this instant (the end of its rotation
    /// grace period). Using it at or after this instant is reported as `authn_token_reuse`.
    pub valid_until: DateTime<Utc>,
}

/// Size limits on what a token may hold and what one call may touch, enforced by the
/// [`TokenManager`](crate::TokenManager) for every store and every front end. Set them with
/// [`TokenManagerBuilder::limits`](crate::manager::TokenManagerBuilder::limits).
///
/// A request over a limit fails with [`Error::TooLarge`](crate::Error::TooLarge), naming
/// the limit, and changes nothing. Token ids are at most 64 characters by their format.
///
/// ```
/// use keygate::record::Limits;
/// let limits = Limits::default().scopes(16).projects(32);
/// assert_eq!(limits.max_scopes(), 16);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Limits {
    scopes: usize,
    projects: usize,
    name: usize,
    description: usize,
    principal: usize,
    metadata_entries: usize,
    metadata_key: usize,
    metadata_value: usize,
    bulk_ids: usize,
    request_body: usize,
    allowed_ips: usize,
}

impl Default for Limits {
    /// 64 scopes, 256 projects, names of 128 characters, descriptions of 1024, owners of
    /// 128, 32 metadata entries (keys of 64 characters, values of 1024), 1000 tokens per
    /// bulk call, request bodies of 64 KiB, 32 allowed IP ranges per token.
    fn default() -> Self {
        Limits {
            scopes: 64,
            projects: 256,
            name: 128,
            description: 1024,
            principal: 128,
            metadata_entries: 32,
            metadata_key: 64,
            metadata_value: 1024,
            bulk_ids: 1000,
            request_body: 64 * 1024,
            allowed_ips: 32,
        }
    }
}

macro_rules! limit_accessors {
    ($( $(#[$m:meta])* $field:ident, $getter:ident; )*) => {
        impl Limits {
            $(
                $(#[$m])*
                pub fn $field(mut self, max: usize) -> Self {
                    self.$field = max;
                    self
                }

                $(#[$m])*
                pub fn $getter(&self) -> usize {
                    self.$field
                }
            )*

            /// Every limit must be at least 1.
            pub(crate) fn validate(&self) -> Result<(), crate::Error> {
                if [$(self.$field),*].contains(&0) {
                    return Err(crate::Error::InvalidConfig("every limit must be at least 1"));
                }
                Ok(())
            }
        }
    };
}

limit_accessors! {
    /// Most scopes per token.
    scopes, max_scopes;
    /// Most projects per token.
    projects, max_projects;
    /// Longest name, in characters (Unicode scalar values).
    name, max_name_chars;
    /// Longest description, in characters.
    description, max_description_chars;
    /// Longest owner or creator, in characters.
    principal, max_principal_chars;
    /// Most metadata entries per token.
    metadata_entries, max_metadata_entries;
    /// Longest metadata key, in characters.
    metadata_key, max_metadata_key_chars;
    /// Longest metadata value, in characters.
    metadata_value, max_metadata_value_chars;
    /// Most tokens one bulk action (or one revocation with children) may change.
    bulk_ids, max_bulk_ids;
    /// Largest request body the admin API reads, in bytes.
    request_body, max_request_body_bytes;
    /// Most allowed IP ranges ([`TokenRecord::allowed_ips`]) per token.
    allowed_ips, max_allowed_ips;
}

impl Limits {
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
        // Characters, as JSON Schema's `maxLength` counts them (a UTF-8 character takes at
        // most 4 bytes, so a store column needs 4 bytes per character).
        if value.chars().nth(max).is_some() {
            return Err(crate::Error::TooLarge {
                field,
                max,
                unit: "characters",
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

    pub(crate) fn check_count(
        field: &'static str,
        n: usize,
        max: usize,
    ) -> Result<(), crate::Error> {
        if n > max {
            return Err(crate::Error::TooLarge {
                field,
                max,
                unit: "entries",
            });
        }
        Ok(())
    }

    pub(crate) fn check_metadata(&self, md: &BTreeMap<String, String>) -> Result<(), crate::Error> {
        Self::check_count("metadata", md.len(), self.metadata_entries)?;
        for (k, v) in md {
            Self::check_text("metadata key", k, self.metadata_key, true)?;
            Self::check_text("metadata value", v, self.metadata_value, false)?;
        }
        Ok(())
    }

    pub(crate) fn check_scopes(&self, scopes: &ScopeSet) -> Result<(), crate::Error> {
        Self::check_count("scopes", scopes.len(), self.scopes)
    }

    pub(crate) fn check_allowed_ips(&self, ips: &[crate::ip::IpNet]) -> Result<(), crate::Error> {
        Self::check_count("allowed_ips", ips.len(), self.allowed_ips)
    }

    pub(crate) fn check_projects(&self, projects: &Projects) -> Result<(), crate::Error> {
        match projects {
            Projects::All => Ok(()),
            Projects::Only(set) => Self::check_count("projects", set.len(), self.projects),
        }
    }
}

/// What people are shown of a token: the one JSON shape of a record, shared by the admin API
/// and the command line's `--json`. Never a digest; the newest retired secret only while its
/// grace period runs.
///
/// ```
/// # use keygate::{IssueRequest, MemoryStore, ServerKey, TokenManager};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), keygate::Error> {
/// # let manager = TokenManager::builder(MemoryStore::new()).server_key(ServerKey::generate()).build()?;
/// let issued = manager.issue(IssueRequest::new("ci", "alice")).await?;
/// let view = keygate::record::TokenView::new(issued.record(), manager.now());
/// let json = serde_json::to_value(&view).expect("serializable");
/// assert_eq!(json["owner"], "alice");
/// assert_eq!(json["projects"], "*");
/// assert!(json.get("digest").is_none());
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "serde")]
#[derive(Clone, Debug, serde::Serialize)]
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema))]
pub struct TokenView<'a> {
    /// The id.
    pub id: &'a crate::TokenId,
    /// The name.
    pub name: &'a str,
    /// The description.
    pub description: &'a str,
    /// Who the token acts for.
    pub owner: &'a str,
    /// Who created it.
    pub created_by: &'a str,
    /// Creation instant.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When the current secret was issued (creation or the last rotation).
    pub secret_issued_at: DateTime<Utc>,
    /// The expiry instant; `null` for never.
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether the expiry has passed (at the instant the view was made).
    pub expired: bool,
    /// `active`, `disabled` or `revoked`.
    pub status: TokenStatus,
    /// The scopes.
    pub scopes: &'a ScopeSet,
    /// `"*"` for all projects, or the list.
    pub projects: &'a Projects,
    /// Free-form metadata.
    pub metadata: &'a BTreeMap<String, String>,
    /// The CIDR ranges the token may be used from; empty for any client.
    #[cfg_attr(feature = "axum", schema(value_type = Vec<String>, example = json!(["10.0.0.0/8", "2001:db8::/32"])))]
    pub allowed_ips: &'a [crate::ip::IpNet],
    /// Last successful verification (may lag by the touch interval).
    pub last_used_at: Option<DateTime<Utc>>,
    /// Until when the previous secret is still accepted, while a rotation's grace period runs.
    pub previous_secret_valid_until: Option<DateTime<Utc>>,
    /// The record version (the `ETag` of the admin API).
    pub version: u64,
}

#[cfg(feature = "serde")]
impl<'a> TokenView<'a> {
    /// The view of `r` at `now`.
    pub fn new(r: &'a TokenRecord, now: DateTime<Utc>) -> Self {
        TokenView {
            id: &r.id,
            name: &r.name,
            description: &r.description,
            owner: &r.owner,
            created_by: &r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
            secret_issued_at: r.secret_issued_at,
            expires_at: r.expiry.at(),
            expired: r.expiry.is_expired_at(now),
            status: r.status,
            scopes: &r.scopes,
            projects: &r.projects,
            metadata: &r.metadata,
            allowed_ips: &r.allowed_ips,
            last_used_at: r.last_used_at,
            previous_secret_valid_until: r
                .retired
                .first()
                .map(|p| p.valid_until)
                .filter(|until| *until > now),
            version: r.version,
        }
    }
}
