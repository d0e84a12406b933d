//! Confirmation of destructive changes.
//!
//! `token revoke`, `token delete`, `token disable` of more than one token, and any change that
//! would leave the store without an active token holding `*` are destructive. They go ahead
//! only when confirmed: by `--yes`, or, when stdin is a terminal, by answering `y` (or `yes`)
//! to a question on stderr. Anything else changes nothing and exits 2: an empty or other
//! answer, end of input, or stdin that is not a terminal without `--yes` (a script must say
//! what it means). The question is asked after every id was checked and before anything is
//! changed. `prune` asks nothing: without `--yes` it is a dry run that only counts.

use std::io::{BufRead, IsTerminal, Write};

use crate::fail::Failure;

/// Longest answer read (an answer is a word).
const MAX_ANSWER: u64 = 256;

/// How destructive changes are confirmed for this run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Confirm {
    /// `--yes` was given.
    pub(crate) yes: bool,
}

impl Confirm {
    /// `Ok` if `question` (e.g. `revoke 3 tokens (a, b, c)`) is confirmed, else a usage
    /// failure saying nothing was changed.
    pub(crate) fn ask(self, question: &str) -> Result<(), Failure> {
        if self.yes {
            return Ok(());
        }
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Err(Failure::usage(format!(
                "{question}: needs confirmation, and stdin is not a terminal: pass --yes; \
                 nothing was changed"
            )));
        }
        {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "keygate: {question}? [y/N] ");
            let _ = err.flush();
        }
        let mut answer = Vec::new();
        std::io::Read::take(stdin.lock(), MAX_ANSWER)
            .read_until(b'\n', &mut answer)
            .map_err(|e| Failure::usage(format!("cannot read the answer: {e}")))?;
        let answer = String::from_utf8_lossy(&answer);
        match answer.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => Ok(()),
            _ => Err(Failure::usage("not confirmed; nothing was changed")),
        }
    }
}

/// `1 token (a)` / `3 tokens (a, b, c)`: the ids of a question, at most ten of them.
pub(crate) fn tokens<T: std::fmt::Display>(ids: &[T]) -> String {
    let shown: Vec<String> = ids.iter().take(10).map(|id| id.to_string()).collect();
    let more = if ids.len() > shown.len() {
        format!(" and {} more", ids.len() - shown.len())
    } else {
        String::new()
    };
    let noun = if ids.len() == 1 { "token" } else { "tokens" };
    format!("{} {noun} ({}{more})", ids.len(), shown.join(", "))
}
