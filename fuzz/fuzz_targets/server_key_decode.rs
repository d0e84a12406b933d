//! `ServerKey::decode` on arbitrary input: never panics; an accepted key has at least 32 bytes
//! and decodes again from its hex form.
#![no_main]

use keygate::ServerKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(key) = ServerKey::decode(s) {
        let hex = key.expose_hex();
        assert!(hex.len() >= 64);
        let again = ServerKey::decode(&hex).expect("hex form decodes");
        assert_eq!(*again.expose_hex(), *hex);
    }
});
