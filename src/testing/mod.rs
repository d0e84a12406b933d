//! The [`TokenStore`] conformance suite (feature `test-util`). **Not semver-stable.**
//!
//! One case per sentence of the trait's contract, plus a concurrency case: 64 tasks update
//! the same record from the same version at once; exactly one wins, the others get
//! [`StoreError::Conflict`], and the record holds the winner's digest.
//!
//! Every store in this crate runs [`run_all`], directly and through `Arc<dyn TokenStore>`.
//! A third-party store runs it the same way from its own tests:
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! use std::sync::Arc;
//! keygate::testing::run_all(Arc::new(keygate::MemoryStore::new())).await;
//! # }
//! ```
//!
//! Cases share one store without interfering: each uses its own random owner and ids, and
//! lists only its own records. The pruning cases use records that ended in 2001 (every other
//! case's records are around the present), so they assume the store holds no other record
//! prunable at their cutoffs in 2001. A failing case panics with the case name and the broken
//! contract sentence.

pub mod fault;

pub use fault::{Fault, FaultHandle, FaultyStore, StoreOp};

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use chrono::{DateTime, Duration, SubsecRound, Utc};

use crate::digest::{Digest, StoredDigest};
use crate::error::StoreError;
use crate::expiry::Expiry;
use crate::record::{RetiredSecret, TokenRecord, TokenStatus};
use crate::scope::{ProjectId, Projects, Scope, ScopeSet};
use crate::store::{Cursor, PageRequest, Reach, TokenFilter, TokenStore};
use crate::token::TokenId;

/// Runs every conformance case against `store`. Panics on the first violation.
pub async fn run_all<S: TokenStore + ?Sized + 'static>(store: Arc<S>) {
    insert_then_get_round_trips(&*store).await;
    insert_existing_id_fails(&*store).await;
    get_unknown_is_none(&*store).await;
    find_by_digest_current_or_retired(&*store).await;
    find_by_digest_follows_writes(&*store).await;
    update_compare_and_swap(&*store).await;
    update_stale_version_conflicts(&*store).await;
    update_unknown_is_not_found(&*store).await;
    update_keeps_later_last_used(&*store).await;
    delete_reports_presence(&*store).await;
    list_newest_first(&*store).await;
    list_filters_match_reference(&*store).await;
    list_pages_walk_everything_once(&*store).await;
    list_pages_stable_under_inserts(&*store).await;
    touch_moves_forward_only(&*store).await;
    touch_unknown_is_ok(&*store).await;
    key_fingerprint_claimed_once(&*store).await;
    prune_deletes_exactly_the_prunable(&*store).await;
    prune_honours_the_limit(&*store).await;
    prune_drops_cached_verifications(Arc::clone(&store)).await;
    allowed_ips_round_trip(&*store).await;
    expiry_notice_round_trip(&*store).await;
    concurrent_updates_one_winner(store).await;
}

fn must<T, E: Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("conformance: {what}: unexpected error {e:?}"),
    }
}

/// `find_by_digest`, checked against `find_by_digest_ready` when the store answers that:
/// "`Some` with exactly the answer `find_by_digest` would give".
async fn find<S: TokenStore + ?Sized>(store: &S, digest: &Digest) -> Option<Arc<TokenRecord>> {
    let got = must(store.find_by_digest(digest).await, "find");
    if let Some(ready) = store.find_by_digest_ready(digest) {
        let ready = must(ready, "find_by_digest_ready");
        assert_eq!(
            ready.as_deref(),
            got.as_deref(),
            "conformance: find_by_digest_ready must answer as find_by_digest does"
        );
    }
    got
}

fn unique(tag: &str) -> String {
    let mut b = [0u8; 6];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    format!("{tag}-{}", hex::encode(b))
}

fn digest(seed: u8) -> StoredDigest {
    let mut b = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    b[0] = seed;
    StoredDigest {
        digest: Digest::from_bytes(b),
        key_version: 1,
    }
}

fn base_time() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn scope(s: &str) -> Scope {
    must(Scope::new(s), "scope literal")
}

fn ips(list: &[&str]) -> Vec<crate::ip::IpNet> {
    must(crate::ip::parse_list(list), "IP range literals")
}

/// A record owned by `owner` with every field set to a non-default value.
pub fn sample_record(owner: &str, n: usize, at: DateTime<Utc>) -> TokenRecord {
    let id = must(TokenId::new(unique(&format!("t{n}"))), "generated id");
    let mut metadata = BTreeMap::new();
    metadata.insert("team".to_owned(), format!("team-{n}"));
    metadata.insert("ünïcode".to_owned(), "välue \"quoted\" 'x' %_".to_owned());
    TokenRecord {
        id,
        name: format!("Token {n} of {owner}"),
        description: "a description, with punctuation; and 'quotes'".to_owned(),
        owner: owner.to_owned(),
        created_by: format!("creator-{}", n % 2),
        created_at: at,
        updated_at: at + Duration::seconds(1),
        secret_issued_at: at + Duration::milliseconds(500),
        expiry: Expiry::At(at + Duration::days(30)),
        status: TokenStatus::Active,
        scopes: [scope("projects:read"), scope("tokens:*")]
            .into_iter()
            .collect::<ScopeSet>(),
        projects: must(Projects::only(["alpha", "beta"]), "projects literal"),
        metadata,
        allowed_ips: ips(&["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]),
        digest: digest(n as u8),
        retired: vec![
            RetiredSecret {
                digest: StoredDigest {
                    key_version: 7,
                    ..digest(0xEE)
                },
                valid_until: at + Duration::hours(2),
            },
            RetiredSecret {
                digest: digest(0xED),
                valid_until: at - Duration::hours(3),
            },
        ],
        expiry_notice: Some(Box::new(crate::expiry::ExpiryNotice {
            window: std::time::Duration::from_secs(30 * 86_400),
            expires_at: at + Duration::days(30),
        })),
        last_used_at: Some(at + Duration::minutes(5)),
        version: 1,
    }
}

/// `insert`: "Stores a new record exactly as given." / `get`: "Returns the record with this
/// id, equal to what was last written." Every field round-trips, including a minimal record.
pub async fn insert_then_get_round_trips<S: TokenStore + ?Sized>(store: &S) {
    let owner = unique("owner");
    let full = sample_record(&owner, 1, base_time());
    must(store.insert(&full).await, "insert");
    let got = must(store.get(&full.id).await, "get");
    assert_eq!(
        got.as_deref(),
        Some(&full),
        "conformance: insert/get: the record read back must equal the record inserted"
    );

    let mut minimal = sample_record(&owner, 2, base_time());
    minimal.description.clear();
    minimal.expiry = Expiry::Never;
    minimal.status = TokenStatus::Disabled;
    minimal.scopes = ScopeSet::new();
    minimal.projects = Projects::All;
    minimal.metadata.clear();
    minimal.allowed_ips.clear();
    minimal.retired = Vec::new();
    minimal.expiry_notice = None;
    minimal.last_used_at = None;
    must(store.insert(&minimal).await, "insert minimal");
    let got = must(store.get(&minimal.id).await, "get minimal");
    assert_eq!(
        got.as_deref(),
        Some(&minimal),
        "conformance: insert/get: a record with empty and absent fields must round-trip"
    );

    let mut empty_projects = sample_record(&owner, 3, base_time());
    empty_projects.projects = Projects::Only(Default::default());
    empty_projects.status = TokenStatus::Revoked;
    must(store.insert(&empty_projects).await, "insert");
    let got = must(store.get(&empty_projects.id).await, "get");
    assert_eq!(
        got.as_deref(),
        Some(&empty_projects),
        "conformance: insert/get: an empty project list must stay distinct from all projects"
    );
}

/// `insert` / `update` / `get`: every field round-trips, here the allowed IP ranges
/// (IPv4 and IPv6, a host range, the whole address space), through an update that changes
/// the list and one that empties it.
pub async fn allowed_ips_round_trip<S: TokenStore + ?Sized>(store: &S) {
    let owner = unique("owner");
    let mut r = sample_record(&owner, 1, base_time());
    r.allowed_ips = ips(&["0.0.0.0/0", "::1/128", "fd00::/8", "203.0.113.0/24"]);
    must(store.insert(&r).await, "insert");
    let got = must(store.get(&r.id).await, "get");
    assert_eq!(
        got.as_ref().map(|g| &g.allowed_ips),
        Some(&r.allowed_ips),
        "conformance: allowed_ips must round-trip through insert/get"
    );
    for list in [ips(&["2001:db8:1::/48"]), Vec::new()] {
        r.allowed_ips = list;
        r.version = must(store.update(&r).await, "update allowed_ips");
        let got = must(store.get(&r.id).await, "get");
        assert_eq!(
            got.as_deref(),
            Some(&r),
            "conformance: an update must replace allowed_ips (also with an empty list)"
        );
        let found = must(store.find_by_digest(&r.digest.digest).await, "find");
        assert_eq!(
            found.as_deref(),
            Some(&r),
            "conformance: find_by_digest must return allowed_ips as written"
        );
    }
}

/// `TokenRecord::expiry_notice`, like every field: "Stores persist every field and give it
/// back unchanged", through `update` (set, replaced, cleared) and every read.
pub async fn expiry_notice_round_trip<S: TokenStore + ?Sized>(store: &S) {
    let owner = unique("owner");
    let mut r = sample_record(&owner, 1, base_time());
    r.expiry_notice = None;
    must(store.insert(&r).await, "insert");
    let expires_at = base_time() + Duration::days(30);
    for notice in [
        Some(Box::new(crate::expiry::ExpiryNotice {
            window: std::time::Duration::from_secs(7 * 86_400),
            expires_at,
        })),
        Some(Box::new(crate::expiry::ExpiryNotice {
            window: std::time::Duration::ZERO,
            expires_at: expires_at - Duration::days(400),
        })),
        None,
    ] {
        r.expiry_notice = notice;
        r.version = must(store.update(&r).await, "update expiry_notice");
        let got = must(store.get(&r.id).await, "get");
        assert_eq!(
            got.as_deref(),
            Some(&r),
            "conformance: an update must replace expiry_notice (also with None)"
        );
        let found = must(store.find_by_digest(&r.digest.digest).await, "find");
        assert_eq!(
            found.as_deref(),
            Some(&r),
            "conformance: find_by_digest must return expiry_notice as written"
        );
        let listed = must(
            store
                .list(
                    &TokenFilter::new().owner(owner.clone()),
                    &PageRequest::first(10),
                )
                .await,
            "list",
        );
        assert_eq!(
            listed.items,
            vec![r.clone()],
            "conformance: list must return expiry_notice as written"
        );
    }
}

/// `insert`: "Returns `Err(StoreError::AlreadyExists)` if a record with the same id exists;
/// the existing record is left unchanged."
pub async fn insert_existing_id_fails<S: TokenStore + ?Sized>(store: &S) {
    let owner = unique("owner");
    let first = sample_record(&owner, 1, base_time());
    must(store.insert(&first).await, "insert");
    let mut second = sample_record(&owner, 2, base_time());
    second.id = first.id.clone();
    let r = store.insert(&second).await;
    assert!(
        matches!(r, Err(StoreError::AlreadyExists)),
        "conformance: insert of an existing id must fail with AlreadyExists, got {r:?}"
    );
    let got = must(store.get(&first.id).await, "get");
    assert_eq!(
        got.as_deref(),
        Some(&first),
        "conformance: a refused insert must leave the existing record unchanged"
    );
}

/// `get`: "Returns `Ok(None)` if there is no record with this id."
pub async fn get_unknown_is_none<S: TokenStore + ?Sized>(store: &S) {
    let id = must(TokenId::new(unique("missing")), "id");
    let got = must(store.get(&id).await, "get");
    assert!(
        got.is_none(),
        "conformance: get of an unknown id must be Ok(None)"
    );
}

/// `find_by_digest`: "Returns the record whose current digest or one of whose retired
/// digests (kept after rotations whatever their `valid_until`) equals `digest`, equal to
/// what was last written. The key version is not compared. Returns `Ok(None)` if no record
/// holds this digest."
pub async fn find_by_digest_current_or_retired<S: TokenStore + ?Sized>(store: &S) {
    let owner = unique("owner");
    let mut record = sample_record(&owner, 1, base_time());
    // Past their grace periods, revoked, with other key versions: still found.
    record.status = TokenStatus::Revoked;
    for r in &mut record.retired {
        r.valid_until = base_time() - Duration::days(1);
    }
    must(store.insert(&record).await, "insert");
    let other = sample_record(&owner, 2, base_time());
    must(store.insert(&other).await, "insert");

    let by_current = find(store, &record.digest.digest).await;
    assert_eq!(
        by_current.as_deref(),
        Some(&record),
        "conformance: find_by_digest must return the record holding this current digest"
    );
    for (i, retired) in record.retired.iter().enumerate() {
        let found = find(store, &retired.digest.digest).await;
        assert_eq!(
            found.as_deref(),
            Some(&record),
            "conformance: find_by_digest must return the record holding this retired digest \
             (retired[{i}]), whatever its valid_until"
        );
    }
    let by_other = find(store, &other.digest.digest).await;
    assert_eq!(
        by_other.as_deref(),
        Some(&other),
        "conformance: find_by_digest must return the record holding the digest, no other"
    );
    let unknown = digest(1).digest;
    let got = find(store, &unknown).await;
    assert!(
        got.is_none(),
        "conformance: find_by_digest of a digest no record holds must be Ok(None)"
    );
}

/// `find_by_digest` after writes: "equal to what was last written". A rotation's new digest
/// is found, and so is every digest it retired, the chain kept in order; a digest an update
/// dropped from the chain is no longer found; a touch is seen; after a delete no digest is
/// found.
pub async fn find_by_digest_follows_writes<S: TokenStore + ?Sized>(store: &S) {
    let owner = unique("owner");
    let record = sample_record(&owner, 1, base_time());
    must(store.insert(&record).await, "insert");
    let Some(dropped) = record.retired.last().map(|r| r.digest.digest) else {
        panic!("conformance: sample record has retired digests")
    };

    // Rotate: the current digest is retired first in the chain, the oldest one dropped.
    let mut rotated = record.clone();
    rotated.digest = digest(3);
    rotated.retired.insert(
        0,
        RetiredSecret {
            digest: record.digest,
            valid_until: base_time() + Duration::hours(1),
        },
    );
    rotated.retired.pop();
    let version = must(store.update(&rotated).await, "update");
    rotated.version = version;
    let mut expect_found = vec![(rotated.digest.digest, "the new current digest".to_owned())];
    for (i, r) in rotated.retired.iter().enumerate() {
        expect_found.push((r.digest.digest, format!("retired[{i}]")));
    }
    for (d, what) in &expect_found {
        let got = find(store, d).await;
        assert_eq!(
            got.as_deref(),
            Some(&rotated),
            "conformance: after an update, find_by_digest by {what} must return the \
             record as last written"
        );
    }
    let got = find(store, &dropped).await;
    assert!(
        got.is_none(),
        "conformance: a digest an update dropped must no longer be found"
    );

    let used = rotated.last_used_at.map(|t| t + Duration::minutes(1));
    let Some(used) = used else {
        panic!("conformance: sample record has last_used_at")
    };
    must(store.touch(&rotated.id, used).await, "touch");
    let got = find(store, &rotated.digest.digest).await;
    assert_eq!(
        got.and_then(|r| r.last_used_at),
        Some(used),
        "conformance: find_by_digest must see the last touch"
    );

    must(store.delete(&rotated.id).await, "delete");
    for (d, _) in &expect_found {
        let got = find(store, d).await;
        assert!(
            got.is_none(),
            "conformance: after a delete, find_by_digest must find none of its digests"
        );
    }
}

/// `claim_key_fingerprint`: "keeps `fingerprint` ... unless one is kept already, and returns
/// the one kept afterwards"; per key version; `Ok(None)` throughout for a store that keeps
/// none.
pub async fn key_fingerprint_claimed_once<S: TokenStore + ?Sized>(store: &S) {
    let mut b = [0u8; 4];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    // A version no other run has used (stores may be shared between runs).
    let version = u32::from_le_bytes(b) | 1 << 31;
    let (first, second) = (digest(1).digest, digest(2).digest);
    let Some(kept) = must(store.claim_key_fingerprint(version, &first).await, "claim") else {
        let again = must(store.claim_key_fingerprint(version, &second).await, "claim");
        assert!(
            again.is_none(),
            "conformance: a store that keeps no fingerprints answers None every time"
        );
        return;
    };
    assert_eq!(
        kept, first,
        "conformance: the first fingerprint given is kept"
    );
    let again = must(store.claim_key_fingerprint(version, &second).await, "claim");
    assert_eq!(
        again,
        Some(first),
        "conformance: a kept fingerprint is returned, never replaced"
    );
    let other = must(
        store.claim_key_fingerprint(version - 1, &second).await,
        "claim",
    );
    assert_eq!(
        other,
        Some(second),
        "conformance: each key version keeps its own fingerprint"
    );
    // The maximum version is accepted.
    let max = must(store.claim_key_fingerprint(u32::MAX, &first).await, "claim");
    assert!(max.is_some(), "conformance: key version u32::MAX is kept");
}

/// `update`: "replaces the stored record by `record` if the stored version equals
/// `record.version`, stores it with version `record.version + 1` and returns that new
/// version."
pub async fn update_compare_and_swap<S: TokenStore + ?Sized>(store: &S) {
    let owner = unique("owner");
    let r = sample_record(&owner, 1, base_time());
    must(store.insert(&r).await, "insert");
    let mut changed = r.clone();
    changed.name = "renamed".into();
    changed.status = TokenStatus::Disabled;
    changed.scopes = [scope("*")].into_iter().collect();
    changed.digest = digest(9);
    changed.retired = Vec::new();
    changed.secret_issued_at = r.secret_issued_at + Duration::days(1);
    changed.expiry = Expiry::Never;
    let v = must(store.update(&changed).await, "update");
    assert_eq!(
        v,
        r.version + 1,
        "conformance: update must return version + 1"
    );
    let got = must(store.get(&r.id).await, "get");
    changed.version = r.version + 1;
    assert_eq!(
        got.as_deref(),
        Some(&changed),
        "conformance: after update, get must return the new record with the new version"
    );
    // A second update from the new version succeeds again.
    changed.name = "renamed twice".into();
    let v2 = must(store.update(&changed).await, "second update");
    assert_eq!(v2, v + 1, "conformance: versions must keep incrementing");
}

/// `update`: "Returns `Err(StoreError::Conflict)` if the stored version differs, leaving the
/// stored record unchanged."
pub async fn update_stale_version_conflicts<S: TokenStore + ?Sized>(store: &S) {
    let owner = unique("owner");
    let r = sample_record(&owner, 1, base_time());
    must(store.insert(&r).await, "insert");
    let mut first = r.clone();
    first.name = "first".into();
    must(store.update(&first).await, "first update");
    let mut stale = r.clone();
    stale.name = "stale".into();
    let res = store.update(&stale).await;
    assert!(
        matches!(res, Err(StoreError::Conflict)),
        "conformance: update from a stale version must fail with Conflict, got {res:?}"
    );
    let mut future = r.clone();
    future.version = 99;
    let res = store.update(&future).await;
    assert!(
        matches!(res, Err(StoreError::Conflict)),
        "conformance: update from a wrong (future) version must fail with Conflict, got {res:?}"
    );
    let got = must(store.get(&r.id).await, "get");
    assert_eq!(
        got.map(|g| (g.name.clone(), g.version)),
        Some(("first".to_owned(), 2)),
        "conformance: a conflicting update must leave the stored record unchanged"
    );
}

/// `update`: "Returns `Err(StoreError::NotFound)` if there is no record with this id."
pub async fn update_unknown_is_not_found<S: TokenStore + ?Sized>(store: &S) {
    let r = sample_record(&unique("owner"), 1, base_time());
    let res = store.update(&r).await;
    assert!(
        matches!(res, Err(StoreError::NotFound)),
        "conformance: update of an unknown id must fail with NotFound, got {res:?}"
    );
    let got = must(store.get(&r.id).await, "get");
    assert!(
        got.is_none(),
        "conformance: a failed update must not create a record"
    );
}

/// `update`: "The stored `last_used_at` never moves backwards: if it is later than
/// `record.last_used_at`, it is kept."
pub async fn update_keeps_later_last_used<S: TokenStore + ?Sized>(store: &S) {
    let owner = unique("owner");
    let t0 = base_time();
    let r = sample_record(&owner, 1, t0);
    must(store.insert(&r).await, "insert");
    let later = t0 + Duration::hours(3);
    must(store.touch(&r.id, later).await, "touch");
    let mut stale_use = r.clone();
    stale_use.name = "changed".into();
    stale_use.last_used_at = None;
    must(store.update(&stale_use).await, "update");
    let got = must(store.get(&r.id).await, "get");
    assert_eq!(
        got.and_then(|g| g.last_used_at),
        Some(later),
        "conformance: update must not move last_used_at backwards"
    );
    // A later value in the update is taken.
    let current = must(store.get(&r.id).await, "get");
    if let Some(current) = current {
        let mut newer = TokenRecord::clone(&current);
        let newest = later + Duration::hours(1);
        newer.last_used_at = Some(newest);
        must(store.update(&newer).await, "update");
        let got = must(store.get(&r.id).await, "get");
        assert_eq!(
            got.and_then(|g| g.last_used_at),
            Some(newest),
            "conformance: update must store a later last_used_at"
        );
    }
}

/// `delete`: "Returns `Ok(true)` if a record was removed and `Ok(false)` if there was none."
pub async fn delete_reports_presence<S: TokenStore + ?Sized>(store: &S) {
    let owner = unique("owner");
    let r = sample_record(&owner, 1, base_time());
    must(store.insert(&r).await, "insert");
    assert!(
        must(store.delete(&r.id).await, "delete"),
        "conformance: delete of an existing record must return true"
    );
    assert!(
        must(store.get(&r.id).await, "get").is_none(),
        "conformance: a deleted record must be gone"
    );
    assert!(
        !must(store.delete(&r.id).await, "delete again"),
        "conformance: delete of a missing record must return false"
    );
    let page = must(
        store
            .list(&TokenFilter::new().owner(owner), &PageRequest::default())
            .await,
        "list",
    );
    assert!(
        page.items.is_empty(),
        "conformance: a deleted record must not be listed"
    );
    // The id can be used again.
    must(store.insert(&r).await, "re-insert after delete");
}

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    must(
        chrono::NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc())
            .ok_or("date"),
        "date literal",
    )
}

/// A record of `owner` created in late 2000, with the given status, `updated_at`, expiry and
/// retired secrets' `valid_until`.
fn ended_record(
    owner: &str,
    n: usize,
    status: TokenStatus,
    updated_at: DateTime<Utc>,
    expiry: Expiry,
    retired_until: &[DateTime<Utc>],
) -> TokenRecord {
    let mut r = sample_record(owner, n, at(2000, 12, 1));
    r.status = status;
    r.updated_at = updated_at;
    r.expiry = expiry;
    r.retired = retired_until
        .iter()
        .map(|&valid_until| RetiredSecret {
            digest: digest(0xE0),
            valid_until,
        })
        .collect();
    r.last_used_at = None;
    r
}

/// `prune`: "Deletes at most `limit` records that are prunable at `cutoff` [...] and returns
/// how many it deleted. Returns `Ok(0)` if no record is prunable (or `limit` is 0). Never
/// deletes a record that is not prunable. A deleted record is gone entirely [...]: `get` and
/// `find_by_digest` no longer find it." / `count_prunable`: "Returns how many records are
/// prunable at `cutoff`." Follows [`TokenRecord::is_prunable`]: revoked before the cutoff, or
/// expired before it (active or disabled), are deleted; revoked or expiring after it (or
/// exactly at it), never-expiring active ones, and an expired one whose rotation grace
/// lasts past the cutoff survive.
pub async fn prune_deletes_exactly_the_prunable<S: TokenStore + ?Sized>(store: &S) {
    use TokenStatus::{Active, Disabled, Revoked};
    let owner = unique("owner");
    let cutoff = at(2001, 6, 1);
    let early = at(2001, 1, 1);
    let late = at(2001, 7, 1);
    let gone = vec![
        ended_record(&owner, 1, Revoked, early, Expiry::Never, &[]),
        ended_record(&owner, 2, Active, early, Expiry::At(at(2001, 2, 1)), &[]),
        ended_record(&owner, 3, Disabled, early, Expiry::At(at(2001, 3, 1)), &[]),
        // Revoked after its expiry: ended at the earlier of the two.
        ended_record(&owner, 4, Revoked, late, Expiry::At(at(2001, 3, 1)), &[]),
        // Rotated, the grace ended before the cutoff.
        ended_record(
            &owner,
            5,
            Revoked,
            early,
            Expiry::Never,
            &[at(2001, 5, 1), at(2001, 1, 2)],
        ),
    ];
    let kept = vec![
        ended_record(&owner, 6, Revoked, late, Expiry::Never, &[]),
        ended_record(&owner, 7, Active, early, Expiry::At(late), &[]),
        ended_record(&owner, 8, Active, early, Expiry::Never, &[]),
        ended_record(&owner, 9, Disabled, early, Expiry::Never, &[]),
        // Exactly at the cutoff is not before it.
        ended_record(&owner, 10, Revoked, cutoff, Expiry::Never, &[]),
        ended_record(&owner, 11, Active, early, Expiry::At(cutoff), &[]),
        // Expired before the cutoff, but one retired secret's grace lasts past it.
        ended_record(
            &owner,
            12,
            Revoked,
            early,
            Expiry::At(at(2001, 2, 1)),
            &[at(2001, 1, 2), late],
        ),
        ended_record(&owner, 13, Active, early, Expiry::At(early), &[cutoff]),
    ];
    for r in gone.iter().chain(&kept) {
        assert_eq!(
            r.is_prunable(cutoff),
            gone.iter().any(|g| g.id == r.id),
            "conformance (suite self-check): is_prunable of record {}",
            r.name
        );
    }
    insert_all(store, &gone).await;
    insert_all(store, &kept).await;
    assert_eq!(
        must(store.count_prunable(cutoff).await, "count_prunable"),
        gone.len() as u64,
        "conformance: count_prunable must count exactly the prunable records"
    );
    assert_eq!(
        must(store.count_prunable(at(2000, 1, 1)).await, "count_prunable"),
        0,
        "conformance: nothing ended before 2000"
    );
    assert_eq!(
        must(store.prune(cutoff, 0).await, "prune limit 0"),
        0,
        "conformance: prune with limit 0 must delete nothing"
    );
    assert_eq!(
        must(store.prune(at(2000, 1, 1), 100).await, "prune"),
        0,
        "conformance: prune must return 0 when no record is prunable"
    );
    assert_eq!(
        must(store.prune(cutoff, 100).await, "prune"),
        gone.len() as u64,
        "conformance: prune must delete every prunable record (up to the limit)"
    );
    assert_eq!(
        must(store.prune(cutoff, 100).await, "prune again"),
        0,
        "conformance: a second prune must find nothing left"
    );
    for r in &gone {
        assert!(
            must(store.get(&r.id).await, "get").is_none(),
            "conformance: pruned record {} must be gone",
            r.name
        );
        let mut digests = vec![r.digest.digest];
        digests.extend(r.retired.iter().map(|s| s.digest.digest));
        for d in &digests {
            assert!(
                must(store.find_by_digest(d).await, "find_by_digest").is_none(),
                "conformance: a digest of pruned record {} must not be found",
                r.name
            );
        }
    }
    for r in &kept {
        let got = must(store.get(&r.id).await, "get");
        assert_eq!(
            got.as_deref(),
            Some(r),
            "conformance: prune must keep record {} unchanged",
            r.name
        );
        let found = must(store.find_by_digest(&r.digest.digest).await, "find");
        assert_eq!(
            found.map(|f| f.id.clone()),
            Some(r.id.clone()),
            "conformance: a kept record {} must still be found by digest",
            r.name
        );
    }
    // The kept records end long before the other cases' records: clean up.
    for r in &kept {
        must(store.delete(&r.id).await, "delete");
    }
}

/// `prune`: "Deletes at most `limit` records [...]. Callers delete in batches by calling
/// again until fewer than `limit` were deleted."
pub async fn prune_honours_the_limit<S: TokenStore + ?Sized>(store: &S) {
    let owner = unique("owner");
    let cutoff = at(2001, 6, 1);
    let records: Vec<TokenRecord> = (0..7)
        .map(|n| {
            ended_record(
                &owner,
                n,
                TokenStatus::Revoked,
                at(2001, 1, 1),
                Expiry::Never,
                &[],
            )
        })
        .collect();
    insert_all(store, &records).await;
    let mut batches = Vec::new();
    loop {
        let n = must(store.prune(cutoff, 3).await, "prune");
        batches.push(n);
        if n < 3 {
            break;
        }
    }
    assert_eq!(
        batches,
        [3, 3, 1],
        "conformance: prune must delete at most `limit` records per call, and all in the end"
    );
    for r in &records {
        assert!(
            must(store.get(&r.id).await, "get").is_none(),
            "conformance: every prunable record must be gone after the batches"
        );
    }
}

/// Pruning through a [`TokenManager`](crate::TokenManager) with a verification cache over
/// this store: a token verified (and so cached) before it expired is, once pruned, unknown
/// (not merely expired from a stale cache entry), and a live token still verifies. Runs in
/// 2001 by the manager's clock, as the other pruning cases.
pub async fn prune_drops_cached_verifications<S: TokenStore + ?Sized + 'static>(store: Arc<S>) {
    use crate::expiry::{ExpiryPreset, ManualClock};
    use crate::{IssueRequest, ServerKey, TokenManager, VerifyError};
    let clock = ManualClock::new(at(2001, 1, 1));
    let manager = must(
        TokenManager::builder(Arc::clone(&store))
            .server_key(ServerKey::generate())
            .clock(clock.clone())
            .cache(crate::cache::CacheConfig::new())
            .audit_sink(crate::audit::NoopSink)
            .build(),
        "manager",
    );
    let owner = unique("owner");
    let short = must(
        manager
            .issue(IssueRequest::new("short", owner.as_str()).expiry(ExpiryPreset::Days7))
            .await,
        "issue",
    );
    let live = must(
        manager
            .issue(IssueRequest::new("live", owner.as_str()).expiry(ExpiryPreset::Days90))
            .await,
        "issue",
    );
    must(manager.verify(short.expose_secret()).await, "verify");
    clock.set(at(2001, 2, 1));
    let report = must(
        manager
            .prune(std::time::Duration::from_secs(86_400), 100)
            .await,
        "prune",
    );
    assert_eq!(
        report.deleted, 1,
        "conformance: prune through the manager must delete the one expired token"
    );
    assert!(
        matches!(
            manager.verify(short.expose_secret()).await,
            Err(VerifyError::Unknown)
        ),
        "conformance: a pruned token must be unknown, not served from the cache"
    );
    must(manager.verify(live.expose_secret()).await, "verify live");
    must(store.delete(live.id()).await, "delete");
}

async fn insert_all<S: TokenStore + ?Sized>(store: &S, records: &[TokenRecord]) {
    for r in records {
        must(store.insert(r).await, "insert");
    }
}

fn ids(records: &[TokenRecord]) -> Vec<TokenId> {
    records.iter().map(|r| r.id.clone()).collect()
}

fn newest_first(mut records: Vec<TokenRecord>) -> Vec<TokenRecord> {
    records.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    records
}

/// `list`: "Returns the records matching `filter` ..., newest first: by `created_at`
/// descending, then by id descending."
pub async fn list_newest_first<S: TokenStore + ?Sized>(store: &S) {
    let owner = unique("owner");
    let t0 = base_time();
    // Three share one instant, to test the id tie-break.
    let offsets = [5, 0, 3, 3, 3, 1, 9];
    let records: Vec<_> = offsets
        .iter()
        .enumerate()
        .map(|(i, s)| sample_record(&owner, i, t0 + Duration::seconds(*s)))
        .collect();
    insert_all(store, &records).await;
    let page = must(
        store
            .list(
                &TokenFilter::new().owner(owner.clone()),
                &PageRequest::first(100),
            )
            .await,
        "list",
    );
    assert_eq!(
        ids(&page.items),
        ids(&newest_first(records)),
        "conformance: list must order by created_at desc, then id desc"
    );
    assert!(
        page.next.is_none(),
        "conformance: next must be None when nothing follows"
    );
}

/// `list`: "Returns the records matching `filter` (as `TokenFilter::matches` defines)".
/// Checks every filter field, alone and combined, against the reference semantics.
pub async fn list_filters_match_reference<S: TokenStore + ?Sized>(store: &S) {
    let owner = unique("owner");
    let other_owner = unique("other");
    let t0 = base_time();
    let mut records = Vec::new();
    for i in 0..12 {
        let mut r = sample_record(
            if i % 4 == 3 { &other_owner } else { &owner },
            i,
            t0 + Duration::seconds(i as i64),
        );
        r.name = match i % 5 {
            0 => format!("Deploy Bot {i}"),
            1 => format!("ci-runner {i}"),
            2 => format!("grafana_{i}%"),
            3 => format!("Ünïcode naïve ÄÖ {i}"),
            _ => format!("back\\slash a_b axb 100% {i}"),
        };
        r.status = match i % 3 {
            0 => TokenStatus::Active,
            1 => TokenStatus::Disabled,
            _ => TokenStatus::Revoked,
        };
        r.expiry = match i % 4 {
            0 => Expiry::Never,
            k => Expiry::At(t0 + Duration::days(k as i64 * 10)),
        };
        r.projects = match i % 3 {
            0 => Projects::All,
            1 => must(Projects::only(["alpha"]), "projects"),
            _ => must(Projects::only(["beta", "gamma"]), "projects"),
        };
        r.scopes = match i % 4 {
            0 => [scope("*")].into_iter().collect(),
            1 => [scope("projects:read")].into_iter().collect(),
            2 => [scope("projects:*"), scope("tokens:read")]
                .into_iter()
                .collect(),
            _ => ScopeSet::new(),
        };
        r.digest.key_version = if i % 3 == 2 { 7 } else { 1 };
        records.push(r);
    }
    insert_all(store, &records).await;
    let mine = |f: TokenFilter| {
        let mut f = f;
        if f.owner.is_none() && f.created_by.is_none() {
            f.owner = Some(owner.clone());
        }
        f
    };
    let filters: Vec<(&str, TokenFilter)> = vec![
        ("empty (own owner)", mine(TokenFilter::new())),
        ("other owner", TokenFilter::new().owner(other_owner.clone())),
        (
            "name_contains case-insensitive",
            mine(TokenFilter::new().name_contains("deploy bot")),
        ),
        (
            "name_contains with LIKE metacharacters",
            mine(TokenFilter::new().name_contains("_1")),
        ),
        (
            "name_contains percent",
            mine(TokenFilter::new().name_contains("%")),
        ),
        (
            "name_contains underscore matches only itself",
            mine(TokenFilter::new().name_contains("a_b")),
        ),
        (
            "name_contains percent and digits",
            mine(TokenFilter::new().name_contains("0% ")),
        ),
        (
            "name_contains backslash",
            mine(TokenFilter::new().name_contains("k\\s")),
        ),
        (
            "name_contains unicode, exact case",
            mine(TokenFilter::new().name_contains("naïve ÄÖ")),
        ),
        (
            "name_contains unicode folds ASCII only",
            mine(TokenFilter::new().name_contains("ünïcode")),
        ),
        (
            "name_contains unicode with ASCII case folded",
            mine(TokenFilter::new().name_contains("ÜNÏCODE")),
        ),
        (
            "name_contains long needle",
            mine(TokenFilter::new().name_contains("DEPLOY BOT 1")),
        ),
        (
            "name_contains no match",
            mine(TokenFilter::new().name_contains("zzz-nothing")),
        ),
        (
            "created_by",
            TokenFilter::new()
                .owner(owner.clone())
                .created_by("creator-1"),
        ),
        (
            "status active",
            mine(TokenFilter::new().status(TokenStatus::Active)),
        ),
        (
            "status revoked",
            mine(TokenFilter::new().status(TokenStatus::Revoked)),
        ),
        (
            "expires_before",
            mine(TokenFilter::new().expires_before(t0 + Duration::days(20))),
        ),
        (
            "expires_before exact boundary",
            mine(TokenFilter::new().expires_before(t0 + Duration::days(10))),
        ),
        (
            "expires_after (never counts)",
            mine(TokenFilter::new().expires_after(t0 + Duration::days(15))),
        ),
        (
            "expires_after exact boundary",
            mine(TokenFilter::new().expires_after(t0 + Duration::days(20))),
        ),
        (
            "project alpha",
            mine(TokenFilter::new().project(must(ProjectId::new("alpha"), "p"))),
        ),
        (
            "project gamma",
            mine(TokenFilter::new().project(must(ProjectId::new("gamma"), "p"))),
        ),
        (
            "scope exact",
            mine(TokenFilter::new().scope(scope("projects:read"))),
        ),
        (
            "scope wildcard string",
            mine(TokenFilter::new().scope(scope("projects:*"))),
        ),
        ("scope admin", mine(TokenFilter::new().scope(scope("*")))),
        ("key version 7", mine(TokenFilter::new().key_version(7))),
        ("key version 1", mine(TokenFilter::new().key_version(1))),
        (
            "key version 2 (none)",
            mine(TokenFilter::new().key_version(2)),
        ),
        (
            "combined",
            mine(
                TokenFilter::new()
                    .status(TokenStatus::Active)
                    .project(must(ProjectId::new("alpha"), "p"))
                    .expires_after(t0),
            ),
        ),
    ];
    let reach = |owner: Option<&str>, scopes: &[&str], projects: Projects| {
        Reach::new(
            owner.map(str::to_owned),
            scopes.iter().map(|s| scope(s)).collect(),
            projects,
        )
    };
    let alpha = || must(Projects::only(["alpha"]), "projects");
    let reaches: Vec<(&str, TokenFilter)> = vec![
        (
            "within: admin of every owner",
            mine(TokenFilter::new()).within(reach(None, &["*"], Projects::All)),
        ),
        (
            "within: own owner only",
            TokenFilter::new().within(reach(Some(&owner), &["*"], Projects::All)),
        ),
        (
            "within: exact scope",
            mine(TokenFilter::new()).within(reach(None, &["projects:read"], Projects::All)),
        ),
        (
            "within: wildcard scope grants exact and wildcard",
            mine(TokenFilter::new()).within(reach(
                None,
                &["projects:*", "tokens:read"],
                Projects::All,
            )),
        ),
        (
            "within: projects subset",
            mine(TokenFilter::new()).within(reach(None, &["*"], alpha())),
        ),
        (
            "within: everything at once, with another filter",
            TokenFilter::new().status(TokenStatus::Active).within(reach(
                Some(&owner),
                &["projects:*", "tokens:read"],
                Projects::All,
            )),
        ),
        (
            "within: no scopes reaches only scope-less tokens",
            TokenFilter::new()
                .owner(other_owner.clone())
                .within(reach(None, &[], alpha())),
        ),
    ];
    for (what, filter) in filters.into_iter().chain(reaches) {
        let expected: Vec<_> = newest_first(
            records
                .iter()
                .filter(|r| filter.matches(r))
                .cloned()
                .collect(),
        );
        let page = must(store.list(&filter, &PageRequest::first(100)).await, "list");
        assert_eq!(
            ids(&page.items),
            ids(&expected),
            "conformance: list filter `{what}` must match TokenFilter::matches"
        );
    }
}

/// `list`: "Returns at most `page.limit` records ... `Page::next` is `Some` if and only if
/// more matching records follow".
pub async fn list_pages_walk_everything_once<S: TokenStore + ?Sized>(store: &S) {
    let owner = unique("owner");
    let t0 = base_time();
    let records: Vec<_> = (0..11)
        .map(|i| sample_record(&owner, i, t0 + Duration::milliseconds(i as i64 * 7 % 5)))
        .collect();
    insert_all(store, &records).await;
    let filter = TokenFilter::new().owner(owner.clone());
    for limit in [1, 3, 5, 11, 12] {
        // 11 records: 11 is an exactly full last page, 1 too.
        let mut seen = Vec::new();
        let mut page = PageRequest::first(limit);
        let mut pages = 0;
        loop {
            let got = must(store.list(&filter, &page).await, "list");
            pages += 1;
            assert!(
                got.items.len() <= limit,
                "conformance: list must return at most `limit` records"
            );
            seen.extend(got.items.iter().map(|r| r.id.clone()));
            match got.next {
                Some(c) => {
                    assert_eq!(
                        got.items.len(),
                        limit,
                        "conformance: a page followed by more records must be full"
                    );
                    page = page.next(c);
                }
                None => break,
            }
            assert!(pages <= 20, "conformance: paging must terminate");
        }
        assert_eq!(
            seen,
            ids(&newest_first(records.clone())),
            "conformance: paging with limit {limit} must return every record exactly once, in order"
        );
        // `next` is `Some` only if more records follow: a last page that is exactly full
        // has no `next` (else the client fetches an empty page).
        assert_eq!(
            pages,
            records.len().div_ceil(limit),
            "conformance: with limit {limit}, `next` must be None on the last page, even \
             when it is exactly full"
        );
    }
    // The cursor's string form round-trips.
    let got = must(store.list(&filter, &PageRequest::first(2)).await, "list");
    if let Some(c) = got.next {
        let parsed: Cursor = must(c.to_string().parse(), "cursor parse");
        assert_eq!(
            parsed, c,
            "conformance: cursors must round-trip through strings"
        );
    } else {
        panic!("conformance: next must be Some when more records follow");
    }
}

/// `list`: "passing it back continues the listing without skipping or repeating a record,
/// even when records were inserted in between."
pub async fn list_pages_stable_under_inserts<S: TokenStore + ?Sized>(store: &S) {
    let owner = unique("owner");
    let t0 = base_time() - Duration::hours(1);
    let records: Vec<_> = (0..9)
        .map(|i| sample_record(&owner, i, t0 + Duration::seconds(i as i64)))
        .collect();
    insert_all(store, &records).await;
    let filter = TokenFilter::new().owner(owner.clone());
    let mut page = PageRequest::first(4);
    let mut seen = Vec::new();
    let mut extra = 100;
    loop {
        let got = must(store.list(&filter, &page).await, "list");
        seen.extend(got.items.iter().map(|r| r.id.clone()));
        // Newer tokens arrive between pages.
        let newcomer = sample_record(&owner, extra, base_time() + Duration::seconds(extra as i64));
        extra += 1;
        must(store.insert(&newcomer).await, "insert");
        match got.next {
            Some(c) => page = page.next(c),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ids(&newest_first(records)),
        "conformance: inserts between pages must not cause skips or repeats"
    );
}

/// `touch`: "sets `last_used_at` to `at` if the stored value is absent or earlier." /
/// "Never moves `last_used_at` backwards, and changes neither `version` nor `updated_at`."
pub async fn touch_moves_forward_only<S: TokenStore + ?Sized>(store: &S) {
    let owner = unique("owner");
    let t0 = base_time();
    let mut r = sample_record(&owner, 1, t0);
    r.last_used_at = None;
    must(store.insert(&r).await, "insert");
    let t1 = t0 + Duration::minutes(10);
    must(store.touch(&r.id, t1).await, "touch");
    let got = must(store.get(&r.id).await, "get");
    assert_eq!(
        got.as_ref().and_then(|g| g.last_used_at),
        Some(t1),
        "conformance: touch must set an absent last_used_at"
    );
    must(store.touch(&r.id, t0).await, "touch earlier");
    let got = must(store.get(&r.id).await, "get");
    assert_eq!(
        got.as_ref().and_then(|g| g.last_used_at),
        Some(t1),
        "conformance: touch must never move last_used_at backwards"
    );
    let t2 = t1 + Duration::minutes(10);
    must(store.touch(&r.id, t2).await, "touch later");
    let got = must(store.get(&r.id).await, "get");
    let got = got.unwrap_or_else(|| panic!("conformance: touched record vanished"));
    assert_eq!(
        got.last_used_at,
        Some(t2),
        "conformance: touch must move last_used_at forward"
    );
    assert_eq!(
        (got.version, got.updated_at),
        (r.version, r.updated_at),
        "conformance: touch must change neither version nor updated_at"
    );
}

/// `touch`: "Returns `Ok(())` if there is no record with this id."
pub async fn touch_unknown_is_ok<S: TokenStore + ?Sized>(store: &S) {
    let id = must(TokenId::new(unique("missing")), "id");
    must(
        store.touch(&id, base_time()).await,
        "touch of an unknown id must be Ok(())",
    );
    assert!(
        must(store.get(&id).await, "get").is_none(),
        "conformance: touch must not create a record"
    );
}

/// Concurrency: 64 tasks update ("rotate") the same record from the same version at once.
/// Exactly one wins, the other 63 get `Conflict`, and the record holds the winner's digest
/// (one current secret).
pub async fn concurrent_updates_one_winner<S: TokenStore + ?Sized + 'static>(store: Arc<S>) {
    const TASKS: usize = 64;
    let owner = unique("owner");
    let r = sample_record(&owner, 1, base_time());
    must(store.insert(&r).await, "insert");
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let mut handles = Vec::with_capacity(TASKS);
    for i in 0..TASKS {
        let store = Arc::clone(&store);
        let barrier = Arc::clone(&barrier);
        let mut mine = r.clone();
        mine.retired = vec![RetiredSecret {
            digest: r.digest,
            valid_until: r.created_at,
        }];
        mine.digest = digest(i as u8);
        mine.name = format!("rotation {i}");
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            let res = store.update(&mine).await;
            (mine, res)
        }));
    }
    let mut winners = Vec::new();
    let mut conflicts = 0;
    for h in handles {
        let (mine, res) = must(h.await, "join");
        match res {
            Ok(_) => winners.push(mine),
            Err(StoreError::Conflict) => conflicts += 1,
            Err(e) => panic!("conformance: concurrent update failed with {e:?}, not Conflict"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "conformance: exactly one concurrent update must win"
    );
    assert_eq!(
        conflicts,
        TASKS - 1,
        "conformance: every other update must get Conflict"
    );
    let got = must(store.get(&r.id).await, "get");
    let got = got.unwrap_or_else(|| panic!("conformance: record vanished"));
    assert_eq!(
        (got.digest, got.name.as_str(), got.version),
        (winners[0].digest, winners[0].name.as_str(), r.version + 1),
        "conformance: the record must hold the winner's digest and one version increment"
    );
}
