#!/usr/bin/env bash
# `cairn serve` against the real clients, in one go (called by scripts/test.sh
# after the cargo tests; the cargo tests cover the server from Rust):
#   1. the `openai` SDK and LangChain's ChatOpenAI / OpenAIEmbeddings, then
#      the Python client in clients/python with its LangChain and LlamaIndex
#      retrievers (pytest),
#   2. schemathesis fuzzing every operation of /openapi.json (fails on any
#      5xx or response that breaks the schema),
#   3. the web UI end to end in headless Chromium (playwright-core),
#   4. MCP with the official Python and TypeScript SDKs, over stdio and /mcp
#      (scripts/test-mcp.sh),
#   5. SIGTERM: the server must exit cleanly,
# first against a local collection, then against `cairn --cluster URL serve`
# over three NATS servers and two `cairn node`s.
# `--prepare` only installs the clients (the venv and the UI test's npm
# packages) and exits: scripts/test.sh runs that while cargo compiles.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}/debug"
cairn="$PWD/$target/cairn"
[ -x "$cairn" ] || cairn="$target/cairn"

venv="${CAIRN_CLIENT_VENV:-$HOME/.cache/cairn/client-venv}"
req=crates/cairn-server/tests/clients/requirements.txt
req_py=clients/python/requirements-test.txt
stamp="$venv/.req-$(cat "$req" "$req_py" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$req" -r "$req_py"
  touch "$stamp"
fi
if [ "${1:-}" = "--prepare" ]; then
  ui=crates/cairn-server/tests/ui
  [ -f "$ui/node_modules/playwright-core/package.json" ] || (cd "$ui" && npm ci --no-audit --no-fund)
  bash scripts/test-mcp.sh --prepare
  exit 0
fi

work=$(mktemp -d)
server_pid=""
bg_pids=()
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

export CAIRN_API_KEY="test-key-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export CAIRN_MODELS_DIR="${CAIRN_MODELS_DIR:-$HOME/.cache/cairn/models}"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_server NAME ARGS...: `cairn ARGS serve` on a free port; its URL in
# $url and $CAIRN_URL.
start_server() {
  local name=$1; shift
  # Short answers keep the fuzzing and the client tests quick on 2 cores.
  "$cairn" "$@" serve --addr 127.0.0.1:0 --max-tokens 48 --seed 1 \
    2> "$work/$name.log" &
  server_pid=$!
  url=""
  for _ in $(seq 1 600); do
    url=$(grep -o 'listening on http://[0-9.:]*' "$work/$name.log" | head -1 | cut -d' ' -f3 || true)
    [ -n "$url" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/$name.log"; exit 1; }
    sleep 0.2
  done
  [ -n "$url" ] || { echo "cairn serve did not start"; cat "$work/$name.log"; exit 1; }
  export CAIRN_URL="$url"
}

# clients NAME: the whole client suite against the server at $url, then
# SIGTERM.
clients() {
  local name=$1
  echo "== [$name] cairn serve at $url"
  local auth=(-H "Authorization: Bearer $CAIRN_API_KEY")
  local job state
  job=$(curl -sf "${auth[@]}" -H 'Content-Type: application/json' \
    -d '{"name":"bridge.md","text":"# Kestrel Bridge\n\n## History\n\nThe Kestrel Bridge over the Varne estuary opened to traffic in 1987. It is 412 metres long and carries the coastal railway between Harrow Point and Selby.\n\n## Maintenance\n\nThe bridge is repainted every nine years by the Varne Harbour Trust.\n"}' \
    "$url/api/collections/clients/documents" | python3 -c 'import json,sys; print(json.load(sys.stdin)["job"]["id"])')
  for _ in $(seq 1 600); do
    state=$(curl -sf "${auth[@]}" "$url/api/jobs/$job" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
    [ "$state" = done ] && break
    [ "$state" = failed ] && { echo "ingestion failed"; exit 1; }
    sleep 0.2
  done

  echo "== [$name] openai SDK and LangChain against /v1"
  CAIRN_COLLECTION=clients "$venv/bin/python" -m pytest -q crates/cairn-server/tests/clients/test_clients.py

  echo "== [$name] the Python client (cairn_client) and its LangChain and LlamaIndex retrievers"
  CAIRN_COLLECTION=clients PYTHONPATH=clients/python/src "$venv/bin/python" -m pytest -q clients/python/tests

  echo "== [$name] schemathesis against /openapi.json"
  # No example database: each run stands alone (a database replayed from an
  # earlier run has crashed Hypothesis' own shrinker with an IndexError).
  "$venv/bin/schemathesis" run "$url/openapi.json" \
    -H "Authorization: Bearer $CAIRN_API_KEY" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --phases examples,coverage,fuzzing --max-examples 25 --workers 1 \
    --seed 1 --suppress-health-check too_slow,filter_too_much \
    --generation-database none

  echo "== [$name] web UI in headless Chromium"
  CAIRN_SCREENSHOTS="${CAIRN_SCREENSHOTS:-$work/screenshots}/$name" \
    bash crates/cairn-server/tests/ui/run.sh

  # MCP (stdio, on the cluster in its turn, and /mcp on this server) with
  # the Python and TypeScript SDKs.
  bash scripts/test-mcp.sh ${nats:+--cluster "$nats"}

  echo "== [$name] SIGTERM"
  kill -TERM "$server_pid"
  wait "$server_pid"
  server_pid=""
  grep -q "shutting down" "$work/$name.log"
}

# 1. A local collection.
start_server local --data-dir "$work/data"
clients local

# 2. The same against `cairn --cluster URL serve`: three clustered NATS
#    servers with JetStream, two `cairn node`s that both generate, and the
#    collection `clients` of 2 shards x 2 replicas (the UI test's `e2e` is
#    created by its upload with the cluster's defaults).
nats_urls=()
ports=(); cports=()
for i in 0 1 2; do ports+=("$(free_port)"); cports+=("$(free_port)"); done
for i in 0 1 2; do
  routes=()
  for j in 0 1 2; do [ "$j" = "$i" ] || routes+=("nats-route://127.0.0.1:${cports[$j]}"); done
  {
    echo "server_name: n$i"
    echo "listen: 127.0.0.1:${ports[$i]}"
    echo "max_payload: 8MB"
    echo "jetstream { store_dir: \"$work/js$i\" }"
    echo "cluster { name: cairn, listen: 127.0.0.1:${cports[$i]}, routes: [$(IFS=,; echo "${routes[*]}")] }"
  } > "$work/nats$i.conf"
  nats-server -c "$work/nats$i.conf" 2> "$work/nats$i.log" &
  bg_pids+=($!)
  nats_urls+=("nats://127.0.0.1:${ports[$i]}")
done
nats=$(IFS=,; echo "${nats_urls[*]}")
for n in g1 g2; do
  "$cairn" --data-dir "$work/node-$n" node --nats "$nats" --name "$n" 2> "$work/node-$n.log" &
  bg_pids+=($!)
done
ok=""
for _ in $(seq 1 300); do
  if "$cairn" --cluster "$nats" cluster status --json 2>/dev/null |
     python3 -c 'import json,sys; sys.exit(0 if len(json.load(sys.stdin)["nodes"]) == 2 else 1)' 2>/dev/null; then
    ok=1; break
  fi
  sleep 0.5
done
[ -n "$ok" ] || { echo "the cluster's nodes did not start"; tail -20 "$work"/node-*.log; exit 1; }
"$cairn" --cluster "$nats" collection create clients --shards 2 --replicas 2
start_server cluster --data-dir "$work/serve-data" --cluster "$nats"
clients cluster
echo "server-client tests passed (a local collection and a cluster's)"
