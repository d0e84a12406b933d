//! What the manager hands back: an issued token (shown once) and a verified one.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::expiry::Expiry;
use crate::record::TokenRecord;
use crate::scope::{Projects, Scope, ScopeSet};
use crate::token::{TokenId, TokenSecret};

/// A freshly issued or rotated token: the record and the plaintext, shown once.
///
/// No `Clone`; `Debug` redacts the secret; the secret is zeroized on drop.
#[derive(Debug)]
pub struct IssuedToken {
    pub(super) record: TokenRecord,
    pub(super) secret: TokenSecret,
}

impl IssuedToken {
    /// The token id.
    pub fn id(&self) -> &TokenId {
        &self.record.id
    }

    /// The stored record (without the secret).
    pub fn record(&self) -> &TokenRecord {
        &self.record
    }

    /// The plaintext token to hand to the user, once.
    pub fn expose_secret(&self) -> &str {
        self.secret.expose_secret()
    }

    /// Splits into the record and the secret.
    pub fn into_parts(self) -> (TokenRecord, TokenSecret) {
        (self.record, self.secret)
    }
}

/// A token that passed verification: who it acts for and what it may do.
///
/// Cheap to clone; holds no secret.
#[derive(Clone)]
pub struct VerifiedToken {
    pub(super) record: Arc<TokenRecord>,
    pub(super) via_previous: bool,
}

impl VerifiedToken {
    /// The token id.
    pub fn id(&self) -> &TokenId {
        &self.record.id
    }
    /// The token name.
    pub fn name(&self) -> &str {
        &self.record.name
    }
    /// The user or service the token acts for.
    pub fn owner(&self) -> &str {
        &self.record.owner
    }
    /// Who created the token.
    pub fn created_by(&self) -> &str {
        &self.record.created_by
    }
    /// The token's scopes.
    pub fn scopes(&self) -> &ScopeSet {
        &self.record.scopes
    }
    /// The token's projects.
    pub fn projects(&self) -> &Projects {
        &self.record.projects
    }
    /// The token's metadata.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.record.metadata
    }
    /// The token's expiry.
    pub fn expiry(&self) -> Expiry {
        self.record.expiry
    }
    /// `true` if the request used the previous secret inside its rotation grace period.
    pub fn used_previous_secret(&self) -> bool {
        self.via_previous
    }
    /// Does the token grant `scope`? A plain query: to decide a request, use
    /// [`TokenManager::authorize`](crate::TokenManager::authorize) (or the axum and tower
    /// helpers built on it), which audits a refusal.
    pub fn grants(&self, scope: &Scope) -> bool {
        self.record.scopes.grants(scope)
    }
    /// The record as it was when verified (digests inside are redacted in `Debug`).
    pub fn record(&self) -> &TokenRecord {
        &self.record
    }
}

impl fmt::Debug for VerifiedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedToken")
            .field("id", &self.record.id)
            .field("owner", &self.record.owner)
            .field("scopes", &self.record.scopes)
            .field("projects", &self.record.projects)
            .field("expiry", &self.record.expiry)
            .field("via_previous", &self.via_previous)
            .finish()
    }
}
