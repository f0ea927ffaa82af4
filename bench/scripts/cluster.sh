#!/usr/bin/env bash
# Retrieval through a Cairn cluster on ONE machine: 1, 2 and 3 `cairn node`
# processes (no LLM) behind one nats-server, the same corpus (the Python
# tutorial, HOWTOs and FAQ), S = 6 shards, R = 1; and the same queries in
# process on one node's copy of the corpus (the single-node baseline).
#
#   bash bench/scripts/cluster.sh [QUERIES=200] [CONCURRENCY=4]
#   SUBDIRS="tutorial" bash bench/scripts/cluster.sh     # a smaller corpus
#   NODES="1" bash bench/scripts/cluster.sh              # one node only
#   ROUNDS=5 OUT=bench/results/x.json bash bench/scripts/cluster.sh
#
# Each figure is the median over ROUNDS (default 3) rounds, every round
# measuring the cluster and the in-process peer mode after mode; the
# cluster one at a time both as it searches (one request per node and
# round) and with every ask sent to its shard's queue group (as before node
# subjects: "queue groups only").
#
# Every process shares this machine's cores, so more nodes cannot mean more
# throughput here: the figures give the scatter-gather overhead and the
# per-query work split (slowest shard vs coordinator), from which scaling on
# separate machines can be estimated. Writes $OUT (default
# bench/results/cluster-search.json).
set -euo pipefail
cd "$(dirname "$0")/../.."
queries="${1:-200}"
conc="${2:-4}"
rounds="${ROUNDS:-3}"
out="${OUT:-bench/results/cluster-search.json}"
read -r -a node_counts <<< "${NODES:-1 2 3}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
command -v nats-server >/dev/null || $SUDO apt-get install -y -qq nats-server >/dev/null
target="${CARGO_TARGET_DIR:-target}/debug"
cargo build -q -p cairn -p cairn-bench
cairn="$target/cairn"
"$cairn" models fetch onnxruntime >/dev/null
"$cairn" models fetch all-MiniLM-L6-v2-int8 >/dev/null
export CAIRN_EMBED_BACKEND=onnx CAIRN_EMBED_MODEL=all-MiniLM-L6-v2-int8
docs="${CORPUS:-/usr/share/doc/python3.11/html}"
read -r -a subdirs <<< "${SUBDIRS:-tutorial howto faq}"
dirs=()
for d in "${subdirs[@]}"; do dirs+=("$docs/$d"); done
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
status_ok() { # $1 url, $2 python predicate on the status JSON `s`
  "$cairn" --data-dir "$work/client" --cluster "$1" cluster status --json 2>/dev/null |
    python3 -c "import json,sys; s=json.load(sys.stdin); sys.exit(0 if ($2) else 1)"
}
wait_for() { for _ in $(seq 1 600); do status_ok "$1" "$2" && return 0; sleep 0.5; done; echo "timed out: $2" >&2; exit 1; }

echo "single-node baseline: ingesting" >&2
"$cairn" --data-dir "$work/single" -c docs ingest "${dirs[@]}" --json >/dev/null
results=()
for n in "${node_counts[@]}"; do
  port=$(free_port)
  printf 'listen: 127.0.0.1:%s\nmax_payload: 8MB\njetstream { store_dir: "%s" }\n' "$port" "$work/js$n" > "$work/nats$n.conf"
  nats-server -c "$work/nats$n.conf" 2>"$work/nats$n.log" & pids+=($!)
  url="nats://127.0.0.1:$port"
  sleep 1
  for i in $(seq 1 "$n"); do
    "$cairn" --data-dir "$work/c$n-node$i" node --nats "$url" --name "node$i" --no-llm 2>"$work/c$n-node$i.log" & pids+=($!)
  done
  wait_for "$url" "len(s['nodes']) == $n"
  "$cairn" --data-dir "$work/client" --cluster "$url" collection create docs --shards 6 --replicas 1 >/dev/null
  echo "$n node(s): ingesting" >&2
  "$cairn" --data-dir "$work/client" --cluster "$url" -c docs ingest "${dirs[@]}" --json >/dev/null
  wait_for "$url" "all(r['lag'] == 0 and r['serving'] for c in s['collections'] for sh in c['shard_status'] for r in sh['replicas'])"
  echo "$n node(s): querying" >&2
  results+=("$("$target/cairn-bench" cluster-search --url "$url" --collection docs --data-dir "$work/single" --queries "$queries" --concurrency "$conc" --rounds "$rounds")")
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  pids=()
done
mkdir -p "$(dirname "$out")"
printf '%s\n' "${results[@]}" | OUT="$out" python3 -c '
import json, os, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
json.dump(rows, open(os.environ["OUT"], "w"), indent=1)
print("| nodes | mode | p50 ms | p99 ms | QPS (1 in flight) | QPS (%d in flight) | slowest shard ms | coordinator ms | queue groups only p50 ms | single node p50 ms | single node QPS | overhead p50 ms |" % rows[0]["concurrency"])
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    for m in ("dense", "hybrid"):
        x, s = r[m], r["single_" + m]
        q = x.get("queue_groups_serial", {}).get("p50_ms", float("nan"))
        print("| %d | %s | %.2f | %.2f | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f | %.0f | %.2f |" % (r["nodes"], m, x["serial"]["p50_ms"], x["serial"]["p99_ms"], x["serial"]["qps"], x["concurrent"]["qps"], x["slowest_shard_ms_mean"], x["coordinator_ms_mean"], q, s["p50_ms"], s["qps"], x["serial"]["p50_ms"] - s["p50_ms"]))
'
