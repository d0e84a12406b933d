//! A valid verification allocates nothing: counted by dhat's heap profiler in testing mode
//! (the global allocator of this test binary), around verifications of issued tokens in the
//! memory store, with and without the verification cache, once the token's first
//! `last_used_at` write has landed (the steady state of a running service).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

use std::sync::Arc;
use std::time::Duration;

use keygate::cache::CacheConfig;
use keygate::{IssueRequest, MemoryStore, ScopeSet, ServerKey, TokenManager};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Allocations made while `manager` verifies each of `tokens` `rounds` times.
async fn allocations(manager: &TokenManager, tokens: &[String], rounds: usize) -> u64 {
    let before = dhat::HeapStats::get().total_blocks;
    for _ in 0..rounds {
        for t in tokens {
            let verified = manager.verify(t).await.expect("a valid token verifies");
            std::hint::black_box(&verified);
        }
    }
    dhat::HeapStats::get().total_blocks - before
}

async fn issued(manager: &TokenManager, n: usize) -> Vec<String> {
    let scopes = ScopeSet::parse(["projects:read", "projects:write"]).unwrap();
    let mut out = Vec::new();
    for i in 0..n {
        let t = manager
            .issue(IssueRequest::new(format!("t{i}"), "alice").scopes(scopes.clone()))
            .await
            .unwrap();
        out.push(t.expose_secret().to_owned());
    }
    // The first verification of each schedules its `last_used_at` write; let them land.
    for t in &out {
        manager.verify(t).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    out
}

/// One test, so that no other test's allocations run while this one counts (dhat counts
/// every thread's).
#[test]
fn valid_verification_does_not_allocate() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let plain = TokenManager::builder(Arc::new(MemoryStore::new()))
            .server_key(ServerKey::generate())
            .build()
            .unwrap();
        let tokens = issued(&plain, 20).await;
        // The counter counts: a failed verification copies the id for its audit event.
        let unknown = plain.verify(&tokens[0][..tokens[0].len() - 1]).await;
        assert!(unknown.is_err());
        let before = dhat::HeapStats::get().total_blocks;
        let _ = plain
            .verify("kg_nosuchid_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
            .await;
        let _ = plain
            .issue(IssueRequest::new("one more", "alice"))
            .await
            .unwrap();
        assert!(
            dhat::HeapStats::get().total_blocks > before,
            "the allocation counter sees allocations"
        );

        assert_eq!(
            allocations(&plain, &tokens, 50).await,
            0,
            "valid verifications (memory store, no cache) allocated"
        );

        let cached = TokenManager::builder(Arc::new(MemoryStore::new()))
            .server_key(ServerKey::generate())
            .cache(CacheConfig::default())
            .build()
            .unwrap();
        let tokens = issued(&cached, 20).await;
        assert_eq!(
            allocations(&cached, &tokens, 50).await,
            0,
            "valid verifications (memory store, cache hits) allocated"
        );
    });
}
