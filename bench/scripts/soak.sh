#!/usr/bin/env bash
# Soak test of `cairn serve` (not part of the test run): a closed-loop mix of
# searches, asks (the embedded default LLM) and multipart uploads from
# WORKERS clients for MINUTES, with one SIGKILL and restart of the server
# half-way; per-minute requests, errors, search p50/p99 and resident memory,
# the restart's downtime, and a check that every acknowledged upload is
# still there afterwards. Figures go to bench/results/soak-DATE.json.
#
#   bash bench/scripts/soak.sh [MINUTES=30] [WORKERS=3]
#   MIX=search=80,ask=20 bash bench/scripts/soak.sh 20   # no uploads: is memory flat?
#
# The server and the clients share this machine's cores, on the embedded
# defaults (MiniLM on candle, SmolLM2-135M on llama.cpp), over the Python
# tutorial (CORPUS, default /usr/share/doc/python3.11/html/tutorial).
set -euo pipefail
cd "$(dirname "$0")/../.."
minutes="${1:-30}"
workers="${2:-3}"
target="${CARGO_TARGET_DIR:-target}/debug"
cargo build -q -p cairn
"$target/cairn" models fetch >/dev/null
corpus="${CORPUS:-/usr/share/doc/python3.11/html/tutorial}"
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
mkdir -p bench/results
out="bench/results/soak-$(date +%Y%m%d-%H%M).json"
python3 bench/py/soak.py --cairn "$target/cairn" --data "$data/data" \
  --corpus "$corpus" --minutes "$minutes" --workers "$workers" --out "$out" \
  --mix "${MIX:-search=75,ask=15,upload=10}"
echo "figures: $out"
