//! `ExpiryPreset::from_str` on arbitrary input: never panics; a parsed preset resolves like
//! its string form does.
#![no_main]

use std::str::FromStr;

use chrono::{TimeZone, Utc};
use keygate::ExpiryPreset;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = ExpiryPreset::from_str(s) {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let again = ExpiryPreset::from_str(&p.to_string()).expect("display form parses");
        assert_eq!(again.resolve(now).ok(), p.resolve(now).ok());
    }
});
