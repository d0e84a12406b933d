//! The serde forms of the public data types: records round-trip, expiries and presets are
//! their string forms, cursors stay opaque, and the record view people see has no digest.

#![cfg(feature = "serde")]
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a test failure"
)]

use keygate::audit::{AuditEvent, AuditKind};
use keygate::record::TokenView;
use keygate::store::{Cursor, PageRequest, TokenFilter};
use keygate::{
    Expiry, ExpiryPreset, IssueRequest, MemoryStore, Projects, RotateRequest, ScopeSet, ServerKey,
    TokenManager, TokenRecord,
};
use serde_json::json;

async fn rotated_record() -> (TokenManager, TokenRecord) {
    let manager = TokenManager::builder(MemoryStore::new())
        .server_key(ServerKey::generate())
        .build()
        .unwrap();
    let issued = manager
        .issue(
            IssueRequest::new("ci", "alice")
                .scopes(ScopeSet::parse(["projects:read", "builds:*"]).unwrap())
                .projects(Projects::only(["web"]).unwrap())
                .metadata("team", "platform"),
        )
        .await
        .unwrap();
    let rotated = manager
        .rotate(
            issued.id(),
            RotateRequest::new().grace(std::time::Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    (manager, rotated.record().clone())
}

#[tokio::test]
async fn a_record_round_trips_through_json() {
    let (_, record) = rotated_record().await;
    let text = serde_json::to_string(&record).unwrap();
    let back: TokenRecord = serde_json::from_str(&text).unwrap();
    assert_eq!(back, record);
    assert_eq!(back.retired.len(), 1);
}

#[tokio::test]
async fn the_view_people_see_has_no_digest_and_says_what_a_person_needs() {
    let (manager, record) = rotated_record().await;
    let view = serde_json::to_value(TokenView::new(&record, manager.now())).unwrap();
    let text = view.to_string();
    assert!(!text.contains(&hex(record.digest.digest.as_bytes())));
    assert!(!text.contains(&hex(record.retired[0].digest.digest.as_bytes())));
    assert!(view.get("digest").is_none() && view.get("retired").is_none());
    assert_eq!(view["projects"], json!(["web"]));
    assert_eq!(view["expired"], false);
    assert!(view["previous_secret_valid_until"].is_string());
    assert_eq!(view["version"], 2);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn expiries_and_presets_are_their_string_forms() {
    assert_eq!(serde_json::to_value(Expiry::Never).unwrap(), "never");
    let at: Expiry = serde_json::from_value(json!("2027-01-31T00:00:00Z")).unwrap();
    assert_eq!(serde_json::to_value(at).unwrap(), "2027-01-31T00:00:00Z");
    assert!(serde_json::from_value::<Expiry>(json!("soon")).is_err());
    for text in ["7d", "never", "36h", "2027-01-31T00:00:00+00:00"] {
        let p: ExpiryPreset = serde_json::from_value(json!(text)).unwrap();
        assert_eq!(serde_json::to_value(p).unwrap(), text);
    }
    assert!(serde_json::from_value::<ExpiryPreset>(json!("7x")).is_err());
}

#[test]
fn requests_filters_and_cursors_deserialize() {
    let req: IssueRequest = serde_json::from_value(json!({
        "name": "deploy", "owner": "alice", "scopes": ["projects:read"], "expiry": "7d"
    }))
    .unwrap();
    assert_eq!(
        (req.name.as_str(), req.expiry),
        ("deploy", Some(ExpiryPreset::Days7))
    );
    assert!(serde_json::from_value::<IssueRequest>(json!({"name": "no owner"})).is_err());
    let filter: TokenFilter = serde_json::from_value(json!({"owner": "alice"})).unwrap();
    assert_eq!(filter, TokenFilter::new().owner("alice"));
    let cursor: Cursor = "1700000000000000.abc".parse().unwrap();
    let page = PageRequest::first(10).next(cursor.clone());
    let json = serde_json::to_value(&page).unwrap();
    assert_eq!(json["after"], "1700000000000000.abc");
    assert_eq!(serde_json::from_value::<PageRequest>(json).unwrap(), page);
    assert!(serde_json::from_value::<Cursor>(json!("not a cursor")).is_err());
}

#[test]
fn audit_events_serialize_with_their_owasp_kind() {
    let e = AuditEvent::new(
        AuditKind::VerifyFailed { reason: "unknown" },
        chrono::Utc::now(),
    );
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["kind"]["event"], "authn_login_fail");
    assert_eq!(json["kind"]["reason"], "unknown");
}
