//! The `last_used_at` scheduler.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, SubsecRound, Utc};

use crate::record::TokenRecord;
use crate::store::TokenStore;
use crate::token::TokenId;

/// Rate-limits `last_used_at` writes: at most one per token per interval, scheduled off the
/// request path. Each write is given a timeout (default [`DEFAULT_TOUCH_TIMEOUT`]) and then dropped, so a store that hangs
/// leaves at most one pending write per active token, each ended within the timeout: the
/// background work is bounded by the number of tokens verified within that timeout.
pub(super) struct Toucher {
    interval: Duration,
    timeout: std::time::Duration,
    recent: Mutex<HashMap<TokenId, DateTime<Utc>>>,
}

const TOUCH_MAP_PRUNE_AT: usize = 65_536;

/// How long one `last_used_at` write may take before it is abandoned, by default (the next
/// interval writes again).
pub(super) const DEFAULT_TOUCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Toucher {
    pub(super) fn new(interval: Duration, timeout: std::time::Duration) -> Self {
        Toucher {
            interval,
            timeout,
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// Cheap check against the record itself: is a write due at all?
    pub(super) fn due(&self, record: &TokenRecord, now: DateTime<Utc>) -> bool {
        record.last_used_at.is_none_or(|t| now - t >= self.interval)
    }

    /// Writes `last_used_at = now` in a background task, unless a write for this token was
    /// scheduled within the interval. Without a tokio runtime the write is skipped.
    pub(super) fn schedule(&self, store: &Arc<dyn TokenStore>, id: &TokenId, now: DateTime<Utc>) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if recent.get(id).is_some_and(|t| now - *t < self.interval) {
                return;
            }
            if recent.len() >= TOUCH_MAP_PRUNE_AT {
                let interval = self.interval;
                recent.retain(|_, t| now - *t < interval);
            }
            recent.insert(id.clone(), now);
        }
        let store = Arc::clone(store);
        let id = id.clone();
        let timeout = self.timeout;
        handle.spawn(async move {
            let write = store.touch(&id, now.trunc_subsecs(6));
            let started = super::observe::start();
            let done = tokio::time::timeout(timeout, write).await;
            super::observe::store_operation(started, super::observe::StoreOperation::Touch);
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(target: "keygate", token_id = id.as_str(), error = %e, "last_used_at write failed");
                }
                Err(_) => {
                    tracing::debug!(target: "keygate", token_id = id.as_str(), "last_used_at write timed out");
                }
            }
        });
    }
}
