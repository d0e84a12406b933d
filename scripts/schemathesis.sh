#!/usr/bin/env bash
# schemathesis against the example service, with every check, on the loopback only.
#
# Builds and starts examples/server.rs on a free 127.0.0.1 port with a fresh SQLite file and
# a generated pepper, reads the admin token it prints on first start, and runs
# `schemathesis run --checks all` against the served document
# (/api/tokens/openapi.json), authenticating with Bearer tokens that the admin token
# creates (see the hook below). Bounded: at most
# SCHEMATHESIS_MAX_EXAMPLES cases per operation (default 50) and SCHEMATHESIS_MAX_TIME
# seconds (default 300). Exits non-zero on any failure. The server is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-50}"
max_time="${SCHEMATHESIS_MAX_TIME:-300}"

if ! command -v schemathesis >/dev/null 2>&1; then
  echo "installing schemathesis (pip)"
  python3 -m pip install --quiet schemathesis
fi
schemathesis --version

cargo build --quiet --example server --features console,sqlite,postgres,metrics
server_bin="$(cargo metadata --format-version 1 --no-deps | python3 -c \
  'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/examples/server"

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# A free loopback port: bind port 0, read it, release it.
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
base="http://127.0.0.1:${port}"

(
  cd "$work"
  KEYGATE_ADDR="127.0.0.1:${port}" \
  KEYGATE_DATABASE_URL="sqlite:${work}/keygate.db?mode=rwc" \
  KEYGATE_PEPPER="$(python3 -c 'import secrets; print(secrets.token_hex(32))')" \
  RUST_LOG=warn \
    exec "$server_bin" >"$work/stdout" 2>"$work/stderr"
) &
server_pid=$!

# The example prints the admin token once, on the line after "Admin token".
token=""
for _ in $(seq 1 100); do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "the example service exited:"; cat "$work/stderr"; exit 1
  fi
  if [ -f "$work/stdout" ]; then
    token="$(awk '/^Admin token/ {getline; print $1; exit}' "$work/stdout")"
  fi
  [ -n "$token" ] && break
  sleep 0.2
done
[ -n "$token" ] || { echo "no admin token printed:"; cat "$work/stdout" "$work/stderr"; exit 1; }

# The document needs no credentials.
python3 - "$base/api/tokens/openapi.json" <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    assert r.status == 200, r.status
EOF

# The fuzzer disables, revokes, rotates and deletes whatever tokens it can reach, its own
# included. So it never holds the admin token: before each case a hook uses the admin token
# to create a fresh Bearer token for owner `schemathesis` with `tokens:read`,
# `tokens:write` and `tokens:self` (no `tokens:any-owner`). Such a token reaches only tokens
# of its own owner: the admin token stays out of reach, and no case locks the next one out.
cat >"$work/hooks.py" <<'EOF'
import json
import os
import urllib.request

import schemathesis

BASE = os.environ["KEYGATE_ST_BASE"]
ADMIN = os.environ["KEYGATE_ST_ADMIN_TOKEN"]


@schemathesis.auth(refresh_interval=None)
class FreshToken:
    def get(self, case, context):
        body = {
            "name": "schemathesis",
            "owner": "schemathesis",
            "scopes": ["tokens:read", "tokens:write", "tokens:self"],
            "expires": "1d",
        }
        request = urllib.request.Request(
            BASE + "/api/tokens",
            data=json.dumps(body).encode(),
            headers={"Authorization": "Bearer " + ADMIN, "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)["token"]

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = "Bearer " + data


# An expiry instant must lie in the future: a rule no schema can state (it depends on the
# clock), so the document says it in words. A generated case with an instant that is not
# comfortably in the future would be refused with 422 by that rule, which
# tests/http_admin.rs checks; such cases are left out here (in every phase: `filter_case`).
# Every other case is sent.
@schemathesis.hook
def filter_case(context, case):
    from datetime import datetime, timedelta, timezone

    body = case.body
    if not isinstance(body, dict) or not isinstance(body.get("expires"), str):
        return True
    text = body["expires"].strip()
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return True
    if at.tzinfo is None:
        return True
    return at > datetime.now(timezone.utc) + timedelta(minutes=5)
EOF

# A stale `If-Match` tag is well formed, so the fuzzer can send one; the documented answer
# is 412 (the precondition failed), which the check must count as an answer to valid data.
cat >"$work/schemathesis.toml" <<'EOF'
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "429", "5xx"]
EOF

set +e
(
  cd "$work"
  KEYGATE_ST_BASE="$base" KEYGATE_ST_ADMIN_TOKEN="$token" SCHEMATHESIS_HOOKS="$work/hooks.py" \
  schemathesis --no-color --config-file "$work/schemathesis.toml" run "$base/api/tokens/openapi.json" \
    --url "$base" \
    --checks all \
    --max-examples "$max_examples" \
    --max-time "$max_time" \
    --request-timeout 10 \
    --workers 1 \
    --seed "${SCHEMATHESIS_SEED:-1}"
)
status=$?
set -e
if [ "$status" -ne 0 ]; then
  echo "schemathesis failed (exit $status); server log:"
  tail -n 50 "$work/stderr"
fi
exit "$status"
