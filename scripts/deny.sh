#!/usr/bin/env bash
# Supply chain: cargo-deny checks licenses, bans and sources of the workspace's dependency graph
# (deny.toml). Installs cargo-deny with `cargo install --locked` when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo deny --version >/dev/null 2>&1; then
  cargo install cargo-deny --locked
fi
cargo deny --workspace --all-features check licenses bans sources
