//! `Scope::new` and `ScopeSet::parse` on arbitrary input: never panic; a valid scope
//! round-trips and is granted by `*`.
#![no_main]

use keygate::{Scope, ScopeSet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(scope) = Scope::new(s) {
        assert_eq!(scope.as_str(), s);
        assert!(Scope::admin().grants(&scope));
        assert!(scope.grants(&scope) || scope.is_wildcard());
    }
    // The same bytes as a list, split on whitespace and commas.
    let parts: Vec<&str> = s.split([' ', ',', '\n']).collect();
    match ScopeSet::parse(&parts) {
        Ok(set) => {
            for p in &parts {
                let scope = Scope::new(p).expect("every member is valid");
                assert!(set.grants(&scope) || scope.is_wildcard());
            }
        }
        Err(_) => assert!(parts.iter().any(|p| Scope::new(p).is_err())),
    }
});
