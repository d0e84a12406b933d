#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a while each (default 10 minutes), one after the
# other, starting from the committed seed corpora. Exits non-zero on the first crash.
#
#   scripts/fuzz.sh                 # every target, 600 s each
#   scripts/fuzz.sh 60              # every target, 60 s each
#   scripts/fuzz.sh 600 token_parse # one target
#
# cargo-fuzz needs nightly for its sanitizer flags; on a stable toolchain this script sets
# RUSTC_BOOTSTRAP=1 (stable rustc then accepts the -Z flags). New corpus entries go to
# fuzz/target/corpus/ (not committed); crashes to fuzz/artifacts/<target>/. A summary line
# per target (executions, seconds, exit status) is appended to fuzz/target/fuzz-summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-600}"
shift || true
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
if ! rustc --version | grep -q nightly; then
  export RUSTC_BOOTSTRAP=1
fi

cd fuzz
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
mkdir -p target
cargo fuzz build -O
for t in "${targets[@]}"; do
  mkdir -p "target/corpus/$t" "corpus/$t"
  log="target/fuzz-$t.log"
  echo "fuzz: $t for ${seconds}s"
  status=0
  cargo fuzz run -O "$t" "target/corpus/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1 || status=$?
  execs="$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' | tail -n 1)"
  secs="$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | sed -E 's/^Done [0-9]+ runs in ([0-9]+).*/\1/' | tail -n 1)"
  line="$t: executions=${execs:-?} seconds=${secs:-?} exit=$status"
  echo "fuzz: $line" | tee -a target/fuzz-summary.txt
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$log" >&2
    echo "fuzz: $t FAILED; reproduce with: cd fuzz && cargo fuzz run $t fuzz/artifacts/$t/<file>" >&2
    exit 1
  fi
done
