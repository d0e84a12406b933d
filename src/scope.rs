//! Scopes (what a token may do) and projects (which resources it may touch).
//!
//! A [`Scope`] is a string of `:`-separated segments such as `projects:read`. Segments use
//! `a-z`, `0-9`, `_`, `-` and `.`. A final `*` segment matches any non-empty suffix
//! (`projects:*` grants `projects:read` and `projects:read:own`, but not `projects` itself),
//! and `*` alone is the super-admin scope. [`ScopeSet::grants`] is the only check.

use std::fmt;

use crate::error::Error;

pub(crate) mod set;

pub(crate) use set::{Projects, Scope, ScopeSet};

/// Longest scope string.
pub const MAX_SCOPE_LEN: usize = 128;

/// The scope that lets a token acting on tokens reach every owner's tokens (see
/// [`TokenManager::acting_as`](crate::TokenManager::acting_as)): without it, a token creates,
/// sees and manages only tokens of its own owner. It widens the owner axis only and grants
/// no operation by itself; `tokens:*` and `*` include it.
pub const ANY_OWNER: &str = "tokens:any-owner";

/// The scope rule, as a `const fn` so that a scope written in code (such as
/// [`ScopeRequirement::SCOPES`](crate::axum::ScopeRequirement)) is checked when the program
/// is compiled. Segments separated by `:`, each non-empty, of `a-z`, `0-9`, `_`, `-`, `.`,
/// or a final `*`; at most [`MAX_SCOPE_LEN`] bytes.
pub(crate) const fn check_scope(s: &str) -> Result<(), &'static str> {
    let b = s.as_bytes();
    if b.is_empty() {
        return Err("must not be empty");
    }
    if b.len() > MAX_SCOPE_LEN {
        return Err("must be at most 128 characters");
    }
    let mut i = 0;
    let mut segment_start = 0;
    while i <= b.len() {
        if i == b.len() || b[i] == b':' {
            let len = i - segment_start;
            if len == 0 {
                return Err("segments must not be empty");
            }
            if b[segment_start] == b'*' && (len != 1 || i != b.len()) {
                return Err(if len == 1 {
                    "`*` may only be the last segment"
                } else {
                    "segments use only `a-z`, `0-9`, `_`, `-`, `.` (or a final `*`)"
                });
            }
            segment_start = i + 1;
        } else {
            let c = b[i];
            let ok = c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || c == b'_'
                || c == b'-'
                || c == b'.'
                || (c == b'*' && i == segment_start);
            if !ok {
                return Err("segments use only `a-z`, `0-9`, `_`, `-`, `.` (or a final `*`)");
            }
        }
        i += 1;
    }
    Ok(())
}

/// `true` if every string is a valid scope (see [`Scope::new`]); usable in constants.
#[cfg(feature = "axum")]
pub(crate) const fn all_valid(scopes: &[&str]) -> bool {
    let mut i = 0;
    while i < scopes.len() {
        if check_scope(scopes[i]).is_err() {
            return false;
        }
        i += 1;
    }
    true
}

/// A project id: same rule as token ids (1 to 64 of `a-z`, `0-9`, `-`, `_`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectId(Box<str>);

impl ProjectId {
    /// Validates a project id.
    pub fn new(id: impl AsRef<str>) -> Result<Self, Error> {
        let id = id.as_ref();
        crate::token::validate_id_chars(id).map_err(Error::InvalidProject)?;
        Ok(ProjectId(id.into()))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ProjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProjectId({:?})", &*self.0)
    }
}

impl fmt::Display for ProjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ProjectId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        ProjectId::new(s)
    }
}

#[cfg(feature = "serde")]
mod serde_impls {
    use super::*;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeSet;

    impl Serialize for Scope {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(self.as_str())
        }
    }
    impl<'de> Deserialize<'de> for Scope {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            Scope::new(&*s).map_err(serde::de::Error::custom)
        }
    }
    impl Serialize for ScopeSet {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.iter())
        }
    }
    impl<'de> Deserialize<'de> for ScopeSet {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            Ok(Vec::<Scope>::deserialize(d)?.into_iter().collect())
        }
    }
    impl Serialize for ProjectId {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&self.0)
        }
    }
    impl<'de> Deserialize<'de> for ProjectId {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            ProjectId::new(&*s).map_err(serde::de::Error::custom)
        }
    }
    /// `"*"` for all projects, or a list of project ids.
    impl Serialize for Projects {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self {
                Projects::All => s.serialize_str("*"),
                Projects::Only(set) => s.collect_seq(set.iter()),
            }
        }
    }
    impl<'de> Deserialize<'de> for Projects {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            #[derive(Deserialize)]
            #[serde(untagged)]
            enum Repr {
                Star(String),
                List(BTreeSet<ProjectId>),
            }
            match Repr::deserialize(d)? {
                Repr::Star(s) if s == "*" => Ok(Projects::All),
                Repr::Star(_) => Err(serde::de::Error::custom(
                    "projects must be \"*\" or a list of project ids",
                )),
                Repr::List(set) => Ok(Projects::Only(set)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Scope {
        Scope::new(x).unwrap()
    }

    #[test]
    fn validation() {
        for ok in ["*", "a", "projects:read", "a:b:*", "x.y-z_1:*"] {
            assert!(Scope::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", ":", "a:", ":a", "a::b", "*:a", "a*", "A", "a b", "a:*:b", "**",
        ] {
            assert!(Scope::new(bad).is_err(), "{bad}");
        }
        assert!(Scope::new("a".repeat(129)).is_err());
    }

    #[test]
    fn grants() {
        assert!(s("*").grants(&s("anything:at:all")));
        assert!(s("*").grants(&s("*")));
        assert!(s("projects:*").grants(&s("projects:read")));
        assert!(s("projects:*").grants(&s("projects:read:*")));
        assert!(!s("projects:*").grants(&s("projects")));
        assert!(!s("projects:*").grants(&s("projectsx:read")));
        assert!(!s("projects:*").grants(&s("*")));
        assert!(!s("projects:read").grants(&s("projects:*")));
        assert!(s("projects:read").grants(&s("projects:read")));
        assert!(!s("projects:read").grants(&s("projects:read:own")));
    }

    #[test]
    fn projects_cover() {
        let a = Projects::only(["a", "b"]).unwrap();
        let b = Projects::only(["a"]).unwrap();
        assert!(Projects::All.covers(&a));
        assert!(a.covers(&b));
        assert!(!b.covers(&a));
        assert!(!a.covers(&Projects::All));
    }
}
