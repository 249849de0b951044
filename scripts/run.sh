#!/usr/bin/env bash
# Installs dependencies, builds velocity (release) and runs the main job. Until `velocity serve`
# exists, the main job writes a tiny random-weight Llama model with `velocity synth` and shows it
# with `velocity inspect`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release
mkdir -p build/models
./build/release/app/velocity synth --arch llama --preset tiny --type Q4_K_M -o build/models/tiny-llama-q4_k_m.gguf
./build/release/app/velocity inspect build/models/tiny-llama-q4_k_m.gguf
