//! The token lifecycle through `TokenManager`, with an injected clock and a recording audit sink.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

use std::sync::{Arc, Mutex};

use chrono::{Duration, TimeZone, Utc};
use keygate::cache::CacheConfig;
use keygate::{
    Error, Expiry, ExpiryPreset, IssueRequest, MemoryStore, Projects, RotateRequest, Scope,
    ScopeSet, ServerKey, TokenId, TokenManager, TokenStatus, TokenUpdate, VerifyError,
    audit::AuditEvent, audit::AuditKind, digest::Keyring, expiry::ExpiryPolicy,
    expiry::ManualClock, manager::BulkAction, manager::Selection, scope::ProjectId,
    store::PageRequest, store::TokenFilter, store::TokenStore,
};

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<AuditEvent>>>);

impl Recorder {
    fn names(&self) -> Vec<&'static str> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.kind.owasp_name())
            .collect()
    }
    fn take(&self) -> Vec<AuditEvent> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct Fixture {
    manager: TokenManager,
    store: Arc<MemoryStore>,
    clock: ManualClock,
    audit: Recorder,
}

fn start() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

fn fixture_with(policy: ExpiryPolicy) -> Fixture {
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(start());
    let audit = Recorder::default();
    let sink = audit.clone();
    let manager = TokenManager::builder(Arc::clone(&store))
        .server_key(ServerKey::from_bytes([7u8; 32]).unwrap())
        .prefix("test")
        .clock(clock.clone())
        .expiry_policy(policy)
        .audit_sink(move |e: &AuditEvent| sink.0.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    Fixture {
        manager,
        store,
        clock,
        audit,
    }
}

fn fixture() -> Fixture {
    fixture_with(ExpiryPolicy::unrestricted())
}

fn scopes(s: &[&str]) -> ScopeSet {
    ScopeSet::parse(s).unwrap()
}

fn scope(s: &str) -> Scope {
    Scope::new(s).unwrap()
}

#[tokio::test]
async fn issue_and_verify() {
    let f = fixture();
    let issued = f
        .manager
        .issue(
            IssueRequest::new("deploy", "alice")
                .id(TokenId::new("deploy-1").unwrap())
                .description("CI deploys")
                .scopes(scopes(&["projects:read"]))
                .projects(Projects::only(["web"]).unwrap())
                .metadata("team", "platform")
                .expiry(ExpiryPreset::Days7),
        )
        .await
        .unwrap();
    assert!(issued.expose_secret().starts_with("test_deploy-1_"));
    assert_eq!(
        issued.record().expiry,
        Expiry::At(start() + Duration::days(7))
    );
    assert_eq!(issued.record().created_by, "system");

    let v = f.manager.verify(issued.expose_secret()).await.unwrap();
    assert_eq!(v.id().as_str(), "deploy-1");
    assert_eq!(v.owner(), "alice");
    assert_eq!(v.name(), "deploy");
    assert_eq!(
        v.metadata().get("team").map(String::as_str),
        Some("platform")
    );
    assert!(v.grants(&scope("projects:read")));
    assert!(!v.grants(&scope("projects:write")));
    assert!(
        f.manager
            .authorize_project(&v, &ProjectId::new("web").unwrap())
            .is_ok()
    );
    assert!(
        f.manager
            .authorize_project(&v, &ProjectId::new("db").unwrap())
            .is_err()
    );
    assert!(!v.used_previous_secret());
    // The refused project check is audited.
    assert_eq!(f.audit.names(), ["authn_token_created", "authz_fail"]);

    // The stored record holds no plaintext.
    let stored = f.store.get(issued.id()).await.unwrap().unwrap();
    let debug = format!("{stored:?}");
    let secret_part = &issued.expose_secret()["test_deploy-1_".len()..];
    assert!(!debug.contains(secret_part));
}

#[tokio::test]
async fn generated_ids_are_unique_and_valid() {
    let f = fixture();
    let a = f.manager.issue(IssueRequest::new("a", "o")).await.unwrap();
    let b = f.manager.issue(IssueRequest::new("b", "o")).await.unwrap();
    assert_ne!(a.id(), b.id());
    assert!(TokenId::new(a.id().as_str()).is_ok());
    assert_ne!(a.expose_secret(), b.expose_secret());
}

#[tokio::test]
async fn invalid_input_is_refused_and_stores_nothing() {
    let f = fixture();
    assert!(TokenId::new("Bad ID").is_err());
    assert!(TokenId::new("").is_err());
    assert!(TokenId::new("a".repeat(65)).is_err());
    assert!(Scope::new("projects::read").is_err());
    let cases = [
        IssueRequest::new("", "alice"),
        IssueRequest::new("name", ""),
        IssueRequest::new("x".repeat(129), "alice"),
        IssueRequest::new("bell\u{7}", "alice"),
        IssueRequest::new("past", "alice").expiry(ExpiryPreset::At(start() - Duration::seconds(1))),
        IssueRequest::new("now", "alice").expiry(ExpiryPreset::At(start())),
    ];
    for req in cases {
        let r = f.manager.issue(req.clone()).await;
        assert!(r.is_err(), "{req:?} must be refused");
    }
    assert!(f.store.is_empty());

    let dup = TokenId::new("dup").unwrap();
    f.manager
        .issue(IssueRequest::new("one", "alice").id(dup.clone()))
        .await
        .unwrap();
    let again = f
        .manager
        .issue(IssueRequest::new("two", "bob").id(dup.clone()))
        .await;
    assert!(matches!(again, Err(Error::AlreadyExists(id)) if id == dup));
    assert_eq!(f.manager.get(&dup).await.unwrap().name, "one");
}

#[tokio::test]
async fn verify_failure_reasons() {
    let f = fixture();
    let issued = f.manager.issue(IssueRequest::new("t", "o")).await.unwrap();
    let token = issued.expose_secret().to_owned();

    assert!(matches!(
        f.manager.verify("").await,
        Err(VerifyError::Malformed)
    ));
    assert!(matches!(
        f.manager.verify("garbage").await,
        Err(VerifyError::Malformed)
    ));
    assert!(matches!(
        f.manager.verify(&format!("other{}", &token[4..])).await,
        Err(VerifyError::Malformed)
    ));
    assert!(matches!(
        f.manager.verify(&"x".repeat(10_000)).await,
        Err(VerifyError::Malformed)
    ));

    // Change one secret character: the checksum catches it.
    let mut typo = token.clone().into_bytes();
    let i = typo.len() - 10;
    typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    assert!(matches!(
        f.manager.verify(&typo).await,
        Err(VerifyError::BadChecksum)
    ));

    // A well-formed token with a valid checksum but a different secret: no token matches,
    // exactly as for an unknown id.
    let fmt = f.manager.format();
    let forged = fmt
        .format(issued.id(), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .unwrap();
    assert!(matches!(
        f.manager.verify(forged.expose_secret()).await,
        Err(VerifyError::Unknown)
    ));
    // Unknown id.
    let unknown = fmt
        .format(
            &TokenId::new("nobody").unwrap(),
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .unwrap();
    assert!(matches!(
        f.manager.verify(unknown.expose_secret()).await,
        Err(VerifyError::Unknown)
    ));

    let events = f.audit.take();
    let reasons: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            AuditKind::VerifyFailed { reason } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        [
            "malformed",
            "malformed",
            "malformed",
            "malformed",
            "bad_checksum",
            "unknown",
            "unknown"
        ]
    );
    for e in &events {
        assert_eq!(
            e.kind.owasp_name() == "authn_login_fail",
            matches!(e.kind, AuditKind::VerifyFailed { .. })
        );
    }
}

#[tokio::test]
async fn expiry_boundaries() {
    let f = fixture();
    let at = start() + Duration::hours(1);
    let issued = f
        .manager
        .issue(IssueRequest::new("t", "o").expiry(ExpiryPreset::At(at)))
        .await
        .unwrap();
    let token = issued.expose_secret();
    f.clock.set(at - Duration::microseconds(1));
    assert!(f.manager.verify(token).await.is_ok(), "just before expiry");
    f.clock.set(at);
    assert!(
        matches!(f.manager.verify(token).await, Err(VerifyError::Expired)),
        "at expiry"
    );
    f.clock.set(at + Duration::microseconds(1));
    assert!(
        matches!(f.manager.verify(token).await, Err(VerifyError::Expired)),
        "after expiry"
    );
}

#[tokio::test]
async fn presets_resolve_from_the_clock() {
    let f = fixture();
    for (preset, days) in [
        (ExpiryPreset::Days7, 7),
        (ExpiryPreset::Days30, 30),
        (ExpiryPreset::Days60, 60),
        (ExpiryPreset::Days90, 90),
    ] {
        let t = f
            .manager
            .issue(IssueRequest::new("t", "o").expiry(preset))
            .await
            .unwrap();
        assert_eq!(
            t.record().expiry,
            Expiry::At(start() + Duration::days(days))
        );
    }
    let never = f
        .manager
        .issue(IssueRequest::new("t", "o").expiry(ExpiryPreset::Never))
        .await
        .unwrap();
    assert_eq!(never.record().expiry, Expiry::Never);
    f.clock
        .advance(std::time::Duration::from_secs(365 * 50 * 86400));
    assert!(f.manager.verify(never.expose_secret()).await.is_ok());
}

#[tokio::test]
async fn expiry_policy_is_enforced() {
    let f = fixture_with(
        ExpiryPolicy::unrestricted().max_lifetime(std::time::Duration::from_secs(31536000)),
    );
    let never = f
        .manager
        .issue(IssueRequest::new("t", "o").expiry(ExpiryPreset::Never))
        .await;
    assert!(matches!(never, Err(Error::Policy(_))));
    let too_long = f
        .manager
        .issue(
            IssueRequest::new("t", "o")
                .expiry(ExpiryPreset::In(std::time::Duration::from_secs(31622400))),
        )
        .await;
    assert!(matches!(too_long, Err(Error::Policy(_))));
    let ok = f
        .manager
        .issue(
            IssueRequest::new("t", "o")
                .expiry(ExpiryPreset::In(std::time::Duration::from_secs(31536000))),
        )
        .await
        .unwrap();
    // Rotation and update obey the policy too.
    let r = f
        .manager
        .rotate(ok.id(), RotateRequest::new().expiry(ExpiryPreset::Never))
        .await;
    assert!(matches!(r, Err(Error::Policy(_))));
    let u = f
        .manager
        .update(ok.id(), TokenUpdate::new().expiry(ExpiryPreset::Never))
        .await;
    assert!(matches!(u, Err(Error::Policy(_))));
    assert_eq!(f.store.len(), 1);
    assert_eq!(f.manager.get(ok.id()).await.unwrap().version, 1);
}

#[tokio::test]
async fn rotation_without_grace_reports_reuse() {
    let f = fixture();
    let issued = f.manager.issue(IssueRequest::new("t", "o")).await.unwrap();
    let old = issued.expose_secret().to_owned();
    let rotated = f
        .manager
        .rotate(issued.id(), RotateRequest::new())
        .await
        .unwrap();
    assert_eq!(rotated.id(), issued.id());
    assert_ne!(rotated.expose_secret(), old);
    assert_eq!(rotated.record().version, 2);
    assert!(matches!(
        f.manager.verify(&old).await,
        Err(VerifyError::RotatedOut)
    ));
    assert!(f.manager.verify(rotated.expose_secret()).await.is_ok());
    let names = f.audit.names();
    assert!(names.contains(&"authn_token_rotated"));
    assert!(names.contains(&"authn_token_reuse"));
}

#[tokio::test]
async fn rotation_with_grace_and_new_expiry() {
    let f = fixture();
    let issued = f
        .manager
        .issue(
            IssueRequest::new("t", "o")
                .scopes(scopes(&["a:b"]))
                .expiry(ExpiryPreset::Days7),
        )
        .await
        .unwrap();
    let old = issued.expose_secret().to_owned();
    let rotated = f
        .manager
        .rotate(
            issued.id(),
            RotateRequest::new()
                .grace(std::time::Duration::from_secs(86400))
                .expiry(ExpiryPreset::Days90),
        )
        .await
        .unwrap();
    assert_eq!(
        rotated.record().expiry,
        Expiry::At(start() + Duration::days(90))
    );
    assert_eq!(rotated.record().scopes, scopes(&["a:b"]));
    let v = f.manager.verify(&old).await.unwrap();
    assert!(v.used_previous_secret());
    f.clock
        .advance(std::time::Duration::from_secs(86400) - std::time::Duration::from_micros(1));
    assert!(f.manager.verify(&old).await.is_ok(), "just inside grace");
    f.clock.advance(std::time::Duration::from_micros(1));
    assert!(
        matches!(f.manager.verify(&old).await, Err(VerifyError::RotatedOut)),
        "grace over"
    );
    assert!(f.manager.verify(rotated.expose_secret()).await.is_ok());

    // Grace is bounded (and, a `std::time::Duration`, never negative).
    for bad in [
        std::time::Duration::from_secs(31 * 86_400),
        std::time::Duration::from_secs(30 * 86_400 + 1),
    ] {
        let r = f
            .manager
            .rotate(issued.id(), RotateRequest::new().grace(bad))
            .await;
        assert!(matches!(r, Err(Error::InvalidConfig(_))));
    }
}

#[tokio::test]
async fn concurrent_rotations_have_one_winner() {
    let f = fixture();
    let issued = f.manager.issue(IssueRequest::new("t", "o")).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let m = f.manager.clone();
        let id = issued.id().clone();
        tasks.push(tokio::spawn(async move {
            m.rotate(&id, RotateRequest::new()).await
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(issued) => winners.push(issued),
            Err(Error::Conflict(_)) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!(!winners.is_empty());
    // Only the last successful rotation's secret is current.
    let ok: Vec<_> = futures_ok(&f.manager, &winners).await;
    assert_eq!(ok.iter().filter(|b| **b).count(), 1);
}

async fn futures_ok(m: &TokenManager, tokens: &[keygate::IssuedToken]) -> Vec<bool> {
    let mut out = Vec::new();
    for t in tokens {
        out.push(matches!(m.verify(t.expose_secret()).await, Ok(v) if !v.used_previous_secret()));
    }
    out
}

#[tokio::test]
async fn disable_enable_revoke_delete() {
    let f = fixture();
    let issued = f.manager.issue(IssueRequest::new("t", "o")).await.unwrap();
    let id = issued.id().clone();
    let token = issued.expose_secret();

    let r = f.manager.disable(&id).await.unwrap();
    assert_eq!(r.status, TokenStatus::Disabled);
    assert!(matches!(
        f.manager.verify(token).await,
        Err(VerifyError::Disabled)
    ));
    f.manager.enable(&id).await.unwrap();
    assert!(f.manager.verify(token).await.is_ok());

    // Idempotent: disabling twice changes nothing the second time.
    let v1 = f.manager.disable(&id).await.unwrap().version;
    let v2 = f.manager.disable(&id).await.unwrap().version;
    assert_eq!(v1, v2);

    f.manager.revoke(&id).await.unwrap();
    assert!(matches!(
        f.manager.verify(token).await,
        Err(VerifyError::Revoked)
    ));
    assert!(matches!(
        f.manager.enable(&id).await,
        Err(Error::InvalidState { .. })
    ));
    assert!(matches!(
        f.manager.disable(&id).await,
        Err(Error::InvalidState { .. })
    ));
    assert!(matches!(
        f.manager.rotate(&id, RotateRequest::new()).await,
        Err(Error::InvalidState { .. })
    ));
    assert!(matches!(
        f.manager.update(&id, TokenUpdate::new().name("x")).await,
        Err(Error::InvalidState { .. })
    ));
    // Revoked: record kept.
    assert_eq!(
        f.manager.get(&id).await.unwrap().status,
        TokenStatus::Revoked
    );

    f.manager.delete(&id).await.unwrap();
    assert!(matches!(
        f.manager.verify(token).await,
        Err(VerifyError::Unknown)
    ));
    assert!(matches!(
        f.manager.delete(&id).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(f.manager.get(&id).await, Err(Error::NotFound(_))));

    let names = f.audit.names();
    for n in [
        "authn_token_disabled",
        "authn_token_enabled",
        "authn_token_revoked",
        "authn_token_delete",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
}

#[tokio::test]
async fn update_changes_settings() {
    let f = fixture();
    let issued = f.manager.issue(IssueRequest::new("t", "o")).await.unwrap();
    let id = issued.id().clone();
    f.clock.advance(std::time::Duration::from_secs(60));
    let mut md = std::collections::BTreeMap::new();
    md.insert("k".to_owned(), "v".to_owned());
    let r = f
        .manager
        .update(
            &id,
            TokenUpdate::new()
                .name("renamed")
                .description("d")
                .scopes(scopes(&["x:*"]))
                .projects(Projects::only(["p1"]).unwrap())
                .metadata(md.clone())
                .expiry(ExpiryPreset::Never),
        )
        .await
        .unwrap();
    assert_eq!(r.name, "renamed");
    assert_eq!(r.description, "d");
    assert_eq!(r.scopes, scopes(&["x:*"]));
    assert_eq!(r.projects, Projects::only(["p1"]).unwrap());
    assert_eq!(r.metadata, md);
    assert_eq!(r.expiry, Expiry::Never);
    assert_eq!(r.updated_at, start() + Duration::minutes(1));
    assert_eq!(r.version, 2);
    let v = f.manager.verify(issued.expose_secret()).await.unwrap();
    assert!(v.grants(&scope("x:y")));
    assert!(f.audit.names().contains(&"authz_change"));

    // Invalid input changes nothing.
    let bad = f.manager.update(&id, TokenUpdate::new().name("")).await;
    assert!(bad.is_err());
    assert_eq!(f.manager.get(&id).await.unwrap(), r);
}

#[tokio::test]
async fn list_filters_and_pages() {
    let f = fixture();
    for i in 0..25 {
        f.clock.advance(std::time::Duration::from_secs(1));
        let owner = if i % 2 == 0 { "alice" } else { "bob" };
        f.manager
            .issue(
                IssueRequest::new(format!("token {i}"), owner)
                    .id(TokenId::new(format!("t{i:02}")).unwrap())
                    .scopes(scopes(if i % 3 == 0 {
                        &["projects:read"]
                    } else {
                        &["tokens:read"]
                    })),
            )
            .await
            .unwrap();
    }
    let page = f
        .manager
        .list(&TokenFilter::new().owner("alice"), &PageRequest::first(5))
        .await
        .unwrap();
    let ids: Vec<_> = page
        .items
        .iter()
        .map(|r| r.id.as_str().to_owned())
        .collect();
    assert_eq!(ids, ["t24", "t22", "t20", "t18", "t16"]);
    let next = page.next.unwrap();
    let page2 = f
        .manager
        .list(
            &TokenFilter::new().owner("alice"),
            &PageRequest::first(5).next(next),
        )
        .await
        .unwrap();
    assert_eq!(page2.items[0].id.as_str(), "t14");

    let by_scope = f
        .manager
        .list(
            &TokenFilter::new().scope(scope("projects:read")),
            &PageRequest::first(100),
        )
        .await
        .unwrap();
    assert_eq!(by_scope.items.len(), 9);
    assert!(by_scope.next.is_none());

    let by_name = f
        .manager
        .list(
            &TokenFilter::new().name_contains("TOKEN 1"),
            &PageRequest::first(100),
        )
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 11); // 1, 10..=19
}

#[tokio::test]
async fn bulk_actions() {
    let f = fixture();
    let mut ids = Vec::new();
    for i in 0..6 {
        let t = f
            .manager
            .issue(IssueRequest::new(
                format!("t{i}"),
                if i < 4 { "team" } else { "other" },
            ))
            .await
            .unwrap();
        ids.push(t.id().clone());
    }
    let report = f
        .manager
        .bulk(
            BulkAction::Disable,
            Selection::Filter(TokenFilter::new().owner("team")),
        )
        .await
        .unwrap();
    assert_eq!(report.changed.len(), 4);
    assert!(report.failed.is_empty());
    for id in &ids[..4] {
        assert_eq!(
            f.manager.get(id).await.unwrap().status,
            TokenStatus::Disabled
        );
    }
    assert_eq!(
        f.manager.get(&ids[4]).await.unwrap().status,
        TokenStatus::Active
    );

    f.manager.revoke(&ids[0]).await.unwrap();
    let missing = TokenId::new("missing").unwrap();
    let report = f
        .manager
        .bulk(
            BulkAction::Enable,
            Selection::Ids(vec![
                ids[0].clone(),
                ids[1].clone(),
                ids[4].clone(),
                missing.clone(),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(report.changed, vec![ids[1].clone()]);
    assert_eq!(report.unchanged, vec![ids[4].clone()]);
    let failed: Vec<_> = report.failed.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(failed, vec![ids[0].clone(), missing]);

    let report = f
        .manager
        .bulk(BulkAction::Revoke, Selection::Ids(ids.clone()))
        .await
        .unwrap();
    assert_eq!(report.changed.len(), 5);
    assert_eq!(report.unchanged, vec![ids[0].clone()]);
}

#[tokio::test]
async fn no_escalation_on_behalf_of_a_token() {
    let f = fixture();
    let admin = f
        .manager
        .issue(IssueRequest::new("admin", "root").scopes(scopes(&["*"])))
        .await
        .unwrap();
    let limited = f
        .manager
        .issue(
            IssueRequest::new("limited", "alice")
                .scopes(scopes(&["tokens:*", "projects:read"]))
                .projects(Projects::only(["web", "api"]).unwrap()),
        )
        .await
        .unwrap();
    let actor = f.manager.verify(limited.expose_secret()).await.unwrap();
    let acting = f.manager.acting_as(&actor);

    // Within its own scopes and projects: allowed, and attributed to the actor.
    let child = acting
        .issue(
            IssueRequest::new("child", "alice")
                .scopes(scopes(&["projects:read", "tokens:read"]))
                .projects(Projects::only(["web"]).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(child.record().created_by, format!("token:{}", limited.id()));

    // Escalation attempts.
    let attempts = [
        IssueRequest::new("x", "alice").scopes(scopes(&["*"])),
        IssueRequest::new("x", "alice").scopes(scopes(&["projects:write"])),
        IssueRequest::new("x", "alice").scopes(scopes(&["projects:*"])),
        IssueRequest::new("x", "alice")
            .scopes(scopes(&["projects:read"]))
            .projects(Projects::All),
        IssueRequest::new("x", "alice")
            .scopes(scopes(&["projects:read"]))
            .projects(Projects::only(["db"]).unwrap()),
    ];
    for req in attempts {
        let r = acting.issue(req.clone()).await;
        assert!(matches!(r, Err(Error::Escalation(_))), "{req:?} -> {r:?}");
    }
    let r = acting
        .update(
            child.id(),
            TokenUpdate::new().scopes(scopes(&["projects:write"])),
        )
        .await;
    assert!(matches!(r, Err(Error::Escalation(_))));
    let r = acting
        .update(child.id(), TokenUpdate::new().projects(Projects::All))
        .await;
    assert!(matches!(r, Err(Error::Escalation(_))));
    assert_eq!(f.manager.get(child.id()).await.unwrap().version, 1);

    // The admin token is invisible to the limited actor.
    assert!(matches!(
        acting.get(admin.id()).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        acting.set_status(admin.id(), TokenStatus::Revoked).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        acting.delete(admin.id()).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        acting.rotate(admin.id(), RotateRequest::new()).await,
        Err(Error::NotFound(_))
    ));
    let listed = acting
        .list(&TokenFilter::new(), &PageRequest::first(1))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    let mut seen = listed.items.clone();
    let mut next = listed.next;
    while let Some(c) = next {
        let p = acting
            .list(&TokenFilter::new(), &PageRequest::first(1).next(c))
            .await
            .unwrap();
        seen.extend(p.items);
        next = p.next;
    }
    let mut seen: Vec<_> = seen.into_iter().map(|r| r.id).collect();
    seen.sort();
    let mut expected = vec![limited.id().clone(), child.id().clone()];
    expected.sort();
    assert_eq!(seen, expected);
    let report = acting
        .bulk(BulkAction::Revoke, Selection::Ids(vec![admin.id().clone()]))
        .await
        .unwrap();
    assert_eq!(report.failed.len(), 1);
    assert!(f.manager.verify(admin.expose_secret()).await.is_ok());

    // Only an admin can mint an admin token.
    let admin_actor = f.manager.verify(admin.expose_secret()).await.unwrap();
    assert!(
        f.manager
            .acting_as(&admin_actor)
            .issue(IssueRequest::new("admin2", "root").scopes(scopes(&["*"])))
            .await
            .is_ok()
    );
    assert!(f.audit.names().contains(&"authz_fail"));
}

#[tokio::test]
async fn authorize_audits_denials() {
    let f = fixture();
    let t = f
        .manager
        .issue(IssueRequest::new("t", "o").scopes(scopes(&["a:read"])))
        .await
        .unwrap();
    let v = f.manager.verify(t.expose_secret()).await.unwrap();
    assert!(f.manager.authorize(&v, &scope("a:read")).is_ok());
    assert!(f.manager.authorize(&v, &scope("a:write")).is_err());
    assert!(
        f.manager
            .authorize_project(&v, &ProjectId::new("p").unwrap())
            .is_ok()
    );
    let denied: Vec<_> = f
        .audit
        .take()
        .into_iter()
        .filter(|e| matches!(e.kind, AuditKind::AccessDenied { .. }))
        .collect();
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].token_id.as_ref(), Some(t.id()));
}

#[tokio::test]
async fn server_key_rotation_rehashes_on_verify() {
    let store = Arc::new(MemoryStore::new());
    let old_key = || ServerKey::from_bytes([1u8; 32]).unwrap();
    let new_key = || ServerKey::from_bytes([2u8; 32]).unwrap();
    let m1 = TokenManager::builder(Arc::clone(&store))
        .keyring(Keyring::new(1, old_key()))
        .build()
        .unwrap();
    let issued = m1.issue(IssueRequest::new("t", "o")).await.unwrap();
    assert_eq!(issued.record().digest.key_version, 1);

    let m2 = TokenManager::builder(Arc::clone(&store))
        .keyring(Keyring::new(1, old_key()).rotate_to(2, new_key()).unwrap())
        .build()
        .unwrap();
    assert!(m2.verify(issued.expose_secret()).await.is_ok());
    let rec = store.get(issued.id()).await.unwrap().unwrap();
    assert_eq!(rec.digest.key_version, 2, "re-hashed under the current key");
    assert!(m2.verify(issued.expose_secret()).await.is_ok());

    // A manager holding only the new key still verifies; one with only the old key no longer does.
    let only_new = TokenManager::builder(Arc::clone(&store))
        .keyring(Keyring::new(2, new_key()))
        .build()
        .unwrap();
    assert!(only_new.verify(issued.expose_secret()).await.is_ok());
    assert!(matches!(
        m1.verify(issued.expose_secret()).await,
        Err(VerifyError::Unknown)
    ));
    // New tokens use the current key.
    let fresh = m2.issue(IssueRequest::new("t2", "o")).await.unwrap();
    assert_eq!(fresh.record().digest.key_version, 2);
}

/// A service started with another key for a version than the one the store's tokens were
/// issued under is told at startup; the right keys pass; an old key is known to be unused
/// once every token was re-hashed under the new one.
#[tokio::test]
async fn server_keys_are_checked_against_the_stores_fingerprints() {
    let store = Arc::new(MemoryStore::new());
    let key = |b: u8| ServerKey::from_bytes([b; 32]).unwrap();
    let manager = |keyring: Keyring| {
        TokenManager::builder(Arc::clone(&store))
            .keyring(keyring)
            .build()
            .unwrap()
    };
    let first = manager(Keyring::new(1, key(1)));
    first.check_server_keys().await.unwrap();
    let issued = first.issue(IssueRequest::new("t", "o")).await.unwrap();
    first.check_server_keys().await.unwrap();

    // Another pepper under the same version: refused, naming the version.
    let wrong = manager(Keyring::new(1, key(9)));
    let err = wrong.check_server_keys().await.unwrap_err();
    assert!(matches!(err, Error::ServerKeyMismatch(1)), "{err:?}");
    assert!(err.to_string().contains("server key version 1"), "{err}");
    // ...and indeed it would refuse every token.
    assert!(wrong.verify(issued.expose_secret()).await.is_err());
    // A wrong previous key is found too, whatever the current one.
    let wrong_previous = manager(Keyring::new(1, key(9)).rotate_to(2, key(2)).unwrap());
    assert!(matches!(
        wrong_previous.check_server_keys().await,
        Err(Error::ServerKeyMismatch(1))
    ));

    // Rotation: the old key kept as previous, the new one recorded on its first check.
    let rotated = manager(Keyring::new(1, key(1)).rotate_to(3, key(3)).unwrap());
    rotated.check_server_keys().await.unwrap();
    assert!(matches!(
        manager(Keyring::new(3, key(4))).check_server_keys().await,
        Err(Error::ServerKeyMismatch(3))
    ));
    assert!(rotated.key_in_use(1).await.unwrap());
    assert!(!rotated.key_in_use(3).await.unwrap());
    let newer = rotated.issue(IssueRequest::new("new", "o")).await.unwrap();
    assert_eq!(
        rotated.tokens_per_key_version().await.unwrap(),
        [(1, 1), (3, 1)].into_iter().collect()
    );
    rotated.delete(newer.id()).await.unwrap();
    rotated.verify(issued.expose_secret()).await.unwrap();
    assert_eq!(
        rotated.tokens_per_key_version().await.unwrap(),
        [(3, 1)].into_iter().collect(),
        "the verification re-hashed the token under version 3"
    );
    assert!(
        !rotated.key_in_use(1).await.unwrap(),
        "re-hashed under version 3: version 1 can be dropped"
    );
    assert!(rotated.key_in_use(3).await.unwrap());
    let only_new = manager(Keyring::new(3, key(3)));
    only_new.check_server_keys().await.unwrap();
    only_new.verify(issued.expose_secret()).await.unwrap();
}

#[tokio::test]
async fn weak_server_keys_are_refused() {
    assert!(ServerKey::from_bytes([0u8; 31]).is_err());
    let no_key = TokenManager::builder(MemoryStore::new()).build();
    assert!(matches!(no_key, Err(Error::InvalidServerKey(_))));
    let bad_prefix = TokenManager::builder(MemoryStore::new())
        .server_key(ServerKey::generate())
        .prefix("Bad-Prefix")
        .build();
    assert!(matches!(bad_prefix, Err(Error::InvalidPrefix(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_used_is_written_at_most_once_per_interval() {
    #[derive(Default)]
    struct CountingTouches {
        inner: MemoryStore,
        touches: std::sync::atomic::AtomicUsize,
    }
    #[async_trait::async_trait]
    impl TokenStore for CountingTouches {
        async fn insert(&self, r: &keygate::TokenRecord) -> Result<(), keygate::error::StoreError> {
            self.inner.insert(r).await
        }
        async fn get(
            &self,
            id: &TokenId,
        ) -> Result<Option<Arc<keygate::TokenRecord>>, keygate::error::StoreError> {
            self.inner.get(id).await
        }
        async fn find_by_digest(
            &self,
            d: &keygate::digest::Digest,
        ) -> Result<Option<Arc<keygate::TokenRecord>>, keygate::error::StoreError> {
            self.inner.find_by_digest(d).await
        }
        async fn update(
            &self,
            r: &keygate::TokenRecord,
        ) -> Result<u64, keygate::error::StoreError> {
            self.inner.update(r).await
        }
        async fn delete(&self, id: &TokenId) -> Result<bool, keygate::error::StoreError> {
            self.inner.delete(id).await
        }
        async fn list(
            &self,
            f: &TokenFilter,
            p: &PageRequest,
        ) -> Result<keygate::store::Page, keygate::error::StoreError> {
            self.inner.list(f, p).await
        }
        async fn touch(
            &self,
            id: &TokenId,
            at: chrono::DateTime<Utc>,
        ) -> Result<(), keygate::error::StoreError> {
            self.touches
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.touch(id, at).await
        }
    }
    let store = Arc::new(CountingTouches::default());
    let clock = ManualClock::new(start());
    let m = TokenManager::builder(Arc::clone(&store))
        .server_key(ServerKey::generate())
        .clock(clock.clone())
        .build()
        .unwrap();
    let t = m.issue(IssueRequest::new("t", "o")).await.unwrap();
    for _ in 0..200 {
        m.verify(t.expose_secret()).await.unwrap();
    }
    wait_for(|| store.touches.load(std::sync::atomic::Ordering::SeqCst) >= 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(store.touches.load(std::sync::atomic::Ordering::SeqCst), 1);
    let rec = store.get(t.id()).await.unwrap().unwrap();
    assert_eq!(rec.last_used_at, Some(start()));

    clock.advance(std::time::Duration::from_secs(59));
    for _ in 0..50 {
        m.verify(t.expose_secret()).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(store.touches.load(std::sync::atomic::Ordering::SeqCst), 1);

    clock.advance(std::time::Duration::from_secs(1));
    m.verify(t.expose_secret()).await.unwrap();
    wait_for(|| store.touches.load(std::sync::atomic::Ordering::SeqCst) >= 2).await;
    let rec = store.get(t.id()).await.unwrap().unwrap();
    assert_eq!(rec.last_used_at, Some(start() + Duration::seconds(60)));
}

async fn wait_for(cond: impl Fn() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 5 s");
}

/// A manager over a memory store (returned too, to change records behind the manager's back)
/// with the verification cache on, entries living `ttl`.
fn cached_manager(ttl: std::time::Duration) -> (Arc<MemoryStore>, TokenManager) {
    let store = Arc::new(MemoryStore::new());
    let m = TokenManager::builder(Arc::clone(&store))
        .server_key(ServerKey::generate())
        .cache(CacheConfig::new().ttl(ttl).unwrap())
        .build()
        .unwrap();
    (store, m)
}

#[tokio::test]
async fn cache_is_invalidated_by_local_changes() {
    let (store, m) = cached_manager(std::time::Duration::from_secs(60));
    let t = m.issue(IssueRequest::new("t", "o")).await.unwrap();
    assert!(m.verify(t.expose_secret()).await.is_ok());
    // Cached now; a local revoke must still take effect at once.
    m.revoke(t.id()).await.unwrap();
    assert!(matches!(
        m.verify(t.expose_secret()).await,
        Err(VerifyError::Revoked)
    ));

    let t2 = m.issue(IssueRequest::new("t2", "o")).await.unwrap();
    assert!(m.verify(t2.expose_secret()).await.is_ok());
    // A change behind the manager's back (another instance) is served from the cache until
    // invalidated...
    let mut rec = keygate::TokenRecord::clone(&store.get(t2.id()).await.unwrap().unwrap());
    rec.status = TokenStatus::Disabled;
    store.update(&rec).await.unwrap();
    assert!(m.verify(t2.expose_secret()).await.is_ok());
    // ...and refused once invalidated.
    m.invalidate(t2.id());
    assert!(matches!(
        m.verify(t2.expose_secret()).await,
        Err(VerifyError::Disabled)
    ));
    // The cache never accepts a wrong secret.
    let forged = m
        .format()
        .format(t2.id(), "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB")
        .unwrap();
    assert!(matches!(
        m.verify(forged.expose_secret()).await,
        Err(VerifyError::Unknown)
    ));
}

/// During a rotation's grace period the old and the new secret are cached apart (the cache
/// is keyed by digest); invalidating the id drops both.
#[tokio::test]
async fn cache_invalidation_drops_every_secret_of_the_token() {
    let (store, m) = cached_manager(std::time::Duration::from_secs(60));
    let old = m.issue(IssueRequest::new("t", "o")).await.unwrap();
    let new = m
        .rotate(
            old.id(),
            RotateRequest::new().grace(std::time::Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    for _ in 0..2 {
        assert!(
            m.verify(old.expose_secret())
                .await
                .unwrap()
                .used_previous_secret()
        );
        assert!(
            !m.verify(new.expose_secret())
                .await
                .unwrap()
                .used_previous_secret()
        );
    }
    // Disabled behind the manager's back: both secrets are still served from the cache...
    let mut rec = keygate::TokenRecord::clone(&store.get(old.id()).await.unwrap().unwrap());
    rec.status = TokenStatus::Disabled;
    store.update(&rec).await.unwrap();
    assert!(m.verify(old.expose_secret()).await.is_ok());
    assert!(m.verify(new.expose_secret()).await.is_ok());
    // ...until the id is invalidated: then neither is.
    m.invalidate(old.id());
    for t in [&old, &new] {
        assert!(matches!(
            m.verify(t.expose_secret()).await,
            Err(VerifyError::Disabled)
        ));
    }
}

#[tokio::test]
async fn cache_entries_expire_after_ttl() {
    let (store, m) = cached_manager(std::time::Duration::from_millis(100));
    let t = m.issue(IssueRequest::new("t", "o")).await.unwrap();
    assert!(m.verify(t.expose_secret()).await.is_ok());
    let mut rec = keygate::TokenRecord::clone(&store.get(t.id()).await.unwrap().unwrap());
    rec.status = TokenStatus::Revoked;
    store.update(&rec).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert!(matches!(
        m.verify(t.expose_secret()).await,
        Err(VerifyError::Revoked)
    ));
    assert!(CacheConfig::new().ttl(std::time::Duration::ZERO).is_err());
    assert!(
        CacheConfig::new()
            .ttl(std::time::Duration::from_secs(61))
            .is_err()
    );
}

#[tokio::test]
async fn a_token_created_disabled_is_refused_until_enabled() {
    let f = fixture();
    let issued = f
        .manager
        .issue(IssueRequest::new("later", "alice").disabled())
        .await
        .unwrap();
    assert_eq!(issued.record().status, TokenStatus::Disabled);
    let stored = f.store.get(issued.id()).await.unwrap().unwrap();
    assert_eq!(stored.status, TokenStatus::Disabled);
    assert!(matches!(
        f.manager.verify(issued.expose_secret()).await,
        Err(VerifyError::Disabled)
    ));
    f.manager.enable(issued.id()).await.unwrap();
    assert!(f.manager.verify(issued.expose_secret()).await.is_ok());
    assert_eq!(
        f.audit.names(),
        [
            "authn_token_created",
            "authn_login_fail",
            "authn_token_enabled"
        ]
    );
}
