//! Known-answer vectors that pin the token string format and the digest, so that a refactor
//! can never invalidate tokens already issued. The expected values were cross-checked with an
//! independent implementation (Python's zlib.crc32 and hmac).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

use std::sync::Arc;

use keygate::digest::{StoredDigest, hmac_sha256};
use keygate::{
    Expiry, MemoryStore, Projects, ScopeSet, ServerKey, TokenId, TokenManager, TokenRecord,
    TokenStatus, digest::Keyring, store::TokenStore, token::TokenFormat,
};

const ID: &str = "ci-deploy_01";
const SECRET: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg";
const TOKEN: &str = "kg_ci-deploy_01_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg4MbJDs";
const DIGEST_HEX: &str = "821746c299420fc7abc62ef0dbab1008951b8cb98093abf2ea66db9014401bdb";

fn key_bytes() -> Vec<u8> {
    (0u8..32).collect()
}

#[test]
fn token_string_format() {
    let f = TokenFormat::new("kg").unwrap();
    let t = f.format(&TokenId::new(ID).unwrap(), SECRET).unwrap();
    assert_eq!(t.expose_secret(), TOKEN);

    let f = TokenFormat::new("acme_live").unwrap();
    let t = f
        .format(&TokenId::new("a").unwrap(), "zzzzzzzzzzzzzzzzzzzzzz")
        .unwrap();
    assert_eq!(
        t.expose_secret(),
        "acme_live_a_zzzzzzzzzzzzzzzzzzzzzz2RENgd"
    );
}

#[test]
fn token_string_parses_back() {
    let f = TokenFormat::new("kg").unwrap();
    let p = f.parse(TOKEN).unwrap();
    assert_eq!((p.id(), p.secret()), (ID, SECRET));
}

#[test]
fn digest_vector() {
    let keyring = Keyring::new(1, ServerKey::from_bytes(key_bytes()).unwrap());
    let d = keyring.digest(1, ID, SECRET).unwrap();
    assert_eq!(hex::encode(d.as_bytes()), DIGEST_HEX);
    // The digest is HMAC-SHA256(key, id || 0x00 || secret).
    let mut msg = ID.as_bytes().to_vec();
    msg.push(0);
    msg.extend_from_slice(SECRET.as_bytes());
    assert_eq!(hex::encode(hmac_sha256(&key_bytes(), &msg)), DIGEST_HEX);
}

/// A record written by an earlier version (only the pinned digest) still verifies.
#[tokio::test]
async fn pinned_record_verifies() {
    let store = Arc::new(MemoryStore::new());
    let now = chrono::Utc::now();
    let mut digest = [0u8; 32];
    hex::decode_to_slice(DIGEST_HEX, &mut digest).unwrap();
    let record = TokenRecord {
        id: TokenId::new(ID).unwrap(),
        name: "pinned".into(),
        description: String::new(),
        owner: "ci".into(),
        created_by: "system".into(),
        created_at: now,
        updated_at: now,
        secret_issued_at: now,
        expiry: Expiry::Never,
        status: TokenStatus::Active,
        scopes: ScopeSet::parse(["projects:read"]).unwrap(),
        projects: Projects::All,
        metadata: Default::default(),
        digest: StoredDigest {
            digest: keygate::digest::Digest::from_bytes(digest),
            key_version: 1,
        },
        allowed_ips: Vec::new(),
        retired: Vec::new(),
        expiry_notice: None,
        last_used_at: None,
        version: 1,
    };
    store.insert(&record).await.unwrap();
    let manager = TokenManager::builder(store)
        .server_key(ServerKey::from_bytes(key_bytes()).unwrap())
        .build()
        .unwrap();
    let v = manager.verify(TOKEN).await.unwrap();
    assert_eq!(v.id().as_str(), ID);
}
