#!/usr/bin/env bash
# `cairn serve` against the real clients, in one go (called by scripts/test.sh
# after the cargo tests; the cargo tests cover the server from Rust):
#   1. the `openai` SDK and LangChain's ChatOpenAI / OpenAIEmbeddings (pytest),
#   2. schemathesis fuzzing every operation of /openapi.json (fails on any
#      5xx or response that breaks the schema),
#   3. the web UI end to end in headless Chromium (playwright-core),
#   4. SIGTERM: the server must exit cleanly.
# `--prepare` only installs the clients (the venv and the UI test's npm
# packages) and exits: scripts/test.sh runs that while cargo compiles.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}/debug"
cairn="$PWD/$target/cairn"
[ -x "$cairn" ] || cairn="$target/cairn"

venv="$HOME/.cache/cairn/client-venv"
req=crates/cairn-server/tests/clients/requirements.txt
stamp="$venv/.req-$(sha256sum "$req" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$req"
  touch "$stamp"
fi
if [ "${1:-}" = "--prepare" ]; then
  ui=crates/cairn-server/tests/ui
  [ -f "$ui/node_modules/playwright-core/package.json" ] || (cd "$ui" && npm ci --no-audit --no-fund)
  exit 0
fi

work=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

export CAIRN_API_KEY="test-key-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export CAIRN_MODELS_DIR="${CAIRN_MODELS_DIR:-$HOME/.cache/cairn/models}"
# Short answers keep the fuzzing and the client tests quick on 2 cores.
"$cairn" --data-dir "$work/data" serve --addr 127.0.0.1:0 --max-tokens 48 --seed 1 \
  2> "$work/serve.log" &
server_pid=$!
for _ in $(seq 1 600); do
  url=$(grep -o 'listening on http://[0-9.:]*' "$work/serve.log" | head -1 | cut -d' ' -f3 || true)
  [ -n "$url" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.log"; exit 1; }
  sleep 0.2
done
[ -n "$url" ] || { echo "cairn serve did not start"; cat "$work/serve.log"; exit 1; }
export CAIRN_URL="$url"
echo "== cairn serve at $url"

auth=(-H "Authorization: Bearer $CAIRN_API_KEY")
job=$(curl -sf "${auth[@]}" -H 'Content-Type: application/json' \
  -d '{"name":"bridge.md","text":"# Kestrel Bridge\n\n## History\n\nThe Kestrel Bridge over the Varne estuary opened to traffic in 1987. It is 412 metres long and carries the coastal railway between Harrow Point and Selby.\n\n## Maintenance\n\nThe bridge is repainted every nine years by the Varne Harbour Trust.\n"}' \
  "$url/api/collections/clients/documents" | python3 -c 'import json,sys; print(json.load(sys.stdin)["job"]["id"])')
for _ in $(seq 1 600); do
  state=$(curl -sf "${auth[@]}" "$url/api/jobs/$job" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
  [ "$state" = done ] && break
  [ "$state" = failed ] && { echo "ingestion failed"; exit 1; }
  sleep 0.2
done

echo "== openai SDK and LangChain against /v1"
CAIRN_COLLECTION=clients "$venv/bin/python" -m pytest -q crates/cairn-server/tests/clients/test_clients.py

echo "== schemathesis against /openapi.json"
"$venv/bin/schemathesis" run "$url/openapi.json" \
  -H "Authorization: Bearer $CAIRN_API_KEY" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing --max-examples 25 --workers 1 \
  --seed 1 --suppress-health-check too_slow,filter_too_much

echo "== web UI in headless Chromium"
CAIRN_SCREENSHOTS="${CAIRN_SCREENSHOTS:-$work/screenshots}" \
  bash crates/cairn-server/tests/ui/run.sh

echo "== SIGTERM"
kill -TERM "$server_pid"
wait "$server_pid"
server_pid=""
grep -q "shutting down" "$work/serve.log"
echo "server-client tests passed"
