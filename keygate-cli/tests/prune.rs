//! `keygate prune`: a dry run by default that counts, deletion in batches with `--yes`, each
//! batch audited with the operator as actor; on SQLite and PostgreSQL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod cli_support;

use cli_support::{Cli, PgSchema, block_on};
use keygate::store::{PageRequest, TokenFilter};

const OK: i32 = 0;
const USAGE: i32 = 2;

fn ids(cli: &Cli) -> Vec<String> {
    let mut ids: Vec<String> = block_on(async {
        cli.manager()
            .await
            .list(&TokenFilter::new(), &PageRequest::first(1000))
            .await
            .expect("list")
            .items
    })
    .into_iter()
    .map(|r| r.id.to_string())
    .collect();
    ids.sort();
    ids
}

fn scenario(cli: &Cli) {
    cli.migrate();
    cli.create_token("root", &["--id", "root", "--admin", "--expires", "never"]);
    cli.create_token("short", &["--id", "short", "--expires", "1s"]);
    cli.create_token("gone", &["--id", "gone"]);
    cli.create_token("kept", &["--id", "kept"]);
    cli.run(&["token", "revoke", "gone", "--yes"])
        .expect_code(OK);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let all = ["gone", "kept", "root", "short"];

    // A dry run by default: counts, deletes nothing, audits nothing.
    let run = cli.run(&["prune", "--older-than", "0s"]).expect_code(OK);
    assert!(run.stdout.starts_with("cutoff: "), "{}", run.stdout);
    assert!(run.stdout.ends_with("\nprunable: 2\n"), "{}", run.stdout);
    assert!(
        run.stderr.contains("dry run") && run.stderr.contains("--yes"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("authn_token_pruned"), "{}", run.stderr);
    assert_eq!(ids(cli), all);
    let run = cli.run(&["prune", "--older-than", "1d"]).expect_code(OK);
    assert!(run.stdout.ends_with("\nprunable: 0\n"), "{}", run.stdout);

    // With --yes, in batches of one: two batches, two audit events.
    let run = cli
        .run(&["prune", "--older-than", "0s", "--batch", "1", "--yes"])
        .expect_code(OK);
    assert!(
        run.stdout.ends_with("\ndeleted: 2\nbatches: 2\n"),
        "{}",
        run.stdout
    );
    assert_eq!(
        run.stderr.matches("event=\"authn_token_pruned\"").count(),
        2,
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("actor=\"cli:") || run.stderr.contains("actor=cli:"),
        "{}",
        run.stderr
    );
    assert_eq!(ids(cli), ["kept", "root"]);
    let run = cli
        .run(&["prune", "--older-than", "0s", "--yes"])
        .expect_code(OK);
    assert!(run.stdout.contains("\ndeleted: 0\n"), "{}", run.stdout);

    for bad in [
        vec!["prune"],
        vec!["prune", "--older-than", "90"],
        vec!["prune", "--older-than", "-1d"],
        vec!["prune", "--older-than", "1d", "--batch", "0"],
    ] {
        let run = cli.run(&bad).expect_code(USAGE);
        assert!(run.stdout.is_empty(), "{bad:?}: {}", run.stdout);
    }
    assert_eq!(ids(cli), ["kept", "root"]);
}

#[test]
fn sqlite_prune() {
    let dir = tempfile::tempdir().unwrap();
    scenario(&Cli::sqlite(&dir.path().join("keygate.db")));
}

#[test]
fn postgres_prune() {
    let Some(schema) = PgSchema::new() else {
        return;
    };
    scenario(&schema.cli());
}
