#!/usr/bin/env bash
# Load test on loopback: a bare axum hello handler against the same handler behind keygate's
# RequireToken layer (memory store, a valid token among 10,000). Runs ROUNDS rounds, each a
# bare run then a keygate run of DURATION seconds (alternating, so that background load hits
# both alike), and prints the median requests per second of each and their ratio.
# Bounded: 2 x ROUNDS x DURATION seconds of load plus a 4 s warm-up, then the server stops.
#
#   benches/http_load.sh            # 3 rounds of 10 s per side, 2 threads, 32 connections
#   ROUNDS=5 DURATION=5 CONNECTIONS=64 benches/http_load.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-3}"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-32}"
TARGET_RATIO="${TARGET_RATIO:-0.90}"

if ! command -v wrk >/dev/null 2>&1; then
  apt-get update && apt-get install -y wrk
fi

cargo build --release --features axum --example http_bench
BIN=target/release/examples/http_bench

OUT="$(mktemp)"
KEYGATE_BENCH_ADDR=127.0.0.1:0 "$BIN" >"$OUT" &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; rm -f "$OUT"' EXIT

for _ in $(seq 1 100); do
  grep -q '^TOKEN=' "$OUT" && break
  sleep 0.1
done
ADDR="$(sed -n 's/^ADDR=//p' "$OUT")"
TOKEN="$(sed -n 's/^TOKEN=//p' "$OUT")"
if [ -z "$ADDR" ] || [ -z "$TOKEN" ]; then
  echo "bench server did not start" >&2
  exit 1
fi
case "$ADDR" in
  127.*) ;;
  *) echo "refusing to load a non-loopback address: $ADDR" >&2; exit 1 ;;
esac

# Sanity: the protected route refuses a missing token and accepts the valid one.
check() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
[ "$(check "http://$ADDR/protected")" = 401 ] || { echo "protected route is open" >&2; exit 1; }
[ "$(check -H "Authorization: Bearer $TOKEN" "http://$ADDR/protected")" = 200 ] || {
  echo "valid token refused" >&2; exit 1; }

# CPU time (user + system, in clock ticks) the server has used so far.
server_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER/stat"; }
TICK_US="$(awk -v hz="$(getconf CLK_TCK)" 'BEGIN { print 1000000 / hz }')"

# One wrk run: prints "<requests/sec> <server CPU microseconds per request>".
rps() {
  # wrk prints "Requests/sec:  12345.67"; non-2xx responses would be listed separately.
  local log before after
  before="$(server_ticks)"
  log="$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" "$@")"
  after="$(server_ticks)"
  echo "$log" >&2
  if echo "$log" | grep -q 'Non-2xx'; then
    echo "non-2xx responses during the run" >&2
    exit 1
  fi
  echo "$log" | awk -v t=$((after - before)) -v us="$TICK_US" '
    /requests in/ { n = $1 }
    /^Requests\/sec:/ { r = $2 }
    END { printf "%s %.2f\n", r, t * us / n }'
}

echo "== warm-up" >&2
wrk -t"$THREADS" -c"$CONNECTIONS" -d2s "http://$ADDR/bare" >/dev/null
wrk -t"$THREADS" -c"$CONNECTIONS" -d2s -H "Authorization: Bearer $TOKEN" "http://$ADDR/protected" >/dev/null

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

BARE_RUNS=()
KEYGATE_RUNS=()
BARE_CPU=()
KEYGATE_CPU=()
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round: bare" >&2
  read -r r c < <(rps "http://$ADDR/bare")
  BARE_RUNS+=("$r"); BARE_CPU+=("$c")
  echo "== round $round: keygate" >&2
  read -r r c < <(rps -H "Authorization: Bearer $TOKEN" "http://$ADDR/protected")
  KEYGATE_RUNS+=("$r"); KEYGATE_CPU+=("$c")
done
BARE="$(printf '%s\n' "${BARE_RUNS[@]}" | median)"
KEYGATE="$(printf '%s\n' "${KEYGATE_RUNS[@]}" | median)"
BARE_US="$(printf '%s\n' "${BARE_CPU[@]}" | median)"
KEYGATE_US="$(printf '%s\n' "${KEYGATE_CPU[@]}" | median)"
echo
echo "bare runs (req/s):           ${BARE_RUNS[*]}"
echo "keygate runs (req/s):        ${KEYGATE_RUNS[*]}"
echo "bare server CPU (us/req):    ${BARE_CPU[*]}"
echo "keygate server CPU (us/req): ${KEYGATE_CPU[*]}"

RATIO="$(awk -v k="$KEYGATE" -v b="$BARE" 'BEGIN { printf "%.3f", k / b }')"
echo
echo "bare handler (median):    $BARE req/s"
echo "behind keygate (median):  $KEYGATE req/s"
echo "ratio keygate / bare:  $RATIO (target >= $TARGET_RATIO)"
echo "server CPU per request (median): bare $BARE_US us, keygate $KEYGATE_US us"
awk -v r="$RATIO" -v t="$TARGET_RATIO" 'BEGIN { exit !(r >= t) }' || echo "BELOW TARGET"
