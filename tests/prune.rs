//! Pruning through `TokenManager`: the rule at the cutoff, batches with one audit event each,
//! the verification cache dropped, and only `*` actors allowed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::{Duration, TimeZone, Utc};
use keygate::audit::{AuditEvent, AuditKind};
use keygate::cache::CacheConfig;
use keygate::expiry::ManualClock;
use keygate::{
    Error, ExpiryPreset, IssueRequest, MemoryStore, RotateRequest, ScopeSet, ServerKey,
    TokenManager, VerifyError,
};

const DAY: StdDuration = StdDuration::from_secs(86_400);

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<AuditEvent>>>);

fn manager(clock: &ManualClock, audit: &Recorder) -> TokenManager {
    let sink = audit.clone();
    TokenManager::builder(MemoryStore::new())
        .server_key(ServerKey::from_bytes([7u8; 32]).unwrap())
        .clock(clock.clone())
        .cache(CacheConfig::new().ttl(StdDuration::from_secs(60)).unwrap())
        .audit_sink(move |e: &AuditEvent| sink.0.lock().unwrap().push(e.clone()))
        .build()
        .unwrap()
}

fn req(name: &str, expiry: ExpiryPreset) -> IssueRequest {
    IssueRequest::new(name, "alice")
        .scopes(ScopeSet::parse(["projects:read"]).unwrap())
        .expiry(expiry)
}

#[tokio::test]
async fn prune_deletes_what_ended_long_ago_in_batches() {
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let clock = ManualClock::new(t0);
    let audit = Recorder::default();
    let m = manager(&clock, &audit);
    let admin = m
        .issue(
            IssueRequest::new("admin", "ops")
                .scopes(ScopeSet::parse(["*"]).unwrap())
                .expiry(ExpiryPreset::Never),
        )
        .await
        .unwrap();
    let expiring = m.issue(req("expiring", ExpiryPreset::Days7)).await.unwrap();
    let month = m.issue(req("month", ExpiryPreset::Days30)).await.unwrap();
    let revoked = m.issue(req("revoked", ExpiryPreset::Never)).await.unwrap();
    let forever = m.issue(req("forever", ExpiryPreset::Never)).await.unwrap();
    let rotated = m.issue(req("rotated", ExpiryPreset::Days7)).await.unwrap();
    m.revoke(revoked.id()).await.unwrap();
    // The old secret stays valid for 20 days, beyond the token's expiry.
    m.rotate(
        rotated.id(),
        RotateRequest::new().grace(StdDuration::from_secs(20 * 86_400)),
    )
    .await
    .unwrap();
    // Cached while valid.
    m.verify(expiring.expose_secret()).await.unwrap();

    clock.set(t0 + Duration::days(10));
    // Cutoff t0 + 9d: `expiring` (t0 + 7d) and `revoked` (t0) ended before it; `rotated`
    // expired at t0 + 7d but its grace lasts until t0 + 20d.
    assert_eq!(m.prunable(DAY).await.unwrap(), 2);
    assert_eq!(m.prunable(20 * DAY).await.unwrap(), 0);
    audit.0.lock().unwrap().clear();
    let report = m.prune(DAY, 1).await.unwrap();
    assert_eq!((report.deleted, report.batches), (2, 2));
    assert_eq!(report.cutoff, t0 + Duration::days(9));
    let events = std::mem::take(&mut *audit.0.lock().unwrap());
    assert_eq!(
        events.iter().map(|e| e.kind.clone()).collect::<Vec<_>>(),
        [
            AuditKind::Pruned { deleted: 1 },
            AuditKind::Pruned { deleted: 1 }
        ]
    );
    assert!(events.iter().all(|e| e.actor.as_deref() == Some("system")));
    assert!(
        events
            .iter()
            .all(|e| e.token_id.is_none() && e.at == m.now())
    );
    for gone in [&expiring, &revoked] {
        assert!(matches!(m.get(gone.id()).await, Err(Error::NotFound(_))));
    }
    // The cached verification went with the record: unknown now, not merely expired.
    assert!(matches!(
        m.verify(expiring.expose_secret()).await,
        Err(VerifyError::Unknown)
    ));
    for kept in [&admin, &month, &forever, &rotated] {
        m.get(kept.id()).await.unwrap();
    }
    m.verify(forever.expose_secret()).await.unwrap();
    audit.0.lock().unwrap().clear();
    assert_eq!(m.prune(DAY, 1).await.unwrap().deleted, 0);
    assert!(
        audit.0.lock().unwrap().is_empty(),
        "an empty prune is not audited"
    );

    // Later, the month token and the rotated one (grace over) are due too.
    clock.set(t0 + Duration::days(40));
    assert_eq!(m.prunable(DAY).await.unwrap(), 2);
    let report = m.prune(DAY, 1000).await.unwrap();
    assert_eq!((report.deleted, report.batches), (2, 1));
    m.get(forever.id()).await.unwrap();
    m.get(admin.id()).await.unwrap();
}

#[tokio::test]
async fn prune_is_for_admins_and_needs_a_batch() {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let audit = Recorder::default();
    let m = manager(&clock, &audit);
    let admin = m
        .issue(
            IssueRequest::new("admin", "ops")
                .scopes(ScopeSet::parse(["*"]).unwrap())
                .expiry(ExpiryPreset::Never),
        )
        .await
        .unwrap();
    let writer = m
        .issue(
            IssueRequest::new("writer", "ops")
                .scopes(ScopeSet::parse(["tokens:*"]).unwrap())
                .expiry(ExpiryPreset::Never),
        )
        .await
        .unwrap();
    let writer = m.verify(writer.expose_secret()).await.unwrap();
    assert!(matches!(
        m.acting_as(&writer).prune(DAY, 10).await,
        Err(Error::Escalation(_))
    ));
    assert!(matches!(
        m.acting_as(&writer).prunable(DAY).await,
        Err(Error::Escalation(_))
    ));
    let admin = m.verify(admin.expose_secret()).await.unwrap();
    let report = m.acting_as(&admin).prune(DAY, 10).await.unwrap();
    assert_eq!(report.deleted, 0);
    assert!(matches!(
        m.prune(DAY, 0).await,
        Err(Error::InvalidField { field: "batch", .. })
    ));
    assert!(matches!(
        m.prune(StdDuration::from_secs(u64::MAX), 10).await,
        Err(Error::InvalidField {
            field: "older_than",
            ..
        })
    ));
}
