//! [`ServerKey`], exported at the crate root.

use std::fmt;

use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::MIN_SERVER_KEY_LEN;
use crate::error::Error;

/// A server key ("pepper"): at least 32 bytes of secret key material.
///
/// Zeroized on drop; `Debug` prints only its length.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ServerKey(Vec<u8>);

impl ServerKey {
    /// Takes raw key bytes; fewer than 32 bytes is refused.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Result<Self, Error> {
        let bytes = Zeroizing::new(bytes.into());
        if bytes.len() < MIN_SERVER_KEY_LEN {
            return Err(Error::InvalidServerKey("must be at least 32 bytes"));
        }
        Ok(ServerKey(bytes.to_vec()))
    }

    /// Decodes a key given as hex (64 or more hex digits) or as standard/URL-safe base64
    /// (padded or not), as found in an environment variable. Surrounding whitespace is
    /// ignored.
    pub fn decode(text: &str) -> Result<Self, Error> {
        let text = text.trim();
        if text.len() % 2 == 0 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            let bytes =
                Zeroizing::new(hex::decode(text).map_err(|_| Error::InvalidServerKey("bad hex"))?);
            return Self::from_bytes(bytes.to_vec());
        }
        let engines = [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        for engine in engines {
            if let Ok(bytes) = engine.decode(text) {
                let bytes = Zeroizing::new(bytes);
                return Self::from_bytes(bytes.to_vec());
            }
        }
        Err(Error::InvalidServerKey(
            "expected hex or base64 encoding of at least 32 bytes",
        ))
    }

    /// A fresh 32-byte key from the OS CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; MIN_SERVER_KEY_LEN];
        OsRng.fill_bytes(&mut bytes);
        ServerKey(bytes)
    }

    /// The key as lower-case hex, e.g. to print once for an operator to store. Handle with
    /// care: this is key material.
    pub fn expose_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(&self.0))
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerKey(<redacted {} bytes>)", self.0.len())
    }
}
