//! Log capture for tests that check what reaches the logs: a `tracing` subscriber at TRACE
//! writing everything into a buffer, and a search for secrets in every form they could leak.
//!
//! Use from any test file with `mod log_capture;`:
//!
//! ```text
//! let capture = Capture::default();
//! let _guard = tracing::subscriber::set_default(subscriber(&capture));
//! // ... run the service ...
//! let leaks = found(&capture.bytes(), &forms("server key", key_bytes));
//! assert!(leaks.is_empty(), "{leaks:?}");
//! ```
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    reason = "shared test helpers: not every test file uses every helper"
)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tracing_subscriber::fmt::MakeWriter;

/// A `MakeWriter` that appends everything to one shared buffer.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

pub struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = CaptureWriter;
    fn make_writer(&'a self) -> Self::Writer {
        CaptureWriter(Arc::clone(&self.0))
    }
}

impl Capture {
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }
}

pub fn subscriber(capture: &Capture) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .with_target(true)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .finish()
}

/// Every needle found in `haystack` (byte search, so raw key bytes are covered too).
pub fn found<'a>(haystack: &[u8], needles: &'a [(String, Vec<u8>)]) -> Vec<&'a str> {
    needles
        .iter()
        .filter(|(_, n)| !n.is_empty() && haystack.windows(n.len()).any(|w| w == n.as_slice()))
        .map(|(name, _)| name.as_str())
        .collect()
}

/// The forms in which `bytes` could leak: raw, hex (both cases), base64 (standard, URL-safe).
pub fn forms(name: &str, bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    vec![
        (format!("{name} (raw)"), bytes.to_vec()),
        (format!("{name} (hex)"), hex::encode(bytes).into_bytes()),
        (
            format!("{name} (HEX)"),
            hex::encode_upper(bytes).into_bytes(),
        ),
        (format!("{name} (base64)"), b64.into_bytes()),
        (format!("{name} (base64url)"), b64url.into_bytes()),
    ]
}
