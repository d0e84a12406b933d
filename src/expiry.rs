//! Expiry: when a token stops being valid, the presets users pick from, the policy that
//! bounds them, the clock that decides, and the notices that tell owners ahead of time.

use std::sync::{Arc, Mutex};

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::Error;

mod notice;
pub(crate) mod preset;

pub use notice::{ExpiryNotice, ExpiryNotifier, ExpiryReport, ExpiryWindows, MAX_EXPIRY_WINDOWS};

pub(crate) use preset::{Expiry, ExpiryPreset};

/// The longest duration keygate accepts anywhere: 100 years.
pub const MAX_DURATION: Duration = Duration::from_secs(36_500 * 86_400);

/// Parses `<N>d`, `<N>h`, `<N>m` or `<N>s` (N decimal digits, no sign, at most 100 years in
/// all; surrounding whitespace ignored) into a duration; used for lifetimes and rotation grace periods.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let unit = s.chars().last()?;
    let digits = s.get(..s.len() - unit.len_utf8())?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None; // no sign, no spaces inside
    }
    let n: u64 = digits.parse().ok()?;
    let seconds_per = match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        _ => return None,
    };
    let d = Duration::from_secs(n.checked_mul(seconds_per)?);
    (d <= MAX_DURATION).then_some(d)
}

/// `d` as a chrono duration, for arithmetic on instants; `None` beyond [`MAX_DURATION`].
pub(crate) fn signed(d: Duration) -> Option<chrono::Duration> {
    if d > MAX_DURATION {
        return None;
    }
    chrono::Duration::from_std(d).ok()
}

/// What an application allows for token lifetimes (GitLab caps at 365 days, Splunk user
/// tokens at 30).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct ExpiryPolicy {
    require_expiry: bool,
    max_lifetime: Option<Duration>,
}

impl ExpiryPolicy {
    /// No requirement: `never` is allowed, lifetimes are unbounded.
    pub fn unrestricted() -> Self {
        Self::default()
    }

    /// Requires every token to have an expiry.
    pub fn require_expiry(mut self) -> Self {
        self.require_expiry = true;
        self
    }

    /// Caps the lifetime (from issue or rotation) and implies an expiry is required.
    pub fn max_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = Some(max);
        self.require_expiry = true;
        self
    }

    /// Is an expiry required?
    pub fn requires_expiry(&self) -> bool {
        self.require_expiry
    }

    /// The lifetime cap, if any.
    pub fn lifetime_cap(&self) -> Option<Duration> {
        self.max_lifetime
    }

    /// Checks an expiry requested at `now` for a secret issued at `issued_at` (`now` for a
    /// new or rotated token, [`TokenRecord::secret_issued_at`](crate::TokenRecord) for an
    /// update): it must lie in the future, be present if required, and end within the cap
    /// counted from `issued_at`, so that updates can never stretch one secret's lifetime
    /// past the cap without a rotation.
    pub fn check(
        &self,
        issued_at: DateTime<Utc>,
        now: DateTime<Utc>,
        expiry: &Expiry,
    ) -> Result<(), Error> {
        match expiry {
            Expiry::Never if self.require_expiry => Err(Error::Policy(
                "an expiry is required; `never` is not allowed".into(),
            )),
            Expiry::Never => Ok(()),
            Expiry::At(at) if *at <= now => {
                Err(Error::InvalidExpiry("expiry must be in the future".into()))
            }
            Expiry::At(at) => match self.max_lifetime.and_then(signed) {
                Some(max) if *at - issued_at > max => Err(Error::Policy(format!(
                    "lifetime exceeds the maximum of {} days from issue or the last rotation",
                    max.num_days()
                ))),
                _ => Ok(()),
            },
        }
    }
}

/// The source of "now" for expiry, grace periods and last-used times.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock (`Utc::now()`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to: for tests of expiry and grace periods.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock(Arc::new(Mutex::new(start)))
    }

    /// Sets the time.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    /// Moves the time forward by `by` (at most [`MAX_DURATION`]; [`set`](Self::set) moves it
    /// anywhere).
    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(later) = signed(by).and_then(|by| t.checked_add_signed(by)) {
            *t = later;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration as Days;

    #[test]
    fn presets_parse() {
        assert_eq!("7d".parse::<ExpiryPreset>().unwrap(), ExpiryPreset::Days7);
        assert_eq!(
            "never".parse::<ExpiryPreset>().unwrap(),
            ExpiryPreset::Never
        );
        assert_eq!(
            "12h".parse::<ExpiryPreset>().unwrap(),
            ExpiryPreset::In(Duration::from_secs(12 * 3600))
        );
        assert!(matches!(
            "2027-01-31T00:00:00Z".parse::<ExpiryPreset>().unwrap(),
            ExpiryPreset::At(_)
        ));
        for bad in [
            "",
            "d",
            "-1d",
            "7x",
            "tomorrow",
            "99999999d",
            "36501d",
            "1é",
        ] {
            assert!(bad.parse::<ExpiryPreset>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parse_errors_do_not_echo_the_input() {
        let pasted = "kg_abcdefgh_SECRETSECRETSECRETSECRET";
        let e = pasted.parse::<ExpiryPreset>().unwrap_err().to_string();
        assert!(!e.contains("SECRET") && !e.contains("abcdefgh"), "{e}");
        assert!(e.contains("expected 7d"), "{e}");
    }

    #[test]
    fn policy() {
        let now = Utc::now();
        let p = ExpiryPolicy::unrestricted().max_lifetime(Duration::from_secs(365 * 86_400));
        assert!(p.check(now, now, &Expiry::Never).is_err());
        assert!(
            p.check(now, now, &Expiry::At(now + Days::days(365)))
                .is_ok()
        );
        assert!(
            p.check(now, now, &Expiry::At(now + Days::days(366)))
                .is_err()
        );
        assert!(p.check(now, now, &Expiry::At(now)).is_err());
        assert!(
            ExpiryPolicy::unrestricted()
                .check(now, now, &Expiry::Never)
                .is_ok()
        );
        // The cap counts from the secret's issue, not from the check.
        let issued = now - Days::days(300);
        assert!(
            p.check(issued, now, &Expiry::At(now + Days::days(65)))
                .is_ok()
        );
        assert!(
            p.check(issued, now, &Expiry::At(now + Days::days(66)))
                .is_err()
        );
    }
}
