//! `Debug` of every type that holds a secret, a server key or a digest shows none of it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

use std::sync::Arc;

use keygate::digest::StoredDigest;
use keygate::{
    IssueRequest, MemoryStore, ServerKey, TokenManager, digest::Digest, digest::Keyring,
    store::TokenStore,
};

/// Every way the bytes could leak through `Debug`: as text, hex (both cases), and as a
/// decimal byte list (what `#[derive(Debug)]` on a byte array prints).
fn assert_absent(debug: &str, what: &str, bytes: &[u8]) {
    let hex = hex::encode(bytes);
    let decimal_run = bytes
        .iter()
        .take(4)
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if let Ok(text) = std::str::from_utf8(bytes) {
        assert!(!debug.contains(text), "{what} appears as text in {debug}");
    }
    assert!(!debug.contains(&hex), "{what} appears as hex in {debug}");
    assert!(
        !debug.contains(&hex.to_uppercase()),
        "{what} appears as HEX in {debug}"
    );
    assert!(
        !debug.contains(&decimal_run),
        "{what} appears as bytes in {debug}"
    );
}

#[tokio::test]
async fn debug_never_shows_secrets() {
    // Distinctive key bytes so a leak cannot hide.
    let key_bytes: Vec<u8> = (100u8..140).collect();
    let key = ServerKey::from_bytes(key_bytes.clone()).unwrap();
    let keyring = Keyring::new(3, key.clone());
    let store = Arc::new(MemoryStore::new());
    let builder = TokenManager::builder(Arc::clone(&store)).keyring(keyring.clone());
    let builder_debug = format!("{builder:?}");
    let manager = builder.build().unwrap();
    let issued = manager
        .issue(IssueRequest::new("t", "o").metadata("k", "v"))
        .await
        .unwrap();
    let token = issued.expose_secret().to_owned();
    let parsed = manager.format().parse(&token).unwrap();
    let secret_part = parsed.secret().to_owned();
    let record = store.get(issued.id()).await.unwrap().unwrap();
    let digest_bytes = *record.digest.digest.as_bytes();
    let rotated = manager
        .rotate(
            issued.id(),
            keygate::RotateRequest::new().grace(std::time::Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    let record_after = store.get(issued.id()).await.unwrap().unwrap();
    let verified = manager.verify(rotated.expose_secret()).await.unwrap();
    let (rec, secret) = manager
        .issue(IssueRequest::new("t2", "o"))
        .await
        .unwrap()
        .into_parts();

    let debugs = [
        ("ServerKey", format!("{key:?}")),
        ("Keyring", format!("{keyring:?}")),
        ("TokenManagerBuilder", builder_debug),
        ("TokenManager", format!("{manager:?}")),
        ("IssuedToken", format!("{issued:?}")),
        ("IssuedToken (rotated)", format!("{rotated:?}")),
        ("TokenSecret", format!("{secret:?}")),
        ("ParsedToken", format!("{parsed:?}")),
        ("TokenRecord", format!("{record:?}")),
        ("TokenRecord (with previous)", format!("{record_after:?}")),
        ("TokenRecord (into_parts)", format!("{rec:?}")),
        ("VerifiedToken", format!("{verified:?}")),
        ("Digest", format!("{:?}", record.digest.digest)),
        (
            "StoredDigest",
            format!("{:?}", StoredDigest { ..record.digest }),
        ),
        (
            "Digest (alt)",
            format!("{:#?}", Digest::from_bytes(digest_bytes)),
        ),
    ];
    let previous_digest = *record_after.retired[0].digest.digest.as_bytes();
    let current_digest = *record_after.digest.digest.as_bytes();
    for (name, debug) in &debugs {
        assert_absent(debug, &format!("{name}: server key"), &key_bytes);
        assert_absent(debug, &format!("{name}: token"), token.as_bytes());
        assert_absent(
            debug,
            &format!("{name}: secret part"),
            secret_part.as_bytes(),
        );
        assert_absent(
            debug,
            &format!("{name}: rotated token"),
            rotated.expose_secret().as_bytes(),
        );
        assert_absent(
            debug,
            &format!("{name}: secret"),
            secret.expose_secret().as_bytes(),
        );
        assert_absent(debug, &format!("{name}: digest"), &digest_bytes);
        assert_absent(debug, &format!("{name}: previous digest"), &previous_digest);
        assert_absent(debug, &format!("{name}: current digest"), &current_digest);
    }
    // Public, non-secret fields stay visible, so redaction is selective, not blanket.
    assert!(format!("{issued:?}").contains(issued.id().as_str()));
    assert!(format!("{verified:?}").contains("\"o\""));
}

#[test]
fn errors_do_not_echo_input() {
    let long_secretish = "kg_id_SECRETSECRETSECRETSECRETSECRET000000";
    let e = keygate::TokenId::new(long_secretish).unwrap_err();
    assert!(!e.to_string().contains("SECRET"));
    let e = keygate::Scope::new(long_secretish).unwrap_err();
    assert!(!e.to_string().contains("SECRET"));
    let e = ServerKey::decode("c2VjcmV0").unwrap_err();
    assert!(!format!("{e} {e:?}").contains("c2VjcmV0"));
}

/// Positive control: the check above does catch each leak form.
#[test]
fn the_check_detects_leaks() {
    let bytes = [1u8, 2, 3, 4, 5];
    for leaky in ["x 0102030405 y", "X 0102030405 Y", "[1, 2, 3, 4, 5]"] {
        assert!(
            std::panic::catch_unwind(|| assert_absent(leaky, "t", &bytes)).is_err(),
            "{leaky}"
        );
    }
    assert!(std::panic::catch_unwind(|| assert_absent("has abc inside", "t", b"abc")).is_err());
    assert_absent("nothing here", "t", &bytes);
}
