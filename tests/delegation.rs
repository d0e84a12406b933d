//! Delegation through the public API: a token acting on tokens never exceeds itself on any
//! axis (owner, lifetime, policy cap, attribution, size, concurrency, retired secrets,
//! self-lockout). Each attack is first shown to work where the rule does not apply (the
//! manager acting for itself, or an actor holding the grant), then refused for the actor.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a test failure"
)]

use std::sync::{Arc, Mutex};

use chrono::{Duration, SubsecRound, Utc};
use keygate::ip::IpNet;
use keygate::manager::VerifyContext;
use keygate::record::Limits;
use keygate::{
    Error, ExpiryPreset, IssueRequest, IssuedToken, MemoryStore, Projects, RotateRequest, ScopeSet,
    ServerKey, TokenId, TokenManager, TokenStatus, TokenUpdate, VerifiedToken, VerifyError,
    audit::AuditEvent, audit::AuditKind, error::AccessError, expiry::ExpiryPolicy,
    expiry::ManualClock, manager::BulkAction, manager::Selection, store::TokenFilter,
};

type Events = Arc<Mutex<Vec<AuditEvent>>>;

struct Fixture {
    manager: TokenManager,
    clock: ManualClock,
    events: Events,
}

fn fixture_with(policy: ExpiryPolicy, limits: Limits) -> Fixture {
    let clock = ManualClock::new(Utc::now());
    let events: Events = Arc::default();
    let sink = Arc::clone(&events);
    let manager = TokenManager::builder(MemoryStore::new())
        .server_key(ServerKey::generate())
        .clock(clock.clone())
        .expiry_policy(policy)
        .limits(limits)
        .audit_sink(move |e: &AuditEvent| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    Fixture {
        manager,
        clock,
        events,
    }
}

fn fixture() -> Fixture {
    fixture_with(ExpiryPolicy::unrestricted(), Limits::default())
}

fn scopes(s: &[&str]) -> ScopeSet {
    ScopeSet::parse(s.iter().copied()).unwrap()
}

impl Fixture {
    async fn issue(&self, owner: &str, s: &[&str], expiry: ExpiryPreset) -> IssuedToken {
        self.manager
            .issue(
                IssueRequest::new("t", owner)
                    .scopes(scopes(s))
                    .expiry(expiry),
            )
            .await
            .unwrap()
    }

    async fn actor(&self, owner: &str, s: &[&str], expiry: ExpiryPreset) -> VerifiedToken {
        let issued = self.issue(owner, s, expiry).await;
        self.manager.verify(issued.expose_secret()).await.unwrap()
    }

    fn reuse_events(&self) -> usize {
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter(|e| matches!(e.kind, AuditKind::Reuse))
            .count()
    }
}

fn escalation(r: Result<impl std::fmt::Debug, Error>, want: AccessError) {
    match r {
        Err(Error::Escalation(e)) => assert_eq!(e, want),
        other => panic!("expected Escalation({want:?}), got {other:?}"),
    }
}

fn not_found<T: std::fmt::Debug>(r: Result<T, Error>) {
    assert!(
        matches!(r, Err(Error::NotFound(_))),
        "expected NotFound, got {r:?}"
    );
}

// ----- owner -------------------------------------------------------------------------------

#[tokio::test]
async fn a_token_creates_and_manages_only_its_owners_tokens() {
    let f = fixture();
    let alice = f
        .actor(
            "alice",
            &["tokens:write", "projects:read"],
            ExpiryPreset::Never,
        )
        .await;
    let bob_token = f
        .issue("bob", &["projects:read"], ExpiryPreset::Never)
        .await;
    let bob_id = bob_token.id().clone();
    let as_alice = f.manager.acting_as(&alice);

    // Without the rule (the manager itself), a token for bob is fine.
    let req = || IssueRequest::new("for bob", "bob").scopes(scopes(&["projects:read"]));
    f.manager.issue(req()).await.unwrap();
    // Alice's token may not create one.
    escalation(as_alice.issue(req()).await, AccessError::OtherOwner);

    // Bob's token is out of alice's reach: it cannot be read, rotated (which would hand
    // alice bob's new secret), disabled, revoked, updated or deleted.
    not_found(as_alice.get(&bob_id).await);
    not_found(as_alice.rotate(&bob_id, RotateRequest::new()).await);
    not_found(as_alice.set_status(&bob_id, TokenStatus::Disabled).await);
    not_found(as_alice.set_status(&bob_id, TokenStatus::Revoked).await);
    not_found(as_alice.update(&bob_id, TokenUpdate::new().name("x")).await);
    not_found(as_alice.delete(&bob_id).await);
    let page = as_alice
        .list(&TokenFilter::new(), &Default::default())
        .await
        .unwrap();
    assert!(page.items.iter().all(|r| r.owner == "alice"), "{page:?}");
    let report = as_alice
        .bulk(BulkAction::Revoke, Selection::Ids(vec![bob_id.clone()]))
        .await
        .unwrap();
    assert!(matches!(report.failed[..], [(_, Error::NotFound(_))]));
    let bob = f.manager.get(&bob_id).await.unwrap();
    assert_eq!((bob.status, bob.version), (TokenStatus::Active, 1));
    assert!(f.manager.verify(bob_token.expose_secret()).await.is_ok());

    // With the explicit cross-owner grant the same calls work.
    let admin = f
        .actor(
            "ops",
            &["tokens:write", "tokens:any-owner", "projects:read"],
            ExpiryPreset::Never,
        )
        .await;
    let as_admin = f.manager.acting_as(&admin);
    assert_eq!(as_admin.issue(req()).await.unwrap().record().owner, "bob");
    let rotated = as_admin
        .rotate(&bob_id, RotateRequest::new())
        .await
        .unwrap();
    assert_eq!(
        f.manager
            .verify(rotated.expose_secret())
            .await
            .unwrap()
            .owner(),
        "bob"
    );
}

// ----- lifetime ----------------------------------------------------------------------------

#[tokio::test]
async fn a_token_never_creates_or_extends_beyond_its_own_expiry() {
    let f = fixture();
    let hour = ExpiryPreset::In(std::time::Duration::from_secs(3600));
    let short = f.actor("alice", &["tokens:write", "a"], hour).await;
    let as_short = f.manager.acting_as(&short);
    let req = |e: ExpiryPreset| {
        IssueRequest::new("child", "alice")
            .scopes(scopes(&["a"]))
            .expiry(e)
    };

    // The manager itself may issue a never-expiring token; the short-lived actor may not,
    // nor one that outlives it.
    f.manager.issue(req(ExpiryPreset::Never)).await.unwrap();
    escalation(
        as_short.issue(req(ExpiryPreset::Never)).await,
        AccessError::BeyondLifetime,
    );
    escalation(
        as_short
            .issue(req(ExpiryPreset::In(std::time::Duration::from_secs(7200))))
            .await,
        AccessError::BeyondLifetime,
    );
    // Within its life: fine. With no expiry asked, the child gets the actor's own (30 days
    // would outlive it).
    let child = as_short
        .issue(req(ExpiryPreset::In(std::time::Duration::from_secs(1800))))
        .await
        .unwrap();
    let defaulted = as_short
        .issue(IssueRequest::new("d", "alice").scopes(scopes(&["a"])))
        .await
        .unwrap();
    assert_eq!(defaulted.record().expiry, short.expiry());

    // Its own expiry cannot move to `never` or later, by update or by rotation.
    escalation(
        as_short
            .update(short.id(), TokenUpdate::new().expiry(ExpiryPreset::Never))
            .await,
        AccessError::BeyondLifetime,
    );
    escalation(
        as_short
            .rotate(
                short.id(),
                RotateRequest::new().expiry(ExpiryPreset::Days30),
            )
            .await,
        AccessError::BeyondLifetime,
    );
    // Rotating a longer-lived token of its owner would hand out a secret that outlives the
    // actor: refused, unless the rotation brings the expiry within the actor's.
    let long = f.issue("alice", &["a"], ExpiryPreset::Never).await;
    escalation(
        as_short.rotate(long.id(), RotateRequest::new()).await,
        AccessError::BeyondLifetime,
    );
    let ok = as_short
        .rotate(
            long.id(),
            RotateRequest::new().expiry(ExpiryPreset::In(std::time::Duration::from_secs(600))),
        )
        .await
        .unwrap();
    assert!(short.expiry().covers(&ok.record().expiry));
    // Nothing was stretched.
    let me = f.manager.get(short.id()).await.unwrap();
    assert_eq!(me.expiry, short.expiry());
    assert!(child.record().expiry.at() <= short.expiry().at());
}

#[tokio::test]
async fn revoking_with_children_cleans_up_a_leaked_token() {
    let f = fixture();
    let parent = f
        .actor("alice", &["tokens:write", "a"], ExpiryPreset::Never)
        .await;
    let child_issued = f
        .manager
        .acting_as(&parent)
        .issue(IssueRequest::new("child", "alice").scopes(scopes(&["tokens:write", "a"])))
        .await
        .unwrap();
    let child = f
        .manager
        .verify(child_issued.expose_secret())
        .await
        .unwrap();
    let grandchild = f
        .manager
        .acting_as(&child)
        .issue(IssueRequest::new("grandchild", "alice").scopes(scopes(&["a"])))
        .await
        .unwrap();
    let unrelated = f.issue("alice", &["a"], ExpiryPreset::Never).await;
    assert_eq!(child.created_by(), format!("token:{}", parent.id()));

    // Revoking the parent alone leaves its offspring valid...
    f.manager.revoke(parent.id()).await.unwrap();
    assert!(f.manager.verify(grandchild.expose_secret()).await.is_ok());
    // ...revoking with children (the parent is revoked already) kills them all.
    let report = f.manager.revoke_with_children(parent.id()).await.unwrap();
    assert_eq!(report.unchanged, vec![parent.id().clone()]);
    assert_eq!(report.changed.len(), 2, "{report:?}");
    for t in [&child_issued, &grandchild] {
        assert!(matches!(
            f.manager.verify(t.expose_secret()).await,
            Err(VerifyError::Revoked)
        ));
    }
    assert!(f.manager.verify(unrelated.expose_secret()).await.is_ok());
}

// ----- policy cap --------------------------------------------------------------------------

#[tokio::test]
async fn the_policy_cap_counts_from_issue_or_rotation_whatever_updates_happen() {
    // Without a cap, pushing the expiry forward with updates keeps one secret alive for
    // 1,280 days.
    let free = fixture();
    let t = free
        .issue(
            "alice",
            &[],
            ExpiryPreset::In(std::time::Duration::from_secs(31536000)),
        )
        .await;
    for _ in 0..4 {
        free.clock.advance(std::time::Duration::from_secs(27648000));
        free.manager
            .update(
                t.id(),
                TokenUpdate::new()
                    .expiry(ExpiryPreset::In(std::time::Duration::from_secs(31536000))),
            )
            .await
            .unwrap();
    }
    assert!(free.manager.verify(t.expose_secret()).await.is_ok());

    // With a 365-day cap the first such update is refused; what stays within 365 days of
    // the issue is fine; a rotation starts the count again.
    let f = fixture_with(
        ExpiryPolicy::unrestricted().max_lifetime(std::time::Duration::from_secs(31536000)),
        Limits::default(),
    );
    let t = f
        .issue(
            "alice",
            &[],
            ExpiryPreset::In(std::time::Duration::from_secs(31536000)),
        )
        .await;
    f.clock.advance(std::time::Duration::from_secs(27648000));
    let r = f
        .manager
        .update(
            t.id(),
            TokenUpdate::new().expiry(ExpiryPreset::In(std::time::Duration::from_secs(31536000))),
        )
        .await;
    assert!(matches!(r, Err(Error::Policy(_))), "{r:?}");
    let at_cap = t.record().secret_issued_at + Duration::days(365);
    f.manager
        .update(t.id(), TokenUpdate::new().expiry(ExpiryPreset::At(at_cap)))
        .await
        .unwrap();
    let r = f
        .manager
        .update(
            t.id(),
            TokenUpdate::new().expiry(ExpiryPreset::At(at_cap + Duration::seconds(1))),
        )
        .await;
    assert!(matches!(r, Err(Error::Policy(_))), "{r:?}");
    let rotated = f
        .manager
        .rotate(
            t.id(),
            RotateRequest::new().expiry(ExpiryPreset::In(std::time::Duration::from_secs(31536000))),
        )
        .await
        .unwrap();
    assert_eq!(
        rotated.record().secret_issued_at,
        f.manager.now().trunc_subsecs(6)
    );
}

// ----- attribution -------------------------------------------------------------------------

#[tokio::test]
async fn created_by_is_set_by_keygate_when_acting() {
    let f = fixture();
    // The manager itself may record any creator (an import, a person's name).
    let imported = f
        .manager
        .issue(IssueRequest::new("x", "alice").created_by("system"))
        .await
        .unwrap();
    assert_eq!(imported.record().created_by, "system");

    let actor = f
        .actor("alice", &["tokens:write"], ExpiryPreset::Never)
        .await;
    let r = f
        .manager
        .acting_as(&actor)
        .issue(IssueRequest::new("x", "alice").created_by("system"))
        .await;
    assert!(
        matches!(
            r,
            Err(Error::InvalidField {
                field: "created_by",
                ..
            })
        ),
        "{r:?}"
    );
    let made = f
        .manager
        .acting_as(&actor)
        .issue(IssueRequest::new("x", "alice"))
        .await
        .unwrap();
    assert_eq!(made.record().created_by, format!("token:{}", actor.id()));
}

// ----- size --------------------------------------------------------------------------------

#[tokio::test]
async fn sizes_are_bounded_for_everyone_and_nothing_is_written() {
    let f = fixture();
    let many = |n: usize, prefix: &str| -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    };
    let scopes_65 = ScopeSet::parse(many(65, "s:")).unwrap();
    let projects_257 = Projects::only(many(257, "p")).unwrap();
    let cases: Vec<(&str, IssueRequest)> = vec![
        (
            "scopes",
            IssueRequest::new("x", "a").scopes(scopes_65.clone()),
        ),
        (
            "projects",
            IssueRequest::new("x", "a").projects(projects_257.clone()),
        ),
        ("name", IssueRequest::new("n".repeat(129), "a")),
        ("owner", IssueRequest::new("x", "o".repeat(129))),
        (
            "description",
            IssueRequest::new("x", "a").description("d".repeat(1025)),
        ),
        (
            "metadata value",
            IssueRequest::new("x", "a").metadata("k", "v".repeat(1025)),
        ),
        (
            "allowed_ips",
            IssueRequest::new("x", "a")
                .allowed_ips((0..33u8).map(|i| format!("10.{i}.0.0/16").parse::<IpNet>().unwrap())),
        ),
    ];
    for (field, req) in cases {
        match f.manager.issue(req).await {
            Err(Error::TooLarge { field: got, .. }) => assert_eq!(got, field),
            other => panic!("{field}: expected TooLarge, got {other:?}"),
        }
    }
    // At the limits: accepted.
    f.manager
        .issue(
            IssueRequest::new("n".repeat(128), "a")
                .scopes(ScopeSet::parse(many(64, "s:")).unwrap())
                .projects(Projects::only(many(256, "p")).unwrap()),
        )
        .await
        .unwrap();
    let existing = f
        .manager
        .list(&TokenFilter::new(), &Default::default())
        .await
        .unwrap()
        .items;
    assert_eq!(
        existing.len(),
        1,
        "only the request at the limits was stored"
    );
    let id = existing[0].id.clone();
    let r = f
        .manager
        .update(&id, TokenUpdate::new().scopes(scopes_65))
        .await;
    assert!(
        matches!(
            r,
            Err(Error::TooLarge {
                field: "scopes",
                max: 64,
                ..
            })
        ),
        "{r:?}"
    );
    let ids: Vec<TokenId> = (0..1001).map(|_| TokenId::generate()).collect();
    let r = f
        .manager
        .bulk(BulkAction::Disable, Selection::Ids(ids))
        .await;
    assert!(
        matches!(
            r,
            Err(Error::TooLarge {
                field: "ids",
                max: 1000,
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(f.manager.get(&id).await.unwrap().version, 1);

    // Text limits count characters, as JSON Schema's `maxLength` does, not bytes: 128
    // three-byte characters (384 bytes) fit, 129 do not.
    f.manager
        .issue(
            IssueRequest::new("名".repeat(128), "所".repeat(128)).metadata("鍵".repeat(64), "値"),
        )
        .await
        .unwrap();
    for (field, req) in [
        ("name", IssueRequest::new("名".repeat(129), "a")),
        ("owner", IssueRequest::new("x", "所".repeat(129))),
        (
            "metadata key",
            IssueRequest::new("x", "a").metadata("鍵".repeat(65), "v"),
        ),
    ] {
        match f.manager.issue(req).await {
            Err(Error::TooLarge {
                field: got,
                unit: "characters",
                ..
            }) => assert_eq!(got, field),
            other => panic!("{field}: expected TooLarge in characters, got {other:?}"),
        }
    }

    // Limits are configurable, and a zero limit is refused when the manager is built.
    let small = fixture_with(
        ExpiryPolicy::unrestricted(),
        Limits::default().scopes(2).bulk_ids(2),
    );
    // A filter selecting more tokens than one call may change: refused, nothing changed.
    for i in 0..3 {
        small
            .issue(&format!("o{i}"), &[], ExpiryPreset::Never)
            .await;
    }
    let r = small
        .manager
        .bulk(BulkAction::Disable, Selection::Filter(TokenFilter::new()))
        .await;
    assert!(matches!(r, Err(Error::TooManyMatches { max: 2 })), "{r:?}");
    let page = small
        .manager
        .list(
            &TokenFilter::new().status(TokenStatus::Active),
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 3, "nothing was disabled");
    let r = small
        .manager
        .issue(IssueRequest::new("x", "a").scopes(scopes(&["a", "b", "c"])))
        .await;
    assert!(matches!(r, Err(Error::TooLarge { max: 2, .. })), "{r:?}");
    let built = TokenManager::builder(MemoryStore::new())
        .server_key(ServerKey::generate())
        .limits(Limits::default().projects(0))
        .build();
    assert!(matches!(built, Err(Error::InvalidConfig(_))));
}

// ----- concurrency -------------------------------------------------------------------------

#[tokio::test]
async fn a_stale_version_changes_nothing() {
    let f = fixture();
    let t = f.issue("alice", &[], ExpiryPreset::Never).await;
    let v1 = t.record().version;
    f.manager
        .update(t.id(), TokenUpdate::new().name("second"))
        .await
        .unwrap();
    // Without a version the change applies (last writer wins, as documented).
    f.manager
        .update(t.id(), TokenUpdate::new().name("third"))
        .await
        .unwrap();
    // Naming the version read before: refused, for update and rotation alike.
    let r = f
        .manager
        .update(
            t.id(),
            TokenUpdate::new().name("stale").expected_version(v1),
        )
        .await;
    assert!(
        matches!(r, Err(Error::VersionMismatch { expected, .. }) if expected == v1),
        "{r:?}"
    );
    let r = f
        .manager
        .rotate(t.id(), RotateRequest::new().expected_version(v1))
        .await;
    assert!(matches!(r, Err(Error::VersionMismatch { .. })), "{r:?}");
    let now = f.manager.get(t.id()).await.unwrap();
    assert_eq!(now.name, "third");
    assert!(f.manager.verify(t.expose_secret()).await.is_ok());
    // The current version works.
    f.manager
        .rotate(t.id(), RotateRequest::new().expected_version(now.version))
        .await
        .unwrap();
}

// ----- retired secrets ---------------------------------------------------------------------

#[tokio::test]
async fn every_retired_secret_is_reuse_and_a_running_grace_is_ended_explicitly() {
    let f = fixture();
    let first = f.issue("alice", &[], ExpiryPreset::Never).await;
    let id = first.id().clone();
    let grace = RotateRequest::new().grace(std::time::Duration::from_secs(3600));
    let second = f.manager.rotate(&id, grace).await.unwrap();
    assert!(
        f.manager
            .verify(first.expose_secret())
            .await
            .unwrap()
            .used_previous_secret()
    );

    // A second rotation inside the grace period would silently end it: refused.
    let r = f.manager.rotate(&id, RotateRequest::new()).await;
    assert!(matches!(r, Err(Error::InvalidState { .. })), "{r:?}");
    assert!(f.manager.verify(first.expose_secret()).await.is_ok());
    // Said explicitly, it ends the grace; the first secret is then reuse, not unknown.
    let mut secrets = vec![first, second];
    secrets.push(
        f.manager
            .rotate(&id, RotateRequest::new().end_grace())
            .await
            .unwrap(),
    );
    let before = f.reuse_events();
    assert!(matches!(
        f.manager.verify(secrets[0].expose_secret()).await,
        Err(VerifyError::RotatedOut)
    ));
    assert_eq!(f.reuse_events(), before + 1);

    // The record keeps the last 8 retired secrets: each of them is reuse; the 9th oldest is
    // forgotten (unknown).
    while secrets.len() < 10 {
        secrets.push(f.manager.rotate(&id, RotateRequest::new()).await.unwrap());
    }
    let current = secrets.pop().unwrap();
    assert!(f.manager.verify(current.expose_secret()).await.is_ok());
    assert_eq!(f.manager.get(&id).await.unwrap().retired.len(), 8);
    let oldest = secrets.remove(0);
    assert!(matches!(
        f.manager.verify(oldest.expose_secret()).await,
        Err(VerifyError::Unknown)
    ));
    let before = f.reuse_events();
    for s in &secrets {
        assert!(matches!(
            f.manager.verify(s.expose_secret()).await,
            Err(VerifyError::RotatedOut)
        ));
    }
    assert_eq!(f.reuse_events(), before + 8);
    // The grace boundary: valid strictly before its end.
    let g = f
        .manager
        .rotate(
            &id,
            RotateRequest::new().grace(std::time::Duration::from_secs(300)),
        )
        .await
        .unwrap();
    f.clock
        .advance(std::time::Duration::from_secs(300) - std::time::Duration::from_micros(1));
    assert!(f.manager.verify(current.expose_secret()).await.is_ok());
    f.clock.advance(std::time::Duration::from_micros(1));
    assert!(matches!(
        f.manager.verify(current.expose_secret()).await,
        Err(VerifyError::RotatedOut)
    ));
    assert!(f.manager.verify(g.expose_secret()).await.is_ok());
}

// ----- self-lockout ------------------------------------------------------------------------

#[tokio::test]
async fn a_filter_never_selects_the_actor_and_the_last_admin_stays() {
    let f = fixture();
    let root = f.actor("ops", &["*"], ExpiryPreset::Never).await;
    let other = f.issue("ops", &["a"], ExpiryPreset::Never).await;
    let as_root = f.manager.acting_as(&root);

    // A filter matching everything leaves the actor alone.
    let report = as_root
        .bulk(BulkAction::Disable, Selection::Filter(TokenFilter::new()))
        .await
        .unwrap();
    assert_eq!(report.changed, vec![other.id().clone()]);
    assert!(is_active(&f.manager, &root).await);

    // Naming itself includes it, but it is the last active `*` token: refused, as is
    // revoking, deleting or narrowing it.
    let report = as_root
        .bulk(BulkAction::Revoke, Selection::Ids(vec![root.id().clone()]))
        .await
        .unwrap();
    assert!(
        matches!(report.failed[..], [(_, Error::LastAdmin(_))]),
        "{report:?}"
    );
    assert!(matches!(
        as_root.set_status(root.id(), TokenStatus::Revoked).await,
        Err(Error::LastAdmin(_))
    ));
    assert!(matches!(
        f.manager.disable(root.id()).await,
        Err(Error::LastAdmin(_))
    ));
    assert!(matches!(
        f.manager.delete(root.id()).await,
        Err(Error::LastAdmin(_))
    ));
    let r = f
        .manager
        .update(root.id(), TokenUpdate::new().scopes(scopes(&["a"])))
        .await;
    assert!(matches!(r, Err(Error::LastAdmin(_))), "{r:?}");
    assert!(is_active(&f.manager, &root).await);

    // With a second active `*` token, or said explicitly, it goes.
    let spare = f.issue("ops", &["*"], ExpiryPreset::Never).await;
    f.manager.revoke(root.id()).await.unwrap();
    assert!(matches!(
        f.manager.revoke(spare.id()).await,
        Err(Error::LastAdmin(_))
    ));
    f.manager
        .allowing_no_admin()
        .revoke(spare.id())
        .await
        .unwrap();
}

async fn is_active(manager: &TokenManager, token: &VerifiedToken) -> bool {
    manager.get(token.id()).await.unwrap().status == TokenStatus::Active
}

// ----- existence ---------------------------------------------------------------------------

/// Ids are global, so creating a token with a taken id answers "already exists" even when
/// the existing token is out of the caller's reach (documented in SECURITY.md). The answer
/// names only the id the caller gave, and nothing is changed.
#[tokio::test]
async fn a_taken_id_is_the_same_conflict_visible_or_not() {
    let f = fixture();
    let bob = f
        .manager
        .issue(IssueRequest::new("b", "bob").id(TokenId::new("shared-name").unwrap()))
        .await
        .unwrap();
    let alice = f
        .actor("alice", &["tokens:write"], ExpiryPreset::Never)
        .await;
    let mine = f
        .manager
        .acting_as(&alice)
        .issue(IssueRequest::new("m", "alice").id(TokenId::new("mine").unwrap()))
        .await
        .unwrap();
    for id in [bob.id(), mine.id()] {
        let r = f
            .manager
            .acting_as(&alice)
            .issue(IssueRequest::new("again", "alice").id(id.clone()))
            .await;
        match r {
            Err(e @ Error::AlreadyExists(_)) => {
                assert_eq!(e.to_string(), format!("token `{id}` already exists"))
            }
            other => panic!("expected AlreadyExists, got {other:?}"),
        }
    }
    assert_eq!(f.manager.get(bob.id()).await.unwrap().owner, "bob");
}

/// `self` and `bulk` are admin API routes: no new token may take them as its id.
#[tokio::test]
async fn route_names_are_reserved_ids() {
    let f = fixture();
    for id in keygate::manager::RESERVED_IDS {
        let r = f
            .manager
            .issue(IssueRequest::new("x", "a").id(TokenId::new(id).unwrap()))
            .await;
        assert!(matches!(r, Err(Error::InvalidId(_))), "{id}: {r:?}");
    }
    f.manager
        .issue(IssueRequest::new("x", "a").id(TokenId::new("selfie").unwrap()))
        .await
        .unwrap();
}

// ----- request-time policy: IP ranges ------------------------------------------------------

fn nets(s: &[&str]) -> Vec<IpNet> {
    keygate::ip::parse_list(s).unwrap()
}

#[tokio::test]
async fn a_token_restricted_to_ranges_never_widens_them() {
    let f = fixture();
    let restricted = f
        .manager
        .issue(
            IssueRequest::new("ops", "alice")
                .scopes(scopes(&["tokens:write", "projects:read"]))
                .expiry(ExpiryPreset::Never)
                .allowed_ips(nets(&["10.0.0.0/8", "2001:db8::/32"])),
        )
        .await
        .unwrap();
    let ctx = VerifyContext::new().client_ip("10.9.8.7".parse().unwrap());
    let actor = f
        .manager
        .verify_with(restricted.expose_secret(), &ctx)
        .await
        .unwrap();
    let as_actor = f.manager.acting_as(&actor);
    let req = |ips: &[&str]| {
        IssueRequest::new("child", "alice")
            .scopes(scopes(&["projects:read"]))
            .expiry(ExpiryPreset::Days7)
            .allowed_ips(nets(ips))
    };

    // Without the rule (the manager itself), anything goes, unrestricted included.
    f.manager.issue(req(&[])).await.unwrap();
    f.manager.issue(req(&["0.0.0.0/0"])).await.unwrap();
    // The restricted actor: an unrestricted child, a wider range, a range outside its own,
    // or one good range next to a bad one, are escalations.
    for wider in [
        &[][..],
        &["0.0.0.0/0"],
        &["11.0.0.0/8"],
        &["10.0.0.0/7"],
        &["10.1.0.0/16", "192.0.2.0/24"],
        &["2001:db8::/31"],
    ] {
        escalation(as_actor.issue(req(wider)).await, AccessError::IpsNotCovered);
    }
    // Inside its own ranges: fine, and stored normalised.
    let child = as_actor
        .issue(req(&["10.1.2.3/16", "2001:db8:1::/48"]))
        .await
        .unwrap();
    assert_eq!(
        child.record().allowed_ips,
        nets(&["10.1.0.0/16", "2001:db8:1::/48"])
    );
    // Updates: narrowing inside its ranges works; lifting the restriction or widening is
    // refused and changes nothing; an update that leaves the list alone is not checked.
    let id = child.id().clone();
    as_actor
        .update(&id, TokenUpdate::new().allowed_ips(nets(&["10.1.1.0/24"])))
        .await
        .unwrap();
    for wider in [&[][..], &["0.0.0.0/0"], &["172.16.0.0/12"]] {
        escalation(
            as_actor
                .update(&id, TokenUpdate::new().allowed_ips(nets(wider)))
                .await,
            AccessError::IpsNotCovered,
        );
    }
    as_actor
        .update(&id, TokenUpdate::new().name("renamed"))
        .await
        .unwrap();
    let stored = f.manager.get(&id).await.unwrap();
    assert_eq!(stored.allowed_ips, nets(&["10.1.1.0/24"]));
    assert_eq!(stored.name, "renamed");

    // An unrestricted actor may set any list, and lift one.
    let free = f
        .actor(
            "alice",
            &["tokens:write", "projects:read"],
            ExpiryPreset::Never,
        )
        .await;
    let as_free = f.manager.acting_as(&free);
    as_free
        .update(&id, TokenUpdate::new().allowed_ips(Vec::new()))
        .await
        .unwrap();
    assert!(f.manager.get(&id).await.unwrap().allowed_ips.is_empty());
    as_free.issue(req(&["0.0.0.0/0", "::/0"])).await.unwrap();
}

#[tokio::test]
async fn an_ip_refusal_comes_after_the_digest_and_audits_authz_fail() {
    let f = fixture();
    let issued = f
        .manager
        .issue(IssueRequest::new("ci", "alice").allowed_ips(nets(&["192.0.2.0/24", "::1/128"])))
        .await
        .unwrap();
    let at = |ip: &str| VerifyContext::new().client_ip(ip.parse().unwrap());
    let secret = issued.expose_secret();
    f.manager
        .verify_with(secret, &at("192.0.2.9"))
        .await
        .unwrap();
    f.manager.verify_with(secret, &at("::1")).await.unwrap();
    f.manager
        .verify_with(secret, &at("::ffff:192.0.2.9"))
        .await
        .unwrap();
    for refused in [
        f.manager.verify_with(secret, &at("198.51.100.1")).await,
        f.manager.verify_with(secret, &at("::2")).await,
        // No known client address: a restricted token fails closed.
        f.manager.verify(secret).await,
    ] {
        assert!(
            matches!(refused, Err(VerifyError::IpNotAllowed)),
            "{refused:?}"
        );
    }
    // A wrong secret from a foreign address is unknown, not an IP refusal: no oracle.
    let mut wrong = secret.to_owned();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'a' { 'b' } else { 'a' });
    let r = f.manager.verify_with(&wrong, &at("198.51.100.1")).await;
    assert!(
        matches!(
            r,
            Err(VerifyError::Malformed | VerifyError::BadChecksum | VerifyError::Unknown)
        ),
        "{r:?}"
    );
    // A revoked token is revoked whatever the address (status comes first).
    f.manager.revoke(issued.id()).await.unwrap();
    let r = f.manager.verify_with(secret, &at("198.51.100.1")).await;
    assert!(matches!(r, Err(VerifyError::Revoked)), "{r:?}");

    let events = f.events.lock().unwrap();
    let denied: Vec<_> = events
        .iter()
        .filter(|e| matches!(&e.kind, AuditKind::AccessDenied { missing } if missing == "ip_not_allowed"))
        .collect();
    assert_eq!(denied.len(), 3, "{events:?}");
    assert!(
        denied
            .iter()
            .all(|e| e.token_id.as_ref() == Some(issued.id()))
    );
    assert_eq!(denied[0].kind.owasp_name(), "authz_fail");
}
