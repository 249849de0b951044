#!/usr/bin/env bash
# Installs what the server needs, builds `velocity` (release; the CUDA backend too when nvcc is
# found) and runs the main job: `velocity serve`, on the bundled demo model (models/demo) unless
# arguments say otherwise, e.g.
#   bash scripts/run.sh --model my.gguf --port 8080
#   bash scripts/run.sh --config velocity.toml
# Only the binary: the test suite's packages and targets are scripts/test.sh's. Stop it with
# Ctrl-C (SIGINT/SIGTERM drain running requests, then exit).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --runtime
cmake --preset release -DVELOCITY_TESTS=OFF >/dev/null
cmake --build --preset release --target velocity
exec ./build/release/app/velocity serve "$@"
