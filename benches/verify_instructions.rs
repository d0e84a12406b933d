//! Instructions per verification, keygate against the floor, for counting under callgrind
//! (`benches/verify_instructions.sh` runs it): instruction counts do not move with the load
//! of a busy machine, so the ratio to the floor can be checked where timings cannot.
//!
//! `verify_instructions MODE` fills a memory store with `KEYGATE_BENCH_TOKENS` tokens
//! (default 10,000) and a floor map with as many entries, then runs `ROUNDS` passes over
//! 1,000 tokens in [`measured`], the only function the script collects in. Modes:
//! `floor-valid`, `floor-unknown`, `keygate-valid`, `keygate-unknown`, `keygate-wrong-secret`, and `keygate-issue` (issues
//! more tokens into the filled store).
//!
//! The floor is what any verification must do at least: split the presented string, one
//! pre-keyed HMAC-SHA256 of the secret, one `HashMap` lookup by id, one 32-byte
//! constant-time comparison.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark set-up: a panic aborts the run"
)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use keygate::token::TokenFormat;
use keygate::{IssueRequest, MemoryStore, ScopeSet, ServerKey, TokenId, TokenManager};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Passes over the probe set inside [`measured`].
pub const ROUNDS: usize = 10;
/// Tokens verified per pass.
const PROBES: usize = 1000;

/// The only function collected: runs `op` over every probe, `ROUNDS` times.
#[inline(never)]
fn measured(probes: &[String], op: &mut dyn FnMut(&str) -> bool) -> usize {
    let mut ok = 0;
    for _ in 0..ROUNDS {
        for p in probes {
            ok += usize::from(op(black_box(p)));
        }
    }
    ok
}

struct Floor {
    mac: Hmac<Sha256>,
    map: HashMap<String, [u8; 32]>,
}

impl Floor {
    fn verify(&self, token: &str) -> bool {
        let Some((rest, secret)) = token.rsplit_once('_') else {
            return false;
        };
        let Some((_, id)) = rest.split_once('_') else {
            return false;
        };
        let Some(stored) = self.map.get(id) else {
            return false;
        };
        let mut m = self.mac.clone();
        m.update(secret.as_bytes());
        let d: [u8; 32] = m.finalize().into_bytes().into();
        d.ct_eq(stored).into()
    }
}

fn secret(i: usize) -> String {
    format!("{i:043}")
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let n: usize = std::env::var("KEYGATE_BENCH_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let step = (n / PROBES).max(1);
    let ok = if let Some(kind) = mode.strip_prefix("floor-") {
        let mac = Hmac::<Sha256>::new_from_slice(&[7u8; 32]).unwrap();
        let mut map = HashMap::with_capacity(n);
        let mut probes = Vec::new();
        for i in 0..n {
            let id = format!("{i:016x}");
            let mut m = mac.clone();
            m.update(secret(i).as_bytes());
            map.insert(id.clone(), m.finalize().into_bytes().into());
            if i % step == 0 && probes.len() < PROBES {
                let id = if kind == "unknown" {
                    format!("x{i:015x}")
                } else {
                    id
                };
                probes.push(format!("kg_{id}_{}", secret(i)));
            }
        }
        let floor = Floor { mac, map };
        measured(&probes, &mut |t| floor.verify(t))
    } else if let Some(kind) = mode.strip_prefix("keygate-") {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let manager = TokenManager::builder(Arc::new(MemoryStore::new()))
            .server_key(ServerKey::generate())
            .audit_sink(keygate::audit::NoopSink)
            .build()
            .unwrap();
        let format: TokenFormat = manager.format().clone();
        let scopes = ScopeSet::parse(["projects:read", "projects:write", "tokens:self"]).unwrap();
        let probes: Vec<String> = rt.block_on(async {
            let mut probes = Vec::new();
            for i in 0..n {
                let issued = manager
                    .issue(IssueRequest::new(format!("t{i}"), "user").scopes(scopes.clone()))
                    .await
                    .unwrap();
                if i % step == 0 && probes.len() < PROBES {
                    let t = issued.expose_secret();
                    let parsed = format.parse(t).unwrap();
                    let probe = match kind {
                        "unknown" => format.format(&TokenId::generate(), parsed.secret()),
                        "wrong-secret" => {
                            format.format(&TokenId::new(parsed.id()).unwrap(), &secret(i))
                        }
                        _ => format.format(issued.id(), parsed.secret()),
                    };
                    probes.push(probe.unwrap().expose_secret().to_owned());
                }
            }
            // Let each probe's first `last_used_at` write land: the steady state.
            for t in &probes {
                let _ = manager.verify(t).await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            probes
        });
        if kind == "issue" {
            // Issues `ROUNDS * PROBES` more tokens into the filled store.
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            let _guard = rt.enter();
            return println!(
                "issued {}",
                measured(&probes, &mut |_| {
                    let req = IssueRequest::new("bench", "user").scopes(scopes.clone());
                    let mut fut = std::pin::pin!(manager.issue(req));
                    match fut.as_mut().poll(&mut cx) {
                        std::task::Poll::Ready(r) => r.is_ok(),
                        std::task::Poll::Pending => panic!("a memory-store issue waited"),
                    }
                })
            );
        }
        rt.block_on(async {
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            measured(&probes, &mut |t| {
                // The memory store answers at once: one poll completes a verification.
                let mut fut = std::pin::pin!(manager.verify(t));
                match fut.as_mut().poll(&mut cx) {
                    std::task::Poll::Ready(r) => r.is_ok(),
                    std::task::Poll::Pending => panic!("a memory-store verification waited"),
                }
            })
        })
    } else {
        eprintln!(
            "usage: verify_instructions floor-valid|floor-unknown|keygate-valid|keygate-unknown|keygate-wrong-secret"
        );
        std::process::exit(2);
    };
    println!("{mode}: {ok} of {} accepted", ROUNDS * PROBES.min(n));
}
