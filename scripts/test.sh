#!/usr/bin/env bash
# Builds velocity (release preset, warnings as errors) and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake --preset release -DVELOCITY_WERROR=ON -DVELOCITY_TESTS=ON >/dev/null
cmake --build --preset release
ctest --preset release -j "$(nproc)"
