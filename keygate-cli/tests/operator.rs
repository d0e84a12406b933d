//! What an operator meets: `token update` (each field, and its refusals: unknown id, the
//! lifetime policy, escalation through an acting token, the last `*` token), confirmation
//! of destructive commands with and without a terminal (a real pseudo-terminal), shell
//! completions, the man page, the table's alignment on wide characters, and the audit
//! trail. Runs the real binary against a SQLite file and PostgreSQL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod cli_support;

use cli_support::{Cli, PgSchema, Run, binary, block_on, run_command};
use keygate::{Projects, Scope, TokenId, TokenRecord, TokenStatus, scope::ProjectId};
use unicode_width::UnicodeWidthStr;

const OK: i32 = 0;
const USAGE: i32 = 2;

fn record(cli: &Cli, id: &str) -> TokenRecord {
    block_on(async {
        cli.manager()
            .await
            .get(&TokenId::new(id).unwrap())
            .await
            .expect("get")
    })
}

fn sqlite(dir: &tempfile::TempDir) -> Cli {
    let cli = Cli::sqlite(&dir.path().join("keygate.db"));
    cli.migrate();
    cli
}

/// Asserts that a refused run changed nothing: same version, same record.
#[track_caller]
fn unchanged(cli: &Cli, before: &TokenRecord) {
    assert_eq!(
        &record(cli, before.id.as_str()),
        before,
        "nothing may change"
    );
}

// ----- token update -------------------------------------------------------------------------

fn update_each_field(cli: &Cli) {
    cli.migrate();
    cli.create_token("root", &["--id", "root", "--admin"]);
    let token = cli.create_token(
        "deploy",
        &[
            "--id",
            "deploy",
            "--scope",
            "a:read",
            "--description",
            "old",
        ],
    );

    let run = cli
        .run(&["token", "update", "deploy", "--name", "deploy 2"])
        .expect_code(OK);
    assert_eq!(
        run.stdout, "",
        "an update prints nothing on stdout without --json"
    );
    assert!(
        run.stderr.contains("  name: \"deploy\" -> \"deploy 2\"\n"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("description:"),
        "only what changed: {}",
        run.stderr
    );
    assert!(!run.stderr.contains(&token), "never the secret");
    assert_eq!(record(cli, "deploy").name, "deploy 2");

    let run = cli
        .run(&["token", "update", "deploy", "--description", ""])
        .expect_code(OK);
    assert!(
        run.stderr.contains("  description: \"old\" -> \"\"\n"),
        "{}",
        run.stderr
    );
    assert_eq!(record(cli, "deploy").description, "");

    let run = cli
        .run(&[
            "token", "update", "deploy", "--scope", "a:write", "--scope", "b:read",
        ])
        .expect_code(OK);
    assert!(
        run.stderr.contains("  scopes: a:read -> a:write,b:read\n"),
        "{}",
        run.stderr
    );
    let r = record(cli, "deploy");
    assert!(r.scopes.contains(&Scope::new("b:read").unwrap()) && r.scopes.len() == 2);

    let run = cli
        .run(&[
            "token",
            "update",
            "deploy",
            "--project",
            "web",
            "--project",
            "api",
        ])
        .expect_code(OK);
    assert!(
        run.stderr.contains("  projects: all -> api,web\n"),
        "{}",
        run.stderr
    );
    assert_eq!(
        record(cli, "deploy").projects,
        Projects::Only(
            ["web", "api"]
                .into_iter()
                .map(|p| ProjectId::new(p).unwrap())
                .collect()
        )
    );
    cli.run(&["token", "update", "deploy", "--all-projects"])
        .expect_code(OK);
    assert_eq!(record(cli, "deploy").projects, Projects::All);

    let run = cli
        .run(&[
            "token",
            "update",
            "deploy",
            "--expires",
            "2030-01-31T00:00:00Z",
        ])
        .expect_code(OK);
    assert!(
        run.stderr.contains("-> 2030-01-31T00:00:00Z\n"),
        "{}",
        run.stderr
    );
    assert_eq!(
        record(cli, "deploy").expiry.at().unwrap().to_rfc3339(),
        "2030-01-31T00:00:00+00:00"
    );
    cli.run(&["token", "update", "deploy", "--expires", "never"])
        .expect_code(OK);
    assert_eq!(record(cli, "deploy").expiry, keygate::Expiry::Never);

    cli.run(&["token", "update", "deploy", "--no-scopes"])
        .expect_code(OK);
    assert!(record(cli, "deploy").scopes.is_empty());
    cli.run(&["token", "update", "deploy", "--admin"])
        .expect_code(OK);
    assert!(record(cli, "deploy").scopes.is_admin());

    // Several fields at once, the record view on stdout with --json.
    let run = cli
        .run(&[
            "token", "update", "deploy", "--name", "d3", "--scope", "c:read", "--json",
        ])
        .expect_code(OK);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["name"], "d3");
    assert_eq!(v["scopes"], serde_json::json!(["c:read"]));
    assert!(!run.stdout.contains(&token) && !run.stdout.contains("digest"));

    // The same settings again: nothing changes, the version stays.
    let before = record(cli, "deploy");
    let run = cli
        .run(&["token", "update", "deploy", "--name", "d3"])
        .expect_code(OK);
    assert!(run.stderr.contains("unchanged"), "{}", run.stderr);
    unchanged(cli, &before);

    // The token still verifies with its old secret: an update is not a rotation.
    assert!(cli.verify(&token).code == OK);
}

fn update_refusals(cli: &Cli) {
    cli.migrate();
    cli.create_token("root", &["--id", "root", "--admin"]);
    cli.create_token("t", &["--id", "t", "--scope", "a:read", "--expires", "7d"]);
    let before = record(cli, "t");

    cli.run(&["token", "update", "nope", "--name", "x"])
        .expect_failure(USAGE, "not found");
    cli.run(&["token", "update", "t"])
        .expect_failure(USAGE, "required");
    cli.run(&["token", "update", "t", "--name", ""])
        .expect_failure(USAGE, "name");
    cli.run(&["token", "update", "t", "--expires", "2001-01-01T00:00:00Z"])
        .expect_failure(USAGE, "future");
    cli.run(&["token", "update", "t", "--scope", "Bad Scope"])
        .expect_failure(USAGE, "--scope");
    unchanged(cli, &before);

    // The service's lifetime policy, told to the command line, holds for updates too, and
    // counts from issue: moving a 7-day token to 60 days breaks a 30-day cap.
    cli.run(&[
        "--max-lifetime",
        "30d",
        "token",
        "update",
        "t",
        "--expires",
        "60d",
    ])
    .expect_failure(USAGE, "lifetime exceeds the maximum of 30 days");
    let mut with_env = cli.command(&["token", "update", "t", "--expires", "never"]);
    with_env.env("KEYGATE_REQUIRE_EXPIRY", "true");
    run_command(with_env, "").expect_failure(USAGE, "an expiry is required");
    unchanged(cli, &before);
    cli.run(&[
        "--max-lifetime",
        "30d",
        "token",
        "update",
        "t",
        "--expires",
        "20d",
    ])
    .expect_code(OK);
    let before = record(cli, "t");

    // Acting as a token (read from stdin), the admin API's delegation rules hold.
    let actor = cli.create_token(
        "actor",
        &[
            "--id",
            "actor",
            "--scope",
            "tokens:write",
            "--scope",
            "a:*",
            "--expires",
            "30d",
        ],
    );
    let as_actor = |args: &[&str]| {
        let mut all = vec!["token", "update", "--as-token", "--yes"];
        all.extend_from_slice(args);
        cli.run_with_stdin(&all, &format!("{actor}\n"))
    };
    as_actor(&["t", "--scope", "b:read"]).expect_failure(USAGE, "missing scope `b:read`");
    as_actor(&["t", "--admin"]).expect_failure(USAGE, "missing scope `*`");
    as_actor(&["t", "--expires", "never"]).expect_failure(USAGE, "expiry beyond");
    as_actor(&["t", "--expires", "90d"]).expect_failure(USAGE, "expiry beyond");
    as_actor(&["root", "--name", "mine"]).expect_failure(USAGE, "not found");
    unchanged(cli, &before);
    let run = as_actor(&["t", "--scope", "a:write"]).expect_code(OK);
    assert!(
        run.stderr.contains("actor=\"token:actor\""),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(&actor), "never the acting token");
    // A token without tokens:write may not change tokens at all, and a bad token is refused.
    let reader = cli.create_token("reader", &["--id", "reader", "--scope", "a:*"]);
    let t = record(cli, "t");
    cli.run_with_stdin(
        &["token", "update", "--as-token", "t", "--name", "x"],
        &format!("{reader}\n"),
    )
    .expect_failure(USAGE, "may not change tokens");
    cli.run_with_stdin(
        &["token", "update", "--as-token", "t", "--name", "x"],
        "kg_nope_xxxxxxxx\n",
    )
    .expect_failure(USAGE, "the acting token is not valid");
    unchanged(cli, &t);

    // A revoked token cannot be changed.
    cli.run(&["token", "revoke", "--yes", "t"]).expect_code(OK);
    cli.run(&["token", "update", "t", "--name", "x"])
        .expect_failure(USAGE, "revoked");

    // Narrowing the last `*` token needs confirmation; with it, it goes through.
    let root = record(cli, "root");
    let run = cli
        .run(&["token", "update", "root", "--scope", "a:read"])
        .expect_failure(USAGE, "no active token with the `*` scope");
    assert!(run.stderr.contains("pass --yes"), "{}", run.stderr);
    unchanged(cli, &root);
    cli.run(&["token", "update", "root", "--scope", "a:read", "--yes"])
        .expect_code(OK);
    assert!(!record(cli, "root").scopes.is_admin());
}

#[test]
fn sqlite_update_each_field() {
    let dir = tempfile::tempdir().unwrap();
    update_each_field(&Cli::sqlite(&dir.path().join("k.db")));
}

#[test]
fn sqlite_update_refusals() {
    let dir = tempfile::tempdir().unwrap();
    update_refusals(&Cli::sqlite(&dir.path().join("k.db")));
}

#[test]
fn postgres_update_each_field() {
    let Some(pg) = PgSchema::new() else { return };
    update_each_field(&pg.cli());
}

#[test]
fn postgres_update_refusals() {
    let Some(pg) = PgSchema::new() else { return };
    update_refusals(&pg.cli());
}

// ----- confirmation -------------------------------------------------------------------------

fn status(cli: &Cli, id: &str) -> TokenStatus {
    record(cli, id).status
}

fn confirmation_without_a_terminal(cli: &Cli) {
    cli.migrate();
    cli.create_token("root", &["--id", "root", "--admin"]);
    cli.create_token("a", &["--id", "a"]);
    cli.create_token("b", &["--id", "b"]);
    let (a, b) = (record(cli, "a"), record(cli, "b"));

    for args in [
        &["token", "revoke", "a"][..],
        &["token", "revoke", "a", "b"],
        &["token", "delete", "a"],
        &["token", "disable", "a", "b"],
        &["token", "revoke", "root", "a", "b"],
    ] {
        let run = cli.run(args).expect_failure(USAGE, "pass --yes");
        assert!(run.stderr.contains("nothing was changed"), "{}", run.stderr);
    }
    // Even a "y" piped in is no confirmation: only a terminal's answer, or --yes, is.
    cli.run_with_stdin(&["token", "revoke", "a"], "y\n")
        .expect_failure(USAGE, "stdin is not a terminal");
    unchanged(cli, &a);
    unchanged(cli, &b);
    assert_eq!(status(cli, "root"), TokenStatus::Active);

    // Not destructive: one disable, enable; no question.
    cli.run(&["token", "disable", "a"]).expect_code(OK);
    cli.run(&["token", "enable", "a", "b"]).expect_code(OK);
    // With --yes, anywhere on the line, or -y.
    cli.run(&["token", "disable", "a", "b", "--yes"])
        .expect_code(OK);
    cli.run(&["--yes", "token", "revoke", "a"]).expect_code(OK);
    cli.run(&["token", "delete", "-y", "b"]).expect_code(OK);
    assert_eq!(status(cli, "a"), TokenStatus::Revoked);
    assert!(cli.run(&["token", "show", "b"]).code == USAGE);

    // Retiring the last `*` token says so, and needs --yes too.
    cli.run(&["token", "disable", "root"])
        .expect_failure(USAGE, "no active token with the `*` scope");
    assert_eq!(status(cli, "root"), TokenStatus::Active);
    cli.run(&["token", "disable", "root", "--yes"])
        .expect_code(OK);
    assert_eq!(status(cli, "root"), TokenStatus::Disabled);
}

#[test]
fn sqlite_confirmation_without_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    confirmation_without_a_terminal(&Cli::sqlite(&dir.path().join("k.db")));
}

#[test]
fn postgres_confirmation_without_a_terminal() {
    let Some(pg) = PgSchema::new() else { return };
    confirmation_without_a_terminal(&pg.cli());
}

/// Runs `args` on a pseudo-terminal, waits for the question, answers `answer`, and returns
/// the exit code and everything the terminal showed.
fn on_a_terminal(cli: &Cli, args: &[&str], question: &str, answer: &str) -> (i32, String) {
    use rexpect::process::wait::WaitStatus;
    let mut session = rexpect::session::spawn_command(cli.command(args), Some(20_000))
        .expect("start keygate on a pseudo-terminal");
    let shown = session.exp_string(question).expect("the question");
    session.send_line(answer).expect("answer");
    let rest = session.exp_eof().expect("the end");
    let code = match session.process.wait().expect("wait") {
        WaitStatus::Exited(_, code) => code,
        other => panic!("keygate did not exit: {other:?}"),
    };
    (code, format!("{shown}{question}{rest}"))
}

fn confirmation_on_a_terminal(cli: &Cli) {
    cli.migrate();
    cli.create_token("root", &["--id", "root", "--admin"]);
    cli.create_token("a", &["--id", "a"]);
    cli.create_token("b", &["--id", "b"]);
    let a = record(cli, "a");

    for answer in ["n", "", "no", "yes please"] {
        let (code, shown) = on_a_terminal(
            cli,
            &["token", "revoke", "a", "b"],
            "revoke 2 tokens (a, b)? [y/N] ",
            answer,
        );
        assert_eq!(code, USAGE, "{shown}");
        assert!(
            shown.contains("not confirmed; nothing was changed"),
            "{shown}"
        );
    }
    unchanged(cli, &a);
    let (code, shown) = on_a_terminal(
        cli,
        &["token", "delete", "a"],
        "delete 1 token (a)? [y/N] ",
        "N",
    );
    assert_eq!(code, USAGE, "{shown}");
    unchanged(cli, &a);

    let (code, shown) = on_a_terminal(
        cli,
        &["token", "revoke", "a", "b"],
        "revoke 2 tokens (a, b)? [y/N] ",
        "y",
    );
    assert_eq!(code, OK, "{shown}");
    assert_eq!(
        (status(cli, "a"), status(cli, "b")),
        (TokenStatus::Revoked, TokenStatus::Revoked)
    );

    // The last `*` token: the question says so; a refusal keeps it, a yes overrides the
    // manager's guard.
    let question = "revoke 1 token (root), leaving no active token with the `*` scope";
    let (code, shown) = on_a_terminal(cli, &["token", "revoke", "root"], question, "n");
    assert_eq!(code, USAGE, "{shown}");
    assert_eq!(status(cli, "root"), TokenStatus::Active);
    let (code, shown) = on_a_terminal(cli, &["token", "revoke", "root"], question, "YES");
    assert_eq!(code, OK, "{shown}");
    assert_eq!(status(cli, "root"), TokenStatus::Revoked);
}

#[test]
fn sqlite_confirmation_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    confirmation_on_a_terminal(&Cli::sqlite(&dir.path().join("k.db")));
}

#[test]
fn postgres_confirmation_on_a_terminal() {
    let Some(pg) = PgSchema::new() else { return };
    confirmation_on_a_terminal(&pg.cli());
}

// ----- completions, man page ----------------------------------------------------------------

fn plain(args: &[&str]) -> Run {
    run_command(
        {
            let mut c = std::process::Command::new(binary());
            c.args(args).env_remove("KEYGATE_DATABASE_URL");
            c
        },
        "",
    )
}

#[test]
fn completions_for_every_shell_and_bash_parses_them() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let run = plain(&["completions", shell]).expect_code(OK);
        for word in ["token", "update", "revoke", "yes", "audit-log"] {
            assert!(run.stdout.contains(word), "{shell} completions lack {word}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keygate.bash");
    std::fs::write(&path, plain(&["completions", "bash"]).stdout).unwrap();
    let out = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    plain(&["completions", "tcsh"]).expect_failure(USAGE, "invalid value");
}

/// `man -l` renders a page to plain text (no pager, no formatting codes).
fn man(page: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keygate.1");
    std::fs::write(&path, page).unwrap();
    let out = std::process::Command::new("man")
        .arg("-l")
        .arg(&path)
        .env("MANWIDTH", "100")
        .env_remove("MAN_KEEP_FORMATTING")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .output()
        .expect("man (man-db) is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn man_pages_render() {
    let page = man(&plain(&["man"]).expect_code(OK).stdout);
    for text in [
        "NAME",
        "keygate",
        "SYNOPSIS",
        "--database-url",
        "Exit codes",
        "--yes",
    ] {
        assert!(page.contains(text), "the man page lacks {text}:\n{page}");
    }
    let page = man(&plain(&["man", "token", "update"]).expect_code(OK).stdout);
    for text in ["keygate-token-update", "--name", "--as-token", "--expires"] {
        assert!(page.contains(text), "the page lacks {text}:\n{page}");
    }
    plain(&["man", "token", "nope"]).expect_failure(USAGE, "no command `nope`");
}

// ----- the table ----------------------------------------------------------------------------

#[test]
fn the_table_aligns_wide_names_by_display_width() {
    let dir = tempfile::tempdir().unwrap();
    let cli = sqlite(&dir);
    cli.create_token("東京のデプロイ", &["--id", "cjk", "--owner", "ops"]);
    cli.create_token("🚀 rocket 🎉", &["--id", "emoji", "--owner", "ops"]);
    cli.create_token(
        "e\u{301}te\u{301}",
        &["--id", "combining", "--owner", "ops"],
    );
    cli.create_token("plain", &["--id", "plain", "--owner", "ops"]);
    let run = cli.run(&["token", "list"]).expect_code(OK);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", run.stdout);
    // The display column where OWNER starts in the header holds `ops` in every row.
    let column = |line: &str, word: &str| line[..line.find(word).unwrap()].width();
    let owner = column(lines[0], "OWNER");
    let status = column(lines[0], "STATUS");
    for line in &lines[1..] {
        assert_eq!(
            column(line, " ops ") + 1,
            owner,
            "misaligned:\n{}",
            run.stdout
        );
        assert_eq!(
            column(line, "active"),
            status,
            "misaligned:\n{}",
            run.stdout
        );
    }
}

// ----- audit --------------------------------------------------------------------------------

#[test]
fn a_revoke_is_audited_with_the_operator_as_actor() {
    let dir = tempfile::tempdir().unwrap();
    let cli = sqlite(&dir);
    cli.create_token("root", &["--id", "root", "--admin"]);
    let token = cli.create_token("a", &["--id", "a", "--owner", "alice"]);

    let mut cmd = cli.command(&["token", "revoke", "a", "--yes"]);
    cmd.env("USER", "ops-bob").env("LOGNAME", "other");
    let run = run_command(cmd, "").expect_code(OK);
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("authn_token_revoked"))
        .unwrap_or_else(|| panic!("no audit line for the revoke:\n{}", run.stderr));
    for field in [
        "keygate::audit",
        "event=\"authn_token_revoked\"",
        "token_id=\"a\"",
        "owner=\"alice\"",
        "actor=\"cli:ops-bob\"",
    ] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
    assert!(!run.stderr.contains(&token));

    // To a file, as JSON lines, appended; $LOGNAME without $USER; a crafted name is tamed.
    let log = dir.path().join("audit.jsonl");
    for (id, user) in [("root", None), ("b", Some("eve\"\nforged"))] {
        if id == "b" {
            cli.create_token("b", &["--id", "b"]);
        }
        let mut cmd = cli.command(&["token", "revoke", id, "--yes", "--audit-log"]);
        cmd.arg(&log).env_remove("USER").env("LOGNAME", "carol");
        if let Some(user) = user {
            cmd.env("USER", user);
        }
        let run = run_command(cmd, "").expect_code(OK);
        assert!(!run.stderr.contains("keygate::audit"), "{}", run.stderr);
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.contains("authn_token_revoked"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{text}");
    assert_eq!(events[0]["token_id"], "root");
    assert_eq!(events[0]["actor"], "cli:carol");
    assert_eq!(events[1]["actor"], "cli:eve__forged");
    assert_eq!(text.lines().count(), text.matches('\n').count());

    // An audit log that cannot be opened fails the command before anything changes.
    cli.create_token("c", &["--id", "c"]);
    let c = record(&cli, "c");
    cli.run(&[
        "token",
        "revoke",
        "c",
        "--yes",
        "--audit-log",
        dir.path().join("no/such/dir").to_str().unwrap(),
    ])
    .expect_failure(USAGE, "cannot open the audit log");
    unchanged(&cli, &c);
}
