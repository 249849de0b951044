#!/usr/bin/env bash
# Installs what velocity needs to build and test (idempotent: installs only what is missing).
# Debian 12 packages; npm packages for the compatibility tests (tests/compat) and the tokenizer
# differential tests (tests/tokenizer/diff).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build pkg-config
  libfmt-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libgtest-dev libbenchmark-dev libpcre2-dev
  libboost1.81-dev libtomlplusplus-dev
  clang-14 libclang-rt-14-dev
  python3 python3-jinja2
  nodejs npm
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# nodejs/npm may come from outside Debian (a newer node already on PATH): then do not install them.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -d tests/compat/node_modules/@huggingface/gguf ]; then
  echo "deps: npm install in tests/compat"
  (cd tests/compat && npm ci --no-audit --no-fund --loglevel=error)
fi

if [ ! -d tests/tokenizer/diff/node_modules/tokenizers ]; then
  echo "deps: npm install in tests/tokenizer/diff"
  (cd tests/tokenizer/diff && npm ci --no-audit --no-fund --loglevel=error)
fi

if [ ! -d tests/server/e2e/node_modules/openai ]; then
  echo "deps: npm install in tests/server/e2e"
  (cd tests/server/e2e && npm ci --no-audit --no-fund --loglevel=error)
fi
