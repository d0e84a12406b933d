//! Expiry notices: finding the tokens that entered a window, marking each notice in its
//! record, and handing it to the application's notifier.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::TokenManager;
use crate::audit::AuditKind;
use crate::error::{Error, StoreError};
use crate::expiry::{ExpiryNotice, ExpiryNotifier, ExpiryReport, ExpiryWindows};
use crate::record::{TokenRecord, TokenStatus};
use crate::store::{MAX_PAGE_LIMIT, PageRequest, TokenFilter};

impl TokenManager {
    /// The active tokens that expire within `within` from now and have not expired yet,
    /// soonest first: what `keygate token expiring` lists. Reads the store; sends nothing.
    pub async fn expiring(&self, within: Duration) -> Result<Vec<TokenRecord>, Error> {
        let now = self.now();
        let until = crate::expiry::signed(within)
            .and_then(|w| now.checked_add_signed(w))
            .ok_or(Error::InvalidField {
                field: "within",
                reason: "out of range",
            })?;
        let filter = TokenFilter::new()
            .status(TokenStatus::Active)
            .expires_after(now)
            .expires_before(just_after(until));
        let mut found = self.all_matching(filter).await?;
        found.sort_by_key(|r| (r.expiry.at(), r.id.clone()));
        Ok(found)
    }

    /// Tells the owners of the tokens that entered one of `windows` since they were last
    /// told, each notice once, through `notifier`.
    ///
    /// A token is due a notice as [`ExpiryWindows::due`] says: it is active, it is in a
    /// window, and no notice for that window or a smaller one was sent about its current
    /// expiry. Each notice is first marked in the record
    /// ([`TokenRecord::expiry_notice`]) by a compare-and-swap
    /// [`update`](crate::store::TokenStore::update) (one store round trip; the record's
    /// `version` moves on, `updated_at` does not), then handed to `notifier` and audited as
    /// [`AuditKind::ExpiryNotified`]. Several instances may run this at once: each notice is
    /// marked by exactly one of them, and only that one sends it. A record changed meanwhile
    /// is skipped, and looked at again by the next call. A notifier's failure is counted in
    /// [`ExpiryReport::failed`] and logged; the notice stays marked.
    ///
    /// Call it periodically (hourly, say): a token is told of the smallest window it is in
    /// at the time of the call. A store failure stops the call with [`Error::Store`]; the
    /// notices sent before it stay sent.
    pub async fn notify_expiring(
        &self,
        windows: &ExpiryWindows,
        notifier: &dyn ExpiryNotifier,
    ) -> Result<ExpiryReport, Error> {
        let now = self.now();
        let Some(horizon) = windows.horizon(now) else {
            return Ok(ExpiryReport::default());
        };
        let filter = TokenFilter::new()
            .status(TokenStatus::Active)
            .expires_before(just_after(horizon));
        let mut report = ExpiryReport::default();
        let mut page = PageRequest::first(MAX_PAGE_LIMIT);
        loop {
            // One page at a time: memory stays bounded by the page, however many expire.
            let found = self.inner.store.list(&filter, &page).await?;
            for record in found.items {
                if let Some(notice) = windows.due(&record, now) {
                    self.send_notice(record, notice, notifier, &mut report)
                        .await?;
                }
            }
            match found.next {
                Some(next) => page = page.next(next),
                None => break,
            }
        }
        Ok(report)
    }

    /// Marks `notice` in `record` and, if this call marked it, sends it.
    async fn send_notice(
        &self,
        mut record: TokenRecord,
        notice: ExpiryNotice,
        notifier: &dyn ExpiryNotifier,
        report: &mut ExpiryReport,
    ) -> Result<(), Error> {
        record.expiry_notice = Some(Box::new(notice));
        match self.inner.store.update(&record).await {
            Ok(version) => record.version = version,
            // Changed or deleted meanwhile: the next call looks again.
            Err(StoreError::Conflict | StoreError::NotFound) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        self.invalidate(&record.id);
        let sent = notifier.token_expiring(&record, &notice).await;
        super::observe::expiry_notice(sent.is_ok());
        match sent {
            Ok(()) => report.sent += 1,
            Err(e) => {
                report.failed += 1;
                tracing::warn!(
                    target: "keygate::expiry",
                    token_id = record.id.as_str(),
                    error = %e,
                    "the expiry notifier failed; the notice is not sent again"
                );
            }
        }
        self.event(AuditKind::ExpiryNotified, &record, None);
        Ok(())
    }

    /// Every record `filter` selects, walking the pages.
    async fn all_matching(&self, filter: TokenFilter) -> Result<Vec<TokenRecord>, Error> {
        let mut out = Vec::new();
        let mut page = PageRequest::first(MAX_PAGE_LIMIT);
        loop {
            let found = self.inner.store.list(&filter, &page).await?;
            out.extend(found.items);
            match found.next {
                Some(next) => page = page.next(next),
                None => return Ok(out),
            }
        }
    }
}

/// The instant just after `at`: for a strict `expires_before` that includes `at`.
fn just_after(at: DateTime<Utc>) -> DateTime<Utc> {
    at + chrono::Duration::microseconds(1)
}
