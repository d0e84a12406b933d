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
}

impl Default for Limits {
    /// 64 scopes, 256 projects, names of 128 bytes, descriptions of 1024, owners of 128,
    /// 32 metadata entries (keys of 64 bytes, values of 1024), 1000 tokens per bulk call,
    /// request bodies of 64 KiB.
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
    /// Longest name, in bytes.
    name, max_name_bytes;
    /// Longest description, in bytes.
    description, max_description_bytes;
    /// Longest owner or creator, in bytes.
    principal, max_principal_bytes;
    /// Most metadata entries per token.
    metadata_entries, max_metadata_entries;
    /// Longest metadata key, in bytes.
    metadata_key, max_metadata_key_bytes;
    /// Longest metadata value, in bytes.
    metadata_value, max_metadata_value_bytes;
    /// Most tokens one bulk action (or one revocation with children) may change.
    bulk_ids, max_bulk_ids;
    /// Largest request body the admin API reads, in bytes.
    request_body, max_request_body_bytes;
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
        if value.len() > max {
            return Err(crate::Error::TooLarge {
                field,
                max,
                unit: "bytes",
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

    pub(crate) fn check_projects(&self, projects: &Projects) -> Result<(), crate::Error> {
        match projects {
            Projects::All => Ok(()),
            Projects::Only(set) => Self::check_count("projects", set.len(), self.projects),
        }
    }
}
