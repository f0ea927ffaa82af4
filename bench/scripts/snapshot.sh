#!/usr/bin/env bash
# How long a new replica takes to serve a shard: replaying the shard's whole
# log, against starting from a snapshot of the catalog (JetStream's object
# store) and then the log's tail. Both in one invocation, on this machine:
#
#   bash bench/scripts/snapshot.sh [ROUNDS=3]       # the Python tutorial, HOWTOs, FAQ and library reference
#   SUBDIRS="tutorial" bash bench/scripts/snapshot.sh 1     # a smaller corpus
#
# One nats-server; node n0 holds the collection (S = 1, R = 1) and has
# ingested the corpus; in the snapshot run it is restarted with snapshots
# on and stores one of the whole shard (the log is kept whole in both runs,
# so the only difference is replay against restore). Then, ROUNDS times, the node
# holding the shard is killed and a new node takes it over
# (--takeover-after 1); the time is from its "taking over" to its "serving
# searches" (both in its log). Writes bench/results/snapshot.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-3}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
command -v nats-server >/dev/null || $SUDO apt-get install -y -qq nats-server >/dev/null
target="${CARGO_TARGET_DIR:-target}/debug"
cargo build -q -p cairn
cairn="$target/cairn"
"$cairn" models fetch onnxruntime >/dev/null
"$cairn" models fetch all-MiniLM-L6-v2-int8 >/dev/null
export CAIRN_EMBED_BACKEND=onnx CAIRN_EMBED_MODEL=all-MiniLM-L6-v2-int8
docs="${CORPUS:-/usr/share/doc/python3.11/html}"
read -r -a subdirs <<< "${SUBDIRS:-tutorial howto faq library}"
dirs=()
for d in "${subdirs[@]}"; do dirs+=("$docs/$d"); done
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
status() { "$cairn" --data-dir "$work/client" --cluster "$1" cluster status --json 2>/dev/null; }
wait_for() { # url, python predicate on `s`
  for _ in $(seq 1 2400); do
    if status "$1" | python3 -c "import json,sys; s=json.load(sys.stdin); sys.exit(0 if ($2) else 1)" 2>/dev/null; then return 0; fi
    sleep 0.25
  done
  echo "timed out: $2" >&2; exit 1
}
shard='s["collections"][0]["shard_status"][0]'
# Seconds from a node's "taking over" to its "serving searches" (its log's
# timestamps): the time to serve, without the wait for the old node's
# heartbeat to expire.
took() {
  python3 - "$1" <<'PY'
import re, sys
from datetime import datetime
t = {}
for line in open(sys.argv[1]):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    m = re.match(r"(\S+Z)\s", line)
    if not m:
        continue
    ts = datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
    if "taking over" in line and "take" not in t:
        t["take"] = ts
    if "serving searches" in line and "take" in t and "serve" not in t:
        t["serve"] = ts
print(round((t["serve"] - t["take"]).total_seconds(), 3))
PY
}
results=()
for mode in replay snapshot; do
  run="$work/$mode"; mkdir -p "$run"
  port=$(free_port)
  printf 'listen: 127.0.0.1:%s\nmax_payload: 8MB\njetstream { store_dir: "%s" }\n' "$port" "$run/js" > "$run/nats.conf"
  nats-server -c "$run/nats.conf" 2>"$run/nats.log" & pids+=($!)
  url="nats://127.0.0.1:$port"
  sleep 1
  CAIRN_SNAPSHOT_EVERY=0 "$cairn" --data-dir "$run/n0" node --nats "$url" --name n0 --no-llm 2>"$run/n0.log" & prev=$!; pids+=($prev)
  wait_for "$url" "len(s['nodes']) == 1"
  "$cairn" --data-dir "$work/client" --cluster "$url" collection create docs --shards 1 --replicas 1 >/dev/null
  echo "$mode: ingesting" >&2
  "$cairn" --data-dir "$work/client" --cluster "$url" -c docs ingest "${dirs[@]}" --json > "$run/ingest.json"
  wait_for "$url" "$shard['replicas'][0]['lag'] == 0 and $shard['replicas'][0]['serving']"
  if [ "$mode" = snapshot ]; then
    # n0 again, now taking snapshots: it stores one of the whole shard as
    # it starts (the log is kept whole).
    kill -9 "$prev"
    CAIRN_SNAPSHOT_EVERY=1 CAIRN_LOG_KEEP=100000000 \
      "$cairn" --data-dir "$run/n0" node --nats "$url" --name n0 --no-llm 2>>"$run/n0.log" & prev=$!; pids+=($prev)
    wait_for "$url" "$shard['snapshot_seq'] == $shard['last_seq'] and $shard['replicas'][0]['lag'] == 0"
  fi
  entries=$(status "$url" | python3 -c "import json,sys; s=json.load(sys.stdin); print($shard['last_seq'])")
  chunks=$(python3 -c "import json; print(json.load(open('$run/ingest.json'))['chunks'])")
  for r in $(seq 1 "$rounds"); do
    # The node holding the shard goes; a new one takes the shard over.
    kill -9 "$prev"
    CAIRN_LOG=info CAIRN_SNAPSHOT_EVERY=0 "$cairn" --data-dir "$run/n$r" node --nats "$url" --name "n$r" --no-llm --takeover-after 1 2>"$run/n$r.log" & prev=$!; pids+=($prev)
    wait_for "$url" "any(r['node'] == 'n$r' and r['live'] and r['serving'] and r['lag'] == 0 and r['applied'] == $entries for r in $shard['replicas'])"
    secs=$(took "$run/n$r.log")
    restored=$(grep -c "restored from the snapshot" "$run/n$r.log" || true)
    results+=("{\"mode\": \"$mode\", \"round\": $r, \"entries\": $entries, \"chunks\": $chunks, \"seconds\": $secs, \"restored_from_snapshot\": $restored}")
    echo "$mode round $r: $entries log entries ($chunks chunks), $secs s from taking the shard over to serving (restored: $restored)" >&2
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  pids=()
done
mkdir -p bench/results
printf '%s\n' "${results[@]}" | python3 -c '
import json, statistics, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
json.dump(rows, open("bench/results/snapshot.json", "w"), indent=1)
med = {m: statistics.median(r["seconds"] for r in rows if r["mode"] == m) for m in ("replay", "snapshot")}
print("| a new replica starts by | log entries | chunks | seconds from taking the shard to serving (median of %d) |" % (len(rows) // 2))
print("|---|---:|---:|---:|")
print("| replaying the whole log | %d | %d | %.2f |" % (rows[0]["entries"], rows[0]["chunks"], med["replay"]))
print("| the snapshot, then the tail | %d | %d | %.2f |" % (rows[-1]["entries"], rows[-1]["chunks"], med["snapshot"]))
print("\nratio replay / snapshot: %.2f" % (med["replay"] / med["snapshot"]))
'
