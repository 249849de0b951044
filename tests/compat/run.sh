#!/usr/bin/env bash
# Compatibility test: GGUF files written by `velocity synth` must read the same in velocity and in
# an independent GGUF implementation (npm @huggingface/gguf). See compare.mjs for what is compared.
#
#   bash tests/compat/run.sh <path to velocity binary>
#
# Exit 0: all cases match; 1: a mismatch (or a tool failed); 77: skipped (node or the npm package
# is missing: run scripts/deps.sh, or `npm ci` in tests/compat).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ $# -ne 1 ]]; then
  echo "usage: bash tests/compat/run.sh <path to velocity binary>" >&2
  exit 2
fi
if [[ ! -x "$1" ]]; then
  echo "compat: $1 is not an executable velocity binary" >&2
  exit 1
fi
velocity="$(realpath "$1")"
if ! command -v node >/dev/null 2>&1; then
  echo "compat: SKIPPED: node is not installed (needed to run @huggingface/gguf)"
  exit 77
fi
if [[ ! -f "$here/node_modules/@huggingface/gguf/package.json" ]]; then
  echo "compat: SKIPPED: $here/node_modules/@huggingface/gguf is missing (run scripts/deps.sh or npm ci in tests/compat)"
  exit 77
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/velocity-compat.XXXXXX")"
trap 'rm -rf "$work"' EXIT
node "$here/compare.mjs" "$velocity" "$work"
