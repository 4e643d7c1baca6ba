#!/usr/bin/env bash
# The main demo: installs dependencies, builds the optimised configuration, runs
# examples/quickstart in local mode and then distributed over two worker
# processes it starts (and stops) on 127.0.0.1, side by side; then
# examples/legacy_blocking. Idempotent; fast the second time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CCACHE_DIR=${CCACHE_DIR:-$PWD/build/ccache}
cmake --preset release --log-level=WARNING >/dev/null
cmake --build --preset release --target quickstart legacy_blocking
echo "--- examples/quickstart, local and distributed"
bash scripts/quickstart_both_modes.sh build/release/examples/quickstart
echo "--- examples/legacy_blocking"
build/release/examples/legacy_blocking
