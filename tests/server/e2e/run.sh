#!/usr/bin/env bash
# ctest server.openai_e2e: velocity serve against the official openai npm client (e2e.mjs).
# Skips (77) when node or the npm packages are missing (scripts/deps.sh installs them).
set -euo pipefail
binary="$1"
here="$(cd "$(dirname "$0")" && pwd)"
if ! command -v node >/dev/null || [ ! -d "$here/node_modules/openai" ]; then
  echo "skipped: node or tests/server/e2e/node_modules/openai missing (run scripts/deps.sh)"
  exit 77
fi
work="$(mktemp -d /tmp/velocity-e2e-XXXXXX)"
trap 'rm -rf "$work"' EXIT
node "$here/e2e.mjs" "$binary" "$work"
