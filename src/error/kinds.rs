//! [`Error`] and [`VerifyError`], exported at the crate root.

use super::{AccessError, StoreError};
use crate::token::TokenId;

/// Why a presented token was not accepted.
///
/// Every variant but [`VerifyError::Store`] and [`VerifyError::IpNotAllowed`] means "this
/// credential is not valid"; over HTTP they all become the same `401 invalid_token` so that
/// callers learn nothing from the difference. Applications and audit logs get the precise
/// reason.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Not a token of this issuer: wrong prefix, bad characters, bad lengths, too long.
    #[error("malformed token")]
    Malformed,
    /// Well-formed, but the checksum does not match (a typo or a truncated copy).
    #[error("token checksum mismatch")]
    BadChecksum,
    /// No token matches: its id is unknown, or its secret is not the token's current or
    /// previous one. The two are one case on purpose: verification finds a token by the
    /// digest of the whole presented token, so it cannot tell (and timing cannot reveal)
    /// whether the id exists.
    #[error("unknown token")]
    Unknown,
    /// The token has been revoked.
    #[error("token revoked")]
    Revoked,
    /// The token is disabled.
    #[error("token disabled")]
    Disabled,
    /// The token's expiry has passed.
    #[error("token expired")]
    Expired,
    /// The secret was replaced by a rotation and its grace period is over. This is reported
    /// to the audit sink as `authn_token_reuse`.
    #[error("token secret was rotated out")]
    RotatedOut,
    /// The token is valid, but restricted to IP ranges
    /// ([`TokenRecord::allowed_ips`](crate::TokenRecord::allowed_ips)) that do not hold the
    /// client's address, or the client's address is unknown. Decided only after the digest
    /// matched, so it says nothing about tokens that do not exist; over HTTP a 403
    /// `ip_not_allowed`, reported to the audit sink as `authz_fail`.
    #[error("client address not allowed for this token")]
    IpNotAllowed,
    /// The store failed; nothing was decided. Fail closed.
    #[error("token store unavailable")]
    Store(#[source] StoreError),
}

impl VerifyError {
    /// `true` for every "this credential is not valid" reason, `false` for store failures
    /// and for a valid token refused by its IP allowlist.
    pub fn is_invalid_token(&self) -> bool {
        !matches!(self, VerifyError::Store(_) | VerifyError::IpNotAllowed)
    }

    /// A short, stable, lower-case code for logs and metrics (`"unknown"`, `"revoked"`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::Malformed => "malformed",
            VerifyError::BadChecksum => "bad_checksum",
            VerifyError::Unknown => "unknown",
            VerifyError::Revoked => "revoked",
            VerifyError::Disabled => "disabled",
            VerifyError::Expired => "expired",
            VerifyError::RotatedOut => "rotated_out",
            VerifyError::IpNotAllowed => "ip_not_allowed",
            VerifyError::Store(_) => "store_unavailable",
        }
    }
}

/// An error from a management operation of [`TokenManager`](crate::TokenManager) or from
/// validating input (ids, scopes, prefixes, server keys, expiry).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A token id is not valid (1 to 64 lower-case letters, digits, `-` or `_`).
    #[error("invalid token id: {0}")]
    InvalidId(&'static str),
    /// A scope string is not valid.
    #[error("invalid scope: {0}")]
    InvalidScope(&'static str),
    /// A project id is not valid (same rule as token ids).
    #[error("invalid project id: {0}")]
    InvalidProject(&'static str),
    /// The token prefix is not valid.
    #[error("invalid token prefix: {0}")]
    InvalidPrefix(&'static str),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// A server key (pepper) is too short or cannot be decoded.
    #[error("invalid server key: {0}")]
    InvalidServerKey(&'static str),
    /// The store keeps another fingerprint for this server-key version than the key this
    /// manager holds: the service was started with another key (pepper) than the one its
    /// tokens were issued under, so none of them would verify. Found by
    /// [`TokenManager::check_server_keys`](crate::TokenManager::check_server_keys).
    #[error(
        "server key version {0} is not the key this store's tokens were issued under \
         (the store keeps another fingerprint for it): start with the original key, or \
         rotate to a new version and keep the original as a previous key"
    )]
    ServerKeyMismatch(u32),
    /// An expiry string or value is not valid.
    #[error("invalid expiry: {0}")]
    InvalidExpiry(String),
    /// A text field (name, description, owner, metadata) is not valid.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// The field name.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A request is over one of the manager's [`Limits`](crate::record::Limits); nothing
    /// was changed.
    #[error("{field}: at most {max} {unit} allowed")]
    TooLarge {
        /// What is too large (`scopes`, `projects`, `name`, `ids`, ...).
        field: &'static str,
        /// The limit.
        max: usize,
        /// What the limit counts (`entries`, `characters`, `tokens`).
        unit: &'static str,
    },
    /// A bulk action's filter selects more tokens than one call may change
    /// ([`Limits::max_bulk_ids`](crate::record::Limits::max_bulk_ids)); nothing was changed.
    /// The request is well formed but the current tokens do not allow it: narrow the
    /// filter, or act in several calls.
    #[error("the filter selects more than {max} tokens; narrow it")]
    TooManyMatches {
        /// The limit.
        max: usize,
    },
    /// The requested expiry violates the [`ExpiryPolicy`](crate::expiry::ExpiryPolicy).
    #[error("expiry policy violated: {0}")]
    Policy(String),
    /// No token with this id (or none visible to the acting token).
    #[error("token `{0}` not found")]
    NotFound(TokenId),
    /// A token with this id already exists.
    #[error("token `{0}` already exists")]
    AlreadyExists(TokenId),
    /// The token changed concurrently; re-read and retry.
    #[error("token `{0}` was changed concurrently")]
    Conflict(TokenId),
    /// The change named the record version it expected
    /// ([`TokenUpdate::expected_version`](crate::TokenUpdate::expected_version),
    /// [`RotateRequest::expected_version`](crate::RotateRequest::expected_version)) and the
    /// stored record has another one: nothing was changed.
    #[error("token `{id}` is no longer at the expected version {expected}")]
    VersionMismatch {
        /// The token.
        id: TokenId,
        /// The version the caller expected.
        expected: u64,
    },
    /// The change would leave the store without an active token holding `*`, after which
    /// only direct store access could manage tokens. Refused unless made through
    /// [`TokenManager::allowing_no_admin`](crate::TokenManager::allowing_no_admin).
    #[error("token `{0}` is the last active `*` token")]
    LastAdmin(TokenId),
    /// The operation is not allowed in the token's current state (e.g. enabling a revoked token).
    #[error("token `{id}` is {status}: {reason}")]
    InvalidState {
        /// The token.
        id: TokenId,
        /// Its current status.
        status: crate::record::TokenStatus,
        /// What was refused.
        reason: &'static str,
    },
    /// The acting token tried to grant what it does not hold itself: scopes, projects,
    /// another owner, a longer lifetime.
    #[error("escalation refused: {0}")]
    Escalation(AccessError),
    /// The acting token lacks the scope for this operation.
    #[error("access denied: {0}")]
    Access(AccessError),
    /// The store failed.
    #[error("token store failed")]
    Store(#[source] StoreError),
    /// A presented token was not accepted (from [`VerifyError`] through `?`).
    #[error("token not accepted")]
    Verify(#[source] VerifyError),
}

impl From<VerifyError> for Error {
    /// Keeps the reason as the source; a store failure stays [`Error::Store`].
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Store(e) => Error::Store(e),
            e => Error::Verify(e),
        }
    }
}

impl From<AccessError> for Error {
    /// A missing scope or project of a verified token is [`Error::Access`].
    fn from(e: AccessError) -> Self {
        Error::Access(e)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}
