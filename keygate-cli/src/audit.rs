//! The operator's audit trail.
//!
//! The library reports every change and every refused verification to its audit sink; the
//! command line keeps the library's own sink, [`TracingSink`] (OWASP event names, target
//! `keygate::audit`), and only names the actor: an event the library attributes to `system`
//! (a direct call, which is what the command line makes) is recorded with
//! `actor = cli:<user>`, the user from `$USER` or `$LOGNAME` (`cli:unknown` without either).
//! Events made on behalf of a token (`token update --as-token`) keep `actor = token:<id>`.
//!
//! A tracing subscriber installed by [`init`] writes those events, and nothing else of the
//! library's, to stderr as text, or appends them to the file named by `--audit-log`
//! (`KEYGATE_AUDIT_LOG`) as JSON lines. The file is opened before anything else happens: a
//! file that cannot be opened fails the command (exit 2) with nothing changed. Events never
//! hold a token, a secret, a digest or a server key.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use keygate::audit::{AuditEvent, AuditSink, TracingSink};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::fail::Failure;

/// Longest user name recorded.
const MAX_USER: usize = 64;

/// The library's sink, with the command line's operator as the actor of direct calls.
pub(crate) struct OperatorSink {
    actor: String,
}

impl OperatorSink {
    /// The sink for the operator named by the environment.
    pub(crate) fn from_env() -> Self {
        OperatorSink {
            actor: format!("cli:{}", user()),
        }
    }
}

impl AuditSink for OperatorSink {
    fn record(&self, event: &AuditEvent) {
        if event.actor.as_deref() == Some("system") {
            let mut event = event.clone();
            event.actor = Some(self.actor.clone());
            TracingSink.record(&event);
        } else {
            TracingSink.record(event);
        }
    }
}

/// `$USER`, else `$LOGNAME`, else `unknown`; only `A-Za-z0-9._@-` kept (others become `_`),
/// at most 64 characters, so that a crafted variable cannot forge an audit line.
fn user() -> String {
    let raw = ["USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    raw.trim()
        .chars()
        .take(MAX_USER)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Installs the subscriber: audit events to `file` (appended, JSON lines) or to stderr.
pub(crate) fn init(file: Option<&Path>) -> Result<(), Failure> {
    let only_audit = Targets::new().with_target("keygate::audit", tracing::Level::INFO);
    match file {
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    Failure::usage(format!(
                        "cannot open the audit log {}: {e}; nothing was changed",
                        path.display()
                    ))
                })?;
            let layer = tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_writer(Mutex::new(file));
            tracing_subscriber::registry()
                .with(layer.with_filter(only_audit))
                .try_init()
        }
        None => {
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(std::io::stderr);
            tracing_subscriber::registry()
                .with(layer.with_filter(only_audit))
                .try_init()
        }
    }
    .map_err(|e| Failure::usage(format!("cannot install the audit log: {e}")))
}
