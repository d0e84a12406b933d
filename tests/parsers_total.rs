//! Property tests of every parser of untrusted input: totality (never panics, on arbitrary
//! strings and on near-valid ones) and round trips. The same properties run as cargo-fuzz
//! targets in `fuzz/` (`scripts/fuzz.sh`) for long runs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a panic is a test failure"
)]

use std::str::FromStr;

use base64::Engine as _;
use chrono::{TimeZone, Utc};
use keygate::store::Cursor;
use keygate::token::MAX_TOKEN_LEN;
use keygate::{ExpiryPreset, Scope, ScopeSet, ServerKey, TokenId, VerifyError, token::TokenFormat};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2048,
        ..ProptestConfig::default()
    }
}

fn decoded_hex(text: &str) -> String {
    ServerKey::decode(text).unwrap().expose_hex().to_string()
}

/// Near-valid token strings: right shape, arbitrary content in each part.
fn token_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "kg_[a-z0-9_-]{0,70}_[A-Za-z0-9]{0,100}",
        "[a-z_]{0,34}_[a-z0-9_-]{0,66}_[A-Za-z0-9]{20,95}",
        "kg_[ -~]{0,120}",
        "\\PC{0,300}",
        ".{0,300}",
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn token_parse_is_total(s in token_like()) {
        for format in [TokenFormat::default(), TokenFormat::new("acme_live").unwrap()] {
            match format.parse(&s) {
                Ok(p) => {
                    // Whatever parses is a well-formed token of this format.
                    prop_assert!(s.len() <= MAX_TOKEN_LEN);
                    prop_assert!(TokenId::new(p.id()).is_ok());
                    let again = format.format(&TokenId::new(p.id()).unwrap(), p.secret()).unwrap();
                    prop_assert_eq!(again.expose_secret(), s.as_str());
                }
                Err(e) => prop_assert!(matches!(e, VerifyError::Malformed | VerifyError::BadChecksum)),
            }
        }
    }

    #[test]
    fn token_format_round_trips(
        prefix in "[a-z][a-z0-9_]{0,30}[a-z0-9]",
        id in "[a-z0-9_-]{1,64}",
        secret in "[A-Za-z0-9]{22,86}",
    ) {
        let format = TokenFormat::new(&prefix).unwrap();
        let id = TokenId::new(&id).unwrap();
        let token = format.format(&id, &secret).unwrap();
        if token.expose_secret().len() <= MAX_TOKEN_LEN {
            let p = format.parse(token.expose_secret()).unwrap();
            prop_assert_eq!(p.id(), id.as_str());
            prop_assert_eq!(p.secret(), secret.as_str());
        } else {
            prop_assert!(matches!(format.parse(token.expose_secret()), Err(VerifyError::Malformed)));
        }
    }

    #[test]
    fn token_parse_rejects_over_long_input(extra in 1usize..4096, c in "[A-Za-z0-9_]") {
        let s = c.repeat(MAX_TOKEN_LEN + extra);
        prop_assert!(matches!(TokenFormat::default().parse(&s), Err(VerifyError::Malformed)));
    }

    #[test]
    fn scope_parse_is_total(s in prop_oneof!["[a-z0-9_.*:-]{0,140}", "\\PC{0,200}"]) {
        if let Ok(scope) = Scope::new(&s) {
            prop_assert_eq!(scope.as_str(), s.as_str());
            prop_assert_eq!(Scope::from_str(&format!("{scope}")).unwrap(), scope.clone());
            prop_assert!(scope.grants(&scope) || scope.is_wildcard());
            prop_assert!(Scope::admin().grants(&scope));
        }
    }

    #[test]
    fn scope_set_parse_is_total(v in prop::collection::vec("[a-z:*]{0,12}|\\PC{0,20}", 0..12)) {
        if let Ok(set) = ScopeSet::parse(&v) {
            for s in &v {
                let scope = Scope::new(s).unwrap();
                prop_assert!(set.grants(&scope) || scope.is_wildcard());
            }
        } else {
            prop_assert!(v.iter().any(|s| Scope::new(s).is_err()));
        }
    }

    #[test]
    fn server_key_decode_is_total(s in prop_oneof!["[0-9a-fA-F]{0,200}", "[A-Za-z0-9+/=_-]{0,200}", "\\PC{0,200}"]) {
        if let Ok(key) = ServerKey::decode(&s) {
            prop_assert!(key.expose_hex().len() >= 64);
        }
    }

    #[test]
    fn server_key_decode_round_trips(bytes in prop::collection::vec(any::<u8>(), 32..128)) {
        let hex = hex::encode(&bytes);
        prop_assert_eq!(decoded_hex(&hex), hex.as_str());
        let padded = format!("  {}\n", hex::encode_upper(&bytes));
        prop_assert_eq!(decoded_hex(&padded), hex.as_str());
        for engine in [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            let b64 = engine.encode(&bytes);
            // A base64 text made only of hex digits is read as hex (documented order).
            prop_assume!(!(b64.len() % 2 == 0 && b64.bytes().all(|b| b.is_ascii_hexdigit())));
            prop_assert_eq!(decoded_hex(&b64), hex.as_str());
        }
        prop_assert!(ServerKey::decode(&hex[..62]).is_err());
    }

    #[test]
    fn cursor_parse_is_total(s in prop_oneof!["[-+]?[0-9]{0,22}\\.[a-z0-9_-]{0,70}", "\\PC{0,120}"]) {
        if let Ok(c) = Cursor::from_str(&s) {
            let again = Cursor::from_str(&c.to_string()).unwrap();
            prop_assert_eq!(again, c);
        }
    }

    #[test]
    fn cursor_round_trips(micros in -8_000_000_000_000_000i64..8_000_000_000_000_000, id in "[a-z0-9_-]{1,64}") {
        let at = Utc.timestamp_micros(micros).single().unwrap();
        let c = Cursor { created_at: at, id: TokenId::new(&id).unwrap() };
        prop_assert_eq!(Cursor::from_str(&c.to_string()).unwrap(), c);
    }

    #[test]
    fn expiry_preset_parse_is_total(s in prop_oneof![
        "[0-9]{0,22}[dhms]",
        "[+-]?[0-9]{4,6}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?(Z|[+-][0-9]{2}:[0-9]{2})",
        "\\PC{0,80}",
    ]) {
        if let Ok(p) = ExpiryPreset::from_str(&s) {
            let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
            let again = ExpiryPreset::from_str(&p.to_string()).unwrap();
            prop_assert_eq!(again.resolve(now).ok(), p.resolve(now).ok());
        }
    }
}
