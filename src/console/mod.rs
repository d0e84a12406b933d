//! The web console (feature `console`): the seeds' API-token pages, server-rendered, to
//! mount in an axum service.
//!
//! ```no_run
//! use keygate::axum::Keygate;
//! use keygate::console::{ConsoleConfig, ScopeEntry};
//! # async fn run(keygate: Keygate) -> Result<(), Box<dyn std::error::Error>> {
//! let config = ConsoleConfig::new()
//!     .scope(ScopeEntry::new("projects:read", "Read projects", "Projects"))
//!     .scope(ScopeEntry::new("projects:write", "Change projects", "Projects"))
//!     .project("website", "Website");
//! let app: axum::Router = axum::Router::new().nest("/console", keygate.console(config)?);
//! # Ok(()) }
//! ```
//!
//! # Pages
//!
//! Tokens (filters by name, owner, creator, status, expiry window, project and scope; cursor
//! pages of 50, newest first; one-click status toggle; mass enable, disable and revoke with a
//! confirmation and the per-token result), My tokens (the signed-in person's own), Create
//! (name, optional id checked as typed and on submit, description, owner, expiry presets with
//! the policy's cap, super admin or scopes from the application's catalogue, templates,
//! projects, enabled), Shown once, Details (edit, status, regenerate with a new expiry and a
//! grace period, revoke, delete, recent activity) and Sign in.
//!
//! # Rules
//!
//! - **Delegation is the manager's.** Every action runs through
//!   [`TokenManager::acting_as`](crate::TokenManager::acting_as) for the operator's token, so
//!   owner, lifetime, scopes, projects, size limits and the last admin are bounded exactly as
//!   in the admin API. The console adds only: self-service sees and changes only tokens of
//!   the signed-in owner, and scopes can be granted only from the catalogue (or kept, when a
//!   token already holds them).
//! - **Who is signed in** is the host's decision through [`Operators`]. Without one, the
//!   console signs people in by a pasted token that grants [`CONSOLE_SCOPE`]; it acts with
//!   that token's rights, as an operator if it also grants `tokens:read` and `tokens:write`,
//!   else in self-service (`tokens:self`). The token stays on the server, in the session;
//!   the browser holds a random session id in the `__Host-keygate-console` cookie (Secure,
//!   HttpOnly, SameSite=Strict, `Path=/`; browsers accept Secure cookies over TLS and on
//!   loopback). A session ends at sign out, after [`ConsoleConfig::session_lifetime`], or
//!   when the token ends (it is verified on every request: expired, disabled or revoked
//!   ends the session). Signing in starts a new session id. Sessions live in the process's
//!   memory (bounded): with several instances, route a person to one instance, or use
//!   [`Operators`].
//! - **CSRF**: every form, the sign-in form included, carries the session's synchronizer
//!   token in a hidden `csrf` field; a POST without it or with another answers 403 and
//!   changes nothing.
//! - **Headers**: every page has `Content-Security-Policy: default-src 'none'; script-src
//!   'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none';
//!   base-uri 'none'` (no `unsafe-inline`), `Referrer-Policy: no-referrer`,
//!   `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff` and `Cache-Control:
//!   no-store`.
//! - **Shown once**: a new or regenerated token is kept in the session and the browser is
//!   redirected (303) to a page that shows it once and forgets it: a reload or Back shows
//!   "cannot be viewed again". No token is ever in a URL, a redirect, or a log.
//! - **Bad input** re-shows the form with the error at the field; nothing is written.
//! - **Templates escape**: pages are written with [maud](https://maud.lambda.xyz), whose
//!   `html!` escapes every interpolated value unless wrapped in `PreEscaped` (the console
//!   never does), checked at compile time, with no template files to ship or load. (askama
//!   escapes too; maud was chosen for its compile-time checked markup inside the Rust code,
//!   with no separate files.)
//! - **Without JavaScript** everything works (confirmations are pages); the embedded
//!   script adds confirm dialogs, copy buttons, template ticking and the id check as typed.
//!   Assets are embedded in the crate: no CDN, no build step.

use std::sync::Arc;
use std::time::Duration;

use ::axum::Router;
use ::axum::http::request::Parts;

use crate::audit::ActivityQuery;
use crate::axum::Keygate;
use crate::error::Error;
use crate::manager::VerifiedToken;
use crate::scope::{ProjectId, Scope, ScopeSet};

mod handlers;
mod pages;
mod session;

/// The scope a token needs for the default sign-in (`tokens:*` and `*` include it).
pub const CONSOLE_SCOPE: &str = "tokens:console";

/// How a signed-in person uses the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Manages every token within the operator's reach.
    Operator,
    /// Manages only the tokens of its own owner ("My tokens").
    SelfService,
}

/// Who makes a request: a name to show, the token whose rights they act with, and the mode.
#[derive(Clone, Debug)]
pub struct Operator {
    name: String,
    actor: VerifiedToken,
    mode: Mode,
}

impl Operator {
    /// `name` (shown in the header) acting with `actor`'s rights, in `mode`.
    pub fn new(name: impl Into<String>, actor: VerifiedToken, mode: Mode) -> Self {
        Operator {
            name: name.into(),
            actor,
            mode,
        }
    }
    /// The name shown.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The token whose rights every action uses.
    pub fn actor(&self) -> &VerifiedToken {
        &self.actor
    }
    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }
}

/// The host's sign-in: who makes a request. Implement it to put the console inside the
/// application's own user system; the person acts with the rights of the token returned
/// (for example one the application issued for that user and verified from its own
/// storage), through [`TokenManager::acting_as`](crate::TokenManager::acting_as).
#[async_trait::async_trait]
pub trait Operators: Send + Sync + 'static {
    /// The operator making this request, or `None` if nobody is signed in. An error is
    /// answered with 503.
    async fn operator(&self, request: &Parts) -> Result<Option<Operator>, Error>;
    /// Where to send a person who is not signed in (the application's sign-in page).
    fn sign_in_url(&self) -> String;
}

/// A scope of the application's catalogue: what the create and edit forms offer.
#[derive(Clone, Debug)]
pub struct ScopeEntry {
    scope: String,
    label: String,
    group: String,
    description: String,
}

impl ScopeEntry {
    /// `scope` shown as `label` in the group `group` (a resource, as Devtron's "Apps").
    pub fn new(
        scope: impl Into<String>,
        label: impl Into<String>,
        group: impl Into<String>,
    ) -> Self {
        ScopeEntry {
            scope: scope.into(),
            label: label.into(),
            group: group.into(),
            description: String::new(),
        }
    }
    /// A longer description, shown under the label.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }
}

/// A named bundle of catalogue scopes (Unleash's admin / client / frontend kinds).
#[derive(Clone, Debug)]
pub struct ScopeTemplate {
    name: String,
    scopes: Vec<String>,
}

impl ScopeTemplate {
    /// A template `name` granting `scopes`.
    pub fn new<I, S>(name: impl Into<String>, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ScopeTemplate {
            name: name.into(),
            scopes: scopes.into_iter().map(Into::into).collect(),
        }
    }
}

/// What the console offers and how it signs people in. Checked by
/// [`Keygate::console`].
#[derive(Clone)]
pub struct ConsoleConfig {
    title: String,
    scopes: Vec<ScopeEntry>,
    templates: Vec<ScopeTemplate>,
    projects: Vec<(String, String)>,
    operators: Option<Arc<dyn Operators>>,
    activity: Option<Arc<dyn ActivityQuery>>,
    session_lifetime: Duration,
    max_sessions: usize,
}

impl std::fmt::Debug for ConsoleConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleConfig")
            .field("title", &self.title)
            .field("scopes", &self.scopes)
            .field("templates", &self.templates)
            .finish_non_exhaustive()
    }
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl ConsoleConfig {
    /// No catalogue, no projects list, token sign-in, sessions of at most 8 hours.
    pub fn new() -> Self {
        ConsoleConfig {
            title: "API tokens".to_owned(),
            scopes: Vec::new(),
            templates: Vec::new(),
            projects: Vec::new(),
            operators: None,
            activity: None,
            session_lifetime: Duration::from_secs(8 * 3600),
            max_sessions: 10_000,
        }
    }
    /// The title in the header (default "API tokens").
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }
    /// Adds a scope to the catalogue.
    pub fn scope(mut self, entry: ScopeEntry) -> Self {
        self.scopes.push(entry);
        self
    }
    /// Adds a template (its scopes must be in the catalogue).
    pub fn template(mut self, template: ScopeTemplate) -> Self {
        self.templates.push(template);
        self
    }
    /// Adds a project the forms offer.
    pub fn project(mut self, id: impl Into<String>, label: impl Into<String>) -> Self {
        self.projects.push((id.into(), label.into()));
        self
    }
    /// Signs people in through the host's [`Operators`] instead of pasted tokens.
    pub fn operators(mut self, operators: impl Operators) -> Self {
        self.operators = Some(Arc::new(operators));
        self
    }
    /// Where the details page reads a token's recent activity (for example a
    /// [`MemoryActivity`](crate::audit::MemoryActivity) that is also the manager's audit sink).
    pub fn activity(mut self, activity: impl ActivityQuery) -> Self {
        self.activity = Some(Arc::new(activity));
        self
    }
    /// The longest a token sign-in session lasts (default 8 hours; never beyond the
    /// token's own expiry).
    pub fn session_lifetime(mut self, lifetime: Duration) -> Self {
        self.session_lifetime = lifetime;
        self
    }
}

/// A catalogue scope, checked.
#[derive(Clone, Debug)]
pub(crate) struct CatalogueScope {
    scope: Scope,
    label: String,
    group: String,
    description: String,
}

/// The checked configuration a console router runs with.
pub(crate) struct Console {
    keygate: Keygate,
    title: String,
    catalogue: Vec<CatalogueScope>,
    templates: Vec<(String, ScopeSet)>,
    projects: Vec<(ProjectId, String)>,
    operators: Option<Arc<dyn Operators>>,
    activity: Option<Arc<dyn ActivityQuery>>,
    session_lifetime: chrono::Duration,
    sessions: session::Sessions,
}

impl Console {
    fn build(keygate: Keygate, config: ConsoleConfig) -> Result<Console, Error> {
        let mut catalogue = Vec::new();
        for e in config.scopes {
            let scope = Scope::new(&e.scope)?;
            if catalogue.iter().any(|c: &CatalogueScope| c.scope == scope) {
                return Err(Error::InvalidConfig(
                    "console: a catalogue scope is listed twice",
                ));
            }
            catalogue.push(CatalogueScope {
                scope,
                label: e.label,
                group: e.group,
                description: e.description,
            });
        }
        let mut templates = Vec::new();
        for t in config.templates {
            let set = ScopeSet::parse(&t.scopes)?;
            if set.iter().any(|s| !catalogue.iter().any(|c| &c.scope == s)) {
                return Err(Error::InvalidConfig(
                    "console: a template names a scope that is not in the catalogue",
                ));
            }
            if t.name.trim().is_empty() {
                return Err(Error::InvalidConfig("console: a template needs a name"));
            }
            templates.push((t.name, set));
        }
        let mut projects = Vec::new();
        for (id, label) in config.projects {
            projects.push((ProjectId::new(&id)?, label));
        }
        let lifetime = chrono::Duration::from_std(config.session_lifetime)
            .ok()
            .filter(|d| *d > chrono::Duration::zero() && *d <= chrono::Duration::days(30))
            .ok_or(Error::InvalidConfig(
                "console: the session lifetime must be between 1 s and 30 days",
            ))?;
        Ok(Console {
            keygate,
            title: config.title,
            catalogue,
            templates,
            projects,
            operators: config.operators,
            activity: config.activity,
            session_lifetime: lifetime,
            sessions: session::Sessions::new(config.max_sessions),
        })
    }
}

impl Keygate {
    /// The web console, to [`nest`](::axum::Router::nest) where it should answer:
    /// `.nest("/console", keygate.console(config)?)`. See [`crate::console`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`], [`Error::InvalidScope`] or [`Error::InvalidProject`] for
    /// a catalogue scope that is invalid or listed twice, a template with a scope outside
    /// the catalogue or without a name, an invalid project id, or a session lifetime outside
    /// 1 s to 30 days.
    ///
    /// ```
    /// # use keygate::{MemoryStore, ServerKey, TokenManager};
    /// # use keygate::axum::Keygate;
    /// use keygate::console::{ConsoleConfig, ScopeEntry, ScopeTemplate};
    /// # let keygate = Keygate::new(TokenManager::builder(MemoryStore::new())
    /// #     .server_key(ServerKey::generate()).build().unwrap());
    /// let ok = ConsoleConfig::new().scope(ScopeEntry::new("apps:read", "Read apps", "Apps"));
    /// assert!(keygate.console::<()>(ok).is_ok());
    /// let typo = ConsoleConfig::new().scope(ScopeEntry::new("Apps:read", "Read apps", "Apps"));
    /// assert!(keygate.console::<()>(typo).is_err());
    /// let stray = ConsoleConfig::new().template(ScopeTemplate::new("client", ["apps:read"]));
    /// assert!(keygate.console::<()>(stray).is_err());
    /// ```
    pub fn console<S>(&self, config: ConsoleConfig) -> Result<Router<S>, Error>
    where
        S: Clone + Send + Sync + 'static,
    {
        let console = Console::build(self.clone(), config)?;
        Ok(handlers::router(Arc::new(console)))
    }
}
