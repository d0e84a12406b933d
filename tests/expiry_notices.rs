//! Expiry notices through `TokenManager::notify_expiring`: each token is told once per
//! window as it enters the 60/30/7/0-day windows, never of a window larger than one it was
//! told already, again after its expiry moves, and exactly once when several instances on
//! one SQLite file or one PostgreSQL schema run at the same time.
#![cfg(all(feature = "sqlite", feature = "postgres", feature = "test-util"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};
use keygate::audit::{AuditEvent, AuditKind};
use keygate::error::BoxError;
use keygate::expiry::{ExpiryNotice, ExpiryNotifier, ExpiryWindows, ManualClock};
use keygate::store::TokenStore;
use keygate::{
    ExpiryPreset, IssueRequest, MemoryStore, ServerKey, SqliteStore, TokenId, TokenManager,
    TokenRecord, TokenUpdate,
};

const DAY: StdDuration = StdDuration::from_secs(86_400);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// One notice as received: (token id, window in days, expiry).
type Received = (TokenId, u64, DateTime<Utc>);

/// The notices it was handed.
#[derive(Clone, Default)]
struct Inbox {
    got: Arc<Mutex<Vec<Received>>>,
    fail: bool,
}

impl Inbox {
    fn take(&self) -> Vec<Received> {
        let mut v = std::mem::take(&mut *self.got.lock().unwrap());
        v.sort();
        v
    }
}

#[async_trait]
impl ExpiryNotifier for Inbox {
    async fn token_expiring(
        &self,
        record: &TokenRecord,
        notice: &ExpiryNotice,
    ) -> Result<(), BoxError> {
        assert_eq!(
            record.expiry_notice.as_deref(),
            Some(notice),
            "the record handed over holds its notice"
        );
        assert_eq!(record.expiry.at(), Some(notice.expires_at));
        self.got.lock().unwrap().push((
            record.id.clone(),
            notice.window.as_secs() / 86_400,
            notice.expires_at,
        ));
        if self.fail {
            return Err("the mail server is down".into());
        }
        Ok(())
    }
}

type Events = Arc<Mutex<Vec<AuditEvent>>>;

fn manager(store: impl TokenStore + 'static, clock: &ManualClock, events: &Events) -> TokenManager {
    let sink = Arc::clone(events);
    TokenManager::builder(store)
        .server_key(ServerKey::from_bytes([5u8; 32]).unwrap())
        .clock(clock.clone())
        .audit_sink(move |e: &AuditEvent| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap()
}

async fn issue(m: &TokenManager, name: &str, expiry: ExpiryPreset) -> TokenId {
    m.issue(IssueRequest::new(name, "alice").expiry(expiry))
        .await
        .unwrap()
        .id()
        .clone()
}

#[tokio::test]
async fn each_window_is_told_once_as_the_token_enters_it() {
    let clock = ManualClock::new(t0());
    let events = Events::default();
    let m = manager(MemoryStore::new(), &clock, &events);
    let windows = ExpiryWindows::default();
    let inbox = Inbox::default();
    let at = |days: i64| t0() + Duration::days(days);

    let far = issue(&m, "far", ExpiryPreset::Days90).await;
    let month = issue(&m, "month", ExpiryPreset::Days30).await;
    let soon = issue(&m, "soon", ExpiryPreset::In(5 * DAY)).await;
    issue(&m, "forever", ExpiryPreset::Never).await;
    let revoked = issue(&m, "revoked", ExpiryPreset::Days7).await;
    m.revoke(&revoked).await.unwrap();

    // At t0: `month` is in the 30-day window, `soon` in the 7-day one (never told of the
    // larger windows it skipped); `far` in none; `forever` and `revoked` never.
    let report = m.notify_expiring(&windows, &inbox).await.unwrap();
    assert_eq!((report.sent, report.failed), (2, 0));
    assert_eq!(
        inbox.take(),
        sorted(vec![(month.clone(), 30, at(30)), (soon.clone(), 7, at(5))])
    );
    let told = m.get(&month).await.unwrap();
    assert_eq!(
        told.expiry_notice,
        Some(Box::new(ExpiryNotice {
            window: 30 * DAY,
            expires_at: at(30)
        }))
    );
    // The audit trail has one event per notice, by `system`, naming the token.
    let notified: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.kind == AuditKind::ExpiryNotified)
        .map(|e| (e.token_id.clone(), e.actor.clone()))
        .collect();
    assert_eq!(notified.len(), 2);
    assert!(notified.iter().all(|(_, a)| a.as_deref() == Some("system")));

    // Running again tells no one.
    let again = m.notify_expiring(&windows, &inbox).await.unwrap();
    assert_eq!((again.sent, again.failed), (0, 0));
    assert!(inbox.take().is_empty());

    // Day 30: `far` (60 days left) enters the 60-day window; `month` and `soon` have
    // expired: the 0-day notice.
    clock.set(at(30));
    m.notify_expiring(&windows, &inbox).await.unwrap();
    assert_eq!(
        inbox.take(),
        sorted(vec![
            (far.clone(), 60, at(90)),
            (month.clone(), 0, at(30)),
            (soon.clone(), 0, at(5)),
        ])
    );
    // Day 61 (29 days left), then day 85 (5 left), day 90 (expired): one notice each.
    for (day, window) in [(61, 30), (85, 7), (90, 0)] {
        clock.set(at(day));
        m.notify_expiring(&windows, &inbox).await.unwrap();
        assert_eq!(
            inbox.take(),
            vec![(far.clone(), window, at(90))],
            "day {day}"
        );
        m.notify_expiring(&windows, &inbox).await.unwrap();
        assert!(inbox.take().is_empty(), "day {day}, second run");
    }
    // Long after: nothing more for anyone.
    clock.set(at(400));
    assert_eq!(m.notify_expiring(&windows, &inbox).await.unwrap().sent, 0);
}

fn sorted(mut v: Vec<Received>) -> Vec<Received> {
    v.sort();
    v
}

#[tokio::test]
async fn a_moved_expiry_starts_the_windows_again_and_failures_are_not_resent() {
    let clock = ManualClock::new(t0());
    let events = Events::default();
    let m = manager(MemoryStore::new(), &clock, &events);
    let windows = ExpiryWindows::new([7 * DAY, DAY]).unwrap();
    let id = issue(&m, "short", ExpiryPreset::In(3 * DAY)).await;

    let failing = Inbox {
        fail: true,
        ..Inbox::default()
    };
    let report = m.notify_expiring(&windows, &failing).await.unwrap();
    assert_eq!((report.sent, report.failed), (0, 1));
    assert_eq!(failing.take().len(), 1);
    // Marked all the same: a failed notice is not sent twice.
    let report = m.notify_expiring(&windows, &failing).await.unwrap();
    assert_eq!((report.sent, report.failed), (0, 0));

    // The expiry moves out by 30 days: told again when the new expiry comes near.
    let later = t0() + Duration::days(33);
    m.update(&id, TokenUpdate::new().expiry(ExpiryPreset::At(later)))
        .await
        .unwrap();
    let inbox = Inbox::default();
    assert_eq!(m.notify_expiring(&windows, &inbox).await.unwrap().sent, 0);
    clock.set(later - Duration::days(6));
    m.notify_expiring(&windows, &inbox).await.unwrap();
    assert_eq!(inbox.take(), vec![(id.clone(), 7, later)]);

    // `expiring` lists what expires within a window, soonest first, sending nothing.
    let other = issue(&m, "other", ExpiryPreset::In(2 * DAY)).await;
    let listed: Vec<_> = m
        .expiring(7 * DAY)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, vec![other.clone(), id.clone()]);
    assert_eq!(m.expiring(3 * DAY).await.unwrap().len(), 1);
    assert!(inbox.take().is_empty());
    assert!(m.get(&other).await.unwrap().expiry_notice.is_none());
}

/// Two managers on one store, notifying at the same time, many times over: every notice
/// goes out exactly once in all.
async fn two_instances_tell_each_notice_once(
    a: TokenManager,
    b: TokenManager,
    clock: &ManualClock,
) {
    let windows = ExpiryWindows::default();
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(issue(&a, &format!("t{i}"), ExpiryPreset::In((10 + i) * DAY)).await);
    }
    let inbox = Inbox::default();
    for day in [0, 5, 20, 60] {
        clock.set(t0() + Duration::days(day));
        let reports = tokio::join!(
            a.notify_expiring(&windows, &inbox),
            b.notify_expiring(&windows, &inbox),
            a.notify_expiring(&windows, &inbox),
            b.notify_expiring(&windows, &inbox),
        );
        let sent: u64 = [reports.0, reports.1, reports.2, reports.3]
            .into_iter()
            .map(|r| r.unwrap().sent)
            .sum();
        let got = inbox.take();
        assert_eq!(sent as usize, got.len(), "day {day}");
        let mut unique = got.clone();
        unique.dedup();
        assert_eq!(unique, got, "day {day}: a notice went out twice");
        // Each token is told of the window it is in at `day`, or nothing if told already.
        for (id, window, _) in &got {
            let i = ids.iter().position(|x| x == id).unwrap() as i64;
            let left = 10 + i - day;
            let expected = [0, 7, 30, 60].into_iter().find(|w| left <= *w).unwrap();
            assert_eq!(*window as i64, expected, "day {day}, token {i}");
        }
    }
    // By day 60 every token has expired and was told so, once.
    for id in &ids {
        let r = a.get(id).await.unwrap();
        assert_eq!(r.expiry_notice.map(|n| n.window), Some(StdDuration::ZERO));
    }
}

#[tokio::test]
async fn two_instances_on_one_sqlite_file_tell_each_notice_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("keygate.db").display());
    let first = SqliteStore::connect(&url).await.unwrap();
    first.migrate().await.unwrap();
    let second = SqliteStore::connect(&url).await.unwrap();
    let clock = ManualClock::new(t0());
    let events = Events::default();
    two_instances_tell_each_notice_once(
        manager(first, &clock, &events),
        manager(second, &clock, &events),
        &clock,
    )
    .await;
}

#[tokio::test]
async fn two_instances_on_one_postgres_schema_tell_each_notice_once() {
    let Some((schema, first)) = common::TestSchema::new().await else {
        return;
    };
    let second = schema.store().await;
    let clock = ManualClock::new(t0());
    let events = Events::default();
    two_instances_tell_each_notice_once(
        manager(first, &clock, &events),
        manager(second, &clock, &events),
        &clock,
    )
    .await;
}
