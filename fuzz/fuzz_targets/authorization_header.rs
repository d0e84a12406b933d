//! `AuthConfig::extract` on arbitrary `Authorization` and `X-API-Key` header values: never
//! panics; a credential is only ever returned from a header within the length cap, and it is
//! a non-empty RFC 6750 `b64token`.
#![no_main]

use keygate::http::AuthConfig;
use http::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte picks the layout, the rest is split between the two headers.
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let cut = rest.len() / 2;
    let (auth, key) = rest.split_at(cut);
    let mut headers = HeaderMap::new();
    let api_key = HeaderName::from_static("x-api-key");
    if mode & 1 == 1 {
        if let Ok(v) = HeaderValue::from_bytes(auth) {
            headers.append(AUTHORIZATION, v);
        }
    }
    if mode & 2 == 2 {
        if let Ok(v) = HeaderValue::from_bytes(key) {
            headers.append(api_key.clone(), v);
        }
    }
    if mode & 4 == 4 {
        if let Ok(v) = HeaderValue::from_bytes(rest) {
            headers.append(AUTHORIZATION, v);
        }
    }
    let config = AuthConfig::new().api_key_header(api_key);
    if let Ok(Some(credential)) = config.extract(&headers) {
        let token = credential.token();
        assert!(!token.is_empty());
        assert!(token.len() <= config.header_len_cap());
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')));
    }
});
