//! `TokenFormat::parse` on arbitrary input: never panics; whatever parses re-formats to the
//! same string.
#![no_main]

use keygate::token::MAX_TOKEN_LEN;
use keygate::{token::TokenFormat, TokenId, VerifyError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    for format in [
        TokenFormat::default(),
        TokenFormat::new("acme_live").expect("valid prefix"),
    ] {
        match format.parse(s) {
            Ok(p) => {
                assert!(s.len() <= MAX_TOKEN_LEN);
                let id = TokenId::new(p.id()).expect("parsed id is valid");
                let again = format
                    .format(&id, p.secret())
                    .expect("parsed secret is valid");
                assert_eq!(again.expose_secret(), s);
            }
            Err(e) => assert!(matches!(
                e,
                VerifyError::Malformed | VerifyError::BadChecksum
            )),
        }
    }
});
