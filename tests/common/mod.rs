//! Helpers shared by integration tests (`mod common;` in a test file).
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    reason = "shared test helpers: not every test file uses every helper"
)]

pub mod log_capture;
