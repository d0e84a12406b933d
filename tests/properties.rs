//! Property tests of the token format and the scope logic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

use keygate::{Scope, ScopeSet, TokenId, VerifyError, token::TokenFormat};
use proptest::prelude::*;

fn id_strategy() -> impl Strategy<Value = String> {
    "[a-z0-9_-]{1,64}"
}

fn secret_strategy() -> impl Strategy<Value = String> {
    "[0-9A-Za-z]{22,86}"
}

fn prefix_strategy() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,30}[a-z0-9]"
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("c".to_owned()),
        "[a-z]{1,3}"
    ]
}

fn scope_strategy() -> impl Strategy<Value = Scope> {
    (prop::collection::vec(segment(), 1..4), any::<bool>()).prop_map(|(segs, wild)| {
        let mut s = segs.join(":");
        if wild {
            s.push_str(":*");
        }
        Scope::new(s).unwrap()
    })
}

fn scope_set_strategy() -> impl Strategy<Value = ScopeSet> {
    prop::collection::vec(
        prop_oneof![9 => scope_strategy(), 1 => Just(Scope::admin())],
        0..5,
    )
    .prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Format then parse gives back the id and the secret.
    #[test]
    fn format_parse_round_trip(prefix in prefix_strategy(), id in id_strategy(), secret in secret_strategy()) {
        let f = TokenFormat::new(&prefix).unwrap();
        let t = f.format(&TokenId::new(&id).unwrap(), &secret).unwrap();
        let p = f.parse(t.expose_secret()).unwrap();
        prop_assert_eq!(p.id(), id.as_str());
        prop_assert_eq!(p.secret(), secret.as_str());
    }

    /// Every single-character change to a valid token is rejected by the parser (malformed
    /// or bad checksum), before any store access.
    #[test]
    fn single_character_changes_are_rejected(
        id in id_strategy(),
        secret in secret_strategy(),
        pos in any::<prop::sample::Index>(),
        replacement in prop::char::range('!', '~'),
    ) {
        let f = TokenFormat::new("kg").unwrap();
        let t = f.format(&TokenId::new(&id).unwrap(), &secret).unwrap();
        let original = t.expose_secret();
        let i = pos.index(original.len());
        prop_assume!(original.as_bytes()[i] != replacement as u8);
        let mut changed = original.as_bytes().to_vec();
        changed[i] = replacement as u8;
        let changed = String::from_utf8(changed).unwrap();
        let r = f.parse(&changed);
        prop_assert!(
            matches!(r, Err(VerifyError::Malformed | VerifyError::BadChecksum)),
            "{changed} parsed"
        );
    }

    /// The parser is total: arbitrary input never panics, and what it accepts re-formats to
    /// the same string.
    #[test]
    fn parse_is_total(input in ".{0,300}") {
        let f = TokenFormat::new("kg").unwrap();
        if let Ok(p) = f.parse(&input) {
            let again = f.format(&TokenId::new(p.id()).unwrap(), p.secret()).unwrap();
            prop_assert_eq!(again.expose_secret(), input.as_str());
        }
    }

    /// Adding scopes never removes a grant (monotone), and grants are transitive through
    /// `grants_all`.
    #[test]
    fn grants_are_monotone(held in scope_set_strategy(), extra in scope_strategy(), required in scope_strategy()) {
        let mut bigger = held.clone();
        bigger.insert(extra);
        if held.grants(&required) {
            prop_assert!(bigger.grants(&required));
        }
        prop_assert!(bigger.grants_all(&held));
    }

    #[test]
    fn grants_all_is_transitive(a in scope_set_strategy(), b in scope_set_strategy(), c in scope_set_strategy()) {
        if a.grants_all(&b) && b.grants_all(&c) {
            prop_assert!(a.grants_all(&c));
        }
    }

    /// A wildcard grants exactly the scopes that extend its prefix; the admin scope grants all.
    #[test]
    fn wildcard_semantics(s in scope_strategy(), r in scope_strategy()) {
        prop_assert!(Scope::admin().grants(&r));
        prop_assert!(s.grants(&s) || s.is_wildcard() && !s.is_admin());
        if let Some(prefix) = s.as_str().strip_suffix('*') {
            prop_assert_eq!(s.grants(&r), r.as_str().starts_with(prefix) && r.as_str().len() > prefix.len());
        } else {
            prop_assert_eq!(s.grants(&r), s == r);
        }
    }

    /// Scope parsing is total and accepted scopes print back unchanged.
    #[test]
    fn scope_parse_is_total(input in ".{0,160}") {
        if let Ok(s) = Scope::new(&input) {
            prop_assert_eq!(s.as_str(), input.as_str());
        }
    }
}
