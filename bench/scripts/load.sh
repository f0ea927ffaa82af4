#!/usr/bin/env bash
# Load test of `cairn serve`'s /api/search with wrk (Debian), a closed-loop
# load generator on loopback: CONNS connections kept busy for SECONDS.
#
#   bash bench/scripts/load.sh [SECONDS=60] [CONNS=8]
#
# Ingests the Python tutorial, HOWTOs and FAQ (under CORPUS, default
# /usr/share/doc/python3.11/html) with the CLI, serves the
# collection, runs wrk with a Lua script that cycles through real questions,
# and prints requests/s, latency percentiles and the error counts (which
# must be zero). Server and load generator share this machine's cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${1:-60}"
conns="${2:-8}"
command -v wrk >/dev/null || { SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo; $SUDO apt-get install -y -qq wrk >/dev/null; }
target="${CARGO_TARGET_DIR:-target}/debug"
cargo build -q -p cairn -p cairn-bench
"$target/cairn" models fetch onnxruntime >/dev/null
"$target/cairn" models fetch all-MiniLM-L6-v2-int8 >/dev/null
cairn="$target/cairn"
docs="${CORPUS:-/usr/share/doc/python3.11/html}"
data="${LOAD_DATA:-$HOME/.cache/cairn/bench/load-data}"
if [ ! -f "$data/.ingested" ]; then
  "$cairn" --data-dir "$data" --embed-backend onnx --embed-model all-MiniLM-L6-v2-int8 ingest "$docs/tutorial" "$docs/howto" "$docs/faq" --json > /dev/null
  touch "$data/.ingested"
fi
log=$(mktemp)
"$cairn" --data-dir "$data" --embed-backend onnx --embed-model all-MiniLM-L6-v2-int8 serve --addr 127.0.0.1:0 2> "$log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log" "$lua"' EXIT
for _ in $(seq 1 600); do
  url=$(grep -o 'listening on http://[0-9.:]*' "$log" | head -1 | cut -d' ' -f3 || true)
  [ -n "$url" ] && break
  sleep 0.2
done
lua=$(mktemp --suffix .lua)
cat > "$lua" <<'LUA'
local qs = {
  "how do I create a virtual environment", "read a file line by line",
  "sort a list of dictionaries by key", "what is a list comprehension",
  "parse JSON from a string", "format a date as ISO 8601",
  "difference between a tuple and a list", "handle exceptions with try except",
  "regular expression to match an email", "run a subprocess and capture output",
  "default arguments of a function", "iterate over a dictionary",
}
local i = 0
request = function()
  i = i + 1
  local q = qs[(i % #qs) + 1]:gsub(" ", "%%20")
  return wrk.format("GET", "/api/search?k=5&q=" .. q)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("JSON {\"requests\": %d, \"seconds\": %.1f, \"qps\": %.1f, \"p50_ms\": %.2f, \"p90_ms\": %.2f, \"p99_ms\": %.2f, \"max_ms\": %.2f, \"errors\": {\"connect\": %d, \"read\": %d, \"write\": %d, \"status\": %d, \"timeout\": %d}}\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.connect, e.read, e.write, e.status, e.timeout))
end
LUA
# Warm up (first queries load the index pages), then measure.
wrk -t 1 -c 2 -d 3s -s "$lua" "$url" > /dev/null
wrk -t 2 -c "$conns" -d "${secs}s" --timeout 10s --latency -s "$lua" "$url"
