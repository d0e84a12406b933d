#!/usr/bin/env bash
# Constant-time check under Valgrind memcheck ("ctgrind"). Exits non-zero on failure.
#
# What is claimed: during verification, the steps that touch secret data — deriving the
# keyring's HMAC state from the server key, HMAC-SHA256 over `id || 0x00 || secret`, and the
# `Digest` comparison with the stored digest — contain no conditional jump and no memory
# address that depends on the server key, the stored digest or the presented secret.
# tools/ctgrind marks those bytes undefined with a Valgrind client request and counts
# memcheck's errors around exactly those calls (`Keyring::new`, `Keyring::digest`, `Digest`
# `==` and `ct_eq`: what `TokenManager::verify` calls on secret data). The match/no-match bit
# is marked defined before it is branched on.
#
# What is not claimed: parsing the presented string (charset, checksum) branches on it, which
# its presenter already knows; the store looks the token up by its keyed digest, an HMAC
# output used as a hash key (as GitHub, Stripe and Unkey do), so where that lookup goes
# depends on the digest but reveals nothing about the key or the secret; instruction
# latencies that do not depend on control flow or addresses are outside memcheck's view
# (the statistical test, scripts/dudect.sh, covers timing end to end).
#
# The check is void unless the positive control (slice `==` on the same undefined digests)
# reports errors in the same run; the harness fails then too.
#
# Second stage, the whole `TokenManager::verify` (parse, digest, store lookup, comparison,
# status and expiry checks) with the server key undefined from the start (so the digest
# issued under it is undefined too), over a memory store that marks the digests it is handed
# as defined (the lookup key is public from there on, as above): every error memcheck
# reports must be located in src/manager/verify.rs, where the only secret-derived values are the
# match results that verify branches on (match or not; current or previous secret). None may
# be inside the digest, HMAC, SHA-256, `Digest` equality or a memcmp. At least one must be
# reported (the branch on the result), or the secret marking did not reach verify and the
# stage is void.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null 2>&1; then
  echo "ctgrind: valgrind not found (apt-get install valgrind)" >&2
  exit 1
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/tools/target}"
cargo build --release --locked --manifest-path tools/Cargo.toml -p keygate-ctgrind
log="$CARGO_TARGET_DIR/ctgrind.valgrind.log"
status=0
valgrind --tool=memcheck --error-limit=no --track-origins=yes --log-file="$log" \
  "$CARGO_TARGET_DIR/release/keygate-ctgrind" || status=$?
grep -E "ERROR SUMMARY" "$log" || true
if [ "$status" -ne 0 ]; then
  echo "ctgrind: FAILED (exit $status); memcheck's report: $log" >&2
  grep -E "Conditional jump|Use of uninitialised|^==[0-9]+==    (at|by) " "$log" | head -n 60 >&2 || true
  exit 1
fi

vlog="$CARGO_TARGET_DIR/ctgrind-verify.valgrind.log"
valgrind --tool=memcheck --error-limit=no --track-origins=yes --log-file="$vlog" \
  "$CARGO_TARGET_DIR/release/keygate-ctgrind" verify
grep -E "ERROR SUMMARY" "$vlog" || true
# The innermost frame of every error.
tops="$(grep -A1 -E "Conditional jump or move depends|Use of uninitialised value" "$vlog" \
  | grep -E "^==[0-9]+==    at " || true)"
count="$(printf '%s' "$tops" | grep -c . || true)"
outside="$(printf '%s\n' "$tops" | grep -v "src/manager/verify.rs" | grep . || true)"
printf '%s\n' "$tops"
if [ "$count" -eq 0 ]; then
  echo "ctgrind: verify stage void: no branch on the match result was reported" >&2
  exit 1
fi
if [ -n "$outside" ]; then
  echo "ctgrind: FAILED: secret-dependent branch or address outside the match decision:" >&2
  echo "$outside" >&2
  exit 1
fi
echo "ctgrind: verify stage: $count error(s), all at the match decision in src/manager/verify.rs"
echo "ctgrind: passed"
