#!/usr/bin/env bash
# The main demo: installs dependencies, builds the optimised configuration and
# runs examples/quickstart. Idempotent; fast the second time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CCACHE_DIR=${CCACHE_DIR:-$PWD/build/ccache}
cmake --preset release --log-level=WARNING >/dev/null
cmake --build --preset release --target quickstart legacy_blocking
echo "--- examples/quickstart"
build/release/examples/quickstart
echo "--- examples/legacy_blocking"
build/release/examples/legacy_blocking
