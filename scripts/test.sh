#!/usr/bin/env bash
# Runs every test of the workspace (the keygate library and the keygate-cli command line):
# sets up what the tests need (PostgreSQL running, cargo-nextest), then unit, integration
# and doc tests with all features.
set -euo pipefail
cd "$(dirname "$0")/.."

# PostgreSQL for the PostgreSQL store tests (trust auth on 127.0.0.1:5432).
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  if [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
  fi
fi
export KEYGATE_TEST_POSTGRES_URL="${KEYGATE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi

cargo nextest run --workspace --all-features --no-fail-fast
cargo test --workspace --doc --all-features
