//! Property tests of the credential parser behind the tower layer (the proptest twin of the
//! `authorization_header` fuzz target, run in CI): arbitrary `Authorization` and API-key
//! header values never panic it, and whatever it accepts is a non-empty RFC 6750 `b64token`
//! within the length cap.
#![cfg(feature = "tower")]

use http::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use keygate::http::AuthConfig;
use proptest::prelude::*;

fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        "(?i:bearer)[ \t]{0,3}[A-Za-z0-9._~+/=-]{0,80}".prop_map(String::into_bytes),
        "[ -~]{0,2000}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn extract_is_total(
        auth in prop::option::of(header_bytes()),
        second_auth in prop::option::of(header_bytes()),
        key in prop::option::of(header_bytes()),
    ) {
        let api_key = HeaderName::from_static("x-api-key");
        let mut headers = HeaderMap::new();
        for v in [auth, second_auth].into_iter().flatten() {
            if let Ok(v) = HeaderValue::from_bytes(&v) {
                headers.append(AUTHORIZATION, v);
            }
        }
        if let Some(Ok(v)) = key.map(|k| HeaderValue::from_bytes(&k)) {
            headers.append(api_key.clone(), v);
        }
        let config = AuthConfig::new().api_key_header(api_key);
        if let Ok(Some(credential)) = config.extract(&headers) {
            let token = credential.token();
            prop_assert!(!token.is_empty());
            prop_assert!(token.len() <= config.header_len_cap());
            prop_assert!(token.bytes().all(|b| b.is_ascii_alphanumeric()
                || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')));
        }
    }
}
