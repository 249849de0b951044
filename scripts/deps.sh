#!/usr/bin/env bash
# Installs what velocity needs (idempotent: installs only what is missing).
#   bash scripts/deps.sh             everything: the build, the test suite (gtest, clang-14 for the
#                                    fuzzers, python3-jinja2, chromium for the chat page's browser
#                                    test, the npm packages of tests/compat, tests/tokenizer/diff,
#                                    tests/server/e2e and tests/server/browser)
#   bash scripts/deps.sh --runtime   only what building `velocity` needs (scripts/run.sh)
# Debian 12, Ubuntu 24.04: the package names are the same but for Boost, chosen by what the
# package index offers (libboost1.81-dev on Debian 12, libboost-dev elsewhere; CMake then checks
# that it is 1.81 or newer).
set -euo pipefail
cd "$(dirname "$0")/.."
runtime_only=0
[ "${1:-}" = "--runtime" ] && runtime_only=1

runtime=(build-essential cmake ninja-build pkg-config
         libfmt-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libpcre2-dev libtomlplusplus-dev)
testing=(libgtest-dev libbenchmark-dev clang-14 libclang-rt-14-dev python3 python3-jinja2 nodejs npm)
packages=("${runtime[@]}")
[ $runtime_only -eq 1 ] || packages+=("${testing[@]}")

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
updated=0
update() { [ $updated -eq 1 ] || { $SUDO apt-get update -qq; updated=1; }; }

# Boost: Debian 12's versioned package when the index has it, else the distribution's default.
boost=libboost1.81-dev
if ! installed libboost1.81-dev; then
  if installed libboost-dev; then
    boost=libboost-dev
  else
    update
    apt-cache show libboost1.81-dev >/dev/null 2>&1 || boost=libboost-dev
  fi
fi
packages+=("$boost")

# Chromium, for the chat page's browser test (tests/server/browser), where the index has a package
# of that name (Debian has; Ubuntu ships Chromium as a snap): elsewhere that test skips.
if [ $runtime_only -eq 0 ] && ! installed chromium; then
  update
  if apt-cache show chromium >/dev/null 2>&1; then
    packages+=(chromium)
  else
    echo "deps: no chromium package in the index; the browser test (server.chat_page_browser) will skip"
  fi
fi

missing=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
# nodejs/npm may come from outside the distribution (a newer node already on PATH): then not.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
[ $runtime_only -eq 1 ] && exit 0

for dir in tests/compat tests/tokenizer/diff tests/server/e2e tests/server/browser; do
  case $dir in
    tests/compat) marker=@huggingface/gguf ;;
    tests/tokenizer/diff) marker=tokenizers ;;
    tests/server/e2e) marker=openai ;;
    tests/server/browser) marker=puppeteer-core ;;
  esac
  if [ ! -d "$dir/node_modules/$marker" ]; then
    echo "deps: npm install in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done
