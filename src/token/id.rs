//! [`TokenId`], exported at the crate root.

use std::fmt;
use std::sync::Arc;

use super::{ParsedToken, TokenRandomness, fill_random_chars, validate_id_chars};
use crate::error::Error;

/// The characters of a generated id.
const ID_ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// The public identifier of a token: 1 to 64 characters from `a-z`, `0-9`, `-`, `_`.
///
/// Ids are not secret: they are safe in logs, URLs and UIs. They are either generated
/// (16 random lower-case alphanumerics) or chosen by the caller.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId(Arc<str>);

impl TokenId {
    /// Validates a caller-chosen id.
    ///
    /// ```
    /// # use keygate::TokenId;
    /// assert!(TokenId::new("ci-deploy_2").is_ok());
    /// assert!(TokenId::new("Has Caps").is_err());
    /// ```
    pub fn new(id: impl AsRef<str>) -> Result<Self, Error> {
        let id = id.as_ref();
        validate_id_chars(id).map_err(Error::InvalidId)?;
        Ok(TokenId(id.into()))
    }

    /// A fresh random id: 16 characters from `a-z0-9` (about 82 bits).
    pub fn generate() -> Self {
        Self::generate_with(&mut TokenRandomness::new())
    }

    /// A fresh random id drawn from `rng` (the randomness of the token it names).
    pub(crate) fn generate_with(rng: &mut TokenRandomness) -> Self {
        let mut out = String::with_capacity(16);
        fill_random_chars(&mut out, ID_ALPHABET, 16, rng);
        TokenId(out.into())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of a parsed token (already validated by the parser).
    pub(crate) fn from_parsed(parsed: &ParsedToken<'_>) -> Self {
        TokenId(parsed.id.into())
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TokenId").field(&&*self.0).finish()
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for TokenId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for TokenId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        TokenId::new(s)
    }
}

impl TryFrom<&str> for TokenId {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self, Error> {
        TokenId::new(s)
    }
}

impl TryFrom<String> for TokenId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        TokenId::new(s)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for TokenId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for TokenId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        TokenId::new(&*s).map_err(serde::de::Error::custom)
    }
}
