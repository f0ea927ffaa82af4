#!/usr/bin/env bash
# End-to-end test of the web UI in headless Chromium. Starts nothing: point
# CAIRN_URL at a running `cairn serve`, e.g.
#
#   target/debug/cairn --data-dir "$(mktemp -d)" serve --addr 127.0.0.1:18080 &
#   CAIRN_URL=http://127.0.0.1:18080 crates/cairn-server/tests/ui/run.sh
#
# Optional: CAIRN_SCREENSHOTS (default /tmp), CAIRN_API_KEY, CHROMIUM
# (default /usr/bin/chromium; Debian: apt-get install chromium).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if [ -z "${CAIRN_URL:-}" ]; then
  echo "run.sh: set CAIRN_URL to a running cairn serve, e.g. CAIRN_URL=http://127.0.0.1:18080" >&2
  exit 2
fi
chromium_bin="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium_bin" ]; then
  echo "run.sh: no browser at $chromium_bin (Debian: apt-get install chromium, or set CHROMIUM)" >&2
  exit 2
fi
if [ ! -f node_modules/playwright-core/package.json ]; then
  npm ci --no-audit --no-fund
fi
exec node e2e.mjs "$@"
