#!/usr/bin/env bash
# Instructions per verification under callgrind, keygate against the floor, at the token
# counts given (default: 1000 100000). Counts are exact for a binary and its inputs, so the
# ratio holds on a busy machine. Needs valgrind.
#
#   benches/verify_instructions.sh [TOKENS...]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(cargo bench --bench verify_instructions --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "verify_instructions" and m.get("executable"):
        print(m["executable"])')
rounds_probes=$((10 * 1000))
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
instructions() { # MODE TOKENS -> instructions per verification
  KEYGATE_BENCH_TOKENS=$2 valgrind --tool=callgrind --toggle-collect='*verify_instructions*measured*' \
    --callgrind-out-file="$out/cg" "$bin" "$1" >/dev/null 2>&1
  awk -v n="$rounds_probes" '/^summary:|^totals:/ { print int($2 / n); exit }' "$out/cg"
}
# The ratio is to the floor's valid verification (its unknown id skips the HMAC).
printf '%-10s %-22s %14s %8s\n' tokens case "instr/verify" "x floor"
for tokens in "${@:-1000 100000}"; do
  for tokens_n in $tokens; do # word-split the default
    fv=$(instructions floor-valid "$tokens_n")
    fu=$(instructions floor-unknown "$tokens_n")
    printf '%-10s %-22s %14s %8s\n' "$tokens_n" "floor valid" "$fv" "1.00"
    printf '%-10s %-22s %14s %8s\n' "$tokens_n" "floor unknown id" "$fu" "$(awk -v a="$fu" -v b="$fv" 'BEGIN{printf "%.2f", a/b}')"
    for case in valid unknown wrong-secret; do
      k=$(instructions "keygate-$case" "$tokens_n")
      printf '%-10s %-22s %14s %8s\n' "$tokens_n" "keygate $case" "$k" "$(awk -v a="$k" -v b="$fv" 'BEGIN{printf "%.2f", a/b}')"
    done
  done
done
