#!/usr/bin/env bash
# Builds the libFuzzer harnesses (preset `fuzz`: Clang, ASan+UBSan) and runs
# each for a bounded time over its seed corpus in tests/fuzz/corpus. New inputs
# go to a scratch folder, never into the repository. Fails on any crash, leak
# or timeout, and prints how many inputs each harness ran.
#
#   bash scripts/fuzz.sh [seconds per harness, default 60]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
cmake --preset fuzz --log-level=WARNING
cmake --build --preset fuzz -j "$(nproc)"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for harness in reader codec http; do
  mkdir -p "$scratch/$harness"
  log="$scratch/$harness.log"
  if ! ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
      "build/fuzz/tests/fuzz/fuzz_$harness" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$scratch/$harness-" \
      "$scratch/$harness" "tests/fuzz/corpus/$harness" >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz_$harness: FAILED (the input is above)"
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  echo "fuzz_$harness: ${runs:-?} inputs in ${seconds} s, no finding"
done
