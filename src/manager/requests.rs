//! What callers ask of the manager: issue, rotate, update and bulk requests.

use std::collections::BTreeMap;

use std::time::Duration;

use crate::expiry::ExpiryPreset;
use crate::ip::IpNet;
use crate::scope::{Projects, ScopeSet};
use crate::token::TokenId;

/// What to issue. Create with [`IssueRequest::new`] and refine with the builder methods.
#[derive(Clone, Debug)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct IssueRequest {
    /// A caller-chosen id; generated when `None`. [`RESERVED_IDS`](super::RESERVED_IDS) are refused.
    #[cfg_attr(feature = "serde", serde(default))]
    pub id: Option<TokenId>,
    /// Human-readable name (required; at most 128 characters by default [`Limits`](crate::record::Limits)).
    pub name: String,
    /// Description (at most 1024 characters by default).
    #[cfg_attr(feature = "serde", serde(default))]
    pub description: String,
    /// The user or service the token acts for (required, at most 128 characters by default).
    /// Acting as a token, only that token's owner unless it holds
    /// [`tokens:any-owner`](crate::scope::ANY_OWNER).
    pub owner: String,
    /// Who creates it; defaults to `system`. Acting as a token it is always `token:<id>`,
    /// set by keygate: a request that names a creator is refused.
    #[cfg_attr(feature = "serde", serde(default))]
    pub created_by: Option<String>,
    /// Scopes (default: none).
    #[cfg_attr(feature = "serde", serde(default))]
    pub scopes: ScopeSet,
    /// Projects (default: all).
    #[cfg_attr(feature = "serde", serde(default))]
    pub projects: Projects,
    /// Metadata (at most 32 entries by default).
    #[cfg_attr(feature = "serde", serde(default))]
    pub metadata: BTreeMap<String, String>,
    /// The client ranges the token may be used from (default: empty, any client). Stored
    /// normalised (see [`crate::ip`]); at most 32 by default. Acting as a restricted token,
    /// each range must lie inside one of the actor's own.
    #[cfg_attr(feature = "serde", serde(default))]
    pub allowed_ips: Vec<IpNet>,
    /// Expiry. `None` (the default): 30 days, or, acting as a token that expires sooner,
    /// that token's own expiry.
    #[cfg_attr(feature = "serde", serde(default))]
    pub expiry: Option<ExpiryPreset>,
    /// `false` creates the token disabled (Zabbix's "enabled" checkbox unticked): it exists,
    /// refuses verification as disabled, and can be enabled later. Default `true`.
    #[cfg_attr(feature = "serde", serde(default = "enabled_by_default"))]
    pub enabled: bool,
}

#[cfg(feature = "serde")]
fn enabled_by_default() -> bool {
    true
}

impl IssueRequest {
    /// A request for a token named `name` acting for `owner`, with no scopes, all projects,
    /// and the default expiry ([`DEFAULT_EXPIRY`](super::DEFAULT_EXPIRY), 30 days).
    pub fn new(name: impl Into<String>, owner: impl Into<String>) -> Self {
        IssueRequest {
            id: None,
            name: name.into(),
            description: String::new(),
            owner: owner.into(),
            created_by: None,
            scopes: ScopeSet::new(),
            projects: Projects::All,
            metadata: BTreeMap::new(),
            allowed_ips: Vec::new(),
            expiry: None,
            enabled: true,
        }
    }

    /// Uses this id instead of a generated one.
    pub fn id(mut self, id: TokenId) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Sets the creator (not accepted when acting as a token).
    pub fn created_by(mut self, who: impl Into<String>) -> Self {
        self.created_by = Some(who.into());
        self
    }

    /// Sets the scopes.
    pub fn scopes(mut self, scopes: ScopeSet) -> Self {
        self.scopes = scopes;
        self
    }

    /// Sets the projects.
    pub fn projects(mut self, projects: Projects) -> Self {
        self.projects = projects;
        self
    }

    /// Adds a metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Sets the expiry.
    pub fn expiry(mut self, expiry: ExpiryPreset) -> Self {
        self.expiry = Some(expiry);
        self
    }

    /// Restricts the token to clients inside these ranges (see [`crate::ip`]).
    pub fn allowed_ips(mut self, ranges: impl IntoIterator<Item = IpNet>) -> Self {
        self.allowed_ips = ranges.into_iter().collect();
        self
    }

    /// Creates the token disabled (`enabled: false`); enable it later with
    /// [`TokenManager::enable`](crate::TokenManager::enable).
    pub fn disabled(mut self) -> Self {
        self.enabled = false;
        self
    }
}

/// How to rotate ("regenerate") a token.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct RotateRequest {
    /// How long the old secret stays valid (default zero: it stops at once). At most 30 days.
    pub grace: Duration,
    /// A new expiry; `None` keeps the current one.
    pub expiry: Option<ExpiryPreset>,
    /// End the grace period of the last rotation's secret now, if it still runs (without
    /// this, such a rotation is refused).
    pub end_grace: bool,
    /// The record version the caller read; another stored version refuses the rotation
    /// with [`Error::VersionMismatch`](crate::Error::VersionMismatch). `None`: rotate whatever version is stored.
    pub expected_version: Option<u64>,
}

impl RotateRequest {
    /// Rotation with no grace period, keeping the expiry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the grace period of the old secret.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Sets a new expiry.
    pub fn expiry(mut self, expiry: ExpiryPreset) -> Self {
        self.expiry = Some(expiry);
        self
    }

    /// Ends a running grace period of the previous secret (see [`TokenManager::rotate`](crate::TokenManager::rotate)).
    pub fn end_grace(mut self) -> Self {
        self.end_grace = true;
        self
    }

    /// Rotates only if the stored record is at `version`.
    pub fn expected_version(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }
}

/// A change to a token's settings; `None` fields are left as they are.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct TokenUpdate {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New scopes (replacing the old set).
    pub scopes: Option<ScopeSet>,
    /// New projects.
    pub projects: Option<Projects>,
    /// New metadata (replacing the old map).
    pub metadata: Option<BTreeMap<String, String>>,
    /// New expiry.
    pub expiry: Option<ExpiryPreset>,
    /// New allowed client ranges (replacing the old list; an empty list lifts the
    /// restriction, which a restricted acting token may not do).
    pub allowed_ips: Option<Vec<IpNet>>,
    /// The record version the caller read; another stored version refuses the change with
    /// [`Error::VersionMismatch`](crate::Error::VersionMismatch). `None`: change whatever version is stored.
    pub expected_version: Option<u64>,
}

impl TokenUpdate {
    /// An empty change.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Sets the description.
    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.description = Some(d.into());
        self
    }
    /// Sets the scopes.
    pub fn scopes(mut self, scopes: ScopeSet) -> Self {
        self.scopes = Some(scopes);
        self
    }
    /// Sets the projects.
    pub fn projects(mut self, projects: Projects) -> Self {
        self.projects = Some(projects);
        self
    }
    /// Replaces the metadata.
    pub fn metadata(mut self, metadata: BTreeMap<String, String>) -> Self {
        self.metadata = Some(metadata);
        self
    }
    /// Sets the expiry.
    pub fn expiry(mut self, expiry: ExpiryPreset) -> Self {
        self.expiry = Some(expiry);
        self
    }
    /// Replaces the allowed client ranges (empty: any client).
    pub fn allowed_ips(mut self, ranges: impl IntoIterator<Item = IpNet>) -> Self {
        self.allowed_ips = Some(ranges.into_iter().collect());
        self
    }
    /// Applies the change only if the stored record is at `version`.
    pub fn expected_version(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }
}
