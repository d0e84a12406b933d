//! keygate: API tokens for Rust services.
//!
//! Issue, verify, scope, expire, rotate, disable and revoke API tokens, stored in the
//! database your service already runs, checked by a tower layer or axum extractors in front
//! of your routes.
//!
//! # Quick start
//!
//! ```
//! use keygate::{IssueRequest, MemoryStore, RotateRequest, Scope, ScopeSet, ServerKey, TokenManager, VerifyError};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), keygate::Error> {
//! // The server key ("pepper") comes from your secret store; at least 32 bytes.
//! let manager = TokenManager::builder(MemoryStore::new())
//!     .server_key(ServerKey::generate())
//!     .prefix("acme")
//!     .build()?;
//!
//! // Issue: the plaintext is returned once. Show it to the user, then drop it.
//! let issued = manager
//!     .issue(
//!         IssueRequest::new("ci deploy", "alice")
//!             .scopes(ScopeSet::parse(["projects:read", "projects:write"])?),
//!     )
//!     .await?;
//! let token = issued.expose_secret().to_owned();
//! assert!(token.starts_with("acme_"));
//!
//! // Verify a presented token, then check a scope (audited as `authz_fail` if missing).
//! // `?` turns a refusal into `keygate::Error`.
//! let verified = manager.verify(&token).await?;
//! assert_eq!(verified.owner(), "alice");
//! manager.authorize(&verified, &Scope::new("projects:read")?)?;
//!
//! // Rotate with no grace period: the old secret stops working at once.
//! let rotated = manager.rotate(issued.id(), RotateRequest::new()).await?;
//! assert!(matches!(manager.verify(&token).await, Err(VerifyError::RotatedOut)));
//! assert!(manager.verify(rotated.expose_secret()).await.is_ok());
//!
//! // Revoke for good.
//! manager.revoke(issued.id()).await?;
//! assert!(matches!(manager.verify(rotated.expose_secret()).await, Err(VerifyError::Revoked)));
//! # Ok(())
//! # }
//! ```
//!
//! # Security model
//!
//! What keygate guarantees:
//!
//! - **No plaintext at rest.** A store keeps `HMAC-SHA256(server_key, id ‖ 0x00 ‖ secret)`
//!   and the key version, never the secret. A stolen database without the server key does
//!   not yield usable tokens, and cannot be brute-forced offline (256-bit secrets, keyed).
//! - **Shown once.** The plaintext exists in the value returned by `issue`/`rotate`
//!   ([`IssuedToken`], zeroized on drop, redacted `Debug`, no `Display`, no `Clone`, no
//!   serde) and in the request being verified.
//! - **Constant-time comparison** of digests on fixed 32-byte arrays ([`Digest`](digest::Digest)'s
//!   `PartialEq` is constant time).
//! - **Lookup by digest.** Verification finds a token by the keyed digest of the whole
//!   presented token, as GitHub, Stripe and Unkey do, so an unknown id and a wrong secret
//!   are the same miss: one error ([`VerifyError::Unknown`]), the same work, and no timing
//!   difference that would tell whether an id exists.
//! - **Cheap rejection.** Over-long or malformed input and bad checksums are refused before
//!   any store access.
//! - **Fail closed.** A store failure is [`VerifyError::Store`] (503 over HTTP), never a
//!   decision.
//! - **No escalation.** Through [`TokenManager::acting_as`] (and so through the admin API),
//!   a token is bounded by itself on every axis: scopes, projects, owner (another owner's
//!   tokens need `tokens:any-owner`), lifetime, IP ranges, attribution, size, record
//!   version, and self-lockout; see [`manager::delegation`] for the rules.
//! - **IP allowlists fail closed.** A token restricted to client ranges
//!   ([`TokenRecord::allowed_ips`], see [`ip`]) verifies only from inside them, checked after
//!   the digest matched (no oracle); an unknown client address refuses it
//!   ([`VerifyError::IpNotAllowed`]). Forwarding headers count only from configured trusted
//!   proxies.
//! - **Nothing secret in `Debug`, `Display`, serde, errors or audit events.**
//!
//! What it does not do: keep the existence of a caller-chosen id private (ids are global,
//! so a taken one answers "already exists"), transport security (serve over TLS), rate limiting of failed
//! attempts (put a limiter in front), protection against a compromised host process, and
//! zeroization beyond best effort (the key schedule inside the HMAC state and copies made
//! by the allocator, the OS or your HTTP stack are out of its reach).
//!
//! # Where things are
//!
//! The crate root holds what a service needs on day one: [`TokenManager`] and its requests
//! ([`IssueRequest`], [`RotateRequest`], [`TokenUpdate`]) and results ([`IssuedToken`],
//! [`VerifiedToken`], [`TokenRecord`], [`TokenStatus`]), [`TokenId`], [`Scope`],
//! [`ScopeSet`], [`Projects`], [`Expiry`], [`ExpiryPreset`], [`ServerKey`], [`Error`],
//! [`VerifyError`] and the stores ([`MemoryStore`], `SqliteStore`, `PostgresStore`). Every
//! other item is exported once, from its module: [`manager`] (builder, acting as a token,
//! delegation, bulk actions), [`store`] (the trait, filters, pages), [`expiry`] (policy,
//! clocks, expiry notices), [`scope`], [`record`], [`token`], [`digest`], [`error`],
//! [`audit`], [`cache`], and with their features `http`, `tower`, `axum` and `testing`.
//! Durations are [`std::time::Duration`] throughout, as in tokio, tower and sqlx (and never
//! negative); instants are `chrono::DateTime<Utc>`.
//!
//! # Features
//!
//! | feature     | adds |
//! |-------------|------|
//! | (none)      | the core: [`TokenManager`], [`MemoryStore`], scopes, expiry, audit |
//! | `sqlite`    | `SqliteStore` (embedded default), `store::connect` by URL |
//! | `postgres`  | `PostgresStore` (several instances, cross-instance invalidation), `store::connect` by URL |
//! | `tower`     | the `RequireToken` layer |
//! | `axum`      | extractors, rejection, the admin router (implies `tower`) |
//! | `console`   | the web console, `Keygate::console` (implies `axum`) |
//! | `leak-report` | `axum::leak_report`: an unauthenticated endpoint where leaked tokens are reported and revoked, rate limited per client IP (implies `axum`) |
//! | `serde`     | `Serialize`/`Deserialize` for public data types (never secrets) |
//! | `metrics`   | verification outcomes and latencies through the `metrics` facade (`keygate::metrics` names them) |
//! | `test-util` | `keygate::testing`, the store conformance suite (not semver-stable) |
//!
//! A feature only adds API; it never changes default behaviour.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audit;
pub mod cache;
pub mod digest;
pub mod error;
pub mod expiry;
pub mod ip;
pub mod manager;
pub mod record;
pub mod scope;
pub mod store;
pub mod token;

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "console")]
pub mod console;
#[cfg(feature = "tower")]
pub mod http;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "test-util")]
pub mod testing;
#[cfg(feature = "tower")]
pub mod tower;

// The paved path: what a service needs on day one. Everything else is exported once, from
// its module.
pub use digest::server_key::ServerKey;
pub use error::kinds::{Error, VerifyError};
pub use expiry::preset::{Expiry, ExpiryPreset};
pub use manager::requests::{IssueRequest, RotateRequest, TokenUpdate};
pub use manager::token_manager::TokenManager;
pub use manager::tokens::{IssuedToken, VerifiedToken};
pub use record::token::{TokenRecord, TokenStatus};
pub use scope::set::{Projects, Scope, ScopeSet};
pub use store::memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use store::postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use store::sqlite::SqliteStore;
pub use token::id::TokenId;
