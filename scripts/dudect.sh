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
#   b2_unknown_id_vs_wrong_secret_equal_cost_store
#                                 the same over a store whose lookup costs the same for any id
#   c_control_leaky_compare       positive control: verify + an early-exit byte comparison
#   d_info_store_get_unknown_vs_known  informational: the memory store lookup alone, miss vs hit
#   e_info_parse_first_vs_last_byte    informational: bench a's inputs through parse alone
#   f_info_digest_first_vs_last_byte   informational: bench a's inputs through digest + eq alone
#   g_info_same_inputs_noise_floor     informational: both classes drawn the same way (noise floor)
#   h_info_two_known_ids               informational: wrong secrets of two known ids (b2's store)
# Pass: |max t| < 4.5 for a and b2, and |max t| > 10 for the control (else the run is void).
# b is reported, not gated: it includes the memory store's hash-map lookup, hit vs miss
# (bench d alone), which tells whether an id exists; ids are public (see SECURITY.md). b2
# gates what keygate's own verification adds.
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
t="$(t_of b_unknown_id_vs_wrong_secret)"
echo "dudect: b_unknown_id_vs_wrong_secret (memory store, not gated): |t| = ${t#[-+]}"
for bench in a_secret_first_vs_last_byte b2_unknown_id_vs_wrong_secret_equal_cost_store; do
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
