//! Leaked-token reports: revoking tokens that someone found in the open.

use subtle::{Choice, ConstantTimeEq};

use super::TokenManager;
use crate::audit::AuditKind;
use crate::error::{Error, StoreError};
use crate::record::{TokenRecord, TokenStatus};
use crate::token::TokenId;

/// Most tokens one [`TokenManager::report_leaked`] call takes.
pub const MAX_LEAK_REPORT_TOKENS: usize = 100;

impl TokenManager {
    /// Revokes the tokens among `tokens` (plaintext token strings someone found exposed,
    /// e.g. through a secret scanner) that could still authenticate, and returns their
    /// records as revoked, for the application to tell their owners.
    ///
    /// A reported string revokes its token when it parses under this manager's format, its
    /// checksum holds, and its secret is the token's current secret or a retired secret whose
    /// rotation grace has not ended (so it would be accepted now, or once the token were
    /// enabled again or its expiry moved): such a token is revoked whatever its status or
    /// expiry (a disabled or expired token can be brought back). A retired secret past its
    /// grace revokes nothing (it can never authenticate again, and whoever once held it
    /// must not be able to kill the token it was rotated out of). Malformed strings, unknown
    /// tokens, wrong secrets and already revoked tokens change nothing and are not reported
    /// back: the result holds only what this call revoked. The last active `*` token is
    /// revoked too: a leaked admin token must stop working.
    ///
    /// Each revocation is audited as `authn_token_revoked` and then
    /// [`AuditKind::LeakReported`] (actor `leak-report`). No reported string, secret or
    /// digest is ever logged or put into an error. At most [`MAX_LEAK_REPORT_TOKENS`]
    /// strings per call ([`Error::TooLarge`] otherwise, changing nothing). A store failure
    /// stops the call with [`Error::Store`]; the tokens revoked before it stay revoked.
    pub async fn report_leaked<S: AsRef<str>>(
        &self,
        tokens: &[S],
    ) -> Result<Vec<TokenRecord>, Error> {
        if tokens.len() > MAX_LEAK_REPORT_TOKENS {
            return Err(Error::TooLarge {
                field: "tokens",
                max: MAX_LEAK_REPORT_TOKENS,
                unit: "tokens",
            });
        }
        let mut revoked: Vec<TokenRecord> = Vec::new();
        for token in tokens {
            let Some(id) = self.leaked_token_id(token.as_ref()).await? else {
                continue;
            };
            if revoked.iter().any(|r| r.id == id) {
                continue;
            }
            // Revoked even if it is the last active `*` token.
            let unguarded = self.allowing_no_admin();
            match unguarded
                .set_status_report(None, &id, TokenStatus::Revoked)
                .await
            {
                Ok((record, true)) => {
                    let mut event =
                        crate::audit::AuditEvent::new(AuditKind::LeakReported, self.now())
                            .token(&record.id)
                            .owner(&record.owner);
                    event.actor = Some("leak-report".to_owned());
                    self.audit(event);
                    revoked.push(record);
                }
                // Revoked meanwhile, or deleted: nothing left to do.
                Ok((_, false)) | Err(Error::NotFound(_) | Error::InvalidState { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(revoked)
    }

    /// The id of the token `token` is, if its secret could still authenticate (see
    /// [`report_leaked`](Self::report_leaked)) and the token is not revoked. Reads the
    /// store, never the cache.
    async fn leaked_token_id(&self, token: &str) -> Result<Option<TokenId>, StoreError> {
        let Ok(parsed) = self.inner.format.parse(token) else {
            return Ok(None);
        };
        let id = TokenId::from_parsed(&parsed);
        let now = self.now();
        for version in self.inner.keyring.versions_newest_first() {
            let Some(digest) = self
                .inner
                .keyring
                .digest(version, id.as_str(), parsed.secret())
            else {
                continue;
            };
            let Some(record) = self.inner.store.find_by_digest(&digest).await? else {
                continue;
            };
            let key = |v: u32| Choice::from(u8::from(v == version));
            let current =
                bool::from(digest.ct_eq(&record.digest.digest) & key(record.digest.key_version));
            let in_grace = record.retired.iter().any(|p| {
                bool::from(digest.ct_eq(&p.digest.digest) & key(p.digest.key_version))
                    && now < p.valid_until
            });
            if record.id == id && (current || in_grace) && record.status != TokenStatus::Revoked {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }
}
