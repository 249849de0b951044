#!/usr/bin/env bash
# Installs dependencies, builds velocity (release) and runs the main job: `velocity serve`, on the
# bundled demo model (models/demo) unless arguments say otherwise, e.g.
#   bash scripts/run.sh --model my.gguf --port 8080
#   bash scripts/run.sh --config velocity.toml
# Stop it with Ctrl-C (SIGINT/SIGTERM drain running requests, then exit).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release
exec ./build/release/app/velocity serve "$@"
