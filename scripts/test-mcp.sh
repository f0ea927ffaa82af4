#!/usr/bin/env bash
# Cairn's MCP server against the official SDKs as clients: the Python SDK
# (PyPI `mcp`) and the TypeScript SDK (npm `@modelcontextprotocol/sdk`),
# each over stdio (`cairn mcp`, spawned by the SDK) and over streamable HTTP
# (`cairn serve`'s /mcp with an API key).
#
#   scripts/test-mcp.sh             # starts its own `cairn serve` for HTTP
#   CAIRN_URL=http://127.0.0.1:PORT CAIRN_API_KEY=KEY scripts/test-mcp.sh
#                                   # HTTP against a running server (test-server.sh)
#   scripts/test-mcp.sh --cluster nats://HOST:4222
#                                   # the same against a cluster: `cairn --cluster URL mcp`
#                                   # (and CAIRN_URL should be a `cairn --cluster URL serve`)
#   scripts/test-mcp.sh --prepare   # only install the clients (pinned), then exit
#
# The clients' packages are pinned in crates/cairn-mcp/tests/clients/
# (requirements.txt, package.json + package-lock.json) and installed once
# (a stamp of the requirements' hash; node_modules).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}/debug"
cairn="$PWD/$target/cairn"
[ -x "$cairn" ] || cairn="$target/cairn"
clients=crates/cairn-mcp/tests/clients

venv="$HOME/.cache/cairn/mcp-venv"
req="$clients/requirements.txt"
stamp="$venv/.req-$(sha256sum "$req" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$req"
  touch "$stamp"
fi
if [ ! -f "$clients/node_modules/@modelcontextprotocol/sdk/package.json" ]; then
  (cd "$clients" && npm ci --no-audit --no-fund)
fi
[ "${1:-}" = "--prepare" ] && exit 0
cluster=()
if [ "${1:-}" = "--cluster" ]; then
  cluster=(--cluster "${2:?--cluster needs the NATS URL}")
fi

[ -x "$cairn" ] || { echo "test-mcp.sh: no cairn binary at $cairn (cargo build -p cairn)" >&2; exit 2; }
work=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

export CAIRN_MODELS_DIR="${CAIRN_MODELS_DIR:-$HOME/.cache/cairn/models}"
export CAIRN_BIN="$cairn"
# Short answers keep the runs quick on 2 cores.
export CAIRN_MCP_ARGS="--max-tokens 48 --seed 1 ${cluster[*]}"
where="${cluster[1]:-a local data directory}"

# stdio: each SDK spawns `cairn --data-dir DIR mcp` itself.
echo "== MCP over stdio ($where): Python SDK"
CAIRN_DATA_DIR="$work/stdio-py" "$venv/bin/python" "$clients/test_mcp.py" stdio
echo "== MCP over stdio ($where): TypeScript SDK"
CAIRN_DATA_DIR="$work/stdio-node" node "$clients/client.mjs" stdio

# HTTP: the running server given, or one of our own with an API key.
if [ -z "${CAIRN_URL:-}" ]; then
  export CAIRN_API_KEY="mcp-key-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  "$cairn" --data-dir "$work/serve" ${cluster[@]+"${cluster[@]}"} serve --addr 127.0.0.1:0 \
    --max-tokens 48 --seed 1 2> "$work/serve.log" &
  server_pid=$!
  for _ in $(seq 1 600); do
    CAIRN_URL=$(grep -o 'listening on http://[0-9.:]*' "$work/serve.log" | head -1 | cut -d' ' -f3 || true)
    [ -n "$CAIRN_URL" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.log"; exit 1; }
    sleep 0.2
  done
  [ -n "$CAIRN_URL" ] || { echo "cairn serve did not start"; cat "$work/serve.log"; exit 1; }
  export CAIRN_URL
fi
: "${CAIRN_API_KEY:?set CAIRN_API_KEY to the key of the server at CAIRN_URL}"
echo "== MCP over streamable HTTP ($CAIRN_URL/mcp): Python SDK"
"$venv/bin/python" "$clients/test_mcp.py" http
echo "== MCP over streamable HTTP ($CAIRN_URL/mcp): TypeScript SDK"
node "$clients/client.mjs" http
echo "MCP client tests passed (stdio and streamable HTTP, Python and TypeScript SDKs)"
