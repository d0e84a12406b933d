//! Token ids, the shown-once secret, and the token string format.
//!
//! A token string is `{prefix}_{id}_{secret}{checksum}`:
//!
//! - `prefix` names the issuer and kind (`kg`, `acme_live`), so secret scanners can find
//!   leaked tokens;
//! - `id` names the token in the open: management operations address it by id ([`TokenId`]);
//! - `secret` is 43 characters from `[0-9A-Za-z]` drawn uniformly from the OS CSPRNG by
//!   default (256 bits; configurable, never below 128 bits);
//! - `checksum` is the CRC32 of everything before it, base62, six characters, zero padded.
//!
//! Every character is in RFC 6750's `b64token` set. The checksum catches typos before any
//! store access; it is not an authenticity check.

use std::fmt;

use rand_core::{OsRng, RngCore};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, VerifyError};

pub(crate) mod id;

pub(crate) use id::TokenId;

/// Longest token string accepted by the parser; longer input is rejected before any work.
pub const MAX_TOKEN_LEN: usize = 256;
/// Longest token id.
pub const MAX_ID_LEN: usize = 64;
/// Longest prefix.
pub const MAX_PREFIX_LEN: usize = 32;
/// Number of checksum characters.
pub const CHECKSUM_LEN: usize = 6;
/// Fewest secret characters accepted (128 bits of entropy).
pub const MIN_SECRET_CHARS: usize = 22;
/// Most secret characters accepted (512 bits of entropy).
pub const MAX_SECRET_CHARS: usize = 86;
/// Secret characters of a default token (256 bits of entropy).
pub const DEFAULT_SECRET_CHARS: usize = 43;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

pub(crate) fn validate_id_chars(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("must not be empty");
    }
    if id.len() > MAX_ID_LEN {
        return Err("must be at most 64 characters");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err("only lower-case letters, digits, `-` and `_` are allowed");
    }
    Ok(())
}

/// The plaintext token, as returned once by `issue` and `rotate`.
///
/// It zeroizes its memory on drop, prints as `TokenSecret(<redacted>)`, has no `Display`,
/// no `Clone` and no serde support. Read it with [`expose_secret`](Self::expose_secret),
/// show it to the user once, and drop it.
pub struct TokenSecret(Zeroizing<String>);

impl TokenSecret {
    /// The full token string (`{prefix}_{id}_{secret}{checksum}`). Handle with care: this is
    /// the credential.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(<redacted>)")
    }
}

/// The token string format: the issuer prefix and the secret length.
///
/// Parsing accepts any secret length from 22 to 86 characters, so changing
/// [`secret_chars`](Self::with_secret_chars) never invalidates tokens already issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenFormat {
    prefix: Box<str>,
    secret_chars: usize,
}

impl Default for TokenFormat {
    fn default() -> Self {
        TokenFormat {
            prefix: "kg".into(),
            secret_chars: DEFAULT_SECRET_CHARS,
        }
    }
}

/// The parts of a parsed token string. Borrowed from the input; holds no copy of the secret.
#[derive(Clone, Copy)]
pub struct ParsedToken<'a> {
    id: &'a str,
    secret: &'a str,
}

impl<'a> ParsedToken<'a> {
    /// The token id (already validated).
    pub fn id(&self) -> &'a str {
        self.id
    }

    /// The secret characters (without the checksum).
    pub fn secret(&self) -> &'a str {
        self.secret
    }
}

impl fmt::Debug for ParsedToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedToken")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl TokenFormat {
    /// A format with the given prefix: 1 to 32 characters from `a-z`, `0-9` and `_`,
    /// starting with a letter and not ending with `_`.
    pub fn new(prefix: &str) -> Result<Self, Error> {
        validate_prefix(prefix).map_err(Error::InvalidPrefix)?;
        Ok(TokenFormat {
            prefix: prefix.into(),
            secret_chars: DEFAULT_SECRET_CHARS,
        })
    }

    /// Sets the number of secret characters for new tokens (22..=86; each carries
    /// log2(62) ≈ 5.95 bits, so 22 characters are 130 bits). Fewer than 22 is refused.
    pub fn with_secret_chars(mut self, chars: usize) -> Result<Self, Error> {
        if !(MIN_SECRET_CHARS..=MAX_SECRET_CHARS).contains(&chars) {
            return Err(Error::InvalidConfig(
                "secret length must be 22..=86 characters (128 to 512 bits)",
            ));
        }
        self.secret_chars = chars;
        Ok(self)
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Secret characters of newly issued tokens.
    pub fn secret_chars(&self) -> usize {
        self.secret_chars
    }

    /// Builds a token string from an id and a secret. Used by issuing; exposed for
    /// known-answer tests of the wire format.
    pub fn format(&self, id: &TokenId, secret: &str) -> Result<TokenSecret, Error> {
        if !(MIN_SECRET_CHARS..=MAX_SECRET_CHARS).contains(&secret.len())
            || !secret.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(Error::InvalidConfig(
                "secret must be 22..=86 characters from [0-9A-Za-z]",
            ));
        }
        let mut s = String::with_capacity(
            self.prefix.len() + id.as_str().len() + secret.len() + CHECKSUM_LEN + 2,
        );
        s.push_str(&self.prefix);
        s.push('_');
        s.push_str(id.as_str());
        s.push('_');
        s.push_str(secret);
        let crc = crc32fast::hash(s.as_bytes());
        push_checksum(&mut s, crc);
        Ok(TokenSecret(Zeroizing::new(s)))
    }

    /// Generates a new secret from `rng` and formats the token string for `id`. Returns the
    /// token string and its secret characters (to digest, without parsing the string back).
    pub(crate) fn generate(
        &self,
        id: &TokenId,
        rng: &mut TokenRandomness,
    ) -> Result<(TokenSecret, Zeroizing<String>), Error> {
        let mut secret = Zeroizing::new(String::with_capacity(self.secret_chars));
        fill_random_chars(&mut secret, ALPHABET, self.secret_chars, rng);
        let token = self.format(id, &secret)?;
        Ok((token, secret))
    }

    /// Parses a presented token string. Total: never panics, rejects input longer than
    /// [`MAX_TOKEN_LEN`] before any other work, and checks the checksum.
    pub fn parse<'a>(&self, token: &'a str) -> Result<ParsedToken<'a>, VerifyError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::Malformed);
        }
        let rest = token
            .strip_prefix(&*self.prefix)
            .and_then(|r| r.strip_prefix('_'))
            .ok_or(VerifyError::Malformed)?;
        let (id, tail) = rest.rsplit_once('_').ok_or(VerifyError::Malformed)?;
        validate_id_chars(id).map_err(|_| VerifyError::Malformed)?;
        if tail.len() < MIN_SECRET_CHARS + CHECKSUM_LEN
            || tail.len() > MAX_SECRET_CHARS + CHECKSUM_LEN
            || !tail.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(VerifyError::Malformed);
        }
        // All of `tail` is ASCII, so this split is on a char boundary.
        let split = tail.len() - CHECKSUM_LEN;
        let (secret, checksum) = tail.split_at(split);
        let body = &token[..token.len() - CHECKSUM_LEN];
        // Six base62 characters name a unique number below 62^6, so comparing the decoded
        // number with the CRC is the same as comparing the zero-padded strings.
        let presented = base62::decode(checksum).map_err(|_| VerifyError::Malformed)?;
        if presented != u128::from(crc32fast::hash(body.as_bytes())) {
            return Err(VerifyError::BadChecksum);
        }
        Ok(ParsedToken { id, secret })
    }
}

fn validate_prefix(prefix: &str) -> Result<(), &'static str> {
    let bytes = prefix.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_PREFIX_LEN {
        return Err("must be 1 to 32 characters");
    }
    if !bytes[0].is_ascii_lowercase() {
        return Err("must start with a lower-case letter");
    }
    if bytes.last() == Some(&b'_') {
        return Err("must not end with `_`");
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
    {
        return Err("only lower-case letters, digits and `_` are allowed");
    }
    Ok(())
}

/// Appends the six-character, zero-padded base62 form of a CRC32.
fn push_checksum(out: &mut String, crc: u32) {
    let mut buf = String::with_capacity(CHECKSUM_LEN);
    base62::encode_buf(crc, &mut buf);
    for _ in buf.len()..CHECKSUM_LEN {
        out.push('0');
    }
    out.push_str(&buf);
}

/// Appends `n` characters drawn uniformly from `alphabet` by rejection sampling of OS random
/// bytes (no modulo bias).
/// The OS randomness of one issued token (its id and its secret), fetched from the OS
/// CSPRNG in one call of [`TokenRandomness::BYTES`] bytes at first use, served in order, and
/// fetched again only if a long secret uses it up. Zeroized on drop; never reused for
/// another token.
pub(crate) struct TokenRandomness {
    buf: Zeroizing<[u8; TokenRandomness::BYTES]>,
    next: usize,
    /// Calls of the OS CSPRNG so far.
    fetches: u32,
}

impl TokenRandomness {
    /// Bytes per fetch: what a generated id (one 64-byte draw of [`fill_random_chars`]) and
    /// a default secret (one more) take.
    pub(crate) const BYTES: usize = 128;

    pub(crate) fn new() -> Self {
        TokenRandomness {
            buf: Zeroizing::new([0; Self::BYTES]),
            next: Self::BYTES,
            fetches: 0,
        }
    }
}

impl RngCore for TokenRandomness {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }

    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let mut filled = 0;
        while filled < dest.len() {
            if self.next == Self::BYTES {
                OsRng.fill_bytes(&mut self.buf[..]);
                self.next = 0;
                self.fetches += 1;
            }
            let n = (dest.len() - filled).min(Self::BYTES - self.next);
            dest[filled..filled + n].copy_from_slice(&self.buf[self.next..self.next + n]);
            // Served bytes are not kept.
            self.buf[self.next..self.next + n].zeroize();
            self.next += n;
            filled += n;
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

fn fill_random_chars(out: &mut String, alphabet: &[u8], n: usize, rng: &mut impl RngCore) {
    // Largest multiple of the alphabet size that fits in a byte.
    let limit = (256 / alphabet.len() * alphabet.len()) as u16;
    let mut buf = Zeroizing::new([0u8; 64]);
    let mut pushed = 0;
    while pushed < n {
        rng.fill_bytes(&mut buf[..]);
        for &b in buf.iter() {
            if u16::from(b) < limit {
                out.push(char::from(alphabet[usize::from(b) % alphabet.len()]));
                pushed += 1;
                if pushed == n {
                    break;
                }
            }
        }
    }
    buf.zeroize();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A generated id and a default secret take one call of the OS CSPRNG; longer draws
    /// fetch again; served bytes are zeroized in the buffer.
    #[test]
    fn one_fetch_of_randomness_per_default_token() {
        let f = TokenFormat::default();
        let mut rng = TokenRandomness::new();
        let id = TokenId::generate_with(&mut rng);
        let (t, secret) = f.generate(&id, &mut rng).unwrap();
        assert_eq!(rng.fetches, 1);
        assert_eq!(f.parse(t.expose_secret()).unwrap().secret(), &**secret);
        assert!(rng.buf[..rng.next].iter().all(|&b| b == 0));

        let mut rng = TokenRandomness::new();
        let mut out = [0u8; 300];
        rng.fill_bytes(&mut out[..100]);
        rng.fill_bytes(&mut out[100..]);
        assert_eq!(rng.fetches, 3);
        assert!(out.chunks(32).all(|c| c.iter().any(|&b| b != 0)));
    }

    #[test]
    fn round_trip() {
        let f = TokenFormat::new("acme_live").unwrap();
        let id = TokenId::new("ci_bot-1").unwrap();
        let (t, _) = f.generate(&id, &mut TokenRandomness::new()).unwrap();
        let p = f.parse(t.expose_secret()).unwrap();
        assert_eq!(p.id(), "ci_bot-1");
        assert_eq!(p.secret().len(), DEFAULT_SECRET_CHARS);
    }

    #[test]
    fn prefix_rules() {
        assert!(TokenFormat::new("kg").is_ok());
        assert!(TokenFormat::new("acme_live").is_ok());
        for bad in ["", "Kg", "1kg", "kg_", "k-g", &"a".repeat(33)] {
            assert!(TokenFormat::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secret_length_floor() {
        assert!(TokenFormat::default().with_secret_chars(21).is_err());
        assert!(TokenFormat::default().with_secret_chars(22).is_ok());
        assert!(TokenFormat::default().with_secret_chars(87).is_err());
    }

    #[test]
    fn over_long_input_rejected() {
        let f = TokenFormat::default();
        assert!(matches!(
            f.parse(&"kg_a_".repeat(100)),
            Err(VerifyError::Malformed)
        ));
    }

    #[test]
    fn random_chars_are_from_alphabet() {
        let mut s = String::new();
        fill_random_chars(&mut s, ALPHABET, 1000, &mut OsRng);
        assert_eq!(s.len(), 1000);
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()));
        let id = TokenId::generate();
        assert!(TokenId::new(id.as_str()).is_ok());
    }
}
