//! `scripts/validate_token.py`, the reference validator of `docs/token-format.md`, agrees
//! with keygate's parser: 10,000 issued tokens are all valid, 10,000 near-misses (one
//! character changed, truncated, wrong prefix) all invalid. Also checks the document's
//! regular expression and known answers are the ones the validator uses.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

use std::io::Write;
use std::process::{Command, Stdio};

use keygate::token::TokenFormat;
use keygate::{IssueRequest, MemoryStore, ServerKey, TokenId, TokenManager};
use rand_core::{OsRng, RngCore};

const ALPHANUMERIC: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Runs the validator on `tokens` (one per line); returns its verdict per line.
fn validate(prefix: &str, tokens: &[String]) -> Vec<bool> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/validate_token.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(["--prefix", prefix])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the reference validator");
    let input: String = tokens.iter().map(|t| format!("{t}\n")).collect();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let verdicts: Vec<bool> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| match l {
            "valid" => true,
            "invalid" => false,
            other => panic!("unexpected validator output {other:?}"),
        })
        .collect();
    assert_eq!(verdicts.len(), tokens.len());
    let all = verdicts.iter().all(|v| *v);
    assert_eq!(out.status.code(), Some(if all { 0 } else { 1 }));
    verdicts
}

fn random_below(n: usize) -> usize {
    (OsRng.next_u32() as usize) % n
}

/// 5,000 tokens issued by a manager with prefix `prefix`, and 5,000 formatted directly with
/// ids holding `_` and `-` and every secret length.
async fn issued(prefix: &str) -> Vec<String> {
    let m = TokenManager::builder(MemoryStore::new())
        .server_key(ServerKey::generate())
        .prefix(prefix)
        .build()
        .unwrap();
    let mut tokens = Vec::with_capacity(10_000);
    for i in 0..5_000 {
        let t = m
            .issue(IssueRequest::new(format!("t{i}"), "o"))
            .await
            .unwrap();
        tokens.push(t.expose_secret().to_owned());
    }
    let format = TokenFormat::new(prefix).unwrap();
    for i in 0..5_000 {
        let id = match i % 4 {
            0 => TokenId::generate(),
            1 => TokenId::new(format!("ci_deploy-{i}")).unwrap(),
            2 => TokenId::new("a").unwrap(),
            _ => TokenId::new(format!("{}_x", "z".repeat(60))).unwrap(),
        };
        let len = 22 + i % (86 - 22 + 1);
        let secret: String = (0..len)
            .map(|_| char::from(ALPHANUMERIC[random_below(62)]))
            .collect();
        tokens.push(
            format
                .format(&id, &secret)
                .unwrap()
                .expose_secret()
                .to_owned(),
        );
    }
    tokens
}

/// One near-miss of `token`: a character changed (anywhere), the end truncated, or another
/// prefix.
fn near_miss(token: &str, i: usize, prefix: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    match i % 5 {
        0 | 1 => {
            // Change one character to another of the same class (so the form still fits).
            let at = if i % 5 == 0 {
                bytes.len() - 1 - random_below(6) // in the checksum
            } else {
                random_below(bytes.len())
            };
            let old = bytes[at];
            let class: &[u8] = if old.is_ascii_alphanumeric() {
                ALPHANUMERIC
            } else {
                b"_-"
            };
            let mut new = old;
            while new == old {
                new = class[random_below(class.len())];
            }
            bytes[at] = new;
        }
        2 => {
            bytes.truncate(bytes.len() - 1 - random_below(10));
        }
        3 => {
            // The prefix of another issuer: one letter more or less.
            let rest = &token[prefix.len()..];
            return format!("{prefix}x{rest}");
        }
        _ => {
            let rest = &token[prefix.len()..];
            return format!("{}{rest}", &prefix[..prefix.len() - 1]);
        }
    }
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn the_reference_validator_agrees_with_the_parser() {
    for prefix in ["kg", "acme_live"] {
        let format = TokenFormat::new(prefix).unwrap();
        let valid = issued(prefix).await;
        assert_eq!(valid.len(), 10_000);
        assert!(
            validate(prefix, &valid).iter().all(|v| *v),
            "{prefix}: an issued token was refused"
        );

        let misses: Vec<String> = valid
            .iter()
            .enumerate()
            .map(|(i, t)| near_miss(t, i, prefix))
            .collect();
        for m in &misses {
            assert!(format.parse(m).is_err(), "near-miss {m} parses");
        }
        let verdicts = validate(prefix, &misses);
        let accepted: Vec<&String> = misses
            .iter()
            .zip(&verdicts)
            .filter(|(_, v)| **v)
            .map(|(m, _)| m)
            .collect();
        assert!(
            accepted.is_empty(),
            "{prefix}: near-misses accepted: {accepted:?}"
        );
    }
}

#[test]
fn the_document_states_the_validators_pattern_and_known_answers() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/token-format.md"))
        .unwrap();
    let script = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/validate_token.py"
    ))
    .unwrap();
    assert!(doc.contains("kg_[a-z0-9_-]{1,64}_[0-9A-Za-z]{28,92}"));
    assert!(script.contains(r#"r"_[a-z0-9_-]{1,64}_[0-9A-Za-z]{28,92}""#));
    let alphabet = std::str::from_utf8(ALPHANUMERIC).unwrap();
    assert!(doc.contains(alphabet) && script.contains(alphabet));
    // The document's known answers are valid, and a one-letter change is not.
    for (prefix, token) in [
        (
            "kg",
            "kg_ci-deploy_01_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg4MbJDs",
        ),
        ("acme_live", "acme_live_a_zzzzzzzzzzzzzzzzzzzzzz2RENgd"),
    ] {
        assert!(doc.contains(token));
        TokenFormat::new(prefix).unwrap().parse(token).unwrap();
        let changed = token
            .replace("4MbJDs", "4MbJDt")
            .replace("2RENgd", "2RENge");
        assert_eq!(
            validate(prefix, &[token.to_owned(), changed]),
            [true, false]
        );
    }
    assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    assert!(doc.contains("0xCBF43926"));
}
