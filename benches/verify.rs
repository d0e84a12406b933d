//! Verification and issuing with 1,000,000 tokens in the memory store, against the floor of
//! a verify: one pre-keyed HMAC-SHA256 of the secret, one HashMap lookup among 1,000,000
//! entries, and one 32-byte constant-time comparison.
//!
//! Also prints the memory per stored token (3 scopes, no metadata), from the process's
//! resident set size before and after filling the store.
//!
//! Run: `cargo bench --bench verify` (`KEYGATE_BENCH_TOKENS` overrides the token count).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark set-up: a panic aborts the run"
)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::Criterion;
use hmac::{Hmac, Mac};
use keygate::{
    ExpiryPreset, IssueRequest, MemoryStore, ScopeSet, ServerKey, TokenId, TokenManager,
    token::TokenFormat,
};
use sha2::Sha256;
use subtle::ConstantTimeEq;

const HOT_SET: usize = 1000;

struct Fixture {
    rt: tokio::runtime::Runtime,
    manager: TokenManager,
    valid: Vec<String>,
    wrong_secret: String,
    unknown_id: String,
    /// Wrong secrets of the hot tokens, and unknown (generated, never issued) ids: each
    /// cycled, so the lookup's miss is averaged over where the digests land.
    wrong_secrets: Vec<String>,
    unknown_ids: Vec<String>,
    bad_checksum: String,
    expired: String,
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn fixture(n: usize) -> Fixture {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(MemoryStore::new());
    let manager = TokenManager::builder(Arc::clone(&store))
        .server_key(ServerKey::generate())
        .audit_sink(keygate::audit::NoopSink)
        .build()
        .unwrap();
    let scopes = ScopeSet::parse(["projects:read", "projects:write", "tokens:self"]).unwrap();
    let rss_before = rss_bytes();
    let mut valid = Vec::with_capacity(HOT_SET);
    rt.block_on(async {
        for i in 0..n {
            let issued = manager
                .issue(
                    IssueRequest::new(format!("token {i}"), format!("user{}", i % 1000))
                        .scopes(scopes.clone())
                        .expiry(ExpiryPreset::Days90),
                )
                .await
                .unwrap();
            if i % (n / HOT_SET).max(1) == 0 && valid.len() < HOT_SET {
                valid.push(issued.expose_secret().to_owned());
            }
        }
    });
    let rss_after = rss_bytes();
    println!(
        "memory: {} tokens (3 scopes, no metadata) -> {:.0} bytes per token (RSS delta {} MiB)",
        store.len(),
        (rss_after.saturating_sub(rss_before)) as f64 / n as f64,
        (rss_after.saturating_sub(rss_before)) / (1024 * 1024)
    );

    let format = manager.format().clone();
    let first = format.parse(&valid[0]).unwrap();
    let id = TokenId::new(first.id()).unwrap();
    let other_secret: String = first
        .secret()
        .chars()
        .map(|c| if c == 'A' { 'B' } else { 'A' })
        .collect();
    let wrong_secret = format
        .format(&id, &other_secret)
        .unwrap()
        .expose_secret()
        .to_owned();
    let unknown_id = format
        .format(&TokenId::new("no-such-token-id").unwrap(), first.secret())
        .unwrap()
        .expose_secret()
        .to_owned();
    let secret_len = first.secret().len();
    let wrong_secrets: Vec<String> = valid
        .iter()
        .map(|t| {
            let id = TokenId::new(format.parse(t).unwrap().id()).unwrap();
            let token = format.format(&id, &random_secret(secret_len)).unwrap();
            token.expose_secret().to_owned()
        })
        .collect();
    let unknown_ids: Vec<String> = (0..valid.len())
        .map(|_| {
            let token = format
                .format(&TokenId::generate(), &random_secret(secret_len))
                .unwrap();
            token.expose_secret().to_owned()
        })
        .collect();
    let mut bad_checksum = valid[0].clone();
    let last = bad_checksum.pop().unwrap();
    bad_checksum.push(if last == '0' { '1' } else { '0' });
    let expired = rt.block_on(async {
        let t = manager
            .issue(
                IssueRequest::new("expiring", "user")
                    .expiry(ExpiryPreset::In(std::time::Duration::from_secs(1))),
            )
            .await
            .unwrap();
        t.expose_secret().to_owned()
    });
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // Let the first `last_used_at` write of each hot token land, as it would in a running
    // service, so the measured loop sees the steady state (no write due for 60 s).
    rt.block_on(async {
        for t in &valid {
            manager.verify(t).await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    });
    Fixture {
        rt,
        manager,
        valid,
        wrong_secret,
        unknown_id,
        wrong_secrets,
        unknown_ids,
        bad_checksum,
        expired,
    }
}

/// A secret of `len` random base62 characters (for wrong secrets).
fn random_secret(len: usize) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..len)
        .map(|_| {
            let i = rand_core::RngCore::next_u32(&mut rand_core::OsRng) as usize % 62;
            char::from(ALPHABET[i])
        })
        .collect()
}

/// The floor: what any verify must do at least.
struct Floor {
    mac: Hmac<Sha256>,
    map: HashMap<String, [u8; 32]>,
    probes: Vec<(String, String)>,
}

fn floor(n: usize) -> Floor {
    let mac = Hmac::<Sha256>::new_from_slice(&[7u8; 32]).unwrap();
    let format = TokenFormat::default();
    let mut map = HashMap::with_capacity(n);
    let mut probes = Vec::new();
    for i in 0..n {
        let id = format!("{i:016x}");
        let secret = format!("{:043}", i);
        let mut m = mac.clone();
        m.update(secret.as_bytes());
        map.insert(id.clone(), m.finalize().into_bytes().into());
        if i % (n / HOT_SET).max(1) == 0 && probes.len() < HOT_SET {
            probes.push((id, secret));
        }
    }
    let _ = format;
    Floor { mac, map, probes }
}

fn ct_eq_32(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut acc = 0u64;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        acc |=
            u64::from_ne_bytes(x.try_into().unwrap()) ^ u64::from_ne_bytes(y.try_into().unwrap());
    }
    acc.ct_eq(&0).into()
}

impl Floor {
    fn verify(&self, id: &str, secret: &str) -> bool {
        let Some(stored) = self.map.get(id) else {
            return false;
        };
        let mut m = self.mac.clone();
        m.update(secret.as_bytes());
        let d: [u8; 32] = m.finalize().into_bytes().into();
        ct_eq_32(&d, stored)
    }
}

fn main() {
    let n: usize = std::env::var("KEYGATE_BENCH_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut c = Criterion::default()
        .sample_size(50)
        .measurement_time(std::time::Duration::from_secs(3))
        .warm_up_time(std::time::Duration::from_secs(1))
        .configure_from_args();

    let fl = floor(n);
    {
        let mut g = c.benchmark_group("floor");
        let (id, secret) = &fl.probes[0];
        g.bench_function("hmac+lookup+ct_eq (hot)", |b| {
            b.iter(|| black_box(fl.verify(black_box(id), black_box(secret))))
        });
        let mut i = 0;
        g.bench_function("hmac+lookup+ct_eq (cycling)", |b| {
            b.iter(|| {
                i = (i + 1) % fl.probes.len();
                let (id, secret) = &fl.probes[i];
                black_box(fl.verify(black_box(id), black_box(secret)))
            })
        });
        g.finish();
    }
    drop(fl);

    let f = fixture(n);
    let m = &f.manager;
    {
        let mut g = c.benchmark_group("verify");
        g.bench_function("valid (hot)", |b| {
            b.to_async(&f.rt)
                .iter(|| async { black_box(m.verify(black_box(&f.valid[0])).await.is_ok()) })
        });
        let mut i = 0;
        g.bench_function("valid (cycling)", |b| {
            b.to_async(&f.rt).iter(|| {
                i = (i + 1) % f.valid.len();
                let t = &f.valid[i];
                async move { black_box(m.verify(black_box(t)).await.is_ok()) }
            })
        });
        for (name, tokens) in [
            ("wrong secret (cycling)", &f.wrong_secrets),
            ("unknown id (cycling)", &f.unknown_ids),
        ] {
            let mut i = 0;
            g.bench_function(name, |b| {
                b.to_async(&f.rt).iter(|| {
                    i = (i + 1) % tokens.len();
                    let t = &tokens[i];
                    async move { black_box(m.verify(black_box(t)).await.is_err()) }
                })
            });
        }
        for (name, token) in [
            ("wrong secret", &f.wrong_secret),
            ("unknown id", &f.unknown_id),
            ("bad checksum", &f.bad_checksum),
            ("expired", &f.expired),
        ] {
            g.bench_function(name, |b| {
                b.to_async(&f.rt)
                    .iter(|| async { black_box(m.verify(black_box(token)).await.is_err()) })
            });
        }
        g.finish();
    }
    {
        let mut g = c.benchmark_group("issue");
        let scopes = ScopeSet::parse(["projects:read", "projects:write", "tokens:self"]).unwrap();
        g.bench_function("issue (into 1M)", |b| {
            b.to_async(&f.rt).iter(|| async {
                black_box(
                    m.issue(IssueRequest::new("bench", "user").scopes(scopes.clone()))
                        .await
                        .unwrap(),
                )
            })
        });
        g.finish();
    }
    c.final_summary();
}
