//! Constant-time check of keygate's secret-dependent verification steps, run under Valgrind
//! memcheck (the "ctgrind" technique).
//!
//! The secret bytes are marked *undefined* with a Valgrind client request: the server key
//! (before the keyring's HMAC state is derived from it), the stored digest and the secret
//! part of the presented token. memcheck
//! then reports every conditional jump and every memory address that depends on them.
//!
//! Checked (must report zero errors): exactly the calls `TokenManager::verify` makes on
//! secret data, in the same order —
//! [`Keyring::new`] (HMAC key schedule), [`Keyring::digest`] (HMAC-SHA256 over
//! `id ‖ 0x00 ‖ secret`) and [`Digest`]'s `PartialEq`/`ct_eq` against the stored digest.
//! The match/no-match result is marked defined before it is branched on: deciding is the
//! point of verification, and that single bit is what a verifier reveals anyway.
//!
//! Positive control (must report errors, or the check is void): slice `==` on the same
//! undefined digests.
//!
//! With the argument `verify`, runs the whole `TokenManager::verify` instead, with the server
//! key undefined from the start, over a store that treats the digests it is given as public
//! (the keyed digest is the lookup key); scripts/ctgrind.sh checks where memcheck reports
//! errors.
//!
//! Exit status: 0 if the check has zero errors and the control has at least one; 1 if not;
//! 2 if not running under Valgrind.

use std::hint::black_box;
use std::process::ExitCode;

use keygate::{digest::Digest, digest::Keyring, token::TokenFormat, ServerKey, TokenId};

#[cfg(not(target_arch = "x86_64"))]
compile_error!("the ctgrind check issues Valgrind client requests for x86_64 only");

/// `VG_USERREQ_TOOL_BASE('M', 'C')`: memcheck's client requests.
const MC_BASE: usize = ((b'M' as usize) << 24) | ((b'C' as usize) << 16);
const MAKE_MEM_UNDEFINED: usize = MC_BASE + 1;
const MAKE_MEM_DEFINED: usize = MC_BASE + 2;
/// Core requests.
const RUNNING_ON_VALGRIND: usize = 0x1001;
const COUNT_ERRORS: usize = 0x1201;

/// Issues a Valgrind client request; returns `default` when not running under Valgrind.
fn client_request(default: usize, request: usize, arg1: usize, arg2: usize) -> usize {
    let args: [usize; 6] = [request, arg1, arg2, 0, 0, 0];
    let mut result = default;
    // SAFETY: Valgrind's x86_64 client-request sequence (valgrind.h,
    // VALGRIND_DO_CLIENT_REQUEST_EXPR). On a real CPU it rotates rdi by 3+13+61+51 = 128 bits
    // (a no-op) and exchanges rbx with itself, so rdx keeps `default`; under Valgrind, rdx
    // receives the request's result. `args` lives until after the asm block, which only reads
    // it through rax.
    unsafe {
        std::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            inout("rdx") result,
            in("rax") args.as_ptr(),
            options(nostack),
        );
    }
    result
}

fn mark_undefined(bytes: &[u8]) {
    client_request(0, MAKE_MEM_UNDEFINED, bytes.as_ptr() as usize, bytes.len());
}

fn mark_defined(bytes: &[u8]) {
    client_request(0, MAKE_MEM_DEFINED, bytes.as_ptr() as usize, bytes.len());
}

fn error_count() -> usize {
    client_request(0, COUNT_ERRORS, 0, 0)
}

/// Declassifies a comparison result: the one bit verification is meant to reveal.
fn declassify(b: bool) -> bool {
    let cell = [u8::from(black_box(b))];
    mark_defined(&cell);
    black_box(cell)[0] != 0
}

/// 43 secret characters (a default token's length), fixed so runs are comparable.
const SECRET: &str = "Q7kLm2Xp9RtVw4Yz8BcDf3GhJn6PsTuA1eIoKx5Ns0d";
const WRONG_LAST: &str = "Q7kLm2Xp9RtVw4Yz8BcDf3GhJn6PsTuA1eIoKx5Ns0e";
const WRONG_FIRST: &str = "R7kLm2Xp9RtVw4Yz8BcDf3GhJn6PsTuA1eIoKx5Ns0d";

fn run() -> Result<bool, keygate::Error> {
    let format = TokenFormat::default();
    let id = TokenId::new("ctgrind-token")?;

    // Before the check: everything built from defined data, so setup noise is not counted.
    let issued = format.format(&id, SECRET)?;
    let right = format.format(&id, SECRET)?;
    let wrong_last = format.format(&id, WRONG_LAST)?;
    let wrong_first = format.format(&id, WRONG_FIRST)?;
    let unknown_id = TokenId::new("ctgrind-other")?;
    let unknown = format.format(&unknown_id, SECRET)?;

    let before = error_count();

    // Server key: undefined before the keyring derives its HMAC state from it.
    let key_bytes: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37) ^ 0xA5).collect();
    mark_undefined(&key_bytes);
    let keyring = Keyring::new(1, ServerKey::from_bytes(key_bytes)?);

    // Stored digest: what issuing stored (derived from the undefined key), marked undefined
    // again explicitly.
    let issued_parsed = format
        .parse(issued.expose_secret())
        .map_err(|_| keygate::Error::InvalidConfig("ctgrind: issued token does not parse"))?;
    let stored = Box::new(
        keyring
            .digest(1, issued_parsed.id(), issued_parsed.secret())
            .unwrap_or_else(|| Digest::from_bytes([0; 32])),
    );
    mark_undefined(stored.as_bytes());

    let mut outcomes = Vec::new();
    for (name, token, against) in [
        ("right secret", &right, &*stored),
        ("wrong last char", &wrong_last, &*stored),
        ("wrong first char", &wrong_first, &*stored),
        ("unknown id", &unknown, &*stored),
    ] {
        // Parsing looks at the presented string (checksum, charset): the presenter knows it.
        // The secret part is marked undefined once parsed, before the digest work.
        let parsed = format
            .parse(token.expose_secret())
            .map_err(|_| keygate::Error::InvalidConfig("ctgrind: token does not parse"))?;
        mark_undefined(parsed.secret().as_bytes());
        let computed = keyring
            .digest(1, black_box(parsed.id()), black_box(parsed.secret()))
            .unwrap_or_else(|| Digest::from_bytes([0; 32]));
        let eq = black_box(&computed) == black_box(against);
        let ct = subtle_choice(&computed, against);
        outcomes.push((name, declassify(eq), declassify(ct)));
    }
    let after_check = error_count();

    // Positive control: slice `==` (memcmp/bcmp, early exit) on the same undefined digests.
    let computed = keyring
        .digest(1, "ctgrind-token", WRONG_LAST)
        .unwrap_or_else(|| Digest::from_bytes([0; 32]));
    let leaky = black_box(&computed.as_bytes()[..]) == black_box(&stored.as_bytes()[..]);
    let _ = declassify(leaky);
    let after_control = error_count();

    let check_errors = after_check - before;
    let control_errors = after_control - after_check;
    println!("ctgrind: check errors (secret-dependent jumps/addresses): {check_errors}");
    println!("ctgrind: control errors (slice == on the same data): {control_errors}");
    let mut sane = true;
    for (name, eq, ct) in &outcomes {
        let expected = *name == "right secret";
        println!("ctgrind: {name}: eq={eq} ct_eq={ct} (expected {expected})");
        sane &= *eq == expected && *ct == expected;
    }
    if !sane {
        println!("ctgrind: FAIL: comparison results are wrong; the check is void");
    }
    if control_errors == 0 {
        println!("ctgrind: FAIL: the positive control reported nothing; the check is void");
    }
    if check_errors != 0 {
        println!("ctgrind: FAIL: secret-dependent control flow or addressing found");
    }
    Ok(sane && control_errors > 0 && check_errors == 0)
}

/// `ct_eq` as verification uses it (`Choice` combined, then turned into a bool).
fn subtle_choice(a: &Digest, b: &Digest) -> bool {
    use subtle::ConstantTimeEq as _;
    let prev_present = subtle::Choice::from(1);
    bool::from(a.ct_eq(b) & prev_present)
}

/// Drives a future that never waits (the memory store answers at once).
fn ready<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// A memory store that treats every digest it is handed as public: it marks a copy of the
/// digest defined before looking it up or storing it. This is the one place where a value
/// derived from the server key and the secret is used without constant-time care, by design:
/// the keyed digest (an HMAC output) is the lookup key, as the id was, and where a hash-table
/// probe for it goes reveals nothing about the key or the secret. Everything else verify does
/// with secret-derived data stays under memcheck's eye.
struct DeclassifyingStore(keygate::MemoryStore);

fn declassified(record: &keygate::TokenRecord) -> keygate::TokenRecord {
    let r = record.clone();
    mark_defined(r.digest.digest.as_bytes());
    for p in &r.retired {
        mark_defined(p.digest.digest.as_bytes());
    }
    r
}

#[async_trait::async_trait]
impl keygate::store::TokenStore for DeclassifyingStore {
    async fn insert(&self, r: &keygate::TokenRecord) -> Result<(), keygate::error::StoreError> {
        self.0.insert(&declassified(r)).await
    }
    async fn get(
        &self,
        id: &TokenId,
    ) -> Result<Option<std::sync::Arc<keygate::TokenRecord>>, keygate::error::StoreError> {
        self.0.get(id).await
    }
    async fn find_by_digest(
        &self,
        digest: &Digest,
    ) -> Result<Option<std::sync::Arc<keygate::TokenRecord>>, keygate::error::StoreError> {
        let public = *digest;
        mark_defined(public.as_bytes());
        self.0.find_by_digest(&public).await
    }
    async fn update(&self, r: &keygate::TokenRecord) -> Result<u64, keygate::error::StoreError> {
        self.0.update(&declassified(r)).await
    }
    async fn delete(&self, id: &TokenId) -> Result<bool, keygate::error::StoreError> {
        self.0.delete(id).await
    }
    async fn list(
        &self,
        f: &keygate::store::TokenFilter,
        p: &keygate::store::PageRequest,
    ) -> Result<keygate::store::Page, keygate::error::StoreError> {
        self.0.list(f, p).await
    }
    async fn touch(
        &self,
        id: &TokenId,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), keygate::error::StoreError> {
        self.0.touch(id, at).await
    }
}

/// The whole `TokenManager::verify` (parse, digest, store lookup, comparison, status and
/// expiry checks) with the server key undefined from the start, so the stored digest issued
/// under it is undefined too. The presented tokens stay defined (parsing them is not secret).
/// The store declassifies the digests it is given (see [`DeclassifyingStore`]). Every error
/// memcheck reports must be a branch on the match result in src/manager/verify.rs;
/// scripts/ctgrind.sh checks the reported locations. Returns the number of errors reported
/// during the verifications.
fn run_verify() -> Result<usize, keygate::Error> {
    use keygate::{IssueRequest, MemoryStore, TokenManager};
    let key_bytes: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37) ^ 0xA5).collect();
    mark_undefined(&key_bytes);
    let manager = TokenManager::builder(DeclassifyingStore(MemoryStore::new()))
        .server_key(ServerKey::from_bytes(key_bytes)?)
        .audit_sink(keygate::audit::NoopSink)
        .build()?;
    let issued = ready(manager.issue(IssueRequest::new("ctgrind", "ctgrind")))?;
    let format = TokenFormat::default();
    let wrong = format.format(issued.id(), WRONG_LAST)?;
    let unknown = format.format(&TokenId::new("ctgrind-other")?, SECRET)?;
    let before = error_count();
    let ok = ready(manager.verify(issued.expose_secret())).is_ok();
    let wrong_refused = ready(manager.verify(wrong.expose_secret())).is_err();
    let unknown_refused = ready(manager.verify(unknown.expose_secret())).is_err();
    let errors = error_count() - before;
    println!(
        "ctgrind verify: right={ok} wrong refused={wrong_refused} unknown refused={unknown_refused}"
    );
    println!("ctgrind verify: errors during TokenManager::verify: {errors}");
    if !(ok && wrong_refused && unknown_refused) {
        return Err(keygate::Error::InvalidConfig(
            "ctgrind: verify gave wrong results",
        ));
    }
    Ok(errors)
}

fn main() -> ExitCode {
    if client_request(0, RUNNING_ON_VALGRIND, 0, 0) == 0 {
        eprintln!("ctgrind: not running under Valgrind; run scripts/ctgrind.sh");
        return ExitCode::from(2);
    }
    if std::env::args().nth(1).as_deref() == Some("verify") {
        return match run_verify() {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                println!("ctgrind verify: {e}");
                ExitCode::from(1)
            }
        };
    }
    match run() {
        Ok(true) => {
            println!("ctgrind: PASS");
            ExitCode::SUCCESS
        }
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            println!("ctgrind: setup failed: {e}");
            ExitCode::from(1)
        }
    }
}
