//! `Cursor::from_str` (the listing cursor clients send back) on arbitrary input: never
//! panics; a parsed cursor round-trips through its string form.
#![no_main]

use std::str::FromStr;

use keygate::store::Cursor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = Cursor::from_str(s) {
        let again = Cursor::from_str(&c.to_string()).expect("display form parses");
        assert_eq!(again, c);
    }
});
