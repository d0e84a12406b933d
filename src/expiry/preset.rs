//! [`Expiry`] and [`ExpiryPreset`], exported at the crate root.

use std::fmt;

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};

use super::{parse_duration, signed};
use crate::error::Error;

/// When a token expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Expiry {
    /// The token never expires.
    Never,
    /// The token is valid strictly before this instant and expired at and after it.
    At(DateTime<Utc>),
}

impl Expiry {
    /// Has the token expired at `now`? (`now >= at`.)
    pub fn is_expired_at(&self, now: DateTime<Utc>) -> bool {
        match self {
            Expiry::Never => false,
            Expiry::At(at) => now >= *at,
        }
    }

    /// Does a lifetime ending at `self` cover one ending at `other`? `Never` covers
    /// everything; an instant covers instants at or before it, never `Never`.
    pub fn covers(&self, other: &Expiry) -> bool {
        match (self, other) {
            (Expiry::Never, _) => true,
            (Expiry::At(_), Expiry::Never) => false,
            (Expiry::At(a), Expiry::At(b)) => b <= a,
        }
    }

    /// The instant, if any.
    pub fn at(&self) -> Option<DateTime<Utc>> {
        match self {
            Expiry::Never => None,
            Expiry::At(at) => Some(*at),
        }
    }
}

impl From<Option<DateTime<Utc>>> for Expiry {
    fn from(at: Option<DateTime<Utc>>) -> Self {
        at.map_or(Expiry::Never, Expiry::At)
    }
}

/// The expiry a user asks for when creating or rotating a token (Devtron, GitHub): 7, 30, 60
/// or 90 days from now, a custom instant, or never.
///
/// Parses from `7d`, `30d`, `60d`, `90d`, any `<N>d` or `<N>h`, `never`, or an RFC 3339
/// instant such as `2027-01-31T00:00:00Z`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryPreset {
    /// 7 days from now.
    Days7,
    /// 30 days from now.
    Days30,
    /// 60 days from now.
    Days60,
    /// 90 days from now.
    Days90,
    /// A custom lifetime from now.
    In(Duration),
    /// A custom instant.
    At(DateTime<Utc>),
    /// No expiry.
    Never,
}

impl ExpiryPreset {
    /// Resolves the preset against `now`.
    pub fn resolve(self, now: DateTime<Utc>) -> Result<Expiry, Error> {
        let days = chrono::Duration::days;
        let at = match self {
            ExpiryPreset::Never => return Ok(Expiry::Never),
            ExpiryPreset::At(at) => at,
            ExpiryPreset::Days7 => now + days(7),
            ExpiryPreset::Days30 => now + days(30),
            ExpiryPreset::Days60 => now + days(60),
            ExpiryPreset::Days90 => now + days(90),
            ExpiryPreset::In(d) => signed(d)
                .and_then(|d| now.checked_add_signed(d))
                .ok_or_else(|| Error::InvalidExpiry("lifetime out of range".into()))?,
        };
        Ok(Expiry::At(at.trunc_subsecs(6)))
    }
}

impl From<Expiry> for ExpiryPreset {
    fn from(e: Expiry) -> Self {
        match e {
            Expiry::Never => ExpiryPreset::Never,
            Expiry::At(at) => ExpiryPreset::At(at),
        }
    }
}

impl std::str::FromStr for ExpiryPreset {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        match s {
            "never" => return Ok(ExpiryPreset::Never),
            "7d" => return Ok(ExpiryPreset::Days7),
            "30d" => return Ok(ExpiryPreset::Days30),
            "60d" => return Ok(ExpiryPreset::Days60),
            "90d" => return Ok(ExpiryPreset::Days90),
            _ => {}
        }
        if let Some(d) = parse_duration(s) {
            return Ok(ExpiryPreset::In(d));
        }
        DateTime::parse_from_rfc3339(s)
            .map(|t| ExpiryPreset::At(t.with_timezone(&Utc)))
            .map_err(|_| {
                // The input is not echoed: a pasted token or secret must not reach a log.
                Error::InvalidExpiry(
                    "expected 7d, 30d, 60d, 90d, <N>d, <N>h, never, or an RFC 3339 instant".into(),
                )
            })
    }
}

impl fmt::Display for ExpiryPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpiryPreset::Days7 => f.write_str("7d"),
            ExpiryPreset::Days30 => f.write_str("30d"),
            ExpiryPreset::Days60 => f.write_str("60d"),
            ExpiryPreset::Days90 => f.write_str("90d"),
            ExpiryPreset::Never => f.write_str("never"),
            ExpiryPreset::At(at) => f.write_str(&at.to_rfc3339()),
            ExpiryPreset::In(d) if d.as_secs() % 86_400 == 0 => {
                write!(f, "{}d", d.as_secs() / 86_400)
            }
            ExpiryPreset::In(d) if d.as_secs() % 3_600 == 0 => {
                write!(f, "{}h", d.as_secs() / 3_600)
            }
            ExpiryPreset::In(d) => write!(f, "{}s", d.as_secs()),
        }
    }
}

#[cfg(feature = "serde")]
mod serde_impls {
    use super::{Expiry, ExpiryPreset};
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// `"never"` or an RFC 3339 instant.
    impl Serialize for Expiry {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self {
                Expiry::Never => s.serialize_str("never"),
                Expiry::At(at) => at.serialize(s),
            }
        }
    }
    impl<'de> Deserialize<'de> for Expiry {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            if s == "never" {
                return Ok(Expiry::Never);
            }
            DateTime::parse_from_rfc3339(&s)
                .map(|t| Expiry::At(t.with_timezone(&Utc)))
                .map_err(|_| serde::de::Error::custom("expected \"never\" or an RFC 3339 instant"))
        }
    }
    /// The preset's string form (`7d`, `never`, `36h`, an RFC 3339 instant), as it parses.
    impl Serialize for ExpiryPreset {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(self)
        }
    }
    impl<'de> Deserialize<'de> for ExpiryPreset {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        }
    }
}
