//! Failures and exit codes. Every message goes to stderr; none holds a token, a server key
//! or a database URL.

use std::fmt;
use std::process::ExitCode;

/// Success.
pub(crate) const EXIT_OK: u8 = 0;
/// `token verify`: the token is not valid.
pub(crate) const EXIT_INVALID: u8 = 1;
/// Usage or bad input; nothing was changed. Also clap's code for usage errors.
pub(crate) const EXIT_USAGE: u8 = 2;
/// The database is unreachable, failed or is not migrated; nothing was changed.
pub(crate) const EXIT_STORE: u8 = 3;
/// The result could not be written to stdout.
pub(crate) const EXIT_OUTPUT: u8 = 4;

/// A failed command: what to tell the operator, and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// Bad input (exit 2).
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(EXIT_USAGE, message)
    }

    /// The store has no keygate tables (exit 3).
    pub(crate) fn not_migrated(message: String) -> Self {
        Self::new(EXIT_STORE, message)
    }

    /// A store failure (exit 3), with its causes.
    pub(crate) fn store(e: keygate::error::StoreError) -> Self {
        Self::new(
            EXIT_STORE,
            format!("database unreachable or failed: {}", chain(&e)),
        )
    }

    /// Maps a library error: invalid input and refused changes are exit 2, store failures
    /// and concurrent changes exit 3.
    pub(crate) fn from_error(e: keygate::Error) -> Self {
        use keygate::Error as E;
        match e {
            E::Store(e) => Self::store(e),
            E::Conflict(_) => Self::new(EXIT_STORE, format!("{e}; nothing was changed, retry")),
            e => Self::usage(chain(&e)),
        }
    }

    /// Writing to stdout failed (exit 4).
    pub(crate) fn output(what: &str, e: &std::io::Error) -> Self {
        Self::new(EXIT_OUTPUT, format!("cannot write {what} to stdout: {e}"))
    }

    /// The exit code.
    pub(crate) fn code(&self) -> u8 {
        self.code
    }

    /// Prints `keygate: error: ...` to stderr and returns the exit code.
    pub(crate) fn report(&self) -> ExitCode {
        eprintln!("keygate: error: {self}");
        ExitCode::from(self.code)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// An error and its sources, `: `-separated, skipping a source whose text its parent
/// already ends with.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
