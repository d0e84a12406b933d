//! Expiry notices: telling a token's owner, once per window, that the token is about to
//! expire (GitLab mails owners 60, 30 and 7 days ahead).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{MAX_DURATION, signed};
use crate::error::{BoxError, Error};
use crate::record::TokenRecord;

/// The last expiry notice sent for a token, kept in its record
/// ([`TokenRecord::expiry_notice`]): which window it was for, about which expiry instant.
///
/// A notice about another instant than the token's expiry (the expiry was moved since)
/// counts as none, so moving an expiry starts the windows again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ExpiryNotice {
    /// The window: the notice said the token expires within this long (zero: it expired).
    pub window: Duration,
    /// The expiry instant the notice was about.
    pub expires_at: DateTime<Utc>,
}

/// The windows before expiry in which owners are told, e.g. 60, 30 and 7 days ahead and on
/// the day the token expires (the default).
///
/// A token is in the smallest window that its remaining lifetime fits in (an expired token
/// is in the smallest window of all). Each window is told at most once per expiry instant,
/// and only while it is smaller than the last one told: a token created with 5 days to live
/// gets the 7-day notice, never the 60- and 30-day ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiryWindows {
    /// Distinct, largest first, whole seconds, at most [`MAX_DURATION`].
    windows: Vec<Duration>,
}

/// Most windows an [`ExpiryWindows`] holds.
pub const MAX_EXPIRY_WINDOWS: usize = 16;

impl Default for ExpiryWindows {
    /// 60, 30 and 7 days before expiry, and at expiry.
    fn default() -> Self {
        let days = |d: u64| Duration::from_secs(d * 86_400);
        ExpiryWindows {
            windows: vec![days(60), days(30), days(7), Duration::ZERO],
        }
    }
}

impl ExpiryWindows {
    /// These windows, in any order (duplicates count once). Fails with
    /// [`Error::InvalidConfig`] for no window, more than [`MAX_EXPIRY_WINDOWS`], a window
    /// longer than [`MAX_DURATION`], or one that is not a whole number of seconds.
    ///
    /// ```
    /// use std::time::Duration;
    /// use keygate::expiry::ExpiryWindows;
    ///
    /// let day = Duration::from_secs(86_400);
    /// let windows = ExpiryWindows::new([14 * day, day])?;
    /// assert_eq!(windows.windows(), [14 * day, day]);
    /// assert!(ExpiryWindows::new([]).is_err());
    /// # Ok::<(), keygate::Error>(())
    /// ```
    pub fn new(windows: impl IntoIterator<Item = Duration>) -> Result<Self, Error> {
        let mut windows: Vec<Duration> = windows.into_iter().collect();
        if windows.is_empty() {
            return Err(Error::InvalidConfig(
                "expiry windows: at least one is needed",
            ));
        }
        if windows.iter().any(|w| *w > MAX_DURATION) {
            return Err(Error::InvalidConfig(
                "expiry windows: each is at most 100 years",
            ));
        }
        if windows.iter().any(|w| w.subsec_nanos() != 0) {
            return Err(Error::InvalidConfig(
                "expiry windows: each is a whole number of seconds",
            ));
        }
        windows.sort_unstable_by(|a, b| b.cmp(a));
        windows.dedup();
        if windows.len() > MAX_EXPIRY_WINDOWS {
            return Err(Error::InvalidConfig("expiry windows: at most 16"));
        }
        Ok(ExpiryWindows { windows })
    }

    /// The windows, largest first.
    pub fn windows(&self) -> &[Duration] {
        &self.windows
    }

    /// The largest window.
    pub(crate) fn largest(&self) -> Duration {
        self.windows[0]
    }

    /// The window a token expiring at `expires_at` is in at `now`: the smallest one its
    /// remaining lifetime (`expires_at - now`, zero once expired) fits in; `None` before the
    /// largest.
    pub fn window_at(&self, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> Option<Duration> {
        let remaining = (expires_at - now).to_std().unwrap_or(Duration::ZERO);
        self.windows
            .iter()
            .rev()
            .find(|w| remaining <= **w)
            .copied()
    }

    /// The notice `record` is due at `now`, if any: the token is active and expires, it is in
    /// a window ([`window_at`](Self::window_at)), and its last notice was about another
    /// expiry instant or for a larger window.
    pub fn due(&self, record: &TokenRecord, now: DateTime<Utc>) -> Option<ExpiryNotice> {
        if record.status != crate::TokenStatus::Active {
            return None;
        }
        let expires_at = record.expiry.at()?;
        let window = self.window_at(expires_at, now)?;
        let told = record
            .expiry_notice
            .as_deref()
            .is_some_and(|n| n.expires_at == expires_at && n.window <= window);
        (!told).then_some(ExpiryNotice { window, expires_at })
    }

    /// The latest expiry a token can have and be in a window at `now`.
    pub(crate) fn horizon(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        signed(self.largest()).and_then(|w| now.checked_add_signed(w))
    }
}

/// The application's hook to tell a token's owner that it expires soon (mail, chat).
///
/// [`TokenManager::notify_expiring`](crate::TokenManager::notify_expiring) calls it once per
/// notice, after it has marked the notice sent in the record (so that two instances never
/// both send it). A failure is counted in the [`ExpiryReport`] and logged, and the notice is
/// not sent again: a notifier that must not lose one queues it (an outbox) rather than
/// sending it inline.
#[async_trait]
pub trait ExpiryNotifier: Send + Sync {
    /// `record`'s token expires at `notice.expires_at`, within `notice.window` (zero: it has
    /// expired). `record` holds the notice already.
    async fn token_expiring(
        &self,
        record: &TokenRecord,
        notice: &ExpiryNotice,
    ) -> Result<(), BoxError>;
}

/// What a [`TokenManager::notify_expiring`](crate::TokenManager::notify_expiring) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ExpiryReport {
    /// Notices the notifier took.
    pub sent: u64,
    /// Notices the notifier failed (marked sent all the same).
    pub failed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(days: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(days)
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn a_token_is_in_the_smallest_window_its_lifetime_fits() {
        let w = ExpiryWindows::default();
        let now = at(1000);
        assert_eq!(w.window_at(at(1061), now), None);
        assert_eq!(w.window_at(at(1060), now), Some(60 * DAY));
        assert_eq!(w.window_at(at(1031), now), Some(60 * DAY));
        assert_eq!(w.window_at(at(1030), now), Some(30 * DAY));
        assert_eq!(w.window_at(at(1007), now), Some(7 * DAY));
        assert_eq!(w.window_at(at(1001), now), Some(7 * DAY));
        assert_eq!(w.window_at(at(1000), now), Some(Duration::ZERO));
        assert_eq!(w.window_at(at(900), now), Some(Duration::ZERO));
        let no_zero = ExpiryWindows::new([DAY, 7 * DAY]).unwrap();
        assert_eq!(no_zero.window_at(at(900), now), Some(DAY));
    }

    #[test]
    fn windows_are_checked_when_made() {
        assert!(ExpiryWindows::new([]).is_err());
        assert!(ExpiryWindows::new([MAX_DURATION + Duration::from_secs(1)]).is_err());
        assert!(ExpiryWindows::new([Duration::from_millis(1500)]).is_err());
        assert!(ExpiryWindows::new((0..17).map(|d| d * DAY)).is_err());
        let w = ExpiryWindows::new([DAY, 7 * DAY, DAY, Duration::ZERO]).unwrap();
        assert_eq!(w.windows(), [7 * DAY, DAY, Duration::ZERO]);
    }
}
