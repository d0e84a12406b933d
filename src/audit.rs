//! Audit events and where they go.
//!
//! Every lifecycle change and every failed verification produces an [`AuditEvent`]. Events
//! carry token ids, owners and reasons, never a token, a secret, a digest or a server key.
//! The default sink, [`TracingSink`], emits them as `tracing` events named with the OWASP
//! logging vocabulary.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::token::TokenId;

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditKind {
    /// A token was issued.
    Created,
    /// A token's secret was rotated.
    Rotated,
    /// A rotated-out secret was presented after its grace period.
    Reuse,
    /// A token was disabled.
    Disabled,
    /// A token was enabled.
    Enabled,
    /// A token was revoked.
    Revoked,
    /// A token was deleted.
    Deleted,
    /// A token's name, description, scopes, projects, metadata or expiry changed.
    Updated,
    /// A token was re-hashed under the current server key.
    Rehashed,
    /// A presented token was refused; the reason is a [`VerifyError::code`](crate::VerifyError::code).
    VerifyFailed {
        /// Why.
        reason: &'static str,
    },
    /// A verified token lacked a required scope or project, or tried to grant more than it
    /// holds.
    AccessDenied {
        /// What was missing, e.g. `scope tokens:write`.
        missing: String,
    },
    /// One batch of [`TokenManager::prune`](crate::TokenManager::prune) deleted the records
    /// of tokens that ended long ago (no token id: the event is per batch).
    Pruned {
        /// How many records the batch deleted.
        deleted: u64,
    },
    /// Someone reported this token as leaked (through
    /// [`TokenManager::report_leaked`](crate::TokenManager::report_leaked)) and it was
    /// revoked. The reported plaintext is never part of the event.
    LeakReported,
    /// The owner was told that this token expires soon (or has expired), by
    /// [`TokenManager::notify_expiring`](crate::TokenManager::notify_expiring).
    ExpiryNotified,
}

impl AuditKind {
    /// The OWASP logging-vocabulary name of this event (`authn_token_created`, ...).
    pub fn owasp_name(&self) -> &'static str {
        match self {
            AuditKind::Created => "authn_token_created",
            AuditKind::Rotated => "authn_token_rotated",
            AuditKind::Reuse => "authn_token_reuse",
            AuditKind::Disabled => "authn_token_disabled",
            AuditKind::Enabled => "authn_token_enabled",
            AuditKind::Revoked => "authn_token_revoked",
            AuditKind::Deleted => "authn_token_delete",
            AuditKind::Updated => "authz_change",
            AuditKind::Rehashed => "authn_token_rehashed",
            AuditKind::VerifyFailed { .. } => "authn_login_fail",
            AuditKind::AccessDenied { .. } => "authz_fail",
            AuditKind::Pruned { .. } => "authn_token_pruned",
            AuditKind::LeakReported => "authn_token_leak_reported",
            AuditKind::ExpiryNotified => "authn_token_expiry_notified",
        }
    }
}

/// `{"event": <OWASP name>}`, with `reason` or `missing` where the kind has one.
#[cfg(feature = "serde")]
impl serde::Serialize for AuditKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let detail = match self {
            AuditKind::VerifyFailed { reason } => Some(("reason", *reason)),
            AuditKind::AccessDenied { missing } => Some(("missing", missing.as_str())),
            _ => None,
        };
        let deleted = match self {
            AuditKind::Pruned { deleted } => Some(*deleted),
            _ => None,
        };
        let extra = usize::from(detail.is_some()) + usize::from(deleted.is_some());
        let mut map = s.serialize_map(Some(1 + extra))?;
        map.serialize_entry("event", self.owasp_name())?;
        if let Some((k, v)) = detail {
            map.serialize_entry(k, v)?;
        }
        if let Some(n) = deleted {
            map.serialize_entry("deleted", &n)?;
        }
        map.end()
    }
}

/// One audit event.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct AuditEvent {
    /// What happened.
    pub kind: AuditKind,
    /// When (by the manager's clock).
    pub at: DateTime<Utc>,
    /// The token concerned, when known (the id of a presented token is public and is
    /// reported only after the token string parsed).
    pub token_id: Option<TokenId>,
    /// The token's owner, when known.
    pub owner: Option<String>,
    /// Who acted: `system` for direct calls, or `token:<id>` for calls on behalf of a token.
    pub actor: Option<String>,
}

impl AuditEvent {
    /// A new event.
    pub fn new(kind: AuditKind, at: DateTime<Utc>) -> Self {
        AuditEvent {
            kind,
            at,
            token_id: None,
            owner: None,
            actor: None,
        }
    }

    pub(crate) fn token(mut self, id: &TokenId) -> Self {
        self.token_id = Some(id.clone());
        self
    }

    pub(crate) fn owner(mut self, owner: &str) -> Self {
        self.owner = Some(owner.to_owned());
        self
    }

    pub(crate) fn actor(mut self, actor: Option<String>) -> Self {
        self.actor = actor;
        self
    }
}

impl fmt::Display for AuditEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.owasp_name())?;
        if let Some(id) = &self.token_id {
            write!(f, ":{id}")?;
        }
        Ok(())
    }
}

/// Receives audit events. Called synchronously on the operation's task: keep it fast (hand
/// off to a channel for slow destinations).
pub trait AuditSink: Send + Sync + 'static {
    /// Records one event.
    fn record(&self, event: &AuditEvent);
}

impl<F> AuditSink for F
where
    F: Fn(&AuditEvent) + Send + Sync + 'static,
{
    fn record(&self, event: &AuditEvent) {
        self(event)
    }
}

/// The default sink: one `tracing` event per audit event, with target `keygate::audit`,
/// the OWASP name in the `event` field, and `token_id`, `owner`, `actor` and `reason` fields.
/// Failures (`authn_login_fail`, `authz_fail`, `authn_token_reuse`) and leak reports
/// (`authn_token_leak_reported`) are logged at WARN, everything else at INFO; a prune batch
/// (`authn_token_pruned`) has a `deleted` field.
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingSink;

impl AuditSink for TracingSink {
    fn record(&self, e: &AuditEvent) {
        let name = e.kind.owasp_name();
        let token_id = e.token_id.as_ref().map(TokenId::as_str);
        let owner = e.owner.as_deref();
        let actor = e.actor.as_deref();
        match &e.kind {
            AuditKind::VerifyFailed { reason } => tracing::warn!(
                target: "keygate::audit", event = name, token_id, owner, actor, reason = *reason,
                "{name}"
            ),
            AuditKind::AccessDenied { missing } => tracing::warn!(
                target: "keygate::audit", event = name, token_id, owner, actor,
                reason = missing.as_str(), "{name}"
            ),
            AuditKind::Pruned { deleted } => tracing::info!(
                target: "keygate::audit", event = name, actor, deleted = *deleted, "{name}"
            ),
            AuditKind::Reuse | AuditKind::LeakReported => tracing::warn!(
                target: "keygate::audit", event = name, token_id, owner, actor, "{name}"
            ),
            _ => tracing::info!(
                target: "keygate::audit", event = name, token_id, owner, actor, "{name}"
            ),
        }
    }
}

/// A sink that drops every event.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopSink;

impl AuditSink for NoopSink {
    fn record(&self, _: &AuditEvent) {}
}

/// Answers "what happened to this token lately": the recent activity a console shows on a
/// token's page. Implement it over the store your audit events go to (a table, a log
/// index); [`MemoryActivity`] is the in-process one.
#[async_trait::async_trait]
pub trait ActivityQuery: Send + Sync + 'static {
    /// The most recent events about token `id`, newest first, at most `limit`.
    async fn recent(
        &self,
        id: &TokenId,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, crate::error::StoreError>;
}

/// An in-memory [`AuditSink`] and [`ActivityQuery`]: a ring buffer of the last events per
/// token, for the tokens most recently active. Bounded (at most `tokens` × `per_token`
/// events), lost on restart, and local to the process: with several instances, or to keep
/// history, implement [`ActivityQuery`] over a shared store instead. Events without a token
/// id are only forwarded. Cheap to clone (clones share the buffer).
#[derive(Clone)]
pub struct MemoryActivity {
    inner: std::sync::Arc<std::sync::Mutex<ActivityRing>>,
    forward: std::sync::Arc<dyn AuditSink>,
}

struct ActivityRing {
    per_token: usize,
    tokens: usize,
    tick: u64,
    map: std::collections::HashMap<TokenId, (u64, std::collections::VecDeque<AuditEvent>)>,
}

impl fmt::Debug for MemoryActivity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryActivity").finish_non_exhaustive()
    }
}

impl MemoryActivity {
    /// Keeps the last `per_token` events (at least 1) of each of the `tokens` (at least 1)
    /// most recently active tokens, and forwards every event to [`TracingSink`].
    pub fn new(per_token: usize, tokens: usize) -> Self {
        MemoryActivity {
            inner: std::sync::Arc::new(std::sync::Mutex::new(ActivityRing {
                per_token: per_token.max(1),
                tokens: tokens.max(1),
                tick: 0,
                map: std::collections::HashMap::new(),
            })),
            forward: std::sync::Arc::new(TracingSink),
        }
    }

    /// Forwards every event to `sink` instead of [`TracingSink`].
    pub fn forward_to(mut self, sink: impl AuditSink) -> Self {
        self.forward = std::sync::Arc::new(sink);
        self
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, ActivityRing> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl AuditSink for MemoryActivity {
    fn record(&self, event: &AuditEvent) {
        if let Some(id) = &event.token_id {
            let mut ring = self.ring();
            ring.tick += 1;
            let tick = ring.tick;
            let per_token = ring.per_token;
            if !ring.map.contains_key(id) && ring.map.len() >= ring.tokens {
                // Forget the token least recently active.
                if let Some(oldest) = ring
                    .map
                    .iter()
                    .min_by_key(|(_, (t, _))| *t)
                    .map(|(k, _)| k.clone())
                {
                    ring.map.remove(&oldest);
                }
            }
            let entry = ring.map.entry(id.clone()).or_default();
            entry.0 = tick;
            if entry.1.len() >= per_token {
                entry.1.pop_front();
            }
            entry.1.push_back(event.clone());
        }
        self.forward.record(event);
    }
}

#[async_trait::async_trait]
impl ActivityQuery for MemoryActivity {
    async fn recent(
        &self,
        id: &TokenId,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, crate::error::StoreError> {
        Ok(self
            .ring()
            .map
            .get(id)
            .map(|(_, events)| events.iter().rev().take(limit).cloned().collect())
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_activity_keeps_the_last_events_of_the_most_recent_tokens() {
        let log = MemoryActivity::new(2, 2).forward_to(NoopSink);
        let ids: Vec<TokenId> = ["a", "b", "c"]
            .iter()
            .map(|s| TokenId::new(s).unwrap())
            .collect();
        let at = Utc::now();
        for kind in [AuditKind::Created, AuditKind::Disabled, AuditKind::Enabled] {
            log.record(&AuditEvent::new(kind, at).token(&ids[0]));
        }
        let recent = log.recent(&ids[0], 10).await.unwrap();
        let names: Vec<_> = recent.iter().map(|e| e.kind.owasp_name()).collect();
        assert_eq!(names, ["authn_token_enabled", "authn_token_disabled"]);
        assert_eq!(log.recent(&ids[0], 1).await.unwrap().len(), 1);
        log.record(&AuditEvent::new(AuditKind::Created, at).token(&ids[1]));
        log.record(&AuditEvent::new(AuditKind::Created, at).token(&ids[2]));
        // `a` was the least recently active of three: forgotten.
        assert!(log.recent(&ids[0], 10).await.unwrap().is_empty());
        assert_eq!(log.recent(&ids[2], 10).await.unwrap().len(), 1);
        // Events without a token are not kept.
        log.record(&AuditEvent::new(AuditKind::Created, at));
        assert_eq!(log.ring().map.len(), 2);
    }
}
