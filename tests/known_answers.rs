//! Known answers for keygate's digest, and one-bit flips that must make verification fail.
//!
//! - RFC 4231 HMAC-SHA256 test vectors through `keygate::digest::hmac_sha256`.
//! - `Keyring::digest` against the same HMAC computed independently (Python's `hmac`
//!   module), for the RFC 4231 131-byte key and a 32-byte key: the stored digest is
//!   `HMAC-SHA256(key, id || 0x00 || secret)`, and a refactor can never change it.
//! - A one-bit flip of any byte of a valid token, of the stored digest, or of the server key
//!   makes verification fail.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a panic is a test failure"
)]

use keygate::digest::hmac_sha256;
use keygate::{
    IssueRequest, MemoryStore, ServerKey, TokenId, TokenManager, VerifyError, digest::Keyring,
    store::TokenStore, token::TokenFormat,
};

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("hex literal")
}

/// (key, data, HMAC-SHA256, bytes compared): RFC 4231 section 4, test cases 1 to 7. Case 5's
/// output is truncated to 128 bits by the RFC.
fn rfc4231() -> Vec<(Vec<u8>, Vec<u8>, &'static str, usize)> {
    vec![
        (
            vec![0x0b; 20],
            b"Hi There".to_vec(),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            32,
        ),
        (
            b"Jefe".to_vec(),
            b"what do ya want for nothing?".to_vec(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            32,
        ),
        (
            vec![0xaa; 20],
            vec![0xdd; 50],
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            32,
        ),
        (
            unhex("0102030405060708090a0b0c0d0e0f10111213141516171819"),
            vec![0xcd; 50],
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            32,
        ),
        (
            vec![0x0c; 20],
            b"Test With Truncation".to_vec(),
            "a3b6167473100ee06e0c796c2955552b",
            16,
        ),
        (
            vec![0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            32,
        ),
        (
            vec![0xaa; 131],
            b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.".to_vec(),
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            32,
        ),
    ]
}

#[test]
fn rfc4231_vectors_through_hmac_sha256() {
    let vectors = rfc4231();
    assert_eq!(vectors.len(), 7);
    for (n, (key, data, expected, len)) in vectors.iter().enumerate() {
        let got = hmac_sha256(key, data);
        assert_eq!(
            hex::encode(&got[..*len]),
            *expected,
            "RFC 4231 test case {}",
            n + 1
        );
    }
}

#[test]
fn rfc4231_one_bit_flips_change_the_mac() {
    // Case 2 (short key, short data): every one-bit flip of key or data changes the output.
    let (key, data, expected, _) = rfc4231().swap_remove(1);
    for i in 0..key.len() * 8 {
        let mut k = key.clone();
        k[i / 8] ^= 1 << (i % 8);
        assert_ne!(hex::encode(hmac_sha256(&k, &data)), expected, "key bit {i}");
    }
    for i in 0..data.len() * 8 {
        let mut d = data.clone();
        d[i / 8] ^= 1 << (i % 8);
        assert_ne!(hex::encode(hmac_sha256(&key, &d)), expected, "data bit {i}");
    }
}

/// `Keyring::digest(v, id, secret)` is `HMAC-SHA256(key[v], id || 0x00 || secret)`; expected
/// values computed with Python's `hmac` module, not with keygate.
#[test]
fn keyring_digest_known_answers() {
    let cases = [
        (
            vec![0xaa; 131], // RFC 4231 cases 6 and 7 key (the shorter RFC keys are below 32 bytes)
            "kat-token",
            "Q7kLm2Xp9RtVw4Yz8BcDf3GhJn6PsTuA1eIoKx5Ns0d",
            "481f255d9aab3c07c14e537ffec1f82dca12b825dc79977be1f6b56014a956d4",
        ),
        (
            (0u8..32).collect(),
            "ci-deploy",
            "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg",
            "7afd8e51d8003f0823f4040a96ef76ea59b232ec0f394055aac12fba776d703d",
        ),
    ];
    for (key, id, secret, expected) in cases {
        let keyring = Keyring::new(3, ServerKey::from_bytes(key.clone()).unwrap());
        let d = keyring.digest(3, id, secret).unwrap();
        assert_eq!(hex::encode(d.as_bytes()), expected, "id {id}");
        assert_eq!(keyring.digest_current(id, secret).digest, d);
        assert_eq!(keyring.digest_current(id, secret).key_version, 3);
        // The same through the public primitive, with the documented message layout.
        let message = [id.as_bytes(), &[0], secret.as_bytes()].concat();
        assert_eq!(hex::encode(hmac_sha256(&key, &message)), expected);
        // The key decoded from its hex form gives the same digest.
        let decoded = Keyring::new(3, ServerKey::decode(&hex::encode(&key)).unwrap());
        assert_eq!(decoded.digest(3, id, secret), Some(d));
    }
}

/// Moving a byte between id and secret changes the digest (the 0x00 separator).
/// `Keyring::fingerprint(v)` is `HMAC-SHA256(key[v], "keygate server-key fingerprint v1")`;
/// expected value from Python's `hmac` with the key bytes 0x00..=0x1f.
#[test]
fn keyring_fingerprint_known_answer() {
    let key: Vec<u8> = (0u8..32).collect();
    let keyring = Keyring::new(4, ServerKey::from_bytes(key).unwrap());
    let fingerprint = keyring.fingerprint(4).unwrap();
    assert_eq!(
        hex::encode(fingerprint.as_bytes()),
        "4d9ddc31e2a8951571f0ff201688ee1f7998d32c3c7ae12e6da21e105fb0afea"
    );
    assert!(keyring.fingerprint(3).is_none());
}

#[test]
fn keyring_digest_separates_id_and_secret() {
    let keyring = Keyring::new(1, ServerKey::from_bytes([7u8; 32]).unwrap());
    assert_ne!(
        keyring.digest(1, "ab", "cdefghijklmnopqrstuvwxyz"),
        keyring.digest(1, "abc", "defghijklmnopqrstuvwxyz")
    );
}

async fn issued() -> (TokenManager, MemoryStoreHandle, String, ServerKey) {
    let store = std::sync::Arc::new(MemoryStore::new());
    let key = ServerKey::from_bytes((100u8..140).collect::<Vec<u8>>()).unwrap();
    let manager = TokenManager::builder(store.clone())
        .server_key(key.clone())
        .prefix("acme_live")
        .build()
        .unwrap();
    let issued = manager
        .issue(IssueRequest::new("flip", "alice").id(TokenId::new("flip-1").unwrap()))
        .await
        .unwrap();
    let token = issued.expose_secret().to_owned();
    assert!(
        manager.verify(&token).await.is_ok(),
        "the unflipped token verifies"
    );
    (manager, store, token, key)
}

type MemoryStoreHandle = std::sync::Arc<MemoryStore>;

#[tokio::test]
async fn one_bit_flip_of_any_token_byte_fails() {
    let (manager, _, token, _) = issued().await;
    let bytes = token.as_bytes();
    let mut presented = 0;
    for i in 0..bytes.len() * 8 {
        let mut b = bytes.to_vec();
        b[i / 8] ^= 1 << (i % 8);
        // A flip of the top bit is not UTF-8 and cannot even be presented as a string.
        let Ok(flipped) = String::from_utf8(b) else {
            continue;
        };
        presented += 1;
        let r = manager.verify(&flipped).await;
        assert!(
            matches!(&r, Err(e) if e.is_invalid_token()),
            "bit {i} flipped: {r:?}"
        );
    }
    assert_eq!(presented, bytes.len() * 7);
}

/// A flip inside the secret with a re-computed (valid) checksum reaches the digest
/// comparison and fails there; inside the id, the lookup fails.
#[tokio::test]
async fn one_bit_flip_with_valid_checksum_fails_at_the_digest() {
    let (manager, _, token, _) = issued().await;
    let format = TokenFormat::new("acme_live").unwrap();
    let parsed = format.parse(&token).unwrap();
    let (id, secret) = (parsed.id().to_owned(), parsed.secret().to_owned());
    let mut reached_digest = 0;
    for i in 0..secret.len() * 8 {
        let mut s = secret.clone().into_bytes();
        s[i / 8] ^= 1 << (i % 8);
        let Ok(s) = String::from_utf8(s) else {
            continue;
        };
        let Ok(flipped) = format.format(&TokenId::new(&id).unwrap(), &s) else {
            continue; // not alphanumeric any more: not a token of this format
        };
        let r = manager.verify(flipped.expose_secret()).await;
        assert!(
            matches!(r, Err(VerifyError::Unknown)),
            "secret bit {i}: {r:?}"
        );
        reached_digest += 1;
    }
    assert!(reached_digest > secret.len(), "{reached_digest}");
    for i in 0..id.len() * 8 {
        let mut b = id.clone().into_bytes();
        b[i / 8] ^= 1 << (i % 8);
        let Some(other) = String::from_utf8(b).ok().and_then(|s| TokenId::new(s).ok()) else {
            continue;
        };
        let flipped = format.format(&other, &secret).unwrap();
        let r = manager.verify(flipped.expose_secret()).await;
        assert!(matches!(r, Err(VerifyError::Unknown)), "id bit {i}: {r:?}");
    }
}

#[tokio::test]
async fn one_bit_flip_of_the_stored_digest_fails() {
    let (manager, store, token, _) = issued().await;
    let id = TokenId::new("flip-1").unwrap();
    let original = store.get(&id).await.unwrap().unwrap();
    for i in 0..256 {
        let mut r = (*store.get(&id).await.unwrap().unwrap()).clone();
        let mut d = *original.digest.digest.as_bytes();
        d[i / 8] ^= 1 << (i % 8);
        r.digest.digest = keygate::digest::Digest::from_bytes(d);
        store.update(&r).await.unwrap();
        let got = manager.verify(&token).await;
        assert!(
            matches!(got, Err(VerifyError::Unknown)),
            "digest bit {i}: {got:?}"
        );
    }
    // Control: restoring the digest makes the token verify again.
    let mut r = (*store.get(&id).await.unwrap().unwrap()).clone();
    r.digest = original.digest;
    store.update(&r).await.unwrap();
    assert!(manager.verify(&token).await.is_ok());
}

#[tokio::test]
async fn one_bit_flip_of_the_server_key_fails() {
    let (_, store, token, key) = issued().await;
    let raw = hex::decode(key.expose_hex().as_str()).unwrap();
    for i in 0..raw.len() * 8 {
        let mut k = raw.clone();
        k[i / 8] ^= 1 << (i % 8);
        let manager = TokenManager::builder(store.clone())
            .server_key(ServerKey::from_bytes(k).unwrap())
            .prefix("acme_live")
            .build()
            .unwrap();
        let got = manager.verify(&token).await;
        assert!(
            matches!(got, Err(VerifyError::Unknown)),
            "key bit {i}: {got:?}"
        );
    }
    // Control: the unflipped key still verifies against the same store.
    let manager = TokenManager::builder(store)
        .server_key(ServerKey::from_bytes(raw).unwrap())
        .prefix("acme_live")
        .build()
        .unwrap();
    assert!(manager.verify(&token).await.is_ok());
}
