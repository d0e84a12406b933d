//! The keyed digest a store keeps instead of a secret, and the server keys behind it.
//!
//! `digest = HMAC-SHA256(server_key[version], id ‖ 0x00 ‖ secret)`, where `secret` is the
//! secret characters of the token string (without prefix and checksum). Stores keep the
//! 32-byte digest and the key version, never the secret.
//!
//! The server key ("pepper") comes from the application (environment, vault) and is at
//! least 32 bytes. A [`Keyring`] holds the current key and older ones: new digests use the
//! current key, older digests still verify, and a successful verification under an old key
//! re-hashes the record under the current one.

use std::collections::BTreeMap;
use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use crate::error::Error;

pub(crate) mod server_key;

pub(crate) use server_key::ServerKey;

/// Minimum server key length in bytes.
pub const MIN_SERVER_KEY_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// What a server key's [fingerprint](Keyring::fingerprint) is the HMAC of.
pub const FINGERPRINT_LABEL: &[u8] = b"keygate server-key fingerprint v1";

/// A 32-byte token digest.
///
/// Its `PartialEq` is constant time by construction (`subtle`, on fixed-size arrays), so
/// nobody can reintroduce a timing leak with `==`. `Debug` is redacted.
#[derive(Clone, Copy)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Wraps 32 digest bytes (as read back from a store).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Digest(bytes)
    }

    /// Wraps a slice read back from a store; `None` unless it is exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Digest)
    }

    /// The digest bytes, for stores to persist.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl ConstantTimeEq for Digest {
    fn ct_eq(&self, other: &Self) -> Choice {
        // Fold the arrays into one u64 with XOR/OR (no data-dependent branches), then let
        // `subtle` compare that word with zero.
        let mut acc = 0u64;
        for (a, b) in self.0.chunks_exact(8).zip(other.0.chunks_exact(8)) {
            let mut wa = [0u8; 8];
            let mut wb = [0u8; 8];
            wa.copy_from_slice(a);
            wb.copy_from_slice(b);
            acc |= u64::from_ne_bytes(wa) ^ u64::from_ne_bytes(wb);
        }
        acc.ct_eq(&0)
    }
}

impl PartialEq for Digest {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for Digest {}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Digest(<redacted>)")
    }
}

/// A digest together with the version of the server key that produced it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct StoredDigest {
    /// The digest.
    pub digest: Digest,
    /// The [`Keyring`] version of the key used.
    pub key_version: u32,
}

/// The server keys: one current key for new digests, and older keys that still verify.
///
/// `Debug` lists versions only.
#[derive(Clone)]
pub struct Keyring {
    current: u32,
    keys: BTreeMap<u32, KeyState>,
}

#[derive(Clone)]
struct KeyState {
    // Kept so the raw key is zeroized when the keyring drops.
    _key: ServerKey,
    // Pre-keyed HMAC state, cloned per digest (saves the key schedule on every verify).
    mac: HmacSha256,
}

impl Keyring {
    /// A keyring whose current key is `key`, at `version`.
    pub fn new(version: u32, key: ServerKey) -> Self {
        let mut keys = BTreeMap::new();
        keys.insert(version, KeyState::new(key));
        Keyring {
            current: version,
            keys,
        }
    }

    /// Adds an older key that still verifies existing digests. Refuses a version that is
    /// already present or newer than the current one.
    pub fn with_previous(mut self, version: u32, key: ServerKey) -> Result<Self, Error> {
        if version >= self.current || self.keys.contains_key(&version) {
            return Err(Error::InvalidConfig(
                "a previous key version must be unique and lower than the current one",
            ));
        }
        self.keys.insert(version, KeyState::new(key));
        Ok(self)
    }

    /// Makes `key` the current key at `version` (greater than every existing version) and
    /// keeps the old keys for verification: the way to rotate the server key.
    pub fn rotate_to(mut self, version: u32, key: ServerKey) -> Result<Self, Error> {
        if version <= self.current {
            return Err(Error::InvalidConfig(
                "a new current key version must be greater than the current one",
            ));
        }
        self.keys.insert(version, KeyState::new(key));
        self.current = version;
        Ok(self)
    }

    /// The version of the current key.
    pub fn current_version(&self) -> u32 {
        self.current
    }

    /// All versions held, ascending.
    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.keys().copied()
    }

    /// All versions held, the current (newest) first.
    pub(crate) fn versions_newest_first(&self) -> impl Iterator<Item = u32> + '_ {
        // The current version is the highest: `with_previous` only adds lower ones and
        // `rotate_to` only higher ones.
        self.keys.keys().rev().copied()
    }

    /// Computes the digest of `id` and `secret` under the key `version`; `None` if that
    /// version is not in the keyring.
    pub fn digest(&self, version: u32, id: &str, secret: &str) -> Option<Digest> {
        let state = self.keys.get(&version)?;
        let mut mac = state.mac.clone();
        mac.update(id.as_bytes());
        mac.update(&[0]);
        mac.update(secret.as_bytes());
        Some(Digest(mac.finalize().into_bytes().into()))
    }

    /// The fingerprint of the key `version`: `HMAC-SHA256(key, FINGERPRINT_LABEL)`; `None`
    /// if that version is not in the keyring.
    ///
    /// A store keeps it (see
    /// [`TokenStore::claim_key_fingerprint`](crate::store::TokenStore::claim_key_fingerprint))
    /// so that a service started with another key for a version says so at startup
    /// ([`TokenManager::check_server_keys`](crate::TokenManager::check_server_keys)). It
    /// tells keys apart without revealing them, and it is never a token's digest: the label
    /// holds a space, which no token id holds.
    pub fn fingerprint(&self, version: u32) -> Option<Digest> {
        let state = self.keys.get(&version)?;
        let mut mac = state.mac.clone();
        mac.update(FINGERPRINT_LABEL);
        Some(Digest(mac.finalize().into_bytes().into()))
    }

    /// Computes the digest under the current key.
    pub fn digest_current(&self, id: &str, secret: &str) -> StoredDigest {
        let version = self.current;
        // The current version is always present: it is inserted by every constructor.
        let digest = self
            .digest(version, id, secret)
            .unwrap_or(Digest([0u8; 32]));
        StoredDigest {
            digest,
            key_version: version,
        }
    }
}

impl KeyState {
    fn new(key: ServerKey) -> Self {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for HMAC.
        let mac = match HmacSha256::new_from_slice(key.as_bytes()) {
            Ok(mac) => mac,
            Err(_) => unreachable_hmac(),
        };
        KeyState { _key: key, mac }
    }
}

#[cold]
fn unreachable_hmac() -> HmacSha256 {
    // `Hmac::new_from_slice` only fails for fixed-key-size MACs; HMAC has none. Fall back to
    // an all-zero key rather than panic, keeping the function total.
    <HmacSha256 as Mac>::new(&Default::default())
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("versions", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Computes `HMAC-SHA256(key, message)`: the primitive behind every digest, exposed for
/// known-answer tests (RFC 4231).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable_hmac(),
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// A digest's serde form is 64 lower-case hex characters: a keyed hash, useless without the
/// server key, which is what a store keeps (never in `Debug`).
#[cfg(feature = "serde")]
mod serde_impls {
    use super::Digest;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    impl Serialize for Digest {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&hex::encode(self.as_bytes()))
        }
    }
    impl<'de> Deserialize<'de> for Digest {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            hex::decode(&*s)
                .ok()
                .and_then(|b| Digest::from_slice(&b))
                .ok_or_else(|| serde::de::Error::custom("expected 64 hex characters"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn short_keys_refused() {
        assert!(ServerKey::from_bytes(vec![1u8; 31]).is_err());
        assert!(ServerKey::from_bytes(vec![1u8; 32]).is_ok());
        assert!(ServerKey::decode(&"ab".repeat(31)).is_err());
        assert!(ServerKey::decode(&"ab".repeat(32)).is_ok());
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(ServerKey::decode(&b64).unwrap().as_bytes(), &[7u8; 32]);
        assert!(ServerKey::decode("not a key!").is_err());
    }

    #[test]
    fn digest_equality() {
        let a = Digest([1; 32]);
        let mut bytes = [1; 32];
        assert_eq!(a, Digest(bytes));
        for i in 0..32 {
            bytes = [1; 32];
            bytes[i] ^= 0x80;
            assert_ne!(a, Digest(bytes), "byte {i}");
        }
    }

    #[test]
    fn keyring_versions() {
        let k = Keyring::new(2, ServerKey::from_bytes([2u8; 32]).unwrap())
            .with_previous(1, ServerKey::from_bytes([1u8; 32]).unwrap())
            .unwrap();
        assert_eq!(k.current_version(), 2);
        assert!(k.digest(1, "a", "b").is_some());
        assert!(k.digest(3, "a", "b").is_none());
        assert_ne!(k.digest(1, "a", "b"), k.digest(2, "a", "b"));
        assert!(k.clone().with_previous(3, ServerKey::generate()).is_err());
        let k = k.rotate_to(3, ServerKey::generate()).unwrap();
        assert_eq!(k.current_version(), 3);
    }
}
