//! The `keygate` binary, run as a process against a SQLite file and against PostgreSQL:
//! tokens it creates verify through the library and through `keygate token verify`, every
//! command does what `--help` says, and every bad input fails with a clear message, the
//! documented exit code, nothing on stdout, and nothing changed in the store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod cli_support;

use std::process::Stdio;

use chrono::{Duration, Utc};
use cli_support::{Cli, PgSchema, Run, binary, block_on, new_pepper};
use keygate::{
    Projects, Scope, ServerKey, TokenId, TokenManager, TokenRecord, VerifyError, digest::Keyring,
    scope::ProjectId, store::PageRequest, store::TokenFilter,
};

const OK: i32 = 0;
const INVALID: i32 = 1;
const USAGE: i32 = 2;
const STORE: i32 = 3;
const OUTPUT: i32 = 4;

fn sqlite_cli(dir: &tempfile::TempDir) -> Cli {
    Cli::sqlite(&dir.path().join("keygate.db"))
}

/// Every record in the store, newest first.
fn records(cli: &Cli) -> Vec<TokenRecord> {
    block_on(async {
        cli.manager()
            .await
            .list(&TokenFilter::new(), &PageRequest::first(1000))
            .await
            .expect("list")
            .items
    })
}

fn verify_lib(cli: &Cli, token: &str) -> Result<keygate::VerifiedToken, VerifyError> {
    block_on(async { cli.manager().await.verify(token).await })
}

fn record(cli: &Cli, id: &str) -> TokenRecord {
    block_on(async {
        cli.manager()
            .await
            .get(&TokenId::new(id).unwrap())
            .await
            .expect("get")
    })
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).expect("stdout is JSON")
}

// ----- scenarios, run on both backends ----------------------------------------------------

fn lifecycle(cli: &Cli) {
    cli.migrate();
    cli.migrate(); // idempotent

    // Bootstrap an admin token the way an operator would, through a shell.
    let shell = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"TOKEN=$("$KG" token create ci --admin --id ci-admin) && printf '%s\n' "$TOKEN" | "$KG" token verify"#)
        .env("KG", binary())
        .env("KEYGATE_DATABASE_URL", &cli.url)
        .env("KEYGATE_PEPPER", cli.pepper.as_deref().unwrap())
        .envs(cli.schema.iter().map(|s| ("KEYGATE_DATABASE_SCHEMA", s)))
        .output()
        .unwrap();
    let stdout = String::from_utf8(shell.stdout).unwrap();
    assert_eq!(shell.status.code(), Some(OK), "{stdout}");
    assert!(stdout.contains("valid: yes\n"), "{stdout}");
    assert!(stdout.contains("id: ci-admin\n"), "{stdout}");
    assert!(stdout.contains("scopes: *\n"), "{stdout}");

    // An admin token, verified by the library as a service would.
    let admin = cli.create_token("root", &["--admin", "--id", "root"]);
    assert!(admin.starts_with("kg_root_"), "token format");
    let v = verify_lib(cli, &admin).expect("the library accepts a CLI token");
    assert!(v.scopes().is_admin());
    assert!(v.grants(&Scope::new("anything:at:all").unwrap()));
    assert_eq!(v.owner(), "admin");
    assert_eq!(v.created_by(), "cli");
    assert_eq!(v.projects(), &Projects::All);
    let expires = v.expiry().at().expect("30 days by default");
    assert!(
        (expires - (Utc::now() + Duration::days(30)))
            .num_seconds()
            .abs()
            < 120
    );

    // A scoped, project-bound token.
    let deploy = cli.create_token(
        "ci deploy",
        &[
            "--scope",
            "projects:read",
            "--scope",
            "builds:*",
            "--project",
            "website",
            "--expires",
            "7d",
            "--owner",
            "alice",
            "--description",
            "deploys the website",
        ],
    );
    let v = verify_lib(cli, &deploy).unwrap();
    let deploy_id = v.id().to_string();
    assert_eq!(v.owner(), "alice");
    assert_eq!(v.name(), "ci deploy");
    assert!(v.grants(&Scope::new("projects:read").unwrap()));
    assert!(v.grants(&Scope::new("builds:run").unwrap()));
    assert!(!v.grants(&Scope::new("projects:write").unwrap()));
    assert!(v.projects().allows(&ProjectId::new("website").unwrap()));
    assert!(!v.projects().allows(&ProjectId::new("billing").unwrap()));
    let expires = v.expiry().at().unwrap();
    assert!(
        (expires - (Utc::now() + Duration::days(7)))
            .num_seconds()
            .abs()
            < 120
    );
    assert_eq!(record(cli, &deploy_id).description, "deploys the website");

    // Expiry: never, and an instant.
    let forever = cli.create_token("forever", &["--id", "forever", "--expires", "never"]);
    assert_eq!(
        verify_lib(cli, &forever).unwrap().expiry(),
        keygate::Expiry::Never
    );
    cli.create_token(
        "dated",
        &["--id", "dated", "--expires", "2099-01-31T00:00:00Z"],
    );
    let shown = json(
        &cli.run(&["token", "show", "dated", "--json"])
            .expect_code(OK),
    );
    assert_eq!(shown["expires_at"], "2099-01-31T00:00:00Z");

    // verify through the command line: human and JSON.
    let run = cli.verify(&deploy).expect_code(OK);
    assert!(
        run.stdout.contains(&format!("id: {deploy_id}\n")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("owner: alice\n"));
    assert!(run.stdout.contains("projects: website\n"));
    assert!(!run.stderr.contains(&deploy), "no token on stderr");
    let run = cli
        .run_with_stdin(&["token", "verify", "--json"], &format!("{deploy}\r\n"))
        .expect_code(OK);
    let v = json(&run);
    assert_eq!(v["valid"], true);
    assert_eq!(v["id"], deploy_id.as_str());
    assert_eq!(
        v["scopes"],
        serde_json::json!(["builds:*", "projects:read"])
    );
    assert!(!run.stdout.contains(&deploy), "the token is never echoed");

    // list: table and JSON, with filters.
    let run = cli.run(&["token", "list"]).expect_code(OK);
    let mut lines = run.stdout.lines();
    let header = lines.next().unwrap();
    for column in [
        "ID",
        "NAME",
        "OWNER",
        "STATUS",
        "SCOPES",
        "EXPIRES",
        "LAST USED",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 5, "{}", run.stdout);
    let root_row = rows.iter().find(|r| r.starts_with("root ")).unwrap();
    for cell in ["root", "admin", "active", "*", "never"] {
        assert!(root_row.contains(cell), "{root_row}");
    }
    let forever_row = rows.iter().find(|r| r.starts_with("forever ")).unwrap();
    assert!(forever_row.contains("never"));
    let all = json(&cli.run(&["token", "list", "--json"]).expect_code(OK));
    assert_eq!(all.as_array().unwrap().len(), 5);
    for item in all.as_array().unwrap() {
        let text = item.to_string();
        assert!(!text.contains("digest"), "no digest in the output: {text}");
    }
    let mine = json(
        &cli.run(&["token", "list", "--json", "--owner", "alice"])
            .expect_code(OK),
    );
    assert_eq!(mine.as_array().unwrap().len(), 1);
    assert_eq!(mine[0]["id"], deploy_id.as_str());
    let admins = json(
        &cli.run(&["token", "list", "--json", "--scope", "*"])
            .expect_code(OK),
    );
    let ids: Vec<&str> = admins
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&"root") && ids.contains(&"ci-admin"));
    let soon = json(
        &cli.run(&["token", "list", "--json", "--expires-before", "10d"])
            .expect_code(OK),
    );
    assert_eq!(soon.as_array().unwrap().len(), 1, "only the 7-day token");
    let limited = json(
        &cli.run(&["token", "list", "--json", "--limit", "2"])
            .expect_code(OK),
    );
    assert_eq!(limited.as_array().unwrap().len(), 2);

    // show.
    let run = cli.run(&["token", "show", &deploy_id]).expect_code(OK);
    for line in [
        "name: ci deploy",
        "owner: alice",
        "created by: cli",
        "status: active",
        "scopes: builds:*,projects:read",
        "projects: website",
        "description: deploys the website",
    ] {
        assert!(run.stdout.contains(line), "{line} in {}", run.stdout);
    }

    // rotate with a grace period: old and new both work, then without: the old stops.
    let run = cli
        .run(&["token", "rotate", "root", "--grace", "24h"])
        .expect_code(OK);
    let rotated = run.stdout.strip_suffix('\n').unwrap().to_owned();
    assert!(rotated.starts_with("kg_root_") && rotated != admin);
    assert!(!run.stderr.contains(&rotated));
    assert!(
        run.stderr.contains("old secret works until"),
        "{}",
        run.stderr
    );
    let old = verify_lib(cli, &admin).expect("old secret inside its grace period");
    assert!(old.used_previous_secret());
    assert!(!verify_lib(cli, &rotated).unwrap().used_previous_secret());
    let until = record(cli, "root").retired.first().unwrap().valid_until;
    assert!(
        (until - (Utc::now() + Duration::hours(24)))
            .num_seconds()
            .abs()
            < 120
    );
    let run = cli
        .run(&["token", "rotate", "root", "--expires", "never"])
        .expect_code(USAGE);
    assert!(
        run.stderr.contains("grace period is still running"),
        "{}",
        run.stderr
    );
    let run = cli
        .run(&[
            "token",
            "rotate",
            "root",
            "--expires",
            "never",
            "--end-grace",
        ])
        .expect_code(OK);
    let third = run.stdout.trim_end().to_owned();
    assert!(matches!(
        verify_lib(cli, &rotated),
        Err(VerifyError::RotatedOut)
    ));
    // Two rotations ago: still in the retired chain, so recognised as reuse, not unknown;
    // and refused although its grace period had not ended, since the later rotation ends it
    // (`TokenRecord::retired`: at most the newest retired secret is inside its grace).
    assert!(matches!(
        verify_lib(cli, &admin),
        Err(VerifyError::RotatedOut)
    ));
    assert_eq!(
        verify_lib(cli, &third).unwrap().expiry(),
        keygate::Expiry::Never
    );

    // disable / enable / revoke / delete several ids at once (a repeated id is fine).
    cli.run(&["token", "disable", "root", &deploy_id, "root", "--yes"])
        .expect_code(OK);
    assert!(matches!(
        verify_lib(cli, &third),
        Err(VerifyError::Disabled)
    ));
    assert!(matches!(
        verify_lib(cli, &deploy),
        Err(VerifyError::Disabled)
    ));
    cli.verify(&third).expect_failure(INVALID, "disabled");
    cli.run(&["token", "enable", "root", &deploy_id])
        .expect_code(OK);
    verify_lib(cli, &third).unwrap();
    verify_lib(cli, &deploy).unwrap();
    cli.run(&["token", "revoke", "root", &deploy_id, "--yes"])
        .expect_code(OK);
    assert!(matches!(verify_lib(cli, &third), Err(VerifyError::Revoked)));
    cli.verify(&deploy).expect_failure(INVALID, "revoked");
    let listed = json(
        &cli.run(&["token", "list", "--json", "--status", "revoked"])
            .expect_code(OK),
    );
    assert_eq!(listed.as_array().unwrap().len(), 2);
    cli.run(&["token", "delete", "root", &deploy_id, "forever", "--yes"])
        .expect_code(OK);
    assert!(matches!(verify_lib(cli, &third), Err(VerifyError::Unknown)));
    assert!(matches!(
        verify_lib(cli, &forever),
        Err(VerifyError::Unknown)
    ));
    cli.verify(&forever).expect_failure(INVALID, "unknown");
    let left: Vec<String> = records(cli).iter().map(|r| r.id.to_string()).collect();
    assert_eq!(left, ["dated", "ci-admin"]);
}

fn bad_input_changes_nothing(cli: &Cli) {
    cli.migrate();
    let keep = cli.create_token("keep", &["--id", "keep", "--scope", "projects:read"]);
    cli.create_token("gone", &["--id", "gone"]);
    cli.run(&["token", "revoke", "gone", "--yes"])
        .expect_code(OK);
    let before = records(cli);
    let unchanged = |what: &str| assert_eq!(records(cli), before, "{what} changed the store");

    let cases: &[(&[&str], &str)] = &[
        (&["token", "create", "x", "--expires", "13x"], "invalid"),
        (
            &["token", "create", "x", "--expires", "2020-01-01T00:00:00Z"],
            "expiry",
        ),
        (
            &["token", "create", "x", "--scope", "Bad Scope"],
            "invalid scope",
        ),
        (&["token", "create", "x", "--scope", ""], "invalid scope"),
        (
            &["token", "create", "x", "--project", "Web Site"],
            "invalid project",
        ),
        (
            &["token", "create", "x", "--id", "Has Caps"],
            "invalid token id",
        ),
        (&["token", "create", "x", "--id", "keep"], "already exists"),
        (&["token", "create", ""], "name"),
        (&["token", "create", "x", "--owner", ""], "owner"),
        (
            &["token", "create", "x", "--admin", "--scope", "a:b"],
            "cannot be used with",
        ),
        (&["token", "create"], "NAME"),
        (&["token", "show", "nope"], "token `nope` not found"),
        (&["token", "show", "NOPE!"], "invalid token id"),
        (
            &["token", "disable", "keep", "nope"],
            "token `nope` not found; nothing was changed",
        ),
        (&["token", "revoke", "keep", "Bad!"], "invalid token id"),
        (&["token", "delete", "keep", "nope"], "not found"),
        (&["token", "enable", "keep", "gone"], "`gone` is revoked"),
        (&["token", "disable", "gone"], "`gone` is revoked"),
        (&["token", "disable"], "ID"),
        (&["token", "rotate", "nope"], "not found"),
        (&["token", "rotate", "gone"], "revoked"),
        (
            &["token", "rotate", "keep", "--grace", "31d"],
            "at most 30 days",
        ),
        (&["token", "rotate", "keep", "--grace", "5x"], "--grace"),
        (
            &["token", "rotate", "keep", "--expires", "soon"],
            "invalid expiry",
        ),
        (
            &["token", "list", "--status", "weird"],
            "expected active, disabled or revoked",
        ),
        (&["token", "list", "--scope", "a b"], "invalid scope"),
        (&["token", "list", "--expires-before", "never"], "RFC 3339"),
        (&["token", "list", "--limit", "0"], "--limit"),
        (&["token", "frobnicate"], "unrecognized subcommand"),
        (
            &["--token-prefix", "Not A Prefix", "token", "list"],
            "prefix",
        ),
    ];
    for (args, message) in cases {
        let run = cli.run(args);
        assert_eq!(run.code, USAGE, "{args:?}: {run:?}");
        assert_eq!(run.stdout, "", "{args:?} printed on stdout");
        assert!(
            run.stderr.contains(message),
            "{args:?}: {:?} lacks {message:?}",
            run.stderr
        );
        unchanged(&format!("{args:?}"));
    }

    // The server key: missing, empty, short, or not hex/base64.
    let needs_pepper: &[&[&str]] = &[&["token", "create", "x"], &["token", "rotate", "keep"]];
    for args in needs_pepper {
        for (pepper, message) in [
            (None, "KEYGATE_PEPPER is not set"),
            (Some(""), "KEYGATE_PEPPER is not set"),
            (
                Some("00112233445566778899aabbccddeeff"),
                "at least 32 bytes",
            ),
            (Some("not a key!"), "KEYGATE_PEPPER"),
        ] {
            let run = cli.with_pepper(pepper).run(args);
            let run = run.expect_failure(USAGE, message);
            assert!(!run.stderr.contains(cli.pepper.as_deref().unwrap()));
            unchanged("a bad pepper");
        }
    }
    cli.with_pepper(None)
        .verify(&keep)
        .expect_failure(USAGE, "KEYGATE_PEPPER is not set");
    // Without the pepper, commands that compute no digest still work (e.g. an emergency
    // revoke by an operator who does not hold the key).
    cli.with_pepper(None)
        .run(&["token", "show", "keep"])
        .expect_code(OK);

    // verify: no token, junk, a token under another pepper, a line too long.
    cli.verify("").expect_failure(USAGE, "no token on stdin");
    cli.run_with_stdin(&["token", "verify"], "")
        .expect_failure(USAGE, "no token on stdin");
    cli.verify("not-a-token")
        .expect_failure(INVALID, "malformed");
    let mut typo = keep.clone();
    typo.pop();
    typo.push(if keep.ends_with('A') { 'B' } else { 'A' });
    cli.verify(&typo).expect_failure(INVALID, "checksum");
    // Another pepper is named as such, not taken for an unknown token.
    cli.with_pepper(Some(&new_pepper()))
        .verify(&keep)
        .expect_failure(USAGE, "server key version 1 is not the key");
    cli.verify(&"k".repeat(5000))
        .expect_failure(INVALID, "malformed");
    unchanged("failed verifications");

    // Database URLs that name no usable store.
    cli.with_url("mysql://root@127.0.0.1/db")
        .run(&["token", "list"])
        .expect_failure(USAGE, "unsupported database URL scheme");
    cli.with_url("")
        .run(&["token", "list"])
        .expect_failure(USAGE, "no database");
    unchanged("bad URLs");

    // What was refused really was refused, and the token still works.
    verify_lib(cli, &keep).unwrap();
}

// ----- SQLite -------------------------------------------------------------------------------

#[test]
fn sqlite_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    lifecycle(&sqlite_cli(&dir));
}

#[test]
fn sqlite_bad_input_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    bad_input_changes_nothing(&sqlite_cli(&dir));
}

#[test]
fn sqlite_plain_path_and_sqlite_url_name_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.db");
    let plain = Cli::sqlite(&path).with_url(path.to_str().unwrap());
    plain.migrate();
    let token = plain.create_token("plain", &["--id", "plain"]);
    let url = Cli::sqlite(&path).with_pepper(plain.pepper.as_deref());
    url.verify(&token).expect_code(OK);
}

#[test]
fn sqlite_commands_other_than_migrate_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.db");
    let cli = Cli::sqlite(&path);
    for args in [
        &["token", "list"][..],
        &["token", "create", "x", "--admin"],
        &["token", "revoke", "x"],
    ] {
        cli.run(args).expect_failure(STORE, "run `keygate migrate`");
    }
    assert!(!path.exists(), "no database file was created");
    cli.verify("kg_x_y")
        .expect_failure(STORE, "run `keygate migrate`");

    // An existing file without keygate's tables.
    std::fs::write(&path, b"").unwrap();
    cli.run(&["token", "create", "x", "--admin"])
        .expect_failure(STORE, "not migrated");
    cli.migrate();
    cli.run(&["token", "list"]).expect_code(OK);
}

#[test]
fn sqlite_schema_option_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cli = sqlite_cli(&dir);
    cli.schema = Some("auth".into());
    cli.run(&["migrate"])
        .expect_failure(USAGE, "PostgreSQL only");
    assert!(!dir.path().join("keygate.db").exists());
}

// ----- PostgreSQL ---------------------------------------------------------------------------

#[test]
fn postgres_lifecycle() {
    let Some(schema) = PgSchema::new() else {
        return;
    };
    lifecycle(&schema.cli());
}

#[test]
fn postgres_bad_input_changes_nothing() {
    let Some(schema) = PgSchema::new() else {
        return;
    };
    let cli = schema.cli();
    bad_input_changes_nothing(&cli);
    let mut bad = cli.clone();
    bad.schema = Some("Not-A-Schema".into());
    bad.run(&["token", "list"])
        .expect_failure(USAGE, "invalid schema");
    bad.schema = Some("pg_catalog".into());
    bad.run(&["migrate"])
        .expect_failure(USAGE, "invalid schema");
}

#[test]
fn postgres_commands_other_than_migrate_need_a_migrated_schema() {
    let Some(schema) = PgSchema::new() else {
        return;
    };
    let cli = schema.cli();
    cli.run(&["token", "list"])
        .expect_failure(STORE, "run `keygate migrate` first");
    cli.run(&["token", "create", "x", "--admin"])
        .expect_failure(STORE, "not migrated");
    cli.migrate();
    let token = cli.create_token("x", &["--admin"]);
    cli.verify(&token).expect_code(OK);
}

#[test]
fn unreachable_database_is_exit_3() {
    // Nothing listens on port 1; the password must never be printed.
    let cli = Cli {
        url: "postgres://postgres:hunter2secret@127.0.0.1:1/test".into(),
        schema: None,
        pepper: Some(new_pepper()),
    };
    for args in [
        &["migrate"][..],
        &["token", "list"],
        &["token", "create", "x", "--admin"],
        &["token", "revoke", "x"],
    ] {
        let run = cli.run(args).expect_failure(STORE, "database unreachable");
        assert!(!run.stderr.contains("hunter2secret"), "{}", run.stderr);
    }
    cli.verify("kg_x_y")
        .expect_failure(STORE, "database unreachable");
    // A directory that does not exist cannot hold a SQLite file.
    Cli::sqlite(std::path::Path::new("/nonexistent-dir/keygate.db"))
        .run(&["migrate"])
        .expect_failure(STORE, "database unreachable");
}

#[test]
fn a_token_created_disabled_is_refused_until_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let cli = sqlite_cli(&dir);
    cli.migrate();
    let token = cli.create_token("later", &["--id", "later", "--disabled"]);
    assert_eq!(record(&cli, "later").status, keygate::TokenStatus::Disabled);
    cli.verify(&token).expect_failure(INVALID, "disabled");
    cli.run(&["token", "enable", "later"]).expect_code(OK);
    assert_eq!(record(&cli, "later").status, keygate::TokenStatus::Active);
    cli.verify(&token).expect_code(OK);
}

/// Another pepper than the one the store's tokens were issued under is refused before
/// anything is created (exit 2, the version named); the commands that need no pepper still
/// work, so the operator can disable or revoke tokens without it.
#[test]
fn another_pepper_is_refused_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let cli = sqlite_cli(&dir);
    cli.migrate();
    let token = cli.create_token("first", &["--id", "first"]);
    let other = cli.with_pepper(Some(&new_pepper()));
    other
        .run(&["token", "create", "second", "--id", "second"])
        .expect_failure(USAGE, "server key version 1");
    other
        .run_with_stdin(&["token", "verify"], &format!("{token}\n"))
        .expect_failure(USAGE, "server key version 1");
    assert_eq!(records(&cli).len(), 1, "nothing was created");
    other.run(&["token", "disable", "first"]).expect_code(OK);
    cli.run(&["token", "enable", "first"]).expect_code(OK);
    cli.verify(&token).expect_code(OK);
}

#[test]
fn expired_tokens_are_shown_as_expired_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cli = sqlite_cli(&dir);
    cli.migrate();
    let token = cli.create_token("short", &["--id", "short", "--expires", "1s"]);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let run = cli.run(&["token", "list"]).expect_code(OK);
    let row = run.stdout.lines().nth(1).unwrap();
    assert!(row.contains(" expired "), "{row}");
    let shown = json(
        &cli.run(&["token", "show", "short", "--json"])
            .expect_code(OK),
    );
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["expired"], true);
    cli.verify(&token).expect_failure(INVALID, "expired");
}

#[test]
fn the_last_admin_token_is_not_revoked_disabled_or_deleted_without_yes() {
    let dir = tempfile::tempdir().unwrap();
    let cli = sqlite_cli(&dir);
    cli.migrate();
    cli.create_token("root", &["--id", "root", "--admin"]);
    for command in ["revoke", "disable", "delete"] {
        let run = cli.run(&["token", command, "root"]).expect_code(USAGE);
        assert!(
            run.stderr.contains("no active token with the `*` scope")
                && run.stderr.contains("pass --yes"),
            "{}",
            run.stderr
        );
    }
    let root = record(&cli, "root");
    assert_eq!(
        (root.status, root.version),
        (keygate::TokenStatus::Active, 1)
    );
    // With a second admin token, the first may go.
    cli.create_token("spare", &["--id", "spare", "--admin"]);
    cli.run(&["token", "revoke", "root", "--yes"])
        .expect_code(OK);
}

// ----- options, keys, help, output ----------------------------------------------------------

#[test]
fn pepper_generate_prints_a_fresh_key_and_needs_no_database() {
    let cli = Cli {
        url: String::new(),
        schema: None,
        pepper: None,
    };
    let a = cli.run(&["pepper", "generate"]).expect_code(OK);
    let b = cli.run(&["pepper", "generate"]).expect_code(OK);
    let key = a.stdout.strip_suffix('\n').unwrap();
    assert_eq!(key.len(), 64);
    assert!(key.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a.stdout, b.stdout);
    assert_eq!(a.stderr, "");
    ServerKey::decode(key).unwrap();
}

#[test]
fn token_prefix_and_pepper_version_match_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let cli = sqlite_cli(&dir);
    cli.migrate();
    let mut cmd = cli.command(&["token", "create", "svc", "--scope", "projects:read"]);
    cmd.env("KEYGATE_TOKEN_PREFIX", "acme_live")
        .env("KEYGATE_PEPPER_VERSION", "3");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(OK));
    let token = String::from_utf8(out.stdout).unwrap().trim_end().to_owned();
    assert!(token.starts_with("acme_live_"), "{token}");

    let key = ServerKey::decode(cli.pepper.as_deref().unwrap()).unwrap();
    let service = |version| {
        let key = key.clone();
        let token = token.clone();
        let cli = cli.clone();
        block_on(async move {
            TokenManager::builder(cli.store().await)
                .keyring(Keyring::new(version, key))
                .prefix("acme_live")
                .build()
                .unwrap()
                .verify(&token)
                .await
                .map(|_| ())
        })
    };
    service(3).expect("a service with key version 3 accepts it");
    assert!(matches!(service(1), Err(VerifyError::Unknown)));
    // The default prefix `kg` does not parse it.
    cli.verify(&token).expect_failure(INVALID, "malformed");
}

#[test]
fn help_documents_exit_codes_and_hides_the_database_url() {
    let cli = Cli {
        url: "postgres://u:hunter2secret@db/app".into(),
        schema: None,
        pepper: Some(new_pepper()),
    };
    let run = cli.run(&["--help"]).expect_code(OK);
    for text in [
        "Exit codes:",
        "1  `token verify`: the token is not valid",
        "3  the database is unreachable",
        "KEYGATE_PEPPER",
        "migrate",
        "token",
        "pepper",
    ] {
        assert!(run.stdout.contains(text), "{text} in --help");
    }
    assert!(!run.stdout.contains("hunter2secret"));
    assert!(!run.stdout.contains(cli.pepper.as_deref().unwrap()));
    let run = cli.run(&["token", "create", "--help"]).expect_code(OK);
    for option in [
        "--admin",
        "--scope",
        "--project",
        "--expires",
        "--owner",
        "--description",
        "--id",
    ] {
        assert!(run.stdout.contains(option), "{option}");
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_token_nobody_received_is_deleted_again() {
    let dir = tempfile::tempdir().unwrap();
    let cli = sqlite_cli(&dir);
    cli.migrate();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = cli
        .command(&["token", "create", "lost", "--admin", "--id", "lost"])
        .stdout(Stdio::from(full))
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(OUTPUT), "{stderr}");
    assert!(stderr.contains("cannot write the token"), "{stderr}");
    assert!(stderr.contains("deleted again"), "{stderr}");
    assert!(records(&cli).is_empty(), "nothing half-written");
    assert!(!stderr.contains("kg_lost_"), "no token on stderr");
}

#[test]
fn allow_ip_restricts_tokens_on_create_and_update() {
    use keygate::manager::VerifyContext;
    let dir = tempfile::tempdir().unwrap();
    let cli = sqlite_cli(&dir);
    cli.migrate();
    let nets = |s: &[&str]| keygate::ip::parse_list(s).unwrap();
    let token = cli.create_token(
        "office",
        &[
            "--id",
            "office",
            "--allow-ip",
            "10.1.2.3/8",
            "--allow-ip",
            "2001:db8::/32",
        ],
    );
    assert_eq!(
        record(&cli, "office").allowed_ips,
        nets(&["10.0.0.0/8", "2001:db8::/32"]),
        "stored normalised"
    );
    let at = |ip: &str| VerifyContext::new().client_ip(ip.parse().unwrap());
    let verify_at =
        |ip: &str| block_on(async { cli.manager().await.verify_with(&token, &at(ip)).await });
    assert!(verify_at("10.9.9.9").is_ok());
    assert!(verify_at("2001:db8::1").is_ok());
    assert!(matches!(
        verify_at("192.0.2.1"),
        Err(VerifyError::IpNotAllowed)
    ));
    let shown = cli.run(&["token", "show", "office"]).expect_code(OK);
    assert!(
        shown
            .stdout
            .contains("allowed ips: 10.0.0.0/8, 2001:db8::/32\n"),
        "{}",
        shown.stdout
    );
    let json_view = json(
        &cli.run(&["token", "show", "office", "--json"])
            .expect_code(OK),
    );
    assert_eq!(
        json_view["allowed_ips"],
        serde_json::json!(["10.0.0.0/8", "2001:db8::/32"])
    );

    // Update replaces the list, and --any-ip lifts it.
    let run = cli
        .run(&["token", "update", "office", "--allow-ip", "192.0.2.1"])
        .expect_code(OK);
    assert!(
        run.stderr
            .contains("allowed ips: 10.0.0.0/8, 2001:db8::/32 -> 192.0.2.1/32"),
        "{run:?}"
    );
    assert_eq!(record(&cli, "office").allowed_ips, nets(&["192.0.2.1/32"]));
    assert!(verify_at("192.0.2.1").is_ok());
    cli.run(&["token", "update", "office", "--any-ip"])
        .expect_code(OK);
    assert!(record(&cli, "office").allowed_ips.is_empty());
    assert!(
        cli.run(&["token", "show", "office"])
            .expect_code(OK)
            .stdout
            .contains("allowed ips: any\n")
    );

    // Bad ranges and contradictory flags are usage errors that change nothing.
    let before = record(&cli, "office");
    for args in [
        &["token", "update", "office", "--allow-ip", "10.0.0.0/33"][..],
        &["token", "update", "office", "--allow-ip", "example.com"],
        &[
            "token",
            "update",
            "office",
            "--allow-ip",
            "10.0.0.0/8",
            "--any-ip",
        ],
        &["token", "create", "bad", "--allow-ip", "300.0.0.1"],
    ] {
        let run = cli.run(args);
        assert_eq!(run.code, USAGE, "{args:?}: {}", run.stderr);
    }
    assert_eq!(record(&cli, "office"), before);
    assert_eq!(records(&cli).len(), 1);
}

#[test]
fn expiring_lists_what_expires_within_the_window_soonest_first() {
    let dir = tempfile::tempdir().unwrap();
    let cli = sqlite_cli(&dir);
    cli.migrate();
    cli.create_token("week", &["--id", "week", "--expires", "7d"]);
    cli.create_token("days", &["--id", "days", "--expires", "3d"]);
    cli.create_token("month", &["--id", "month", "--expires", "30d"]);
    cli.create_token("never", &["--id", "never", "--expires", "never"]);
    cli.create_token("gone", &["--id", "gone", "--expires", "2d"]);
    cli.run(&["token", "revoke", "gone", "--yes"])
        .expect_code(OK);
    let run = cli
        .run(&["token", "expiring", "--within", "8d", "--json"])
        .expect_code(OK);
    let ids: Vec<_> = json(&run)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["days", "week"]);
    assert!(run.stderr.contains("2 token(s)"), "{}", run.stderr);
    // The default window is 30 days; the table has a header and one row per token.
    let table = cli.run(&["token", "expiring"]).expect_code(OK);
    assert_eq!(table.stdout.lines().count(), 4, "{}", table.stdout);
    cli.run(&["token", "expiring", "--within", "soon"])
        .expect_failure(USAGE, "expected <N>d");
    // Listing sends nothing: no notice is marked.
    assert!(record(&cli, "days").expiry_notice.is_none());
}

#[test]
fn pepper_usage_counts_tokens_per_key_version_and_list_filters_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let cli = sqlite_cli(&dir);
    cli.migrate();
    cli.create_token("old-1", &["--id", "old-1"]);
    cli.create_token("old-2", &["--id", "old-2"]);
    let mut cmd = cli.command(&["token", "create", "new", "--id", "new"]);
    cmd.env("KEYGATE_PEPPER_VERSION", "2");
    assert_eq!(cmd.output().unwrap().status.code(), Some(OK));

    let usage = cli
        .with_pepper(None)
        .run(&["pepper", "usage"])
        .expect_code(OK);
    assert_eq!(usage.stdout, "1 2\n2 1\n");
    assert!(
        usage.stderr.contains("2 server-key version(s)"),
        "{}",
        usage.stderr
    );
    let listed = cli
        .run(&["token", "list", "--key-version", "1", "--json"])
        .expect_code(OK);
    let mut ids: Vec<_> = json(&listed)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["old-1", "old-2"]);
    cli.run(&["token", "list", "--key-version", "x"])
        .expect_code(USAGE);
}
