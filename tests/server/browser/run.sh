#!/usr/bin/env bash
# ctest server.chat_page_browser: the built-in chat page (GET /) in headless Chromium against
# velocity serve on the demo model (chat.mjs). Skips (77) when node, chromium or the npm packages
# are missing (scripts/deps.sh installs them; CHROMIUM=path picks another browser binary).
set -euo pipefail
binary="$1"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
chromium="${CHROMIUM:-/usr/bin/chromium}"
if ! command -v node >/dev/null || [ ! -d "$here/node_modules/puppeteer-core" ]; then
  echo "skipped: node or tests/server/browser/node_modules/puppeteer-core missing (run scripts/deps.sh)"
  exit 77
fi
if [ ! -x "$chromium" ]; then
  echo "skipped: no Chromium at $chromium (apt-get install chromium, or run scripts/deps.sh)"
  exit 77
fi
work="$(mktemp -d /tmp/velocity-browser-XXXXXX)"
trap 'rm -rf "$work"' EXIT
CHROMIUM="$chromium" node "$here/chat.mjs" "$binary" "$root" "$work"
