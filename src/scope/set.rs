//! [`Scope`], [`ScopeSet`] and [`Projects`], exported at the crate root.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use super::{ANY_OWNER, ProjectId, check_scope};
use crate::error::{AccessError, Error};

/// A validated scope string, e.g. `projects:read`, `projects:*` or `*`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(Arc<str>);

impl Scope {
    /// The super-admin scope `*`.
    pub fn admin() -> Self {
        Scope("*".into())
    }

    /// The cross-owner grant [`ANY_OWNER`] (`tokens:any-owner`).
    pub fn any_owner() -> Self {
        Scope(ANY_OWNER.into())
    }

    /// Validates a scope string.
    ///
    /// ```
    /// # use keygate::Scope;
    /// assert!(Scope::new("projects:read").is_ok());
    /// assert!(Scope::new("projects:*").is_ok());
    /// assert!(Scope::new("projects:*:read").is_err());
    /// assert!(Scope::new("Projects").is_err());
    /// ```
    pub fn new(scope: impl AsRef<str>) -> Result<Self, Error> {
        let s = scope.as_ref();
        validate_scope(s).map_err(Error::InvalidScope)?;
        Ok(Scope(s.into()))
    }

    /// The scope as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `true` for the super-admin scope `*`.
    pub fn is_admin(&self) -> bool {
        &*self.0 == "*"
    }

    /// `true` if this scope ends in a `*` wildcard (including `*` itself).
    pub fn is_wildcard(&self) -> bool {
        self.0.ends_with('*')
    }

    /// Does holding `self` grant `required`?
    ///
    /// Exact scopes grant only themselves. `p:*` grants every scope that starts with `p:`
    /// followed by at least one more segment (a wildcard included, so `projects:*` grants
    /// `projects:read:*`). `*` grants everything.
    pub fn grants(&self, required: &Scope) -> bool {
        match self.0.strip_suffix('*') {
            None => self.0 == required.0,
            // `*` alone: everything.
            Some("") => true,
            // `p:*`: the required scope must be `p:` plus at least one character, which by
            // validation means at least one more segment.
            Some(prefix_with_colon) => {
                required.0.len() > prefix_with_colon.len()
                    && required.0.starts_with(prefix_with_colon)
            }
        }
    }
}

fn validate_scope(s: &str) -> Result<(), &'static str> {
    check_scope(s)
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({:?})", &*self.0)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Scope {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Scope::new(s)
    }
}

impl TryFrom<&str> for Scope {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self, Error> {
        Scope::new(s)
    }
}

impl AsRef<str> for Scope {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A set of scopes held by a token (sorted, without duplicates).
///
/// Cheap to clone: the scopes sit behind one shared allocation.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ScopeSet(Arc<[Scope]>);

impl Default for ScopeSet {
    fn default() -> Self {
        ScopeSet(Arc::from(Vec::new()))
    }
}

impl ScopeSet {
    /// An empty set (grants nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses and validates each scope string.
    ///
    /// ```
    /// # use keygate::ScopeSet;
    /// let set = ScopeSet::parse(["projects:*", "tokens:read"]).unwrap();
    /// assert!(set.grants(&"projects:write".parse().unwrap()));
    /// assert!(!set.grants(&"tokens:write".parse().unwrap()));
    /// ```
    pub fn parse<I, S>(scopes: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        scopes.into_iter().map(Scope::new).collect()
    }

    /// Adds a scope; `false` if it was already present.
    pub fn insert(&mut self, scope: Scope) -> bool {
        match self.0.binary_search(&scope) {
            Ok(_) => false,
            Err(at) => {
                let mut v = self.0.to_vec();
                v.insert(at, scope);
                self.0 = v.into();
                true
            }
        }
    }

    /// Does any scope in the set grant `required`? This is the only scope check.
    pub fn grants(&self, required: &Scope) -> bool {
        self.0.iter().any(|held| held.grants(required))
    }

    /// Does the set grant every scope of `other`? (Used to refuse escalation.)
    pub fn grants_all(&self, other: &ScopeSet) -> bool {
        other.0.iter().all(|s| self.grants(s))
    }

    /// The first scope of `other` this set does not grant.
    pub fn first_missing<'a>(&self, other: &'a ScopeSet) -> Option<&'a Scope> {
        other.0.iter().find(|s| !self.grants(s))
    }

    /// `Ok` if the set grants `required`, else [`AccessError::MissingScope`].
    pub fn require(&self, required: &Scope) -> Result<(), AccessError> {
        if self.grants(required) {
            Ok(())
        } else {
            Err(AccessError::MissingScope(required.clone()))
        }
    }

    /// `true` if the set holds the super-admin scope `*`.
    pub fn is_admin(&self) -> bool {
        self.0.iter().any(Scope::is_admin)
    }

    /// Does the set hold exactly this scope string?
    pub fn contains(&self, scope: &Scope) -> bool {
        self.0.binary_search(scope).is_ok()
    }

    /// Number of scopes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `true` if the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates the scopes in order.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.0.iter().map(|s| s.as_str()))
            .finish()
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<T: IntoIterator<Item = Scope>>(iter: T) -> Self {
        let mut v: Vec<Scope> = iter.into_iter().collect();
        v.sort();
        v.dedup();
        ScopeSet(v.into())
    }
}

/// Which projects a token may act on (Chef Automate, Unleash).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Projects {
    /// Every project.
    #[default]
    All,
    /// Only these projects. An empty set allows no project.
    Only(BTreeSet<ProjectId>),
}

impl Projects {
    /// Restricts to the given project ids (validated).
    pub fn only<I, S>(ids: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Ok(Projects::Only(
            ids.into_iter()
                .map(ProjectId::new)
                .collect::<Result<_, _>>()?,
        ))
    }

    /// May a token with these projects act on `project`?
    pub fn allows(&self, project: &ProjectId) -> bool {
        match self {
            Projects::All => true,
            Projects::Only(set) => set.contains(project),
        }
    }

    /// Is `other` a subset of `self`? (Used to refuse escalation.)
    pub fn covers(&self, other: &Projects) -> bool {
        match (self, other) {
            (Projects::All, _) => true,
            (Projects::Only(_), Projects::All) => false,
            (Projects::Only(mine), Projects::Only(theirs)) => theirs.is_subset(mine),
        }
    }

    /// `Ok` if `project` is allowed, else [`AccessError::ProjectDenied`].
    pub fn require(&self, project: &ProjectId) -> Result<(), AccessError> {
        if self.allows(project) {
            Ok(())
        } else {
            Err(AccessError::ProjectDenied(project.clone()))
        }
    }
}

impl<'a> IntoIterator for &'a ScopeSet {
    type Item = &'a Scope;
    type IntoIter = std::slice::Iter<'a, Scope>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
