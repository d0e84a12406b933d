//! dudect-style statistical timing test of `TokenManager::verify` (see `scripts/dudect.sh`).
//!
//! Each bench interleaves two classes of inputs at random and times one `verify` call per
//! measurement; dudect-bencher reports the largest Welch t statistic over its cropped tests.
//! Pass: |t| < 4.5 for the keygate benches; the positive control must exceed 10 in the same
//! run, or the run shows nothing.
//!
//! - `a_secret_first_vs_last_byte`: valid-length tokens of a known id whose secret differs from
//!   the right one in the first character vs in the last character. The presented secret is
//!   uniformly random in both classes and the stored digest is re-pointed (outside the timed
//!   region) at a right secret that differs from it in the first or the last character: only
//!   the relation to the stored secret differs between the classes.
//! - `b_unknown_id_vs_wrong_secret`: a token of an id that does not exist vs a token of a
//!   known id with a wrong secret, over the memory store holding 1,000 tokens.
//! - `c_control_leaky_compare`: the same `verify` as the first bench, followed by an
//!   early-exit byte comparison of the presented secret with the right one: the
//!   hand-written check the digest comparison replaces. It must be detected.
//!
//! - `d_info_store_get_unknown_vs_known`: informational, no pass/fail: the memory store's
//!   lookup by id alone, miss vs hit (what a lookup by id would reveal).
//! - `e_info_parse_first_vs_last_byte`, `f_info_digest_first_vs_last_byte`: informational,
//!   no pass/fail: bench a's inputs through `TokenFormat::parse` alone, and through
//!   `Keyring::digest` + `Digest` equality alone (the secret-dependent steps).
//! - `g_info_same_inputs_noise_floor`: informational, no pass/fail: both classes drawn the
//!   same way (wrong secrets of the known id): the harness's own noise floor.
//!
//! `DUDECT_MEASUREMENTS` sets the measurements per class (default 1,000,000).

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use dudect_bencher::{BenchRng, Class, CtRunner, ctbench_main};

use keygate::audit::NoopSink;
use keygate::{digest::Keyring, store::TokenStore, token::TokenFormat, IssueRequest, MemoryStore, ServerKey, TokenId, TokenManager, TokenRecord, VerifyError};

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Measurements per class.
fn per_class() -> usize {
    std::env::var("DUDECT_MEASUREMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// Drives a future that never waits (the memory store answers at once).
fn ready<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// A small xorshift generator for test inputs (not for secrets).
struct Xorshift(u64);

impl Xorshift {
    fn seeded() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9E37_79B9_7F4A_7C15, |d| d.as_nanos() as u64);
        Xorshift(t | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn coin(&mut self) -> Class {
        if self.next() & 1 == 0 {
            Class::Left
        } else {
            Class::Right
        }
    }
}

struct Setup {
    manager: TokenManager,
    format: TokenFormat,
    /// The manager's key, for re-pointing the stored digest (bench a).
    keyring: Keyring,
    known: TokenId,
    unknown: TokenId,
    /// The right secret characters of `known`'s token.
    secret: Vec<u8>,
}

/// A manager over a memory store holding 1,000 tokens; `known` is one of them.
fn setup() -> Setup {
    let key = ServerKey::generate();
    let manager = TokenManager::builder(MemoryStore::new())
        .server_key(key.clone())
        .audit_sink(NoopSink)
        .build()
        .unwrap_or_else(|e| panic!("build: {e}"));
    let mut secret = Vec::new();
    let known = TokenId::new("dudect-known-0500").unwrap_or_else(|e| panic!("{e}"));
    for i in 0..1000 {
        let id = TokenId::new(format!("dudect-known-{i:04}")).unwrap_or_else(|e| panic!("{e}"));
        let issued = ready(manager.issue(IssueRequest::new("dudect", "bench").id(id.clone())))
            .unwrap_or_else(|e| panic!("issue: {e}"));
        if id == known {
            let parsed = manager
                .format()
                .parse(issued.expose_secret())
                .unwrap_or_else(|e| panic!("parse: {e}"));
            secret = parsed.secret().as_bytes().to_vec();
        }
    }
    let unknown = TokenId::new("dudect-unkno-0500").unwrap_or_else(|e| panic!("{e}"));
    Setup {
        format: manager.format().clone(),
        keyring: Keyring::new(1, key),
        manager,
        known,
        unknown,
        secret,
    }
}

/// Points the stored digest of `s.known` at `secret` (outside the timed region).
fn store_secret(s: &Setup, secret: &str) {
    let store = s.manager.store();
    let mut record = ready(store.get(&s.known))
        .ok()
        .flatten()
        .map(|r| TokenRecord::clone(&r))
        .unwrap_or_else(|| panic!("known record missing"));
    record.digest = s.keyring.digest_current(s.known.as_str(), secret);
    ready(store.update(&record)).unwrap_or_else(|e| panic!("update: {e}"));
}

/// `secret` with the character at `at` replaced by a different random one.
fn flip(secret: &[u8], at: usize, rng: &mut Xorshift) -> String {
    let mut s = secret.to_vec();
    let old = s[at];
    let mut c = ALPHABET[rng.below(62)];
    while c == old {
        c = ALPHABET[rng.below(62)];
    }
    s[at] = c;
    String::from_utf8(s).unwrap_or_else(|e| panic!("{e}"))
}

/// A token of the known id whose secret differs from the right one in the first (`Left`) or
/// the last (`Right`) character; returns the token string and its secret.
fn first_or_last(s: &Setup, class: Class, last: usize, rng: &mut Xorshift) -> (String, Vec<u8>) {
    let at = match class {
        Class::Left => 0,
        Class::Right => last,
    };
    let secret = flip(&s.secret, at, rng);
    let token = s
        .format
        .format(&s.known, &secret)
        .unwrap_or_else(|e| panic!("{e}"));
    (token.expose_secret().to_owned(), secret.into_bytes())
}

fn random_secret(len: usize, rng: &mut Xorshift) -> String {
    (0..len)
        .map(|_| char::from(ALPHABET[rng.below(62)]))
        .collect()
}

fn verify_fails(manager: &TokenManager, token: &str) -> bool {
    matches!(ready(manager.verify(token)), Err(VerifyError::Unknown))
}

/// Runs `n` measurements per class, drawing classes at random; `input` makes the token for a
/// class (outside the timed region) and `measure` is timed.
fn collect(
    runner: &mut CtRunner,
    name: &str,
    mut input: impl FnMut(Class, &mut Xorshift) -> (String, Vec<u8>),
    measure: impl Fn(&str, &[u8]) -> bool,
) {
    let n = per_class();
    let mut rng = Xorshift::seeded();
    let (mut left, mut right) = (0usize, 0usize);
    while left < n || right < n {
        let class = match rng.coin() {
            Class::Left if left < n => Class::Left,
            Class::Right if right < n => Class::Right,
            _ if left < n => Class::Left,
            _ => Class::Right,
        };
        let (token, presented) = input(class, &mut rng);
        runner.run_one(class, || measure(black_box(&token), black_box(&presented)));
        match class {
            Class::Left => left += 1,
            Class::Right => right += 1,
        }
    }
    eprintln!("{name}: measurements per class: left {left}, right {right}");
}

/// Times `verify` of tokens with a random (wrong) secret for the id `left` or `right`, by class.
fn compare_ids(runner: &mut CtRunner, name: &str, s: &Setup, left: &TokenId, right: &TokenId) {
    collect(
        runner,
        name,
        |class, rng| {
            let id = match class {
                Class::Left => left,
                Class::Right => right,
            };
            let secret = random_secret(s.secret.len(), rng);
            let token = s
                .format
                .format(id, &secret)
                .unwrap_or_else(|e| panic!("{e}"));
            (token.expose_secret().to_owned(), secret.into_bytes())
        },
        |token, _| verify_fails(&s.manager, token),
    );
}

fn a_secret_first_vs_last_byte(runner: &mut CtRunner, _rng: &mut BenchRng) {
    let s = setup();
    let len = s.secret.len();
    collect(
        runner,
        "a_secret_first_vs_last_byte",
        |class, rng| {
            // The presented secret is uniformly random in both classes; the right (stored)
            // secret differs from it in the first or in the last character. So only the
            // relation to the stored secret differs between classes, not the input's shape.
            let presented = random_secret(len, rng);
            let at = match class {
                Class::Left => 0,
                Class::Right => len - 1,
            };
            let right = flip(presented.as_bytes(), at, rng);
            store_secret(&s, &right);
            let token = s
                .format
                .format(&s.known, &presented)
                .unwrap_or_else(|e| panic!("{e}"));
            (token.expose_secret().to_owned(), presented.into_bytes())
        },
        |token, _| verify_fails(&s.manager, token),
    );
}

fn b_unknown_id_vs_wrong_secret(runner: &mut CtRunner, _rng: &mut BenchRng) {
    let s = setup();
    compare_ids(
        runner,
        "b_unknown_id_vs_wrong_secret",
        &s,
        &s.unknown,
        &s.known,
    );
}

fn c_control_leaky_compare(runner: &mut CtRunner, _rng: &mut BenchRng) {
    let s = setup();
    let last = s.secret.len() - 1;
    let right = s.secret.clone();
    collect(
        runner,
        "c_control_leaky_compare",
        |class, rng| first_or_last(&s, class, last, rng),
        |token, presented| {
            let failed = verify_fails(&s.manager, token);
            // Early exit on the first differing byte: the leak the control must show.
            let mut equal = presented.len() == right.len();
            for (a, b) in presented.iter().zip(&right) {
                if black_box(*a) != black_box(*b) {
                    equal = false;
                    break;
                }
            }
            failed & !equal
        },
    );
}

/// Informational, no pass/fail: the memory store's `get` by id alone, unknown id vs known id:
/// the hit-or-miss difference a lookup by id has, and which verification avoids by looking
/// tokens up by digest.
fn d_info_store_get_unknown_vs_known(runner: &mut CtRunner, _rng: &mut BenchRng) {
    let s = setup();
    let store = s.manager.store().clone();
    collect(
        runner,
        "d_info_store_get_unknown_vs_known",
        |class, _| {
            let id = match class {
                Class::Left => &s.unknown,
                Class::Right => &s.known,
            };
            (id.as_str().to_owned(), Vec::new())
        },
        |id, _| {
            let id = TokenId::new(id).unwrap_or_else(|e| panic!("{e}"));
            matches!(ready(store.get(&id)), Ok(Some(_)))
        },
    );
}

/// Informational, no pass/fail: `TokenFormat::parse` alone on the inputs of bench a. It only
/// looks at the presented string (charset, CRC32 checksum), which its presenter knows.
fn e_info_parse_first_vs_last_byte(runner: &mut CtRunner, _rng: &mut BenchRng) {
    let s = setup();
    let last = s.secret.len() - 1;
    collect(
        runner,
        "e_info_parse_first_vs_last_byte",
        |class, rng| first_or_last(&s, class, last, rng),
        |token, _| s.format.parse(token).is_ok(),
    );
}

/// Informational, no pass/fail: the secret-dependent steps alone on the inputs of bench a:
/// `Keyring::digest` of the presented secret and `Digest` equality with the stored digest.
fn f_info_digest_first_vs_last_byte(runner: &mut CtRunner, _rng: &mut BenchRng) {
    let s = setup();
    let last = s.secret.len() - 1;
    let keyring = Keyring::new(1, ServerKey::generate());
    let right = std::str::from_utf8(&s.secret).unwrap_or_else(|e| panic!("{e}"));
    let stored = keyring.digest(1, s.known.as_str(), right);
    collect(
        runner,
        "f_info_digest_first_vs_last_byte",
        |class, rng| first_or_last(&s, class, last, rng),
        |_, presented| {
            let secret = std::str::from_utf8(presented).unwrap_or_else(|e| panic!("{e}"));
            keyring.digest(1, s.known.as_str(), secret) == stored
        },
    );
}

/// Informational, no pass/fail: both classes are wrong secrets of the known id, drawn the
/// same way. The harness's noise floor: with no difference between the classes, |t| should
/// stay small.
fn g_info_same_inputs_noise_floor(runner: &mut CtRunner, _rng: &mut BenchRng) {
    let s = setup();
    compare_ids(
        runner,
        "g_info_same_inputs_noise_floor",
        &s,
        &s.known,
        &s.known,
    );
}

ctbench_main!(
    a_secret_first_vs_last_byte,
    b_unknown_id_vs_wrong_secret,
    c_control_leaky_compare,
    d_info_store_get_unknown_vs_known,
    e_info_parse_first_vs_last_byte,
    f_info_digest_first_vs_last_byte,
    g_info_same_inputs_noise_floor
);
