//! What goes with the [`TokenManager`] (at the crate root, with its request and token types):
//! its builder, management on behalf of a token ([`ActingAs`] and the [`delegation`] rules),
//! bulk actions, and the manager's constants.

mod acting_as;
mod bulk;
pub mod delegation;
mod leak;
mod lifecycle;
mod notify;
pub(crate) mod observe;
mod prune;
pub(crate) mod requests;
pub(crate) mod token_manager;
pub(crate) mod tokens;
mod touch;
mod verify;

pub use acting_as::ActingAs;
pub use bulk::{BulkAction, BulkReport, Selection};
pub use leak::MAX_LEAK_REPORT_TOKENS;
pub use prune::{DEFAULT_PRUNE_BATCH, PruneReport};
pub(crate) use requests::{IssueRequest, RotateRequest, TokenUpdate};
pub(crate) use token_manager::TokenManager;
pub(crate) use tokens::{IssuedToken, VerifiedToken};
pub use verify::VerifyContext;

use token_manager::Inner;
use touch::Toucher;

use std::fmt;
use std::sync::Arc;

use std::time::Duration;

use crate::audit::AuditSink;
use crate::cache::{CacheConfig, VerifyCache};
use crate::digest::{Keyring, ServerKey};
use crate::error::Error;
use crate::expiry::{Clock, ExpiryPolicy, ExpiryPreset};
use crate::record::Limits;
use crate::store::TokenStore;
use crate::token::{TokenFormat, TokenId};

/// Default interval between two `last_used_at` writes for one token.
pub const DEFAULT_TOUCH_INTERVAL: Duration = Duration::from_secs(60);
/// Ids no new token may take: the admin API's routes use them (`/self`, `/bulk`, `/prune`),
/// so a token with such an id could not be addressed by id.
pub const RESERVED_IDS: [&str; 3] = ["self", "bulk", "prune"];
/// The expiry of a token issued without one.
pub const DEFAULT_EXPIRY: ExpiryPreset = ExpiryPreset::Days30;
/// Longest rotation grace period accepted.
pub const MAX_ROTATION_GRACE: Duration = Duration::from_secs(30 * 86_400);
/// Retries of an idempotent change (enable, disable, revoke, update) after a version conflict.
const CONFLICT_RETRIES: usize = 8;

/// Configures a [`TokenManager`]. Start with [`TokenManager::builder`].
pub struct TokenManagerBuilder {
    store: Arc<dyn TokenStore>,
    keyring: Option<Keyring>,
    format: TokenFormat,
    policy: ExpiryPolicy,
    clock: Arc<dyn Clock>,
    audit: Arc<dyn AuditSink>,
    touch_interval: Duration,
    touch_timeout: Duration,
    cache: Option<CacheConfig>,
    limits: Limits,
    error: Option<Error>,
}

impl fmt::Debug for TokenManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenManagerBuilder")
            .field("keyring", &self.keyring)
            .field("format", &self.format)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl TokenManagerBuilder {
    /// Uses a single server key as key version 1.
    pub fn server_key(mut self, key: ServerKey) -> Self {
        self.keyring = Some(Keyring::new(1, key));
        self
    }

    /// Uses a versioned keyring (for server-key rotation).
    pub fn keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// Sets the token prefix (default `kg`); see [`TokenFormat::new`] for the rules.
    pub fn prefix(mut self, prefix: &str) -> Self {
        match TokenFormat::new(prefix).and_then(|f| f.with_secret_chars(self.format.secret_chars()))
        {
            Ok(f) => self.format = f,
            Err(e) => self.error = Some(e),
        }
        self
    }

    /// Sets the whole token format (prefix and secret length).
    pub fn format(mut self, format: TokenFormat) -> Self {
        self.format = format;
        self
    }

    /// Sets the expiry policy (default: unrestricted).
    pub fn expiry_policy(mut self, policy: ExpiryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the clock (default: [`SystemClock`](crate::expiry::SystemClock)).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Sets the audit sink (default: [`TracingSink`](crate::audit::TracingSink)).
    pub fn audit_sink(mut self, sink: impl AuditSink) -> Self {
        self.audit = Arc::new(sink);
        self
    }

    /// Sets the minimum interval between two `last_used_at` writes per token (default 60 s).
    pub fn touch_interval(mut self, interval: Duration) -> Self {
        self.touch_interval = interval;
        self
    }

    /// Sets how long one background `last_used_at` write may take before it is abandoned
    /// (default 5 s; must be above zero). A store that hangs then holds at most one pending
    /// write per token verified within this time. The write needs the tokio time driver
    /// (`enable_time`, which `#[tokio::main]` turns on).
    pub fn touch_timeout(mut self, timeout: Duration) -> Self {
        self.touch_timeout = timeout;
        self
    }

    /// Turns on the verification cache (off by default); see [`crate::cache`] for the
    /// staleness bound.
    pub fn cache(mut self, config: CacheConfig) -> Self {
        self.cache = Some(config);
        self
    }

    /// Sets the size limits (default: [`Limits::default`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Builds the manager. Fails if no server key was given or a setting was invalid.
    pub fn build(self) -> Result<TokenManager, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.limits.validate()?;
        let keyring = self.keyring.ok_or(Error::InvalidServerKey(
            "a server key is required (TokenManagerBuilder::server_key)",
        ))?;
        let interval = crate::expiry::signed(self.touch_interval)
            .ok_or(Error::InvalidConfig("touch interval out of range"))?;
        if self.touch_timeout.is_zero() {
            return Err(Error::InvalidConfig("touch timeout must be above zero"));
        }
        Ok(TokenManager {
            inner: Arc::new(Inner {
                store: self.store,
                keyring,
                format: self.format,
                policy: self.policy,
                clock: self.clock,
                audit: self.audit,
                touch: Toucher::new(interval, self.touch_timeout),
                cache: self.cache.map(VerifyCache::new),
                limits: self.limits,
            }),
            guard_admin: true,
        })
    }
}

/// Who acts: `token:<id>` for an acting token, `system` for the manager itself.
fn actor_name(actor: Option<&VerifiedToken>) -> String {
    actor.map_or_else(|| "system".to_owned(), |a| actor_name_of(a.id()))
}

/// The `created_by` of tokens created by the token `id`.
fn actor_name_of(id: &TokenId) -> String {
    format!("token:{id}")
}
