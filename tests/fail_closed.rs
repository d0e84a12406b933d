//! Fail closed and cheap rejection, with `keygate::testing::FaultyStore`.
//!
//! - While the store fails (errors, timeouts, hangs), zero verifications succeed, with the
//!   verification cache off and on, and every failure is a store failure, never "invalid".
//!   Service resumes when the store recovers.
//! - A flood of malformed, bad-checksum and over-long tokens makes zero store calls.
//! - A store that answers a lookup with the wrong record gets nothing else accepted.
#![cfg(feature = "test-util")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a panic is a test failure"
)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use keygate::cache::CacheConfig;
use keygate::store::{Page, PageRequest, TokenFilter};
use keygate::testing::{Fault, FaultHandle, FaultyStore, StoreOp};
use keygate::token::MAX_TOKEN_LEN;
use keygate::{
    Error, IssueRequest, MemoryStore, RotateRequest, ServerKey, TokenId, TokenManager, TokenRecord,
    VerifyError, digest::Digest, error::StoreError, store::TokenStore, token::TokenFormat,
};

async fn setup(cache: bool) -> (TokenManager, FaultHandle, Vec<String>) {
    let (store, faults) = FaultyStore::new(MemoryStore::new());
    let mut builder = TokenManager::builder(store).server_key(ServerKey::generate());
    if cache {
        builder = builder.cache(CacheConfig::new());
    }
    let manager = builder.build().unwrap();
    let mut tokens = Vec::new();
    for i in 0..5 {
        let issued = manager
            .issue(IssueRequest::new(format!("t{i}"), "alice"))
            .await
            .unwrap();
        tokens.push(issued.expose_secret().to_owned());
    }
    (manager, faults, tokens)
}

/// Verifies every token (and a wrong secret for each) `rounds` times; returns how many
/// verifications succeeded, and checks every failure is a store failure.
async fn attempts(manager: &TokenManager, tokens: &[String], rounds: usize) -> usize {
    let format = TokenFormat::default();
    let mut ok = 0;
    for _ in 0..rounds {
        for t in tokens {
            let p = format.parse(t).unwrap();
            let wrong = format
                .format(&TokenId::new(p.id()).unwrap(), &"A".repeat(43))
                .unwrap();
            for presented in [t.as_str(), wrong.expose_secret()] {
                match manager.verify(presented).await {
                    Ok(_) => ok += 1,
                    Err(e) => assert!(
                        matches!(e, VerifyError::Store(_)) && !e.is_invalid_token(),
                        "a failing store must give VerifyError::Store, got {e:?}"
                    ),
                }
            }
        }
    }
    ok
}

async fn fails_closed_then_resumes(cache: bool, fault: Fault) {
    let (manager, faults, tokens) = setup(cache).await;
    // Control: the tokens verify while the store is healthy (this also warms the cache).
    for t in &tokens {
        assert!(manager.verify(t).await.is_ok());
    }
    faults.set(fault);
    // A cached entry is served for at most its TTL without a store read (see
    // `keygate::cache`); drop the cache so every verification needs the store.
    manager.invalidate_all();
    let before = faults.calls(StoreOp::FindByDigest);
    let succeeded = attempts(&manager, &tokens, 4).await;
    assert_eq!(
        succeeded, 0,
        "verifications authorised while the store failed"
    );
    assert_eq!(
        faults.calls(StoreOp::FindByDigest) - before,
        40,
        "every verification must have reached the failing store"
    );
    // Management fails with the store error too.
    let r = manager.issue(IssueRequest::new("x", "bob")).await;
    assert!(matches!(r, Err(Error::Store(_))), "{r:?}");

    faults.set(Fault::None);
    for t in &tokens {
        assert!(
            manager.verify(t).await.is_ok(),
            "service resumes once the store recovers"
        );
    }
}

#[tokio::test]
async fn store_errors_fail_closed_cache_off() {
    fails_closed_then_resumes(false, Fault::Error).await;
}

#[tokio::test]
async fn store_errors_fail_closed_cache_on() {
    fails_closed_then_resumes(true, Fault::Error).await;
}

#[tokio::test]
async fn store_timeouts_fail_closed_cache_off() {
    fails_closed_then_resumes(false, Fault::Timeout(Duration::from_millis(2))).await;
}

#[tokio::test]
async fn store_timeouts_fail_closed_cache_on() {
    fails_closed_then_resumes(true, Fault::Timeout(Duration::from_millis(2))).await;
}

/// A store that never answers never authorises: the caller's own deadline ends the wait.
#[tokio::test]
async fn hanging_store_never_authorises() {
    let (manager, faults, tokens) = setup(false).await;
    faults.set(Fault::Hang);
    for t in &tokens {
        let r = tokio::time::timeout(Duration::from_millis(20), manager.verify(t)).await;
        assert!(r.is_err(), "a hanging store must not produce a decision");
    }
    assert_eq!(faults.calls(StoreOp::FindByDigest), 5);
    faults.set(Fault::None);
    assert!(manager.verify(&tokens[0]).await.is_ok());
}

/// Rotation and revocation do not happen while the store fails: the old secret keeps its
/// state, and nothing is half-done.
#[tokio::test]
async fn management_during_outage_changes_nothing() {
    let (manager, faults, tokens) = setup(false).await;
    let id = TokenId::new(TokenFormat::default().parse(&tokens[0]).unwrap().id()).unwrap();
    faults.set(Fault::Error);
    assert!(matches!(
        manager.rotate(&id, RotateRequest::new()).await,
        Err(Error::Store(_))
    ));
    assert!(matches!(manager.revoke(&id).await, Err(Error::Store(_))));
    faults.set(Fault::None);
    assert!(manager.verify(&tokens[0]).await.is_ok());
}

/// Malformed input of every kind, derived from a valid token so that each one is close to
/// passing: every single-character change (CRC32 detects every change within 32 bits),
/// truncations, extensions past the length cap, wrong prefixes and separators.
fn flood(valid: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = valid.as_bytes();
    for i in 0..b.len() {
        for c in [b'0', b'a', b'Z', b'_', b'-', b' ', b'.', b'%'] {
            if b[i] != c {
                let mut v = b.to_vec();
                v[i] = c;
                out.push(String::from_utf8(v).unwrap());
            }
        }
        out.push(valid[..i].to_owned());
        let mut v = valid.to_owned();
        v.remove(i);
        out.push(v);
    }
    for extra in [1, 2, MAX_TOKEN_LEN, 10 * MAX_TOKEN_LEN, 1 << 20] {
        out.push(format!("{valid}{}", "a".repeat(extra)));
        out.push(format!("{}{valid}", "a".repeat(extra)));
    }
    out.push("x".repeat(MAX_TOKEN_LEN + 1));
    out.push(String::new());
    out.push("kg".into());
    out.push("kg_".into());
    out.push("kg__".into());
    out.push(valid.replacen("kg_", "KG_", 1));
    out.push(valid.replacen("kg_", "gk_", 1));
    out.push(format!("Bearer {valid}"));
    out.push(format!("{valid}\n"));
    out.push(valid.replace('_', "\u{ff3f}"));
    out
}

#[tokio::test]
async fn malformed_flood_makes_zero_store_calls() {
    let (manager, faults, tokens) = setup(false).await;
    let flood = flood(&tokens[0]);
    assert!(flood.len() > 500, "{}", flood.len());
    faults.reset_counts();
    for t in &flood {
        let r = manager.verify(t).await;
        assert!(
            matches!(r, Err(VerifyError::Malformed | VerifyError::BadChecksum)),
            "{r:?} for {t:?}"
        );
    }
    assert_eq!(
        faults.total_calls(),
        0,
        "malformed tokens must be refused before any store access"
    );

    // Control: the counter sees a well-formed token of an unknown id (one `get`) and a valid
    // token (one `get`, plus at most one `touch` scheduled off the request path).
    let unknown = TokenFormat::default()
        .format(&TokenId::new("no-such-token").unwrap(), &"b".repeat(43))
        .unwrap();
    assert!(matches!(
        manager.verify(unknown.expose_secret()).await,
        Err(VerifyError::Unknown)
    ));
    assert!(manager.verify(&tokens[0]).await.is_ok());
    assert_eq!(faults.calls(StoreOp::FindByDigest), 2);
}

/// With the cache on and no invalidation, a cached entry stops being served once its TTL has
/// passed, also while the store fails: from then on nothing is authorised.
#[tokio::test]
async fn cached_entries_expire_into_fail_closed() {
    let (store, faults) = FaultyStore::new(MemoryStore::new());
    let ttl = Duration::from_millis(50);
    let manager = TokenManager::builder(store)
        .server_key(ServerKey::generate())
        .cache(CacheConfig::new().ttl(ttl).unwrap())
        .build()
        .unwrap();
    let issued = manager
        .issue(IssueRequest::new("c", "alice"))
        .await
        .unwrap();
    let token = issued.expose_secret();
    assert!(manager.verify(token).await.is_ok());
    faults.set(Fault::Error);
    // Within the TTL the cached record may answer (documented bound); after it, never.
    tokio::time::sleep(ttl * 2).await;
    let gets = faults.calls(StoreOp::FindByDigest);
    for _ in 0..10 {
        assert!(matches!(
            manager.verify(token).await,
            Err(VerifyError::Store(_))
        ));
    }
    assert_eq!(faults.calls(StoreOp::FindByDigest) - gets, 10);
    faults.set(Fault::None);
    assert!(manager.verify(token).await.is_ok());
}

/// A store that answers `find_by_digest` with one fixed record whatever the digest (a broken
/// or hostile backend). Everything else goes to a memory store.
struct AnswersAnyDigest {
    inner: MemoryStore,
    answer: std::sync::Mutex<Option<TokenId>>,
}

#[async_trait::async_trait]
impl TokenStore for AnswersAnyDigest {
    async fn insert(&self, r: &TokenRecord) -> Result<(), StoreError> {
        self.inner.insert(r).await
    }
    async fn get(&self, id: &TokenId) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        self.inner.get(id).await
    }
    async fn find_by_digest(&self, _: &Digest) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        let answer = self.answer.lock().unwrap().clone();
        match answer {
            Some(id) => self.inner.get(&id).await,
            None => Ok(None),
        }
    }
    async fn update(&self, r: &TokenRecord) -> Result<u64, StoreError> {
        self.inner.update(r).await
    }
    async fn delete(&self, id: &TokenId) -> Result<bool, StoreError> {
        self.inner.delete(id).await
    }
    async fn list(&self, f: &TokenFilter, p: &PageRequest) -> Result<Page, StoreError> {
        self.inner.list(f, p).await
    }
    async fn touch(&self, id: &TokenId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.touch(id, at).await
    }
}

/// The manager does not take a store's word that a record holds the presented digest: it
/// compares the digest itself (constant time, under the matching key version) and checks the
/// id. A store that returns the same record for every digest authorises only that record's
/// own token, with the cache off and on.
#[tokio::test]
async fn a_store_answering_any_digest_authorises_only_the_right_token() {
    for cache in [false, true] {
        let store = Arc::new(AnswersAnyDigest {
            inner: MemoryStore::new(),
            answer: std::sync::Mutex::new(None),
        });
        let mut builder =
            TokenManager::builder(Arc::clone(&store)).server_key(ServerKey::generate());
        if cache {
            builder = builder.cache(CacheConfig::new());
        }
        let manager = builder.build().unwrap();
        let a = manager
            .issue(IssueRequest::new("a", "alice"))
            .await
            .unwrap();
        let b = manager.issue(IssueRequest::new("b", "bob")).await.unwrap();
        *store.answer.lock().unwrap() = Some(a.id().clone());

        assert!(manager.verify(a.expose_secret()).await.is_ok(), "control");
        let format = TokenFormat::default();
        let wrong = format.format(a.id(), &"A".repeat(43)).unwrap();
        let nobody = format
            .format(&TokenId::new("nobody").unwrap(), &"A".repeat(43))
            .unwrap();
        for (what, presented) in [
            ("a wrong secret for the answered id", wrong.expose_secret()),
            ("an unknown id", nobody.expose_secret()),
            ("another token's valid secret", b.expose_secret()),
        ] {
            let r = manager.verify(presented).await;
            assert!(
                matches!(r, Err(VerifyError::Unknown)),
                "{what} (cache {cache}) must be refused, got {r:?}"
            );
        }
    }
}

/// A record is accepted only if it holds the presented token's digest for the presented id,
/// under the key version the digest was computed with: a record labelled with another key
/// version, or a copy of the record under another id, is refused.
#[tokio::test]
async fn a_record_holding_the_digest_for_another_id_or_key_version_is_refused() {
    let store = Arc::new(MemoryStore::new());
    let manager = TokenManager::builder(Arc::clone(&store))
        .server_key(ServerKey::generate())
        .build()
        .unwrap();
    let a = manager
        .issue(IssueRequest::new("a", "alice"))
        .await
        .unwrap();
    assert!(manager.verify(a.expose_secret()).await.is_ok(), "control");

    let stored = TokenRecord::clone(&store.get(a.id()).await.unwrap().unwrap());
    let mut relabelled = stored.clone();
    relabelled.digest.key_version += 1;
    store.update(&relabelled).await.unwrap();
    let r = manager.verify(a.expose_secret()).await;
    assert!(
        matches!(r, Err(VerifyError::Unknown)),
        "a digest labelled with another key version must be refused, got {r:?}"
    );

    assert!(store.delete(a.id()).await.unwrap());
    let mut copy = stored;
    copy.id = TokenId::new("someone-else").unwrap();
    store.insert(&copy).await.unwrap();
    let r = manager.verify(a.expose_secret()).await;
    assert!(
        matches!(r, Err(VerifyError::Unknown)),
        "a record holding the digest under another id must be refused, got {r:?}"
    );
}
