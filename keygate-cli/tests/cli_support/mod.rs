//! Run the real `keygate` binary against a database: a SQLite file in a temporary
//! directory, or a fresh schema on the PostgreSQL server named by
//! `KEYGATE_TEST_POSTGRES_URL`. Reusable by any test that needs tokens made by the command
//! line (e.g. against the example service): build a [`Cli`], `migrate`, then
//! [`Cli::create_token`].
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers, not all used by every test binary; they panic on setup failure"
)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use keygate::{
    PostgresStore, ServerKey, SqliteStore, TokenManager, digest::Keyring, store::TokenStore,
};

/// Every environment variable the binary reads; cleared so the caller's environment
/// cannot leak into a test.
const BINARY_ENV: &[&str] = &[
    "KEYGATE_DATABASE_URL",
    "KEYGATE_DATABASE_SCHEMA",
    "KEYGATE_PEPPER",
    "KEYGATE_PEPPER_VERSION",
    "KEYGATE_TOKEN_PREFIX",
    "KEYGATE_MAX_LIFETIME",
    "KEYGATE_REQUIRE_EXPIRY",
    "KEYGATE_AUDIT_LOG",
];

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_keygate")
}

/// How to run the binary: the database (URL and, for PostgreSQL, a schema) and the server
/// key, passed through the environment as an operator would.
#[derive(Clone, Debug)]
pub struct Cli {
    pub url: String,
    pub schema: Option<String>,
    pub pepper: Option<String>,
}

/// What a run produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Self {
        Run {
            // A signal (no code) never equals an expected exit code.
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
        }
    }

    /// Panics with both streams unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "expected exit code {code}\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panics unless the run failed with `code`, printed nothing on stdout, and said
    /// `message` (among other things) on stderr.
    #[track_caller]
    pub fn expect_failure(self, code: i32, message: &str) -> Self {
        let run = self.expect_code(code);
        assert_eq!(run.stdout, "", "a failure prints nothing on stdout");
        assert!(
            run.stderr.contains(message),
            "stderr should mention {message:?}: {}",
            run.stderr
        );
        run
    }
}

impl Cli {
    /// A SQLite database file (not yet created) at `path`, with a fresh server key.
    pub fn sqlite(path: &Path) -> Self {
        Cli {
            url: format!("sqlite:{}", path.display()),
            schema: None,
            pepper: Some(new_pepper()),
        }
    }

    /// A PostgreSQL database at `url`, tables in `schema`, with a fresh server key.
    pub fn postgres(url: &str, schema: &str) -> Self {
        Cli {
            url: url.to_owned(),
            schema: Some(schema.to_owned()),
            pepper: Some(new_pepper()),
        }
    }

    /// The same, with another (or no) server key.
    pub fn with_pepper(&self, pepper: Option<&str>) -> Self {
        Cli {
            pepper: pepper.map(str::to_owned),
            ..self.clone()
        }
    }

    /// The same, with another database URL.
    pub fn with_url(&self, url: &str) -> Self {
        Cli {
            url: url.to_owned(),
            ..self.clone()
        }
    }

    /// A command for the binary with this configuration in its environment, and nothing
    /// else of keygate's.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary());
        for var in BINARY_ENV {
            cmd.env_remove(var);
        }
        cmd.env("KEYGATE_DATABASE_URL", &self.url);
        if let Some(schema) = &self.schema {
            cmd.env("KEYGATE_DATABASE_SCHEMA", schema);
        }
        if let Some(pepper) = &self.pepper {
            cmd.env("KEYGATE_PEPPER", pepper);
        }
        cmd.args(args);
        cmd
    }

    /// Runs with `args` and an empty stdin.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, "")
    }

    /// Runs with `args`, writing `stdin` to the process.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        run_command(self.command(args), stdin)
    }

    /// `keygate migrate`, which must succeed.
    pub fn migrate(&self) {
        self.run(&["migrate"]).expect_code(0);
    }

    /// `keygate token create NAME ARGS...`, which must succeed; returns the token.
    pub fn create_token(&self, name: &str, args: &[&str]) -> String {
        let mut all = vec!["token", "create", name];
        all.extend_from_slice(args);
        let run = self.run(&all).expect_code(0);
        let token = run
            .stdout
            .strip_suffix('\n')
            .expect("the token ends with a newline");
        assert!(!token.contains('\n'), "stdout holds only the token");
        assert!(
            !run.stderr.contains(token),
            "the token must never be written to stderr"
        );
        token.to_owned()
    }

    /// `keygate token verify` with `token` on stdin.
    pub fn verify(&self, token: &str) -> Run {
        self.run_with_stdin(&["token", "verify"], &format!("{token}\n"))
    }

    /// The store the binary uses, opened through the library.
    pub async fn store(&self) -> std::sync::Arc<dyn TokenStore> {
        match &self.schema {
            Some(schema) => std::sync::Arc::new(
                PostgresStore::connect(&self.url)
                    .await
                    .expect("connect to PostgreSQL")
                    .with_schema(schema)
                    .expect("schema name"),
            ),
            None => std::sync::Arc::new(
                SqliteStore::connect(&self.url)
                    .await
                    .expect("open the SQLite file"),
            ),
        }
    }

    /// A manager over the same store with the same server key (version 1, prefix `kg`),
    /// as a service would build it.
    pub async fn manager(&self) -> TokenManager {
        let pepper = self.pepper.as_deref().expect("a pepper");
        TokenManager::builder(self.store().await)
            .keyring(Keyring::new(
                1,
                ServerKey::decode(pepper).expect("valid pepper"),
            ))
            .build()
            .expect("manager")
    }
}

/// Runs `cmd` (from [`Cli::command`], perhaps with more environment), writing `stdin` to the
/// process, stdout and stderr captured.
pub fn run_command(mut cmd: Command, stdin: &str) -> Run {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start keygate");
    // The binary may exit without reading (bad input): ignore a broken pipe.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    Run::from(child.wait_with_output().expect("wait for keygate"))
}

/// A fresh server key, hex, as `keygate pepper generate` prints it.
pub fn new_pepper() -> String {
    ServerKey::generate().expose_hex().to_string()
}

/// Runs a future to completion on a runtime of its own (the tests themselves are
/// synchronous: they run processes).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// The PostgreSQL test server, or `None` (with a message) when it is not configured. Under
/// `KEYGATE_REQUIRE_DB=1` a missing database fails the test instead.
pub fn postgres_url() -> Option<String> {
    match std::env::var("KEYGATE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                !std::env::var("KEYGATE_REQUIRE_DB").is_ok_and(|v| v == "1"),
                "KEYGATE_REQUIRE_DB=1 but KEYGATE_TEST_POSTGRES_URL is not set"
            );
            eprintln!(
                "SKIPPED: set KEYGATE_TEST_POSTGRES_URL (e.g. \
                 postgres://postgres@127.0.0.1:5432/test) to run the PostgreSQL tests"
            );
            None
        }
    }
}

/// A schema with a random name (not created: `keygate migrate` creates it), dropped when
/// this value is dropped, also when the test panics.
pub struct PgSchema {
    pub url: String,
    pub name: String,
}

impl PgSchema {
    /// `None` if no database is configured (see [`postgres_url`]).
    pub fn new() -> Option<Self> {
        let url = postgres_url()?;
        let mut b = [0u8; 6];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
        Some(PgSchema {
            url,
            name: format!("kg_cli_{}", hex::encode(b)),
        })
    }

    /// A [`Cli`] on this schema with a fresh server key.
    pub fn cli(&self) -> Cli {
        Cli::postgres(&self.url, &self.name)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name);
        let url = self.url.clone();
        // Dropping may happen while unwinding inside `block_on`: use a thread of its own.
        let _ = std::thread::spawn(move || {
            block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&url).await {
                    let _ = sqlx::query(&sql).execute(&pool).await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}
