//! Error types: [`Error`] for management operations, [`VerifyError`] for verification,
//! [`StoreError`] for storage backends.
//!
//! None of these ever carries a token, a secret, a server key or a digest: their `Display`
//! and `Debug` output is safe to log.

pub(crate) mod kinds;

pub(crate) use kinds::{Error, VerifyError};

/// A boxed error source, kept so that backend failures never lose their cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failure of a [`TokenStore`](crate::store::TokenStore).
///
/// A store error is never treated as "invalid token": verification fails closed with
/// [`VerifyError::Store`], and the HTTP adapters answer 503.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// `insert` was called with an id that already exists.
    #[error("a token with this id already exists")]
    AlreadyExists,
    /// `update` was called for an id that does not exist.
    #[error("no token with this id")]
    NotFound,
    /// `update` was called with a version that is no longer current (a concurrent writer won).
    #[error("the token was changed concurrently (version conflict)")]
    Conflict,
    /// The backend failed (I/O, connection, timeout, corrupt row, ...). The cause is kept.
    #[error("token store backend failed")]
    Backend(#[source] BoxError),
}

impl StoreError {
    /// Wraps any backend error, keeping it as the [`source`](std::error::Error::source).
    pub fn backend(err: impl Into<BoxError>) -> Self {
        StoreError::Backend(err.into())
    }
}

/// A required scope or project was not granted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// The token does not hold this scope.
    #[error("missing scope `{0}`")]
    MissingScope(crate::scope::Scope),
    /// The token may not act on this project.
    #[error("token may not act on project `{0}`")]
    ProjectDenied(crate::scope::ProjectId),
    /// The requested projects are not a subset of the token's own.
    #[error("projects beyond the acting token's own")]
    ProjectsNotCovered,
    /// The acting token may manage only its own owner's tokens: another owner needs the
    /// [`tokens:any-owner`](crate::scope::ANY_OWNER) scope.
    #[error("tokens of another owner need the `tokens:any-owner` scope")]
    OtherOwner,
    /// The requested expiry is later than the acting token's own (or `never` from a token
    /// that expires).
    #[error("expiry beyond the acting token's own")]
    BeyondLifetime,
    /// The requested allowed IP ranges are not each inside one of the acting token's own
    /// (or lift the restriction altogether, from a restricted token).
    #[error("allowed IP ranges beyond the acting token's own")]
    IpsNotCovered,
}
