//! Console sessions: a random id in a `__Host-` cookie, the state on the server.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rand_core::{OsRng, RngCore};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::token::TokenId;

/// The session cookie. `__Host-`: Secure, `Path=/`, no `Domain`, so no other host or path
/// can set or shadow it.
pub(super) const COOKIE: &str = "__Host-keygate-console";

/// A session: its CSRF token, the pasted token of the default sign-in, and a token to show
/// once.
pub(super) struct Session {
    pub(super) csrf: String,
    pub(super) token: Option<Zeroizing<String>>,
    pub(super) shown_once: Option<(TokenId, Zeroizing<String>)>,
    pub(super) expires: DateTime<Utc>,
}

/// Sessions by the SHA-256 of their id (a lookup never compares ids byte by byte).
pub(super) struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
    max: usize,
}

fn random_b64(bytes: usize) -> String {
    use base64::Engine as _;
    let mut buf = Zeroizing::new(vec![0u8; bytes]);
    OsRng.fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&*buf)
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    pub(super) fn new(max: usize) -> Self {
        Sessions {
            map: Mutex::new(HashMap::new()),
            max: max.max(16),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session; returns its id (for the cookie) and its CSRF token.
    pub(super) fn create(&self, expires: DateTime<Utc>, now: DateTime<Utc>) -> (String, String) {
        let id = random_b64(32);
        let csrf = random_b64(32);
        let mut map = self.map();
        if map.len() >= self.max {
            map.retain(|_, s| s.expires > now);
        }
        if map.len() >= self.max {
            // Still full: drop the sessions closest to their end (anonymous ones first).
            let mut ends: Vec<([u8; 32], bool, DateTime<Utc>)> = map
                .iter()
                .map(|(k, s)| (*k, s.token.is_some(), s.expires))
                .collect();
            ends.sort_by_key(|(_, signed_in, end)| (*signed_in, *end));
            for (k, _, _) in ends.into_iter().take(self.max / 4) {
                map.remove(&k);
            }
        }
        map.insert(
            key(&id),
            Session {
                csrf: csrf.clone(),
                token: None,
                shown_once: None,
                expires,
            },
        );
        (id, csrf)
    }

    /// Runs `f` on the live session `id`; `None` if unknown or over.
    pub(super) fn with<R>(
        &self,
        id: &str,
        now: DateTime<Utc>,
        f: impl FnOnce(&mut Session) -> R,
    ) -> Option<R> {
        let mut map = self.map();
        let k = key(id);
        match map.get_mut(&k) {
            Some(s) if s.expires > now => Some(f(s)),
            Some(_) => {
                map.remove(&k);
                None
            }
            None => None,
        }
    }

    pub(super) fn remove(&self, id: &str) {
        self.map().remove(&key(id));
    }
}

/// Constant-time equality of a submitted CSRF token with the session's.
pub(super) fn csrf_matches(expected: &str, given: &str) -> bool {
    let a = Sha256::digest(expected.as_bytes());
    let b = Sha256::digest(given.as_bytes());
    bool::from(a.ct_eq(&b)) && !expected.is_empty()
}

/// The value of cookie `name` in a `Cookie` header.
pub(super) fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The `Set-Cookie` value for session `id`, living until `expires` (`None`: delete it).
pub(super) fn set_cookie(id: Option<&str>, expires: DateTime<Utc>, now: DateTime<Utc>) -> String {
    match id {
        Some(id) => format!(
            "{COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
            (expires - now).num_seconds().max(1)
        ),
        None => format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"),
    }
}
