#!/usr/bin/env bash
# The whole test suite: installs dependencies, then builds and runs ctest in four
# configurations — GCC optimised (with examples, benchmarks, packaging checks),
# Clang with warnings as errors, GCC with ASan+UBSan, Clang with TSan. Each
# stage prints its duration. Idempotent; fast the second time (ccache, Ninja,
# persistent build/ folders).
#
#   bash scripts/test.sh              all four configurations
#   bash scripts/test.sh release asan only the named ones
set -euo pipefail
cd "$(dirname "$0")/.."

presets=("$@")
((${#presets[@]})) || presets=(release clang asan tsan)

total_start=$SECONDS
stage() {  # stage NAME COMMAND...
  local name=$1 start=$SECONDS
  shift
  echo "=== ${name}"
  "$@"
  echo "=== ${name}: $((SECONDS - start)) s"
}

stage "setup" bash scripts/setup.sh
export CCACHE_DIR=${CCACHE_DIR:-$PWD/build/ccache}
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-5G}
jobs=$(nproc)

for preset in "${presets[@]}"; do
  stage "${preset}: configure" cmake --preset "$preset" --log-level=WARNING
  stage "${preset}: build" cmake --build --preset "$preset" -j "$jobs"
  stage "${preset}: test" ctest --preset "$preset" -j "$jobs"
done

echo "=== all stages: $((SECONDS - total_start)) s"
