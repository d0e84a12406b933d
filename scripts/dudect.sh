#!/usr/bin/env bash
# Statistical timing test (dudect, via the dudect-bencher crate) of TokenManager::verify.
# Not in CI: slow and sensitive to machine noise. Run it on a quiet machine.
#
#   scripts/dudect.sh            # 1,000,000 measurements per class and bench
#   DUDECT_MEASUREMENTS=100000 scripts/dudect.sh
#
# Benches (tools/dudect/src/main.rs):
#   a_secret_first_vs_last_byte   wrong secret differing in the first vs the last character
#   b_unknown_id_vs_wrong_secret  unknown id vs known id with a wrong secret (memory store)
#   c_control_leaky_compare       positive control: verify + an early-exit byte comparison
#   d_info_store_get_unknown_vs_known  informational: the memory store's lookup by id alone,
#                                      miss vs hit (verification looks tokens up by digest)
#   e_info_parse_first_vs_last_byte    informational: bench a's inputs through parse alone
#   f_info_digest_first_vs_last_byte   informational: bench a's inputs through digest + eq alone
#   g_info_same_inputs_noise_floor     informational: both classes drawn the same way (noise floor)
# Pass: |max t| < 4.5 for a and b, and |max t| > 10 for the control (else the run is void).
# Exits non-zero on failure. The full output is kept in tools/target/dudect.log.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/tools/target}"
cargo build --release --locked --manifest-path tools/Cargo.toml -p keygate-dudect
log="$CARGO_TARGET_DIR/dudect.log"
"$CARGO_TARGET_DIR/release/keygate-dudect" 2>&1 | tee "$log"

# The "max t" of bench $1 (its result line may follow its name on a later line).
t_of() {
  awk -v b="$1" '/^bench /{name=$2} /max t = /{ if (name == b) { sub(/.*max t = /, ""); sub(/,.*/, ""); t=$0 } } END { print t }' "$log"
}
fail=0
for bench in a_secret_first_vs_last_byte b_unknown_id_vs_wrong_secret; do
  t="$(t_of "$bench")"
  if [ -z "$t" ]; then echo "dudect: no result for $bench" >&2; fail=1; continue; fi
  if awk -v t="$t" 'BEGIN { exit !((t < 0 ? -t : t) < 4.5) }'; then
    echo "dudect: $bench: |t| = ${t#[-+]} < 4.5: pass"
  else
    echo "dudect: $bench: |t| = ${t#[-+]} >= 4.5: FAIL" >&2; fail=1
  fi
done
t="$(t_of c_control_leaky_compare)"
if [ -n "$t" ] && awk -v t="$t" 'BEGIN { exit !((t < 0 ? -t : t) > 10) }'; then
  echo "dudect: control: |t| = ${t#[-+]} > 10: the test detects a leak of this size"
else
  echo "dudect: control: |t| = ${t:-none} is not above 10: the run is void" >&2; fail=1
fi
exit "$fail"
