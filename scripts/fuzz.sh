#!/usr/bin/env bash
# Builds the libFuzzer targets (clang-14) and runs each for the given number of seconds (default
# 60) from its checked-in seed corpus. New inputs go to a scratch corpus, never into the repo.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
cmake --preset fuzz >/dev/null
# Only the fuzz targets (and what they link), not the whole tree.
targets=()
for source in fuzz/fuzz_*.cpp; do targets+=("$(basename "$source" .cpp)"); done
cmake --build --preset fuzz --target "${targets[@]}"
for target in build/fuzz/fuzz/fuzz_*; do
  [ -x "$target" ] || continue
  name=$(basename "$target")
  seeds=fuzz/corpus/${name#fuzz_}
  scratch=build/fuzz/corpus-run/${name#fuzz_}
  mkdir -p "$scratch"
  echo "fuzz: $name for ${seconds}s (seeds: $seeds)"
  "$target" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "$scratch" "$seeds"
done
